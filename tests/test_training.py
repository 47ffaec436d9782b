"""Training and evaluation: the trial dict, reproducibility, checkpoints (weights_only, version/shape errors),
resume, early stopping, optimiser groups and clipping, clip aggregation, metrics, and the train/evaluate/predict CLI.

Everything runs on a tiny synthetic set (3 classes x 4 clips x 1 s at 8 kHz), 32 mel bands, 32-frame
patches and a narrow VGG, so the whole file takes seconds.
"""
import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from melfront.cli import main
from melfront.data import dataset
from melfront.errors import CheckpointError, DivergenceError, ParameterError
from melfront.train import (Trainer, TrainSettings, aggregate, build_classifier, clip_features, clip_metrics,
                            load_checkpoint, load_classifier, resolve_settings, run_trial, save_checkpoint, split_folds,
                            train_classifier)

MEL = dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=32)
TRAIN = dict(epochs=2, batch_size=4, lr=0.01, patch_frames=32, n_mels=32, model_options={"width": 8})
SYNTH = dict(n_classes=3, clips_per_class=4, duration=1.0, sample_rate=8000, n_folds=2)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny convolutions: one intra-op thread (conftest)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    dataset("synth", root=root, **SYNTH)
    return root


@pytest.fixture(scope="module")
def clips(synth_root):
    return dataset("synth", root=synth_root, **SYNTH)


@pytest.fixture(scope="module")
def folds(clips):
    return split_folds(clips, test_fold=2)  # (train, val, test)


def _trial(clips, folds, **kw):
    train, _, test = folds
    args = dict(frontend="db", model="vgg", train_clips=train, test_clips=test, mel=MEL, train=TRAIN, seed=0,
                cache=False, device="cpu")
    args.update(kw)
    return run_trial(clips, **args)


def _states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- run_trial: the study's contract
def test_run_trial_returns_the_promised_json_dict(clips, folds):
    r = _trial(clips, folds)
    assert set(r) == {"accuracy", "map", "per_class_accuracy", "confusion", "train_seconds", "epochs", "n_train",
                      "n_test", "learned", "skipped", "history"}
    assert [h["epoch"] for h in r["history"]] == [1, 2] and all(h["loss"] > 0 for h in r["history"])
    json.dumps(r)
    assert r["n_train"] == 6 and r["n_test"] == 6 and r["epochs"] == 2 and r["skipped"] == []
    conf = np.array(r["confusion"])
    assert conf.shape == (3, 3) and conf.sum() == 6
    assert r["accuracy"] == pytest.approx(np.trace(conf) / 6)
    assert set(r["per_class_accuracy"]) == set(clips.classes)
    assert r["train_seconds"] > 0
    assert r["learned"] == {}  # the dB frontend learns nothing
    # the same seed trains the same model (checked below): its test scores give the MAP by hand
    train, _, test = folds
    trainer, _ = train_classifier(clips, frontend="db", model="vgg", train_clips=train, mel=MEL, train=TRAIN, seed=0,
                                  cache=False, device="cpu")
    feats, kept, _ = clip_features(list(test), trainer.config["mel"], "mel", cache=False, progress=False)
    scores, labels = trainer.predict(feats), np.array([c.label for c in kept])
    assert r["accuracy"] == pytest.approx(float((scores.argmax(1) == labels).mean()))
    assert r["map"] == pytest.approx(np.mean([_average_precision(scores[:, k], labels == k)
                                              for k in sorted(set(labels))]))


def _average_precision(score, positive):
    """Mean over the positives of the precision among the clips ranked at or above each (no ties here)."""
    order = np.argsort(-score, kind="stable")
    hits = np.asarray(positive)[order]
    assert len(set(score.tolist())) == len(score)  # ties would need sklearn's step rule
    return float(np.mean([hits[:i + 1].mean() for i in np.nonzero(hits)[0]]))


def test_trainable_frontend_reports_learned_parameters(clips, folds):
    r = _trial(clips, folds, frontend="loglearn", train=dict(TRAIN, epochs=1))
    assert r["learned"] and all(isinstance(v, list) and all(isinstance(x, float) for x in v)
                                for v in r["learned"].values())


