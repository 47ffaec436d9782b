r"""Adaptive filterbank frontend and window-equivalence kernels (Dörfler, Bammer & Grill 2017).

M. Dörfler, R. Bammer, T. Grill, "Inside the spectrogram: convolutional neural networks in audio
processing", SampTA 2017 (arXiv:1710.03013). Two facts from that paper are made concrete here.

1. **Mel = adaptive filterbank + time averaging** (their Proposition IV.5). A mel band is a
   frequency-weighted sum of STFT powers, :math:`M_k(t) = \sum_j \Lambda_k[j]\,|V_g f(t, \xi_j)|^2`.
   The same number is (to a documented approximation) obtained by filtering the signal with one
   band-pass filter :math:`h_k` per band, taking the squared magnitude and averaging over time with
   :math:`w_k`: :math:`A_k(t) = (|f * h_k|^2 * w_k)(t)`. :class:`AdaptiveFilterbank` computes
   :math:`A_k`; :meth:`AdaptiveFilterbank.from_mel` designs :math:`h_k, w_k` from a
   :class:`~melfront.frontends.MelSpectrogram` (derivation in its docstring).

2. **Window equivalence** (their Proposition IV.2 / Theorem IV.4). Spectrograms with two windows
   g and h become equal after two-dimensional convolution with kernels :math:`w_g, w_h` when
   :math:`\mathcal F_s(w_g)\,\mathcal A_g = \mathcal F_s(w_h)\,\mathcal A_h` (:math:`\mathcal A` the
   ambiguity function :math:`V_g g`, :math:`\mathcal F_s` the symplectic Fourier transform). See
   :func:`window_equivalence_kernels` and :func:`window_equivalence`.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import functional as F

__all__ = [
    "triangle_weights", "band_power_responses", "averaging_kernels", "adaptive_filterbank",
    "AdaptiveFilterbank", "adaptive_frontend",
    "cyclic_spectrogram", "ambiguity_multiplier", "window_equivalence_kernels", "window_equivalence",
    "damped_notes", "demo_clip", "plot_window_equivalence", "plot_mel_vs_adaptive",
]


# --------------------------------------------------------------------------------------------
# Pure functions: the adaptive filterbank
# --------------------------------------------------------------------------------------------
def triangle_weights(centre_hz: torch.Tensor, bandwidth_hz: torch.Tensor, skew: torch.Tensor, peak: torch.Tensor,
                     bin_hz: torch.Tensor) -> torch.Tensor:
    r"""Triangular band weights :math:`\Lambda_k[j]` on the FFT bin frequencies, shape ``(n_bands, n_bins)``.

    Band k rises linearly from :math:`l_k = c_k - \rho_k b_k` to its peak at the centre :math:`c_k`
    and falls to :math:`u_k = c_k + (1 - \rho_k) b_k` (``centre_hz`` :math:`c_k`, total width
    ``bandwidth_hz`` :math:`b_k`, ``skew`` :math:`\rho_k \in (0, 1)`, all in Hz but the skew), with
    peak value ``peak`` :math:`p_k`. With :math:`c, b, \rho` taken from the mel scale this is exactly
    the rows of :func:`melfront.functional.mel_filterbank`. Differentiable in ``centre_hz``,
    ``bandwidth_hz`` and ``peak``.
    """
    lo_width = (skew * bandwidth_hz)[:, None]
    hi_width = ((1 - skew) * bandwidth_hz)[:, None]
    d = bin_hz[None, :] - centre_hz[:, None]
    rise = 1 + d / lo_width
    fall = 1 - d / hi_width
    return peak[:, None] * torch.clamp(torch.minimum(rise, fall), min=0)


def _window_power_spectrum(window: torch.Tensor, oversample: int) -> torch.Tensor:
    """|ĝ(i / (R N))|^2 for i = 0 .. R N - 1 (the DTFT of the length-N window, R-times oversampled)."""
    n = window.shape[-1]
    spec = torch.fft.fft(window, n=oversample * n)
    return spec.real ** 2 + spec.imag ** 2


def band_power_responses(weights: torch.Tensor, window: torch.Tensor, oversample: int = 16) -> torch.Tensor:
    r"""Power responses :math:`|H_k(\nu)|^2 = \sum_j \Lambda_k[j]\, |\hat g(\nu - j/N)|^2` on a fine grid.

    ``weights`` ``(n_bands, 1 + N//2)`` are the band weights :math:`\Lambda_k` on the N-point FFT bins,
    ``window`` the STFT window g (length N = n_fft). Returns ``(n_bands, R N)`` samples at
    :math:`\nu_i = i / (R N)` cycles per sample, i = 0 .. RN-1 (negative frequencies wrap), with
    R = ``oversample``. :math:`\hat g(\nu) = \sum_m g[m] e^{-2\pi i \nu m}`, unnormalised, so that
    a complex exponential of frequency :math:`\nu` has STFT power :math:`|\hat g(\xi_j - \nu)|^2` in
    bin j and mel power :math:`|H_k(\nu)|^2` in band k. Computed as a circular convolution on the
    fine grid of the comb :math:`\sum_j \Lambda_k[j]\delta_{jR}` with :math:`|\hat g|^2`.
    """
    n_bands, n_bins = weights.shape
    n = window.shape[-1]
    if n_bins != n // 2 + 1:
        raise ValueError(f"weights have {n_bins} bins, expected 1 + n_fft//2 = {n // 2 + 1} for a window of {n}")
    length = oversample * n
    comb = torch.nn.functional.pad(weights, (0, n - n_bins))  # (K, N): bins above Nyquist carry no weight
    comb = torch.nn.functional.pad(comb.unsqueeze(-1), (0, oversample - 1)).reshape(n_bands, length)
    power = _window_power_spectrum(window.to(weights.dtype), oversample)
    # circular convolution of two real sequences of length R N
    out = torch.fft.irfft(torch.fft.rfft(comb) * torch.fft.rfft(power), n=length)
    return torch.clamp(out, min=0)


def averaging_kernels(widths_samples: torch.Tensor, step: int, half_taps: int) -> torch.Tensor:
    r"""Time-averaging functions :math:`w_k`, sampled every ``step`` samples: ``(n_bands, 2 half_taps + 1)``.

    :math:`w_k(\tau) \propto \cos^4(\pi \tau / \ell_k)` for :math:`|\tau| < \ell_k / 2` (a squared
    Hann window of total length :math:`\ell_k` = ``widths_samples``), normalised to unit sum.
    Widths below two steps give a single centre tap (no averaging).
    """
    taps = torch.arange(-half_taps, half_taps + 1, dtype=widths_samples.dtype, device=widths_samples.device) * step
    x = taps[None, :] / widths_samples[:, None]
    w = torch.where(x.abs() < 0.5, torch.cos(math.pi * x) ** 4, torch.zeros_like(x))
    centre = torch.zeros_like(w)
    centre[:, half_taps] = 1.0
    w = w + 1e-12 * centre  # guarantees a positive sum (a single tap) for widths below one step
    return w / w.sum(dim=-1, keepdim=True)


def _fast_length(n: int) -> int:
    """Smallest integer >= n whose prime factors are 2, 3 and 5 (quick FFTs)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < 2 * n:
        p35 = p5
        while p35 < 2 * n:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _band_amplitudes(power_response: torch.Tensor, first_bin: torch.Tensor, n_sub: int, n_fft: int) -> torch.Tensor:
    """sqrt(|H_k|^2) on the fine bins first_bin[k] + 0 .. n_sub-1 of an n_fft-point FFT, linearly interpolated."""
    grid = power_response.shape[-1]
    fine = first_bin[:, None] + torch.arange(n_sub, device=first_bin.device)[None, :]
    pos = torch.remainder(fine.to(torch.float64) * (grid / n_fft), grid)
    lo = pos.floor().long()
    frac = (pos - lo).to(power_response.dtype)
    lo = torch.remainder(lo, grid)
    hi = torch.remainder(lo + 1, grid)
    resp = torch.gather(power_response, 1, lo) * (1 - frac) + torch.gather(power_response, 1, hi) * frac
    return torch.sqrt(torch.clamp(resp, min=torch.finfo(resp.dtype).tiny))


def _strided_average(x: torch.Tensor, kernels: torch.Tensor, stride: int, n_out: int) -> torch.Tensor:
    """``out[b, k, t] = sum_i kernels[k, i] x[b, k, t * stride + i]`` for t < n_out (a per-channel strided
    correlation, as ``conv1d(..., groups=K)``). float64 on the CPU, where conv1d has no fast grouped
    path, is computed blockwise with matrix products."""
    if not (x.dtype == torch.float64 and x.device.type == "cpu"):
        return torch.nn.functional.conv1d(x, kernels.unsqueeze(1), stride=stride, groups=x.shape[1])[..., :n_out]
    n_batch, n_chan, length = x.shape
    taps = kernels.shape[-1]
    n_blocks = -(-taps // stride)
    kern = torch.nn.functional.pad(kernels, (0, n_blocks * stride - taps)).reshape(n_chan, n_blocks, stride)
    need = (n_out + n_blocks - 1) * stride
    x = x[..., :need] if length >= need else torch.nn.functional.pad(x, (0, need - length))
    blocks = x.reshape(n_batch, n_chan, n_out + n_blocks - 1, stride)
    partial = torch.einsum("bkfr,kjr->bkfj", blocks, kern)          # block f against kernel segment j
    out = partial[:, :, :n_out, 0]
    for j in range(1, n_blocks):
        out = out + partial[:, :, j:j + n_out, j]
    return out


def adaptive_filterbank(waveform: torch.Tensor, power_response: torch.Tensor, support_centre_hz: torch.Tensor,
                        groups, sample_rate: float, hop_length: int, n_frames: int, first_centre: int,
                        pad: int) -> torch.Tensor:
    r"""Band powers ``(..., time)`` -> ``(..., n_bands, n_frames)`` of a filterbank given by its responses.

    For each band k: :math:`y_k = f * h_k` with :math:`\hat h_k = \sqrt{|H_k|^2}` (zero phase, so
    :math:`|y_k|^2` is not delayed), computed by one FFT of the zero-padded signal and, per band, an
    inverse FFT of only the ``sample_rate / D`` Hz around ``support_centre_hz[k]`` (a band-limited,
    decimated analytic signal, as in a non-stationary Gabor filterbank); then :math:`|y_k|^2`
    (every D samples) is averaged with the band's kernel and read every ``hop_length`` samples,
    frame t at sample ``first_centre + t * hop_length`` of the input.

    ``power_response`` ``(n_bands, R N)`` is :math:`|H_k|^2` on the grid ``i / (R N)`` cycles/sample
    (see :func:`band_power_responses`). ``groups`` is a list of ``(bands, D, kernels)``: the band
    indices (a LongTensor) computed with decimation D (a power of two dividing ``hop_length``,
    ``first_centre`` and ``pad``), and their averaging kernels ``(len(bands), 2 T + 1)`` with taps
    every D samples. ``pad`` zeros are added on both sides (more than the filters' and kernels'
    half-lengths).
    """
    if waveform.ndim == 0:
        raise ValueError("waveform must have a time axis, got a scalar")
    if not waveform.is_floating_point():
        raise TypeError(f"waveform must be a floating-point tensor, got {waveform.dtype}")
    d_max = max(int(d) for _, d, _ in groups)
    for _, d, kernels in groups:
        if hop_length % d or pad % d or first_centre % d or d_max % d:
            raise ValueError(f"decimation {d} must be a power of two dividing hop_length={hop_length}, "
                             f"pad={pad} and first_centre={first_centre}")
        if pad // d < (kernels.shape[-1] - 1) // 2:
            raise ValueError(f"pad={pad} is shorter than the averaging kernels")
    lead, length = waveform.shape[:-1], waveform.shape[-1]
    x = waveform.reshape(-1, length)
    needed = max(pad + first_centre + (n_frames - 1) * hop_length + (k.shape[-1] // 2 + 1) * d for _, d, k in groups)
    needed = max(needed, length) + pad
    n_fft = _fast_length(-(-needed // d_max)) * d_max
    spec = torch.fft.fft(torch.nn.functional.pad(x, (pad, n_fft - length - pad)))   # (B, L)
    outs, order = [], []
    for bands, d, kernels in groups:
        d = int(d)
        n_sub = n_fft // d
        # the n_sub fine bins around each band, contiguous (circularly): an ifft of a window that starts
        # n_sub/2 bins below the centre gives (-1)^n y_k(nD), the same power
        first = torch.round(support_centre_hz[bands].detach().to(torch.float64) / sample_rate * n_fft).long() - n_sub // 2
        amp = _band_amplitudes(power_response[bands], first, n_sub, n_fft) * (1.0 / d)
        ext = torch.cat([spec[:, -n_sub:], spec, spec[:, :n_sub]], dim=1)
        sub = ext.unfold(1, n_sub, 1)[:, torch.remainder(first, n_fft) + n_sub]        # (B, k, M)
        sub = torch.view_as_complex(torch.view_as_real(sub) * amp.to(spec.real.dtype)[..., None])
        y = torch.fft.ifft(sub, dim=-1)
        power = y.real.square() + y.imag.square()                                        # |y|^2 every d samples
        half_taps = (kernels.shape[-1] - 1) // 2
        start = (pad + first_centre) // d - half_taps
        outs.append(_strided_average(power[..., start:], kernels.to(power.dtype), hop_length // d, n_frames))
        order.append(bands)
    out = torch.cat(outs, dim=1)
    order = torch.cat(order)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    out = out[:, inverse.to(out.device)]
    return out.reshape(*lead, out.shape[1], n_frames)


# --------------------------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------------------------
class AdaptiveFilterbank(nn.Module):
    r"""Adaptive (mel-like) filterbank on raw audio: ``(..., time)`` -> ``(..., n_bands, frames)``.

    One zero-phase complex band-pass filter :math:`h_k` per band, with its own centre frequency and
    bandwidth (wide at high frequencies, as mel bands are), applied by FFT convolution; squared
    magnitude; time averaging with a per-band function :math:`w_k`; decimation to the frame rate of
    a :class:`~melfront.frontends.MelSpectrogram` (frame t centred on sample ``t * hop_length`` for
    ``center=True``, same frame count). The output is a *linear power* representation in the units
    of that mel spectrogram, so compressions (decibels, PCEN, ...) can follow it.

    Band k is described by a triangle :math:`\Lambda_k` on the STFT bins (centre :math:`c_k`, total
    width :math:`b_k`, skew :math:`\rho_k`, see :func:`triangle_weights`) and the STFT window g; its
    filter has the power response :math:`|\hat h_k(\nu)|^2 = \sum_j \Lambda_k[j] |\hat g(\nu - \xi_j)|^2`
    (:func:`band_power_responses`), and :math:`w_k` is a squared-Hann window of length :math:`\ell_k`
    (:func:`averaging_kernels`). Build it with :meth:`from_mel` (or :func:`adaptive_frontend`).

    With ``trainable=True`` the centre frequencies, bandwidths and averaging widths are
    ``nn.Parameter`` s, kept valid by their parametrisation: :math:`c_k = f_N\,\sigma(\theta_k)`
    stays in (0, Nyquist :math:`f_N`) (clamped :math:`10^{-6} f_N` away from either end; the logit
    acts like a log-frequency), :math:`b_k = \exp(\beta_k)` and :math:`\ell_k = \exp(\lambda_k)` are
    clamped to ``[min, max]`` ranges fixed at construction (:attr:`limits`). The triangle's skew
    and the normalisation rule (area kept for ``norm="slaney"``) are fixed.

    Constructor arguments beyond the band description: ``window`` (the STFT window g, ``n_fft``
    samples), ``hop_length``, ``center``, ``pad_mode`` (as the mel spectrogram's), ``norm`` ("slaney":
    peak :math:`2 / b_k`, else 1, times ``gain``), ``oversample`` (R, the grid :math:`|\hat h_k|^2`
    is computed on, default 16), ``margin_bins`` (STFT bins kept beyond each triangle, default 4),
    ``rate_factor`` (sub-band rate over the band's support, default 1.2), ``max_bandwidth_factor``
    (trainable bandwidths may grow to this multiple of their initial value, default 1.5) and
    ``max_averaging_s`` (longest averaging function, default twice the window length).

    Attributes: ``input_kind = "waveform"``, ``out_channels = 1``, ``n_bands``, ``sample_rate``,
    ``hop_length``, ``limits``, ``decimation`` (per band, D_k: the band's analytic signal is
    computed at ``sample_rate / D_k`` Hz; a power of two dividing ``hop_length``).

    Cost: one FFT of the (padded) signal, then per band an inverse FFT of ``time / D_k`` points
    and a strided average; about 5x a MelSpectrogram forward on the CPU (see BENCHMARKS.md).
    """

    input_kind = "waveform"
    out_channels = 1

    def __init__(self, sample_rate: float, window: torch.Tensor, centre_hz, bandwidth_hz, skew, averaging_s,
                 hop_length: int, center: bool = True, pad_mode: str = "constant", norm="slaney", gain=None,
                 trainable: bool = False, oversample: int = 16, margin_bins: float = 4.0,
                 max_bandwidth_factor: float = 1.5, max_averaging_s: float | None = None, rate_factor: float = 1.2):
        super().__init__()
        window = torch.as_tensor(window, dtype=torch.float64)
        if window.ndim != 1 or window.numel() < 2:
            raise ValueError(f"window must be a 1-D tensor of n_fft samples, got shape {tuple(window.shape)}")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if hop_length <= 0:
            raise ValueError(f"hop_length must be positive, got {hop_length}")
        if pad_mode not in ("constant", "reflect"):
            raise ValueError(f"pad_mode must be 'constant' or 'reflect', got {pad_mode!r}")
        if oversample < 4:
            raise ValueError(f"oversample must be >= 4, got {oversample}")
        if rate_factor < 1 or margin_bins < 0 or max_bandwidth_factor < 1:
            raise ValueError(f"need rate_factor >= 1, margin_bins >= 0 and max_bandwidth_factor >= 1, got "
                             f"{rate_factor}, {margin_bins}, {max_bandwidth_factor}")
        centre = torch.as_tensor(centre_hz, dtype=torch.float64).flatten()
        width = torch.as_tensor(bandwidth_hz, dtype=torch.float64).flatten()
        skew_t = torch.as_tensor(skew, dtype=torch.float64).flatten()
        avg = torch.as_tensor(averaging_s, dtype=torch.float64).flatten()
        n_bands = centre.numel()
        if n_bands == 0 or not all(t.numel() == n_bands for t in (width, skew_t, avg)):
            raise ValueError("centre_hz, bandwidth_hz, skew and averaging_s must be non-empty and of equal length")
        nyquist = float(sample_rate) / 2
        if not bool(((centre > 0) & (centre < nyquist)).all()):
            raise ValueError(f"centre_hz must lie in (0, Nyquist={nyquist}) Hz")
        if not bool((width > 0).all()):
            raise ValueError("bandwidth_hz must be positive")
        if not bool(((skew_t > 0) & (skew_t < 1)).all()):
            raise ValueError("skew must lie in (0, 1)")
        if not bool((avg > 0).all()):
            raise ValueError("averaging_s must be positive")
        if norm not in ("slaney", None) and not isinstance(norm, (int, float)):
            raise ValueError(f"norm must be 'slaney', None or a number, got {norm!r}")
        self.sample_rate, self.hop_length, self.center, self.pad_mode = float(sample_rate), int(hop_length), center, pad_mode
        self.n_fft, self.n_bands, self.norm, self.oversample = window.numel(), n_bands, norm, int(oversample)
        self.trainable = bool(trainable)
        bin_hz = self.sample_rate / self.n_fft
        # limits keeping trainable parameters valid (and inside the sub-band each band is computed on)
        bw_lo = float(min(bin_hz, width.min()))
        bw_hi = torch.clamp(max_bandwidth_factor * width if trainable else width, max=2 * nyquist)
        win_len = int((window != 0).sum())
        avg_hi = float(max_averaging_s if max_averaging_s is not None else 2 * win_len / self.sample_rate)
        avg_hi = max(avg_hi, float(avg.max()))
        avg_lo = float(min(1.0 / self.sample_rate, avg.min()))
        self.limits = dict(bandwidth_hz=(bw_lo, float(bw_hi.max())), averaging_s=(avg_lo, avg_hi))
        self.register_buffer("bandwidth_max", bw_hi.clone(), persistent=False)
        # per-band decimation D_k: the largest power of two dividing the hop (and the frame offset) with
        # a sub-band rate sample_rate / D_k >= rate_factor x (the band's widest triangle + margins on both sides);
        # bands with the same D_k are computed together
        offset = 0 if center else self.n_fft // 2
        decim = []
        for k in range(n_bands):
            support = float(bw_hi[k]) + 2 * margin_bins * bin_hz
            d = 1
            while (self.hop_length % (2 * d) == 0 and offset % (2 * d) == 0
                   and self.sample_rate / (2 * d) >= rate_factor * support):
                d *= 2
            decim.append(d)
        self.decimation = decim
        self.groups = [([k for k in range(n_bands) if decim[k] == d], d, int(math.ceil(avg_hi * self.sample_rate / 2 / d)))
                       for d in sorted(set(decim))]
        d_max = max(decim)
        # zero padding on each side: filter half-length (the window length) + averaging half-length
        self.pad = int(math.ceil((self.n_fft + max(t * d for _, d, t in self.groups)) / d_max)) * d_max
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("bin_hz", torch.arange(self.n_fft // 2 + 1, dtype=torch.float64) * bin_hz, persistent=False)
        self.register_buffer("skew", skew_t)
        self.register_buffer("gain", torch.ones(n_bands, dtype=torch.float64) if gain is None
                             else torch.as_tensor(gain, dtype=torch.float64).flatten())
        raw = dict(centre_logit=torch.logit(centre / nyquist), log_bandwidth=torch.log(width),
                   log_averaging=torch.log(avg))
        for name, value in raw.items():
            if trainable:
                setattr(self, name, nn.Parameter(value.clone()))
            else:
                self.register_buffer(name, value.clone())
        self._cache = None

    # ----------------------------------------------------------------------------- construction
    @classmethod
    def from_mel(cls, mel_spectrogram, trainable: bool = False, **kwargs) -> "AdaptiveFilterbank":
        r"""Design the filterbank that reproduces ``mel_spectrogram`` (Dörfler et al. 2017, Prop. IV.5).

        **What is exact.** For the STFT :math:`V_g f(t, \xi) = \sum_m f[m] g[m - t] e^{-2\pi i \xi m}` a
        mel band is the quadratic form

        .. math:: M_k(t) = \sum_j \Lambda_k[j] |V_g f(t, \xi_j)|^2 = \sum_{m, m'} f[m] f[m']\,
                  g[m-t] g[m'-t]\, q_k(m - m'), \qquad q_k(d) = \sum_j \Lambda_k[j] \cos(2\pi \xi_j d).

        The adaptive output :math:`A_k(t) = \sum_\tau w_k(\tau) |(f * h_k)(t + \tau)|^2` is the quadratic
        form with kernel :math:`\sum_\tau w_k(\tau) \mathrm{Re}[h_k(t+\tau-m)\overline{h_k(t+\tau-m')}]`.
        Both kernels are functions of the mean time and the lag :math:`d = m - m'`; Fourier transforming
        in the mean time gives the paper's condition
        :math:`\mathcal A_{h_k}(d, \eta)\, \hat w_k(\eta) = \mathcal A_g(d, \eta)\, q_k(d)`
        (ambiguity functions; Prop. IV.5 writes it with :math:`\mathcal F^{-1}\Lambda_k = q_k`).
        The design meets the condition exactly on two slices:

        - :math:`\eta = 0` (stationary signals, steady tones): the lag profile
          :math:`\sum_\tau w_k\,(h_k \star h_k)(d) = (g \star g)(d)\, q_k(d)` holds exactly when
          :math:`|\hat h_k(\nu)|^2 = \sum_j \Lambda_k[j]\,|\hat g(\nu - \xi_j)|^2` and
          :math:`\sum_\tau w_k(\tau) = 1`. We take :math:`\hat h_k` the non-negative square root of that
          (zero phase), computed on a 16x oversampled grid and interpolated linearly; a steady tone of
          any frequency, or white noise on average, gives the mel value in every band.
        - :math:`d = 0` (clicks, onsets): :math:`|h_k|^2 * w_k = (\sum_j \Lambda_k[j])\, g^2` is only
          approximated: :math:`w_k` is a squared-Hann window whose length :math:`\ell_k` is fitted by
          least squares on that identity (a deconvolution of :math:`g^2` by :math:`|h_k|^2`, which has no
          exact non-negative solution for a Hann g). Wide (high) bands have short filters and
          :math:`w_k \approx g^2 / \sum g^2` (:math:`\ell_k \approx` the window length); the narrow low
          bands have filters nearly as long as g and shorter averaging (:math:`\ell_k \approx 0.67`
          window lengths at 22050 Hz, n_fft 1024, 128 mels). For Gaussian windows and Gaussian band
          weights the two slices determine everything and the equality is exact (the paper's case:
          :math:`h_k` Gaussian with the band's width, :math:`w_k` Gaussian with variance
          :math:`\sigma_g^2 - \sigma_{h_k}^2` in :math:`|\cdot|^2`).

        Off these slices (amplitude/frequency modulation at rates comparable to the band width) the
        two differ; an exact equality would need, per band, the eigen-decomposition of the N x N
        kernel :math:`g[m] g[m'] q_k(m - m')`, i.e. a rank-many bank of filters per band (about the
        band's time-bandwidth product), not one filter. Further approximations: each band's analytic
        signal is computed on ``sample_rate / decimation`` Hz around the band (the response beyond,
        the far side-lobes of :math:`\hat g`, is dropped), and ``pad_mode="reflect"`` is imitated by
        reflecting ``n_fft // 2`` samples at each end.

        ``mel_spectrogram`` must have ``power=2``. ``trainable=True`` makes centre frequencies,
        bandwidths and averaging widths learnable, initialised at this design. Other keyword
        arguments go to the constructor (``oversample``, ``margin_bins``, ``rate_factor``,
        ``max_bandwidth_factor``, ``max_averaging_s``).
        """
        if getattr(mel_spectrogram, "power", None) != 2.0:
            raise ValueError("from_mel needs a power (power=2) MelSpectrogram; the adaptive filterbank yields power")
        m = mel_spectrogram
        mel_f = torch.as_tensor(F.mel_frequencies(m.n_mels + 2, m.fmin, m.fmax, m.htk), dtype=torch.float64)
        lo, centre, hi = mel_f[:-2], mel_f[1:-1], mel_f[2:]
        width = hi - lo
        skew = (centre - lo) / width
        nyquist = m.sample_rate / 2
        if not bool(((centre > 0) & (centre < nyquist)).all()):
            raise ValueError("every mel band centre must lie strictly between 0 Hz and Nyquist (check fmin/fmax)")
        window = m.window.detach().to(torch.float64).cpu()
        gain = None
        if m.norm not in ("slaney", None):
            bins = torch.arange(m.n_fft // 2 + 1, dtype=torch.float64) * (m.sample_rate / m.n_fft)
            raw = triangle_weights(centre, width, skew, torch.ones_like(centre), bins)
            basis = m.mel_basis.detach().to(torch.float64).cpu()
            gain = basis.amax(1) / raw.amax(1).clamp(min=1e-300)
        # averaging widths by least squares on the click identity |h_k|^2 * w_k = sum(Lambda_k) g^2
        key = (float(m.sample_rate), int(m.n_fft), int(m.n_mels), float(m.fmin), float(m.fmax), bool(m.htk), repr(m.norm),
               window.numpy().tobytes(), int(kwargs.get("oversample", 16)))
        avg = _FIT_CACHE.get(key)
        if avg is None:
            avg = _fit_averaging_widths(centre, width, skew, m.norm, gain, window, m.sample_rate, key[-1])
            if len(_FIT_CACHE) >= 32:
                _FIT_CACHE.pop(next(iter(_FIT_CACHE)))
            _FIT_CACHE[key] = avg
        avg = avg.clone()
        return cls(m.sample_rate, window, centre, width, skew, avg, m.hop_length, center=m.center, pad_mode=m.pad_mode,
                   norm=m.norm, gain=gain, trainable=trainable, **kwargs)

    # ----------------------------------------------------------------------------- parameters
    @property
    def centre_hz(self) -> torch.Tensor:
        """Centre frequencies (Hz), ``(n_bands,)``, always in (0, Nyquist)."""
        return torch.clamp(torch.sigmoid(self.centre_logit), 1e-6, 1 - 1e-6) * (self.sample_rate / 2)

    @property
    def bandwidth_hz(self) -> torch.Tensor:
        """Total widths (lower to upper edge, Hz) of the bands' triangles, ``(n_bands,)``."""
        return torch.minimum(torch.clamp(torch.exp(self.log_bandwidth), min=self.limits["bandwidth_hz"][0]),
                             self.bandwidth_max.to(self.log_bandwidth.dtype))

    @property
    def averaging_s(self) -> torch.Tensor:
        """Lengths (s) of the squared-Hann averaging functions w_k, ``(n_bands,)``."""
        return torch.clamp(torch.exp(self.log_averaging), *self.limits["averaging_s"])

    def band_weights(self) -> torch.Tensor:
        r"""The bands' triangles :math:`\Lambda_k` on the STFT bins, ``(n_bands, 1 + n_fft // 2)``."""
        width = self.bandwidth_hz
        peak = 2.0 / width if self.norm == "slaney" else torch.ones_like(width)
        return triangle_weights(self.centre_hz, width, self.skew, peak * self.gain, self.bin_hz)

    def power_responses(self) -> torch.Tensor:
        r""":math:`|\hat h_k|^2` on the grid ``i / (oversample * n_fft)`` cycles/sample, ``(n_bands, oversample * n_fft)``."""
        return band_power_responses(self.band_weights(), self.window, self.oversample)

    def learned_parameters(self) -> dict:
        """Current centre frequencies (Hz), bandwidths (Hz) and averaging widths (s), as plain lists."""
        with torch.no_grad():
            return dict(centre_hz=self.centre_hz.tolist(), bandwidth_hz=self.bandwidth_hz.tolist(),
                        averaging_s=self.averaging_s.tolist())

    def num_frames(self, n_samples: int) -> int:
        """Number of frames produced for ``n_samples`` input samples (as the MelSpectrogram's)."""
        padded = n_samples + 2 * (self.n_fft // 2) if self.center else n_samples
        return 1 + (padded - self.n_fft) // self.hop_length

    # ----------------------------------------------------------------------------- forward
    def _design(self, dtype):
        """(power responses, support centres, groups); cached when nothing is trainable."""
        key = (dtype, str(self.window.device))
        if not self.trainable and self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        resp = self.power_responses().to(dtype)
        support_centre = self.centre_hz + (0.5 - self.skew) * self.bandwidth_hz
        widths = self.averaging_s * self.sample_rate
        groups = []
        for bands, d, half_taps in self.groups:
            idx = torch.tensor(bands, dtype=torch.long, device=self.window.device)
            groups.append((idx, d, averaging_kernels(widths[idx], d, half_taps).to(dtype)))
        design = (resp, support_centre, groups)
        if not self.trainable:
            self._cache = (key, (resp.detach(), support_centre.detach(), [(i, d, k.detach()) for i, d, k in groups]))
        return design

    def _apply(self, fn, *args, **kwargs):
        self._cache = None
        return super()._apply(fn, *args, **kwargs)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.ndim == 0:
            raise ValueError("waveform must have a time axis, got a scalar")
        length = waveform.shape[-1]
        if not self.center and length < self.n_fft:
            raise ValueError(f"waveform has {length} samples, fewer than n_fft={self.n_fft} (use center=True)")
        n_frames = self.num_frames(length)
        first = 0 if self.center else self.n_fft // 2
        if self.center and self.pad_mode == "reflect":
            half = self.n_fft // 2
            if length <= half:
                raise ValueError(f"reflect padding needs more than n_fft//2={half} samples, got {length}")
            lead = waveform.shape[:-1]
            waveform = torch.nn.functional.pad(waveform.reshape(-1, 1, length), (half, half), mode="reflect").reshape(*lead, -1)
            first = half
        resp, support_centre, groups = self._design(waveform.dtype)
        return adaptive_filterbank(waveform, resp, support_centre, groups, self.sample_rate, self.hop_length,
                                   n_frames, first, self.pad)

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, n_bands={self.n_bands}, n_fft={self.n_fft}, hop_length={self.hop_length}, "
                f"center={self.center}, decimations={sorted(set(self.decimation))}, trainable={self.trainable}")


_FIT_CACHE: dict = {}   # fitted averaging widths per mel configuration (the fit takes ~0.5 s at 128 mels)


def _fit_averaging_widths(centre, width, skew, norm, gain, window, sample_rate, oversample=16, n_grid=48):
    r"""Least-squares lengths :math:`\ell_k` (s) of squared-Hann :math:`w_k` with :math:`|h_k|^2 * w_k \approx S_k g^2`."""
    n = window.numel()
    bins = torch.arange(n // 2 + 1, dtype=torch.float64) * (sample_rate / n)
    peak = 2.0 / width if norm == "slaney" else torch.ones_like(width)
    if gain is not None:
        peak = peak * gain
    weights = triangle_weights(centre, width, skew, peak, bins)
    resp = band_power_responses(weights, window, oversample)               # (K, RN)
    h = torch.fft.ifft(torch.sqrt(resp).to(torch.complex128))             # zero-phase filters, centred at 0
    h2 = torch.fft.fftshift(h.real ** 2 + h.imag ** 2, dim=-1)            # (K, RN), centre at RN/2
    # crop to 3 N samples around the centre (|h_k|^2 and g^2 live inside), zero-padded to 6 N for
    # linear (not circular) convolution with the candidate kernels
    half = min(n + n // 2, h2.shape[-1] // 2)
    h2 = h2[:, h2.shape[-1] // 2 - half: h2.shape[-1] // 2 + half]
    grid = 4 * half
    h2 = torch.nn.functional.pad(h2, (half, half))
    g = torch.zeros(grid, dtype=torch.float64)
    nz = torch.nonzero(window).flatten()
    core = window[nz[0]:nz[-1] + 1]
    start = grid // 2 - (n // 2 - int(nz[0]))
    g[start:start + core.numel()] = core ** 2
    target = weights.sum(1, keepdim=True) * g[None, :]                    # (K, grid)
    # candidate lengths, log-spaced from 0.5 sample (no averaging) to twice the window; squared error of
    # each candidate by Parseval, in the frequency domain
    n_cands = 4 * n_grid
    logs = torch.linspace(math.log(0.5), math.log(2 * core.numel()), n_cands, dtype=torch.float64)
    taps = torch.arange(grid, dtype=torch.float64) - grid // 2
    x = taps[None, :] / logs.exp()[:, None]
    w = torch.where(x.abs() < 0.5, torch.cos(math.pi * x) ** 4, torch.zeros_like(x))
    w[:, grid // 2] += 1e-12
    w = w / w.sum(-1, keepdim=True)
    w_hat = torch.fft.rfft(torch.fft.ifftshift(w, dim=-1)).real           # (C, F), real: w is even
    h2_hat = torch.fft.rfft(h2)                                            # (K, F)
    t_hat = torch.fft.rfft(target)
    # |a w - t|^2 = |a|^2 w^2 - 2 Re(a conj(t)) w + |t|^2, summed over frequency: two matrix products
    err = (h2_hat.abs() ** 2) @ (w_hat ** 2).T - 2 * (h2_hat * t_hat.conj()).real @ w_hat.T
    i = torch.argmin(err, dim=1).clamp(1, n_cands - 2)
    # parabolic refinement in log-length around the best candidate
    e0, e1, e2 = (err.gather(1, (i + o)[:, None]).squeeze(1) for o in (-1, 0, 1))
    denom = e0 - 2 * e1 + e2
    shift = torch.where(denom > 0, 0.5 * (e0 - e2) / denom.clamp(min=1e-300), torch.zeros_like(denom)).clamp(-1, 1)
    step = logs[1] - logs[0]
    best = torch.exp(logs[i] + shift * step)
    return best / sample_rate


def adaptive_frontend(sample_rate: float = 22050, n_fft: int = 1024, hop_length: int = 512, n_mels: int = 128,
                      trainable: bool = False, **kw) -> AdaptiveFilterbank:
    """The :class:`AdaptiveFilterbank` designed (:meth:`AdaptiveFilterbank.from_mel`) from
    ``MelSpectrogram(sample_rate, n_fft, hop_length, n_mels=n_mels, **mel_kw)``.

    Keyword arguments that :class:`~melfront.frontends.MelSpectrogram` accepts (``fmin``, ``fmax``,
    ``window``, ``norm``, ``htk``, ``center``, ``pad_mode``, ``win_length``) go to it, the others to
    :meth:`AdaptiveFilterbank.from_mel`. Used by the frontend factory for ``"adaptive(...)"`` specs.
    """
    from .frontends import MelSpectrogram
    mel_keys = {"fmin", "fmax", "window", "norm", "htk", "center", "pad_mode", "win_length"}
    mel_kw = {k: v for k, v in kw.items() if k in mel_keys}
    rest = {k: v for k, v in kw.items() if k not in mel_keys}
    mel = MelSpectrogram(sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, **mel_kw)
    return AdaptiveFilterbank.from_mel(mel, trainable=trainable, **rest)


# --------------------------------------------------------------------------------------------
# Window equivalence (Proposition IV.2 / Theorem IV.4)
# --------------------------------------------------------------------------------------------
def damped_notes(sample_rate: float = 22050, duration: float = 1.5, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """A test signal of damped harmonic notes (piano-like: sharp onsets, exponential decays), ``(time,)``.

    Eight notes at random times, pitches 110-880 Hz, 1-6 harmonics with 1/h amplitudes and decay
    times 0.08-0.4 s, plus a short click; peak-normalised to 0.9. Deterministic for a given ``seed``.
    """
    if sample_rate <= 0 or duration <= 0:
        raise ValueError(f"sample_rate and duration must be positive, got {sample_rate}, {duration}")
    rng = np.random.default_rng(seed)
    n = int(round(duration * sample_rate))
    t = np.arange(n) / sample_rate
    x = np.zeros(n)
    for _ in range(8):
        onset = rng.uniform(0.02, 0.8) * duration
        f0 = 110.0 * 2 ** rng.uniform(0, 3)
        tau = rng.uniform(0.08, 0.4)
        env = np.where(t >= onset, np.exp(-(t - onset) / tau), 0.0)
        for h in range(1, rng.integers(1, 7) + 1):
            if h * f0 < sample_rate / 2.2:
                x += env * np.sin(2 * np.pi * h * f0 * (t - onset) + rng.uniform(0, 2 * np.pi)) / h
    click = int(0.5 * n)
    x[click:click + 3] += np.array([1.0, -0.6, 0.3])
    x *= 0.9 / np.abs(x).max()
    return torch.tensor(x, dtype=dtype)


def demo_clip(sample_rate: float = 22050, duration: float = 3.0, seed: int = 1) -> torch.Tensor:
    """A generated clip with something in every band (``(time,)``, float32): damped notes, a
    logarithmic chirp 100 Hz -> 0.45 ``sample_rate``, two bursts of coloured noise and a few clicks."""
    rng = np.random.default_rng(seed)
    n = int(round(duration * sample_rate))
    t = np.arange(n) / sample_rate
    x = 0.5 * damped_notes(sample_rate, duration, seed=seed).numpy()
    f0, f1 = 100.0, 0.45 * sample_rate
    k = np.log(f1 / f0) / duration
    x += 0.15 * np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k) * np.hanning(n)
    noise = np.cumsum(rng.standard_normal(n)) * 0.002 + rng.standard_normal(n) * 0.05
    for start, stop in ((0.35, 0.6), (0.7, 0.8)):
        env = ((t >= start * duration) & (t < stop * duration)).astype(float)
        x += noise * np.convolve(env, np.hanning(401) / np.hanning(401).sum(), mode="same")
    for c in rng.uniform(0.05, 0.95, 4):
        x[int(c * n)] += 0.8
    return torch.tensor(0.9 * x / np.abs(x).max(), dtype=torch.float32)


def _centred_window(window, n_fft: int, dtype=torch.float64) -> torch.Tensor:
    w = torch.as_tensor(window, dtype=dtype).flatten()
    if w.numel() > n_fft:
        raise ValueError(f"window has {w.numel()} samples, more than n_fft={n_fft}")
    left = (n_fft - w.numel()) // 2
    return torch.nn.functional.pad(w, (left, n_fft - w.numel() - left))


def cyclic_spectrogram(signal: torch.Tensor, window, n_fft: int, hop_length: int) -> torch.Tensor:
    """Two-sided power spectrogram of a *periodic* signal, ``(time,)`` -> ``(frames, n_fft)``.

    ``frames = time / hop_length`` (``time`` must be a multiple of ``hop_length``); frame n is
    centred on sample ``n * hop_length`` with the signal wrapped around at both ends, the window
    (at most ``n_fft`` samples) centred in the frame. All ``n_fft`` frequency bins are kept, so that
    two-dimensional circular convolutions on the time-frequency lattice are exact.
    """
    signal = torch.as_tensor(signal)
    if signal.ndim != 1:
        raise ValueError(f"signal must be 1-D, got shape {tuple(signal.shape)}")
    length = signal.numel()
    if hop_length <= 0 or length % hop_length:
        raise ValueError(f"the signal length ({length}) must be a positive multiple of hop_length ({hop_length})")
    if n_fft > length:
        raise ValueError(f"n_fft={n_fft} is longer than the signal ({length} samples)")
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
    """
    win = _centred_window(window, n_fft)
    if n_samples % hop_length:
        raise ValueError(f"n_samples ({n_samples}) must be a multiple of hop_length ({hop_length})")
    n_frames = n_samples // hop_length
    nz = torch.nonzero(win).flatten()
    support = int(nz[-1] - nz[0]) + 1 if nz.numel() else 0
    max_lag = support - 1 if max_lag is None else min(int(max_lag), support - 1)
    if 2 * max_lag >= n_fft:
        raise ValueError(f"n_fft={n_fft} must exceed twice the lags used ({max_lag}); zero-pad the windows more")
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
    """
    len_g = int(torch.count_nonzero(_centred_window(window_g, n_fft)))
    len_h = int(torch.count_nonzero(_centred_window(window_h, n_fft)))
    if n_fft < len_g + len_h:
        raise ValueError(f"n_fft={n_fft} must be at least the sum of the window lengths ({len_g} + {len_h}) "
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


# --------------------------------------------------------------------------------------------
# Figures for `melfront equivalence`
# --------------------------------------------------------------------------------------------
def _db(x: torch.Tensor, top_db: float = 80.0) -> np.ndarray:
    x = torch.as_tensor(x, dtype=torch.float64)
    db = 10 * torch.log10(torch.clamp(x, min=float(x.max()) * 1e-12 + 1e-300))
    return torch.clamp(db - db.max(), min=-top_db).numpy()


def plot_window_equivalence(output, sample_rate: float = 22050, long_window: int = 2048, short_window: int = 512,
                            hop_length: int = 32, duration: float = 1.5, pool=(8, 8), max_hz: float = 6000.0,
                            seed: int = 0) -> dict:
    """Reproduce Figure 1 of Dörfler, Bammer & Grill (2017) on :func:`damped_notes`; write a PNG.

    Panels: the Hann-window spectrograms with ``long_window`` (g) and ``short_window`` (h) samples,
    each convolved with its kernel from :func:`window_equivalence_kernels` and max-pooled by
    ``pool`` = (frames, bins), side by side, and their difference. Returns the residuals
    (before and after pooling) and the path.
    """
    from .plotting import _pyplot
    plt = _pyplot()
    n_fft = 2 * max(long_window, short_window)
    x = damped_notes(sample_rate, duration, seed=seed)
    x = x[: (x.numel() // hop_length) * hop_length]
    g = F.get_window("hann", long_window, dtype=torch.float64)
    h = F.get_window("hann", short_window, dtype=torch.float64)
    res = window_equivalence(x, g, h, n_fft, hop_length)
    n_bins = int(max_hz / sample_rate * n_fft)
    pool_t, pool_f = pool

    def pooled(s):
        s = s[:, :n_bins].T[None, None]                                    # (1, 1, bins, frames)
        return torch.nn.functional.max_pool2d(s, (pool_f, pool_t))[0, 0]

    pg, ph = pooled(res["smooth_g"]), pooled(res["smooth_h"])
    pooled_residual = float(torch.linalg.norm(pg - ph) / torch.linalg.norm(pg))
    dur = x.numel() / sample_rate
    ext = (0, dur, 0, n_bins * sample_rate / n_fft)
    fig, axes = plt.subplots(3, 2, figsize=(12, 10))
    panels = [
        (axes[0, 0], _db(res["spec_g"][:, :n_bins].T), f"spectrogram, Hann window g = {long_window} samples"),
        (axes[0, 1], _db(res["spec_h"][:, :n_bins].T), f"spectrogram, Hann window h = {short_window} samples"),
        (axes[1, 0], _db(pg), f"|V_g f|^2 * w_g, max-pooled {pool_t}x{pool_f}"),
        (axes[1, 1], _db(ph), f"|V_h f|^2 * w_h, max-pooled {pool_t}x{pool_f}"),
    ]
    for ax, img, title in panels:
        im = ax.imshow(img, origin="lower", aspect="auto", cmap="magma", extent=ext, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("frequency (Hz)")
        fig.colorbar(im, ax=ax, pad=0.01).set_label("dB re max", fontsize=8)
    diff = ((pg - ph) / pg.max()).numpy()
    lim = float(np.abs(diff).max()) or 1.0
    scale = 10.0 ** math.floor(math.log10(lim))
    im = axes[2, 0].imshow(diff / scale, origin="lower", aspect="auto", cmap="RdBu_r", vmin=-lim / scale,
                           vmax=lim / scale, extent=ext, interpolation="nearest")
    axes[2, 0].set_title(f"(pooled g - pooled h) / max, largest {lim:.1e}; relative L2 residual {pooled_residual:.1e}",
                         fontsize=9)
    axes[2, 0].set_ylabel("frequency (Hz)")
    fig.colorbar(im, ax=axes[2, 0], pad=0.01).set_label(f"x {scale:.0e}", fontsize=8)
    # the two kernels, as (time, frequency) slices through their centres
    kg = torch.fft.fftshift(res["kernel_g"])
    kh = torch.fft.fftshift(res["kernel_h"])
    c_t, c_f = kg.shape[0] // 2, kg.shape[1] // 2
    ax = axes[2, 1]
    t_ms = (np.arange(kg.shape[0]) - c_t) * hop_length / sample_rate * 1e3
    ax.plot(t_ms, (kg[:, c_f] / kg[:, c_f].max()).numpy(), label="w_g along time (at 0 Hz)")
    ax.plot(t_ms, (kh[:, c_f] / kh[:, c_f].max()).numpy(), label="w_h along time (at 0 Hz)")
    ax.set_xlim(-1.2 * long_window / sample_rate * 1e3, 1.2 * long_window / sample_rate * 1e3)
    ax.set_xlabel("time lag (ms)")
    ax2 = ax.twiny()
    f_hz = (np.arange(kg.shape[1]) - c_f) * sample_rate / n_fft
    ax2.plot(f_hz, (kg[c_t] / kg[c_t].max()).numpy(), "--", color="C2", label="w_g along frequency")
    ax2.plot(f_hz, (kh[c_t] / kh[c_t].max()).numpy(), "--", color="C3", label="w_h along frequency")
    ax2.set_xlim(-6 * sample_rate / short_window, 6 * sample_rate / short_window)
    ax2.set_xlabel("frequency offset (Hz)", fontsize=8)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="upper right")
    ax.set_title("kernels through their centres (normalised)", fontsize=9, pad=22)
    for a in axes[:2].flat:
        a.set_xlabel("time (s)")
    axes[2, 0].set_xlabel("time (s)")
    fig.suptitle(f"Window equivalence (Dörfler, Bammer & Grill 2017, Prop. IV.2 / Thm IV.4) on damped notes: "
                 f"relative residual {res['residual']:.1e} (lattice), {pooled_residual:.1e} (pooled)", fontsize=10)
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return dict(path=output, residual=res["residual"], pooled_residual=pooled_residual, max_difference=lim)


def plot_mel_vs_adaptive(output, waveform: torch.Tensor, sample_rate: float, n_fft: int = 1024, hop_length: int = 512,
                         n_mels: int = 128, title: str = "") -> dict:
    """Mel spectrogram vs :meth:`AdaptiveFilterbank.from_mel` on one clip: both in dB, their dB
    difference and the median relative error per band; write a PNG. Returns the figures of merit
    (median relative error and dB correlation over the bins within 60 dB of the maximum)."""
    from .frontends import MelSpectrogram
    from .plotting import _pyplot
    plt = _pyplot()
    mel = MelSpectrogram(sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels)
    ada = AdaptiveFilterbank.from_mel(mel)
    with torch.no_grad():
        m = mel(waveform.to(torch.float64))
        a = ada(waveform.to(torch.float64))
    mask = m >= m.max() * 1e-6
    rel = (a - m).abs() / m.clamp(min=1e-300)
    median_rel = float(rel[mask].median())
    corr = float(np.corrcoef(10 * np.log10(m[mask].numpy()), 10 * np.log10(a[mask].clamp(min=1e-300).numpy()))[0, 1])
    dur = waveform.shape[-1] / sample_rate
    ext = (0, dur, -0.5, n_mels - 0.5)
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5))
    ref = float(m.max())
    for ax, x, name in ((axes[0, 0], m, "MelSpectrogram"), (axes[0, 1], a, "AdaptiveFilterbank.from_mel")):
        db = torch.clamp(10 * torch.log10(torch.clamp(x, min=1e-30) / ref), min=-80).numpy()
        im = ax.imshow(db, origin="lower", aspect="auto", cmap="magma", extent=ext, vmin=-80, vmax=0, interpolation="nearest")
        ax.set_title(f"{name} (dB re mel max)", fontsize=9)
        ax.set_ylabel("mel band")
        ax.set_xlabel("time (s)")
        fig.colorbar(im, ax=ax, pad=0.01)
    ddb = (10 * torch.log10(a.clamp(min=1e-30) / m.clamp(min=1e-30))).numpy()
    ddb[~mask.numpy()] = np.nan
    im = axes[1, 0].imshow(ddb, origin="lower", aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, extent=ext,
                           interpolation="nearest")
    axes[1, 0].set_title("adaptive / mel in dB (bins within 60 dB of the max; +-1 dB = +26%/-21%)", fontsize=9)
    axes[1, 0].set_ylabel("mel band")
    axes[1, 0].set_xlabel("time (s)")
    fig.colorbar(im, ax=axes[1, 0], pad=0.01).set_label("dB", fontsize=8)
    band_med = [float(rel[k][mask[k]].median()) if bool(mask[k].any()) else np.nan for k in range(n_mels)]
    centres = mel.mel_center_frequencies()
    ax = axes[1, 1]
    ax.semilogx(centres, np.array(band_med) * 100, ".-", lw=0.8)
    ax.axhline(5, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("band centre (Hz)")
    ax.set_ylabel("median relative error (%)")
    ax.set_title("median relative error per band (dashed: the 5% target)", fontsize=9)
    ax.grid(alpha=0.3)
    fig.suptitle(f"{title}  mel vs adaptive filterbank: median relative error {median_rel:.2%}, dB correlation {corr:.4f}",
                 fontsize=10)
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return dict(path=output, median_relative_error=median_rel, db_correlation=corr)
