"""Compressions of a linear power (mel) spectrogram: logarithms, decibels, power laws, min-max.

All of them map ``(..., n_mels, frames)`` to the same shape, on any device, in float32 or
float64, differentiably. "Per example" always means: reduced over the last two dimensions
``(n_mels, frames)``, never across leading (batch) dimensions. PCEN is in :mod:`melfront.functional.pcen`.

>>> import torch
>>> from melfront.functional.compression import power_to_db
>>> power_to_db(torch.tensor([[1.0, 10.0, 100.0]])).tolist()
[[0.0, 10.0, 20.0]]
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from ..checks import finite_float, optional, positive_float
from ..errors import ParameterError
from .params import band_param, check_spec

__all__ = ["LOG_EPS", "log_offset", "power_to_db", "log_floor", "power_compress", "minmax", "log_offset_plain",
           "power_to_db_plain", "log_floor_plain", "power_compress_plain", "minmax_plain"]

#: Pons, Serrà & Serra's (2019) "log-EPS" offset: numpy's float64 machine epsilon, 2.22e-16.
LOG_EPS = float(np.finfo(np.float64).eps)


def log_offset(x: torch.Tensor, alpha=1.0, beta=LOG_EPS, base="e") -> torch.Tensor:
    r"""Logarithm with a gain and an offset: :math:`\log_{base}(\alpha X + \beta)`.

    ``log_offset(X, 1, eps, 10)`` is Pons, Serrà & Serra's (2019) "log-EPS" with the machine
    epsilon ``eps = 2.22e-16`` (numpy's float64 epsilon, :data:`LOG_EPS`, the default ``beta``);
    ``log_offset(X, 10000, 1, 10)`` is the widely used ``log10(10000 X + 1)``.

    Parameters
    ----------
    x : tensor ``(..., n_mels, frames)``, non-negative (linear power)
    alpha, beta : float, 0-d tensor or per-band vector ``(n_mels,)``
        Gain (> 0) and offset (> 0). Tensors may require grad (see :class:`melfront.LogLearn`).
    base : "e", 10, 2 or any positive number other than 1

    Returns
    -------
    tensor, same shape and dtype as ``x``; finite for every finite ``x``: where :math:`\alpha X + \beta`
    overflows the dtype it is taken as the largest finite value (``log`` 88.7 in float32).

    >>> log_offset(torch.tensor([[0.0, 0.0999]]), alpha=10000.0, beta=1.0, base=10).tolist()
    [[0.0, 3.0]]
    >>> log_offset(torch.tensor([[3e38]]), alpha=1096.6, beta=1.3).isfinite().all().item()
    True
    """
    check_spec(x)
    if base == "e":
        scale = 1.0
    else:
        try:
            b = float(base)
        except (TypeError, ValueError):
            raise ParameterError(f"base must be 'e' or a positive number other than 1, got {base!r}") from None
        if not (b > 0 and b != 1 and math.isfinite(b)):
            raise ParameterError(f"base must be 'e' or a positive number other than 1, got {base!r}")
        scale = 1.0 / math.log(b)
    for name, v in (("alpha", alpha), ("beta", beta)):
        if not torch.is_tensor(v):
            positive_float(name, v)
    return log_offset_plain(x, band_param(alpha, x, "alpha"), band_param(beta, x, "beta"), scale)


def log_offset_plain(x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """:func:`log_offset`'s computation, ``scale * log(alpha X + beta)``, with no argument checks.

    The one body of the law: :func:`log_offset` calls it after its checks, and the frontends
    (:class:`~melfront.frontends.LogOffset`, :class:`~melfront.frontends.LogLearn`) call it directly under
    TorchScript, export and compile. ``alpha, beta``: tensors of ``x``'s dtype, 0-d or per band
    (``(n_mels,)`` or ``(n_mels, 1)``); ``scale``: ``1 / ln(base)``.

    >>> log_offset_plain(torch.tensor([[0.0, 0.0999]]), torch.tensor(1e4), torch.tensor(1.0), 1 / math.log(10)).tolist()
    [[0.0, 3.0]]
    """
    # alpha X overflows for X near the dtype's largest value (3e38 in float32): stay at the largest finite value
    out = torch.log(torch.clamp(_per_band(alpha) * x + _per_band(beta), max=_largest(x.dtype)))
    return out * scale if scale != 1.0 else out


def _check_db_args(ref, amin, top_db) -> None:
    positive_float("amin", amin)
    optional(finite_float, "top_db", top_db, 0.0)
    if isinstance(ref, str) and ref != "max":
        raise ParameterError(f"ref must be a number, a tensor or 'max', got {ref!r}")


def power_to_db(x: torch.Tensor, ref=1.0, amin: float = 1e-10, top_db: float | None = 80.0) -> torch.Tensor:
    r"""Power to decibels, ``librosa.power_to_db`` semantics, **per example**.

    .. math:: D = 10 \log_{10} \max(a_{min}, X) - 10 \log_{10} \max(a_{min}, |ref|)

    then, when ``top_db`` is given, :math:`\max(D, \max D - top\_db)`.

    Parameters
    ----------
    x : tensor ``(..., n_mels, frames)``, non-negative power
    ref : float, ``"max"`` or tensor
        Reference power (0 dB). ``"max"``: each example's own maximum over ``(n_mels, frames)``
        (librosa's ``ref=np.max`` applied clip by clip). A tensor must broadcast against ``x``,
        e.g. shape ``(batch, 1, 1)`` for one reference per example.
    amin : float > 0
        Floor on the power (and on ``ref``) before the log: -100 dB for the default 1e-10.
    top_db : float >= 0 or None
        Clip each example to at most ``top_db`` below *its own* maximum (over the last two
        dimensions). Never taken across the batch: an example's output does not depend on the
        other examples in the batch (torchaudio's and kapre's batch-wide maximum does).

    Returns
    -------
    tensor, same shape as ``x``, in dB.

    >>> power_to_db(torch.tensor([[1.0, 1e-12]]), ref="max", top_db=None).tolist()
    [[0.0, -100.0]]
    """
    check_spec(x)
    _check_db_args(ref, amin, top_db)
    r = None if isinstance(ref, str) else torch.as_tensor(ref, dtype=x.dtype, device=x.device)
    # in place where autograd does not need the intermediates (one full-size allocation instead of five)
    return power_to_db_plain(x, r, float(amin), None if top_db is None else float(top_db),
                             inplace=not (torch.is_grad_enabled() and x.requires_grad))


def power_to_db_plain(x: torch.Tensor, ref: Optional[torch.Tensor] = None, amin: float = 1e-10,
                      top_db: Optional[float] = 80.0, inplace: bool = False) -> torch.Tensor:
    """:func:`power_to_db`'s computation with no argument checks; ``ref=None`` is ``"max"``.

    The one body of the decibel law: :func:`power_to_db` calls it after its checks (``inplace`` where
    autograd needs no intermediates), :class:`~melfront.frontends.Decibel` directly under TorchScript,
    export and compile. ``ref``: a tensor of ``x``'s dtype broadcasting against ``x`` (0-d, or e.g.
    ``(batch, 1, 1)``). A spectrogram with no frames gives an empty output of the same shape.

    >>> power_to_db_plain(torch.tensor([[1.0, 0.1, 1e-12]]), None, 1e-10, 80.0).tolist()
    [[0.0, -10.0, -80.0]]
    """
    if x.numel() == 0:  # no frames: no per-example maximum to take
        return x * 0.0
    dims = [-2, -1] if x.dim() >= 2 else [-1]
    db = torch.clamp(x, min=amin)
    db = db.log10_().mul_(10.0) if inplace else 10.0 * torch.log10(db)
    if ref is None:  # "max": log10 is monotonic, so the log of the max is the max of the log
        peak = db.amax(dim=dims, keepdim=True)
        db = db.sub_(peak) if inplace else db - peak
        if top_db is not None:  # every example's maximum is now exactly 0 dB
            db = db.clamp_(min=-top_db) if inplace else torch.clamp(db, min=-top_db)
        return db
    offset = 10.0 * torch.log10(torch.clamp(ref.abs(), min=amin))
    db = db.sub_(offset) if inplace and offset.numel() == 1 and offset.dim() <= db.dim() else db - offset
    if top_db is not None:
        floor = db.amax(dim=dims, keepdim=True) - top_db
        db = torch.maximum(db, floor, out=db) if inplace else torch.maximum(db, floor)
    return db


def log_floor(x: torch.Tensor, floor: float = 1e-6) -> torch.Tensor:
    r"""Natural log with a floor, :math:`\log \max(X, floor)` (the Macaulay Library / Merlin "decibel" form).

    ``x`` ``(..., n_mels, frames)`` non-negative; ``floor`` > 0. Same shape out.

    >>> log_floor(torch.tensor([[0.0, 1.0]]), floor=1.0).tolist()
    [[0.0, 0.0]]
    """
    check_spec(x)
    return log_floor_plain(x, positive_float("floor", floor))


def log_floor_plain(x: torch.Tensor, floor: float) -> torch.Tensor:
    """:func:`log_floor`'s computation with no argument checks (the one body; TorchScript, export, compile).

    >>> log_floor_plain(torch.tensor([[0.0, 1.0]]), 1.0).tolist()
    [[0.0, 0.0]]
    """
    return torch.log(torch.clamp(x, min=floor))


def power_compress(x: torch.Tensor, exponent) -> torch.Tensor:
    r"""Power-law compression :math:`X^{p}`, with a finite gradient everywhere.

    ``exponent`` is a float, 0-d tensor or per-band vector ``(n_mels,)``, > 0 (a tensor may
    require grad; :class:`melfront.PowerLearn` passes ``sigmoid(a)``, Schlüter 2018). Computed
    as ``exp(p log X)`` where ``X > 0`` and 0 where ``X == 0``, so that the gradient with
    respect to ``p`` (:math:`X^p \log X`) is 0, not NaN, at silent bins.

    >>> power_compress(torch.tensor([[0.0, 4.0, 9.0]]), 0.5).tolist()
    [[0.0, 2.0, 3.0]]
    """
    check_spec(x)
    if not torch.is_tensor(exponent):
        positive_float("exponent", exponent)
    return power_compress_plain(x, band_param(exponent, x, "exponent"))


def power_compress_plain(x: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """:func:`power_compress`'s computation with no argument checks (the one body; TorchScript, export, compile).

    ``exponent``: a tensor of ``x``'s dtype, 0-d or per band (``(n_mels,)`` or ``(n_mels, 1)``).

    >>> power_compress_plain(torch.tensor([[0.0, 4.0]]), torch.tensor(0.5)).tolist()
    [[0.0, 2.0]]
    """
    p, pos = _per_band(exponent), x > 0
    safe = torch.where(pos, x, torch.ones_like(x))
    return torch.where(pos, torch.exp(p * torch.log(safe)), torch.zeros_like(x))


def minmax(x: torch.Tensor) -> torch.Tensor:
    """Rescale each example to [0, 1]: ``(X - min) / (max - min)`` over ``(n_mels, frames)``.

    A constant example (a silent patch) maps to 0, with a zero gradient. ``x`` ``(..., n_mels, frames)``;
    same shape out.

    >>> minmax(torch.tensor([[[1.0, 3.0]], [[5.0, 5.0]]])).tolist()
    [[[0.0, 1.0]], [[0.0, 0.0]]]
    """
    check_spec(x)
    return minmax_plain(x)


def minmax_plain(x: torch.Tensor) -> torch.Tensor:
    """:func:`minmax`'s computation with no argument checks (the one body; TorchScript, export, compile).

    A spectrogram with no frames gives an empty output of the same shape.

    >>> minmax_plain(torch.tensor([[2.0, 4.0, 3.0]])).tolist()
    [[0.0, 1.0, 0.5]]
    """
    if x.numel() == 0:  # no frames: no per-example minimum to take
        return x * 0.0
    dims = [-2, -1] if x.dim() >= 2 else [-1]
    lo = x.amin(dim=dims, keepdim=True)
    span = x.amax(dim=dims, keepdim=True) - lo
    # a constant example (span 0, or below the smallest normal number) is 0 with a zero gradient: dividing by a
    # clamped span instead gave a finite 0 forward but a gradient of ~1e38 (inf), NaN in a trainable frontend before
    varies = span >= _tiny(x.dtype)
    return torch.where(varies, (x - lo) / torch.where(varies, span, torch.ones_like(span)), torch.zeros_like(x))


def _per_band(v: torch.Tensor) -> torch.Tensor:
    """A 0-d value stays, a per-band vector ``(m,)`` becomes ``(m, 1)`` (``(m, 1)`` stays)."""
    return v.unsqueeze(-1) if v.dim() == 1 else v


def _largest(dtype: torch.dtype) -> float:
    """``torch.finfo(dtype).max`` in a form TorchScript compiles."""
    if dtype == torch.float64:
        return 1.7976931348623157e308
    if dtype == torch.float16:
        return 65504.0
    if dtype == torch.bfloat16:
        return 3.3895313892515355e38
    return 3.4028234663852886e38


def _tiny(dtype: torch.dtype) -> float:
    """``torch.finfo(dtype).tiny`` (the smallest normal number) in a form TorchScript compiles."""
    if dtype == torch.float64:
        return 2.2250738585072014e-308
    if dtype == torch.float16:
        return 6.103515625e-05
    return 1.1754943508222875e-38  # float32 and bfloat16
