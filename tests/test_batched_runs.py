"""Batched runs (train/batched.py): the runs of a cell trained as one stacked model, each as if alone."""
import copy

import pytest
import torch

from melfront.errors import DivergenceError, TrainingError
from melfront.train import Trainer, build_classifier, resolve_settings
from melfront.train.batched import BatchedRuns, batch_reason, fit_runs

MEL = dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=52)


def _runs(m=3, front="loglearn", model="sbcnn", opts=None, **train):
    settings = dict(epochs=2, batch_size=3, lr=0.05, patch_frames=100, n_mels=52, clip_norm=0.5)
    settings.update(train)
    s = resolve_settings(model, settings)
    out = []
    for k in range(m):
        torch.manual_seed(100 + k)
        clf = build_classifier(front, model, 3, MEL, 100, opts or {})[0]
        out.append((clf, s, 100 + k))
    return out


def _trainers(runs):
    return [Trainer(copy.deepcopy(clf), s, seed=seed, device="cpu", progress=False) for clf, s, seed in runs]


def _data(m, n=7):
    g = torch.Generator().manual_seed(5)
    feats = [[torch.rand(52, 110 + 7 * i, generator=g) * (1 + i % 3) + 1e-3 for i in range(n)] for _ in range(m)]
    labels = [[(i + r) % 3 for i in range(n)] for r in range(m)]
    return feats, labels


@pytest.mark.parametrize("optimizer,momentum,model,opts", [("sgd", 0.0, "sbcnn", {}), ("sgd", 0.9, "sbcnn", {}),
                                                          ("adam", 0.0, "sbcnn", {}),
                                                          ("sgd", 0.0, "sbcnn", {"input_bn": True}),
                                                          ("sgd", 0.0, "vgg", {"width": 4})])
def test_batched_equals_alone(optimizer, momentum, model, opts, one_thread):
    """Same seeds: each run's weights after k steps (2 epochs of 2 steps, dropout on) equal training it alone;
    batch norm's running statistics too."""
    runs = _runs(optimizer=optimizer, momentum=momentum, lr=0.01 if optimizer == "adam" else 0.05, model=model,
                 opts=opts)
    feats, labels = _data(len(runs))
    alone, together = _trainers(runs), _trainers(runs)
    hist_alone = [t.fit(f, lab) for t, f, lab in zip(alone, feats, labels)]
    hist_batched = BatchedRuns(together).fit(feats, labels)
    for a, b, ha, hb in zip(alone, together, hist_alone, hist_batched):
        for (name, pa), pb in zip(a.model.named_parameters(), b.model.parameters()):
            if optimizer == "adam":
                # Adam divides by sqrt(v): a gradient near 0 turns rounding into steps of up to lr (0.01), so a
                # few elements differ by more than float rounding; the rest agree to 1e-5
                assert float((pb - pa).detach().abs().max()) < 2e-4, name
                assert float(((pb - pa).detach().abs() > 1e-5).float().mean()) < 0.01, name
            else:
                torch.testing.assert_close(pb, pa, rtol=1e-4, atol=1e-5, msg=name)
        for ea, eb in zip(ha, hb):
            assert eb["epoch"] == ea["epoch"] and abs(eb["loss"] - ea["loss"]) < 1e-4 * max(1.0, abs(ea["loss"]))
            assert eb["accuracy"] == ea["accuracy"]
        for (name, ba), bb in zip(a.model.named_buffers(), b.model.buffers()):
            torch.testing.assert_close(bb, ba, rtol=1e-4, atol=1e-5, msg=name)
        assert b.epoch == 2 and b.finished
    # the runs differ from one another (other seeds, other data): nothing was shared by mistake
    last = [list(t.model.parameters())[-2] for t in together]
    assert not torch.allclose(last[0], last[1])
    # and training moved the weights
    assert not torch.allclose(last[0], list(runs[0][0].parameters())[-2])


def test_predict_after_batched_equals_alone(one_thread):
    runs = _runs(m=2, epochs=1)
    feats, labels = _data(2, n=4)
    alone, together = _trainers(runs), _trainers(runs)
    for t, f, lab in zip(alone, feats, labels):
        t.fit(f, lab)
    BatchedRuns(together).fit(feats, labels)
    for a, b, f in zip(alone, together, feats):
        assert abs(a.predict(f) - b.predict(f)).max() < 1e-4


