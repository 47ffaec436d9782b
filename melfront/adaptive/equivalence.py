r"""Window equivalence of spectrograms (Dörfler, Bammer & Grill 2017, Proposition IV.2 / Theorem IV.4).

M. Dörfler, R. Bammer, T. Grill, "Inside the spectrogram: convolutional neural networks in audio
processing", SampTA 2017 (arXiv:1710.03013). Spectrograms with two windows g and h become equal
after two-dimensional convolution with kernels :math:`w_g, w_h` when
:math:`\mathcal F_s(w_g)\,\mathcal A_g = \mathcal F_s(w_h)\,\mathcal A_h` (:math:`\mathcal A` the
ambiguity function :math:`V_g g`, :math:`\mathcal F_s` the symplectic Fourier transform). See
:func:`window_equivalence_kernels` and :func:`window_equivalence`; the figure is
:func:`melfront.plotting.plot_window_equivalence`.
"""
from __future__ import annotations

import math

import torch

from ..errors import ParameterError

__all__ = ["cyclic_spectrogram", "ambiguity_multiplier", "window_equivalence_kernels", "window_equivalence"]


def _centred_window(window, n_fft: int, dtype=torch.float64) -> torch.Tensor:
    w = torch.as_tensor(window, dtype=dtype).flatten()
    if w.numel() > n_fft:
        raise ParameterError(f"window has {w.numel()} samples, more than n_fft={n_fft}")
    left = (n_fft - w.numel()) // 2
    return torch.nn.functional.pad(w, (left, n_fft - w.numel() - left))


