"""Per-channel energy normalisation (PCEN, Wang et al. 2017) and its smoother, exact and fast.

The smoother :math:`M[t] = (1 - s) M[t-1] + s X[t]` is an exact chunked recursion
(:mod:`melfront.functional.scan`), never a Python loop over frames; :func:`pcen` adds the gain
and the compression with a hand-written backward pass. Input ``(..., n_mels, frames)``.

>>> import torch
>>> pcen(torch.ones(2, 3, 5)).shape
torch.Size([2, 3, 5])
"""
from __future__ import annotations

import math
import numbers
from typing import Optional, Tuple

import torch

from ..checks import finite_float, one_of, positive_float, probability
from ..errors import ParameterError
from .params import band_param, check_spec
from .pcen_start import opening_quantile
from .scan import SCAN_CHUNK, Smoother, decay_powers, scan, smooth_plain

__all__ = ["PCEN_INITS", "PCEN_BLOCK", "SCAN_CHUNK", "pcen_time_constant_to_s", "pcen_smoother", "pcen",
           "start_state", "plain_mode", "pcen_plain"]

#: The smoother's starts :math:`M[-1]` that ``init`` accepts, see :func:`pcen_smoother` and :func:`start_state`.
#: ``"median"`` (the default) is the per-band median of the first
#: :data:`~melfront.functional.pcen_start.ROBUST_START_FRAMES` frames.
PCEN_INITS = ("median", "first", "loop", "zero", "librosa")


def start_state(flat: torch.Tensor, init: str) -> Tuple[Optional[torch.Tensor], bool]:
    """The smoother's start for ``init``: ``(M[-1] (N, m) or None for a zero start, periodic)``.

    ``flat`` is the input ``(N, m, T)``. The one place that defines the starts of :data:`PCEN_INITS`,
    for the fast path and the exportable one (:func:`pcen_plain`; TorchScript-compatible): a new start
    mode is added here and in :data:`PCEN_INITS`. ``periodic`` (``"loop"``) means
    :math:`M[-1] = M_0[T-1] / (1 - (1-s)^T)`, solved by the smoother itself. ``"median"`` is the
    per-band median of the first :data:`~melfront.functional.pcen_start.ROBUST_START_FRAMES` frames
    (all of them when fewer), :func:`~melfront.functional.pcen_start.opening_quantile`.

    >>> state, periodic = start_state(torch.ones(2, 3, 4), "librosa")
    >>> state.shape, periodic
    (torch.Size([2, 3]), False)
    >>> start_state(torch.tensor([[[4.0, 1.0, 9.0]]]), "median")[0].tolist()
    [[4.0]]
    """
    if init == "median":
        # 40 = ROBUST_START_FRAMES, written out: TorchScript cannot read a global int (a test checks they agree)
        return opening_quantile(flat, 40, 0.5), False
    if init == "first":
        return flat[:, :, 0], False
    if init == "librosa":
        return torch.ones_like(flat[:, :, 0]), False
    if init == "loop":
        return None, True
    if init != "zero":
        raise ParameterError("init must be one of melfront.functional.PCEN_INITS, got " + init)
    return None, False


def plain_mode() -> bool:
    """True where PCEN must run in plain tensor ops: ``torch.compile``, ``torch.export``, ONNX export, tracing.

    Eager PCEN uses a custom autograd Function with a data-dependent choice of scan (fast, but
    opaque to the exporters); under compilation, export or tracing, :func:`pcen` and
    :func:`pcen_smoother` switch to :func:`pcen_plain` / :func:`~melfront.functional.scan.smooth_plain`
    (same values to float rounding). ``torch.jit.script`` code calls :func:`pcen_plain` directly.
    The TorchScript-based ONNX exporter (``torch.onnx.export(..., dynamo=False)``) is refused with
    a :class:`~melfront.errors.ParameterError`: it would freeze the number of frames.

    >>> plain_mode()
    False
    """
    if torch.onnx.is_in_onnx_export() and torch.jit.is_tracing():
        raise ParameterError("PCEN cannot be exported by the TorchScript-based ONNX exporter (dynamo=False), "
                             "which would fix the number of frames; use torch.onnx.export(..., dynamo=True)")
    return torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()


