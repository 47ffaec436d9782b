"""The few-data study: grid, splits, resumable store (SIGKILL), local vs Ray, report from a fixture store."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from melfront.errors import ParameterError, StudyError
from melfront.study import (ResultStore, StudyConfig, Trial, load_clips, plan, run_study, runs_for_n,
                            split_for_trial)
from melfront.report import difference_table, summary_table, write_report

TINY_SYNTH = dict(n_classes=3, clips_per_class=8, duration=0.5, sample_rate=8000, seed=0, n_folds=4)


def tiny_config(tmp_path, **kw):
    values = dict(dataset="synth", root=str(tmp_path / "synth"), dataset_options=TINY_SYNTH,
                  frontends=["db", "logeps"], models=["vgg"], n_per_class=[1, 2], runs={"default": 2},
                  test_folds="first", mel=dict(sample_rate=8000, n_fft=256, hop_length=128, n_mels=32),
                  train=dict(epochs=2, patch_frames=32, batch_size=8))
    values.update(kw)
    return StudyConfig(**values)


def test_runs_for_n_follows_pons():
    assert [runs_for_n(n) for n in (1, 2, 5, 10, 20, 50, 100)] == [20, 20, 10, 10, 5, 5, 5]


def test_plan_covers_the_grid(tmp_path):
    from melfront.data import dataset
    config = tiny_config(tmp_path, runs={}, test_folds="all")
    clips = dataset("synth", config.root, **TINY_SYNTH)
    trials = plan(config, clips)
    # 4 folds x (20 runs for n=1 + 20 runs for n=2) x 1 model x 2 frontends
    assert len(trials) == 4 * 40 * 2 == len(set(trials))
    assert len({t.key(config) for t in trials}) == len(trials)


def test_split_is_reproducible_and_disjoint(tmp_path):
    from melfront.data import dataset
    config = tiny_config(tmp_path)
    clips = dataset("synth", config.root, **TINY_SYNTH)
    train, test, note = split_for_trial(config, clips, clips.folds[0], 2, 1)
    again, _, _ = split_for_trial(config, clips, clips.folds[0], 2, 1)
    assert [c.path for c in train] == [c.path for c in again]
    assert not {c.path for c in train} & {c.path for c in test}
    assert all(str(c.fold) == str(clips.folds[0]) for c in test) and note == "official folds"
    counts = np.bincount([c.label for c in train], minlength=3)
    assert counts.tolist() == [2, 2, 2]
    other_run, _, _ = split_for_trial(config, clips, clips.folds[0], 2, 0)
    assert [c.path for c in other_run] != [c.path for c in train]


def test_single_fold_data_falls_back_to_a_within_fold_split(tmp_path):
    from melfront.data import dataset
    opts = dict(TINY_SYNTH, n_folds=1)
    config = tiny_config(tmp_path, dataset_options=opts, root=str(tmp_path / "one"))
    clips = dataset("synth", config.root, **opts)
    train, test, note = split_for_trial(config, clips, clips.folds[0], 2, 0)
    assert "within fold" in note
    assert len(test) == 3 * (8 // 3)
    assert not {c.path for c in train} & {c.path for c in test}


def fake_trial(clips, *, frontend, model, train_clips, test_clips, seed, **kw):
    """A deterministic stand-in for training: accuracy is a function of the inputs only."""
    rng = np.random.default_rng([seed, len(frontend), len(train_clips)])
    return dict(accuracy=float(rng.uniform(0.3, 0.9)), map=float(rng.uniform(0.3, 0.9)), train_seconds=0.01,
                learned={"alpha": [1.0, 2.0]} if frontend == "db" else {})


def test_store_never_duplicates_and_resume_skips_done(tmp_path):
    config = tiny_config(tmp_path)
    store = run_study(config, tmp_path / "s.db", trial_fn=fake_trial, quiet=True)
    first = store.rows()
    assert len(first) == len(plan(config, load_clips(config)))
    calls = []
    run_study(config, tmp_path / "s.db", quiet=True, trial_fn=lambda *a, **k: calls.append(1) or fake_trial(*a, **k))
    assert calls == [] and store.rows() == first


def test_store_refuses_a_different_study(tmp_path):
    run_study(tiny_config(tmp_path), tmp_path / "s.db", trial_fn=fake_trial, quiet=True)
    with pytest.raises(StudyError, match="different configuration"):
        run_study(tiny_config(tmp_path, seed=5), tmp_path / "s.db", trial_fn=fake_trial, quiet=True)


KILL_SCRIPT = """
import sys, time
sys.path.insert(0, {tests!r})
from test_study import tiny_config, fake_trial
from melfront.study import run_study
from pathlib import Path

