"""The dry-run estimate's arithmetic, checked exactly with a stand-in step timer (no timing asserted)."""
import math

import numpy as np
import pytest
import soundfile

import melfront.study.estimate as estimate
from melfront.cli import main
from melfront.presets import get_preset
from melfront.presets.compare import _estimate
from melfront.study import StudyConfig, load_clips, plan
from melfront.study.estimate import (EVAL_PRICERS, StepCost, epoch_range, epoch_work, estimate_lines,
                                     estimate_study, eval_patches, price_trial)
from melfront.study.splits import split_for_trial

COST = StepCost(step=0.5, patch=0.25, eval_patch=0.125, features=0.0625)


class StandIn:
    """A step timer that measures nothing: fixed costs, and a record of what it was asked."""

    def __init__(self, cost=COST):
        self.cost, self.calls = cost, []

    def __call__(self, model, frontend, s, mel, n_classes, eval_frames=None):
        self.calls.append((model, frontend, s["patch_frames"], mel["n_mels"], n_classes, eval_frames))
        return self.cost


def test_patches_per_clip_follow_duration_hop_and_patch_length():
    frames = 1 + 4 * 44100 // 1024  # a 4-s clip at 44.1 kHz, hop 1024 (centred frames): 173
    assert eval_patches(frames, 128, 1) == 46  # the issue's count for Pons et al.'s hop-1 evaluation
    assert eval_patches(frames, 128, 42) == 3  # 0, 42 and the tail at 45
    assert eval_patches(frames, 128, 128) == 2
    assert eval_patches(100, 128, 1) == 1  # shorter than a patch: repeat-padded to one


def test_random_sampling_epoch_and_trial_price_exactly():
    s = dict(sampling="random", batch_size=256, epochs=199, patience=None, max_epochs=1000, patch_frames=128,
             eval_hop=1)
    assert epoch_work(s, 100, 10) == (1, 100, 0, 100)
    assert epoch_work(s, 257, 10) == (1, 256, 0, 256)  # 256 + 1: the batch of one is dropped
    assert epoch_work(s, 600, 10) == (3, 600, 0, 600)
    p = price_trial("sbcnn", s, 100, 10, [173] * 8, COST)
    assert p.epochs == (199, 199)
    assert p.train_low == p.train_high == 199 * (1 * 0.5 + 100 * 0.25)
    assert p.evaluation == 8 * 46 * 0.125


def test_patience_gives_a_range_of_epochs():
    s = dict(sampling="random", batch_size=4, epochs=None, patience=200, max_epochs=1000, patch_frames=8,
             eval_hop=8)
    assert epoch_range(s) == (201, 1000)
    assert epoch_range(dict(s, epochs=7)) == (7, 7)
    p = price_trial("vgg", s, 8, 2, [], COST)
    assert (p.train_low, p.train_high) == (201 * (2 * 0.5 + 8 * 0.25), 1000 * (2 * 0.5 + 8 * 0.25))


def test_episodes_count_support_query_and_prototypes():
    s = dict(sampling="episodes", episodes_per_epoch=None, query_per_class=5, support_per_class=5,
             support="fixed", batch_size=None)
    # n = 10 of 10 classes: ceil(100 / 50) = 2 episodes of 10 x (5 + 5) patches, prototypes of 50 patches;
    # early stopping watches the training accuracy of 2 x 50 query patches
    assert epoch_work(s, 100, 10) == (2, 200, 50, 100)
    # n = 1: one episode of 10 x (1 + 5); support="episode": prototypes from every evaluation patch (3 a clip)
    s42 = dict(s, patch_frames=128, eval_hop=42)
    assert epoch_work(dict(s42, support="episode"), 10, 10, [173] * 10) == (1, 60, 30, 50)
    # Pons et al.'s monitor: every training clip evaluated each epoch (3 patches a 4-s clip), accuracy out of n_train
    assert epoch_work(dict(s42, monitor="train_clip_accuracy"), 10, 10, [173] * 10) == (1, 60, 30 + 10, 10)
    p = price_trial("protonet", dict(s42, epochs=None, patience=200, max_epochs=1000), 100, 10, [173], COST)
    per_epoch = 2 * 0.5 + 200 * 0.25 + 50 * 0.125
    assert (p.train_low, p.train_high, p.evaluation) == (201 * per_epoch, 1000 * per_epoch, 3 * 0.125)
    # a never-reset counter bounds the epochs: 1 + (accuracy levels: 10 clips) + patience
    total = dict(s42, epochs=None, patience=201, max_epochs=None, patience_count="total",
                 monitor="train_clip_accuracy")
    assert price_trial("protonet", total, 10, 10, [173], COST, [173] * 10).epochs == (202, 212)