def pcen_time_constant_to_s(time_constant: float, sample_rate: float, hop_length: int) -> float:
    r"""Smoothing coefficient ``s`` of a smoother with time constant ``time_constant`` seconds.

    As librosa: with :math:`T = \tau \cdot sr / hop` frames, :math:`s = (\sqrt{1 + 4T^2} - 1) / (2T^2)`,
    the root of :math:`s^2 + (1 - s)/T - 2 = 0`, which matches the full width at half maximum
    of the squared frequency response of the one-pole low-pass filter.

    >>> round(pcen_time_constant_to_s(0.4, 22050, 512), 6)
    0.056389
    """
    def bad(v):
        return isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 < v < math.inf

    if bad(time_constant):
        raise ParameterError(f"time_constant must be positive (seconds), got {time_constant!r}")
    if bad(sample_rate):
        raise ParameterError(f"time_constant needs a positive sample_rate, got {sample_rate!r}")
    if bad(hop_length):
        raise ParameterError(f"time_constant needs a positive hop_length, got {hop_length!r}")
    t = float(time_constant) * float(sample_rate) / float(hop_length)
    return (math.sqrt(1.0 + 4.0 * t * t) - 1.0) / (2.0 * t * t)


def _initial_state(x, flat, lead, m, initial_state, init):
    """``(M[-1] (N, m) or None, loop)`` for the smoother's start."""
    if initial_state is not None:
        state = torch.as_tensor(initial_state, dtype=x.dtype, device=x.device)
        return torch.broadcast_to(state, (*lead, m)).reshape(-1, m), False
    return start_state(flat, init)


def _smoother_setup(x, s, initial_state, init, chunk):
    """Checks and the smoother's start for :func:`pcen_smoother` and :func:`pcen`."""
    check_spec(x, min_ndim=2)
    lead = x.shape[:-2]
    m, T = x.shape[-2], x.shape[-1]
    if T == 0:
        raise ParameterError("pcen needs at least one frame, got 0")
    one_of("init", init, PCEN_INITS)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 2:
        raise ParameterError(f"chunk must be an integer >= 2, got {chunk!r}")
    if not torch.is_tensor(s):
        probability("s", s, open_low=True)
    s_t = torch.as_tensor(s, dtype=x.dtype, device=x.device)
    if s_t.ndim > 1 or (s_t.ndim == 1 and s_t.shape[0] not in (1, m)):
        raise ParameterError(f"s must be a number or a per-band vector of {m} values, got shape {tuple(s_t.shape)}")
    if s_t.ndim == 1 and s_t.shape[0] == 1:
        s_t = s_t[0]
    flat = x.reshape(-1, m, T)
    init_state, loop = _initial_state(x, flat, lead, m, initial_state, init)
    return lead, m, T, flat, s_t, init_state, loop


