"""The exact first-order recursion ``y[t] = a y[t-1] + c u[t]`` without a Python loop over frames.

The kernel of PCEN's smoother (:func:`melfront.functional.pcen_smoother`): decay powers, the
chunked scan and the smoother as an autograd Function with its adjoint as backward.

>>> import torch
>>> u = torch.ones(1, 1, 4, dtype=torch.float64)
>>> scan(u, torch.tensor(0.5, dtype=torch.float64).log(), chunk=2).tolist()
[[[1.0, 1.5, 1.75, 1.875]]]
"""
from __future__ import annotations

from typing import Optional

import torch

__all__ = ["SCAN_CHUNK", "PLAIN_BLOCK", "decay_powers", "decay_matrix", "scan", "smooth_plain", "Smoother"]

#: Default frames per block of the chunked scan (speed only, results are exact for any block size).
SCAN_CHUNK = 32

#: Frames per block of :func:`smooth_plain` (the exportable smoother).
PLAIN_BLOCK = 64


def decay_powers(log_a: torch.Tensor, n: int, start: int = 0) -> torch.Tensor:
    """``a ** k`` for ``k = start .. start + n - 1``, shape ``(*log_a.shape, n)``, via ``exp(k log a)``.

    >>> decay_powers(torch.tensor(0.5).log(), 3, start=1).tolist()
    [0.5, 0.25, 0.125]
    """
    k = torch.arange(start, start + n, dtype=log_a.dtype, device=log_a.device)
    return torch.exp(log_a.unsqueeze(-1) * k)


def decay_matrix(log_a: torch.Tensor, n: int) -> torch.Tensor:
    """Lower-triangular ``W[..., k, j] = a ** (k - j)`` (``j <= k``), shape ``(*log_a.shape, n, n)``.

    >>> decay_matrix(torch.tensor(0.5).log(), 3).tolist()
    [[1.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.25, 0.5, 1.0]]
    """
    k = torch.arange(n, device=log_a.device)
    d = (k[:, None] - k[None, :]).clamp(min=0).to(log_a.dtype)  # clamped so exp never overflows above the diagonal
    return torch.tril(torch.exp(log_a[..., None, None] * d))


def smooth_plain(x: torch.Tensor, s: torch.Tensor, state: Optional[torch.Tensor] = None, loop: bool = False,
                 block: int = PLAIN_BLOCK) -> torch.Tensor:
    """``M[t] = (1 - s) M[t-1] + s x[t]`` in plain tensor ops with no data-dependent branch (exportable).

    The smoother of :func:`scan` for ``torch.export``, ONNX, ``torch.jit.script`` and ``torch.compile``:
    a two-level blocked matrix product. Within blocks of ``block`` frames (at least two, padded with zeros), a product with the
    lower-triangular decay matrix ``a^(k-j)``; the block-end states, by a product with the
    ``(n_blocks, n_blocks)`` matrix ``a^(L (b-b'))``; the state entering each block is carried in with
    ``a^(k+1)``. Every power is ``exp(n log a)`` with ``n >= 0`` (no overflow), so float32 keeps full
    relative precision. Memory ``O(N m (T / block)^2)``: fine for clips; stream long recordings.

    ``x`` ``(N, m, T)``; ``s`` 0-d or ``(m,)`` in (0, 1]; ``state`` :math:`M[-1]` ``(N, m)`` or None
    (zero start); ``loop``: the periodic start :math:`M[-1] = M_0[T-1] / (1 - a^T)` (overrides ``state``).

    >>> x = torch.ones(1, 1, 3, dtype=torch.float64)
    >>> smooth_plain(x, torch.tensor(0.5, dtype=torch.float64)).tolist()
    [[[0.5, 0.75, 0.875]]]
    """
    N, m, T = x.shape[0], x.shape[1], x.shape[2]
    log_a = torch.log1p(-s.clamp(max=1.0)).clamp(min=-1e4)
    if log_a.dim() == 0:
        log_a = log_a.expand(m)
    sb = s.expand(m) if s.dim() == 0 else s
    L = block
    nb = (T + L - 1) // L + 1  # one spare block: never 1 block, never no padding (no 0/1 shape specialisation)
    u = torch.nn.functional.pad(x * sb.unsqueeze(-1), [0, nb * L - T]).reshape(N, m, nb, L)
    y = torch.matmul(u, decay_matrix(log_a, L).transpose(-1, -2).unsqueeze(0))  # (N, m, nb, L), zero start
    # block-end states from a zero start: E[b] = sum_{b' <= b} a^(L (b - b')) y[b', L-1]
    E = torch.matmul(decay_matrix(log_a * L, nb).unsqueeze(0), y[..., -1].unsqueeze(-1)).squeeze(-1)
    prev = torch.nn.functional.pad(E, [1, 0])[..., :nb]  # state entering block b (zero start)
    carry = decay_powers(log_a, L, start=1)  # a^(k+1), (m, L)
    y = (y + prev.unsqueeze(-1) * carry.unsqueeze(-2)).reshape(N, m, nb * L)[..., :T]
    if loop:  # fixed point of M[T-1] = a^T M[-1] + M0[T-1]
        state = y[..., -1] / -torch.expm1(log_a * T)
    if state is not None:
        y = y + state.unsqueeze(-1) * decay_powers(log_a, T, start=1)
    return y


