"""PCEN: exactness against the float64 frame loop and librosa, librosa's invariants, streaming,
the smoother's start modes, and gradients (float64 gradcheck of the hand-written backward)."""
import importlib

import numpy as np
import pytest
import torch

from melfront import functional as F
from melfront.frontends import PCEN, MelSpectrogram

from conftest import make_field_clip
from oracles import pcen_reference

PCEN_MODULE = importlib.import_module("melfront.functional.pcen")  # the module; F.pcen is the function


def rel_err(a, b):
    a, b = a.double(), b.double()
    return ((a - b).abs() / b.abs().clamp(min=1e-300)).max().item()


def hundred_db(batch=2, n_mels=16, frames=1000, seed=0):
    """Loud first half, then 100 dB quieter: the case where float32 shortcuts lose digits."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, n_mels, frames, generator=g, dtype=torch.float64) * 1e2 + 1e-2
    x[..., frames // 2:] *= 1e-10
    return x


@pytest.fixture(scope="module")
def mel64():
    x = torch.from_numpy(make_field_clip(duration=1.0))
    return MelSpectrogram(22050, n_fft=1024, hop_length=512, n_mels=16)(x)


# ---------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("init", ["first", "loop", "zero", "librosa"])
def test_float32_within_1e4_of_float64_loop_on_100_db_range(init):
    x = hundred_db()
    ref = pcen_reference(x, init=init)
    assert rel_err(F.pcen(x.float(), init=init), ref) <= 1e-4


def test_per_band_float32_exact_on_100_db_range():
    x = hundred_db(frames=300)
    s = torch.linspace(0.005, 0.6, 16, dtype=torch.float64)
    alpha = torch.linspace(0.5, 1.0, 16, dtype=torch.float64)
    ref = pcen_reference(x, s=s, alpha=alpha, init="loop")
    assert rel_err(F.pcen(x.float(), s=s.float(), alpha=alpha.float(), init="loop"), ref) <= 1e-4


@pytest.mark.parametrize("frames", [1, 2, 31, 32, 33, 97, 1000])
@pytest.mark.parametrize("chunk", [2, 8, 64])
def test_float64_equals_loop_for_any_length_and_chunk(frames, chunk):
    x = hundred_db(batch=1, n_mels=3, frames=frames)
    s = torch.tensor([0.025, 0.3, 1.0], dtype=torch.float64)  # s = 1 takes the matrix path
    for init in ("first", "loop"):
        ref = pcen_reference(x, s=s, init=init)
        assert rel_err(F.pcen(x, s=s, init=init, chunk=chunk), ref) < 1e-12


def test_matches_librosa_with_its_default_start(mel64):
    librosa = pytest.importorskip("librosa")
    S = mel64.numpy()
    want = librosa.pcen(S, sr=22050, hop_length=512)  # gain .98, bias 2, power .5, eps 1e-6, time_constant .4
    f = PCEN(time_constant=0.4, sample_rate=22050, hop_length=512, init="librosa")
    assert rel_err(f(mel64), torch.from_numpy(want)) < 1e-5
    assert rel_err(f(mel64.float()), torch.from_numpy(want)) < 1e-5


@pytest.mark.parametrize("params", [dict(gain=0.5, bias=10.0, power=0.25, eps=1e-3, b=0.1),
                                    dict(gain=0.98, bias=2.0, power=0.5, eps=1e-6, b=0.025)])
def test_matches_librosa_with_the_same_initial_state(mel64, params):
    librosa = pytest.importorskip("librosa")
    S = mel64.numpy()
    b = params["b"]
    zi = (1 - b) * S[:, :1]  # lfilter's delay state for M[-1] = X[0]
    want = librosa.pcen(S, sr=22050, hop_length=512, zi=zi, max_size=1, **params)
    got = F.pcen(mel64, s=b, alpha=params["gain"], delta=params["bias"], r=params["power"], eps=params["eps"],
                 init="first")
    assert rel_err(got, torch.from_numpy(want)) < 1e-5


# ---------------------------------------------------------------------------- invariants (librosa's tests)
def test_no_gain_no_bias_s1_is_a_power_law(mel64):
    for r in (0.5, 0.25, 1.0):
        torch.testing.assert_close(F.pcen(mel64, s=1.0, alpha=0.0, delta=0.0, r=r), mel64 ** r)


def test_no_gain_is_compressed_input(mel64):
    torch.testing.assert_close(F.pcen(mel64, alpha=0.0, delta=2.0, r=0.5), (mel64 + 2.0) ** 0.5 - 2.0 ** 0.5)


def test_constant_input_at_steady_state():
    x = torch.full((1, 2, 50), 3.0, dtype=torch.float64)
    M = F.pcen_smoother(x, s=0.1, init="first")
    torch.testing.assert_close(M, x)
    M = F.pcen_smoother(x, s=0.1, init="loop")
    torch.testing.assert_close(M, x)


# ---------------------------------------------------------------------------- streaming
@pytest.mark.parametrize("sizes", [[1] * 12, [5, 7], [3, 1, 8], [12]])
@pytest.mark.parametrize("init", ["first", "loop", "librosa"])
def test_streaming_in_chunks_equals_one_call(sizes, init):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 4, sum(sizes), generator=g, dtype=torch.float64)
    s = torch.tensor([0.02, 0.1, 0.5, 0.9], dtype=torch.float64)
    whole, final = F.pcen(x, s=s, init=init, return_state=True)
    # the first chunk starts as `init` says; "loop" needs the whole clip, so start from its state
    start = None
    if init == "loop":
        start = F.pcen_smoother(x, s=s, init="loop")[..., -1]
    outs, state, pos = [], start, 0
    for n in sizes:
        part = x[..., pos:pos + n]
        if state is None:
            y, state = F.pcen(part, s=s, init=init, return_state=True)
        else:
            y, state = F.pcen(part, s=s, initial_state=state, return_state=True)
        outs.append(y)
        pos += n
    torch.testing.assert_close(torch.cat(outs, -1), whole, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(state, final, rtol=1e-12, atol=1e-14)


def test_module_stream_equals_one_call(mel64):
    f = PCEN(trainable=True, per_band=True, n_mels=16, init="first")  # "median" needs 40 frames in the first chunk
    x = mel64.float().unsqueeze(0)
    whole = f(x)
    y1, st = f.stream(x[..., :10])
    y2, st = f.stream(x[..., 10:], st)
    torch.testing.assert_close(torch.cat([y1, y2], -1), whole, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- start modes
def test_init_modes_differ_only_at_the_start():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, 3, 400, generator=g, dtype=torch.float64) + 0.5
    x[..., :5] *= 50  # a loud onset, so that the modes' starts differ a lot
    s = 0.1
    outs = {init: F.pcen(x, s=s, init=init) for init in ("first", "loop", "zero", "librosa")}
    settle = int(np.ceil(np.log(1e-13) / np.log(1 - s)))  # (1 - s)^t < 1e-13 after this many frames
    for a in outs:
        for b in outs:
            if a < b:
                assert rel_err(outs[a][..., :3], outs[b][..., :3]) > 1e-3, (a, b)  # different starts
                assert rel_err(outs[a][..., settle:], outs[b][..., settle:]) < 1e-10, (a, b)  # same afterwards


def test_loop_is_the_clip_played_before_itself():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 40, generator=g, dtype=torch.float64)
    looped = F.pcen(x, s=0.2, init="loop")
    # periodic: the loop start of a twice-repeated clip gives the same two halves
    twice = F.pcen(torch.cat([x, x], -1), s=0.2, init="loop")
    torch.testing.assert_close(twice[..., :40], looped)
    torch.testing.assert_close(twice[..., 40:], looped)
    # and it is the limit of playing the clip many times from silence
    many = F.pcen(torch.cat([x] * 8, -1), s=0.2, init="zero")[..., -40:]
    torch.testing.assert_close(many, looped, rtol=1e-9, atol=0)


def test_loop_start_has_no_dark_band():
    """With librosa's start (steady state for 1) a loud clip starts far too bright, a quiet one
    far too dark; the looped start puts the first frames where the rest of the clip is."""
    x = torch.full((1, 1, 200), 1e-4, dtype=torch.float64)  # a quiet, stationary clip
    steady = F.pcen(x, init="loop")[..., -1].item()
    assert F.pcen(x, init="loop")[..., 0].item() == pytest.approx(steady, rel=1e-12)
    assert F.pcen(x, init="librosa")[..., 0].item() < 0.1 * steady


# ---------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("per_band", [False, True])
@pytest.mark.parametrize("init", ["first", "loop", "zero", "librosa"])
def test_gradcheck_all_five_parameters_and_input(per_band, init):
    g = torch.Generator().manual_seed(4)
    x = (torch.rand(2, 3, 11, generator=g, dtype=torch.float64) + 0.05).requires_grad_()
    shape = (3,) if per_band else ()
    values = [torch.full(shape, v, dtype=torch.float64) for v in (0.2, 0.8, 1.5, 0.4, 0.05)]
    if per_band:
        values = [v * torch.tensor([0.7, 1.0, 1.2], dtype=torch.float64) for v in values]
    values = [v.requires_grad_() for v in values]
    assert torch.autograd.gradcheck(lambda x, *p: F.pcen(x, *p, init=init, chunk=4), (x, *values))


def test_gradcheck_initial_state():
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 3, 9, generator=g, dtype=torch.float64)
    state = (torch.rand(2, 3, generator=g, dtype=torch.float64) + 0.1).requires_grad_()
    s = torch.tensor([0.1, 0.3, 0.5], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda st, s: F.pcen(x, s=s, initial_state=st, chunk=4), (state, s))


def test_gradients_match_autograd_through_the_loop():
    g = torch.Generator().manual_seed(6)
    x = torch.rand(2, 4, 30, generator=g, dtype=torch.float64) + 0.01
    x[..., 15:] *= 1e-6
    p1 = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (0.05, 0.9, 2.0, 0.5, 1e-4)]
    p2 = [p.detach().clone().requires_grad_() for p in p1]
    w = torch.randn(2, 4, 30, generator=g, dtype=torch.float64)
    (F.pcen(x, *p1, init="loop") * w).sum().backward()
    (pcen_reference(x, *p2, init="loop") * w).sum().backward()
    for a, b in zip(p1, p2):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-12)


def test_reference_rejects_unknown_init():
    with pytest.raises(ValueError, match="init"):
        pcen_reference(torch.ones(1, 2, 3), init="middle")
    with pytest.raises(ValueError, match="init"):
        F.pcen(torch.ones(1, 2, 3), init="middle")
    with pytest.raises(ValueError, match="s must be"):
        F.pcen(torch.ones(1, 2, 3), s=1.5)
    with pytest.raises(ValueError, match="r must be"):
        F.pcen(torch.ones(1, 2, 3), r=0.0)
    with pytest.raises(ValueError, match="time_constant"):
        PCEN(time_constant=0.4)  # needs sample_rate and hop_length
    with pytest.raises(ValueError, match="alpha"):
        PCEN(trainable=True, alpha=1.0)


def test_blocked_batch_equals_one_block_with_gradients(monkeypatch):
    """The fused PCEN walks through the batch in blocks; block boundaries must not change anything."""
    g = torch.Generator().manual_seed(7)
    x = (torch.rand(5, 3, 13, generator=g, dtype=torch.float64) + 0.01).requires_grad_()
    values = [(torch.tensor([0.1, 0.3, 0.05], dtype=torch.float64) * k).requires_grad_() for k in (1.0, 3.0, 10.0, 1.5, 0.1)]
    w = torch.randn(5, 3, 13, generator=g, dtype=torch.float64)

    def run(init):
        out, state = F.pcen(x, *values, init=init, chunk=4, return_state=True)
        grads = torch.autograd.grad((out * w).sum() + state.sum(), [x, *values])
        return out, state, grads

    for init in ("first", "loop"):
        whole = run(init)
        monkeypatch.setattr(PCEN_MODULE, "PCEN_BLOCK", 2 * 3 * 13)  # two examples per block: 3 blocks, the last short
        blocked = run(init)
        monkeypatch.undo()
        torch.testing.assert_close(blocked[0], whole[0], rtol=1e-13, atol=0)
        torch.testing.assert_close(blocked[1], whole[1], rtol=1e-13, atol=0)
        for a, b in zip(blocked[2], whole[2]):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)
        monkeypatch.setattr(PCEN_MODULE, "PCEN_BLOCK", 3 * 13)
        assert torch.autograd.gradcheck(lambda x, *p: F.pcen(x, *p, init=init, chunk=4), (x, *values))
        monkeypatch.undo()


def test_gradient_through_the_returned_state_matches_the_loop():
    g = torch.Generator().manual_seed(8)
    x = torch.rand(2, 3, 10, generator=g, dtype=torch.float64) + 0.01
    p1 = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (0.2, 0.7, 1.5, 0.3, 1e-3)]
    p2 = [p.detach().clone().requires_grad_() for p in p1]
    out, state = F.pcen(x, *p1, init="loop", return_state=True)
    (out.sum() + 3 * state.sum()).backward()
    out, state = pcen_reference(x, *p2, init="loop", return_state=True)
    (out.sum() + 3 * state.sum()).backward()
    for a, b in zip(p1, p2):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-12)
