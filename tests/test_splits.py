"""Every clip and cell accounted for; split rules that never change silently; groups that never leak."""
import json
from collections import Counter

import numpy as np
import pytest
import soundfile

from melfront.cli import main
from melfront.data import dataset
from melfront.data.base import check_clips, group_of, with_groups
from melfront.errors import DataError, ParameterError
from melfront.study import ResultStore, StudyConfig, load_clips, run_study, split_for_trial
from melfront.train.runs import evaluate_run, run_split, train_run

SR = 8000
MEL = dict(sample_rate=SR, n_fft=256, hop_length=128, n_mels=32)
SPEAKERS = r"^([^_]+)_nohash_"


def _tone(path, seed, seconds=0.25):
    rng = np.random.default_rng(seed)
    soundfile.write(path, (0.1 * rng.standard_normal(int(SR * seconds))).astype(np.float32), SR)


def flat_folder(root, classes=("a", "b", "c"), per_class=8, bad=()):
    """ROOT/{class}/k.wav, plus unreadable files ``bad`` = [(class, name, bytes)]."""
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            _tone(root / name / f"{i}.wav", 100 * k + i)
    for name, file, data in bad:
        (root / name / file).write_bytes(data)
    return root


def keyword_folder(root, words=("yes", "no", "up"), speakers=9, takes=2):
    """ROOT/{word}/{SPEAKER}_nohash_{k}.wav: every speaker says every word."""
    for w, word in enumerate(words):
        (root / word).mkdir(parents=True, exist_ok=True)
        for s in range(speakers):
            for k in range(takes):
                _tone(root / word / f"spk{s}_nohash_{k}.wav", 1000 * w + 10 * s + k, seconds=0.1)
    return root


def study_config(root, **kw):
    values = dict(dataset="folder", root=str(root), frontends=["db"], models=["sbcnn"], n_per_class=[2, 5],
                  runs={"default": 2}, test_folds="first", mel=MEL, train=dict(epochs=1, patch_frames=16))
    values.update(kw)
    return StudyConfig(**values)


class Recorder:
    """A stand-in for training that records what every trial was given."""

    def __init__(self):
        self.calls = []

    def __call__(self, clips, *, frontend, model, train_clips, test_clips, **kw):
        self.calls.append((list(train_clips), list(test_clips)))
        return dict(accuracy=0.5, map=0.5, train_seconds=0.0, n_train=len(train_clips), n_test=len(test_clips))


BAD = [("a", "empty.wav", b""), ("a", "garbage.wav", b"this is not audio" * 10), ("b", "header.wav", b"RIFF\x00")]


def test_unreadable_clips_are_left_out_before_sampling_and_stored(tmp_path, capsys):
    root = flat_folder(tmp_path / "data", bad=BAD)
    fake = Recorder()
    store = run_study(study_config(root), tmp_path / "study.db", trial_fn=fake, progress=False)
    out = capsys.readouterr().out
    assert "3 of 27 clips unreadable, skipped: first causes: " in out and out.count("unreadable") == 1
    skipped = store.meta("skipped_clips")
    assert sorted(p.rsplit("/", 1)[-1] for p, _ in skipped) == ["empty.wav", "garbage.wav", "header.wav"]
    assert all(cause for _, cause in skipped)
    bad_paths = {p for p, _ in skipped}
    assert len(fake.calls) == 4  # (n=2, n=5) x 2 runs
    for train, test in fake.calls:
        assert not bad_paths & {c.path for c in train + test}
        assert len(set(Counter(c.label for c in train).values())) == 1  # n readable clips of every class
    assert sorted(len(train) for train, _ in fake.calls) == [6, 6, 15, 15]
    rows = store.rows()
    assert sorted(r["metrics"]["n_per_class_actual"] for r in rows) == [2, 2, 5, 5]
    assert store.meta("cell_shortfalls") == []
    assert [c.path for c in check_clips(dataset("folder", root))[0]] == [c.path for c in load_clips(study_config(root))]