# Over 60 lines only through its docstring (every start mode told); the body is a few lines.
def pcen_smoother(x: torch.Tensor, s=0.025, initial_state=None, init: str = "median",
                  return_state: bool = False, chunk: int = SCAN_CHUNK):
    r"""The PCEN smoother, :math:`M[t] = (1 - s) M[t-1] + s X[t]`, exactly and without a loop over frames.

    Parameters
    ----------
    x : tensor ``(..., n_mels, frames)``
    s : float in (0, 1], 0-d tensor or per-band vector ``(n_mels,)``
        Smoothing coefficient (weight of the new frame).
    initial_state : tensor ``(..., n_mels)`` or broadcastable, optional
        :math:`M[-1]`, e.g. the ``state`` returned by the previous chunk of a stream. Overrides ``init``.
    init : "median" (default), "first", "loop", "zero" or "librosa"
        The smoother's start :math:`M[-1]` when ``initial_state`` is None (measured on real clips:
        ``benchmarks/pcen_start_modes.py``, BENCHMARKS.md "PCEN start modes").
        "median": per band, the median of the first 40 frames
        (:data:`~melfront.functional.pcen_start.ROBUST_START_FRAMES`; all frames when the clip is
        shorter; :func:`~melfront.functional.pcen_start.robust_initial_state`):
        the steady state of the opening's typical level; neither bright nor dark on quiet openings
        and fade-ins, not moved by a loud event in fewer than half of those frames. Causal with a
        look-ahead of 40 frames (0.93 s at 22050 Hz / hop 512). In narrow low bands, where noise
        power is close to exponential (median 0.69 x mean), the first frames come out up to ~1.4x
        too bright.
        "first": :math:`M[-1] = X[0]`, the first frame (so :math:`M[0] = X[0]`). Artefact-free when
        the clip opens at its usual level; when it opens quietly or fades in, that one quiet frame
        is far below the level that follows, and the first second comes out bright, as with "zero"
        (background amplified until M catches up; single-frame noise also leaves horizontal streaks).
        "zero": :math:`M[-1] = 0`. Always a bright first 1-2 s: the gain :math:`(\epsilon + M)^{-\alpha}`
        starts huge.
        "librosa": :math:`M[-1] = 1`, ``librosa.pcen``'s default ``zi = lfilter_zi([s], [1, s - 1])``
        (the steady state for a constant input of 1). Depends on the input's scale: melfront's mel
        power of audio in [-1, 1] is far below 1, so the output is dark for seconds (longer than a
        5 s clip for typical material); for audio scaled as 32-bit integers (power x 2**62) 1 is
        negligible and it is the same as "zero".
        "loop": the periodic steady state of the clip played in a loop,
        :math:`M[-1] = M_0[T-1] / (1 - (1-s)^T)` with :math:`M_0` the smoother run from zero, i.e.
        the clip played forever before itself (the Macaulay Library / Merlin team's fix for the
        dark band of the "librosa" start). No transient of its own, but the start is taken from the end of the clip (mostly its last
        ~2 s): a clip that opens quietly and gets louder starts dark, one that ends in silence
        starts bright. Needs the whole clip (not causal, not for streams).
    return_state : bool
        Also return :math:`M[..., -1]` ``(..., n_mels)`` to continue a stream.
    chunk : int
        Frames per block of the exact chunked recursion (speed only).

    Returns
    -------
    M : tensor, same shape as ``x`` (and the final state if ``return_state``).

    >>> x = torch.tensor([[[1.0, 1.0, 1.0]]], dtype=torch.float64)
    >>> pcen_smoother(x, s=0.5, init="zero").tolist()
    [[[0.5, 0.75, 0.875]]]
    """
    lead, m, T, flat, s_t, init_state, loop = _smoother_setup(x, s, initial_state, init, chunk)
    if plain_mode():
        M = smooth_plain(flat, s_t, init_state, loop)
    else:
        M = Smoother.apply(flat, s_t, init_state, loop, chunk)
    M = M.reshape(x.shape)
    if return_state:
        return M, M[..., -1]
    return M


