"""The tax2017 preset and Tax et al.'s per-fold MST protocol (melfront.mst.protocol): published values, plan()
on complete and incomplete ESC-50 layouts, early stopping of the MSTModel, fold averaging, a tiny full run."""
from __future__ import annotations

import json

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


def test_whole_protocol_runs_to_a_report(tmp_path):
    # the reduced version (one split) through the preset: report, results, figures, exit status, reuse
    root = _esc50(tmp_path / "d", folds=(4,), per_class=5)
    preset = get_preset("tax2017")
    plan = preset.plan(root, overrides=TINY)
    out = tmp_path / "out"
    assert preset.run(plan, out, quiet=True) == 0
    results = json.loads((out / "results.json").read_text())
    (f,) = results["folds"]
    assert f["name"] == "holdout" and f["status"] == "ok" and results["failed"] == 0
    n_train = f["n_train_clips"]
    assert (f["n_train_segments"], f["n_train_segments_from_copies"]) == (2 * n_train, n_train)  # 1 copy, train only
    assert f["n_val_segments"] == f["n_val_clips"] and f["n_test_segments"] == f["n_test_clips"]
    assert f["mst"]["epochs_run"] <= 2 and f["mst"]["stopped"] in ("patience", "max_epochs")
    assert set(results["average"]) == {"a", "b", "c", "d"}
    assert [r["epoch"] for r in results["average"]["d"]["curve"]] == [1, 2]
    assert "val_accuracy" in f["arms"]["a"]["curve"][0]
    report = (out / "report.md").read_text()
    for text in ("# tax2017 (reduced)", "- Only fold(s) 4 of folds 1-5", "epochs: 200 -> 2", "## MSTModel per fold",
                 "one fold: no spread to test against", "open question", "| mst.lr | 0.0003 | read |", "## Failures"):
        assert text in report, text
    assert "| mean ± std |" not in report and " ± 0.0" not in report  # one fold: no spread is shown
    assert (out / "accuracy_vs_epoch.png").is_file() and (out / "mst_learning_curves.png").is_file()
    assert (out / "fold_holdout" / "mst.pt").is_file()
    # a rerun with the same settings reuses the finished fold
    assert preset.run(plan, out, quiet=True) == 0
    assert json.loads((out / "results.json").read_text())["folds"] == results["folds"]


def test_protocol_averages_folds_and_records_a_failed_fold(tmp_path):
    from melfront.data import dataset
    from melfront.mst.protocol import run_protocol
    clips = dataset("esc50", _esc50(tmp_path / "d"))
    splits = fold_splits(clips, FOLD_PAIRS[:2])
    splits.append(dict(splits[0], name="broken", val=[]))  # no validation clips: this fold fails
    settings = ProtocolSettings().replace(**{**TINY, "epochs": 1, "finetune_epochs": 0})
    results = run_protocol(splits, clips.classes, tmp_path / "out", settings, meta={"title": "t"}, progress=False)
    assert [f["status"] for f in results["folds"]] == ["ok", "ok", "failed"] and results["failed"] == 1
    assert "no val clips" in results["folds"][2]["error"]
    assert set(results["average"]) == {"a", "b", "c"}  # no (d) without fine-tuning epochs
    a = results["average"]["a"]["curve"]
    assert a[0]["n_folds"] == 2
    accs = [f["arms"]["a"]["curve"][0]["test_accuracy"] for f in results["folds"][:2]]
    assert a[0]["mean"] == pytest.approx(np.mean(accs)) and a[0]["std"] == pytest.approx(np.std(accs, ddof=1))
    assert "- fold broken: StudyError" in (tmp_path / "out" / "report.md").read_text()


def test_claims_reading_follows_the_fold_to_fold_noise():
    from melfront.mst.protocol import _claims_section

    def fold(a, c):
        return {"n_test_clips": 80, "arms": {k: {"curve": [{"test_accuracy": v}]} for k, v in (("a", a), ("c", c))}}
    claim = [{"pair": ["a", "c"], "text": "close"}]
    steady = _claims_section([fold(0.50, 0.60 + d) for d in (0.0, 0.01, -0.01, 0.02, -0.02)], claim)[-1]
    assert "+10.0 ± 1.6" in steady and "B better by 10.0 points" in steady and "excludes 0" in steady
    noisy = _claims_section([fold(0.50, 0.50 + d) for d in (0.10, -0.10, 0.05, -0.04, 0.0)], claim)[-1]
    assert "within the fold-to-fold noise" in noisy and "better" not in noisy
    one = _claims_section([fold(0.50, 0.45)], claim)[-1]
    assert "| -5.0 | 1 |" in one and "one test clip is 1.2 points" in one


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