def test_a_cell_short_of_clips_is_recorded(tmp_path):
    root = flat_folder(tmp_path / "data", per_class=8)  # holdout: 2 test clips per class, 6 in the pool
    store = run_study(study_config(root, n_per_class=[7], runs={"default": 1}), tmp_path / "s.db",
                      trial_fn=Recorder(), quiet=True)
    shortfalls = store.meta("cell_shortfalls")
    assert sorted(s["class"] for s in shortfalls) == ["a", "b", "c"]
    assert {(s["fold"], s["n"], s["run"], s["available"]) for s in shortfalls} == {(1, 7, 0, 6)}
    assert [r["metrics"]["n_per_class_actual"] for r in store.rows()] == [6]


def test_official_folds_never_switch_silently(tmp_path):
    opts = dict(n_classes=3, clips_per_class=8, duration=0.25, sample_rate=SR, seed=0, n_folds=4)
    config = StudyConfig(dataset="synth", root=str(tmp_path / "synth"), dataset_options=opts, frontends=["db"],
                         n_per_class=[1, 7], runs={"default": 1}, test_folds="first", mel=MEL)
    fake = Recorder()
    with pytest.raises(DataError, match=r"class '.+' has 6 training clip\(s\) outside test fold 1, fewer than "
                                        r"n=7.*lower n to at most 6.*split: holdout"):
        run_study(config, tmp_path / "s.db", trial_fn=fake, quiet=True)
    assert fake.calls == []  # refused before anything trained
    clips = load_clips(config)
    with pytest.raises(DataError, match="fewer than n=7"):
        split_for_trial(config, clips, 1, 7, 0)
    # the explicit holdout runs, and says so in every row and in the stored config
    config.split = "holdout"
    store = run_study(config, tmp_path / "h.db", trial_fn=fake, quiet=True)
    assert {r["metrics"]["split"].split(":")[0] for r in store.rows()} == {"holdout within fold 1"}
    assert store.config().split == "holdout"
    # a data set with a single fold takes the holdout by default, and refuses split "folds"
    flat = flat_folder(tmp_path / "flat")
    default = study_config(flat)
    run_study(default, tmp_path / "f.db", trial_fn=Recorder(), quiet=True)
    assert default.split == "holdout" and ResultStore(tmp_path / "f.db").config().split == "holdout"
    with pytest.raises(DataError, match="split 'folds' needs a data set with two folds or more"):
        run_study(study_config(flat, split="folds"), tmp_path / "g.db", trial_fn=Recorder(), quiet=True)
    with pytest.raises(ParameterError, match="split must be one of"):
        StudyConfig(split="random")



def test_one_complete_fold_and_a_few_strays_take_a_declared_holdout(tmp_path, capsys):
    """Like the ESC-50 copy with all of fold 4 and 14 clips of other folds: the strays cannot be a test fold."""
    root = tmp_path / "data"
    flat_folder(root / "fold4")
    (root / "fold2" / "a").mkdir(parents=True)
    _tone(root / "fold2" / "a" / "stray.wav", 7)
    fake = Recorder()
    store = run_study(study_config(root, test_folds="all", n_per_class=[2], runs={"default": 1}), tmp_path / "s.db",
                      trial_fn=fake, progress=False)
    said = capsys.readouterr().out
    assert "split: holdout (fewer than two folds hold every class: complete [4] of [2, 4]" in said
    assert store.config().split == "holdout" and {str(r["fold"]) for r in store.rows()} == {"4"}
    train, test = fake.calls[0]
    assert all(c.fold == 4 for c in test) and not any("stray" in c.path for c in test)