def test_same_seed_same_metrics_different_seed_different_weights(clips, folds):
    a = _trial(clips, folds)
    b = _trial(clips, folds)
    for key in ("accuracy", "map", "per_class_accuracy", "confusion"):
        assert a[key] == b[key]
    train, _, _ = folds
    t0, _ = train_classifier(clips, frontend="db", model="vgg", train_clips=train, mel=MEL, train=TRAIN, seed=0,
                             cache=False, device="cpu")
    t0b, _ = train_classifier(clips, frontend="db", model="vgg", train_clips=train, mel=MEL, train=TRAIN, seed=0,
                              cache=False, device="cpu")
    t1, _ = train_classifier(clips, frontend="db", model="vgg", train_clips=train, mel=MEL, train=TRAIN, seed=1,
                             cache=False, device="cpu")
    assert _states_equal(t0.model.state_dict(), t0b.model.state_dict())
    assert not _states_equal(t0.model.state_dict(), t1.model.state_dict())


def test_unusable_clip_is_skipped_and_listed(clips, folds, tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    train, _, test = folds
    broken = type(train[0])(path=str(bad), label=0, class_name=clips.classes[0], fold=1)
    r = _trial(clips, (list(train) + [broken], None, test), train=dict(TRAIN, epochs=1))
    assert r["n_train"] == 6
    assert [p for p, _ in r["skipped"]] == [str(bad)] and r["skipped"][0][1]


# ---------------------------------------------------------------- checkpoints
def _train_with_ckpt(clips, folds, path, **train):
    tr, _, _ = folds
    return train_classifier(clips, frontend="db", model="vgg", train_clips=tr, mel=MEL, train=dict(TRAIN, **train),
                            seed=0, cache=False, device="cpu", checkpoint=path)


def test_checkpoint_round_trip_gives_the_same_predictions(clips, folds, tmp_path):
    path = tmp_path / "checkpoint.pt"
    trainer, info = _train_with_ckpt(clips, folds, path)
    raw = torch.load(path, weights_only=True)  # loadable without running code
    assert raw["format"] == "melfront-checkpoint" and raw["version"] == 2 and raw["kind"] == "classifier"
    assert raw["epoch"] == 2
    assert raw["config"]["frontend"] == "db" and raw["config"]["classes"] == clips.classes
    json.dumps(raw["config"])
    clf, cfg = load_classifier(path)
    assert cfg == info["config"]
    assert _states_equal(clf.state_dict(), trainer.model.state_dict())
    x = torch.rand(3, 32, 32) + 1e-3
    trainer.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(clf(x), trainer.model(x))
    import melfront
    clf2, _ = melfront.load_classifier(tmp_path)  # a run folder holding checkpoint.pt
    assert _states_equal(clf2.state_dict(), clf.state_dict())


def test_checkpoint_errors_name_the_file(clips, folds, tmp_path):
    path = tmp_path / "ckpt.pt"
    _train_with_ckpt(clips, folds, path, epochs=1)
    raw = torch.load(path, weights_only=True)

    other = tmp_path / "v2.pt"
    torch.save(dict(raw, version=3), other)
    with pytest.raises(CheckpointError, match=r"v2\.pt.*version 3"):
        load_classifier(other)

    wrong = tmp_path / "shape.pt"
    state = dict(raw["state_dict"])
    key = next(k for k, v in state.items() if v.ndim == 4)
    state[key] = torch.zeros(*state[key].shape[:-1], state[key].shape[-1] + 1)
    torch.save(dict(raw, state_dict=state), wrong)
    with pytest.raises(CheckpointError, match=r"shape\.pt.*do not fit"):
        load_classifier(wrong)

    fewer = tmp_path / "classes.pt"
    torch.save(dict(raw, config=dict(raw["config"], classes=raw["config"]["classes"][:2])), fewer)
    with pytest.raises(CheckpointError, match=r"classes\.pt.*do not fit"):
        load_classifier(fewer)

    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match=r"foreign\.pt.*not a melfront checkpoint"):
        load_classifier(foreign)

    code = tmp_path / "code.pt"
    torch.save({"format": "melfront-checkpoint", "payload": math.sqrt}, code)  # needs unpickling a function
    with pytest.raises(CheckpointError, match=r"code\.pt.*weights_only"):
        load_classifier(code)

    with pytest.raises(FileNotFoundError, match="missing"):
        load_classifier(tmp_path / "missing.pt")


