"""Exact dense evaluation (train/dense.py): logits equal to the patch-by-patch loop at any hop."""
import pytest
import torch

from melfront.data.patches import PatchDataset
from melfront.train import Trainer, build_classifier, resolve_settings
from melfront.train.dense import clip_patch_logits, dense_logits, dense_reason, frame_local, patch_logits

MEL = dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=60)

# (frontend, model, n_mels, patch_frames, model options)
CASES = {
    "sbcnn": ("logeps", "sbcnn", 52, 100, {}),
    "sbcnn-bn": ("loglearn", "sbcnn", 52, 100, {"input_bn": True}),
    "timbre": ("loglearn", "timbre", 108, 40, {}),
    "piczak": ("logeps", "piczak", 60, 41, {"hidden": 16}),
}


def _model(case, seed=0):
    front, model, n_mels, frames, opts = CASES[case]
    torch.manual_seed(seed)
    clf, _ = build_classifier(front, model, 5, dict(MEL, n_mels=n_mels), frames, opts)
    if hasattr(clf.backbone, "input_bn") and isinstance(clf.backbone.input_bn, torch.nn.BatchNorm2d):
        bn = clf.backbone.input_bn  # running statistics other than (0, 1), so the test sees them
        bn.running_mean.fill_(-3.0)
        bn.running_var.fill_(2.5)
    return clf.eval(), n_mels, frames


def _loop(clf, feats, ds):
    with torch.no_grad():
        return torch.cat([clf(torch.stack([ds[i][0] for i in range(b, min(b + 64, len(ds)))]))
                          for b in range(0, len(ds), 64)])


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("hop", [1, 7, 42, "patch"])
def test_dense_equals_patch_loop(case, hop, one_thread):
    clf, n_mels, frames = _model(case)
    assert dense_reason(clf) is None
    g = torch.Generator().manual_seed(1)
    # a clip shorter than a patch (repeat-padded), one a little longer, one several patches long
    feats = [torch.rand(n_mels, n, generator=g) * 10 + 1e-4 for n in (frames - 9, frames + 13, 3 * frames + 5)]
    ds = PatchDataset(feats, [0] * 3, n_frames=frames, mode="all", hop=frames if hop == "patch" else hop)
    with torch.no_grad():
        dense = dense_logits(clf, feats, ds.index, frames)
    loop = _loop(clf, feats, ds)
    assert dense.shape == loop.shape
    torch.testing.assert_close(dense, loop, rtol=1e-5, atol=1e-5 * float(loop.abs().max()))