def test_segment_sampling_counts_every_segment():
    s = dict(sampling="all", batch_size=32)
    s = dict(s, patch_frames=32, segment_hop=16)
    # clips of 128 frames: segments at 0, 16, ..., 96 = 7 each
    assert epoch_work(s, 10, 2, [128] * 10) == (3, 70, 0, 70)
    assert epoch_work(s, 5, 2, [112] * 5) == (1, 30, 0, 30)  # 6 each
    assert epoch_work(s, 11, 2, [112] * 11) == (3, 66, 0, 66)  # 66 = 2 x 32 + 2
    assert epoch_work(dict(s, batch_size=13), 11, 2, [112] * 11) == (5, 65, 0, 65)  # 66 = 5 x 13 + 1: dropped


def test_a_registered_evaluation_pricer_replaces_the_patch_loop(monkeypatch):
    s = dict(patch_frames=128, eval_hop=1)
    assert estimate.price_evaluation("sbcnn", s, [173, 173], COST) == 2 * 46 * 0.125
    monkeypatch.setitem(EVAL_PRICERS, "sbcnn", lambda s, frames, cost: len(frames) * cost.eval_patch * 2)
    assert estimate.price_evaluation("sbcnn", s, [173, 173], COST) == 0.5
    assert estimate.price_evaluation("vgg", s, [173, 173], COST) == 2 * 46 * 0.125


def _synth_config(tmp_path, **train):
    return StudyConfig(root=str(tmp_path / "synth"), n_per_class=[1, 2], runs={"default": 2},
                       models=["sbcnn", "vgg"], frontends=["db", "stack(db, pcen)"], test_folds="first",
                       train=dict(dict(epochs=3, batch_size=4), **train),
                       mel=dict(sample_rate=8000, n_fft=256, hop_length=128, n_mels=32),
                       dataset_options=dict(n_classes=2, clips_per_class=6, duration=1.0, sample_rate=8000,
                                            n_folds=2))


def test_study_estimate_adds_every_trial_exactly(tmp_path):
    config = _synth_config(tmp_path, patch_frames=32, eval_hop=8)
    clips = load_clips(config)
    trials = plan(config, clips)
    timer = StandIn()
    est = estimate_study(config, clips, trials, timer=timer)
    # one timing per model and input channels (db: 1, the stack: 2), at the study's input size, evaluation
    # timed on a clip of the test clips' median length (1-s clips: 63 frames)
    frames = 1 + 8000 // 128  # 1-s clips: 63 frames -> patches at 0, 8, ..., 24 and the tail at 31
    assert sorted(timer.calls) == sorted([(m, fe, 32, 32, 2, frames) for m in ("sbcnn", "vgg")
                                          for fe in ("db", "stack(db, pcen)")])
    per_clip_eval = eval_patches(frames, 32, 8) * 0.125
    for model in ("sbcnn", "vgg"):
        want_train = want_eval = 0.0
        for t in (t for t in trials if t.model == model):
            train, test, _ = split_for_trial(config, clips, t.fold, t.n, t.run)
            steps = math.ceil(len(train) / 4)
            want_train += 3 * (steps * 0.5 + len(train) * 0.25)
            want_eval += len(test) * per_clip_eval
        m = est.per_model[model]
        assert m["trials"] == 2 * 2 * 2  # n x runs x frontends
        assert m["train_low"] == pytest.approx(want_train) and m["evaluation"] == pytest.approx(want_eval)
    assert est.features == pytest.approx(len(clips) * 1.0 * 0.0625)  # every clip used once, 1 s each
    assert est.total() == est.total(high=True)


def test_lines_say_shares_range_and_machine(tmp_path):
    config = _synth_config(tmp_path, patch_frames=32)
    config.train["models"] = {"vgg": {"epochs": None, "patience": 4, "max_epochs": 50}}
    clips = load_clips(config)
    est = estimate_study(config, clips, plan(config, clips), timer=StandIn())
    lines = estimate_lines(est, jobs=4)
    low, high = est.total(), est.total(high=True)
    assert high > low
    assert lines[0].startswith("estimated CPU time") and "at most" in lines[0] and est.machine in lines[0]
    vgg = next(ln for ln in lines if ln.strip().startswith("vgg:"))
    share = 100 * (est.per_model["vgg"]["train_low"] + est.per_model["vgg"]["evaluation"]) / low
    assert f"{share:.1f} %" in vgg and "at 5 epochs ... " in vgg and "at 50" in vgg
    order = [ln.split(":")[0].strip() for ln in lines[1:3]]
    assert order == sorted(est.per_model, key=lambda m: -(est.per_model[m]["train_low"]
                                                          + est.per_model[m]["evaluation"]))
    assert any("--jobs 4" in ln for ln in lines)