def test_resume_continues_exactly_as_an_uninterrupted_run(clips, folds, tmp_path, monkeypatch):
    full, _ = _train_with_ckpt(clips, folds, tmp_path / "full.pt", epochs=3)

    original = Trainer._train_epoch

    def interrupted(self, ds, by_class, n, epoch):
        if epoch == 3:
            raise KeyboardInterrupt
        return original(self, ds, by_class, n, epoch)

    monkeypatch.setattr(Trainer, "_train_epoch", interrupted)
    path = tmp_path / "part.pt"
    with pytest.raises(KeyboardInterrupt):
        _train_with_ckpt(clips, folds, path, epochs=3)
    saved = load_checkpoint(path)
    assert saved["epoch"] == 2 and not saved["finished"]
    monkeypatch.setattr(Trainer, "_train_epoch", original)

    tr, _, _ = folds
    resumed, info = train_classifier(clips, frontend="db", model="vgg", train_clips=tr, mel=MEL,
                                     train=dict(TRAIN, epochs=3), seed=0, cache=False, device="cpu",
                                     checkpoint=path, resume=True)
    assert info["epochs"] == 3 and [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert _states_equal(resumed.model.state_dict(), full.model.state_dict())
    assert load_checkpoint(path)["finished"]


def test_resume_refuses_a_checkpoint_of_another_configuration(clips, folds, tmp_path):
    path = tmp_path / "ckpt.pt"
    _train_with_ckpt(clips, folds, path, epochs=1)
    tr, _, _ = folds
    with pytest.raises(CheckpointError, match="another configuration"):
        train_classifier(clips, frontend="db", model="vgg", train_clips=tr, mel=MEL, train=dict(TRAIN, lr=0.5),
                         seed=0, cache=False, device="cpu", checkpoint=path, resume=True)


# ---------------------------------------------------------------- early stopping, optimiser
def test_early_stopping_restores_the_best_validation_weights(clips, folds):
    tr, _, test = folds
    trainer, info = train_classifier(clips, frontend="db", model="vgg", train_clips=tr, val_clips=test, mel=MEL,
                                     train=dict(TRAIN, epochs=6, patience=2, lr=0.05), seed=0, cache=False,
                                     device="cpu")
    hist = trainer.history
    assert all("val_accuracy" in h for h in hist)
    # the stopping epoch the rule gives for the recorded validation accuracies: the first epoch that is the
    # `patience`-th in a row without a gain over the best so far, else the last epoch (6)
    best, bad, expected = -1.0, 0, 6
    for h in hist:
        best, bad = (h["val_accuracy"], 0) if h["val_accuracy"] > best else (best, bad + 1)
        if bad == 2:
            expected = h["epoch"]
            break
    assert [h["epoch"] for h in hist] == list(range(1, expected + 1))
    best_epoch = next(h["epoch"] for h in hist if h["val_accuracy"] == best)
    assert trainer.best["epoch"] == best_epoch and trainer.best["score"] == best
    from melfront.data import load_features
    feats, kept, _ = load_features(test, MEL, cache=False, progress=False)
    assert trainer.evaluate(feats, [c.label for c in kept], clips.classes)["accuracy"] == best


def test_early_stopping_stops_after_patience_epochs_without_gain(clips, folds):
    """With a learning rate of 1e-12 the weights (and so the validation accuracy) do not change: the best epoch
    is the first and training stops exactly `patience` epochs later, with the first epoch's weights restored."""
    tr, _, test = folds
    trainer, info = train_classifier(clips, frontend="db", model="vgg", train_clips=tr, val_clips=test, mel=MEL,
                                     train=dict(TRAIN, epochs=6, patience=2, lr=1e-12), seed=0, cache=False,
                                     device="cpu")
    assert len({h["val_accuracy"] for h in trainer.history}) == 1
    assert [h["epoch"] for h in trainer.history] == [1, 2, 3] and info["epochs"] == 3
    assert trainer.best["epoch"] == 1 and trainer.best["bad"] == 2
    assert _states_equal(trainer.model.state_dict(), trainer.best["state"])


def test_weight_decay_only_on_kernels_and_never_on_the_frontend():
    from melfront.models import kernel_weights
    clf, _ = build_classifier("loglearn", "sbcnn", 3, MEL, 100, {"input_bn": True})
    s = resolve_settings("sbcnn", dict(TRAIN, patch_frames=100, model_options={}))
    trainer = Trainer(clf, s, device="cpu", progress=False)
    decay = [g for g in trainer.optimizer.param_groups if g["weight_decay"] > 0]
    assert len(decay) == 1
    ids = {id(p) for p in decay[0]["params"]}
    assert ids == {id(p) for p in kernel_weights(clf.backbone, "all")}
    assert not ids & {id(p) for p in clf.frontend.parameters()}
    n_all = sum(1 for p in clf.parameters() if p.requires_grad)
    assert sum(len(g["params"]) for g in trainer.optimizer.param_groups) == n_all
    dense = Trainer(clf, dict(s, decay_layers="dense"), device="cpu", progress=False)
    assert {id(p) for g in dense.optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]} == \
        {id(p) for p in kernel_weights(clf.backbone, "dense")}


