"""Each loader against a tiny generated copy of its public layout (real column names and file naming)."""
import csv

import numpy as np
import pytest
import soundfile

from conftest import write_csv
from melfront.data import Clip, ClipList, MetadataError, available_datasets, dataset, register_dataset
from melfront.data.registry import dataset_description
from melfront.errors import DataError, ParameterError


def _wav(path, seconds=0.05, sr=8000, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    x = (0.1 * np.random.default_rng(len(str(path))).standard_normal(int(sr * seconds))).astype(np.float32)
    soundfile.write(str(path), x, sr, format=fmt)
    return path


# ------------------------------------------------------------------------------------------------
# ESC-50 / ESC-10
# ------------------------------------------------------------------------------------------------
ESC_HEADER = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]
ESC_ROWS = [
    ["1-100032-A-0.wav", 1, 0, "dog", "True", 100032, "A"],
    ["1-100038-A-14.wav", 1, 14, "chirping_birds", "False", 100038, "A"],
    ["2-100648-A-43.wav", 2, 43, "car_horn", "False", 100648, "A"],
    ["4-102844-A-49.wav", 4, 49, "hand_saw", "False", 102844, "A"],
    ["5-103415-A-2.wav", 5, 2, "pig", "False", 103415, "A"],
    ["3-104958-A-0.wav", 3, 0, "dog", "True", 104958, "A"],
    ["2-109505-A-21.wav", 2, 21, "sneezing", "True", 109505, "A"],
]


def _esc(tmp_path, rows=ESC_ROWS, header=ESC_HEADER, flac=()):
    root = tmp_path / "ESC-50"
    write_csv(root / "meta" / "esc50.csv", header, rows)
    for r in rows:
        name = r[0]
        if name in flac:
            _wav(root / "audio" / name.replace(".wav", ".flac"), fmt="FLAC")
        else:
            _wav(root / "audio" / name)
    return root


def test_esc50_reads_labels_folds_and_sources(tmp_path):
    root = _esc(tmp_path)
    clips = dataset("esc50", root)
    assert isinstance(clips, ClipList) and clips.name == "esc50" and len(clips) == 7
    assert clips.classes == ["dog", "pig", "chirping_birds", "sneezing", "car_horn", "hand_saw"]  # target order
    assert clips.folds == [1, 2, 3, 4, 5]
    by_name = {c.path.rsplit("/", 1)[1]: c for c in clips}
    saw = by_name["4-102844-A-49.wav"]
    assert (saw.class_name, saw.fold, saw.source_id) == ("hand_saw", 4, "102844")
    assert clips.classes[saw.label] == "hand_saw"
    assert all(clips.classes[c.label] == c.class_name for c in clips)
    assert all(c.path.startswith(str(root.resolve())) for c in clips)


def test_esc10_selects_and_renumbers(tmp_path):
    root = _esc(tmp_path)
    a, b = dataset("esc10", root), dataset("esc50", root, esc10=True)
    assert [c.path for c in a] == [c.path for c in b]
    assert a.classes == ["dog", "sneezing"] and sorted({c.label for c in a}) == [0, 1] and len(a) == 3


def test_esc50_accepts_other_audio_extensions_and_skips_absent_files(tmp_path):
    root = _esc(tmp_path, flac={"1-100032-A-0.wav"})
    (root / "audio" / "5-103415-A-2.wav").unlink()
    clips = dataset("esc50", root)
    assert len(clips) == 6
    assert any(c.path.endswith("1-100032-A-0.flac") for c in clips)
    assert [m.rsplit("/", 1)[1] for m in clips.missing] == ["5-103415-A-2.wav"]
    assert "pig" not in clips.classes


def test_esc50_missing_column_names_file_and_column(tmp_path):
    root = _esc(tmp_path, rows=[r[:6] for r in ESC_ROWS], header=ESC_HEADER[:6])
    with pytest.raises(MetadataError, match=r"esc50\.csv.*'take'"):
        dataset("esc50", root)


@pytest.mark.parametrize("row, pattern", [
    (["1-100032-A-0.wav", 7, 0, "dog", "True", 100032, "A"], r"line 3: 1-100032-A-0\.wav: unknown fold 7"),
    (["1-100032-A-0.wav", 2, 0, "dog", "True", 100032, "A"], r"line 3: .*file name says fold 1"),
    (["1-100032-A-0.wav", 1, 3, "dog", "True", 100032, "A"], r"line 3: .*file name says target 0"),
    (["1-100032-A-0.wav", "one", 0, "dog", "True", 100032, "A"], r"line 3: column 'fold'"),
    (["1-100032-A-0.wav", 1, 0, "cat", "True", 100032, "A"], r"line 3: .*'cat'.*'dog'"),
])
def test_esc50_bad_rows_are_named(tmp_path, row, pattern):
    rows = [ESC_ROWS[0], row] + ESC_ROWS[2:]
    root = _esc(tmp_path, rows=rows)
    with pytest.raises(MetadataError, match=pattern):
        dataset("esc50", root)


