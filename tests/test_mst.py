"""MSTModel (Tax et al. 2017): shapes and frame alignment, training, checkpoints, frozen frontend, study helpers."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from melfront import MelSpectrogram
from melfront.data.sampling import grouped_holdout
from melfront.errors import CheckpointError, DivergenceError, ParameterError
from melfront.models import Classifier, PiczakCNN
from melfront.mst import (LogMelTarget, MSTFrontend, MSTModel, evaluate_mst, finetune_branch, load_mst, load_segments,
                          log_mel_db, majority_vote, mst_frontend, peak_normalise, save_mst, segment_waveform,
                          study_settings, train_mst)
from melfront.train import Trainer, save_checkpoint

SMALL = dict(n_filters=16, n_hidden=8)
MEL = dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=16)


def tiny_model(**kw):
    torch.manual_seed(0)
    return MSTModel(n_mels=MEL["n_mels"], n_fft=MEL["n_fft"], hop_length=MEL["hop_length"], **{**SMALL, **kw})


def signals(n, length, seed):
    """Chirps and tones with a random level, plus a little noise: a spectrogram worth imitating."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / MEL["sample_rate"]
    out = []
    for _ in range(n):
        f0, f1 = rng.uniform(100, 3500, size=2)
        phase = 2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * t[-1]))
        x = np.sin(phase) * rng.uniform(0.05, 1.0) + 0.3 * np.sin(2 * np.pi * rng.uniform(100, 3500) * t)
        x += 0.01 * rng.standard_normal(length)
        out.append(x)
    return peak_normalise(torch.tensor(np.array(out), dtype=torch.float32))


# --------------------------------------------------------------------------------------------
# Shapes and alignment with MelSpectrogram(center=True)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_fft,hop", [(256, 64), (1024, 512), (255, 100)])
@pytest.mark.parametrize("length", [1, 63, 64, 65, 1000, 1024, 2049])
def test_frame_count_matches_melspectrogram(n_fft, hop, length):
    model = MSTModel(n_mels=8, n_fft=n_fft, hop_length=hop, n_filters=4, n_hidden=4).eval()
    if length <= n_fft // 2:
        length = n_fft // 2 + 1  # the STFT (constant padding) needs no minimum, but keep frames >= 1
    x = torch.randn(2, length)
    mel = MelSpectrogram(sample_rate=8000, n_fft=n_fft, hop_length=hop, n_mels=8, center=True)
    assert model(x).shape == mel(x).shape == (2, 8, model.num_frames(length))
    if n_fft % 2 == 0:  # (MelSpectrogram.num_frames uses librosa's 1 + time // hop, exact for even n_fft)
        assert model.num_frames(length) == mel.num_frames(length)


def test_first_layer_sees_the_same_samples_as_the_stft_frame():
    # With the Hann window as every kernel, frame t of the first convolution is non-zero exactly
    # where STFT frame t is: the two are centred on the same sample (t * hop).
    mel = MelSpectrogram(**MEL)
    model = tiny_model().eval()
    with torch.no_grad():
        model.conv1.weight.copy_(mel.window.float().expand_as(model.conv1.weight))
        model.conv1.bias.zero_()
    captured = {}
    model.conv1.register_forward_hook(lambda m, i, o: captured.__setitem__("out", o))
    length = 40 * MEL["hop_length"]
    for position in (0, 5, 100, 333, 1000, length - 1):
        x = torch.zeros(1, length)
        x[0, position] = 1.0
        model(x)
        conv_active = captured["out"][0, 0].abs() > 1e-9
        stft_active = mel(x)[0].sum(0) > 1e-12
        assert torch.equal(conv_active, stft_active), position
        # and the frame nearest to the impulse is among them
        assert conv_active[round(position / MEL["hop_length"])]


def test_output_shapes_and_range():
    model = tiny_model().eval()
    n = 10 * MEL["hop_length"]
    assert model(torch.randn(n)).shape == (16, 11)
    y = model(torch.randn(2, 3, n))
    assert y.shape == (2, 3, 16, 11)
    assert y.abs().max() <= 1.0  # tanh output
    assert MSTModel.input_kind == "waveform" and MSTModel.out_channels == 1