def _sum_to(grad: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Sum a broadcast gradient back to the shape of ``like`` (a 0-d tensor or ``(m, 1)``)."""
    if like.ndim == 0:
        return grad.sum()
    return grad.sum(dim=tuple(range(grad.ndim - 2))).sum(-1, keepdim=True)


#: Elements per block of examples in :func:`pcen` (4 MiB of float32): the working set stays in cache.
#: Speed only; results do not depend on it.
PCEN_BLOCK = 1 << 20


class _PCEN(torch.autograd.Function):
    """The whole of PCEN (smoother + gain + compression) with a hand-written backward.

    PCEN is limited by memory traffic, not arithmetic: autograd through its ~15 elementwise
    steps allocates and revisits a full-size tensor per step. This keeps a few tensors for the
    backward pass, works in place, and walks through the batch in blocks of about
    ``PCEN_BLOCK`` elements so that each block's steps run on cached data (a Python loop over
    blocks of examples, never over frames). The adjoint of the smoother is the same exact
    recursion run backwards in time (see :class:`Smoother`).
    Input ``x`` ``(N, m, T)``; ``s`` 0-d or ``(m,)``; ``alpha, delta, r, eps`` 0-d or ``(m, 1)``; ``delta > 0``.
    """

    @staticmethod
    def forward(ctx, x, s, alpha, delta, r, eps, state, loop, chunk):
        need = ctx.needs_input_grad
        x = x.contiguous()
        N, m, T = x.shape
        nb = max(1, PCEN_BLOCK // max(1, m * T))
        log_a = torch.log1p(-s.clamp(max=1.0)).clamp(min=-1e4)
        dr = torch.exp(r * torch.log(delta))                      # delta^r
        em, L, G, out = (torch.empty_like(x) for _ in range(4))
        q = torch.empty_like(x) if need[4] else None
        gain = torch.empty_like(x) if need[0] else None
        starts = loop or state is not None
        used_state = torch.empty((N, m), dtype=x.dtype, device=x.device) if starts else None
        decay = decay_powers(log_a, T, start=1) if starts else None   # a ** (t + 1)
        loop_denom = -torch.expm1(log_a * T) if loop else None
        for i in range(0, N, nb):
            sl = slice(i, i + nb)
            xb, emb, Lb, Gb, ob = x[sl], em[sl], L[sl], G[sl], out[sl]
            scan(xb, log_a, chunk, scale=s, out=emb)              # M from M[-1] = 0
            if starts:
                st = emb[..., -1] / loop_denom if loop else state[sl]
                emb.addcmul_(st.unsqueeze(-1), decay)
                used_state[sl] = st
            emb.add_(eps)                                          # eps + M (M itself is em - eps)
            torch.log(emb, out=Lb)
            if gain is not None:
                torch.mul(Lb, -alpha, out=gain[sl]).exp_()         # (eps + M)^-alpha
                torch.mul(gain[sl], xb, out=Gb)
            else:
                torch.mul(Lb, -alpha, out=Gb).exp_().mul_(xb)
            qb = q[sl] if q is not None else ob
            torch.div(Gb, delta, out=qb).log1p_()                  # log1p(G / delta)
            if q is not None:
                torch.mul(qb, r, out=ob)
            else:
                ob.mul_(r)
            ob.expm1_().mul_(dr)
        ctx.loop, ctx.chunk, ctx.nb = loop, chunk, nb
        ctx.save_for_backward(x, s, log_a, em, L, G, q, out, gain, alpha, delta, r, eps, dr, used_state)
        last = em[..., -1] - (eps.squeeze(-1) if eps.ndim else eps)  # the final state M[T-1], for streaming
        return out, last

    # One fused adjoint over blocks of examples: splitting it would pass ~20 tensors between pieces.
    @staticmethod
    def backward(ctx, g, g_last):
        x, s, log_a, em, L, G, q, out, gain, alpha, delta, r, eps, dr, used_state = ctx.saved_tensors
        need = ctx.needs_input_grad
        N, m, T = x.shape
        nb = ctx.nb
        per_band = s.ndim == 1
        g = g.contiguous()
        gx = torch.empty_like(x) if need[0] else None
        gstate = torch.empty((N, m), dtype=x.dtype, device=x.device) if need[6] else None
        A = torch.empty((min(nb, N), m, T), dtype=x.dtype, device=x.device)
        B = torch.empty_like(A)
        s_out = S_q = S_wg = S_l = ge = gs = 0.0
        smoother = need[0] or need[1] or need[6]
        eps_v = eps.squeeze(-1) if eps.ndim else eps
        sb = s.unsqueeze(-1) if per_band else s
        if smoother and ctx.loop:
            loop_denom = -torch.expm1(log_a * T)
            loop_denom = loop_denom.unsqueeze(0) if per_band else loop_denom
            rev_decay = decay_powers(log_a, T, start=1).flip(-1)  # a ** (T - t)
        for i in range(0, N, nb):
            sl = slice(i, i + nb)
            n = min(nb, N - i)
            Ab, Bb, gb = A[:n], B[:n], g[sl]
            ob, Gb, emb = out[sl], G[sl], em[sl]
            torch.div(ob, dr, out=Ab).add_(1.0)                   # P = (1 + G / delta)^r
            torch.mul(gb, ob, out=Bb)
            s_out = s_out + _sum_to(Bb, r)                         # sum g * out
            if need[4]:
                S_q = S_q + _sum_to(torch.mul(Ab, q[sl], out=Bb).mul_(gb), r)   # sum g P q
            torch.add(Gb, delta, out=Bb)
            torch.div(Ab, Bb, out=Ab).mul_(gb).mul_(r * dr)       # w = g * d out / d G
            if need[0]:
                torch.mul(Ab, gain[sl], out=gx[sl])
            Ab.mul_(Gb)                                            # w G
            if need[3]:
                S_wg = S_wg + _sum_to(Ab, delta)
            if need[2]:
                S_l = S_l + _sum_to(torch.mul(Ab, L[sl], out=Bb), alpha)   # sum w G log(eps + M)
            Ab.div_(emb).mul_(-alpha)                              # dL/dM = -alpha w G / (eps + M)
            if need[5]:
                ge = ge + _sum_to(Ab, eps)
            if g_last is not None:                                 # the returned final state M[T-1] was used
                Ab[..., -1] += g_last[sl]
            if not smoother:
                continue
            # adjoint of the smoother: lam[t] = dL/dM[t] + a lam[t+1], a forward scan on reversed time
            lam = scan(Ab.flip(-1), log_a, ctx.chunk, inplace=True).flip(-1)
            if ctx.loop:  # the periodic solution has a periodic adjoint
                lam.addcmul_((lam[..., 0] / loop_denom).unsqueeze(-1), rev_decay)
            if need[1]:
                # sum_t lam[t] (x[t] - M[t-1]) with M = em - eps and M[-1] = the initial state
                d = torch.mul(lam, x[sl], out=Bb).sum(-1)
                d = d - torch.mul(lam[..., 1:], emb[..., :-1], out=Bb[..., 1:]).sum(-1)
                d = d + lam[..., 1:].sum(-1) * eps_v
                if used_state is not None:
                    d = d - lam[..., 0] * used_state[sl]
                gs = gs + (d.sum(0) if per_band else d.sum())
            if need[6]:
                gstate[sl] = lam[..., 0] * torch.exp(log_a)
            if need[0]:
                gx[sl].addcmul_(lam, sb)
        gr = torch.log(delta) * s_out + dr * S_q if need[4] else None
        gd = (r * s_out - S_wg) / delta if need[3] else None
        ga = -S_l if need[2] else None
        if not need[1]:
            gs = None
        if not need[5]:
            ge = None
        return gx, gs, ga, gd, gr, ge, gstate, None, None


def _per_band(v: torch.Tensor) -> torch.Tensor:
    """A 0-d value stays, a per-band vector ``(m,)`` becomes ``(m, 1)`` (``(m, 1)`` stays)."""
    return v.unsqueeze(-1) if v.dim() == 1 else v


def pcen_plain(x: torch.Tensor, s: torch.Tensor, alpha: torch.Tensor, delta: torch.Tensor, r: torch.Tensor,
               eps: torch.Tensor, init: str = "median",
               initial_state: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""PCEN in plain tensor ops (exportable, scriptable): ``(output, final state (..., n_mels))``.

    The same function as :func:`pcen` (same formulas, same starts, see :func:`start_state`), on the
    smoother :func:`~melfront.functional.scan.smooth_plain`, with no custom autograd Function and no
    data-dependent Python branch, so that ``torch.export``, the ONNX exporter, ``torch.jit.script``
    and ``torch.compile(fullgraph=True)`` see one graph. :func:`pcen` uses it by itself under those
    (:func:`plain_mode`); call it directly only from TorchScript. No argument checks: ``x``
    ``(..., n_mels, frames)`` with at least one frame; ``s, alpha, delta, r, eps`` tensors, 0-d or per
    band ``(n_mels,)`` (or ``(n_mels, 1)``), in their valid ranges (``delta = 0`` gives :math:`G^r`);
    ``initial_state`` :math:`M[-1]` broadcastable to ``(..., n_mels)`` overrides ``init``.

    >>> x = torch.full((1, 2, 4), 4.0, dtype=torch.float64)
    >>> one, zero = torch.tensor(0.5, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64)
    >>> pcen_plain(x, one, zero, zero, one, one)[0].tolist()   # no gain, no bias: X ** r
    [[[2.0, 2.0, 2.0, 2.0], [2.0, 2.0, 2.0, 2.0]]]
    """
    m, T = x.shape[-2], x.shape[-1]
    flat = x.reshape(-1, m, T)
    if initial_state is not None:
        state: Optional[torch.Tensor] = initial_state.to(x.dtype).expand(x.shape[:-1]).reshape(-1, m)
        loop = False
    else:
        state, loop = start_state(flat, init)
    s = s.to(x.dtype)
    M = smooth_plain(flat, s.reshape(-1)[0] if s.numel() == 1 else s.reshape(-1), state, loop).reshape(x.shape)
    a_, d_, r_, e_ = _per_band(alpha), _per_band(delta), _per_band(r), _per_band(eps)
    G = x * torch.exp(-a_ * torch.log(e_ + M))
    biased = d_ > 0
    d_safe = torch.where(biased, d_, torch.ones_like(d_))
    out = torch.exp(r_ * torch.log(d_safe)) * torch.expm1(r_ * torch.log1p(G / d_safe))
    positive = G > 0  # delta = 0: G ** r, with a finite gradient at G = 0
    unbiased = torch.where(positive, torch.exp(r_ * torch.log(torch.where(positive, G, torch.ones_like(G)))),
                           torch.zeros_like(G))
    return torch.where(biased, out, unbiased), M[..., -1]