def test_gradient_clipping_bounds_the_update(clips, folds):
    from melfront.data import load_features
    tr, _, _ = folds
    feats, kept, _ = load_features(tr, MEL, cache=False, progress=False)
    labels = [c.label for c in kept]
    steps = {}
    for clip_norm in (None, 1e-3):
        torch.manual_seed(0)
        clf, _ = build_classifier("db", "vgg", 3, MEL, 32, {"width": 8})
        s = resolve_settings("vgg", dict(TRAIN, epochs=1, batch_size=len(feats), lr=1.0, weight_decay=0.0,
                                          clip_norm=clip_norm))
        before = torch.cat([p.detach().flatten().clone() for p in clf.parameters()])
        Trainer(clf, s, device="cpu", progress=False).fit(feats, labels)
        after = torch.cat([p.detach().flatten() for p in clf.parameters()])
        steps[clip_norm] = float((after - before).norm())
    assert steps[1e-3] <= 1e-3 * (1 + 1e-4)  # one SGD step of lr 1 with the gradient norm clipped to 1e-3
    assert steps[None] > 10 * steps[1e-3]


def test_settings_errors():
    with pytest.raises(ParameterError, match="unknown training setting"):
        resolve_settings("vgg", {"epoch": 3})
    with pytest.raises(ValueError, match="optimizer"):
        resolve_settings("vgg", {"optimizer": "rmsprop"})
    with pytest.raises(ValueError, match="aggregation"):
        resolve_settings("vgg", {"aggregation": "max"})
    with pytest.raises(ValueError, match="unknown model"):
        resolve_settings("lenet")
    s = resolve_settings("piczak")
    assert s["sampling"] == "all" and s["segment_hop"] == 20 and s["silence_db"] == -60.0 and s["aggregation"] == "vote"
    assert resolve_settings("protonet")["aggregation"] == "mean_logprob"


# ---------------------------------------------------------------- protonet, waveform features
def test_protonet_episodic_training_sets_prototypes(clips, folds):
    r = _trial(clips, folds, model="protonet", train=dict(TRAIN, epochs=2, batch_size=None))
    assert r["epochs"] == 2 and np.array(r["confusion"]).sum() == 6
    tr, _, _ = folds
    trainer, _ = train_classifier(clips, frontend="db", model="protonet", train_clips=tr, mel=MEL,
                                  train=dict(TRAIN, epochs=1, batch_size=None), seed=0, cache=False, device="cpu")
    assert bool(trainer.model.backbone.has_prototypes)


def test_trainer_on_waveform_features():
    from melfront import MelSpectrogram
    from melfront.models import Classifier, build

    class LogMel(torch.nn.Module):
        input_kind = "waveform"

        def __init__(self):
            super().__init__()
            self.mel = MelSpectrogram(**MEL)

        def forward(self, x):
            return torch.log(self.mel(x) + 1e-6)

    torch.manual_seed(0)
    clf = Classifier(LogMel(), build("vgg", 2, n_mels=32, n_frames=32, width=8))
    s = resolve_settings("vgg", dict(TRAIN, epochs=1))
    waves = [torch.randn(8000) * (0.1 if i % 2 else 1.0) for i in range(6)] + [torch.randn(500)]
    labels = [i % 2 for i in range(7)]
    trainer = Trainer(clf, s, kind="waveform", hop_length=MEL["hop_length"], device="cpu", progress=False)
    trainer.fit(waves, labels)
    scores = trainer.predict(waves)
    assert scores.shape == (7, 2) and np.allclose(scores.sum(1), 1.0)