def test_missing_root_says_which_command_downloads_it(tmp_path):
    for name, cmd in [("esc50", "esc50"), ("esc10", "esc10"), ("urbansound8k", "urbansound8k"),
                      ("tut2017", "tut2017"), ("fsdd", "fsdd")]:
        with pytest.raises(FileNotFoundError, match=f"melfront download {cmd} --root"):
            dataset(name, tmp_path / "nowhere")
        with pytest.raises(FileNotFoundError, match=f"melfront download {cmd}"):
            dataset(name)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="esc50.csv.*melfront download esc50"):
        dataset("esc50", tmp_path / "empty")


# ------------------------------------------------------------------------------------------------
# UrbanSound8K
# ------------------------------------------------------------------------------------------------
US_HEADER = ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"]
US_ROWS = [
    ["100032-3-0-0.wav", 100032, 0.0, 0.317551, 1, 5, 3, "dog_bark"],
    ["100263-2-0-117.wav", 100263, 58.5, 62.5, 1, 5, 2, "children_playing"],
    ["100648-1-0-0.wav", 100648, 4.8, 6.4, 2, 10, 1, "car_horn"],
    ["101281-3-0-0.wav", 101281, 0.0, 4.0, 2, 1, 3, "dog_bark"],
    ["102305-6-0-0.wav", 102305, 0.0, 2.6, 1, 1, 6, "gun_shot"],
]


def _us8k(tmp_path, rows=US_ROWS, header=US_HEADER):
    root = tmp_path / "UrbanSound8K"
    write_csv(root / "metadata" / "UrbanSound8K.csv", header, rows)
    for r in rows:
        _wav(root / "audio" / f"fold{r[5]}" / r[0])
    return root


def test_urbansound8k_reads_folds_classes_and_fsid(tmp_path):
    clips = dataset("urbansound8k", _us8k(tmp_path))
    assert clips.classes == ["car_horn", "children_playing", "dog_bark", "gun_shot"]
    assert clips.folds == [1, 5, 10]
    c = [c for c in clips if c.path.endswith("100648-1-0-0.wav")][0]
    assert (c.fold, c.source_id, c.class_name, clips.classes[c.label]) == (10, "100648", "car_horn", "car_horn")
    assert "/audio/fold10/" in c.path
    assert dataset("us8k", _us8k(tmp_path)).name == "urbansound8k"


@pytest.mark.parametrize("row, pattern", [
    (["100032-3-0-0.wav", 100032, 0.0, 0.3, 1, 11, 3, "dog_bark"], r"line 2: 100032-3-0-0\.wav: unknown fold 11"),
    (["100032-3-0-0.wav", 100032, 0.0, 0.3, 1, 5, 4, "dog_bark"], r"line 2: .*file name says classID 3"),
    (["100032-3-0-0.wav", 999, 0.0, 0.3, 1, 5, 3, "dog_bark"], r"line 2: .*file name says fsID 100032"),
])
def test_urbansound8k_bad_rows_are_named(tmp_path, row, pattern):
    root = _us8k(tmp_path, rows=[row] + US_ROWS[1:])
    with pytest.raises(MetadataError, match=pattern):
        dataset("urbansound8k", root)


def test_urbansound8k_missing_column(tmp_path):
    root = _us8k(tmp_path, rows=[r[:7] for r in US_ROWS], header=US_HEADER[:7])
    with pytest.raises(MetadataError, match=r"UrbanSound8K\.csv.*'class'"):
        dataset("urbansound8k", root)


# ------------------------------------------------------------------------------------------------
# TUT Acoustic Scenes 2017
# ------------------------------------------------------------------------------------------------
DEV = [("a001_0_10.wav", "residential_area", "a001"), ("a001_10_20.wav", "residential_area", "a001"),
       ("b020_30_40.wav", "beach", "b020"), ("b021_0_10.wav", "beach", "b021"),
       ("c033_0_10.wav", "bus", "c033"), ("c034_0_10.wav", "bus", "c034")]
FOLD_OF = {"a001_0_10.wav": 1, "a001_10_20.wav": 1, "b020_30_40.wav": 1, "b021_0_10.wav": 2,
           "c033_0_10.wav": 2, "c034_0_10.wav": 1}


