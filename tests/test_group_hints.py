"""Group hints: file names sharing an id with repeats make the split line suggest a --group-by pattern, which is
never applied silently (melfront.data.folder.group_hint, melfront.study.splits)."""
from melfront.data import Clip, ClipList
from melfront.data.base import with_groups
from melfront.data.folder import group_hint
from melfront.study import StudyConfig
from melfront.study.config import Trial
from melfront.study.splits import check_study


def _clips(name):
    return ClipList([Clip(f"/d/{c}/{name(spk, c, i)}", k, c, 1) for k, c in enumerate(("dog", "owl"))
                     for spk in ("s1", "s2", "s3") for i in range(4)], classes=["dog", "owl"])


def test_id_before_underscore_is_suggested_and_groups_as_said():
    clips = _clips(lambda spk, c, i: f"{spk}_{c}{i}.wav")
    hint = group_hint(clips)
    assert "3 ids over 24 clips" in hint and "--group-by '^([^_]+)_'" in hint and "not applied" in hint
    assert {c.source_id for c in with_groups(clips, r"^([^_]+)_")} == {"s1", "s2", "s3"}


def test_recording_slices_are_noticed():
    clips = _clips(lambda spk, c, i: f"{c}{spk}-{i:03d}.wav")
    hint = group_hint(clips)
    assert hint and "6 ids over 24 clips" in hint and "--group-by" in hint


def test_no_hint_for_unique_names_class_ids_or_known_groups():
    assert group_hint(_clips(lambda spk, c, i: f"{spk}{c}{i}.wav")) is None  # no shared id
    assert group_hint(_clips(lambda spk, c, i: f"{c}_{spk}{i}.wav")) is None  # the id is the class
    grouped = [Clip(c.path, c.label, c.class_name, 1, "meta") for c in _clips(lambda spk, c, i: f"{spk}_{i}.wav")]
    assert group_hint(grouped) is None  # groups from metadata already


def test_split_line_says_so_and_nothing_is_applied():
    clips = _clips(lambda spk, c, i: f"{spk}_{c}{i}.wav")
    config = StudyConfig(n_per_class=[1])
    info = check_study(config, clips, [Trial(1, 1, 0, "sbcnn", "db")])
    split_line = next(line for line in info["lines"] if line.startswith("split: "))
    assert "file names share ids with repeats" in split_line and "--group-by '^([^_]+)_'" in split_line
    assert config.group_by is None and all(c.source_id == "" for c in clips)
    assert "by clip" in info["notes"][1]  # the holdout still splits by clip, as asked
    grouped = with_groups(clips, r"^([^_]+)_")
    info = check_study(StudyConfig(n_per_class=[1], group_by=r"^([^_]+)_"), grouped, [Trial(1, 1, 0, "sbcnn", "db")])
    assert not any("share ids" in line for line in info["lines"])