def cyclic_spectrogram(signal: torch.Tensor, window, n_fft: int, hop_length: int) -> torch.Tensor:
    """Two-sided power spectrogram of a *periodic* signal, ``(time,)`` -> ``(frames, n_fft)``.

    ``frames = time / hop_length`` (``time`` must be a multiple of ``hop_length``); frame n is
    centred on sample ``n * hop_length`` with the signal wrapped around at both ends, the window
    (at most ``n_fft`` samples) centred in the frame. All ``n_fft`` frequency bins are kept, so that
    two-dimensional circular convolutions on the time-frequency lattice are exact.

    >>> cyclic_spectrogram(torch.randn(256, dtype=torch.float64), torch.hann_window(32, dtype=torch.float64), 64, 8).shape
    torch.Size([32, 64])
    """
    signal = torch.as_tensor(signal)
    if signal.ndim != 1:
        raise ParameterError(f"signal must be 1-D, got shape {tuple(signal.shape)}")
    length = signal.numel()
    if hop_length <= 0 or length % hop_length:
        raise ParameterError(f"the signal length ({length}) must be a positive multiple of hop_length ({hop_length})")
    if n_fft > length:
        raise ParameterError(f"n_fft={n_fft} is longer than the signal ({length} samples)")
    win = _centred_window(window, n_fft, signal.dtype)
    half = n_fft // 2
    padded = torch.cat([signal[-half:], signal, signal[:n_fft - half]])
    frames = padded.unfold(0, n_fft, hop_length)[: length // hop_length]
    spec = torch.fft.fft(frames * win, dim=-1)
    return spec.real ** 2 + spec.imag ** 2


def ambiguity_multiplier(window, n_fft: int, hop_length: int, n_samples: int, max_lag: int | None = None) -> torch.Tensor:
    r"""The window's (symmetrised) ambiguity function on the dual lattice of a cyclic spectrogram, ``(frames, n_fft)``.

    For the spectrogram :math:`S_g[n, k]` of :func:`cyclic_spectrogram` (``frames = n_samples / hop``),
    its two-dimensional DFT is, up to aliasing of the frame sampling,

    .. math:: \hat S_g[p, q] = M\, \hat F_q(p)\, B_g(p, q),\qquad
              B_g(p, q) = \sum_u g(u)\, g(u + q)\, e^{2\pi i p u / L},

    with :math:`F_q(m) = f(m) f(m+q)`, L = ``n_samples``, M = ``n_fft``, p the Doppler index
    (frequency p / L cycles/sample) and q the lag in samples: :math:`B_g` is the ambiguity function
    :math:`V_g g` sampled on the dual lattice. Returned (in FFT order in both axes) as
    :math:`\tilde B_g = B_g\, e^{i\pi p q / L}`, which makes the kernels of
    :func:`window_equivalence_kernels` real. Lags beyond ``max_lag`` (default: the window length)
    are set to zero.

    >>> b = ambiguity_multiplier(torch.hann_window(16, dtype=torch.float64), 64, 4, 256)
    >>> b.shape, b.dtype
    (torch.Size([64, 64]), torch.complex128)
    """
    win = _centred_window(window, n_fft)
    if n_samples % hop_length:
        raise ParameterError(f"n_samples ({n_samples}) must be a multiple of hop_length ({hop_length})")
    n_frames = n_samples // hop_length
    nz = torch.nonzero(win).flatten()
    support = int(nz[-1] - nz[0]) + 1 if nz.numel() else 0
    max_lag = support - 1 if max_lag is None else min(int(max_lag), support - 1)
    if 2 * max_lag >= n_fft:
        raise ParameterError(f"n_fft={n_fft} must exceed twice the lags used ({max_lag}); zero-pad the windows more")
    half = n_fft // 2
    u = torch.arange(n_fft) - half                         # window sample j sits at u = j - n_fft/2
    p = torch.fft.fftfreq(n_frames, 1.0 / n_frames).round().long()  # Doppler indices -N/2 .. N/2-1
    out = torch.zeros(n_frames, n_fft, dtype=torch.complex128)
    lags = torch.arange(-max_lag, max_lag + 1)
    for chunk in lags.split(64):
        # g(u) g(u + q) for all frame positions u (zero where u + q leaves the frame)
        j = torch.arange(n_fft)[None, :]
        jq = j + chunk[:, None]
        inside = (jq >= 0) & (jq < n_fft)
        vals = win[None, :] * torch.where(inside, win[jq.clamp(0, n_fft - 1)], torch.zeros(()))
        prod = torch.zeros(chunk.numel(), n_samples, dtype=torch.float64)
        prod[:, torch.remainder(u, n_samples)] = vals
        spec = torch.fft.fft(prod, dim=-1)[:, torch.remainder(p, n_samples)].conj()   # (lags, frames)
        phase = torch.exp(1j * math.pi * p[None, :].double() * chunk[:, None].double() / n_samples)
        out[:, torch.remainder(chunk, n_fft)] = (spec * phase).T
    return out


def window_equivalence_kernels(window_g, window_h, n_fft: int, hop_length: int, n_samples: int):
    r"""Kernels :math:`w_g, w_h` making two spectrograms equal after 2-D convolution (Prop. IV.2 / Thm IV.4).

    Dörfler, Bammer & Grill show that :math:`|V_g f|^2 * w_g = |V_h f|^2 * w_h` for every f iff
    :math:`\mathcal F_s(w_g)\, \mathcal A_g = \mathcal F_s(w_h)\, \mathcal A_h` (:math:`\mathcal A`
    the ambiguity function, :math:`\mathcal F_s` the symplectic Fourier transform). The choice made
    here is the common refinement :math:`\mathcal F_s(w_g) = \mathcal A_h`,
    :math:`\mathcal F_s(w_h) = \mathcal A_g` (then both sides equal :math:`W_f * W_g * W_h`, the
    signal's Wigner distribution smoothed by both windows' Wigner distributions): the long-window
    spectrogram is smoothed by the short window's kernel (short in time, wide in frequency) and the
    short-window spectrogram by the long window's (long in time, narrow in frequency).

    Discrete form for :func:`cyclic_spectrogram` lattices (``n_samples / hop_length`` frames,
    ``n_fft`` two-sided bins, ``n_fft`` at least twice both window lengths): the multipliers
    ``(mult_g, mult_h)`` in the 2-D DFT domain, such that
    ``ifft2(fft2(S_g) * mult_g) = ifft2(fft2(S_h) * mult_h)`` up to the aliasing of the frame
    sampling, and the kernels in the (frame, bin) domain, ``real(ifft2(mult))``, centred at index
    (0, 0) (FFT order). Returns ``(kernel_g, kernel_h, mult_g, mult_h)``.

    >>> hann = lambda n: torch.hann_window(n, dtype=torch.float64)
    >>> kernel_g, kernel_h, mult_g, mult_h = window_equivalence_kernels(hann(32), hann(8), 64, 4, 256)
    >>> kernel_g.shape, kernel_g.dtype
    (torch.Size([64, 64]), torch.float64)
    """
    len_g = int(torch.count_nonzero(_centred_window(window_g, n_fft)))
    len_h = int(torch.count_nonzero(_centred_window(window_h, n_fft)))
    if n_fft < len_g + len_h:
        raise ParameterError(f"n_fft={n_fft} must be at least the sum of the window lengths ({len_g} + {len_h}) "
                         "so that the lags of one spectrogram do not alias onto those of the other")
    lag = min(len_g, len_h) - 1   # the product of the two multipliers vanishes beyond the shorter window
    mult_g = ambiguity_multiplier(window_h, n_fft, hop_length, n_samples, lag)
    mult_h = ambiguity_multiplier(window_g, n_fft, hop_length, n_samples, lag)
    kernel_g = torch.fft.ifft2(mult_g).real
    kernel_h = torch.fft.ifft2(mult_h).real
    return kernel_g, kernel_h, mult_g, mult_h


def window_equivalence(signal: torch.Tensor, window_g, window_h, n_fft: int, hop_length: int) -> dict:
    r"""Spectrograms with windows g and h, each convolved with its kernel from :func:`window_equivalence_kernels`.

    ``signal`` ``(time,)`` is treated as periodic (its length must be a multiple of ``hop_length``).
    Returns a dict with ``spec_g``, ``spec_h`` (``(frames, n_fft)`` power, two-sided),
    ``smooth_g``, ``smooth_h`` (the convolved spectrograms, equal in theory), ``kernel_g``,
    ``kernel_h`` and ``residual`` = :math:`\|S_g * w_g - S_h * w_h\|_F / \|S_g * w_g\|_F` (the
    aliasing left by sampling frames every ``hop_length`` samples).

    With frames at every sample (``hop_length=1``) the identity is exact:

    >>> x = torch.randn(128, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> hann = lambda n: torch.hann_window(n, dtype=torch.float64)
    >>> r = window_equivalence(x, hann(16), hann(4), 32, 1)
    >>> r["residual"] < 1e-10, r["spec_g"].shape
    (True, torch.Size([128, 32]))
    """
    signal = torch.as_tensor(signal, dtype=torch.float64)
    spec_g = cyclic_spectrogram(signal, window_g, n_fft, hop_length)
    spec_h = cyclic_spectrogram(signal, window_h, n_fft, hop_length)
    kernel_g, kernel_h, mult_g, mult_h = window_equivalence_kernels(window_g, window_h, n_fft, hop_length, signal.numel())
    smooth_g = torch.fft.ifft2(torch.fft.fft2(spec_g) * mult_g).real
    smooth_h = torch.fft.ifft2(torch.fft.fft2(spec_h) * mult_h).real
    residual = float(torch.linalg.norm(smooth_g - smooth_h) / torch.linalg.norm(smooth_g))
    return dict(spec_g=spec_g, spec_h=spec_h, smooth_g=smooth_g, smooth_h=smooth_h, kernel_g=kernel_g,
                kernel_h=kernel_h, residual=residual)
