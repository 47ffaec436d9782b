"""Hostile and careless command lines (issue 23): every case is one line naming the argument, file or row and the
cause, exit status 2, never "internal error" (3) and never a hang."""
import errno
import re
import sqlite3

import numpy as np
import pytest
import soundfile as sf

from melfront.cli import main
from melfront.errors import ParameterError, PathError, StudyError
from melfront.study import ResultStore, StudyConfig, Trial


def one_error(capsys, *fragments):
    """The command's stderr is one error line holding every fragment."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and ": error: " in lines[0] and "internal error" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture
def dry(tmp_path, monkeypatch):
    """``melfront compare --dry-run --no-estimate`` on a tiny synthetic set; returns its exit status."""
    monkeypatch.setenv("MELFRONT_CACHE", str(tmp_path / "cache"))

    def run(*extra):
        return main(["compare", "--dry-run", "--no-estimate", "--root", str(tmp_path / "synth"), "-o",
                     str(tmp_path / "study"), "--quiet", *extra])
    return run


# ---- --set, options and the dry run's checks ---------------------------------------------------------------
@pytest.mark.parametrize("args, fragments", [
    (["--set", 'lr="0.001"'], ["--set lr must be a number", "'0.001'"]),
    (["--set", "model_options=[1,2]"], ["--set model_options must be a mapping"]),
    (["--set", "model_options=" + "[" * 10000 + "]" * 10000], ["--set model_options", "nested 10000 levels"]),
    (["--set", 'model_options={"nosuch": 1}'], ["model 'sbcnn'", "unknown option(s) ['nosuch']"]),
    (["--set", "patch_frames=5"], ["model 'sbcnn'", "patch_frames=5"]),
    (["--epochs", "1", "--set", "epochs=7"], ["--epochs 1 and --set epochs=7 disagree"]),
    (["--set", "epochs=1000000000"], ["at most 100000 epochs"]),
    (["--epochs", "1000000000"], ["--epochs must be at most 100000 epochs"]),
    (["--set", "n_fft=3"], ["n_fft=3 leaves", "mel bands empty"]),
    (["--set", "hop_length=10000000"], ["hop_length=10000000 is longer than the analysis window"]),
    (["--n", "0"], ["n_per_class[0] must be a positive integer"]),
    (["--models", "nosuch"], ["unknown model 'nosuch'"]),
    (["--runs", "-1"], ["must be a positive integer, got -1"]),
])
def test_dry_run_refuses_what_the_real_run_refuses(dry, capsys, args, fragments):
    assert dry(*args) == 2
    one_error(capsys, "melfront compare: error: ", *fragments)


def test_dry_run_accepts_a_sound_command(dry, capsys):
    assert dry("--set", "lr=0.01", "--epochs", "3", "--set", "epochs=3") == 0
    assert "total:" in capsys.readouterr().out


def test_real_run_refuses_empty_bands_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MELFRONT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "study"
    assert main(["compare", "--root", str(tmp_path / "synth"), "-o", str(out), "--set", "n_fft=3", "--quiet"]) == 2
    one_error(capsys, "mel bands empty")
    assert not (out / "study.db").exists() or ResultStore(out / "study.db").rows() == []


# ---- --group-by: a catastrophic pattern is bounded --------------------------------------------------------------
def test_group_by_catastrophic_pattern_is_bounded(monkeypatch):
    from melfront import safe_regex
    from melfront.data.base import Clip, ClipList, with_groups
    monkeypatch.setattr(safe_regex, "DEADLINE_S", 0.5)
    names = ["a" * 40 + f"{i}.wav" for i in range(4)]  # (a+)+$ backtracks 2^40 steps on each
    clips = ClipList([Clip(f"/d/{n}", 0, "x", 1) for n in names], classes=["x"])
    with pytest.raises(ParameterError, match=r"--group-by '\(a\+\)\+\$': matching 4 file names took more than"):
        with_groups(clips, "(a+)+$")
    assert [c.source_id for c in with_groups(clips, "^(a{3})")] == ["aaa"] * 4


@pytest.mark.parametrize("pattern, fragment", [("([a-", "not a valid regular expression"),
                                               ("a" * 2000, "at most 1000")])
def test_group_by_bad_patterns(pattern, fragment):
    with pytest.raises(ParameterError, match=fragment):
        StudyConfig(group_by=pattern)


# ---- read-only folders, full disks, directories as files ---------------------------------------------------------
def _read_only(monkeypatch):
    """Every atomic write fails as on a read-only mount (tests run as root: chmod alone would not block them)."""
    import melfront.fileio as fileio

    def refuse(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(fileio.tempfile, "mkstemp", refuse)


def test_show_into_a_read_only_folder(tmp_path, monkeypatch, capsys):
    clip = tmp_path / "c.wav"
    sf.write(clip, np.sin(np.arange(8000) / 5.0) * 0.5, 8000)
    _read_only(monkeypatch)
    assert main(["show", str(clip), "-o", str(tmp_path / "ro" / "show.png")]) == 2
    one_error(capsys, "melfront show: error: ", str(tmp_path / "ro" / "show.png"), "read-only file system (EROFS)")


def test_report_on_a_full_disk_names_the_file(tmp_path, monkeypatch, capsys):
    store_path = _tiny_store(tmp_path)
    import melfront.fileio as fileio

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(fileio.os, "fsync", full)
    assert main(["report", str(store_path), "-o", str(tmp_path / "rep")]) == 2
    line = one_error(capsys, "melfront report: error: ", "no space left on device (ENOSPC)")
    assert str(tmp_path / "rep") in line and ".melfront-tmp-" not in line
    assert not list((tmp_path / "rep").glob(".melfront-tmp-*"))  # no half-written leftovers


def test_report_into_a_read_only_folder(tmp_path, monkeypatch, capsys):
    store_path = _tiny_store(tmp_path)
    _read_only(monkeypatch)
    assert main(["report", str(store_path), "-o", str(tmp_path / "rep")]) == 2
    one_error(capsys, str(tmp_path / "rep"), "read-only file system (EROFS)")


def test_compare_output_under_a_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MELFRONT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "file").write_text("x")
    assert main(["compare", "--root", str(tmp_path / "synth"), "-o", str(tmp_path / "file" / "study"), "--n", "1",
                 "--runs", "1", "--epochs", "1", "--quiet"]) == 2
    one_error(capsys, "melfront compare: error: ", str(tmp_path / "file"))


def test_export_to_an_existing_directory(tmp_path, capsys):
    assert main(["export", str(tmp_path / "no-run"), "-o", str(tmp_path)]) == 2
    one_error(capsys, "melfront export: error: ", "is a directory")


def test_path_error_names_the_path_and_errno():
    e = PathError.from_os_error(OSError(errno.ENOSPC, "No space left on device"), "out/report.md", "cannot write")
    assert str(e) == "out/report.md: cannot write: no space left on device (ENOSPC)" and isinstance(e, OSError)


# ---- a study.db row the store did not write -------------------------------------------------------------------
def _tiny_store(tmp_path):
    config = StudyConfig(dataset="synth", frontends=["logeps", "loglearn"], models=["sbcnn"], n_per_class=[1],
                         runs={"default": 3}, compare=[["logeps", "loglearn"]])
    store = ResultStore(tmp_path / "study.db")
    store.save_config(config)
    for run in range(3):
        for fe, acc in (("logeps", 0.4 + run / 20), ("loglearn", 0.5 + run / 20)):
            trial = Trial(1, 1, run, "sbcnn", fe)
            store.add(trial.key(config), trial, config, dict(accuracy=acc, map=acc, train_seconds=1.0))
    return tmp_path / "study.db"


@pytest.mark.parametrize("sql, fragment", [
    ("UPDATE results SET accuracy = 'high' WHERE run = 1 AND frontend = 'logeps'", "accuracy 'high' is not a number"),
    ("UPDATE results SET accuracy = NULL WHERE run = 1 AND frontend = 'logeps'", "accuracy None is not a number"),
    ("UPDATE results SET accuracy = 9e999 WHERE run = 1 AND frontend = 'logeps'", "accuracy inf is not a finite"),
    ("UPDATE results SET accuracy = 55.2 WHERE run = 1 AND frontend = 'logeps'", "not a finite number in [0, 1]"),
    ("UPDATE results SET metrics = '{not json' WHERE run = 1 AND frontend = 'logeps'", "metrics is not JSON"),
    ("UPDATE results SET metrics = '[1, 2]' WHERE run = 1 AND frontend = 'logeps'", "metrics is not a JSON object"),
    ("UPDATE results SET model = NULL WHERE run = 1 AND frontend = 'logeps'", "model None is not a non-empty text"),
    ("INSERT INTO results SELECT 'foreign-key', dataset, fold, n, run, model, frontend, seed, 0.99, map, "
     "train_seconds, metrics, learned, config, finished, status, error FROM results WHERE run = 1 AND "
     "frontend = 'logeps'", "is also stored under key"),
])
def test_foreign_store_rows_are_refused_naming_file_and_row(tmp_path, capsys, sql, fragment):
    path = _tiny_store(tmp_path)
    with sqlite3.connect(path) as db:
        db.execute(sql)
    with pytest.raises(StudyError, match=re.escape(fragment)):  # what report and compare read the rows with
        ResultStore(path).rows()
    assert main(["report", str(path)]) == 2
    one_error(capsys, str(path), "results row", fragment, "melfront did not write this row" if "key" not in fragment
              else "one row per trial")
    assert not (tmp_path / "report" / "report.md").exists()


def test_train_into_a_read_only_folder(tmp_path, monkeypatch, capsys):
    from melfront.data import dataset
    monkeypatch.setenv("MELFRONT_CACHE", str(tmp_path / "cache"))
    dataset("synth", root=str(tmp_path / "synth"), n_classes=2, clips_per_class=4, duration=0.25, sample_rate=4000,
            n_folds=2)  # the data are written first; then every write fails
    _read_only(monkeypatch)
    run = tmp_path / "ro-run"
    code = main(["train", "--dataset", "synth", "--root", str(tmp_path / "synth"), "--dataset-option", "n_classes=2",
                 "--dataset-option", "clips_per_class=4", "--dataset-option", "duration=0.25",
                 "--dataset-option", "sample_rate=4000", "--dataset-option", "n_folds=2", "--test-fold", "1",
                 "--model", "vgg", "--set", 'model_options={"width": 4}', "--n-mels", "32", "--n-fft", "256",
                 "--hop", "64", "--patch-frames", "32", "--epochs", "1", "--quiet", "--no-cache", "-o", str(run)])
    assert code == 2
    one_error(capsys, "melfront train: error: ", str(run), "read-only file system (EROFS)")


def test_an_absurd_model_width_is_counted_not_allocated(dry, capsys):
    assert dry("--models", "vgg", "--set", 'model_options={"width": 100000000}') == 2
    one_error(capsys, "model 'vgg'", "parameters, more than the 500,000,000 a study accepts")


def test_an_absurd_patch_is_refused_before_any_allocation(dry, capsys):
    assert dry("--set", "patch_frames=100000000") == 2
    one_error(capsys, "train['patch_frames'] (model 'sbcnn'): patch_frames=100000000 frames", "at most 600 s")


def test_train_refuses_an_absurd_width_without_allocating(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MELFRONT_CACHE", str(tmp_path / "cache"))
    code = main(["train", "--dataset", "synth", "--root", str(tmp_path / "synth"), "--dataset-option", "n_classes=2",
                 "--dataset-option", "clips_per_class=4", "--dataset-option", "duration=0.25",
                 "--dataset-option", "sample_rate=4000", "--dataset-option", "n_folds=2", "--test-fold", "1",
                 "--model", "vgg", "--set", 'model_options={"width": 100000000}', "--epochs", "1", "--quiet",
                 "--no-cache", "-o", str(tmp_path / "run")])
    assert code == 2
    one_error(capsys, "melfront train: error: ", "model 'vgg'", "parameters, more than 500,000,000")


def test_an_absurd_number_of_runs_is_refused_not_planned(dry, capsys):
    assert dry("--runs", "100000000") == 2
    one_error(capsys, "runs['default'] must be at most 10000, got 100000000")


def test_report_into_a_file_says_what_is_in_the_way(tmp_path, capsys):
    store_path = _tiny_store(tmp_path)
    (tmp_path / "taken").write_text("x")
    assert main(["report", str(store_path), "-o", str(tmp_path / "taken")]) == 2
    one_error(capsys, f"{tmp_path / 'taken'}: exists and is not a folder (EEXIST)")
