"""Thin ``torch.nn.Module`` wrappers over :mod:`melfront.functional`, and the spec-string factory.

A frontend maps audio or a linear mel spectrogram to what a classifier reads. Each module
declares what it consumes in ``input_kind``: ``"waveform"`` ``(..., time)`` or ``"mel"``
(a linear power mel spectrogram ``(..., n_mels, frames)``).
"""
from __future__ import annotations

import ast
import inspect
import math
from typing import Callable, NamedTuple

import torch
from torch import nn

from . import functional as F

__all__ = ["Spectrogram", "MelSpectrogram", "Frontend", "LogOffset", "LogEPS", "Log10000", "LogLearn", "Decibel",
           "LogFloor", "PowerLearn", "PCEN", "MinMax", "Stack", "Chain", "frontend", "FRONTENDS"]


class Spectrogram(nn.Module):
    """STFT magnitude (``power=1``) or power (``power=2``): ``(..., time)`` -> ``(..., 1 + n_fft//2, frames)``.

    Arguments as :func:`melfront.functional.spectrogram` (librosa's names and defaults).
    """

    input_kind = "waveform"

    def __init__(self, n_fft: int = 2048, hop_length: int | None = None, win_length: int | None = None,
                 window="hann", center: bool = True, pad_mode: str = "constant", power: float | None = 2.0):
        super().__init__()
        self.hop_length, self.win_length = F._check_stft_args(n_fft, hop_length, win_length)
        if pad_mode not in ("constant", "reflect"):
            raise ValueError(f"pad_mode must be 'constant' or 'reflect', got {pad_mode!r}")
        if power is not None and power <= 0:
            raise ValueError(f"power must be positive or None, got {power}")
        self.n_fft, self.center, self.pad_mode, self.power = n_fft, center, pad_mode, power
        self.window_name = window if isinstance(window, str) else "custom"
        # Buffers are kept in float64 and cast to the input's dtype at use, so that float64 input
        # gets a float64 window and filterbank (exact to ~1e-12 of librosa) and float32 input loses nothing.
        self.register_buffer("window", F.get_window(window, self.win_length, n_fft, dtype=torch.float64), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return F.spectrogram(waveform, self.n_fft, self.hop_length, self.win_length, None, self.center,
                             self.pad_mode, self.power, window_tensor=self.window.to(waveform.dtype))

    def num_frames(self, n_samples: int) -> int:
        """Number of frames produced for ``n_samples`` input samples."""
        padded = n_samples + 2 * (self.n_fft // 2) if self.center else n_samples
        return 1 + (padded - self.n_fft) // self.hop_length

    def extra_repr(self) -> str:
        return (f"n_fft={self.n_fft}, hop_length={self.hop_length}, win_length={self.win_length}, "
                f"window={self.window_name!r}, center={self.center}, power={self.power}")


class MelSpectrogram(Spectrogram):
    """Mel spectrogram ``(..., time)`` -> ``(..., n_mels, frames)``, same values as ``librosa.feature.melspectrogram``.

    Parameters (librosa's names and defaults)
    ----------
    sample_rate : float
        Sampling rate of the input in Hz.
    n_fft, hop_length (default ``n_fft // 4``), win_length (default ``n_fft``), window, center, pad_mode
        STFT framing, see :func:`melfront.functional.spectrogram`.
    power : float
        Exponent of the STFT magnitude: 2 for power (default), 1 for magnitude.
    n_mels, fmin, fmax (default ``sample_rate / 2``), htk, norm
        Filterbank, see :func:`melfront.functional.mel_filterbank`.
    """

    def __init__(self, sample_rate: float = 22050, n_fft: int = 2048, hop_length: int | None = None,
                 win_length: int | None = None, window="hann", center: bool = True, pad_mode: str = "constant",
                 power: float = 2.0, n_mels: int = 128, fmin: float = 0.0, fmax: float | None = None,
                 htk: bool = False, norm="slaney"):
        if power is None:
            raise ValueError("MelSpectrogram needs a real power (1 or 2), not None")
        super().__init__(n_fft, hop_length, win_length, window, center, pad_mode, power)
        self.sample_rate, self.n_mels, self.fmin, self.htk, self.norm = sample_rate, n_mels, fmin, htk, norm
        self.fmax = float(sample_rate) / 2 if fmax is None else float(fmax)
        self.register_buffer("mel_basis", F.mel_filterbank(sample_rate, n_fft, n_mels, fmin, self.fmax, htk, norm,
                                                               dtype=torch.float64),
                             persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        spec = super().forward(waveform)
        return torch.matmul(self.mel_basis.to(spec.dtype), spec)

    @property
    def frame_rate(self) -> float:
        """Frames per second."""
        return self.sample_rate / self.hop_length

    def config(self) -> dict:
        """The parameters as a JSON-able dict (for caches and checkpoints)."""
        return dict(sample_rate=self.sample_rate, n_fft=self.n_fft, hop_length=self.hop_length,
                    win_length=self.win_length, window=self.window_name, center=self.center, pad_mode=self.pad_mode,
                    power=self.power, n_mels=self.n_mels, fmin=self.fmin, fmax=self.fmax, htk=self.htk, norm=self.norm)

    def mel_center_frequencies(self):
        """Centre frequency (Hz) of each mel band, shape ``(n_mels,)``."""
        return F.mel_frequencies(self.n_mels + 2, self.fmin, self.fmax, self.htk)[1:-1]

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, " + super().extra_repr()
                + f", n_mels={self.n_mels}, fmin={self.fmin}, fmax={self.fmax}, htk={self.htk}, norm={self.norm!r}")



# --------------------------------------------------------------------------------------------
# Compression frontends: linear power mel spectrogram (..., n_mels, frames) -> same shape
# --------------------------------------------------------------------------------------------
def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


def _inv_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class Frontend(nn.Module):
    """Base class of the mel-spectrogram frontends.

    Input: a linear power mel spectrogram ``(..., n_mels, frames)`` (``input_kind = "mel"``).
    Output: ``(..., n_mels, frames)``, or ``(..., out_channels, n_mels, frames)`` for a :class:`Stack`.
    Computation is always in float32 or float64: half-precision input is upcast and ``torch.autocast``
    is switched off inside, so a frontend is safe in mixed-precision training. ``a + b`` chains two
    frontends (:class:`Chain`). Trainable frontends expose their learned values as properties
    (e.g. ``.alpha``) and all of them through :meth:`learned_parameters`.
    """

    input_kind = "mel"
    out_channels = 1
    #: names of the properties that :meth:`learned_parameters` reports
    readable: tuple[str, ...] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(x):
            raise TypeError(f"{type(self).__name__} expects a tensor (..., n_mels, frames), got {type(x).__name__}")
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.compress(x)

    def compress(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __add__(self, other):
        if not isinstance(other, nn.Module):
            return NotImplemented
        return Chain(self, other)

    def learned_parameters(self) -> dict[str, list[float]]:
        """The readable values (``readable``) as ``{name: [floats]}`` (one value, or one per band); JSON-able."""
        return {name: getattr(self, name).detach().cpu().double().reshape(-1).tolist() for name in self.readable}

    def _param(self, name: str, value: float, per_band: bool, n_mels, trainable: bool):
        t = torch.full((n_mels,) if per_band else (), float(value), dtype=torch.float32)
        if trainable:
            self.register_parameter(name, nn.Parameter(t))
        else:
            self.register_buffer(name, t)


def _check_bands(cls: str, per_band: bool, n_mels) -> None:
    if per_band and (n_mels is None or int(n_mels) <= 0):
        raise ValueError(f"{cls}(per_band=True) needs n_mels (the number of mel bands), got {n_mels!r}")


class LogOffset(Frontend):
    r"""Fixed logarithm :math:`\log_{base}(\alpha X + \beta)`; see :func:`melfront.functional.log_offset`.

    Defaults ``alpha=1``, ``beta=2.22e-16`` (machine epsilon), ``base="e"``.
    """

    def __init__(self, alpha: float = 1.0, beta: float = F._LOG_EPS, base="e"):
        super().__init__()
        if not alpha > 0 or not beta > 0:
            raise ValueError(f"alpha and beta must be positive, got alpha={alpha!r}, beta={beta!r}")
        F.log_offset(torch.ones(1, 1), alpha, beta, base)  # validates base
        self.alpha, self.beta, self.base = float(alpha), float(beta), base

    def compress(self, x):
        return F.log_offset(x, self.alpha, self.beta, self.base)

    def extra_repr(self):
        return f"alpha={self.alpha:g}, beta={self.beta:g}, base={self.base!r}"


class LogEPS(LogOffset):
    """``log10(X + eps)`` with the machine epsilon ``eps = 2.22e-16``: Pons, Serrà & Serra (2019)'s "log-EPS"."""

    def __init__(self):
        super().__init__(1.0, F._LOG_EPS, 10)


class Log10000(LogOffset):
    """``log10(10000 X + 1)``, a common fixed log compression (e.g. Pons et al. 2019's baselines)."""

    def __init__(self):
        super().__init__(10000.0, 1.0, 10)


class LogLearn(Frontend):
    r"""Learned logarithm :math:`\log(\alpha X + \beta)` (Pons, Serrà & Serra 2019, "log-learn").

    :math:`\alpha = e^{t_a}` and :math:`\beta = \mathrm{softplus}(t_b)` keep both positive; the
    trainable pre-gates start at ``init_alpha=7`` and ``init_beta=1`` (:math:`\alpha_0 = 1096.63`,
    :math:`\beta_0 = 1.31`, as Pons et al.). ``per_band=True`` learns one pair per mel band
    (needs ``n_mels``). Read the learned values as ``.alpha`` and ``.beta`` (vectors when per band).
    """

    readable = ("alpha", "beta")

    def __init__(self, per_band: bool = False, n_mels: int | None = None, init_alpha: float = 7.0,
                 init_beta: float = 1.0):
        super().__init__()
        _check_bands("LogLearn", per_band, n_mels)
        self.per_band, self.n_mels = bool(per_band), n_mels
        self._param("pre_alpha", init_alpha, per_band, n_mels, True)
        self._param("pre_beta", init_beta, per_band, n_mels, True)

    @property
    def alpha(self) -> torch.Tensor:
        return torch.exp(self.pre_alpha)

    @property
    def beta(self) -> torch.Tensor:
        return nn.functional.softplus(self.pre_beta)

    def compress(self, x):
        return F.log_offset(x, self.alpha.to(x.dtype), self.beta.to(x.dtype))

    def extra_repr(self):
        return f"per_band={self.per_band}, n_mels={self.n_mels}"


class Decibel(Frontend):
    """``librosa.power_to_db`` with ``ref`` ("max" or a number), ``amin`` and ``top_db`` taken per example.

    See :func:`melfront.functional.power_to_db`. Defaults ``ref=1.0, amin=1e-10, top_db=80``.
    """

    def __init__(self, ref=1.0, amin: float = 1e-10, top_db: float | None = 80.0):
        super().__init__()
        F.power_to_db(torch.ones(1, 1), ref, amin, top_db)  # validates the arguments
        self.ref, self.amin, self.top_db = ref, float(amin), top_db

    def compress(self, x):
        return F.power_to_db(x, self.ref, self.amin, self.top_db)

    def extra_repr(self):
        return f"ref={self.ref!r}, amin={self.amin:g}, top_db={self.top_db}"


class LogFloor(Frontend):
    """``log(max(X, floor))``, the Macaulay Library / Merlin "decibel" form (natural log); ``floor=1e-6``."""

    def __init__(self, floor: float = 1e-6):
        super().__init__()
        if not floor > 0:
            raise ValueError(f"floor must be positive, got {floor!r}")
        self.floor = float(floor)

    def compress(self, x):
        return F.log_floor(x, self.floor)

    def extra_repr(self):
        return f"floor={self.floor:g}"


class PowerLearn(Frontend):
    r"""Learned power law :math:`X^{\sigma(a)} = X^{1 / (1 + e^{-a})}` (Schlüter 2018).

    ``a`` starts at ``init=0`` (the square root) and the exponent stays in (0, 1). ``per_band``
    learns one exponent per mel band (needs ``n_mels``). Read it as ``.exponent``.
    """

    readable = ("exponent",)

    def __init__(self, per_band: bool = False, n_mels: int | None = None, init: float = 0.0):
        super().__init__()
        _check_bands("PowerLearn", per_band, n_mels)
        self.per_band, self.n_mels = bool(per_band), n_mels
        self._param("a", init, per_band, n_mels, True)

    @property
    def exponent(self) -> torch.Tensor:
        return torch.sigmoid(self.a)

    def compress(self, x):
        return F.power_compress(x, self.exponent.to(x.dtype))

    def extra_repr(self):
        return f"per_band={self.per_band}, n_mels={self.n_mels}"


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
        ``delta = exp(.)`` > 0, ``eps = 1e-12 + exp(.)``.
    s, alpha, delta, r, eps : float
        Initial values (defaults 0.025, 0.98, 2, 0.5, 1e-6).
    time_constant : float, optional
        Smoother time constant in seconds; with ``sample_rate`` and ``hop_length`` it sets ``s``
        as librosa does (:func:`melfront.functional.pcen_time_constant_to_s`).
    init : "first", "loop", "zero" or "librosa"
        Smoother start (:func:`melfront.functional.pcen_smoother`); "loop" avoids the dark band
        at the start of the clip.

    Read the values as ``.s, .alpha, .delta, .r, .eps`` (vectors when per band).

    Input scale: the gain ``(eps + M)^-alpha`` saturates where the smoothed energy ``M`` is below
    ``eps``, so bands quieter than ``eps`` come out near 0. librosa's examples feed PCEN the mel
    power of audio scaled as 32-bit integers (``S * 2**31``); melfront's mel power of audio in
    [-1, 1] is 2**62 times smaller, so with the default ``eps=1e-6`` quiet backgrounds are gated to
    dark (visible as a level threshold across bands in ``melfront show``). Pass a smaller ``eps``
    for fixed PCEN on quiet material, or let ``trainable=True`` learn it.
    """

    readable = ("s", "alpha", "delta", "r", "eps")
    _EPS_FLOOR = 1e-12

    def __init__(self, n_mels: int | None = None, per_band: bool = False, trainable: bool = False,
                 s: float = 0.025, alpha: float = 0.98, delta: float = 2.0, r: float = 0.5, eps: float = 1e-6,
                 time_constant: float | None = None, sample_rate: float | None = None,
                 hop_length: int | None = None, init: str = "first", chunk: int = F._SCAN_CHUNK):
        super().__init__()
        _check_bands("PCEN", per_band, n_mels)
        if time_constant is not None:
            s = F.pcen_time_constant_to_s(time_constant, sample_rate, hop_length)
        if init not in F._PCEN_INITS:
            raise ValueError(f"init must be one of {', '.join(F._PCEN_INITS)}, got {init!r}")
        checks = {"s": 0 < s < 1, "alpha": 0 < alpha < 1, "r": 0 < r < 1, "delta": delta > 0, "eps": eps > self._EPS_FLOOR}
        if not trainable:  # fixed PCEN allows the closed ends: s = 1, alpha = 0 or 1, r = 1
            checks.update(s=0 < s <= 1, alpha=0 <= alpha, r=r > 0, delta=delta >= 0, eps=eps > 0)
        for name, ok in checks.items():
            if not ok:
                value = dict(s=s, alpha=alpha, delta=delta, r=r, eps=eps)[name]
                what = "trainable " if trainable else ""
                raise ValueError(f"{name}={value!r} is outside the valid range for a {what}PCEN "
                                 f"(s, alpha, r in (0, 1), delta > 0, eps > {self._EPS_FLOOR:g} when trainable)")
        self.n_mels, self.per_band, self.trainable, self.init, self.chunk = n_mels, bool(per_band), bool(trainable), init, chunk
        self.time_constant = time_constant
        if trainable:
            self._param("logit_s", _logit(s), per_band, n_mels, True)
            self._param("logit_alpha", _logit(alpha), per_band, n_mels, True)
            self._param("log_delta", math.log(delta), per_band, n_mels, True)
            self._param("logit_r", _logit(r), per_band, n_mels, True)
            self._param("log_eps", math.log(eps - self._EPS_FLOOR), per_band, n_mels, True)
        else:  # fixed values stay Python floats: exact for float64 input, whatever .to() does to the module
            self.fixed = dict(s=float(s), alpha=float(alpha), delta=float(delta), r=float(r), eps=float(eps))

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

    def compress(self, x, initial_state=None, return_state: bool = False):
        values = [self._value(n, x).to(x.dtype) for n in self.readable]
        return F.pcen(x, *values, initial_state=initial_state, return_state=return_state, init=self.init,
                      chunk=self.chunk)

    def learned_parameters(self) -> dict[str, list[float]]:
        """``{name: values}`` of ``s, alpha, delta, r, eps`` when trainable, else ``{}``."""
        return super().learned_parameters() if self.trainable else {}

    def stream(self, x: torch.Tensor, state: torch.Tensor | None = None):
        """Process one chunk of a long recording: returns ``(output, state)``; pass ``state`` to the next call.

        Concatenating the outputs over chunks equals one call on the whole recording
        (the first chunk starts as ``init`` says).
        """
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.compress(x, initial_state=state, return_state=True)

    def extra_repr(self):
        return (f"n_mels={self.n_mels}, per_band={self.per_band}, trainable={self.trainable}, init={self.init!r}"
                + (f", time_constant={self.time_constant}" if self.time_constant is not None else ""))


class MinMax(Frontend):
    """Rescale each example to [0, 1] over ``(n_mels, frames)`` (the Merlin pipeline normalises before and after compression)."""

    def __init__(self):
        super().__init__()

    def compress(self, x):
        return F.minmax(x)


class Stack(Frontend):
    """Several frontends side by side as channels: ``(..., n_mels, frames)`` -> ``(..., channels, n_mels, frames)``.

    E.g. ``Stack(Decibel(), PCEN(), PowerLearn())`` is a 3-channel image for image CNNs (the Merlin
    team's colour channels). ``out_channels`` is the total number of channels; a stacked frontend
    that itself yields channels contributes all of them.
    """

    def __init__(self, *frontends: nn.Module):
        super().__init__()
        if not frontends:
            raise ValueError("Stack needs at least one frontend")
        kinds = {getattr(f, "input_kind", "mel") for f in frontends}
        if len(kinds) != 1:
            raise ValueError(f"Stack needs frontends with the same input_kind, got {sorted(kinds)}")
        self.input_kind = kinds.pop()
        self.frontends = nn.ModuleList(frontends)
        self.out_channels = sum(int(getattr(f, "out_channels", 1)) for f in frontends)

    def forward(self, x):
        outs = []
        for f in self.frontends:
            y = f(x)
            outs.append(y.unsqueeze(-3) if int(getattr(f, "out_channels", 1)) == 1 else y)
        return torch.cat(outs, dim=-3)

    def learned_parameters(self):
        return _merge_learned(self.frontends)


class Chain(Frontend):
    """Frontends applied one after the other (also ``a + b``), e.g. ``MinMax() + Decibel()``."""

    def __init__(self, *frontends: nn.Module):
        super().__init__()
        if not frontends:
            raise ValueError("Chain needs at least one frontend")
        flat = []
        for f in frontends:
            flat.extend(f.frontends if isinstance(f, Chain) else [f])
        self.frontends = nn.ModuleList(flat)
        self.input_kind = getattr(flat[0], "input_kind", "mel")
        self.out_channels = int(getattr(flat[-1], "out_channels", 1))

    def forward(self, x):
        for f in self.frontends:
            x = f(x)
        return x

    def learned_parameters(self):
        return _merge_learned(self.frontends)


def _merge_learned(frontends) -> dict[str, list[float]]:
    out = {}
    for i, f in enumerate(frontends):
        fn = getattr(f, "learned_parameters", None)
        if callable(fn):
            for k, v in (fn() or {}).items():
                out[f"{i}.{k}"] = v
    return out


# --------------------------------------------------------------------------------------------
# The spec-string factory
# --------------------------------------------------------------------------------------------
class FrontendEntry(NamedTuple):
    builder: Callable[..., nn.Module]
    description: str


def _adaptive(**kwargs):
    try:
        from .filterbanks import adaptive_frontend
    except ImportError as exc:
        raise ValueError(f"frontend 'adaptive' needs melfront.filterbanks.adaptive_frontend, which failed to import: {exc}") from exc
    return adaptive_frontend(**kwargs)


def _mst(**kwargs):
    try:
        from .models.mst import mst_frontend
    except ImportError as exc:
        raise ValueError(f"frontend 'mst' needs melfront.models.mst.mst_frontend, which failed to import: {exc}") from exc
    return mst_frontend(**kwargs)


def _lazy_target(name: str):
    """The function a lazy builder calls, for its signature (None when it cannot be imported)."""
    try:
        if name == "adaptive":
            from .filterbanks import adaptive_frontend
            return adaptive_frontend
        if name == "mst":
            from .models.mst import mst_frontend
            return mst_frontend
    except ImportError:
        return None
    return None


FRONTENDS: dict[str, FrontendEntry] = {
    "db": FrontendEntry(Decibel, "decibels, librosa.power_to_db (ref, amin, top_db per example)"),
    "logeps": FrontendEntry(LogEPS, "log10(X + machine epsilon), Pons et al.'s log-EPS"),
    "log10000": FrontendEntry(Log10000, "log10(10000 X + 1)"),
    "logoffset": FrontendEntry(LogOffset, "fixed log(alpha X + beta), any base"),
    "loglearn": FrontendEntry(LogLearn, "learned log(alpha X + beta), global or per band (Pons et al.)"),
    "logfloor": FrontendEntry(LogFloor, "log(max(X, floor)), the Macaulay/Merlin decibel form"),
    "power": FrontendEntry(PowerLearn, "learned power X ** sigmoid(a), global or per band (Schlueter 2018)"),
    "pcen": FrontendEntry(PCEN, "per-channel energy normalisation, fixed or trainable, global or per band"),
    "minmax": FrontendEntry(MinMax, "per-example rescale to [0, 1]"),
    "stack": FrontendEntry(Stack, "frontends as channels, e.g. stack(db, pcen, power)"),
    "chain": FrontendEntry(Chain, "frontends in sequence, e.g. chain(minmax, db) or db+minmax"),
    "adaptive": FrontendEntry(_adaptive, "waveform: adaptive (nonstationary Gabor) filterbank, Doerfler et al. 2017"),
    "mst": FrontendEntry(_mst, "waveform: learned MSTmodel frontend (Tax et al. 2017) from a checkpoint"),
}


def _accepted(name: str):
    """(names of the keyword arguments the builder takes, whether it takes **kwargs)."""
    entry = FRONTENDS[name]
    target = _lazy_target(name) if name in ("adaptive", "mst") else entry.builder
    if target is None:
        return set(), True
    sig = inspect.signature(target)
    names = {p.name for p in sig.parameters.values()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"}
    var_kw = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    return names, var_kw


def _literal(node, spec):
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        raise ValueError(f"in frontend spec {spec!r}: argument values must be literals "
                         f"(numbers, strings, True/False/None, lists), got {ast.unparse(node)!r}") from None


def _build(node, spec: str, common: dict) -> nn.Module:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return Chain(_build(node.left, spec, common), _build(node.right, spec, common))
    if isinstance(node, ast.Name):
        name, args, keywords = node.id, [], []
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name, args, keywords = node.func.id, node.args, node.keywords
    else:
        raise ValueError(f"cannot parse frontend spec {spec!r} at {ast.unparse(node)!r}: expected name, "
                         f"name(key=value, ...) or a + b; valid names: {', '.join(FRONTENDS)}")
    key = name.lower()
    if key not in FRONTENDS:
        raise ValueError(f"unknown frontend {name!r} in spec {spec!r}; valid names: {', '.join(FRONTENDS)}")
    if key in ("stack", "chain"):
        if keywords:
            raise ValueError(f"{key}(...) takes frontend specs only, got keyword {keywords[0].arg!r} in {spec!r}")
        if not args:
            raise ValueError(f"{key}(...) needs at least one frontend spec, e.g. {key}(db, pcen), in {spec!r}")
        return FRONTENDS[key].builder(*[_build(a, spec, common) for a in args])
    if args:
        raise ValueError(f"frontend {key!r} takes keyword arguments only (name=value), got {ast.unparse(args[0])!r} in {spec!r}")
    accepted, var_kw = _accepted(key)
    given = {}
    for kw in keywords:
        if kw.arg is None:
            raise ValueError(f"'**' is not allowed in frontend spec {spec!r}")
        if kw.arg not in accepted and not var_kw:
            raise ValueError(f"frontend {key!r} has no argument {kw.arg!r} (in spec {spec!r}); "
                             f"valid arguments: {', '.join(sorted(accepted)) or 'none'}")
        given[kw.arg] = _literal(kw.value, spec)
    kwargs = {k: v for k, v in common.items() if var_kw or k in accepted}
    kwargs.update(given)
    try:
        return FRONTENDS[key].builder(**kwargs)
    except TypeError as exc:
        raise ValueError(f"frontend spec {spec!r}: {exc}") from None


def frontend(spec: str, **common) -> nn.Module:
    """Build a frontend from a short spec string.

    ``spec`` is a name from :data:`FRONTENDS`, optionally with keyword arguments (Python literals
    only, parsed with :mod:`ast`, never evaluated): ``"db"``, ``"db(ref='max', top_db=None)"``,
    ``"logeps"``, ``"loglearn(per_band=True)"``, ``"power(per_band=True)"``,
    ``"pcen(trainable=True, per_band=True, init='loop')"``, ``"stack(db, pcen, power)"``,
    ``"chain(minmax, db)"`` or ``"db + minmax"``. ``common`` carries settings shared by all
    frontends (``n_mels``, ``sample_rate``, ``hop_length``, ``n_fft``); each builder gets only the
    ones it accepts, and the spec's own arguments override them. Unknown names or arguments
    raise ``ValueError`` listing the valid ones.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"frontend spec must be a non-empty string, got {spec!r}")
    try:
        tree = ast.parse(spec.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"cannot parse frontend spec {spec!r}: {exc.msg}; valid names: {', '.join(FRONTENDS)}") from None
    return _build(tree.body, spec, common)