# ---------------------------------------------------------------- aggregation and metrics
def test_aggregation_rules_differ_as_defined():
    probs = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.4, 0.6]], dtype=torch.float64)
    lp = probs.log()
    idx = [0, 0, 0]
    mean_prob = aggregate(lp, idx, 1, "mean_prob")[0]
    np.testing.assert_allclose(mean_prob, [1.7 / 3, 1.3 / 3])
    vote = aggregate(lp, idx, 1, "vote")[0]
    assert vote.argmax() == 1 and vote[1] == pytest.approx(2 / 3, abs=1e-5)
    geo = aggregate(lp, idx, 1, "mean_logprob")[0]
    a, b = (0.9 * 0.4 * 0.4) ** (1 / 3), (0.1 * 0.6 * 0.6) ** (1 / 3)
    np.testing.assert_allclose(geo, [a / (a + b), b / (a + b)])
    # two clips, patches interleaved; a tie in the vote goes to the higher mean probability
    lp2 = torch.tensor([[0.8, 0.2], [0.3, 0.7], [0.45, 0.55], [0.6, 0.4]]).log()
    v = aggregate(lp2, [0, 1, 0, 1], 2, "vote")
    assert v[0].argmax() == 0 and v[1].argmax() == 1
    with pytest.raises(ValueError, match="no patch"):
        aggregate(lp2, [0, 0, 0, 0], 2)


def test_clip_metrics_by_hand():
    classes = ["a", "b", "c"]
    scores = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1]])
    labels = [0, 0, 1, 1]
    m = clip_metrics(scores, labels, classes)
    assert m["accuracy"] == 0.75
    assert m["confusion"] == [[2, 0, 0], [1, 1, 0], [0, 0, 0]]
    assert m["per_class_accuracy"] == {"a": 1.0, "b": 0.5}  # class c has no clip
    # AP of class a: ranking 0.7(a) 0.6(a) 0.5(b) 0.2(b) -> 1; class b: 0.7(b) 0.4(b) 0.3(a) 0.2(a) -> 1
    assert m["map"] == 1.0
    m2 = clip_metrics(np.array([[0.4, 0.6], [0.6, 0.4]]), [0, 1], ["a", "b"])
    assert m2["accuracy"] == 0.0 and m2["map"] == 0.5  # each positive ranked last of 2: AP 1/2
    json.dumps(m)


