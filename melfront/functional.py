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
        return torch.view_as_real(spec).pow(2).sum(-1)
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