def _tab(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\t".join(r) + "\n" for r in rows))


def _tut(tmp_path, dev=DEV, fold_of=FOLD_OF, with_eval=True, nested=True):
    base = tmp_path / "tut"
    d = base / "TUT-acoustic-scenes-2017-development" if nested else base
    _tab(d / "meta.txt", [("audio/" + n, s, loc) for n, s, loc in dev])
    for n, _, _ in dev:
        _wav(d / "audio" / n)
    for fold in (1, 2):
        ev = [("audio/" + n, s) for n, s, _ in dev if fold_of.get(n) == fold]
        tr = [("audio/" + n, s) for n, s, _ in dev if fold_of.get(n) != fold]
        _tab(d / "evaluation_setup" / f"fold{fold}_evaluate.txt", ev)
        _tab(d / "evaluation_setup" / f"fold{fold}_train.txt", tr)
    if with_eval:
        e = base / "TUT-acoustic-scenes-2017-evaluation"
        _tab(e / "meta.txt", [("audio/1.wav", "beach", "x"), ("audio/2.wav", "tram", "y")])
        _wav(e / "audio" / "1.wav")
        _wav(e / "audio" / "2.wav")
    return base


def test_tut_development_folds_from_evaluate_lists(tmp_path):
    clips = dataset("tut2017", _tut(tmp_path))
    assert clips.classes == ["beach", "bus", "residential_area"]
    assert clips.folds == [1, 2]
    fold = {c.path.rsplit("/", 1)[1]: c.fold for c in clips}
    assert fold == FOLD_OF
    src = {c.path.rsplit("/", 1)[1]: c.source_id for c in clips}
    assert src["a001_10_20.wav"] == "a001" and src["b021_0_10.wav"] == "b021"


def test_tut_evaluation_and_all(tmp_path):
    base = _tut(tmp_path)
    ev = dataset("tut2017", base, split="evaluation")
    assert ev.folds == ["evaluation"] and ev.classes == ["beach", "tram"] and len(ev) == 2
    both = dataset("tut2017", base, split="all")
    assert len(both) == 8 and both.folds == [1, 2, "evaluation"]
    assert both.classes == ["beach", "bus", "residential_area", "tram"]
    assert all(both.classes[c.label] == c.class_name for c in both)
    with pytest.raises(ValueError, match="split"):
        dataset("tut2017", base, split="test")


def test_tut_evaluation_setup_without_meta(tmp_path):
    base = _tut(tmp_path)
    e = base / "TUT-acoustic-scenes-2017-evaluation"
    (e / "meta.txt").unlink()
    _tab(e / "evaluation_setup" / "evaluate.txt", [("audio/1.wav", "tram"), ("audio/2.wav", "tram")])
    ev = dataset("tut2017", base, split="evaluation")
    assert ev.classes == ["tram"] and len(ev) == 2


def test_tut_release_folder_given_directly(tmp_path):
    base = _tut(tmp_path, with_eval=False, nested=False)
    assert len(dataset("tut2017", base)) == 6
    with pytest.raises(FileNotFoundError, match="melfront download tut2017"):
        dataset("tut2017", tmp_path / "tut", split="all")


def test_tut_scene_disagreeing_with_meta_is_named(tmp_path):
    base = _tut(tmp_path)
    f = base / "TUT-acoustic-scenes-2017-development" / "evaluation_setup" / "fold2_evaluate.txt"
    f.write_text(f.read_text().replace("\tbus", "\ttram"))
    with pytest.raises(MetadataError, match=r"fold2_evaluate\.txt, line \d+: audio/c033_0_10\.wav: scene 'tram'"):
        dataset("tut2017", base)


def test_tut_location_disagreeing_with_file_name_is_named(tmp_path):
    dev = DEV[:-1] + [("c034_0_10.wav", "bus", "c099")]
    with pytest.raises(MetadataError, match=r"meta\.txt, line 6: .*location c034"):
        dataset("tut2017", _tut(tmp_path, dev=dev))


def test_tut_clip_in_two_folds_and_unknown_clip(tmp_path):
    base = _tut(tmp_path)
    setup = base / "TUT-acoustic-scenes-2017-development" / "evaluation_setup"
    with open(setup / "fold2_evaluate.txt", "a") as f:
        f.write("audio/a001_0_10.wav\tresidential_area\n")
    with pytest.raises(MetadataError, match="folds 1 and 2"):
        dataset("tut2017", base)
    _tab(setup / "fold2_evaluate.txt", [("audio/zzz.wav", "bus")])
    with pytest.raises(MetadataError, match="zzz.wav: not listed"):
        dataset("tut2017", base)


# ------------------------------------------------------------------------------------------------
# FSDD
# ------------------------------------------------------------------------------------------------
def test_fsdd_split_by_take_and_speaker_sources(tmp_path):
    rec = tmp_path / "fsdd" / "recordings"
    for d, spk, take in [(0, "george", 0), (0, "george", 4), (0, "george", 5), (7, "jackson", 49), (9, "yweweler", 3)]:
        _wav(rec / f"{d}_{spk}_{take}.wav")
    (rec / "README.txt").write_text("ignored")
    clips = dataset("fsdd", tmp_path / "fsdd")
    assert clips.classes == [str(d) for d in range(10)]
    got = sorted((c.label, c.source_id, c.fold) for c in clips)
    assert got == [(0, "george", "test"), (0, "george", "test"), (0, "george", "train"),
                   (7, "jackson", "train"), (9, "yweweler", "test")]
    _wav(rec / "seven_bob_1.wav")
    with pytest.raises(MetadataError, match=r"seven_bob_1\.wav"):
        dataset("fsdd", tmp_path / "fsdd")


# ------------------------------------------------------------------------------------------------
# Folder trees
# ------------------------------------------------------------------------------------------------
def test_folder_per_class(tmp_path):
    for c, n in [("owl", 2), ("frog", 3)]:
        for i in range(n):
            _wav(tmp_path / "f" / c / ("sub" if i == 2 else "") / f"{i}.wav")
    (tmp_path / "f" / "empty").mkdir()
    (tmp_path / "f" / ".hidden").mkdir()
    _wav(tmp_path / "f" / ".hidden" / "x.wav")
    clips = dataset("folder", tmp_path / "f")
    assert clips.classes == ["frog", "owl"] and clips.folds == [1]
    assert sorted(c.class_name for c in clips) == ["frog"] * 3 + ["owl"] * 2
    assert all(clips.classes[c.label] == c.class_name for c in clips)


@pytest.mark.parametrize("groups, folds", [(["fold1", "fold2"], [1, 2]), (["train", "test"], ["test", "train"])])
def test_folder_with_fold_or_split_sub_layout(tmp_path, groups, folds):
    for g in groups:
        for c in ("a", "b"):
            _wav(tmp_path / "f" / g / c / "x.wav")
    clips = dataset("folder", tmp_path / "f")
    assert clips.folds == folds and clips.classes == ["a", "b"] and len(clips) == 4


def test_folder_without_audio_or_root(tmp_path):
    (tmp_path / "f" / "a").mkdir(parents=True)
    with pytest.raises(MetadataError, match="no audio"):
        dataset("folder", tmp_path / "f")
    with pytest.raises(FileNotFoundError):
        dataset("folder", tmp_path / "nope")


# ------------------------------------------------------------------------------------------------
# ClipList and the entry point
# ------------------------------------------------------------------------------------------------
def test_cliplist_subset_keeps_metadata_and_unknown_name_fails(tmp_path):
    clips = dataset("esc50", _esc(tmp_path))
    sub = clips.subset(c for c in clips if c.fold == 2)
    assert sub.classes == clips.classes and sub.name == "esc50" and sub.root == clips.root and len(sub) == 2
    assert clips[:3].classes == clips.classes and isinstance(clips[0], Clip)
    assert len(clips.by_fold(1)) == 2
    back = __import__("pickle").loads(__import__("pickle").dumps(clips))  # travels to worker processes
    assert back == clips and back.classes == clips.classes and back.name == "esc50" and back.root == clips.root
    with pytest.raises(ValueError, match="name must be one of"):
        dataset("imagenet")
    assert {"esc50", "esc10", "urbansound8k", "tut2017", "fsdd", "folder", "synth"} <= set(available_datasets())


def test_registry_names_bad_names_and_options(tmp_path):
    with pytest.raises(ParameterError, match=r"name must be one of \['esc10', 'esc50'.*got 'imagenet'"):
        dataset("imagenet")
    with pytest.raises(ParameterError, match="data set 'esc50' has no option 'split'; its options are: esc10"):
        dataset("esc50", tmp_path, split="all")
    with pytest.raises(ParameterError, match="has no options 'a', 'b'"):
        dataset("fsdd", tmp_path, a=1, b=2)
    assert issubclass(MetadataError, DataError)
    assert "UrbanSound8K" in dataset_description("US8K")


def test_a_new_loader_joins_with_the_decorator(tmp_path):
    @register_dataset("Toy-Set", description="two clips")
    def load_toy(root=None, n=2):
        return ClipList([Clip(f"{i}.wav", 0, "x", 1) for i in range(n)], name="toy", classes=["x"], root=root)
    try:
        assert "toyset" in available_datasets() and dataset_description("toy_set") == "two clips"
        assert len(dataset("toy-set", tmp_path, n=3)) == 3
        with pytest.raises(ParameterError, match="already registered"):
            register_dataset("toyset")(lambda root=None: ClipList())
    finally:
        from melfront.data import registry
        registry._REGISTRY.pop("toyset")