def test_chunks_equal_one_pass(one_thread):
    """A long clip cut into chunks of starts gives the logits of one pass (and of the loop)."""
    clf, n_mels, frames = _model("sbcnn")
    feats = [torch.rand(n_mels, 700, generator=torch.Generator().manual_seed(2)) + 1e-3]
    ds = PatchDataset(feats, [0], n_frames=frames, mode="all", hop=3)
    with torch.no_grad():
        one = dense_logits(clf, feats, ds.index, frames, chunk_frames=10_000)
        small = dense_logits(clf, feats, ds.index, frames, chunk_frames=20, batch_frames=300)
    torch.testing.assert_close(small, one, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(one, _loop(clf, feats, ds), rtol=1e-5, atol=1e-5)


def test_which_path():
    mel = dict(MEL, n_mels=52)
    exact = build_classifier("stack(logeps, loglearn)", "sbcnn", 2, mel, 100)[0].eval()
    assert dense_reason(exact) is None
    assert "training" in dense_reason(exact.train())
    assert "frame-local" in dense_reason(build_classifier("db(ref='max')", "sbcnn", 2, mel, 100)[0].eval())
    assert "padding" in dense_reason(build_classifier("logeps", "vgg", 2, mel, 32, {"width": 4})[0].eval())
    piczak = build_classifier("logeps", "piczak", 2, dict(MEL), 41, {"deltas": True, "hidden": 8})[0].eval()
    assert dense_reason(piczak) is not None
    assert dense_reason(exact.eval(), kind="waveform") == "waveform features"
    assert not frame_local(build_classifier("minmax", "sbcnn", 2, mel, 100)[0].frontend)


@pytest.mark.parametrize("front", ["pcen", "db"])
def test_fallback_equals_loop(front, one_thread):
    """Not frame-local: scored patch by patch (batched, unfold), equal to the loop."""
    clf = build_classifier(front, "vgg", 3, dict(MEL, n_mels=32), 32, {"width": 4})[0].eval()
    feats = [torch.rand(32, 75) + 1e-3, torch.rand(32, 20) + 1e-3]
    ds = PatchDataset(feats, [0, 0], n_frames=32, mode="all", hop=5)
    with torch.no_grad():
        z = clip_patch_logits(clf, feats, ds.index, 32, batch_size=7)
        ref = patch_logits(clf, feats, ds.index, 32, batch_size=1000)
    torch.testing.assert_close(z, _loop(clf, feats, ds), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(z, ref, rtol=1e-5, atol=1e-6)


def test_trainer_predict_uses_dense_and_agrees(one_thread, monkeypatch):
    """Trainer.predict (the path run_trial takes) scores with dense evaluation, same scores as the loop."""
    clf, n_mels, frames = _model("sbcnn")
    s = resolve_settings("sbcnn", dict(epochs=1, batch_size=2, patch_frames=frames, n_mels=n_mels, eval_hop=1))
    t = Trainer(clf, s, device="cpu", progress=False)
    feats = [torch.rand(n_mels, n) + 1e-3 for n in (110, 150)]
    import melfront.train.dense as dense_mod
    calls = []
    real = dense_mod.dense_logits
    monkeypatch.setattr(dense_mod, "dense_logits", lambda *a, **k: calls.append(1) or real(*a, **k))
    scores = t.predict(feats)
    assert calls, "dense evaluation was not used"
    ds = PatchDataset(feats, [0, 0], n_frames=frames, mode="all", hop=1)
    logp = torch.log_softmax(_loop(clf, feats, ds).double(), 1)
    from melfront.train.metrics import aggregate
    ref = aggregate(logp, ds.clip_indices, 2, s["aggregation"])
    assert scores.shape == (2, 5)
    assert abs(scores - ref).max() < 1e-5


def test_dense_refuses_where_not_exact():
    from melfront.errors import ParameterError
    clf = build_classifier("pcen", "sbcnn", 2, dict(MEL, n_mels=52), 100)[0].eval()
    with pytest.raises(ParameterError, match="not frame-local"):
        dense_logits(clf, [torch.rand(52, 120)], [(0, 0)], 100)


def test_clips_of_many_lengths_batched_together(one_thread):
    """Chunks of different lengths share a batch (zero-padded on the right): same logits as the loop."""
    clf, n_mels, frames = _model("sbcnn-bn")
    g = torch.Generator().manual_seed(3)
    feats = [torch.rand(n_mels, n, generator=g) + 1e-3 for n in (100, 101, 117, 133, 160, 250)]
    ds = PatchDataset(feats, [0] * len(feats), n_frames=frames, mode="all", hop=5)
    with torch.no_grad():
        dense = dense_logits(clf, feats, ds.index, frames, batch_frames=10_000)
    loop = _loop(clf, feats, ds)
    torch.testing.assert_close(dense, loop, rtol=1e-5, atol=1e-5 * float(loop.abs().max()))


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_input_norm_of_fitted_settings(norm, one_thread):
    """The fitted settings' input norm (NormalizedBackbone, batch norm in eval mode) keeps dense evaluation exact."""
    clf = build_classifier("loglearn", "sbcnn", 3, dict(MEL, n_mels=52), 100, {"input_norm": norm})[0].eval()
    if norm == "batch":
        clf.backbone.norm.bn.running_mean.fill_(-2.0)
    assert dense_reason(clf) is None
    feats = [torch.rand(52, 170, generator=torch.Generator().manual_seed(4)) + 1e-3]
    ds = PatchDataset(feats, [0], n_frames=100, mode="all", hop=1)
    with torch.no_grad():
        dense = dense_logits(clf, feats, ds.index, 100)
    loop = _loop(clf, feats, ds)
    torch.testing.assert_close(dense, loop, rtol=1e-5, atol=1e-5 * float(loop.abs().max()))
    example = build_classifier("loglearn", "sbcnn", 3, dict(MEL, n_mels=52), 100, {"input_norm": "example"})[0]
    assert dense_reason(example.eval()) is not None


def test_db_with_top_db_exact(one_thread):
    """db (top_db=80): patches the clip changes are scored one by one, the others densely; all equal the loop."""
    clf = build_classifier("db", "sbcnn", 3, dict(MEL, n_mels=52), 100)[0].eval()
    assert dense_reason(clf) is None
    g = torch.Generator().manual_seed(6)
    loud = torch.rand(52, 300, generator=g) + 0.1
    loud[:, 150:170] = 1e-12  # 110 dB under the rest: every patch over these frames is clipped
    feats = [loud, torch.rand(52, 130, generator=g) + 0.1]
    ds = PatchDataset(feats, [0, 0], n_frames=100, mode="all", hop=3)
    import melfront.train.dense as dense_mod
    seen = []
    real = dense_mod.patch_logits
    dense_mod.patch_logits = lambda m, f, idx, *a, **k: seen.append(len(idx)) or real(m, f, idx, *a, **k)
    try:
        with torch.no_grad():
            dense = dense_logits(clf, feats, ds.index, 100)
    finally:
        dense_mod.patch_logits = real
    assert seen and 0 < seen[0] < len(ds)  # some patches clipped, not all
    loop = _loop(clf, feats, ds)
    torch.testing.assert_close(dense, loop, rtol=1e-5, atol=1e-5 * float(loop.abs().max()))


def test_dense_only_where_it_pays(monkeypatch):
    """At hop = a patch the few patches are scored directly (the dense pass computes every phase anyway)."""
    import melfront.train.dense as dense_mod
    clf, n_mels, frames = _model("sbcnn")
    feats = [torch.rand(n_mels, 400) + 1e-3]
    calls = []
    real = dense_mod.dense_logits
    monkeypatch.setattr(dense_mod, "dense_logits", lambda *a, **k: calls.append(1) or real(*a, **k))
    for hop, dense in ((1, True), (frames, False)):
        calls.clear()
        ds = PatchDataset(feats, [0], n_frames=frames, mode="all", hop=hop)
        with torch.no_grad():
            z = clip_patch_logits(clf, feats, ds.index, frames, 64)
        assert bool(calls) == dense and z.shape == (len(ds), 5)


def test_long_clip_in_bounded_pieces(monkeypatch, one_thread):
    """A long clip is computed in chunks: no pass sees more than chunk_frames + patch_frames frames."""
    import melfront.train.dense as dense_mod
    clf, n_mels, frames = _model("timbre")
    feats = [torch.rand(n_mels, 5000) + 1e-3]
    ds = PatchDataset(feats, [0], n_frames=frames, mode="all", hop=1)
    widths = []
    real = dense_mod._trunk
    monkeypatch.setattr(dense_mod, "_trunk", lambda z, trunk: widths.append(z.shape[0] * z.shape[-1]) or real(z, trunk))
    with torch.no_grad():
        z = dense_logits(clf, feats, ds.index, frames, chunk_frames=256, batch_frames=300)
    assert z.shape == (len(ds), 5) and max(widths) <= 256 + frames
    torch.testing.assert_close(z[::997], _loop(clf, feats, ds)[::997], rtol=1e-5, atol=1e-5)