def _us8k(root, folds=(1, 2, 3), per_fold=3, classes=4, seconds=4.0, sr=1000):
    """A UrbanSound8K-shaped folder of short low-rate clips (the estimate reads headers only)."""
    import csv
    rows = []
    for fold in folds:
        for k in range(classes):
            for i in range(per_fold):
                fs = 1000 * fold + 10 * k + i
                rows.append([f"{fs}-{k}-0-0.wav", fs, 0, seconds, 1, fold, k, f"class{k}"])
    (root / "metadata").mkdir(parents=True)
    with open(root / "metadata" / "UrbanSound8K.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"])
        w.writerows(rows)
    for r in rows:
        (root / "audio" / f"fold{r[5]}").mkdir(parents=True, exist_ok=True)
        soundfile.write(str(root / "audio" / f"fold{r[5]}" / r[0]), np.zeros(int(seconds * sr), np.float32), sr)
    return root


def test_pons_preset_estimate_names_the_dominant_model_and_the_protonet_range(tmp_path):
    preset = get_preset("pons2019-us8k")
    p = preset.plan(root=_us8k(tmp_path / "UrbanSound8K"), overrides={"n_per_class": [1, 2]})
    protonet_heavy = StepCost(step=0.0, patch=0.18, eval_patch=0.06)
    light = StepCost(step=0.0, patch=0.012, eval_patch=0.0067)

    def timer(model, frontend, s, mel, n_classes, eval_frames=None):
        assert (s["patch_frames"], mel["n_mels"], mel["sample_rate"], eval_frames) == (128, 128, 44100, 173)
        return protonet_heavy if model == "protonet" else light

    lines = _estimate(preset, p, timer=timer)
    # the protonet's patience (200) decides its epochs; the reference sets no cap (max_epochs None)
    s = estimate_study(p.details["config"], p.details["clips"], p.grid[:1], timer=timer).per_model
    low = get_preset("pons2019-us8k").values()["train.protonet.patience"] + 1
    assert "at most" in lines[0] or "at least" in lines[0]
    assert lines[1].strip().startswith("protonet:") and f"at {low} epochs ... " in lines[1]
    assert s and "sbcnn" in s
    sbcnn = next(ln for ln in lines if ln.strip().startswith("sbcnn:"))
    assert "at 199 epochs" in sbcnn  # fixed epochs: no range
    # the sbcnn evaluation: every test clip (4 s) at hop 1 is 46 patches
    est = estimate_study(p.details["config"], p.details["clips"], p.grid, timer=timer)
    n_tests = sum(1 for g in p.grid if g["model"] == "sbcnn")
    per_fold_test = 3 * 4  # a fold's clips: 3 per class, 4 classes
    assert est.per_model["sbcnn"]["evaluation"] == pytest.approx(n_tests * per_fold_test * 46 * 0.0067)


def test_plain_compare_dry_run_prints_the_estimate(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(estimate, "measure_step_cost", StandIn())
    args = ["compare", "--dry-run", "-o", str(tmp_path / "s"), "--dataset", "synth", "--root", str(tmp_path / "d"),
            "--n", "1", "--runs", "1", "--epochs", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "total: 5 trials" in out and "estimated CPU time" in out
    shares = [float(ln.split(":")[1].split("%")[0]) for ln in out.splitlines()
              if ln.startswith(("  sbcnn:", "  features"))]
    assert len(shares) == 2 and sum(shares) == pytest.approx(100, abs=0.11)
    assert main(args + ["--no-estimate"]) == 0
    assert "estimated CPU time" not in capsys.readouterr().out


def test_real_timer_runs_the_trainers_own_evaluation(one_thread):
    """The default timer scores a clip through Trainer.predict (dense or batched, whichever applies)."""
    from melfront.train import resolve_settings
    mel = dict(sample_rate=8000, n_fft=256, hop_length=128, n_mels=32)
    s = resolve_settings("vgg", dict(patch_frames=32, n_mels=32, eval_hop=1, batch_size=4, model_options={"width": 4}))
    cost = estimate.measure_step_cost("vgg", "logeps", s, mel, 3, eval_frames=63)
    assert cost.patch > 0 and cost.eval_patch > 0 and cost.features > 0
    assert "63-frame clip" in cost.how