def test_fewer_than_two_classes_is_an_error(tmp_path):
    one = flat_folder(tmp_path / "one", classes=("a",))
    with pytest.raises(DataError, match="at least two classes"):
        run_study(study_config(one), tmp_path / "s.db", trial_fn=Recorder(), quiet=True)
    # two class folders, but one holds nothing readable
    two = flat_folder(tmp_path / "two", classes=("a",), bad=[])
    (two / "b").mkdir()
    (two / "b" / "x.wav").write_bytes(b"junk")
    with pytest.raises(DataError, match="class 'b': all 1 of its clips are unreadable"):  # named, not kept empty
        run_study(study_config(two), tmp_path / "t.db", trial_fn=Recorder(), quiet=True)
    with pytest.raises(DataError, match="at least two classes"):
        train_run(tmp_path / "run", dataset="folder", root=str(one), log=lambda *a: None)


def test_group_by_keeps_every_speaker_on_one_side(tmp_path):
    root = keyword_folder(tmp_path / "kw")
    grouped = with_groups(dataset("folder", root), SPEAKERS)
    assert {c.source_id for c in grouped} == {f"spk{s}" for s in range(9)}
    with pytest.raises(DataError, match="matches 0 of 54 file names"):
        with_groups(dataset("folder", root), r"^nobody_")
    fake = Recorder()
    config = study_config(root, group_by=SPEAKERS, n_per_class=[1, 2], runs={"default": 3})
    run_study(config, tmp_path / "s.db", trial_fn=fake, quiet=True)
    for train, test in fake.calls:
        assert {c.source_id for c in train} and not {c.source_id for c in train} & {c.source_id for c in test}
        assert {c.label for c in test} == {0, 1, 2}
    # without groups the same folder is split by file, and speakers leak (what --group-by prevents)
    leaky = Recorder()
    run_study(study_config(root, n_per_class=[2], runs={"default": 3}), tmp_path / "l.db", trial_fn=leaky, quiet=True)
    assert any({Path_name(c)[:4] for c in tr} & {Path_name(c)[:4] for c in te} for tr, te in leaky.calls)
    # train's split with groups from file names: no speaker on both sides
    clips = with_groups(dataset("folder", root), SPEAKERS)
    train, _, test, note = run_split(clips, log=lambda *a: None)
    assert not {group_of(c) for c in train} & {group_of(c) for c in test} and note.startswith("holdout")


def Path_name(clip):
    return clip.path.rsplit("/", 1)[-1]


def test_compare_cli_takes_group_by_and_split(tmp_path, monkeypatch):
    from melfront.cli.study import _add_compare, study_config_from_args
    import argparse
    parser = argparse.ArgumentParser()
    _add_compare(parser.add_subparsers())
    root = keyword_folder(tmp_path / "kw", speakers=3, takes=1)
    args = parser.parse_args(["compare", "--dataset", "folder", "--root", str(root), "--group-by", SPEAKERS,
                              "--split", "holdout"])
    config = study_config_from_args(args)
    assert config.group_by == SPEAKERS and config.split == "holdout"


def test_flat_folder_train_holds_out_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MELFRONT_CACHE", str(tmp_path / "cache"))
    root = keyword_folder(tmp_path / "kw", speakers=6, takes=1)
    out = tmp_path / "run"
    args = ["train", "--dataset", "folder", "--root", str(root), "--group-by", SPEAKERS, "--model", "vgg",
            "--epochs", "1", "--batch-size", "4", "--patch-frames", "32", "--sample-rate", str(SR), "--n-fft", "256",
            "--hop", "128", "--n-mels", "32", "--set", "model_options={'width': 4}", "--quiet", "-o", str(out)]
    assert main(args) == 0
    said = capsys.readouterr().out
    assert "holdout: 6 of 18 clips held out for test" in said and "the data set has a single fold" in said
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert metrics["split"].startswith("holdout") and config["split"] == "holdout" and config["group_by"] == SPEAKERS
    assert metrics["n_test"] == 6 and metrics["n_train"] == 12
    # evaluate defaults to the run's own held-out clips
    assert evaluate_run(out, cache=False, device="cpu")["n"] == 6
