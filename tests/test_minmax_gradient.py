"""minmax of a constant example (a silent patch) has a finite, zero gradient.

Regression: ``chain(minmax, pcen(trainable=True, init="loop"), minmax)`` (the merlin preset) gave NaN gradients
to every PCEN parameter whenever a batch held one all-silent patch: the outer minmax divided by a span clamped to
the smallest normal number, a finite 0 forward but a backward of ~1e38 (inf) times the upstream gradient, and
PCEN's backward turned inf * 0 into NaN; Adam then wrote NaN into the parameters ("the loss became nan").
"""
import pytest
import torch

from melfront import frontend
from melfront.functional import minmax


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("value", [0.0, 0.3, 1e-39])
def test_minmax_of_a_constant_example_is_zero_with_a_zero_gradient(dtype, value):
    x = torch.full((2, 3, 5), value, dtype=dtype)
    x[1] = torch.arange(15, dtype=dtype).reshape(3, 5)  # the other example varies: its values stay exact
    x.requires_grad_(True)
    y = minmax(x)
    y.backward(torch.randn_like(y) * 4)
    assert y[0].eq(0).all()
    assert torch.equal(y[1].detach(), (torch.arange(15, dtype=dtype) / 14).reshape(3, 5))
    assert torch.isfinite(x.grad).all()
    assert x.grad[0].eq(0).all()


@pytest.mark.parametrize("spec", ['chain(minmax, pcen(trainable=True, init="loop"), minmax)',
                                  'chain(minmax, pcen(trainable=True, per_band=True, init="loop"), minmax)',
                                  "chain(minmax, power(per_band=True), minmax)"])
def test_a_silent_patch_leaves_the_learned_frontend_gradients_finite(spec):
    torch.manual_seed(0)
    fe = frontend(spec, n_mels=8)
    x = torch.rand(3, 8, 16) ** 4
    x[1] = 0.0  # one all-silent patch in the batch (digital silence in ESC-50 clips)
    y = fe(x)
    (y * torch.randn_like(y)).sum().backward()
    grads = [p.grad for p in fe.parameters()]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)  # the varying patches still teach the frontend