def _check_pcen_params(alpha, delta, r, eps) -> None:
    """``alpha, delta >= 0`` and ``r, eps > 0`` (finite), for the ones given as numbers."""
    for name, v in (("alpha", alpha), ("delta", delta)):
        if not torch.is_tensor(v):
            finite_float(name, v, 0.0)
    for name, v in (("eps", eps), ("r", r)):
        if not torch.is_tensor(v):
            positive_float(name, v)


def _pcen_without_bias(x, flat, s_t, init_state, loop, chunk, a_, d_, r_, e_):
    """PCEN with plain autograd ops, for the rare fixed ``delta`` with zeros (``delta = 0`` gives ``G^r``)."""
    M = Smoother.apply(flat, s_t, init_state, loop, chunk).reshape(x.shape)
    G = x * torch.exp(-a_ * torch.log(e_ + M))
    d_safe = torch.where(d_ > 0, d_, torch.ones_like(d_))
    biased = torch.exp(r_ * torch.log(d_safe)) * torch.expm1(r_ * torch.log1p(G / d_safe))
    return torch.where(d_ > 0, biased, G.pow(r_)), M[..., -1]


# Over 60 lines only through its docstring (maths, parameters, every start, citation); the body is short.
def pcen(x: torch.Tensor, s=0.025, alpha=0.98, delta=2.0, r=0.5, eps=1e-6, initial_state=None,
         return_state: bool = False, init: str = "median", chunk: int = SCAN_CHUNK):
    r"""Per-channel energy normalisation (Wang et al. 2017, "Trainable frontend for robust and far-field keyword spotting").

    .. math::

        M[t] = (1 - s) M[t-1] + s X[t], \qquad
        PCEN[t] = \left(\frac{X[t]}{(\epsilon + M[t])^{\alpha}} + \delta\right)^{r} - \delta^{r}

    Computed in float32 or float64 without loss of relative precision: the smoother is an exact
    chunked recursion (:func:`pcen_smoother`), the gain :math:`(\epsilon + M)^{-\alpha}` is
    ``exp(-alpha log(eps + M))`` and the compression is ``delta**r * expm1(r * log1p(G / delta))``,
    which does not cancel when ``G << delta``. Inside ``torch.autocast`` it runs in float32.

    Parameters
    ----------
    x : tensor ``(..., n_mels, frames)``, non-negative (linear power mel spectrogram)
    s : float in (0, 1] (default 0.025; see :func:`pcen_time_constant_to_s`)
    alpha : float >= 0 (default 0.98), gain normalisation strength
    delta : float >= 0 (default 2), bias; 0 gives :math:`G^r`
    r : float > 0 (default 0.5), compression exponent
    eps : float > 0 (default 1e-6)
        Each of ``s, alpha, delta, r, eps`` may be a float, a 0-d tensor or a per-band vector
        ``(n_mels,)``, and tensors may require grad (see :class:`melfront.PCEN`).
    initial_state, init, return_state, chunk
        Smoother start and streaming, see :func:`pcen_smoother` (``init``: "median", the default,
        "first", "loop", "zero" or "librosa"; each start's behaviour on real clips is told there).
        Processing a long recording in chunks, each given the previous chunk's returned state,
        equals one call on the whole (the first chunk's start taken from that chunk: see
        :class:`melfront.frontends.StreamingPCEN`).

    Returns
    -------
    tensor, same shape as ``x`` (float32 for half-precision input), and the smoother's final
    state ``(..., n_mels)`` if ``return_state``.

    >>> x = torch.full((1, 2, 4), 4.0, dtype=torch.float64)
    >>> pcen(x, alpha=0.0, delta=0.0, r=0.5).tolist()   # no gain, no bias: X ** r
    [[[2.0, 2.0, 2.0, 2.0], [2.0, 2.0, 2.0, 2.0]]]
    """
    check_spec(x, min_ndim=2)
    _check_pcen_params(alpha, delta, r, eps)
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    if plain_mode():
        x = x.to(dtype)
        lead, m, T, flat, s_t, init_state, loop = _smoother_setup(x, s, initial_state, init, chunk)
        a_, d_, r_, e_ = (band_param(v, x, n) for v, n in ((alpha, "alpha"), (delta, "delta"), (r, "r"), (eps, "eps")))
        out, state = pcen_plain(x, s_t, a_, d_, r_, e_, init, None if init_state is None else init_state.reshape(*lead, m))
        return (out, state) if return_state else out
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.to(dtype)
        cast = (lambda v: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v)
        s, alpha, delta, r, eps = (cast(v) for v in (s, alpha, delta, r, eps))
        if initial_state is not None and torch.is_tensor(initial_state):
            initial_state = initial_state.to(dtype)
        lead, m, T, flat, s_t, init_state, loop = _smoother_setup(x, s, initial_state, init, chunk)
        a_, d_, r_, e_ = (band_param(v, x, n) for v, n in ((alpha, "alpha"), (delta, "delta"), (r, "r"), (eps, "eps")))
        if (not d_.requires_grad) and bool((d_ == 0).any()):
            out, state = _pcen_without_bias(x, flat, s_t, init_state, loop, chunk, a_, d_, r_, e_)
        else:
            out, state = _PCEN.apply(flat, s_t, a_, d_, r_, e_, init_state, loop, chunk)
            out, state = out.reshape(x.shape), state.reshape(*lead, m)
    if return_state:
        return out, state
    return out