# ---------------------------------------------------------------- the CLI end to end
def test_cli_train_evaluate_predict(synth_root, clips, tmp_path, capsys):
    out = tmp_path / "run"
    opts = [x for k, v in SYNTH.items() for x in ("--dataset-option", f"{k}={v}")]
    rc = main(["train", "--dataset", "synth", "--root", str(synth_root), *opts, "--frontend", "loglearn",
               "--model", "vgg", "--test-fold", "2", "--epochs", "2", "--batch-size", "4", "--lr", "0.01",
               "--patch-frames", "32", "--sample-rate", "8000", "--n-fft", "256", "--hop", "64", "--n-mels", "32",
               "--set", "model_options={'width': 8}", "--seed", "3", "--no-cache", "--quiet", "-o", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "learned frontend parameters" in printed
    for name in ("checkpoint.pt", "config.json", "metrics.json"):
        assert (out / name).is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert metrics["n_test"] == 6 and metrics["epochs"] == 2 and metrics["learned"]
    assert config["test_fold"] == 2 and config["classes"] == clips.classes and config["seed"] == 3

    assert main(["evaluate", str(out), "--no-cache"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["accuracy"] == metrics["accuracy"] and evaluated["confusion"] == metrics["confusion"]
    assert main(["evaluate", str(out), "--fold", "1", "--no-cache"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 6

    wav = tmp_path / "clip.wav"
    sf.write(wav, np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1, 8000)
    assert main(["predict", str(out), str(wav), "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == str(wav) and len(lines) == 3
    probs = [float(line.split()[0]) for line in lines[1:]]
    names = [line.split()[1] for line in lines[1:]]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6 and set(names) <= set(clips.classes)


def test_cli_errors_are_clear(synth_root, tmp_path, capsys):
    opts = [x for k, v in SYNTH.items() for x in ("--dataset-option", f"{k}={v}")]
    rc = main(["train", "--dataset", "synth", "--root", str(synth_root), *opts, "--test-fold", "7",
               "--no-cache", "--quiet", "-o", str(tmp_path / "r")])
    assert rc == 2 and "test fold 7" in capsys.readouterr().err
    rc = main(["predict", str(tmp_path / "nothing"), "x.wav"])
    assert rc == 2 and "does not exist" in capsys.readouterr().err


# ---------------------------------------------------------------- settings, divergence, callbacks, lr groups
@pytest.mark.parametrize("override, field", [({"epochs": 0}, "epochs"), ({"lr": -1}, "lr"), ({"lr": "abc"}, "lr"),
                                             ({"batch_size": 2.5}, "batch_size"), ({"nesterov": 1}, "nesterov"),
                                             ({"frontend_lr_scale": -0.1}, "frontend_lr_scale")])
def test_train_settings_refuse_bad_values_naming_the_field(override, field):
    with pytest.raises(ParameterError, match=rf"train\['{field}'\]"):
        TrainSettings.for_model("vgg", override)
    with pytest.raises(ParameterError, match=rf"train\['{field}'\]"):
        resolve_settings("vgg", override)


def test_train_settings_refuse_unknown_keys_listing_the_known_ones():
    with pytest.raises(ParameterError, match=r"unknown training setting\(s\) \['lr_scale'\]; known: .*frontend_lr_scale"):
        resolve_settings("vgg", {"lr_scale": 0.1})
    with pytest.raises(ParameterError, match="unknown training setting"):
        TrainSettings.from_dict(dict(resolve_settings("vgg"), bogus=1))
    s = resolve_settings("vgg", {"lr": 1, "epochs": 3})
    assert s["lr"] == 1.0 and isinstance(s["lr"], float) and s["frontend_lr_scale"] == 1.0
    assert TrainSettings.from_dict(s).as_dict() == s
    json.dumps(s)


def _feats(clips, folds):
    from melfront.data import load_features
    tr, _, _ = folds
    feats, kept, _ = load_features(tr, MEL, cache=False, progress=False)
    return feats, [c.label for c in kept]


def test_a_diverging_loss_raises_divergence_error_naming_epoch_and_batch(clips, folds):
    feats, labels = _feats(clips, folds)
    torch.manual_seed(0)
    clf, _ = build_classifier("db", "vgg", 3, MEL, 32, {"width": 8})
    s = resolve_settings("vgg", dict(TRAIN, epochs=3, lr=1e30, clip_norm=None))
    with pytest.raises(DivergenceError, match=r"the loss became (nan|inf|-inf) in epoch \d+, batch \d+") as info:
        Trainer(clf, s, device="cpu", progress=False).fit(feats, labels)
    assert isinstance(info.value, FloatingPointError)


def test_on_epoch_is_called_once_per_epoch_with_the_history_record(clips, folds):
    feats, labels = _feats(clips, folds)
    torch.manual_seed(0)
    clf, _ = build_classifier("db", "vgg", 3, MEL, 32, {"width": 8})
    trainer = Trainer(clf, resolve_settings("vgg", dict(TRAIN, epochs=3)), device="cpu", progress=False)
    seen = []

    def on_epoch(rec):
        seen.append(rec["epoch"])
        assert trainer.history[-1] is rec and trainer.epoch == rec["epoch"]
        rec["test_accuracy"] = 0.5  # a caller's evaluation, kept in the history

    hist = trainer.fit(feats, labels, on_epoch=on_epoch)
    assert seen == [1, 2, 3] and [h["test_accuracy"] for h in hist] == [0.5, 0.5, 0.5]


def test_frontend_lr_scale_sets_the_frontend_param_group(clips, folds):
    clf, _ = build_classifier("loglearn", "vgg", 3, MEL, 32, {"width": 8})
    s = resolve_settings("vgg", dict(TRAIN, lr=0.02, frontend_lr_scale=0.25))
    trainer = Trainer(clf, s, device="cpu", progress=False)
    groups = {g["name"]: g for g in trainer.optimizer.param_groups}
    assert groups["frontend"]["lr"] == pytest.approx(0.005) and groups["frontend"]["weight_decay"] == 0.0
    assert groups["decay"]["lr"] == groups["no_decay"]["lr"] == 0.02
    assert {id(p) for p in groups["frontend"]["params"]} == {id(p) for p in clf.frontend.parameters()}
    # the frontend learns at the scaled rate: one SGD step (no momentum, no decay) moves it by lr * scale * grad
    feats, labels = _feats(clips, folds)
    s0 = resolve_settings("vgg", dict(TRAIN, epochs=1, batch_size=len(feats), lr=0.02, frontend_lr_scale=0.0,
                                      momentum=0.0, weight_decay=0.0, clip_norm=None))
    clf0, _ = build_classifier("loglearn", "vgg", 3, MEL, 32, {"width": 8})
    before = [p.detach().clone() for p in clf0.frontend.parameters()]
    back = [p.detach().clone() for p in clf0.backbone.parameters()]
    t0 = Trainer(clf0, s0, device="cpu", progress=False)
    t0.fit(feats, labels)
    assert all(torch.equal(a, p) for a, p in zip(before, clf0.frontend.parameters()))
    assert not all(torch.equal(a, p) for a, p in zip(back, clf0.backbone.parameters()))
    t0.set_frontend_lr_scale(0.5)
    assert {g["name"]: g["lr"] for g in t0.optimizer.param_groups}["frontend"] == pytest.approx(0.01)


def test_trainer_leaves_a_frozen_frontends_batch_norm_in_eval_mode(clips, folds):
    """A frontend that keeps its own mode (as MSTFrontend(frozen=True) does by overriding train()) is left alone:
    its batch-norm statistics stay fixed while the backbone trains."""
    from melfront.models import Classifier, build

    class FrozenBN(torch.nn.Module):
        input_kind = "mel"

        def __init__(self):
            super().__init__()
            self.bn = torch.nn.BatchNorm1d(32)
            for p in self.bn.parameters():
                p.requires_grad_(False)

        def train(self, mode=True):
            super().train(mode)
            self.bn.eval()
            return self

        def forward(self, x):
            return self.bn(torch.log(x + 1e-6))

    feats, labels = _feats(clips, folds)
    torch.manual_seed(0)
    clf = Classifier(FrozenBN(), build("vgg", 3, n_mels=32, n_frames=32, width=8))
    stats = {k: v.clone() for k, v in clf.frontend.state_dict().items()}
    trainer = Trainer(clf, resolve_settings("vgg", dict(TRAIN, epochs=2)), device="cpu", progress=False)
    trainer.fit(feats, labels, on_epoch=lambda rec: rec.update(bn_training=clf.frontend.bn.training))
    assert [h["bn_training"] for h in trainer.history] == [False, False]
    assert _states_equal(clf.frontend.state_dict(), stats)
    # while the backbone's own batch norm did run in training mode (its statistics moved)
    assert not torch.equal(clf.backbone.input_bn.running_mean, torch.zeros_like(clf.backbone.input_bn.running_mean))


# ---------------------------------------------------------------- damaged checkpoints
@pytest.fixture(scope="module")
def good_checkpoint(clips, folds, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "good.pt"
    _train_with_ckpt(clips, folds, path, epochs=1)
    return torch.load(path, weights_only=True)


def _damaged(tmp_path, name, obj):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def test_junk_and_truncated_files_raise_checkpoint_error(good_checkpoint, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a zip and not a pickle")
    with pytest.raises(CheckpointError, match=r"junk\.pt: not a loadable melfront checkpoint"):
        load_classifier(junk)
    full = _damaged(tmp_path, "full.pt", good_checkpoint).read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(full[:len(full) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pt: not a loadable"):
        load_checkpoint(cut)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pt"):
        load_checkpoint(empty)


def test_wrong_format_kind_or_missing_keys_raise_checkpoint_error(good_checkpoint, tmp_path):
    cases = {
        "tag.pt": (dict(good_checkpoint, format="melfront-mst"), r"format 'melfront-mst'"),
        "list.pt": ([1, 2, 3], "not a melfront checkpoint"),
        "kind.pt": (dict(good_checkpoint, kind="mst"), "mst checkpoint, a classifier checkpoint was expected"),
        "unknown_kind.pt": (dict(good_checkpoint, kind="gan"), "unknown checkpoint kind 'gan'"),
        "nostate.pt": ({k: v for k, v in good_checkpoint.items() if k != "state_dict"}, "no 'state_dict' dict"),
        "noconfig.pt": ({k: v for k, v in good_checkpoint.items() if k != "config"}, "no 'config' dict"),
        "state.pt": (dict(good_checkpoint, state_dict={"w": [1.0]}), "not a dict of named tensors"),
        "epoch.pt": (dict(good_checkpoint, epoch="two"), "epoch 'two'"),
    }
    for name, (obj, cause) in cases.items():
        with pytest.raises(CheckpointError, match=rf"{name.replace('.', '[.]')}: .*{cause}"):
            load_classifier(_damaged(tmp_path, name, obj))


def test_a_stored_config_of_wrong_types_raises_checkpoint_error(good_checkpoint, tmp_path):
    cfg = good_checkpoint["config"]
    cases = {
        "classes.pt": (dict(cfg, classes="abc"), r"config\['classes'\]"),
        "frames.pt": (dict(cfg, patch_frames="32"), r"config\['patch_frames'\]"),
        "mel.pt": (dict(cfg, mel=dict(cfg["mel"], n_mels=2.5)), r"config\['mel'\]\['n_mels'\]"),
        "nomel.pt": (dict(cfg, mel=None), r"config\['mel'\]"),
        "kind.pt": (dict(cfg, input_kind="image"), r"config\['input_kind'\]"),
        "train.pt": (dict(cfg, train=dict(cfg["train"], lr="abc")), r"train\['lr'\]"),
        "model.pt": (dict(cfg, model="lenet"), "cannot rebuild the classifier.*lenet"),
        "lacks.pt": ({k: v for k, v in cfg.items() if k != "frontend"}, r"lacks \['frontend'\]"),
    }
    for name, (config, cause) in cases.items():
        with pytest.raises(CheckpointError, match=rf"{name.replace('.', '[.]')}: .*{cause}"):
            load_classifier(_damaged(tmp_path, name, dict(good_checkpoint, config=config)))


def test_a_deeply_nested_config_raises_checkpoint_error(good_checkpoint, tmp_path):
    import sys
    nested = {}
    for _ in range(5000):
        nested = {"x": nested}
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)  # only to write the file; reading it runs at the normal limit
    try:
        path = _damaged(tmp_path, "deep.pt", dict(good_checkpoint, config=dict(good_checkpoint["config"], deep=nested)))
    finally:
        sys.setrecursionlimit(limit)
    with pytest.raises(CheckpointError, match=r"deep\.pt: the checkpoint's content is nested too deeply"):
        load_classifier(path)


def test_save_checkpoint_one_format_for_both_kinds(tmp_path):
    lin = torch.nn.Linear(3, 2)
    path = save_checkpoint(tmp_path / "m.pt", lin, {"model": {"n": 3}}, kind="mst", epoch=0, extra={"note": "x"})
    obj = load_checkpoint(path, kind="mst")
    assert (obj["format"], obj["version"], obj["kind"], obj["epoch"], obj["note"]) == \
        ("melfront-checkpoint", 2, "mst", 0, "x")
    assert _states_equal(obj["state_dict"], lin.state_dict())
    with pytest.raises(CheckpointError, match=r"m\.pt: this is a mst checkpoint, a classifier"):
        load_checkpoint(path, kind="classifier")
    with pytest.raises(ParameterError, match="JSON-able"):
        save_checkpoint(tmp_path / "bad.pt", lin, {"f": math.sqrt})
    with pytest.raises(ParameterError, match="kind"):
        save_checkpoint(tmp_path / "bad.pt", lin, {}, kind="gan")
    with pytest.raises(ParameterError, match="own keys"):
        save_checkpoint(tmp_path / "bad.pt", lin, {}, extra={"config": {}})
    assert not (tmp_path / "bad.pt").exists()
