"""Prototypical network support sets: ``support="fixed"`` (one support set per run, as Pons et al.'s reference
code src/proto.py) against ``"episode"`` (a new one every episode); prototypes, seeds, resume, the test hop.

Tiny: 3 classes x 4 clips of random 32-band "mel spectrograms", 32-frame patches, a 4-filter embedding.
"""
import pytest
from conftest import banded_features
import torch

import melfront.train.episodes as episodes_module
from melfront.errors import CheckpointError, ParameterError
from melfront.train import Trainer, build_classifier, resolve_settings
from melfront.train.settings import PONS_PROTO_EVAL_HOP

MEL = dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=32)
N_CLASSES, PER_CLASS = 3, 4


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny convolutions: one intra-op thread (conftest)


@pytest.fixture(scope="module")
def data():
    return banded_features(N_CLASSES, PER_CLASS)


def _settings(**kw):
    train = dict(patch_frames=32, n_mels=32, epochs=2, patience=None, lr=0.01, episodes_per_epoch=3,
                 support_per_class=2, query_per_class=2, model_options={"width": 4})
    train.update(kw)
    return resolve_settings("protonet", train)


def _trainer(seed=0, checkpoint=None, **kw):
    torch.manual_seed(seed)
    clf, _ = build_classifier("db", "protonet", N_CLASSES, MEL, 32, {"width": 4})
    return Trainer(clf, _settings(**kw), seed=seed, device="cpu", progress=False, checkpoint=checkpoint)


@pytest.fixture
def record(monkeypatch):
    """Every episode's support patches (the model's raw input), in order."""
    seen = []
    original = episodes_module.episode_batch

    def spy(*args, **kwargs):
        x, sup_y, qry_y = original(*args, **kwargs)
        seen.append((x[:len(sup_y)].clone(), sup_y.clone(), x[len(sup_y):].clone()))
        return x, sup_y, qry_y

    monkeypatch.setattr(episodes_module, "episode_batch", spy)
    return seen


def test_fixed_support_is_the_same_in_every_episode_and_epoch(data, record):
    t = _trainer(support="fixed")
    t.fit(*data)
    assert len(record) == 6  # 3 episodes x 2 epochs
    x0, y0, _ = record[0]
    assert y0.tolist() == [0, 0, 1, 1, 2, 2]
    assert all(torch.equal(x, x0) and torch.equal(y, y0) for x, y, _ in record)
    # the queries still change from episode to episode
    assert not all(torch.equal(q, record[0][2]) for _, _, q in record)
    # and the support set is the trainer's fixed support
    fixed_x, fixed_y, clips = t.fixed_support(*data)
    assert torch.equal(fixed_x, x0) and torch.equal(fixed_y, y0)
    assert [data[1][c] for c in clips] == y0.tolist() and len(set(clips)) == len(clips)


def test_episode_support_changes_between_episodes(data, record):
    _trainer(support="episode").fit(*data)
    assert len(record) == 6
    assert not all(torch.equal(x, record[0][0]) for x, _, _ in record)


def test_evaluation_prototypes_are_the_fixed_support_means(data):
    t = _trainer(support="fixed")
    t.fit(*data)
    backbone = t.model.backbone
    t.model.eval()
    x, y, _ = t.fixed_support(*data)
    with torch.no_grad():
        emb = backbone.embed(t.model.features(x))
    means = torch.stack([emb[y == k].mean(0) for k in range(N_CLASSES)])
    assert bool(backbone.has_prototypes)
    torch.testing.assert_close(backbone.prototypes, means, rtol=1e-5, atol=1e-6)
    # with "episode" they come from every evaluation patch instead, so they differ
    t2 = _trainer(support="episode")
    t2.fit(*data)
    t2.model.load_state_dict(t.model.state_dict())
    t2.set_prototypes(*data)
    assert not torch.allclose(t2.model.backbone.prototypes, means)


def test_same_seed_same_support_other_seed_other(data):
    a, b, c = (_trainer(seed=s, support="fixed").fixed_support(*data) for s in (0, 0, 1))
    assert torch.equal(a[0], b[0]) and a[2] == b[2]
    assert a[2] != c[2] or not torch.equal(a[0], c[0])


def test_resume_keeps_the_fixed_support(data, record, tmp_path):
    ckpt = tmp_path / "proto.pt"
    full = _trainer(support="fixed")
    full.fit(*data)
    uninterrupted = [x for x, _, _ in record]
    record.clear()

    def stop_after_first(rec):
        if rec["epoch"] == 1:
            raise KeyboardInterrupt

    first = _trainer(support="fixed", checkpoint=ckpt)
    with pytest.raises(KeyboardInterrupt):
        first.fit(*data, on_epoch=stop_after_first)
    resumed = _trainer(support="fixed", checkpoint=ckpt)
    assert resumed.resume() and resumed.epoch == 1
    before = len(record)
    resumed.fit(*data)
    after = [x for x, _, _ in record[before:]]
    assert len(after) == 3 and all(torch.equal(x, uninterrupted[0]) for x in after)
    stored = torch.load(ckpt, weights_only=True)["fixed_support"]
    assert stored == full.fixed_support(*data)[2]
    # a resume whose seed draws another support set is refused, not trained on silently
    other = _trainer(seed=1, support="fixed", checkpoint=tmp_path / "other.pt")
    with pytest.raises(KeyboardInterrupt):
        _trainer(support="fixed", checkpoint=tmp_path / "other.pt").fit(*data, on_epoch=stop_after_first)
    assert other.resume()
    with pytest.raises(CheckpointError, match="fixed support"):
        other.fit(*data)


def test_bad_support_values_are_refused():
    with pytest.raises(ParameterError, match="support"):
        resolve_settings("protonet", {"support": "sometimes"})
    with pytest.raises(ParameterError, match="needs sampling='episodes'"):
        resolve_settings("vgg", {"support": "fixed"})
    assert resolve_settings("protonet")["support"] == "episode"


def test_protonet_test_patches_are_42_frames_apart(data):
    s = resolve_settings("protonet")
    assert s["eval_hop"] == PONS_PROTO_EVAL_HOP == 42 and s["patch_frames"] == 128
    assert resolve_settings("protonet", {"patch_frames": 32})["eval_hop"] == 32  # never gaps between patches
    assert resolve_settings("protonet", {"eval_hop": 10})["eval_hop"] == 10  # a given hop is kept
    assert resolve_settings("vgg")["eval_hop"] == 128
    t = _trainer(patch_frames=64)
    assert t.s["eval_hop"] == 42
    clip = torch.rand(32, 64 + 2 * 42) + 1e-3
    ds = t._eval_dataset([clip], [0])  # what predict() and the "episode" prototypes use
    assert len(ds) == 3
    assert torch.equal(ds[1][0], clip[:, 42:42 + 64])
