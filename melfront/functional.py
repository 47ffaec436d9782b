"""Pure tensor functions: STFT, mel filterbank, deltas and (below) the compressions.

Every function works on any leading dimensions ``(..., time)`` or ``(..., n_mels, frames)``, on
any device, in float32 or float64, and is differentiable with autograd. Argument names and
defaults follow librosa, whose results they reproduce (see ``tests/test_librosa_parity.py``).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

__all__ = [
    "hz_to_mel", "mel_to_hz", "mel_frequencies", "fft_frequencies", "mel_filterbank",
    "get_window", "spectrogram", "melspectrogram", "deltas",
    # compressions
    "log_offset", "power_to_db", "log_floor", "power_compress", "minmax", "pcen_time_constant_to_s",
    "pcen_smoother", "pcen", "pcen_reference",
]


# --------------------------------------------------------------------------------------------
# Mel scale
# --------------------------------------------------------------------------------------------
# Slaney's Auditory Toolbox scale (librosa's default, htk=False): linear below 1 kHz with
# 200/3 Hz per mel, logarithmic above with 27 mels per factor 6.4.
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(frequencies, htk: bool = False) -> np.ndarray:
    """Hz -> mels. HTK: ``2595 log10(1 + f/700)``; Slaney (default): linear-log as librosa."""
    f = np.asanyarray(frequencies, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    mels = f / _F_SP
    log_part = f >= _MIN_LOG_HZ
    return np.where(log_part, _MIN_LOG_MEL + np.log(np.maximum(f, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP, mels)


def mel_to_hz(mels, htk: bool = False) -> np.ndarray:
    """Mels -> Hz, the inverse of :func:`hz_to_mel`."""
    m = np.asanyarray(mels, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    freqs = _F_SP * m
    return np.where(m >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL)), freqs)


def mel_frequencies(n_mels: int = 128, fmin: float = 0.0, fmax: float = 11025.0, htk: bool = False) -> np.ndarray:
    """``n_mels`` frequencies (Hz) equally spaced on the mel scale from ``fmin`` to ``fmax``."""
    return mel_to_hz(np.linspace(hz_to_mel(fmin, htk), hz_to_mel(fmax, htk), n_mels), htk)


def fft_frequencies(sample_rate: float, n_fft: int) -> np.ndarray:
    """Centre frequencies (Hz) of the ``1 + n_fft // 2`` one-sided FFT bins."""
    return np.linspace(0, float(sample_rate) / 2, 1 + n_fft // 2)


@lru_cache(maxsize=64)
def _mel_filterbank_np(sample_rate, n_fft, n_mels, fmin, fmax, htk, norm):
    fftfreqs = fft_frequencies(sample_rate, n_fft)
    mel_f = mel_frequencies(n_mels + 2, fmin, fmax, htk)
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fftfreqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    if norm == "slaney":
        weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    elif norm is not None:
        p = float(norm)
        if p == np.inf:
            length = np.abs(weights).max(axis=1, keepdims=True)
        else:
            length = (np.abs(weights) ** p).sum(axis=1, keepdims=True) ** (1.0 / p)
        weights = np.divide(weights, length, out=np.zeros_like(weights), where=length > np.finfo(float).tiny)
    weights.setflags(write=False)
    return weights


def mel_filterbank(sample_rate: float, n_fft: int, n_mels: int = 128, fmin: float = 0.0, fmax: float | None = None,
                   htk: bool = False, norm="slaney", dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Triangular mel filterbank, shape ``(n_mels, 1 + n_fft // 2)``; same values as ``librosa.filters.mel``.

    Each filter rises linearly (in Hz) from the mel frequency below its centre to its centre and
    falls to the one above, on ``n_mels + 2`` points equally spaced in mels between ``fmin`` and
    ``fmax`` (default ``sample_rate / 2``). ``norm="slaney"`` divides each triangle by its width
    in Hz / 2 (constant energy per band, Slaney 1998); ``None`` leaves peaks at 1; a number p
    normalises each row to unit p-norm. Computed in float64, then cast to ``dtype``.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if n_fft <= 0 or n_mels <= 0:
        raise ValueError(f"n_fft and n_mels must be positive, got n_fft={n_fft}, n_mels={n_mels}")
    fmax = float(sample_rate) / 2 if fmax is None else float(fmax)
    if not 0 <= fmin < fmax:
        raise ValueError(f"need 0 <= fmin < fmax, got fmin={fmin}, fmax={fmax}")
    if norm not in ("slaney", None) and not isinstance(norm, (int, float)):
        raise ValueError(f"norm must be 'slaney', None or a number, got {norm!r}")
    w = _mel_filterbank_np(float(sample_rate), int(n_fft), int(n_mels), float(fmin), fmax, bool(htk), norm)
    return torch.tensor(w, dtype=dtype, device=device)


# --------------------------------------------------------------------------------------------
# STFT
# --------------------------------------------------------------------------------------------
def get_window(window, win_length: int, n_fft: int | None = None, dtype=torch.float32, device=None) -> torch.Tensor:
    """A periodic ("fftbins") analysis window of ``win_length`` samples, zero-padded to ``n_fft``.

    ``window`` is a name ("hann", "hamming", "blackman", "rectangular"/"boxcar", "bartlett")
    or a tensor/array of length ``win_length``. Padding is centred, as ``librosa.filters.get_window``
    plus ``librosa.util.pad_center``.
    """
    n_fft = win_length if n_fft is None else n_fft
    if win_length > n_fft:
        raise ValueError(f"win_length ({win_length}) must be <= n_fft ({n_fft})")
    if isinstance(window, str):
        name = window.lower()
        makers = {
            "hann": torch.hann_window, "hanning": torch.hann_window, "hamming": torch.hamming_window,
            "blackman": torch.blackman_window, "bartlett": torch.bartlett_window,
        }
        if name in ("rectangular", "boxcar", "ones"):
            w = torch.ones(win_length, dtype=torch.float64)
        elif name in makers:
            w = makers[name](win_length, periodic=True, dtype=torch.float64)
        else:
            raise ValueError(f"unknown window {window!r}; use one of hann, hamming, blackman, bartlett, rectangular or pass a tensor")
    else:
        w = torch.as_tensor(np.asarray(window) if not torch.is_tensor(window) else window, dtype=torch.float64)
        if w.ndim != 1 or w.numel() != win_length:
            raise ValueError(f"window must be 1-D with win_length={win_length} samples, got shape {tuple(w.shape)}")
    left = (n_fft - win_length) // 2
    w = torch.nn.functional.pad(w, (left, n_fft - win_length - left))
    return w.to(dtype=dtype, device=device)


def _check_stft_args(n_fft, hop_length, win_length):
    if n_fft <= 0:
        raise ValueError(f"n_fft must be positive, got {n_fft}")
    hop_length = n_fft // 4 if hop_length is None else int(hop_length)
    win_length = n_fft if win_length is None else int(win_length)
    if hop_length <= 0:
        raise ValueError(f"hop_length must be positive, got {hop_length}")
    if not 0 < win_length <= n_fft:
        raise ValueError(f"win_length must be in (0, n_fft={n_fft}], got {win_length}")
    return hop_length, win_length


def spectrogram(waveform: torch.Tensor, n_fft: int = 2048, hop_length: int | None = None,
                win_length: int | None = None, window="hann", center: bool = True,
                pad_mode: str = "constant", power: float | None = 2.0,
                window_tensor: torch.Tensor | None = None) -> torch.Tensor:
    """Short-time Fourier transform magnitude (``power=1``), power (``power=2``) or complex (``None``).

    ``waveform`` ``(..., time)`` -> ``(..., 1 + n_fft // 2, frames)``. With ``center=True`` the
    signal is padded by ``n_fft // 2`` on both sides (``pad_mode`` "constant" = zeros, as librosa
    >= 0.10, or "reflect") so that frame ``t`` is centred on sample ``t * hop_length``; frames =
    ``1 + time // hop_length``. With ``center=False``, frames = ``1 + (time - n_fft) // hop_length``.
    ``window_tensor`` (length ``n_fft``) skips rebuilding the window; modules pass their buffer.
    """
    hop_length, win_length = _check_stft_args(n_fft, hop_length, win_length)
    if waveform.ndim == 0:
        raise ValueError("waveform must have a time axis, got a scalar")
    if not waveform.is_floating_point():
        raise TypeError(f"waveform must be a floating-point tensor, got {waveform.dtype}")
    length = waveform.shape[-1]
    if not center and length < n_fft:
        raise ValueError(f"waveform has {length} samples, fewer than n_fft={n_fft} (use center=True or a shorter n_fft)")
    if center and pad_mode == "reflect" and length <= n_fft // 2:
        raise ValueError(f"reflect padding needs more than n_fft//2={n_fft // 2} samples, got {length}")
    if window_tensor is None:
        window_tensor = get_window(window, win_length, n_fft, dtype=waveform.dtype, device=waveform.device)
    lead = waveform.shape[:-1]
    x = waveform.reshape(-1, length)
    spec = torch.stft(x, n_fft=n_fft, hop_length=hop_length, win_length=n_fft,
                      window=window_tensor.to(dtype=x.dtype, device=x.device), center=center,
                      pad_mode=pad_mode, normalized=False, onesided=True, return_complex=True)
    spec = spec.reshape(*lead, spec.shape[-2], spec.shape[-1])
    if power is None:
        return spec
    if power == 2.0:
        # |z|^2 from real and imaginary parts: exact and with a gradient defined at 0
        return spec.real.square() + spec.imag.square()
    if power == 1.0:
        return spec.abs()
    return spec.abs().pow(power)


def melspectrogram(waveform: torch.Tensor, sample_rate: float = 22050, n_fft: int = 2048,
                   hop_length: int | None = None, win_length: int | None = None, window="hann",
                   center: bool = True, pad_mode: str = "constant", power: float = 2.0, n_mels: int = 128,
                   fmin: float = 0.0, fmax: float | None = None, htk: bool = False, norm="slaney") -> torch.Tensor:
    """Mel spectrogram ``(..., time)`` -> ``(..., n_mels, frames)``, as ``librosa.feature.melspectrogram``.

    The STFT magnitude raised to ``power`` (2 = power, 1 = magnitude) is multiplied by the
    :func:`mel_filterbank`. Units: power of a full-scale signal's STFT (no normalisation by the
    window), like librosa.
    """
    spec = spectrogram(waveform, n_fft, hop_length, win_length, window, center, pad_mode, power)
    fb = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax, htk, norm, dtype=spec.dtype, device=spec.device)
    return torch.matmul(fb, spec)


# --------------------------------------------------------------------------------------------
# Deltas (Savitzky-Golay derivatives, librosa.feature.delta with mode="interp")
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=32)
def _savgol_matrices(width: int, order: int):
    """Interior kernel (width,) and edge matrices (half, width) for the ``order``-th derivative."""
    half = width // 2
    fact = math.factorial(order)
    pos = np.arange(-half, half + 1, dtype=np.float64)
    A = pos[:, None] ** np.arange(order + 1)[None, :]
    kernel = fact * np.linalg.pinv(A)[order]
    # Edges: least-squares polynomial (degree = order) through the first / last `width` samples,
    # differentiated `order` times and evaluated at the edge positions (scipy's mode="interp").
    x = np.arange(width, dtype=np.float64)
    V = x[:, None] ** np.arange(order + 1)[None, :]
    P = np.linalg.pinv(V)  # (order+1, width): polynomial coefficients from samples
    powers = np.arange(order + 1)
    deriv = np.array([math.factorial(p) / math.factorial(p - order) if p >= order else 0.0 for p in powers])

    def at(points):
        exps = np.clip(powers[None, :] - order, 0, None)
        return (deriv[None, :] * points[:, None] ** exps) @ P

    start = at(np.arange(half, dtype=np.float64))
    end = at(np.arange(width - half, width, dtype=np.float64))
    return kernel, start, end


def deltas(x: torch.Tensor, width: int = 9, order: int = 1) -> torch.Tensor:
    """Local derivative of ``x`` along its last (time) axis, as ``librosa.feature.delta``.

    A Savitzky-Golay filter of polynomial order ``order`` over ``width`` frames (odd, >= 3);
    the first and last ``width // 2`` frames use the polynomial fitted to the first / last
    ``width`` frames (``mode="interp"``). Shape ``(..., frames)`` is kept; ``frames >= width``.
    """
    if not isinstance(width, int) or width < 3 or width % 2 == 0:
        raise ValueError(f"width must be an odd integer >= 3, got {width!r}")
    if not isinstance(order, int) or order < 1:
        raise ValueError(f"order must be a positive integer, got {order!r}")
    frames = x.shape[-1]
    if frames < width:
        raise ValueError(f"deltas need at least width={width} frames, got {frames}; use a smaller width")
    kernel, start, end = (torch.as_tensor(m, dtype=x.dtype, device=x.device) for m in _savgol_matrices(width, order))
    half = width // 2
    lead = x.shape[:-1]
    flat = x.reshape(-1, 1, frames)
    interior = torch.nn.functional.conv1d(flat, kernel.view(1, 1, -1)).reshape(*lead, frames - 2 * half)
    first = x[..., :width] @ start.T
    last = x[..., -width:] @ end.T
    return torch.cat([first, interior, last], dim=-1)


# --------------------------------------------------------------------------------------------
# Compressions
# --------------------------------------------------------------------------------------------
# All of them map a linear power (mel) spectrogram ``(..., n_mels, frames)`` to the same shape.
# "Per example" always means: reduced over the last two dimensions (n_mels, frames), never
# across leading (batch) dimensions.
_LOG_EPS = float(np.finfo(np.float64).eps)  # 2.22e-16, numpy's float eps, as Pons et al. use


def _as_param(value, like: torch.Tensor, name: str) -> torch.Tensor:
    """A float, a 0-d tensor or a per-band vector ``(n_mels,)`` -> tensor broadcastable to ``(..., n_mels, 1)``."""
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if t.ndim == 0:
        return t
    if t.ndim == 1:
        if like.ndim < 2 or t.shape[0] not in (1, like.shape[-2]):
            raise ValueError(f"{name} has {t.shape[0]} values but the input has shape {tuple(like.shape)} "
                             f"(per-band parameters need one value per mel band, axis -2)")
        return t.unsqueeze(-1)
    raise ValueError(f"{name} must be a number or a 1-D per-band vector, got shape {tuple(t.shape)}")


def _check_spec(x: torch.Tensor, name: str = "x", min_ndim: int = 1) -> None:
    if not torch.is_tensor(x):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions (..., n_mels, frames), got shape {tuple(x.shape)}")


def log_offset(x: torch.Tensor, alpha=1.0, beta=_LOG_EPS, base="e") -> torch.Tensor:
    r"""Logarithm with a gain and an offset: :math:`\log_{base}(\alpha X + \beta)`.

    ``log_offset(X, 1, eps, 10)`` is Pons, Serrà & Serra's (2019) "log-EPS" with the machine
    epsilon ``eps = 2.22e-16`` (numpy's float64 epsilon, the default ``beta``);
    ``log_offset(X, 10000, 1, 10)`` is the widely used ``log10(10000 X + 1)``.

    Parameters
    ----------
    x : tensor ``(..., n_mels, frames)``, non-negative (linear power)
    alpha, beta : float, 0-d tensor or per-band vector ``(n_mels,)``
        Gain (> 0) and offset (> 0). Tensors may require grad (see :class:`melfront.LogLearn`).
    base : "e", 10, 2 or any positive number other than 1

    Returns
    -------
    tensor, same shape and dtype as ``x``.
    """
    _check_spec(x)
    if base == "e":
        scale = 1.0
    else:
        try:
            b = float(base)
        except (TypeError, ValueError):
            raise ValueError(f"base must be 'e' or a positive number other than 1, got {base!r}") from None
        if b <= 0 or b == 1:
            raise ValueError(f"base must be 'e' or a positive number other than 1, got {base!r}")
        scale = 1.0 / math.log(b)
    for name, v in (("alpha", alpha), ("beta", beta)):
        if not torch.is_tensor(v) and not float(v) > 0:
            raise ValueError(f"{name} must be positive, got {v!r}")
    a = _as_param(alpha, x, "alpha")
    b_ = _as_param(beta, x, "beta")
    out = torch.log(a * x + b_)
    return out * scale if scale != 1.0 else out


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
    """
    _check_spec(x)
    if not amin > 0:
        raise ValueError(f"amin must be strictly positive, got {amin!r}")
    if top_db is not None and not top_db >= 0:
        raise ValueError(f"top_db must be non-negative or None, got {top_db!r}")
    if isinstance(ref, str) and ref != "max":
        raise ValueError(f"ref must be a number, a tensor or 'max', got {ref!r}")
    dims = tuple(range(-min(2, x.ndim), 0))
    # in place where autograd does not need the intermediates (one full-size allocation instead of five)
    inplace = not (torch.is_grad_enabled() and x.requires_grad)
    db = torch.clamp(x, min=amin)
    db = db.log10_().mul_(10.0) if inplace else 10.0 * torch.log10(db)
    peak_is_zero = False
    if isinstance(ref, str):  # "max": log10 is monotonic, so the log of the max is the max of the log
        peak = db.amax(dim=dims, keepdim=True)
        db = db.sub_(peak) if inplace else db - peak
        peak_is_zero = True
    else:
        r = torch.as_tensor(ref, dtype=x.dtype, device=x.device).abs()
        if not (r.ndim == 0 and float(r) == 1.0):
            offset = 10.0 * torch.log10(torch.clamp(r, min=amin))
            db = db.sub_(offset) if inplace and offset.ndim <= db.ndim and torch.broadcast_shapes(offset.shape, db.shape) == db.shape else db - offset
    if top_db is not None:
        if peak_is_zero:  # every example's maximum is now exactly 0 dB
            db = db.clamp_(min=-float(top_db)) if inplace else torch.clamp(db, min=-float(top_db))
        else:
            floor = db.amax(dim=dims, keepdim=True) - top_db
            db = torch.maximum(db, floor, out=db) if inplace else torch.maximum(db, floor)
    return db


def log_floor(x: torch.Tensor, floor: float = 1e-6) -> torch.Tensor:
    r"""Natural log with a floor, :math:`\log \max(X, floor)` (the Macaulay Library / Merlin "decibel" form).

    ``x`` ``(..., n_mels, frames)`` non-negative; ``floor`` > 0. Same shape out.
    """
    _check_spec(x)
    if not floor > 0:
        raise ValueError(f"floor must be positive, got {floor!r}")
    return torch.log(torch.clamp(x, min=floor))


def power_compress(x: torch.Tensor, exponent) -> torch.Tensor:
    r"""Power-law compression :math:`X^{p}`, with a finite gradient everywhere.

    ``exponent`` is a float, 0-d tensor or per-band vector ``(n_mels,)``, > 0 (a tensor may
    require grad; :class:`melfront.PowerLearn` passes ``sigmoid(a)``, Schlüter 2018). Computed
    as ``exp(p log X)`` where ``X > 0`` and 0 where ``X == 0``, so that the gradient with
    respect to ``p`` (:math:`X^p \log X`) is 0, not NaN, at silent bins.
    """
    _check_spec(x)
    if not torch.is_tensor(exponent) and not float(exponent) > 0:
        raise ValueError(f"exponent must be positive, got {exponent!r}")
    p = _as_param(exponent, x, "exponent")
    pos = x > 0
    safe = torch.where(pos, x, torch.ones_like(x))
    return torch.where(pos, torch.exp(p * torch.log(safe)), torch.zeros_like(x))


def minmax(x: torch.Tensor) -> torch.Tensor:
    """Rescale each example to [0, 1]: ``(X - min) / (max - min)`` over ``(n_mels, frames)``.

    A constant example maps to 0. ``x`` ``(..., n_mels, frames)``; same shape out.
    """
    _check_spec(x)
    dims = tuple(range(-min(2, x.ndim), 0))
    lo = x.amin(dim=dims, keepdim=True)
    span = x.amax(dim=dims, keepdim=True) - lo
    tiny = torch.finfo(x.dtype).tiny
    return (x - lo) / torch.clamp(span, min=tiny)


def pcen_time_constant_to_s(time_constant: float, sample_rate: float, hop_length: int) -> float:
    r"""Smoothing coefficient ``s`` of a smoother with time constant ``time_constant`` seconds.

    As librosa: with :math:`T = \tau \cdot sr / hop` frames, :math:`s = (\sqrt{1 + 4T^2} - 1) / (2T^2)`,
    the root of :math:`s^2 + (1 - s)/T - 2 = 0`, which matches the full width at half maximum
    of the squared frequency response of the one-pole low-pass filter.
    """
    if not time_constant > 0:
        raise ValueError(f"time_constant must be positive (seconds), got {time_constant!r}")
    if sample_rate is None or not sample_rate > 0:
        raise ValueError(f"time_constant needs a positive sample_rate, got {sample_rate!r}")
    if hop_length is None or not hop_length > 0:
        raise ValueError(f"time_constant needs a positive hop_length, got {hop_length!r}")
    t = float(time_constant) * float(sample_rate) / float(hop_length)
    return (math.sqrt(1.0 + 4.0 * t * t) - 1.0) / (2.0 * t * t)


_PCEN_INITS = ("first", "loop", "zero", "librosa")
_SCAN_CHUNK = 32


def _decay_powers(log_a: torch.Tensor, n: int, start: int = 0) -> torch.Tensor:
    """``a ** k`` for ``k = start .. start + n - 1``, shape ``(*log_a.shape, n)``, via ``exp(k log a)``."""
    k = torch.arange(start, start + n, dtype=log_a.dtype, device=log_a.device)
    return torch.exp(log_a.unsqueeze(-1) * k)


def _decay_matrix(log_a: torch.Tensor, n: int) -> torch.Tensor:
    """Lower-triangular ``W[..., k, j] = a ** (k - j)`` (``j <= k``), shape ``(*log_a.shape, n, n)``."""
    k = torch.arange(n, device=log_a.device)
    d = (k[:, None] - k[None, :]).clamp(min=0).to(log_a.dtype)  # clamped so exp never overflows above the diagonal
    return torch.tril(torch.exp(log_a[..., None, None] * d))


def _scan(u: torch.Tensor, log_a: torch.Tensor, chunk: int, reverse: bool = False, scale=None,
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
    """
    if reverse:
        return _scan(u.flip(-1), log_a, chunk, scale=scale).flip(-1)
    if out is not None:
        y = _scan(u, log_a, chunk, scale=scale, inplace=inplace, out=None) if u.shape[-1] % min(u.shape[-1], chunk) else None
        if y is not None:
            return out.copy_(y)
    N, m, T = u.shape
    per_band = log_a.ndim == 1
    L = min(T, chunk)
    for cand in range(L, (L + 1) // 2, -1):  # a block length that divides T saves padding and copies
        if T % cand == 0:
            L = cand
            break
    n_chunks = -(-T // L)
    pad = n_chunks * L - T
    u = torch.nn.functional.pad(u, (0, pad)) if pad else u.contiguous()
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
        y.mul_(down)
    else:
        W = _decay_matrix(log_a, L)  # W[k, j] = a ** (k - j), j <= k
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
    if n_chunks > 1:
        bound = _scan(y[..., -1].contiguous(), log_a * L, chunk)  # state at each block's end
        prev = torch.nn.functional.pad(bound[..., :-1], (1, 0))  # state at the previous block's end
        carry = _decay_powers(log_a, L, start=1)  # a ** (k + 1)
        if per_band:
            carry = carry.unsqueeze(-2)  # (m, 1, L)
        y = y.addcmul_(prev.unsqueeze(-1), carry)
    y = y.view(N, m, n_chunks * L)
    y = y[..., :T] if pad else y
    if out is not None and y.data_ptr() != out.data_ptr():
        return out.copy_(y)
    return y


class _Smoother(torch.autograd.Function):
    """``M[t] = a M[t-1] + s X[t]`` from a given ``M[-1]`` (or periodic, ``loop``), with its adjoint as backward.

    Backward: ``lam = reverse scan of dL/dM``, ``dL/dX = s lam``,
    ``dL/ds = sum_t lam[t] (X[t] - M[t-1])``, ``dL/dM[-1] = a lam[0]``. For the periodic
    ("loop") solution the adjoint is periodic too: ``lam += a ** (T - t) lam0[0] / (1 - a ** T)``.
    """

    @staticmethod
    def forward(ctx, x, s, state, loop, chunk):
        log_a = torch.log1p(-s.clamp(max=1.0)).clamp(min=-1e4)  # log(1 - s); s == 1 stays finite
        M = _scan(x, log_a, chunk, scale=s)
        T = x.shape[-1]
        if loop:  # fixed point of M[T-1] = a^T M[-1] + M0[T-1]
            state = M[..., -1] / -torch.expm1(log_a * T)
        if state is not None:
            decay = _decay_powers(log_a, T, start=1)  # a ** (t + 1)
            M.addcmul_(state.unsqueeze(-1), decay)
        ctx.loop, ctx.chunk = loop, chunk
        ctx.has_state = state is not None
        ctx.save_for_backward(x, s, log_a, M, state if state is not None else torch.zeros(()))
        return M

    @staticmethod
    def backward(ctx, g):
        x, s, log_a, M, state = ctx.saved_tensors
        T = x.shape[-1]
        lam = _scan(g, log_a, ctx.chunk, reverse=True)
        per_band = s.ndim == 1
        sb = s.unsqueeze(-1) if per_band else s
        if ctx.loop:
            a_T = -torch.expm1(log_a * T)
            first = lam[..., 0] / (a_T.unsqueeze(0) if per_band else a_T)
            lam.addcmul_(first.unsqueeze(-1), _decay_powers(log_a, T, start=1).flip(-1))  # a ** (T - t)
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


def _pcen_inputs(x, s):
    _check_spec(x, min_ndim=2)
    lead = x.shape[:-2]
    m, T = x.shape[-2], x.shape[-1]
    if T == 0:
        raise ValueError("pcen needs at least one frame, got 0")
    return lead, m, T


def _smoother_setup(x, s, initial_state, init, chunk):
    """Checks and the smoother's start for :func:`pcen_smoother` and :func:`pcen`."""
    lead, m, T = _pcen_inputs(x, s)
    if init not in _PCEN_INITS:
        raise ValueError(f"init must be one of {', '.join(_PCEN_INITS)}, got {init!r}")
    if not isinstance(chunk, int) or chunk < 2:
        raise ValueError(f"chunk must be an integer >= 2, got {chunk!r}")
    s_t = torch.as_tensor(s, dtype=x.dtype, device=x.device)
    if not torch.is_tensor(s):
        if not 0 < float(s) <= 1:
            raise ValueError(f"s must be in (0, 1], got {s!r}")
    if s_t.ndim > 1 or (s_t.ndim == 1 and s_t.shape[0] not in (1, m)):
        raise ValueError(f"s must be a number or a per-band vector of {m} values, got shape {tuple(s_t.shape)}")
    if s_t.ndim == 1 and s_t.shape[0] == 1:
        s_t = s_t[0]
    flat = x.reshape(-1, m, T)
    loop = False
    if initial_state is not None:
        init_state = torch.as_tensor(initial_state, dtype=x.dtype, device=x.device)
        init_state = torch.broadcast_to(init_state, (*lead, m)).reshape(-1, m)
    elif init == "zero":
        init_state = None
    elif init == "first":
        init_state = flat[..., 0]
    elif init == "librosa":
        init_state = torch.ones(flat.shape[:-1], dtype=x.dtype, device=x.device)
    else:
        init_state, loop = None, True
    return lead, m, T, flat, s_t, init_state, loop


def pcen_smoother(x: torch.Tensor, s=0.025, initial_state=None, init: str = "first",
                  return_state: bool = False, chunk: int = _SCAN_CHUNK):
    r"""The PCEN smoother, :math:`M[t] = (1 - s) M[t-1] + s X[t]`, exactly and without a loop over frames.

    Parameters
    ----------
    x : tensor ``(..., n_mels, frames)``
    s : float in (0, 1], 0-d tensor or per-band vector ``(n_mels,)``
        Smoothing coefficient (weight of the new frame).
    initial_state : tensor ``(..., n_mels)`` or broadcastable, optional
        :math:`M[-1]`, e.g. the ``state`` returned by the previous chunk of a stream. Overrides ``init``.
    init : "first", "loop", "zero" or "librosa"
        :math:`M[-1]` when ``initial_state`` is None. "first": the first frame (the smoother is
        in steady state for it, so :math:`M[0] = X[0]`); "loop": the periodic steady state of
        the clip looped in time, :math:`M[-1] = M_0[T-1] / (1 - (1-s)^T)` with :math:`M_0` the
        smoother run from zero, i.e. the clip played forever before itself (the Macaulay
        Library / Merlin team's fix for the dark band at the start); "zero": 0; "librosa":
        1, the steady state for a constant input of 1, as ``librosa.pcen``'s default
        ``zi = lfilter_zi([s], [1, s - 1])``.
    return_state : bool
        Also return :math:`M[..., -1]` ``(..., n_mels)`` to continue a stream.
    chunk : int
        Frames per block of the exact chunked recursion (speed only).

    Returns
    -------
    M : tensor, same shape as ``x`` (and the final state if ``return_state``).
    """
    lead, m, T, flat, s_t, init_state, loop = _smoother_setup(x, s, initial_state, init, chunk)
    M = _Smoother.apply(flat, s_t, init_state, loop, chunk)
    M = M.reshape(*lead, m, T)
    if return_state:
        return M, M[..., -1]
    return M


def _sum_to(grad: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Sum a broadcast gradient back to the shape of ``like`` (a 0-d tensor or ``(m, 1)``)."""
    if like.ndim == 0:
        return grad.sum()
    return grad.sum(dim=tuple(range(grad.ndim - 2))).sum(-1, keepdim=True)


_PCEN_BLOCK = 1 << 20  # elements per block of examples (4 MiB of float32): the working set stays in cache


class _PCEN(torch.autograd.Function):
    """The whole of PCEN (smoother + gain + compression) with a hand-written backward.

    PCEN is limited by memory traffic, not arithmetic: autograd through its ~15 elementwise
    steps allocates and revisits a full-size tensor per step. This keeps a few tensors for the
    backward pass, works in place, and walks through the batch in blocks of about
    ``_PCEN_BLOCK`` elements so that each block's steps run on cached data (a Python loop over
    blocks of examples, never over frames). The adjoint of the smoother is the same exact
    recursion run backwards in time (see :class:`_Smoother`).
    Input ``x`` ``(N, m, T)``; ``s`` 0-d or ``(m,)``; ``alpha, delta, r, eps`` 0-d or ``(m, 1)``; ``delta > 0``.
    """

    @staticmethod
    def forward(ctx, x, s, alpha, delta, r, eps, state, loop, chunk):
        need = ctx.needs_input_grad
        x = x.contiguous()
        N, m, T = x.shape
        nb = max(1, _PCEN_BLOCK // max(1, m * T))
        log_a = torch.log1p(-s.clamp(max=1.0)).clamp(min=-1e4)
        dr = torch.exp(r * torch.log(delta))                      # delta^r
        em, L, G, out = (torch.empty_like(x) for _ in range(4))
        q = torch.empty_like(x) if need[4] else None
        gain = torch.empty_like(x) if need[0] else None
        starts = loop or state is not None
        used_state = torch.empty((N, m), dtype=x.dtype, device=x.device) if starts else None
        decay = _decay_powers(log_a, T, start=1) if starts else None   # a ** (t + 1)
        loop_denom = -torch.expm1(log_a * T) if loop else None
        for i in range(0, N, nb):
            sl = slice(i, i + nb)
            xb, emb, Lb, Gb, ob = x[sl], em[sl], L[sl], G[sl], out[sl]
            _scan(xb, log_a, chunk, scale=s, out=emb)              # M from M[-1] = 0
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
            rev_decay = _decay_powers(log_a, T, start=1).flip(-1)  # a ** (T - t)
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
            lam = _scan(Ab.flip(-1), log_a, ctx.chunk, inplace=True).flip(-1)
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


def pcen(x: torch.Tensor, s=0.025, alpha=0.98, delta=2.0, r=0.5, eps=1e-6, initial_state=None,
         return_state: bool = False, init: str = "first", chunk: int = _SCAN_CHUNK):
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
        Smoother start and streaming, see :func:`pcen_smoother`. Processing a long recording in
        chunks, each given the previous chunk's returned state, equals one call on the whole.

    Returns
    -------
    tensor, same shape as ``x`` (float32 for half-precision input), and the smoother's final
    state ``(..., n_mels)`` if ``return_state``.
    """
    _check_spec(x, min_ndim=2)
    for name, v in (("alpha", alpha), ("delta", delta), ("eps", eps), ("r", r)):
        if not torch.is_tensor(v):
            v = float(v)
            if (name in ("alpha", "delta") and not v >= 0) or (name in ("eps", "r") and not v > 0):
                bound = ">= 0" if name in ("alpha", "delta") else "> 0"
                raise ValueError(f"{name} must be {bound}, got {v!r}")
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.to(dtype)
        cast = (lambda v: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v)
        s, alpha, delta, r, eps = (cast(v) for v in (s, alpha, delta, r, eps))
        if initial_state is not None and torch.is_tensor(initial_state):
            initial_state = initial_state.to(dtype)
        lead, m, T, flat, s_t, init_state, loop = _smoother_setup(x, s, initial_state, init, chunk)
        a_ = _as_param(alpha, x, "alpha")
        d_ = _as_param(delta, x, "delta")
        r_ = _as_param(r, x, "r")
        e_ = _as_param(eps, x, "eps")
        zero_bias = (not d_.requires_grad) and bool((d_ == 0).any())
        if zero_bias:  # rare (fixed delta = 0): plain autograd ops
            M = _Smoother.apply(flat, s_t, init_state, loop, chunk).reshape(x.shape)
            G = x * torch.exp(-a_ * torch.log(e_ + M))
            d_safe = torch.where(d_ > 0, d_, torch.ones_like(d_))
            biased = torch.exp(r_ * torch.log(d_safe)) * torch.expm1(r_ * torch.log1p(G / d_safe))
            out = torch.where(d_ > 0, biased, G.pow(r_))
            state = M[..., -1]
        else:
            out, state = _PCEN.apply(flat, s_t, a_, d_, r_, e_, init_state, loop, chunk)
            out, state = out.reshape(x.shape), state.reshape(*lead, m)
    if return_state:
        return out, state
    return out


def pcen_reference(x, s=0.025, alpha=0.98, delta=2.0, r=0.5, eps=1e-6, initial_state=None,
                   init: str = "first", return_state: bool = False, dtype=torch.float64):
    """PCEN by a frame-by-frame Python loop, in float64 by default: the test oracle for :func:`pcen`.

    Same arguments and results as :func:`pcen`; slow on purpose (one step per frame, the
    textbook recursion; the compression in its cancellation-free form). ``dtype=torch.float32`` gives the loop implementation
    the benchmarks time.
    """
    x = x.to(dtype) if torch.is_tensor(x) else torch.as_tensor(np.asarray(x, dtype=np.float64)).to(dtype)
    m, T = x.shape[-2], x.shape[-1]
    p = [v.to(dtype) if torch.is_tensor(v) else torch.tensor(float(v), dtype=dtype) for v in (s, alpha, delta, r, eps)]
    s_, alpha_, delta_, r_, eps_ = [v.unsqueeze(-1) if v.ndim == 1 else v for v in p]
    s_vec = s_.squeeze(-1) if s_.ndim == 2 else s_
    a = 1 - s_vec
    if initial_state is not None:
        st = initial_state.to(dtype) if torch.is_tensor(initial_state) else torch.as_tensor(initial_state, dtype=dtype)
        state = torch.broadcast_to(st, x.shape[:-1]).clone()
    elif init == "zero":
        state = torch.zeros(x.shape[:-1], dtype=dtype)
    elif init == "first":
        state = x[..., 0].clone()
    elif init == "librosa":
        state = torch.ones(x.shape[:-1], dtype=dtype)
    elif init == "loop":
        m0 = torch.zeros(x.shape[:-1], dtype=dtype)
        for t in range(T):
            m0 = a * m0 + s_vec * x[..., t]
        state = m0 / (1 - a ** T)
    else:
        raise ValueError(f"init must be one of {', '.join(_PCEN_INITS)}, got {init!r}")
    cols = []
    for t in range(T):
        state = a * state + s_vec * x[..., t]
        cols.append(state)
    M = torch.stack(cols, dim=-1)
    G = x / (eps_ + M) ** alpha_
    # (G + delta)^r - delta^r, written so that it does not cancel when G << delta (even float64
    # would lose ~8 digits at G / delta = 1e-8); delta == 0 gives G^r.
    safe = torch.where(delta_ > 0, delta_, torch.ones_like(delta_))
    out = torch.where(delta_ > 0, safe ** r_ * torch.expm1(r_ * torch.log1p(G / safe)), G ** r_)
    if return_state:
        return out, state
    return out