def test_one_diverging_run_fails_alone(one_thread):
    runs = _runs(m=3, epochs=1, clip_norm=None, lr=0.05)
    feats, labels = _data(3, n=4)
    feats[1] = [f * float("inf") for f in feats[1]]  # run 1's data overflow: its loss is not finite
    together = _trainers(runs)
    out = BatchedRuns(together).fit(feats, labels)
    assert isinstance(out[1], DivergenceError) and "diverged" in str(out[1])
    assert isinstance(out[0], list) and isinstance(out[2], list)
    alone = _trainers(runs)
    alone[0].fit(feats[0], labels[0])
    torch.testing.assert_close(together[0].model.backbone.head[-1].weight, alone[0].model.backbone.head[-1].weight,
                               rtol=1e-4, atol=1e-5)
    assert not together[1].finished


def test_reasons_and_fallback(one_thread):
    assert batch_reason(_trainers(_runs(m=2))) is None
    assert "frontend" in batch_reason(_trainers(_runs(m=2, front="pcen")))
    assert "patience" in batch_reason(_trainers(_runs(m=2, patience=3)))
    assert "bf16" in batch_reason(_trainers(_runs(m=2, precision="bf16")))
    with pytest.raises(TrainingError, match="frontend"):
        BatchedRuns(_trainers(_runs(m=2, front="pcen")))
    # fit_runs falls back to one run after another, and a failing run is that run's outcome only
    runs = _runs(m=2, epochs=1, front="pcen")
    feats, labels = _data(2, n=4)
    feats[0] = []
    out = fit_runs(_trainers(runs), feats, labels, policy="batched")
    assert isinstance(out[0], Exception) and isinstance(out[1], list) and len(out[1]) == 1


def test_run_trials_equals_run_trial(tmp_path, one_thread):
    """A cell's runs through run_trials (batched) give each run the row run_trial gives it alone."""
    from melfront.data import dataset
    from melfront.train import run_trial
    from melfront.train.batched import run_trials
    clips = dataset("synth", root=str(tmp_path), n_classes=3, clips_per_class=4, duration=0.5, sample_rate=8000,
                    n_folds=2)
    train = dict(epochs=2, batch_size=3, lr=0.05, patch_frames=100, n_mels=52, clip_norm=1.0)
    train_clips = clips.by_fold(1)
    runs = [dict(train_clips=train_clips[k:] + train_clips[:k], test_clips=clips.by_fold(2), seed=7 + k)
            for k in range(3)]
    together = run_trials(clips, frontend="loglearn", model="sbcnn", runs=runs, mel=MEL, train=train, cache=False,
                          device="cpu", policy="batched")
    for run, got in zip(runs, together):
        alone = run_trial(clips, frontend="loglearn", model="sbcnn", train_clips=run["train_clips"],
                          test_clips=run["test_clips"], mel=MEL, train=train, seed=run["seed"], cache=False,
                          device="cpu")
        assert got["confusion"] == alone["confusion"] and got["n_train"] == alone["n_train"]
        assert abs(got["map"] - alone["map"]) < 1e-6
        assert [h["epoch"] for h in got["history"]] == [1, 2]
        for a, b in zip(got["learned"]["alpha"], alone["learned"]["alpha"]):
            assert abs(a - b) <= 1e-4 * abs(b)


def test_study_cells_as_units_store_the_rows_of_runs_alone(tmp_path, monkeypatch, one_thread):
    """run_study with batched cells (MELFRONT_BATCHED_RUNS=batched) stores one row per run, equal to the rows of
    the study run one trial at a time."""
    from melfront.study import StudyConfig, run_study
    config = dict(dataset="synth", root=str(tmp_path / "synth"),
                  dataset_options=dict(n_classes=2, clips_per_class=4, duration=0.5, sample_rate=8000, n_folds=2),
                  frontends=["logeps", "loglearn"], models=["sbcnn"], n_per_class=[2], runs={"default": 2},
                  test_folds="first", mel=dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=52),
                  train=dict(epochs=1, patch_frames=100, batch_size=4, lr=0.05))
    import melfront.train.batched as batched
    used = []
    real_fit = batched.BatchedRuns.fit
    monkeypatch.setattr(batched.BatchedRuns, "fit", lambda self, *a: used.append(len(self.trainers)) or real_fit(self, *a))
    rows = {}
    for mode in ("alone", "batched"):
        monkeypatch.setenv("MELFRONT_BATCHED_RUNS", mode)
        store = run_study(StudyConfig(**config), tmp_path / mode / "study.db", quiet=True, progress=False)
        rows[mode] = {(r["frontend"], r["run"]): r for r in store.rows()}
    assert used == [2, 2]  # the two cells (one per frontend) of two runs each, batched; none when "alone"
    assert len(rows["batched"]) == 4 and rows["batched"].keys() == rows["alone"].keys()
    for key, alone in rows["alone"].items():
        assert rows["batched"][key]["accuracy"] == alone["accuracy"], key
