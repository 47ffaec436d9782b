"""The :class:`Frontend` base class of the mel-spectrogram frontends and its small shared checks.

>>> import torch
>>> from melfront.frontends import Decibel, MinMax
>>> f = MinMax() + Decibel()  # a Chain
>>> f(torch.rand(2, 4, 5)).shape
torch.Size([2, 4, 5])
"""
from __future__ import annotations

import math
import warnings
import zlib
from typing import Callable

import torch
from torch import nn

from ..checks import boolean, finite_float, positive_int
from ..errors import ParameterError
from ..functional import plain_mode
from .registry import FRONTENDS

__all__ = ["Frontend", "FixedSettings", "band_count", "float32_parameter", "legacy_band_order"]


def _encode(value) -> float:
    """One setting as a float: numbers as they are, bools 0/1, None NaN, strings their CRC-32."""
    if value is None:
        return math.nan
    if isinstance(value, str):
        return float(zlib.crc32(value.encode("utf-8")))
    return float(value)


class FixedSettings:
    """Mixin for modules whose fixed (non-trainable) settings travel with their weights.

    :meth:`_fix_settings` records the settings (numbers, bools, strings, None) in a persistent buffer
    ``settings`` (the float64 bits of each value, stored as int64 so that ``module.to(dtype)`` leaves
    them exact); loading a state dict whose ``settings`` differ raises
    :class:`~melfront.errors.ParameterError` naming them, instead of silently computing with the
    receiving module's settings. The computation itself keeps using the Python values.

    >>> from melfront.frontends import PCEN
    >>> PCEN().load_state_dict(PCEN(s=0.5).state_dict())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    melfront.errors.ParameterError: cannot load the state of a PCEN built with s=0.5 into a PCEN built with s=0.025: ...
    """

    def _fix_settings(self, **settings) -> None:
        self._fixed_settings = dict(settings)
        codes = torch.tensor([_encode(v) for v in settings.values()], dtype=torch.float64)
        self.register_buffer("settings", codes.view(torch.int64), persistent=True)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        key = prefix + "settings"
        mine = getattr(self, "_fixed_settings", None)
        if mine is not None and key in state_dict:
            self._check_settings(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def _check_settings(self, saved: torch.Tensor) -> None:
        mine = self._fixed_settings
        own = self.settings.view(torch.float64).tolist()
        name = type(self).__name__
        if saved.dtype != torch.int64 or saved.shape != self.settings.shape:
            raise ParameterError(f"cannot load the state of a differently configured {name} (its fixed settings have "
                                 f"shape {tuple(saved.shape)}, this one's {tuple(self.settings.shape)}: "
                                 f"{', '.join(mine)})")
        theirs = saved.view(torch.float64).tolist()
        diff = [(k, a, b) for (k, a), b in zip(zip(mine, own), theirs) if not (a == b or (a != a and b != b))]
        if diff:
            def show(k, code):
                v = mine[k]
                if isinstance(v, str) or (v is None) != (code != code):
                    return "another value" if code == code else "None"
                return "None" if code != code else f"{code:g}"
            said = ", ".join(f"{k}={show(k, b)}" for k, _, b in diff)
            own_said = ", ".join(f"{k}={mine[k]!r}" for k, _, _ in diff)
            raise ParameterError(f"cannot load the state of a {name} built with {said} into a {name} built with "
                                 f"{own_said}: fixed settings travel with the weights; build the {name} with the "
                                 f"saved settings")


class Frontend(FixedSettings, nn.Module):
    """Base class of the mel-spectrogram frontends.

    Input: a linear power mel spectrogram ``(..., n_mels, frames)`` (``input_kind = "mel"``).
    Output: ``(..., n_mels, frames)``, or ``(..., out_channels, n_mels, frames)`` for a :class:`Stack`.
    Computation is always in float32 or float64: half-precision input is upcast and ``torch.autocast``
    is switched off inside, so a frontend is safe in mixed-precision training. ``a + b`` chains two
    frontends (:class:`Chain`). Trainable frontends expose their learned values as properties
    (e.g. ``.alpha``) and all of them through :meth:`learned_parameters`.

    A subclass implements ``compress(x)``, the eager body (argument checks, fast kernels), and, when
    that body is not plain tensor code, ``compress_plain(x)``: the same values in plain tensor ops,
    with no Python checks or custom autograd Functions (default: ``compress``). :meth:`forward` is
    the one place that chooses between them: ``compress_plain`` under ``torch.jit.script``,
    ``torch.export``, ONNX export, ``torch.compile`` and tracing
    (:func:`melfront.functional.plain_mode`), ``compress`` otherwise. Each pair is checked for
    equal values in ``tests/test_scripting.py`` and ``tests/test_export.py``.

    >>> class Square(Frontend):
    ...     def compress(self, x):
    ...         return x * x
    >>> Square()(torch.full((1, 2, 3), 3.0, dtype=torch.float16)).dtype
    torch.float32
    >>> Square().learned_parameters()
    {}
    >>> torch.jit.script(Square())(torch.full((1, 2), 2.0)).tolist()  # compress_plain: compress
    [[4.0, 4.0]]
    """

    input_kind = "mel"
    out_channels = 1
    #: names of the properties that :meth:`learned_parameters` reports
    readable: tuple[str, ...] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # TorchScript compiles this branch only: no autocast context, no checks
            if x.dtype == torch.float16 or x.dtype == torch.bfloat16:
                x = x.float()
            return self.compress_plain(x)
        else:
            if not isinstance(x, torch.Tensor):
                raise ParameterError(f"{type(self).__name__} expects a tensor x (..., n_mels, frames), "
                                     f"got {type(x).__name__}")
            if x.dtype == torch.float16 or x.dtype == torch.bfloat16:
                x = x.float()
            with torch.autocast(device_type=x.device.type, enabled=False):
                if plain_mode():  # export, compile, tracing: no Python checks or custom Functions in the graph
                    return self.compress_plain(x)
                return self.compress(x)

    def compress(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def compress_plain(self, x: torch.Tensor) -> torch.Tensor:
        """``compress(x)`` in plain tensor ops (TorchScript, export, compile); subclasses whose ``compress`` is
        already plain tensor code inherit this default, which calls it."""
        return self.compress(x)

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


def legacy_band_order(owner: str, n_mels, per_band):
    """``(n_mels, per_band)`` of a per-band frontend, also when called in the old positional order.

    Every per-band frontend takes ``(n_mels, per_band, ...)`` (PCEN's order). ``LogLearn`` and
    ``PowerLearn`` took ``(per_band, n_mels, ...)`` before 2026-12: a bool in the ``n_mels`` place
    (never a valid ``n_mels``) is that order; it is swapped with a ``DeprecationWarning``.

    >>> legacy_band_order("LogLearn", 8, True)
    (8, True)
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     legacy_band_order("LogLearn", True, 8)
    (8, True)
    """
    if not isinstance(n_mels, bool):
        return n_mels, per_band
    warnings.warn(f"{owner}(per_band, n_mels, ...) in this order is deprecated: every per-band frontend takes "
                  f"(n_mels, per_band, ...); pass them by name", DeprecationWarning, stacklevel=3)
    return (None if isinstance(per_band, bool) else per_band), n_mels


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
