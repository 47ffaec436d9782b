"""The tax2017 preset and Tax et al.'s per-fold MST protocol (melfront.mst.protocol): published values, plan()
on complete and incomplete ESC-50 layouts, early stopping of the MSTModel, fold averaging, a tiny full run."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from melfront.errors import ParameterError, StudyError
from melfront.mst import peak_normalise, train_mst
from melfront.mst.learn import levels_off
from melfront.mst.protocol import FOLD_PAIRS, ProtocolSettings, average_curves, fold_splits
from melfront.mst.segments import load_segments
from melfront.presets import STATUSES, get_preset

# The published protocol, written out: Tax et al.'s released code (corticph/MSTmodel) unless marked.
PUBLISHED = {
    "dataset": "esc50",
    "folds.pairs": [[1, 2], [2, 3], [3, 4], [4, 5], [5, 1]],
    "mel.sample_rate": 22050, "mel.n_fft": 1024, "mel.hop_length": 512, "mel.n_mels": 60,
    "segment.frames": 101, "segment.overlap": 0.5, "segment.silence_db": -72.0,
    "augment.copies": 4, "augment.seed": 41,
    "mst.optimizer": "adam", "mst.lr": 3e-4, "mst.batch_size": 100, "mst.max_epochs": 800, "mst.patience": 50,
    "train.lr": 5e-3, "train.batch_size": 500, "train.epochs": 200, "train.drop_last": True,
}
STATUS = {"mst.batch_norm": "read", "mst.loss": "read", "segment.peak_normalise": "read",  # issue 21
          "train.finetune_lr_scale": "unfixed",
          "train.d.branch_epoch": "unfixed", "mst.init_output": "unfixed", "folds.pairs": "read",
          "augment.copies": "read", "train.batch_size": "read", "train.epochs": "read"}

SR = 22050
TINY = dict(mst_model_options={"n_filters": 8, "n_hidden": 8}, mst_epochs=2, mst_patience=1, epochs=2,
            hidden=8, batch_size=4, copies=1, mst_batch_size=4)


def _esc50(root, folds=(1, 2, 3, 4, 5), per_class=1, classes=(0, 1), extra=(), listed_missing=()):
    """An ESC-50 layout with 1.2 s clips (one zero-padded 101-frame segment each): class 0 a low tone,
    class 1 a high one; ``extra``: (fold, target) clips beyond the complete folds."""
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    t = np.arange(int(1.2 * SR)) / SR
    rng = np.random.default_rng(0)
    src = 100000
    wanted = [(f, c) for f in folds for c in classes for _ in range(per_class)] + list(extra)
    for fold, target in wanted:
        src += 1
        name = f"{fold}-{src}-A-{target}.wav"
        x = np.sin(2 * np.pi * (300 if target == 0 else 3000) * (1 + 0.02 * rng.standard_normal()) * t)
        sf.write(root / "audio" / name, (0.3 * x * np.hanning(len(t))).astype(np.float32), SR)
        rows.append(f"{name},{fold},{target},c{target},False,{src},A")
    for fold, target in listed_missing:
        src += 1
        rows.append(f"{fold}-{src}-A-{target}.wav,{fold},{target},c{target},False,{src},A")
    (root / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")
    return root


def test_settings_match_the_published_protocol():
    preset = get_preset("tax2017")
    values = preset.values()
    for key, value in PUBLISHED.items():
        assert values[key] == value, key
    for key, status in STATUS.items():
        assert preset.setting(key).status == status, key
    assert [list(p) for p in FOLD_PAIRS] == PUBLISHED["folds.pairs"]
    for s in preset.settings:
        assert s.source.strip() and s.status in STATUSES
    d = ProtocolSettings()
    assert (d.copies, d.segment_frames, d.overlap, d.silence_db, d.augment_seed) == (4, 101, 0.5, -72.0, 41)
    assert (d.mst_lr, d.mst_batch_size, d.mst_epochs, d.mst_patience) == (3e-4, 100, 800, 50)
    assert (d.optimizer, d.lr, d.batch_size, d.epochs + d.finetune_epochs) == ("sgd", 5e-3, 500, 200)
    assert d.mel == {"sample_rate": 22050, "n_fft": 1024, "hop_length": 512, "n_mels": 60}
    assert [c.pair for c in preset.claims] == [("a", "c"), ("a", "b"), ("c", "d")]
    assert "open question" in preset.claims[2].text


def test_fold_splits_train_on_the_other_three_folds(tmp_path):
    from melfront.data import dataset
    clips = dataset("esc50", _esc50(tmp_path / "d"))
    splits = fold_splits(clips)
    assert [(s["validation"], s["test"]) for s in splits] == [(1, 2), (2, 3), (3, 4), (4, 5), (5, 1)]
    for s in splits:
        assert sorted({c.fold for c in s["train"]}) == sorted(set(range(1, 6)) - {s["validation"], s["test"]})
        assert {c.fold for c in s["val"]} == {s["validation"]} and {c.fold for c in s["test_clips"]} == {s["test"]}


def test_plan_full_protocol_with_five_folds(tmp_path):
    root = _esc50(tmp_path / "d")
    preset = get_preset("tax2017")
    plan = preset.plan(root)
    assert plan.reduced == [] and plan.overrides == [] and plan.title == "tax2017"
    assert len(plan.grid) == 5 * 4 and {g["arm"] for g in plan.grid} == {"a", "b", "c", "d"}
    assert {(g["validation"], g["test"]) for g in plan.grid} == set(FOLD_PAIRS)
    assert {g["epochs"] for g in plan.grid if g["arm"] != "d"} == {200}
    text = preset.dry_run(plan, time_one=False)
    assert "5 MSTModel(s), 20 arm trainings" in text and "reduced" not in text


def test_plan_declares_the_reduced_version_with_one_complete_fold(tmp_path):
    # fold 4 complete (3 clips per class), one clip of fold 2, and 2 listed clips of fold 1 absent on disk
    root = _esc50(tmp_path / "d", folds=(4,), per_class=5, extra=[(2, 0)], listed_missing=[(1, 0), (1, 1)])
    preset = get_preset("tax2017")
    plan = preset.plan(root, overrides={"epochs": 4, "mst_epochs": 3})
    assert plan.title == "tax2017 (reduced)" and len(plan.reduced) == 2
    assert "Only fold(s) 4 of folds 1-5 are complete" in plan.reduced[0]
    assert plan.overrides == ["epochs: 200 -> 4", "branch_epoch: 100 -> 2", "mst_epochs: 800 -> 3"]
    (split,) = plan.details["splits"]
    assert split["name"] == "holdout" and all(split[k] for k in ("train", "val", "test_clips"))
    names = [c.path for k in ("train", "val", "test_clips") for c in split[k]]
    assert len(names) == len(set(names)) == 11
    s = plan.details["settings"]
    assert (s.epochs, s.finetune_epochs, s.mst_epochs) == (2, 2, 3)
    assert "reduced: Only fold(s) 4" in preset.dry_run(plan, time_one=False)


def test_plan_refuses_what_it_cannot_run(tmp_path):
    preset = get_preset("tax2017")
    with pytest.raises(StudyError, match="fewer than 2 classes"):
        preset.plan(_esc50(tmp_path / "one", classes=(0,)))
    with pytest.raises(StudyError, match="does not exist"):
        preset.plan(tmp_path / "nowhere")
    root = _esc50(tmp_path / "d")
    with pytest.raises(ParameterError, match="cannot override 'runs'"):
        preset.plan(root, overrides={"runs": 2})
    with pytest.raises(ParameterError, match="branch_epoch"):
        preset.plan(root, overrides={"epochs": 2, "branch_epoch": 3})
    with pytest.raises(ParameterError, match="copies"):
        preset.plan(root, overrides={"copies": -1})


def test_shifted_copies_are_training_segments_only(tmp_path):
    root = _esc50(tmp_path / "d", folds=(1,))
    paths = sorted((root / "audio").glob("*.wav"))
    plain = load_segments(paths, progress=False)
    aug = load_segments(paths, progress=False, copies=4)
    assert plain.copy_index is None and len(plain) == 2
    assert len(aug) == 10 and aug.n_copies == 8 and aug.copy_index.tolist() == [0, 1, 2, 3, 4] * 2
    again = load_segments(paths, progress=False, copies=4)
    assert torch.equal(aug.waves, again.waves)  # seeded
    assert not torch.equal(aug.waves[0], aug.waves[1])  # a copy is shifted


def _signals(n, length, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(length) / 8000
    x = [np.sin(2 * np.pi * rng.uniform(100, 3500) * t) * rng.uniform(0.05, 1) for _ in range(n)]
    return peak_normalise(torch.tensor(np.array(x), dtype=torch.float32))


def test_mst_early_stopping_stops_restores_and_says_why():
    mel = dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=16)
    small = dict(n_filters=16, n_hidden=8)
    train, val = _signals(10, 512, 5), _signals(4, 512, 6)
    r = train_mst(train, val, mel, epochs=40, patience=2, batch_size=5, lr=0.3, model_options=small,
                  progress=False)
    mses = [h["val_mse"] for h in r.history]
    assert r.stopped == "patience" and len(mses) - 1 < 40
    assert len(mses) - 1 - r.best_epoch == 2 and r.val["mse"] == min(mses)
    capped = train_mst(train, val, mel, epochs=2, patience=5, batch_size=5, lr=1e-3, model_options=small,
                       progress=False, init_output=False)
    assert capped.stopped == "max_epochs" and len(capped.history) == 3
    assert all({"val_mse", "val_corr"} <= set(h) for h in capped.history)


def test_levels_off_finds_where_the_curve_flattens():
    h = [{"epoch": e, "val_corr": c} for e, c in enumerate([0.3, 0.7, 0.9, 0.946, 0.949, 0.95, 0.95])]
    assert levels_off(h) == 3 and levels_off(h, tol=0.0) == 5 and levels_off([]) is None
    h = [{"epoch": e, "val_mse": m} for e, m in enumerate([0.2, 0.1, 0.05, 0.049])]
    assert levels_off(h, "val_mse", tol=0.002, higher_is_better=False) == 2


def test_average_curves_over_folds():
    def fold(accs, arm="a"):
        return {arm: {"label": arm, "curve": [{"epoch": i + 1, "test_accuracy": a} for i, a in enumerate(accs)]}}
    avg = average_curves([fold([0.1, 0.5, 0.4]), fold([0.3, 0.3, 0.8]), fold([0.2, 0.4, 0.6])])["a"]
    assert [r["epoch"] for r in avg["curve"]] == [1, 2, 3] and [r["n_folds"] for r in avg["curve"]] == [3] * 3
    assert [round(r["mean"], 6) for r in avg["curve"]] == [0.2, 0.4, 0.6]
    assert avg["curve"][0]["std"] == pytest.approx(0.1)  # sample std of 0.1, 0.3, 0.2
    assert avg["final"]["mean"] == pytest.approx(0.6) and avg["final"]["std"] == pytest.approx(0.2)
    assert avg["best"]["mean"] == pytest.approx((0.5 + 0.8 + 0.6) / 3)
    one = average_curves([fold([0.5, 0.7])])["a"]
    assert one["curve"][1] == {"epoch": 2, "mean": 0.7, "std": 0.0, "n_folds": 1}


def _rows(out):
    from melfront.study import ResultStore
    store = ResultStore(out / "study.db")
    return store.rows(), store.failures()


def test_whole_protocol_runs_as_a_study_to_a_report(tmp_path):
    # the reduced version (one split) through the preset: rows in study.db, the report of any study, a rerun
    root = _esc50(tmp_path / "d", folds=(4,), per_class=5)
    preset = get_preset("tax2017")
    plan = preset.plan(root, overrides=TINY)
    out = tmp_path / "out"
    assert preset.run(plan, out, quiet=True) == 0
    rows, failures = _rows(out)
    assert failures == [] and sorted((r["model"], r["frontend"]) for r in rows) == \
        [("mst", "mst")] + [("piczak", arm) for arm in "abcd"]
    mst = next(r for r in rows if r["model"] == "mst")["metrics"]
    assert mst["epochs_run"] <= 2 and mst["stopped"] in ("patience", "max_epochs") and mst["history"][0]["epoch"] == 0
    assert (mst["n_train_segments"], mst["n_train_segments_from_copies"]) == (2 * mst["n_train_clips"],
                                                                              mst["n_train_clips"])  # 1 copy
    d = next(r for r in rows if r["frontend"] == "d")
    assert [h["epoch"] for h in d["metrics"]["history"]] == [1, 2]  # (d) branches off (c) after epoch 1
    a = next(r for r in rows if r["frontend"] == "a")
    assert len(a["metrics"]["history"]) == 2 and "val_accuracy" in a["metrics"]["history"][0]
    assert a["accuracy"] == a["metrics"]["history"][-1]["test_accuracy"]
    md = (out / "report" / "report.md").read_text()
    page = (out / "report" / "report.html").read_text()
    for text in ("tax2017 (reduced)", "Only fold(s) 4 of folds 1-5", "epochs: 200 -> 2", "## MSTModel per fold",
                 "## Test accuracy per arm (final and best epoch)", "(c) raw, MSTModel layers frozen",
                 "## Data per fold", "One fold: no spread over folds to show."):
        assert text in md, text
    assert "<h2>Test accuracy per arm (final and best epoch)</h2>" in page and "data:image/png;base64," in page
    assert (out / "report" / "accuracy_vs_epoch.png").is_file() and (out / "report" / "mst_learning_curves.png").is_file()
    assert (out / "fold_holdout" / "mst.pt").is_file() and not (out / "results.json").exists()
    # a rerun with the same settings trains nothing and keeps the rows
    before = {r["key"]: r["finished"] for r in rows}
    assert preset.run(plan, out, quiet=True) == 0
    assert {r["key"]: r["finished"] for r in _rows(out)[0]} == before


def test_a_fold_that_raises_fails_alone_and_a_rerun_redoes_no_finished_fold(tmp_path, monkeypatch):
    import melfront.mst.protocol as protocol
    from melfront.data import dataset
    clips = dataset("esc50", _esc50(tmp_path / "d"))
    splits = fold_splits(clips, FOLD_PAIRS[:2])
    settings = ProtocolSettings().replace(**{**TINY, "epochs": 1, "finetune_epochs": 0})
    real_arms, real_mst = protocol.train_fold_arms, protocol.train_mst
    calls = {"arms": 0, "mst": 0}

    def arms(*args, **kwargs):
        calls["arms"] += 1
        if calls["arms"] == 2:  # the second fold's arms break
            raise MemoryError("no room for the arms")
        return real_arms(*args, **kwargs)

    def mst(*args, **kwargs):
        calls["mst"] += 1
        return real_mst(*args, **kwargs)

    monkeypatch.setattr(protocol, "train_fold_arms", arms)
    monkeypatch.setattr(protocol, "train_mst", mst)
    out = tmp_path / "out"
    run = dict(dataset="esc50", meta={"name": "tax2017", "title": "t"}, progress=False, quiet=True)
    protocol.run_protocol(splits, clips.classes, out, settings, **run)
    rows, failures = _rows(out)
    assert calls == {"arms": 2, "mst": 2}
    assert sorted((r["fold"], r["frontend"]) for r in rows) == [("1-2", f) for f in ("a", "b", "c", "mst")] + \
        [("2-3", "mst")]
    assert sorted(f["frontend"] for f in failures) == ["a", "b", "c"]
    assert all(f["fold"] == "2-3" and f["error"] == "MemoryError: no room for the arms" for f in failures)
    # rerun: nothing finished is redone; failed rows only with retry_failed (the fold's MSTModel is loaded)
    protocol.run_protocol(splits, clips.classes, out, settings, **run)
    assert calls == {"arms": 2, "mst": 2}
    protocol.run_protocol(splits, clips.classes, out, settings, retry_failed=True, **run)
    rows, failures = _rows(out)
    assert calls == {"arms": 3, "mst": 2} and failures == [] and len(rows) == 8
    from melfront.report import write_report
    md = (write_report(out / "study.db", tmp_path / "report").parent / "report.md").read_text()
    assert "Mean ± sample standard deviation over 2 folds." in md and "| 1-2 |" in md


def test_protocol_rows_have_stable_keys_per_fold_and_arm():
    from melfront.data.base import Clip
    from melfront.mst.protocol import protocol_trials, study_config, trial_key
    clips = [Clip(f"{f}-{i}.wav", i % 2, "ab"[i % 2], f) for f in range(1, 6) for i in range(4)]
    splits = fold_splits(clips, FOLD_PAIRS[:2])
    s = ProtocolSettings()
    config = study_config(splits, s, "esc50", None, 8)
    trials = protocol_trials(splits, s, 8)
    keys = [trial_key(config, s, splits[0 if t.fold == "1-2" else 1], t) for t in trials]
    assert len(trials) == 10 and len(set(keys)) == 10
    assert config.frontends == ["a", "b", "c", "d"] and config.test_folds == ["1-2", "2-3"]
    other = s.replace(lr=1e-3)
    assert trial_key(config, other, splits[0], trials[1]) != keys[1]


def test_dry_run_estimate_times_real_steps(tmp_path):
    root = _esc50(tmp_path / "d", folds=(4,), per_class=5)
    preset = get_preset("tax2017")
    text = preset.dry_run(preset.plan(root, overrides=dict(TINY, mst_epochs=5)), time_one=True)
    line = next(t for t in text.splitlines() if t.startswith("estimated CPU time: "))
    assert " min" in line.split("...")[0] and "measured on" in line  # tiny models on tiny clips: minutes at most
    assert "early stopping decides the MSTModels' epochs: 2 at least, 5 at most" in line  # patience 1, cap 5
    shares = [float(t.split(": ")[1].split(" %")[0]) for t in text.splitlines()
              if t.startswith(("  MSTModel:", "  arm ("))]
    assert len(shares) >= 4 and abs(sum(shares) - 100) < 0.3
    assert "batches of 4" in text and "computed once" in text and "ms/segment" in text


def test_two_folds_side_by_side_in_worker_processes(tmp_path):
    # jobs=2: each fold's unit in its own spawned worker; every row stored, the same keys as one by one
    from melfront.data import dataset
    from melfront.mst.protocol import run_protocol
    clips = dataset("esc50", _esc50(tmp_path / "d"))
    splits = fold_splits(clips, FOLD_PAIRS[:2])
    settings = ProtocolSettings().replace(**{**TINY, "epochs": 1, "finetune_epochs": 0})
    out = tmp_path / "out"
    run_protocol(splits, clips.classes, out, settings, dataset="esc50", meta={"name": "tax2017", "title": "t"},
                 progress=False, quiet=True, jobs=2)
    rows, failures = _rows(out)
    assert failures == []
    assert sorted((r["fold"], r["frontend"]) for r in rows) == \
        [(fold, f) for fold in ("1-2", "2-3") for f in ("a", "b", "c", "mst")]
    assert (out / "fold_1-2" / "mst.pt").is_file() and (out / "fold_2-3" / "mst.pt").is_file()
