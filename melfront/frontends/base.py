"""The :class:`Frontend` base class of the mel-spectrogram frontends and its small shared checks.

>>> import torch
>>> from melfront.frontends import Decibel, MinMax
>>> f = MinMax() + Decibel()  # a Chain
>>> f(torch.rand(2, 4, 5)).shape
torch.Size([2, 4, 5])
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..checks import boolean, finite_float, positive_int
from ..errors import ParameterError
from .registry import FRONTENDS

__all__ = ["Frontend", "band_count", "float32_parameter"]


class Frontend(nn.Module):
    """Base class of the mel-spectrogram frontends.

    Input: a linear power mel spectrogram ``(..., n_mels, frames)`` (``input_kind = "mel"``).
    Output: ``(..., n_mels, frames)``, or ``(..., out_channels, n_mels, frames)`` for a :class:`Stack`.
    Computation is always in float32 or float64: half-precision input is upcast and ``torch.autocast``
    is switched off inside, so a frontend is safe in mixed-precision training. ``a + b`` chains two
    frontends (:class:`Chain`). Trainable frontends expose their learned values as properties
    (e.g. ``.alpha``) and all of them through :meth:`learned_parameters`.

    A subclass implements ``compress(x)``:

    >>> class Square(Frontend):
    ...     def compress(self, x):
    ...         return x * x
    >>> Square()(torch.full((1, 2, 3), 3.0, dtype=torch.float16)).dtype
    torch.float32
    >>> Square().learned_parameters()
    {}
    """

    input_kind = "mel"
    out_channels = 1
    #: names of the properties that :meth:`learned_parameters` reports
    readable: tuple[str, ...] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(x):
            raise ParameterError(f"{type(self).__name__} expects a tensor x (..., n_mels, frames), got {type(x).__name__}")
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.compress(x)

    def compress(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __add__(self, other):
        if not isinstance(other, nn.Module):
            return NotImplemented
        return FRONTENDS["chain"].builder(self, other)  # Chain, looked up: combine.py builds on this module

    def learned_parameters(self) -> dict[str, list[float]]:
        """The readable values (``readable``) as ``{name: [floats]}`` (one value, or one per band); JSON-able."""
        return {name: getattr(self, name).detach().cpu().double().reshape(-1).tolist() for name in self.readable}

    def _param(self, name: str, value: float, per_band: bool, n_mels, trainable: bool):
        t = torch.full((n_mels,) if per_band else (), float(value), dtype=torch.float32)
        if trainable:
            self.register_parameter(name, nn.Parameter(t))
        else:
            self.register_buffer(name, t)


def band_count(owner: str, per_band, n_mels) -> int | None:
    """Check ``per_band`` (a bool) and ``n_mels`` (a positive int, needed when ``per_band``) for ``owner``.

    Returns ``n_mels`` as an int, or ``None`` when it is ``None`` and not needed.

    >>> band_count("PCEN", True, 8)
    8
    >>> band_count("PCEN", True, None)
    Traceback (most recent call last):
    ...
    melfront.errors.ParameterError: PCEN(per_band=True) needs n_mels (the number of mel bands), got None
    """
    boolean("per_band", per_band)
    if per_band and n_mels is None:
        raise ParameterError(f"{owner}(per_band=True) needs n_mels (the number of mel bands), got None")
    return None if n_mels is None else positive_int("n_mels", n_mels)


def float32_parameter(name: str, value, transform: Callable[[torch.Tensor], torch.Tensor], what: str,
                      raw: float | None = None) -> float:
    """Check that a raw parameter stored in float32 gives a finite, positive ``transform(raw)``.

    Learned frontends keep a raw value (e.g. ``t`` with ``alpha = exp(t)``) in float32; a start value
    whose transform overflows to ``inf`` or underflows to 0 would give ``inf``/NaN outputs or a dead
    parameter. ``value`` is the argument the user gave (named ``name``, a finite number), ``raw`` the
    float stored (default: ``value`` itself), ``what`` names the transformed quantity in the message.
    Returns ``float(value)``.

    >>> float32_parameter("init_alpha", 7.0, torch.exp, "alpha = exp(init_alpha)")
    7.0
    >>> float32_parameter("init_alpha", 1e6, torch.exp, "alpha = exp(init_alpha)")
    Traceback (most recent call last):
    ...
    melfront.errors.ParameterError: init_alpha=1000000.0 gives alpha = exp(init_alpha) = inf in float32; it must be finite and > 0
    """
    v = finite_float(name, value)
    stored = torch.tensor(v if raw is None else raw, dtype=torch.float32)
    out = transform(stored) if torch.isfinite(stored) else stored
    if not (torch.isfinite(out) and out > 0):
        raise ParameterError(f"{name}={value!r} gives {what} = {out.item():g} in float32; it must be finite and > 0")
    return v
