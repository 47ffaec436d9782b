"""Spectral functions: the mel scale, the mel filterbank, windows, the STFT, mel spectrograms and deltas.

Every function works on any leading dimensions ``(..., time)`` or ``(..., n_mels, frames)``, on
any device, in float32 or float64, and is differentiable with autograd. Argument names and
defaults follow librosa, whose results they reproduce (see ``tests/test_librosa_parity.py``).

>>> import torch
>>> from melfront.functional.spectral import melspectrogram
>>> melspectrogram(torch.zeros(2, 4000), 16000, n_fft=512, hop_length=160, n_mels=40).shape
torch.Size([2, 40, 26])
"""
from __future__ import annotations

import math
import warnings
from functools import lru_cache
from typing import Optional

import numpy as np
import torch

from ..checks import boolean, finite_float, optional, positive_float, positive_int
from ..errors import ParameterError

__all__ = [
    "hz_to_mel", "mel_to_hz", "mel_frequencies", "fft_frequencies", "mel_filterbank", "MAX_FILTERBANK_ELEMENTS",
    "get_window", "check_stft_args", "num_frames", "spectrogram", "spectrogram_plain", "melspectrogram", "melspectrogram_chunked",
    "DEFAULT_CHUNK_FRAMES", "deltas",
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

#: Largest mel filterbank (``n_mels * (1 + n_fft // 2)`` elements) :func:`mel_filterbank` builds.
MAX_FILTERBANK_ELEMENTS = 2 ** 31


def hz_to_mel(frequencies, htk: bool = False) -> np.ndarray:
    """Hz -> mels. HTK: ``2595 log10(1 + f/700)``; Slaney (default): linear-log as librosa.

    >>> round(float(hz_to_mel(1000.0)), 9), round(float(hz_to_mel(1000.0, htk=True)), 3)
    (15.0, 999.986)
    """
    f = np.asanyarray(frequencies, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    mels = f / _F_SP
    log_part = f >= _MIN_LOG_HZ
    return np.where(log_part, _MIN_LOG_MEL + np.log(np.maximum(f, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP, mels)


def mel_to_hz(mels, htk: bool = False) -> np.ndarray:
    """Mels -> Hz, the inverse of :func:`hz_to_mel`.

    >>> round(float(mel_to_hz(15.0)), 9), round(float(mel_to_hz(hz_to_mel(4000.0))), 6)
    (1000.0, 4000.0)
    """
    m = np.asanyarray(mels, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    freqs = _F_SP * m
    return np.where(m >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL)), freqs)


def mel_frequencies(n_mels: int = 128, fmin: float = 0.0, fmax: float = 11025.0, htk: bool = False) -> np.ndarray:
    """``n_mels`` frequencies (Hz) equally spaced on the mel scale from ``fmin`` to ``fmax``.

    >>> mel_frequencies(4, 0.0, 1000.0).round(1).tolist()
    [0.0, 333.3, 666.7, 1000.0]
    """
    return mel_to_hz(np.linspace(hz_to_mel(fmin, htk), hz_to_mel(fmax, htk), n_mels), htk)


def fft_frequencies(sample_rate: float, n_fft: int) -> np.ndarray:
    """Centre frequencies (Hz) of the ``1 + n_fft // 2`` one-sided FFT bins.

    >>> fft_frequencies(8000, 8).tolist()
    [0.0, 1000.0, 2000.0, 3000.0, 4000.0]
    """
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


def _check_filterbank_args(sample_rate, n_fft, n_mels, fmin, fmax, htk, norm):
    """Checked ``(sample_rate, n_fft, n_mels, fmin, fmax, htk)`` for :func:`mel_filterbank`."""
    sample_rate = positive_float("sample_rate", sample_rate)
    n_fft = positive_int("n_fft", n_fft)
    n_mels = positive_int("n_mels", n_mels)
    fmin = finite_float("fmin", fmin)
    nyquist = sample_rate / 2
    fmax = nyquist if fmax is None else finite_float("fmax", fmax)
    if fmax > nyquist:
        raise ParameterError(f"fmax={fmax} Hz is above the Nyquist frequency sample_rate / 2 = {nyquist} Hz")
    if not 0 <= fmin < fmax:
        raise ParameterError(f"need 0 <= fmin < fmax, got fmin={fmin}, fmax={fmax}")
    if norm not in ("slaney", None) and (isinstance(norm, bool) or not isinstance(norm, (int, float))):
        raise ParameterError(f"norm must be 'slaney', None or a number, got {norm!r}")
    elements = n_mels * (1 + n_fft // 2)
    if elements > MAX_FILTERBANK_ELEMENTS:
        raise ParameterError(f"a mel filterbank of n_mels={n_mels} x (1 + n_fft // 2)={1 + n_fft // 2} bins would need "
                             f"{elements * 8} bytes ({elements * 8 / 2 ** 30:.1f} GiB in float64); "
                             f"the limit is {MAX_FILTERBANK_ELEMENTS} elements: use fewer n_mels or a smaller n_fft")
    return sample_rate, n_fft, n_mels, fmin, fmax, boolean("htk", htk)


def mel_filterbank(sample_rate: float, n_fft: int, n_mels: int = 128, fmin: float = 0.0, fmax: float | None = None,
                   htk: bool = False, norm="slaney", dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Triangular mel filterbank, shape ``(n_mels, 1 + n_fft // 2)``; same values as ``librosa.filters.mel``.

    Each filter rises linearly (in Hz) from the mel frequency below its centre to its centre and
    falls to the one above, on ``n_mels + 2`` points equally spaced in mels between ``fmin`` and
    ``fmax`` (default ``sample_rate / 2``; above it is a ``ParameterError``). ``norm="slaney"``
    divides each triangle by its width in Hz / 2 (constant energy per band, Slaney 1998); ``None``
    leaves peaks at 1; a number p normalises each row to unit p-norm. Computed in float64, then
    cast to ``dtype``.

    When some triangles fall between two FFT bins (too many ``n_mels`` for ``n_fft``), those bands
    are all zero and a ``UserWarning`` ("Empty filters detected in mel frequency basis") is
    emitted, as librosa does: a warning, not an error, so that such a filterbank stays usable and
    the warning can be silenced with :mod:`warnings`. A filterbank of more than
    :data:`MAX_FILTERBANK_ELEMENTS` elements is refused (``ParameterError``) before anything is allocated.

    >>> fb = mel_filterbank(16000, 512, n_mels=40)
    >>> fb.shape, fb.dtype
    (torch.Size([40, 257]), torch.float32)
    >>> mel_filterbank(16000, 512, n_mels=40, fmax=9000.0)
    Traceback (most recent call last):
    ...
    melfront.errors.ParameterError: fmax=9000.0 Hz is above the Nyquist frequency sample_rate / 2 = 8000.0 Hz
    """
    sample_rate, n_fft, n_mels, fmin, fmax, htk = _check_filterbank_args(sample_rate, n_fft, n_mels, fmin, fmax,
                                                                         htk, norm)
    w = _mel_filterbank_np(sample_rate, n_fft, n_mels, fmin, fmax, htk, norm)
    empty = ~(w.max(axis=1) > 0)
    if empty.any():
        warnings.warn(f"Empty filters detected in mel frequency basis: {int(empty.sum())} of n_mels={n_mels} bands "
                      f"are all zero with n_fft={n_fft}. Some channels will produce empty responses; "
                      f"use fewer n_mels or a larger n_fft.", UserWarning, stacklevel=2)
    return torch.tensor(w, dtype=dtype, device=device)


# --------------------------------------------------------------------------------------------
# STFT
# --------------------------------------------------------------------------------------------
_WINDOWS = {
    "hann": torch.hann_window, "hanning": torch.hann_window, "hamming": torch.hamming_window,
    "blackman": torch.blackman_window, "bartlett": torch.bartlett_window,
}


def get_window(window, win_length: int, n_fft: int | None = None, dtype=torch.float32, device=None) -> torch.Tensor:
    """A periodic ("fftbins") analysis window of ``win_length`` samples, zero-padded to ``n_fft``.

    ``window`` is a name ("hann", "hamming", "blackman", "rectangular"/"boxcar", "bartlett")
    or a tensor/array of length ``win_length``. Padding is centred, as ``librosa.filters.get_window``
    plus ``librosa.util.pad_center``.

    >>> get_window("hann", 4, 6).tolist()
    [0.0, 0.0, 0.5, 1.0, 0.5, 0.0]
    """
    win_length = positive_int("win_length", win_length)
    n_fft = win_length if n_fft is None else positive_int("n_fft", n_fft)
    if win_length > n_fft:
        raise ParameterError(f"win_length ({win_length}) must be <= n_fft ({n_fft})")
    if isinstance(window, str):
        name = window.lower()
        if name in ("rectangular", "boxcar", "ones"):
            w = torch.ones(win_length, dtype=torch.float64)
        elif name in _WINDOWS:
            w = _WINDOWS[name](win_length, periodic=True, dtype=torch.float64)
        else:
            raise ParameterError(f"unknown window {window!r}; use one of hann, hamming, blackman, bartlett, "
                                 f"rectangular or pass a tensor")
    else:
        w = torch.as_tensor(np.asarray(window) if not torch.is_tensor(window) else window, dtype=torch.float64)
        if w.ndim != 1 or w.numel() != win_length:
            raise ParameterError(f"window must be 1-D with win_length={win_length} samples, got shape {tuple(w.shape)}")
    left = (n_fft - win_length) // 2
    w = torch.nn.functional.pad(w, (left, n_fft - win_length - left))
    return w.to(dtype=dtype, device=device)


def check_stft_args(n_fft, hop_length=None, win_length=None) -> tuple[int, int]:
    """Checked STFT framing: ``(hop_length, win_length)`` with librosa's defaults filled in.

    ``n_fft``, ``hop_length`` (default ``n_fft // 4``) and ``win_length`` (default ``n_fft``,
    at most ``n_fft``) must be positive integers; anything else is a ``ParameterError`` naming it.

    >>> check_stft_args(1024)
    (256, 1024)
    >>> check_stft_args(1024, 2.5)
    Traceback (most recent call last):
    ...
    melfront.errors.ParameterError: hop_length must be a positive integer, got 2.5
    """
    n_fft = positive_int("n_fft", n_fft)
    hop_length = positive_int("hop_length", n_fft // 4 if hop_length is None else hop_length)
    win_length = n_fft if win_length is None else positive_int("win_length", win_length)
    if win_length > n_fft:
        raise ParameterError(f"win_length must be in (0, n_fft={n_fft}], got {win_length}")
    return hop_length, win_length


def num_frames(n_samples: int, n_fft: int, hop_length: int, center: bool = True) -> int:
    """Number of STFT frames of ``n_samples`` samples, as :func:`spectrogram` makes them.

    ``center=True`` pads the signal by ``n_fft // 2`` on both sides: ``1 + n_samples // hop_length``
    for an even ``n_fft`` (``1 + (n_samples - 1) // hop_length`` for an odd one, whose padding is
    one sample short of ``n_fft``); ``center=False``: ``1 + (n_samples - n_fft) // hop_length``,
    or 0 when the signal is shorter than ``n_fft``.

    >>> num_frames(22050, 1024, 512), num_frames(1000, 255, 100), num_frames(5000, 1024, 512, center=False)
    (44, 10, 8)
    >>> num_frames(100, 1024, 512, center=False)
    0
    """
    padded = int(n_samples) + 2 * (n_fft // 2) if center else int(n_samples)
    return 1 + (padded - n_fft) // hop_length if padded >= n_fft else 0


_PAD_MODES = ("constant", "reflect", "replicate", "circular")


def _check_waveform(waveform, n_fft: int, hop_length: int, center: bool, pad_mode: str) -> int:
    """The length of a usable ``waveform`` ``(..., time)`` (at least one frame); ``ParameterError`` otherwise."""
    if not torch.is_tensor(waveform):
        raise ParameterError(f"waveform must be a torch.Tensor, got {type(waveform).__name__}")
    if waveform.ndim == 0:
        raise ParameterError("waveform must have a time axis, got a scalar")
    if not waveform.is_floating_point():
        raise ParameterError(f"waveform must be a floating-point tensor, got {waveform.dtype}")
    length = waveform.shape[-1]
    if num_frames(length, n_fft, hop_length, center) == 0:
        raise ParameterError(f"waveform has {length} samples, fewer than n_fft={n_fft} "
                             f"(use center=True or a shorter n_fft)")
    if center and pad_mode == "reflect" and length <= n_fft // 2:
        raise ParameterError(f"reflect padding needs more than n_fft//2={n_fft // 2} samples, got {length}")
    return length


def spectrogram(waveform: torch.Tensor, n_fft: int = 2048, hop_length: int | None = None,
                win_length: int | None = None, window="hann", center: bool = True,
                pad_mode: str = "constant", power: float | None = 2.0,
                window_tensor: torch.Tensor | None = None) -> torch.Tensor:
    """Short-time Fourier transform magnitude (``power=1``), power (``power=2``) or complex (``None``).

    ``waveform`` ``(..., time)`` -> ``(..., 1 + n_fft // 2, frames)``. With ``center=True`` the
    signal is padded by ``n_fft // 2`` on both sides (``pad_mode`` "constant" = zeros, as librosa
    >= 0.10, or "reflect") so that frame ``t`` is centred on sample ``t * hop_length``; frames =
    ``1 + time // hop_length``. With ``center=False``, frames = ``1 + (time - n_fft) // hop_length``
    (see :func:`num_frames`). ``window_tensor`` (length ``n_fft``) skips rebuilding the window;
    modules pass their buffer. The arguments are checked, then :func:`spectrogram_plain` computes
    (:class:`~melfront.frontends.Spectrogram` calls that directly under TorchScript, export and compile).

    >>> spectrogram(torch.ones(3, 1000), n_fft=256, hop_length=100).shape
    torch.Size([3, 129, 11])
    """
    hop_length, win_length = check_stft_args(n_fft, hop_length, win_length)
    center = boolean("center", center)
    if pad_mode not in _PAD_MODES:
        raise ParameterError(f"pad_mode must be one of {', '.join(map(repr, _PAD_MODES))}, got {pad_mode!r}")
    power = optional(positive_float, "power", power)
    _check_waveform(waveform, n_fft, hop_length, center, pad_mode)
    if window_tensor is None:
        window_tensor = get_window(window, win_length, n_fft, dtype=waveform.dtype, device=waveform.device)
    return spectrogram_plain(waveform, n_fft, hop_length, window_tensor, center, pad_mode, power)


def spectrogram_plain(waveform: torch.Tensor, n_fft: int, hop_length: int, window: torch.Tensor, center: bool = True,
                      pad_mode: str = "constant", power: Optional[float] = 2.0) -> torch.Tensor:
    """:func:`spectrogram`'s computation with no argument checks (TorchScript-compatible; the one STFT body).

    ``window`` is the ``n_fft``-long window tensor (cast to the waveform's dtype and device);
    ``power`` 2 gives :math:`|z|^2` from the real and imaginary parts (exact, with a gradient
    defined at 0), 1 the magnitude, ``None`` the complex STFT. Call it directly only where
    :func:`spectrogram`'s Python checks cannot run (``torch.jit.script``).

    >>> spectrogram_plain(torch.ones(3, 1000), 256, 100, torch.hann_window(256)).shape
    torch.Size([3, 129, 11])
    """
    x = waveform.reshape(-1, waveform.shape[-1])
    spec = torch.stft(x, n_fft=n_fft, hop_length=hop_length, win_length=n_fft,
                      window=window.to(dtype=x.dtype, device=x.device), center=center,
                      pad_mode=pad_mode, normalized=False, onesided=True, return_complex=True)
    spec = spec.reshape(waveform.shape[:-1] + spec.shape[-2:])
    if power is None:
        return spec
    if power == 2.0:
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

    >>> melspectrogram(torch.zeros(8000), 8000, n_fft=256, hop_length=128, n_mels=16).shape
    torch.Size([16, 63])
    """
    spec = spectrogram(waveform, n_fft, hop_length, win_length, window, center, pad_mode, power)
    fb = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax, htk, norm, dtype=spec.dtype, device=spec.device)
    return torch.matmul(fb, spec)


#: Frames per block of :func:`melspectrogram_chunked` (about 12 MB of complex STFT for ``n_fft=2048``).
DEFAULT_CHUNK_FRAMES = 1024


def _block(x: torch.Tensor, start: int, stop: int, pad_mode: str) -> torch.Tensor:
    """Samples ``start:stop`` of ``x`` ``(batch, time)``, padded by ``pad_mode`` where they leave the signal.

    Padding only happens at the clip's ends (``start < 0`` or ``stop > time``). There the block is
    read with enough of the signal for the padding to see what padding the whole signal would (a
    reflection needs ``pad + 1`` samples), padded, and trimmed back to ``stop - start`` samples.
    """
    length = x.shape[-1]
    left, right = max(0, -start), max(0, stop - length)
    if not (left or right):
        return x[:, start:stop]
    lo = 0 if left else min(start, max(0, length - right - 1))
    hi = length if right else max(stop, min(length, left + 1))
    seg = x[:, lo:hi]
    if pad_mode == "constant":
        seg = torch.nn.functional.pad(seg, (left, right))
    else:  # reflect, replicate, circular: torch pads (batch, channel, time)
        seg = torch.nn.functional.pad(seg.unsqueeze(1), (left, right), mode=pad_mode).squeeze(1)
    first = start - (lo - left)  # seg[0] is sample lo - left
    return seg[:, first:first + stop - start]


def melspectrogram_chunked(waveform: torch.Tensor, sample_rate: float = 22050, n_fft: int = 2048,
                           hop_length: int | None = None, win_length: int | None = None, window="hann",
                           center: bool = True, pad_mode: str = "constant", power: float = 2.0, n_mels: int = 128,
                           fmin: float = 0.0, fmax: float | None = None, htk: bool = False, norm="slaney",
                           chunk_frames: int = DEFAULT_CHUNK_FRAMES) -> torch.Tensor:
    """:func:`melspectrogram` computed ``chunk_frames`` frames at a time: the same result in bounded memory.

    ``(..., time)`` -> ``(..., n_mels, frames)``; the arguments are those of :func:`melspectrogram`
    (a :meth:`melfront.MelSpectrogram.config` dict fits: ``melspectrogram_chunked(x, **mel.config())``).
    Block ``[f0, f1)`` of frames reads samples ``f0 * hop_length - p`` to ``(f1 - 1) * hop_length - p + n_fft``
    (``p = n_fft // 2`` if ``center`` else 0; consecutive blocks overlap by ``n_fft - hop_length``
    samples), and only the clip's two ends are padded (``pad_mode`` zeros or reflection, as
    :func:`spectrogram`). Every frame therefore sees exactly the samples of the one-shot STFT, and
    the frame count is :func:`num_frames`. Besides the waveform and the result, memory holds one
    block's STFT, ``chunk_frames x (1 + n_fft // 2)`` complex values; the dtype (float32 in, float32
    throughout) is the input's. Differentiable, like :func:`melspectrogram`.

    >>> x = torch.randn(2, 20000)
    >>> a = melspectrogram_chunked(x, 16000, n_fft=511, hop_length=160, n_mels=40, chunk_frames=7)
    >>> b = melspectrogram(x, 16000, n_fft=511, hop_length=160, n_mels=40)
    >>> a.shape == b.shape, bool(((a - b).abs() <= 1e-5 * b.abs().max()).all())
    (True, True)
    """
    hop_length, win_length = check_stft_args(n_fft, hop_length, win_length)
    center = boolean("center", center)
    chunk_frames = positive_int("chunk_frames", chunk_frames)
    if pad_mode not in _PAD_MODES:
        raise ParameterError(f"pad_mode must be one of {', '.join(map(repr, _PAD_MODES))}, got {pad_mode!r}")
    power = positive_float("power", power)
    length = _check_waveform(waveform, n_fft, hop_length, center, pad_mode)
    fb = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax, htk, norm, dtype=waveform.dtype,
                        device=waveform.device)
    window_tensor = get_window(window, win_length, n_fft, dtype=waveform.dtype, device=waveform.device)
    lead = waveform.shape[:-1]
    x = waveform.reshape(-1, length)
    frames = num_frames(length, n_fft, hop_length, center)
    out = torch.empty(x.shape[0], fb.shape[0], frames, dtype=waveform.dtype, device=waveform.device)
    offset = n_fft // 2 if center else 0
    for f0 in range(0, frames, chunk_frames):
        f1 = min(frames, f0 + chunk_frames)
        seg = _block(x, f0 * hop_length - offset, (f1 - 1) * hop_length - offset + n_fft, pad_mode)
        spec = spectrogram(seg, n_fft, hop_length, win_length, None, False, pad_mode, power,
                           window_tensor=window_tensor)
        out[:, :, f0:f1] = torch.matmul(fb, spec)
    return out.reshape(*lead, fb.shape[0], frames)


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

    >>> deltas(torch.arange(10.0).view(1, 10), width=3).tolist()
    [[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]]
    """
    if isinstance(width, bool) or not isinstance(width, int) or width < 3 or width % 2 == 0:
        raise ParameterError(f"width must be an odd integer >= 3, got {width!r}")
    order = positive_int("order", order)
    if not torch.is_tensor(x):
        raise ParameterError(f"x must be a torch.Tensor, got {type(x).__name__}")
    frames = x.shape[-1]
    if frames < width:
        raise ParameterError(f"deltas need at least width={width} frames, got {frames}; use a smaller width")
    kernel, start, end = (torch.as_tensor(m, dtype=x.dtype, device=x.device) for m in _savgol_matrices(width, order))
    half = width // 2
    lead = x.shape[:-1]
    flat = x.reshape(-1, 1, frames)
    interior = torch.nn.functional.conv1d(flat, kernel.view(1, 1, -1)).reshape(*lead, frames - 2 * half)
    first = x[..., :width] @ start.T
    last = x[..., -width:] @ end.T
    return torch.cat([first, interior, last], dim=-1)