def test_paper_layer_sizes():
    m = MSTModel()
    assert (m.conv1.out_channels, m.conv1.kernel_size, m.conv1.stride) == (512, (1024,), (512,))
    assert (m.conv2.out_channels, m.conv2.kernel_size, m.conv3.out_channels, m.conv3.kernel_size) == (256, (3,), 60, (3,))
    assert all(isinstance(b, nn.BatchNorm1d) for b in (m.bn1, m.bn2, m.bn3))
    raw = MSTModel(batch_norm=False, dropout=0.5)
    assert not any(isinstance(b, nn.BatchNorm1d) for b in raw.modules())
    assert sum(isinstance(b, nn.Dropout) for b in raw.modules()) == 3


@pytest.mark.parametrize("kwargs", [dict(n_mels=0), dict(n_fft=-1), dict(hop_length=1.5), dict(dropout=1.0),
                                    dict(n_filters=True)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        MSTModel(**kwargs)


def test_bad_input():
    model = tiny_model()
    with pytest.raises(ParameterError, match="floating-point"):
        model(torch.zeros(2, 1000, dtype=torch.int64))
    with pytest.raises(ParameterError, match="time axis"):
        model(torch.tensor(1.0))


# --------------------------------------------------------------------------------------------
# The target
# --------------------------------------------------------------------------------------------
def test_target_uses_global_training_statistics():
    target = LogMelTarget(MEL, normalise_peak=False)
    train = signals(12, 16 * MEL["hop_length"], seed=1)
    db = target.db(train)
    target.fit([db])
    y = target.normalise(db)
    assert math.isclose(float(y.min()), -1.0, abs_tol=1e-5) and math.isclose(float(y.max()), 1.0, abs_tol=1e-5)
    assert target.mean.ndim == 0 and target.std.ndim == 0  # one scalar each, not per band
    assert math.isclose(float(target.mean), float(db.double().mean()), rel_tol=1e-9)
    assert math.isclose(float(target.std), float(db.double().std(unbiased=False)), rel_tol=1e-6)
    # forward = normalise(db(x)), and it is an increasing affine map of the dB values
    assert torch.allclose(target(train), y)
    other = target(signals(3, 16 * MEL["hop_length"], seed=2))
    assert other.shape == (3, 16, 17)


def test_log_mel_db_floor_and_peak_normalise():
    s = torch.tensor([[[1.0, 1e-3, 0.0]]])
    db = log_mel_db(s, top_db=20.0)
    assert torch.allclose(db, torch.tensor([[[0.0, -20.0, -20.0]]]))
    x = torch.tensor([[0.5, -2.0, 1.0], [0.0, 0.0, 0.0]])
    y = peak_normalise(x)
    assert torch.allclose(y[0], torch.tensor([0.25, -1.0, 0.5])) and torch.equal(y[1], x[1])


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
def test_short_training_lowers_validation_mse():
    length = 16 * MEL["hop_length"]
    train, val = signals(80, length, seed=3), signals(20, length, seed=4)
    result = train_mst(train, val, MEL, epochs=12, patience=12, batch_size=20, lr=1e-2, seed=0,
                       model_options=SMALL, progress=False)
    before, after = result.history[0]["val_mse"], result.val["mse"]
    assert after < 0.8 * before, (before, after)
    assert result.val["corr"] > max(0.3, result.history[0]["val_corr"] + 0.2)
    assert result.best_epoch >= 1 and result.history[result.best_epoch]["val_mse"] == after
    assert all(h["train_mse"] >= 0 for h in result.history[1:])


def test_early_stopping_keeps_the_best_epoch():
    length = 8 * MEL["hop_length"]
    train, val = signals(10, length, seed=5), signals(4, length, seed=6)
    patience = 2
    result = train_mst(train, val, MEL, epochs=30, patience=patience, batch_size=5, lr=0.3, seed=0,
                       model_options=SMALL, progress=False)
    scores = [h["val_mse"] for h in result.history]
    epochs_run = len(scores) - 1
    # replay the rule on the recorded scores: stop at the first epoch `patience` epochs after the best so far
    best, stop = 0, None
    for epoch in range(1, epochs_run + 1):
        if scores[epoch] < scores[best]:
            best = epoch
        elif epoch - best >= patience:
            stop = epoch
            break
    assert stop == epochs_run < 30  # lr 0.3 overshoots: this run stops early, and exactly by the rule
    assert result.best_epoch == best == int(np.argmin(scores))
    assert result.val["mse"] == scores[best]
    # the kept model is the best epoch's: evaluating it again reproduces that epoch's score
    y_val = LogMelTarget(MEL, stats=result.target.stats(), normalise_peak=False)(val).float()
    assert evaluate_mst(result.model, val, y_val)["mse"] == pytest.approx(scores[best], rel=1e-5)


def test_diverging_training_raises_divergence_error():
    x = signals(6, 8 * MEL["hop_length"], seed=0)
    with pytest.raises(DivergenceError, match="epoch 1"):
        train_mst(x, x, MEL, epochs=2, batch_size=3, lr=1e30, model_options=SMALL, progress=False,
                  init_output=False)


def test_train_mst_argument_errors():
    x = signals(4, 512, seed=0)
    with pytest.raises(ParameterError, match="epochs"):
        train_mst(x, x, MEL, epochs=0, progress=False)
    with pytest.raises(ParameterError, match="patience"):
        train_mst(x, x, MEL, patience=0, progress=False)
    with pytest.raises(ParameterError, match="non-empty"):
        train_mst(x, x[:0], MEL, progress=False)


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------
def _trained_pair():
    model = tiny_model()
    target = LogMelTarget(MEL, stats=dict(mean=-40.0, std=12.0, min=-2.5, max=3.0), normalise_peak=False)
    model.train()
    with torch.no_grad():  # move the batch-norm statistics away from their initial values
        for _ in range(3):
            model(torch.randn(4, 1000))
    return model.eval(), target


def test_checkpoint_round_trip(tmp_path):
    model, target = _trained_pair()
    path = save_mst(tmp_path / "m.pt", model, target, extra={"train_clips": ["a.wav"]})
    blob = torch.load(path, weights_only=True)
    json.dumps(blob["config"])  # JSON-able
    loaded, loaded_target, config = load_mst(path)
    x = torch.randn(3, 1200)
    assert torch.equal(loaded.eval()(x), model(x))
    assert loaded_target.stats() == target.stats() and loaded_target.mel_kwargs == MEL
    assert config["train_clips"] == ["a.wav"]
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_checkpoint_errors(tmp_path):
    model, target = _trained_pair()
    with pytest.raises(FileNotFoundError):
        load_mst(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_mst(tmp_path / "junk.pt")
    save_checkpoint(tmp_path / "other.pt", nn.Linear(2, 2), {}, kind="classifier")
    with pytest.raises(CheckpointError, match="a mst checkpoint was expected"):
        load_mst(tmp_path / "other.pt")
    path = save_mst(tmp_path / "m.pt", model, target)
    blob = torch.load(path, weights_only=True)
    good_version = blob["version"]
    blob["version"] = 99
    torch.save(blob, tmp_path / "v99.pt")
    with pytest.raises(CheckpointError, match="version 99"):
        load_mst(tmp_path / "v99.pt")
    blob["version"] = good_version
    blob["config"]["model"]["n_mels"] = 20  # weights no longer fit
    torch.save(blob, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_mst(tmp_path / "shape.pt")
    blob["config"]["model"]["n_mels"] = "sixty"  # a config that cannot build the model
    torch.save(blob, tmp_path / "config.pt")
    with pytest.raises(CheckpointError, match="cannot build an MSTModel"):
        load_mst(tmp_path / "config.pt")

    from fractions import Fraction  # any object that is not a tensor / plain container
    torch.save({"format": "melfront-checkpoint", "obj": Fraction(1, 3)}, tmp_path / "pickle.pt")
    with pytest.raises(CheckpointError, match="pickle.pt"):
        load_mst(tmp_path / "pickle.pt")  # weights_only refuses arbitrary objects


# --------------------------------------------------------------------------------------------
# Frozen means frozen
# --------------------------------------------------------------------------------------------
class TinyBackbone(nn.Module):
    in_channels = 1

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.LazyLinear(3))

    def forward(self, x):
        return self.net(x)


def _classifier(frontend):
    return Classifier(frontend, TinyBackbone())


def test_frozen_frontend_gets_no_gradient_and_keeps_batch_norm_statistics(tmp_path):
    model, target = _trained_pair()
    path = save_mst(tmp_path / "m.pt", model, target)
    front = mst_frontend(str(path), frozen=True, sample_rate=8000, fmin=30.0)  # common options that agree / are ignored
    assert front.input_kind == "waveform" and front.out_channels == 1
    clf = _classifier(front)
    clf.train()
    assert clf.training and not front.mst.training and not front.mst.bn1.training
    before = {k: v.clone() for k, v in front.state_dict().items()}
    x = torch.randn(4, 1000)
    loss = clf(x).logsumexp(1).mean()
    loss.backward()
    assert all(not p.requires_grad and p.grad is None for p in front.parameters())
    assert any(p.grad is not None for p in clf.backbone.parameters())
    for _ in range(3):
        clf(torch.randn(4, 1000) * 5)
    for key, value in front.state_dict().items():
        assert torch.equal(value, before[key]), key  # running means/vars and counters unchanged
    # the frozen frontend computes what the trained model computes in eval mode, on peak-normalised input
    assert torch.allclose(front(x), model.eval()(peak_normalise(x)), atol=1e-6)
    assert torch.allclose(front(3 * x), front(x), atol=1e-5)  # gain-invariant, as the model was trained


def test_unfrozen_frontend_trains():
    model, _ = _trained_pair()
    front = MSTFrontend(model, frozen=True).unfreeze()
    clf = _classifier(front).train()
    assert front.mst.training
    mean_before = front.mst.bn1.running_mean.clone()
    clf(torch.randn(4, 1000)).sum().backward()
    assert all(p.grad is not None for p in front.parameters())
    assert not torch.equal(front.mst.bn1.running_mean, mean_before)
    front.freeze()
    clf.train()
    assert not front.mst.training and not any(p.requires_grad for p in front.parameters())


def test_mst_frontend_argument_errors(tmp_path):
    model, target = _trained_pair()
    path = save_mst(tmp_path / "m.pt", model, target)
    with pytest.raises(ParameterError, match="frozen"):
        mst_frontend(str(path), frozen="yes")
    with pytest.raises(FileNotFoundError):
        mst_frontend(str(tmp_path / "nope.pt"))
    with pytest.raises(ParameterError, match="MSTModel"):
        MSTFrontend(nn.Linear(2, 2))


def test_finetune_branch_keeps_batch_norm_mode_and_optimiser_state():
    torch.manual_seed(0)
    model = MSTModel(n_mels=60, n_fft=64, hop_length=16, n_filters=4, n_hidden=4).train()
    with torch.no_grad():  # move the batch-norm statistics away from their initial values
        model(torch.randn(4, 1000))
    clf = Classifier(MSTFrontend(model.eval(), frozen=True), PiczakCNN(2, n_mels=60, n_frames=21, hidden=32))
    settings = study_settings(60, 2, batch_size=2, lr=0.02, segment_frames=21)
    c = Trainer(clf, settings, kind="waveform", hop_length=16, seed=0, device="cpu", progress=False)
    feats = list(signals(4, 2 * 20 * 16, seed=11))  # 4 clips of two 21-frame segments each
    branch = {}

    def on_epoch(rec):
        if rec["epoch"] == 1:
            branch["d"] = finetune_branch(c, finetune_lr_scale=0.1)
            branch["c_state"] = {k: v.clone() for k, v in c.model.state_dict().items()}
            branch["c_opt"] = {n: c.optimizer.state[p]["momentum_buffer"].clone()
                               for n, p in c.model.named_parameters() if p in c.optimizer.state}

    c.fit(feats, [0, 1, 0, 1], on_epoch=on_epoch)
    d = branch["d"]
    # at the branch: (c)'s exact weights and BN statistics, and (c)'s optimiser state for the classifier
    assert d.epoch == 1 and d.history == c.history[:1]
    assert all(torch.equal(v, branch["c_state"][k]) for k, v in d.model.state_dict().items())
    named = dict(d.model.named_parameters())
    assert branch["c_opt"] and all(not n.startswith("frontend.") for n in branch["c_opt"])
    for n, buf in branch["c_opt"].items():
        assert torch.equal(d.optimizer.state[named[n]]["momentum_buffer"], buf), n
    assert not any(p in d.optimizer.state for p in d.model.frontend.parameters())
    # MST layers learn at lr * 0.1, the classifier at lr; (c) stays frozen
    lrs = {g["name"]: g["lr"] for g in d.optimizer.param_groups}
    assert lrs["frontend"] == pytest.approx(0.002) and lrs["decay"] == lrs["no_decay"] == 0.02
    assert all(p.requires_grad for p in d.model.frontend.parameters())
    assert c.model.frontend.frozen and not any(p.requires_grad for p in c.model.frontend.parameters())
    # batch norm stays in eval mode in (d): training moves the MST weights but not the running statistics
    d.model.train()
    assert not d.model.frontend.mst.training and not d.model.frontend.mst.bn1.training
    before = {k: v.clone() for k, v in d.model.frontend.state_dict().items()}
    assert len(d.fit(feats, [0, 1, 0, 1])) == d.epoch == 2
    after = d.model.frontend.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before if "running" in k or "num_batches" in k)
    assert not torch.equal(after["mst.conv1.weight"], before["mst.conv1.weight"])
    # (c) did not move its frozen frontend while (d) trained
    assert torch.equal(c.model.frontend.mst.conv1.weight, model.conv1.weight)


# --------------------------------------------------------------------------------------------
# Segments, splits, votes
# --------------------------------------------------------------------------------------------
def test_segments_have_the_right_length_frames_and_peak():
    mel = MelSpectrogram(**MEL)
    x = torch.cat([signals(1, 3000, seed=7)[0], torch.zeros(3000), signals(1, 3000, seed=8)[0] * 0.01])
    segs = segment_waveform(x, mel, segment_frames=21, overlap=0.5)
    length = MEL["hop_length"] * 20
    assert segs.shape[1] == length
    assert mel(segs).shape[-1] == 21
    assert torch.allclose(segs.abs().amax(1), torch.ones(len(segs)))
    every = segment_waveform(x, mel, segment_frames=21, overlap=0.5, silence_db=None)
    assert len(every) == 1 + (len(x) - length) // (length // 2)
    assert len(segs) < len(every)  # the all-zero stretch was dropped as silent
    short = segment_waveform(torch.randn(100), mel, segment_frames=21)
    assert short.shape == (1, length)  # zero-padded to one segment


def test_load_segments_skips_bad_files(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, signals(1, 4000, seed=9)[0].numpy() * 0.5, MEL["sample_rate"])
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF0000WAVE")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(4000), MEL["sample_rate"])
    segs = load_segments([str(good), str(bad), str(silent)], MEL, segment_frames=21, progress=False)
    assert set(segs.clip_index.tolist()) == {0}
    assert {p for p, _ in segs.skipped} == {str(bad), str(silent)}


def test_split_keeps_sources_together_and_classes_on_both_sides():
    from melfront.data.base import Clip
    clips = [Clip(f"/x/{c}_{i}.wav", c, str(c), 1, source_id=f"s{c}_{i // 2}") for c in range(3) for i in range(8)]
    rest, held = grouped_holdout(clips, seed=1, fraction=0.25)
    assert len(rest) + len(held) == len(clips)
    assert {c.source_id for c in rest}.isdisjoint({c.source_id for c in held})
    assert {c.label for c in held} == {c.label for c in rest} == {0, 1, 2}
    assert grouped_holdout(clips, seed=1, fraction=0.25) == (rest, held)


def test_majority_vote_breaks_ties_by_probability():
    probs = torch.tensor([[0.6, 0.4, 0.0], [0.1, 0.9, 0.0], [0.2, 0.7, 0.1],  # clip 0: votes 0,1,1 -> 1
                          [0.55, 0.45, 0.0], [0.0, 0.99, 0.01]])  # clip 5: tie 0 vs 1, class 1 more probable
    index = torch.tensor([0, 0, 0, 5, 5])
    assert majority_vote(probs, index) == {0: 1, 5: 1}
    probs[4] = torch.tensor([0.45, 0.5, 0.05])
    assert majority_vote(probs, index)[5] == 0  # tie of votes; summed probability 1.0 vs 0.95 -> class 0


# --------------------------------------------------------------------------------------------
# The commands, end to end on a tiny folder-per-class set
# --------------------------------------------------------------------------------------------
def _folder_set(root, rate=22050, seconds=1.2):
    rng = np.random.default_rng(0)
    t = np.arange(int(rate * seconds)) / rate
    for c, f in enumerate((300.0, 1200.0, 4000.0)):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(3):
            x = np.sin(2 * np.pi * f * (1 + 0.05 * i) * t) * np.hanning(len(t)) + 0.02 * rng.standard_normal(len(t))
            sf.write(root / f"class{c}" / f"c{c}_{i}.wav", (0.3 * x).astype(np.float32), rate)
    return root


def test_learn_mel_and_mst_study_commands(tmp_path):
    from melfront.cli import main
    from PIL import Image
    root = _folder_set(tmp_path / "data")
    ckpt = tmp_path / "out" / "mst.pt"
    assert main(["learn-mel", "--dataset", "folder", "--root", str(root), "-o", str(ckpt), "--epochs", "1",
                 "--val-fraction", "0.3", "--quiet"]) == 0
    summary = json.loads(ckpt.with_suffix(".json").read_text())
    assert summary["n_val_clips"] >= 3 and summary["n_train_clips"] + summary["n_val_clips"] == 9
    assert np.isfinite(summary["val_mse"]) and -1 <= summary["val_corr"] <= 1
    for fig in summary["figures"]:
        with Image.open(fig) as im:
            assert im.size[0] > 400 and im.size[1] > 200
    model, target, config = load_mst(ckpt)
    assert config["model"]["n_mels"] == 60 and target.mel_kwargs["hop_length"] == 512
    assert sorted(config["train_clips"] + config["val_clips"]) == sorted(p.name for p in root.rglob("*.wav"))

    out = tmp_path / "study"
    assert main(["mst-study", "--dataset", "folder", "--root", str(root), "--mst", str(ckpt), "-o", str(out),
                 "--epochs", "1", "--finetune-epochs", "1", "--hidden", "8", "--quiet", "--test-fraction", "0.3"]) == 0
    results = json.loads((out / "results.json").read_text())
    curves = results["variants"]
    assert set(curves) == {"a", "b", "c", "d"}
    assert [[r["epoch"] for r in v["curve"]] for v in curves.values()] == [[1, 2]] * 4
    assert curves["d"]["curve"][:1] == curves["c"]["curve"][:1]  # (d) branches off (c) after 1 epoch
    # 1.2 s clips are shorter than one 101-frame segment (2.32 s): one zero-padded segment per clip;
    # test_fraction 0.3 of 3 clips per class holds out one clip per class
    assert (results["n_train_clips"], results["n_test_clips"]) == (6, 3)
    assert (results["n_train_segments"], results["n_test_segments"]) == (6, 3)
    assert all(r["test_accuracy"] in (0.0, 1 / 3, 2 / 3, 1.0) for v in curves.values() for r in v["curve"])
    assert results["finetune_lr_scale"] == 0.1
    # all 9 clips trained the MSTModel (learn-mel above), so the 3 test clips were in its audio
    assert results["warnings"] == ["3 test clip(s) were in the MSTModel's (unlabelled) training or validation audio"]
    assert (out / "accuracy_vs_epoch.png").is_file()
    # the checkpoint was not touched by the frozen arm
    model2, _, _ = load_mst(ckpt)
    for key, value in model.state_dict().items():
        assert torch.equal(model2.state_dict()[key], value)


def test_learn_mel_command_errors(tmp_path, capsys):
    from melfront.cli import main
    root = _folder_set(tmp_path / "data")
    assert main(["learn-mel", "--dataset", "folder", "--root", str(root), "-o", str(tmp_path / "m.pt"),
                 "--epochs", "0", "--quiet"]) == 2
    assert "epochs" in capsys.readouterr().err
    assert main(["mst-study", "--dataset", "folder", "--root", str(root), "--mst", str(tmp_path / "none.pt"),
                 "--quiet"]) == 2


def test_frontend_spec_builds_the_mst_frontend(tmp_path):
    import melfront.frontends
    model, target = _trained_pair()
    path = save_mst(tmp_path / "m.pt", model, target)
    front = melfront.frontends.frontend(f"mst(checkpoint={str(path)!r}, frozen=True)", sample_rate=8000, n_mels=16)
    assert isinstance(front, MSTFrontend) and front.frozen and front.input_kind == "waveform"
    x = torch.randn(2, 1000)
    assert torch.allclose(front(x), model.eval()(peak_normalise(x)), atol=1e-6)
    trainable = melfront.frontends.frontend(f"mst(checkpoint={str(path)!r}, frozen=False)")
    assert all(p.requires_grad for p in trainable.parameters())
    with pytest.raises(ValueError, match="sample_rate=8000"):
        melfront.frontends.frontend(f"mst(checkpoint={str(path)!r})", sample_rate=22050)
    with pytest.raises(ValueError, match="n_mels=16"):
        melfront.frontends.frontend(f"mst(checkpoint={str(path)!r})", n_mels=128)