def slow_trial(*a, **k):
    time.sleep(0.25)
    return fake_trial(*a, **k)

run_study(tiny_config(Path({tmp!r})), {db!r}, trial_fn=slow_trial, quiet=True)
"""


def test_sigkill_mid_study_loses_nothing_finished_and_resume_completes(tmp_path):
    tests = os.path.dirname(__file__)
    db = str(tmp_path / "killed.db")
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT.format(tests=tests, tmp=str(tmp_path), db=db))
    proc = subprocess.Popen([sys.executable, str(script)])
    deadline = time.time() + 60
    done = 0
    while time.time() < deadline:
        time.sleep(0.1)
        if os.path.exists(db):
            try:
                with sqlite3.connect(db, timeout=5) as con:
                    done = con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
            except sqlite3.OperationalError:
                continue
            if done >= 3:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert done >= 3
    partial = ResultStore(db).rows()
    total = len(plan(tiny_config(tmp_path), load_clips(tiny_config(tmp_path))))
    assert 3 <= len(partial) < total
    resumed = run_study(tiny_config(tmp_path), db, trial_fn=fake_trial, quiet=True).rows()
    reference = run_study(tiny_config(tmp_path), tmp_path / "ref.db", trial_fn=fake_trial, quiet=True).rows()
    strip = lambda rows: sorted((r["key"], r["accuracy"], r["map"]) for r in rows)
    assert strip(resumed) == strip(reference)
    assert len({r["key"] for r in resumed}) == len(resumed) == total
    # the rows finished before the kill are untouched
    before = {r["key"]: r["finished"] for r in partial}
    assert all(r["finished"] == before[r["key"]] for r in resumed if r["key"] in before)


def make_fixture_store(path):
    """A store with known numbers: 'loglearn' beats 'logeps' by 10 points in every paired run."""
    config = StudyConfig(dataset="synth", frontends=["logeps", "loglearn"], models=["sbcnn", "timbre"],
                         n_per_class=[1, 5], runs={"default": 4}, compare=[["logeps", "loglearn"]],
                         mel=dict(sample_rate=8000, n_mels=16, n_fft=256, hop_length=128),
                         dataset_options=dict(TINY_SYNTH))
    store = ResultStore(path)
    store.save_config(config)
    rng = np.random.default_rng(0)
    expected = {}
    for model in config.models:
        for n in config.n_per_class:
            for run in range(4):
                base = 0.4 + 0.05 * n + rng.normal(0, 0.03)
                for fe, acc in (("logeps", base), ("loglearn", base + 0.10 + rng.normal(0, 0.005))):
                    trial = Trial(1, n, run, model, fe)
                    learned = {"alpha": [float(np.exp(7) + run)], "beta": [0.5]} if fe == "loglearn" else {}
                    store.add(trial.key(config), trial, config, dict(accuracy=acc, map=acc - 0.05, train_seconds=1.0,
                                                                     learned=learned))
                    expected.setdefault((model, fe, n), []).append(acc)
    return config, expected


def test_report_tables_from_fixture_store(tmp_path):
    config, expected = make_fixture_store(tmp_path / "fixture.db")
    rows = ResultStore(tmp_path / "fixture.db").rows()
    table = summary_table(rows)
    for (model, fe, n), accs in expected.items():
        mean, std, count = table[(model, fe)][n]
        assert count == 4
        assert mean == pytest.approx(np.mean(accs)) and std == pytest.approx(np.std(accs, ddof=1))
    diffs = difference_table(rows, "logeps", "loglearn")
    for model in config.models:
        for n in config.n_per_class:
            d = diffs[model][n]
            assert d["count"] == 4 and d["mean"] == pytest.approx(0.10, abs=0.01) and d["p"] < 0.01


def test_report_files(tmp_path):
    make_fixture_store(tmp_path / "fixture.db")
    page = write_report(tmp_path / "fixture.db", tmp_path / "report")
    text = page.read_text()
    md = (tmp_path / "report" / "report.md").read_text()
    assert "loglearn − logeps" in md and "| sbcnn |" in md
    # accuracy, MAP, the difference and how far the learned parameters moved
    assert text.count("<table>") == 4 and "data:image/png;base64," in text and 'class="sig"' in text
    for name in ("accuracy_vs_n.png", "map_vs_n.png", "learned_parameters.png"):
        assert (tmp_path / "report" / name).read_bytes()[:4] == b"\x89PNG"


def test_report_on_empty_store_is_a_clear_error(tmp_path):
    store = ResultStore(tmp_path / "empty.db")
    with pytest.raises(StudyError, match="no finished trials"):
        write_report(store.path, tmp_path / "r")


def test_real_training_grid_local_equals_ray(tmp_path):
    """The same small grid, trained for real, gives identical rows locally and on a local Ray instance."""
    config = tiny_config(tmp_path, frontends=["db", "pcen(trainable=True)"], n_per_class=[2], runs={"default": 1})
    local = run_study(config, tmp_path / "local.db", quiet=True).rows()
    assert len(local) == 2
    for r in local:  # the stored accuracy is the test fold's: 3 classes x 2 clips, scored by the confusion matrix
        m = r["metrics"]
        confusion = np.array(m["confusion"])
        assert confusion.shape == (3, 3) and confusion.sum() == m["n_test"] == 6 and m["n_train"] == 2 * 3
        assert r["accuracy"] == pytest.approx(np.trace(confusion) / 6) and m["epochs"] == 2
        # the worst ranking of a class's 2 clips among 6 has AP (1/5 + 2/6) / 2 = 0.267
        assert m["split"] == "official folds" and 0.266 < r["map"] <= 1.0
    pcen = [r["learned"] for r in local if r["frontend"].startswith("pcen")][0]
    assert set(pcen) >= {"alpha", "delta", "r", "s"} and all(np.isfinite(v).all() for v in pcen.values())
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = run_study(config, tmp_path / "ray.db", ray_address="local", quiet=True).rows()
    finally:
        ray.shutdown()
    key = lambda rows: sorted((r["key"], r["accuracy"], r["map"], json.dumps(r["learned"])) for r in rows)
    assert key(remote) == key(local)


def test_trial_key_depends_on_its_own_model_settings_only(tmp_path):
    base = tiny_config(tmp_path, models=["vgg", "sbcnn"])
    other = tiny_config(tmp_path, models=["vgg", "sbcnn"],
                        train=dict(base.train, models={"sbcnn": {"model_options": {"input_bn": True}}}))
    vgg, sb = Trial(1, 1, 0, "vgg", "db"), Trial(1, 1, 0, "sbcnn", "db")
    assert vgg.key(base) == vgg.key(other)
    assert sb.key(base) != sb.key(other)


def test_bad_config_names_the_field(tmp_path):
    with pytest.raises(ParameterError, match=r"n_per_class\[1\] must be a positive integer"):
        tiny_config(tmp_path, n_per_class=[1, 0]).validate()
    with pytest.raises(ParameterError, match="models: unknown model 'nope'"):
        tiny_config(tmp_path, models=["nope"]).validate()
    with pytest.raises(ParameterError, match="unknown frontend"):
        tiny_config(tmp_path, frontends=["db", "nope"]).validate()
    with pytest.raises(ParameterError, match="profile"):
        StudyConfig.from_profile("huge")
    cfg = tmp_path / "study.yaml"
    cfg.write_text("dataset: synth\nepochs: 3\n")
    with pytest.raises(ParameterError, match=r"study\.yaml: unknown study setting\(s\) \['epochs'\]"):
        StudyConfig.from_file(cfg)
    cfg.write_text("dataset: [synth\n")
    with pytest.raises(StudyError, match="study.yaml: not a valid YAML study config"):
        StudyConfig.from_file(cfg)
    with pytest.raises(ParameterError, match=r"test_folds: fold\(s\) \[9\]"):
        run_study(tiny_config(tmp_path, test_folds=[9]), tmp_path / "s.db", trial_fn=fake_trial, quiet=True)


def test_a_file_that_is_not_a_store_is_a_study_error(tmp_path):
    bad = tmp_path / "study.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StudyError, match="study.db: not a melfront results store"):
        ResultStore(bad)
