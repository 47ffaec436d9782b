"""Process-level fast paths (melfront/runtime.py): allocator, channels-last evaluation, bf16 autocast."""
import subprocess
import sys

import pytest
import torch

import melfront.runtime as runtime
from melfront.errors import ParameterError
from melfront.runtime import autocast, channels_last, tune_allocator
from melfront.train import Trainer, build_classifier, resolve_settings

MEL = dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=52)


def _fresh(code, **env):
    import os
    full = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    full.update(env)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_allocator_applied_and_respects_the_user():
    code = "from melfront.runtime import tune_allocator as t; s = t(); print(s['applied'], s['reason'], t() == s)"
    libc = _fresh("import ctypes; ctypes.CDLL('libc.so.6').gnu_get_libc_version; print('glibc')")
    if libc == "glibc":
        assert _fresh(code) == "True mallopt True"
    assert _fresh(code, MELFRONT_MALLOC="system") == "False MELFRONT_MALLOC=system True"
    assert _fresh(code, MALLOC_ARENA_MAX_="2") == "False MALLOC_*_ environment variables set True"


def test_allocator_bounds(monkeypatch):
    monkeypatch.setattr(runtime, "_STATE", {})
    monkeypatch.setenv("MELFRONT_MALLOC", "system")
    state = tune_allocator(trim_threshold=1 << 50)
    assert state == {"applied": False, "reason": "MELFRONT_MALLOC=system"}
    assert runtime.allocator_state() == state


def test_channels_last_restores_and_keeps_values(one_thread):
    clf = build_classifier("logeps", "sbcnn", 3, MEL, 100)[0].eval()
    x = torch.rand(4, 52, 100) + 1e-3
    params = list(clf.parameters())
    with torch.no_grad():
        ref = clf(x)
        with channels_last(clf.backbone):
            assert clf.backbone.features[0].weight.is_contiguous(memory_format=torch.channels_last)
            inside = clf(x)
    assert list(clf.parameters()) == params and all(p.is_contiguous() for p in params)
    torch.testing.assert_close(inside, ref, rtol=1e-5, atol=1e-6)


def test_autocast_contexts():
    with autocast("cpu", "bf16"):
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast("cpu", "fp32"):
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.float32
    with pytest.raises(ParameterError, match="precision"):
        autocast("cpu", "fp16")


def test_input_conv_backward_under_bf16_autocast(one_thread):
    """InputConv2d's custom backward (trainable frontend in front) works under autocast, as nn.Conv2d's."""
    from melfront.models.classifier import InputConv2d
    torch.manual_seed(0)
    conv = InputConv2d(1, 4, 5)
    ref = torch.nn.Conv2d(1, 4, 5)
    ref.load_state_dict(conv.state_dict())
    x = torch.rand(3, 1, 20, 20, requires_grad=True)
    grads = []
    for m in (conv, ref):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = m(x)
        assert y.dtype == torch.bfloat16
        gx, gw = torch.autograd.grad(y.float().square().sum(), (x, m.weight))
        assert gx.dtype == torch.float32 and gw.dtype == torch.float32
        grads.append((gx, gw))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=0.05, atol=0.05 * float(grads[1][0].abs().max()))
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=0.05, atol=0.05 * float(grads[1][1].abs().max()))


def test_trainer_bf16_trains_and_predicts_close_to_fp32(one_thread):
    feats = [torch.rand(52, 120, generator=torch.Generator().manual_seed(i)) * (1 + i % 2) + 1e-3 for i in range(6)]
    labels = [i % 2 for i in range(6)]
    scores = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        clf = build_classifier("loglearn", "sbcnn", 2, MEL, 100)[0]
        s = resolve_settings("sbcnn", dict(epochs=1, batch_size=3, lr=0.01, patch_frames=100, n_mels=52,
                                           precision=precision))
        t = Trainer(clf, s, device="cpu", progress=False)
        hist = t.fit(feats, labels)
        assert torch.isfinite(torch.tensor(hist[0]["loss"]))
        assert all(p.dtype == torch.float32 for p in t.model.parameters())
        scores[precision] = t.predict(feats)
    assert abs(scores["bf16"] - scores["fp32"]).max() < 0.1  # bfloat16: 8 bits of mantissa