def _block_length(T: int, chunk: int) -> int:
    """Block length ``L <= chunk``, preferring one that divides ``T`` (saves padding and copies)."""
    L = min(T, chunk)
    for cand in range(L, (L + 1) // 2, -1):
        if T % cand == 0:
            return cand
    return L


def _scan_blocks(u, log_a, L, scale, inplace, out, pad):
    """The recursion inside each block of ``L`` frames from a zero start: ``(N, m, n_chunks, L)``."""
    N, m, T = u.shape
    n_chunks = T // L
    per_band = log_a.ndim == 1
    if float(-log_a.min()) * L <= 30.0:
        k = torch.arange(L, dtype=u.dtype, device=u.device)
        la = log_a.unsqueeze(-1)
        up = torch.exp(-la * k)  # a ** -k
        down = torch.exp(la * k)  # a ** k
        if scale is not None:
            up = up * (scale.unsqueeze(-1) if per_band else scale)
        if per_band:
            up, down = up.unsqueeze(-2), down.unsqueeze(-2)  # (m, 1, L)
        y = u.view(N, m, n_chunks, L)
        if out is not None and not pad:
            y = torch.mul(y, up, out=out.view(N, m, n_chunks, L))
        else:
            y = y.mul_(up) if (inplace and not pad and u.is_contiguous()) else y * up
        torch.cumsum(y, -1, out=y)
        return y.mul_(down)
    W = decay_matrix(log_a, L)  # W[k, j] = a ** (k - j), j <= k
    if scale is not None:
        W = W * (scale[..., None, None] if per_band else scale)
    op = W.transpose(-1, -2)
    if per_band:  # one (N * n_chunks, L) @ (L, L) product per band
        uc = u.view(N, m, n_chunks * L).transpose(0, 1).reshape(m, N * n_chunks, L)
        y = torch.bmm(uc, op).view(m, N, n_chunks, L).transpose(0, 1).contiguous()
    else:
        y = (u.view(N * m * n_chunks, L) @ op).view(N, m, n_chunks, L)
    if out is not None and not pad:
        y = out.view(N, m, n_chunks, L).copy_(y)
    return y


def scan(u: torch.Tensor, log_a: torch.Tensor, chunk: int, reverse: bool = False, scale=None,
         inplace: bool = False, out: torch.Tensor | None = None) -> torch.Tensor:
    """Exact first-order recursion along the last axis, zero boundary, no Python loop over frames.

    Forward: ``y[t] = a y[t-1] + c u[t]`` with ``y[-1] = 0``; ``reverse=True``:
    ``y[t] = a y[t+1] + c u[t]`` with ``y[T] = 0`` (the adjoint, for the backward pass).
    ``u`` ``(N, m, T)``; ``log_a`` (``log a <= 0``) and ``scale`` ``c`` are 0-d or ``(m,)`` (per band).
    ``inplace=True`` may overwrite ``u`` (a contiguous scratch tensor) with the result; ``out``
    (contiguous, shape of ``u``) receives it.

    The frames are cut into blocks of ``L <= chunk``. Inside a block,
    ``y[k] = a^k * cumsum_j(a^-j c u[j])`` (a cumulative sum of rescaled, non-negative terms
    when ``u >= 0``, so float32 keeps full relative precision; ``L`` is kept small enough that
    ``a^-L <= e^30``); when ``a`` is too small for that, a product with the triangular decay
    matrix ``a^(k-j)`` does the same. The states at block ends obey the same recursion with
    ``a^L`` and are solved recursively (depth ``log_L(T)``), then carried into each block.

    >>> u = torch.tensor([[[0.0, 0.0, 1.0]]], dtype=torch.float64)
    >>> scan(u, torch.tensor(0.5, dtype=torch.float64).log(), chunk=2, reverse=True).tolist()
    [[[0.25, 0.5, 1.0]]]
    """
    if reverse:
        return scan(u.flip(-1), log_a, chunk, scale=scale).flip(-1)
    if out is not None:
        y = scan(u, log_a, chunk, scale=scale, inplace=inplace, out=None) if u.shape[-1] % min(u.shape[-1], chunk) else None
        if y is not None:
            return out.copy_(y)
    N, m, T = u.shape
    L = _block_length(T, chunk)
    n_chunks = -(-T // L)
    pad = n_chunks * L - T
    u = torch.nn.functional.pad(u, (0, pad)) if pad else u.contiguous()
    y = _scan_blocks(u, log_a, L, scale, inplace, out, pad)
    if n_chunks > 1:
        bound = scan(y[..., -1].contiguous(), log_a * L, chunk)  # state at each block's end
        prev = torch.nn.functional.pad(bound[..., :-1], (1, 0))  # state at the previous block's end
        carry = decay_powers(log_a, L, start=1)  # a ** (k + 1)
        if log_a.ndim == 1:
            carry = carry.unsqueeze(-2)  # (m, 1, L)
        y = y.addcmul_(prev.unsqueeze(-1), carry)
    y = y.view(N, m, n_chunks * L)
    y = y[..., :T] if pad else y
    if out is not None and y.data_ptr() != out.data_ptr():
        return out.copy_(y)
    return y


class Smoother(torch.autograd.Function):
    """``M[t] = a M[t-1] + s X[t]`` from a given ``M[-1]`` (or periodic, ``loop``), with its adjoint as backward.

    ``Smoother.apply(x, s, state, loop, chunk)``: ``x`` ``(N, m, T)``, ``s`` 0-d or ``(m,)``,
    ``state`` ``(N, m)`` or None (zero start), ``loop`` (periodic start, overrides ``state``).
    Backward: ``lam = reverse scan of dL/dM``, ``dL/dX = s lam``,
    ``dL/ds = sum_t lam[t] (X[t] - M[t-1])``, ``dL/dM[-1] = a lam[0]``. For the periodic
    ("loop") solution the adjoint is periodic too: ``lam += a ** (T - t) lam0[0] / (1 - a ** T)``.

    >>> x = torch.ones(1, 1, 3, dtype=torch.float64)
    >>> Smoother.apply(x, torch.tensor(0.5, dtype=torch.float64), None, False, 2).tolist()
    [[[0.5, 0.75, 0.875]]]
    """

    @staticmethod
    def forward(ctx, x, s, state, loop, chunk):
        log_a = torch.log1p(-s.clamp(max=1.0)).clamp(min=-1e4)  # log(1 - s); s == 1 stays finite
        M = scan(x, log_a, chunk, scale=s)
        T = x.shape[-1]
        if loop:  # fixed point of M[T-1] = a^T M[-1] + M0[T-1]
            state = M[..., -1] / -torch.expm1(log_a * T)
        if state is not None:
            decay = decay_powers(log_a, T, start=1)  # a ** (t + 1)
            M.addcmul_(state.unsqueeze(-1), decay)
        ctx.loop, ctx.chunk = loop, chunk
        ctx.has_state = state is not None
        ctx.save_for_backward(x, s, log_a, M, state if state is not None else torch.zeros(()))
        return M

    @staticmethod
    def backward(ctx, g):
        x, s, log_a, M, state = ctx.saved_tensors
        T = x.shape[-1]
        lam = scan(g, log_a, ctx.chunk, reverse=True)
        per_band = s.ndim == 1
        sb = s.unsqueeze(-1) if per_band else s
        if ctx.loop:
            a_T = -torch.expm1(log_a * T)
            first = lam[..., 0] / (a_T.unsqueeze(0) if per_band else a_T)
            lam.addcmul_(first.unsqueeze(-1), decay_powers(log_a, T, start=1).flip(-1))  # a ** (T - t)
        gx = gs = gstate = None
        if ctx.needs_input_grad[1]:
            # sum_t lam[t] (x[t] - M[t-1]), with M[-1] = the initial state (0 when none)
            d = torch.linalg.vecdot(lam, x)
            d = d - torch.linalg.vecdot(lam[..., 1:], M[..., :-1])
            if ctx.has_state:
                d = d - lam[..., 0] * state
            gs = d.sum(0) if per_band else d.sum()
        if ctx.needs_input_grad[2]:
            gstate = lam[..., 0] * torch.exp(log_a)
        if ctx.needs_input_grad[0]:
            gx = lam.mul_(sb)
        return gx, gs, gstate, None, None
