"""The PCEN frontend: per-channel energy normalisation of a linear power mel spectrogram.

>>> import torch
>>> from melfront.frontends import PCEN
>>> PCEN()(torch.ones(2, 4, 10)).shape
torch.Size([2, 4, 10])
"""
from __future__ import annotations

import math
from typing import List

import torch

from .. import functional as F
from ..checks import boolean, finite_float, one_of, positive_int
from ..errors import ParameterError
from .base import Frontend, band_count, float32_parameter
from .registry import register_frontend

__all__ = ["PCEN"]


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


@register_frontend("pcen", "per-channel energy normalisation, fixed or trainable, global or per band", input_kind="mel")
class PCEN(Frontend):
    r"""Per-channel energy normalisation (Wang et al. 2017), exact and fast; see :func:`melfront.functional.pcen`.

    .. math:: M[t] = (1-s) M[t-1] + s X[t], \quad
              PCEN = (X / (\epsilon + M)^{\alpha} + \delta)^r - \delta^r

    Parameters
    ----------
    n_mels : int, needed when ``per_band``
    per_band : bool
        One value of each parameter per mel band (else one for all bands).
    trainable : bool
        Learn ``s, alpha, delta, r, eps`` (the Merlin team's five parameters). They are kept in
        their valid range by their parametrisation: ``s, alpha, r = sigmoid(.)`` in (0, 1),
        ``delta = exp(.)`` > 0, ``eps = 1e-12 + exp(.)``. The raw values are float32: start values
        whose parametrisation is not finite and positive in float32 are refused.
    s, alpha, delta, r, eps : float
        Initial values (defaults 0.025, 0.98, 2, 0.5, 1e-6); finite numbers (not bools).
    time_constant : float, optional
        Smoother time constant in seconds; with ``sample_rate`` and ``hop_length`` it sets ``s``
        as librosa does (:func:`melfront.functional.pcen_time_constant_to_s`).
    init : "median" (default), "first", "loop", "zero" or "librosa"
        The smoother's start :math:`M[-1]`, told in full (measured on real clips) at
        :func:`melfront.functional.pcen_smoother`. "median": per band, the median of the first 40
        frames: neither bright nor dark on quiet openings and fade-ins, causal with a 40-frame
        look-ahead. "first": the first frame; fine when a clip opens at its usual level, but a
        quiet opening or a fade-in comes out bright, like "zero" (0: always a bright first 1-2 s).
        "librosa": 1, librosa's default; dark for seconds on melfront's mel power of audio in
        [-1, 1], the same as "zero" on audio scaled as 32-bit integers. "loop": the periodic steady
        state of the clip played in a loop: the start is taken from the clip's end (a clip that
        gets louder starts dark) and needs the whole clip (no streaming). The start travels with
        the weights: a state saved with one ``init`` does not load into a PCEN with another.
    chunk : int >= 2
        Block length of the exact chunked scan (speed only).

    Read the values as ``.s, .alpha, .delta, .r, .eps`` (vectors when per band).

    Input scale: the gain ``(eps + M)^-alpha`` saturates where the smoothed energy ``M`` is below
    ``eps``, so bands quieter than ``eps`` come out near 0. librosa's examples feed PCEN the mel
    power of audio scaled as 32-bit integers (``S * 2**31``); melfront's mel power of audio in
    [-1, 1] is 2**62 times smaller, so with the default ``eps=1e-6`` quiet backgrounds are gated to
    dark (visible as a level threshold across bands in ``melfront show``). Pass a smaller ``eps``
    for fixed PCEN on quiet material, or let ``trainable=True`` learn it.

    >>> f = PCEN(n_mels=3, per_band=True, trainable=True, init="loop")
    >>> f(torch.rand(2, 3, 5)).shape, sorted(f.learned_parameters())
    (torch.Size([2, 3, 5]), ['alpha', 'delta', 'eps', 'r', 's'])
    >>> round(f.learned_parameters()["s"][0], 6)
    0.025
    """

    readable = ("s", "alpha", "delta", "r", "eps")
    _EPS_FLOOR = 1e-12

    def __init__(self, n_mels: int | None = None, per_band: bool = False, trainable: bool = False,
                 s: float = 0.025, alpha: float = 0.98, delta: float = 2.0, r: float = 0.5, eps: float = 1e-6,
                 time_constant: float | None = None, sample_rate: float | None = None,
                 hop_length: int | None = None, init: str = "median", chunk: int = F.SCAN_CHUNK):
        super().__init__()
        n_mels = band_count("PCEN", per_band, n_mels)
        trainable = boolean("trainable", trainable)
        if time_constant is not None:
            s = F.pcen_time_constant_to_s(time_constant, sample_rate, hop_length)
        values = {name: finite_float(name, v) for name, v in dict(s=s, alpha=alpha, delta=delta, r=r, eps=eps).items()}
        one_of("init", init, F.PCEN_INITS)
        if positive_int("chunk", chunk) < 2:
            raise ParameterError(f"chunk must be an integer >= 2, got {chunk!r}")
        self._check_ranges(values, trainable)
        self.n_mels, self.per_band, self.trainable, self.init, self.chunk = n_mels, bool(per_band), trainable, init, chunk
        self.time_constant = time_constant
        if trainable:
            s, alpha, delta, r, eps = (values[k] for k in self.readable)
            raw = dict(s=_logit(s), alpha=_logit(alpha), delta=math.log(delta), r=_logit(r),
                       eps=math.log(eps - self._EPS_FLOOR))
            for name, what in (("s", "sigmoid"), ("alpha", "sigmoid"), ("delta", "exp"), ("r", "sigmoid"),
                               ("eps", "exp")):
                float32_parameter(name, values[name], getattr(torch, what), f"{name} = {what}(raw {name})",
                                  raw=raw[name])
            self._param("logit_s", raw["s"], per_band, n_mels, True)
            self._param("logit_alpha", raw["alpha"], per_band, n_mels, True)
            self._param("log_delta", raw["delta"], per_band, n_mels, True)
            self._param("logit_r", raw["r"], per_band, n_mels, True)
            self._param("log_eps", raw["eps"], per_band, n_mels, True)
        else:  # fixed values stay Python floats: exact for float64 input, whatever .to() does to the module
            self.fixed = values
        fixed = {} if trainable else values
        self._fix_settings(trainable=trainable, per_band=bool(per_band), init=init, **fixed)

    def _check_ranges(self, values: dict, trainable: bool) -> None:
        s, alpha, delta, r, eps = (values[k] for k in self.readable)
        checks = {"s": 0 < s < 1, "alpha": 0 < alpha < 1, "r": 0 < r < 1, "delta": delta > 0, "eps": eps > self._EPS_FLOOR}
        if not trainable:  # fixed PCEN allows the closed ends: s = 1, alpha = 0 or 1, r = 1
            checks.update(s=0 < s <= 1, alpha=0 <= alpha, r=r > 0, delta=delta >= 0, eps=eps > 0)
        for name, ok in checks.items():
            if not ok:
                what = "trainable " if trainable else ""
                raise ParameterError(f"{name}={values[name]!r} is outside the valid range for a {what}PCEN "
                                     f"(s, alpha, r in (0, 1), delta > 0, eps > {self._EPS_FLOOR:g} when trainable)")

    def _value(self, name: str, like: torch.Tensor | None = None) -> torch.Tensor:
        if not self.trainable:
            dtype = torch.float64 if like is None else like.dtype
            device = None if like is None else like.device
            return torch.full((self.n_mels,) if self.per_band else (), self.fixed[name], dtype=dtype, device=device)
        if name == "s":
            return torch.sigmoid(self.logit_s)
        if name == "alpha":
            return torch.sigmoid(self.logit_alpha)
        if name == "r":
            return torch.sigmoid(self.logit_r)
        if name == "delta":
            return torch.exp(self.log_delta)
        return self._EPS_FLOOR + torch.exp(self.log_eps)

    s = property(lambda self: self._value("s"), doc="smoothing coefficient (weight of the new frame)")
    alpha = property(lambda self: self._value("alpha"), doc="gain normalisation exponent")
    delta = property(lambda self: self._value("delta"), doc="bias")
    r = property(lambda self: self._value("r"), doc="compression exponent")
    eps = property(lambda self: self._value("eps"), doc="floor of the smoother in the gain")
    __jit_unused_properties__ = ["s", "alpha", "delta", "r", "eps"]

    def plain_values(self, x: torch.Tensor) -> List[torch.Tensor]:
        """``[s, alpha, delta, r, eps]`` as tensors of ``x``'s dtype (0-d or per band), TorchScript-compatible.

        >>> [round(v.item(), 3) for v in PCEN().plain_values(torch.ones(1, 1))]
        [0.025, 0.98, 2.0, 0.5, 0.0]
        """
        if hasattr(self, "logit_s"):  # trainable (TorchScript resolves hasattr when it compiles)
            values = [torch.sigmoid(self.logit_s), torch.sigmoid(self.logit_alpha), torch.exp(self.log_delta),
                      torch.sigmoid(self.logit_r), 1e-12 + torch.exp(self.log_eps)]  # 1e-12: _EPS_FLOOR
            return [v.to(x.dtype) for v in values]
        return [torch.tensor(self.fixed[n], dtype=x.dtype, device=x.device) for n in ["s", "alpha", "delta", "r", "eps"]]

    def compress(self, x):
        return self._pcen(x, None, False)

    def compress_plain(self, x: torch.Tensor) -> torch.Tensor:
        v = self.plain_values(x)
        return F.pcen_plain(x, v[0], v[1], v[2], v[3], v[4], self.init, None)[0]

    def _pcen(self, x, initial_state, return_state: bool):
        values = [self._value(n, x).to(x.dtype) for n in self.readable]
        return F.pcen(x, *values, initial_state=initial_state, return_state=return_state, init=self.init,
                      chunk=self.chunk)

    def learned_parameters(self) -> dict[str, list[float]]:
        """``{name: values}`` of ``s, alpha, delta, r, eps`` when trainable, else ``{}``.

        >>> PCEN().learned_parameters()
        {}
        """
        return super().learned_parameters() if self.trainable else {}

    def stream(self, x: torch.Tensor, state: torch.Tensor | None = None):
        """Process one chunk of a long recording: returns ``(output, state)``; pass ``state`` to the next call.

        Concatenating the outputs over chunks equals one call on the whole recording. The first
        chunk (``state=None``) starts as ``init`` says, from that chunk alone: for ``"median"`` (the
        median of the first 40 frames) it must hold the clip's first 40 frames (or all of a shorter
        clip), else pass the state of
        :meth:`StreamingPCEN.initial_state <melfront.frontends.StreamingPCEN.initial_state>`.

        >>> f, x = PCEN(), torch.rand(1, 4, 60, dtype=torch.float64)
        >>> a, state = f.stream(x[..., :45])
        >>> b, state = f.stream(x[..., 45:], state)
        >>> torch.allclose(torch.cat([a, b], -1), f(x))
        True
        """
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self._pcen(x, state, True)

    def extra_repr(self):
        return (f"n_mels={self.n_mels}, per_band={self.per_band}, trainable={self.trainable}, init={self.init!r}"
                + (f", time_constant={self.time_constant}" if self.time_constant is not None else ""))
