r"""Pure tensor kernels of the adaptive filterbank (Dörfler, Bammer & Grill 2017).

M. Dörfler, R. Bammer, T. Grill, "Inside the spectrogram: convolutional neural networks in audio
processing", SampTA 2017 (arXiv:1710.03013), Proposition IV.5: a mel band equals (to a documented
approximation) one band-pass filter :math:`h_k` per band, squared magnitude, and time averaging with
:math:`w_k`, :math:`A_k(t) = (|f * h_k|^2 * w_k)(t)`. The functions here build the pieces from a
band description (:func:`triangle_weights`, :func:`band_power_responses`, :func:`averaging_kernels`)
and apply them (:func:`adaptive_filterbank`); :class:`melfront.adaptive.AdaptiveFilterbank` is the
module around them.
"""
from __future__ import annotations

import math

import torch

from ..errors import ParameterError

__all__ = ["triangle_weights", "band_power_responses", "averaging_kernels", "strided_average", "adaptive_filterbank"]


def triangle_weights(centre_hz: torch.Tensor, bandwidth_hz: torch.Tensor, skew: torch.Tensor, peak: torch.Tensor,
                     bin_hz: torch.Tensor) -> torch.Tensor:
    r"""Triangular band weights :math:`\Lambda_k[j]` on the FFT bin frequencies, shape ``(n_bands, n_bins)``.

    Band k rises linearly from :math:`l_k = c_k - \rho_k b_k` to its peak at the centre :math:`c_k`
    and falls to :math:`u_k = c_k + (1 - \rho_k) b_k` (``centre_hz`` :math:`c_k`, total width
    ``bandwidth_hz`` :math:`b_k`, ``skew`` :math:`\rho_k \in (0, 1)`, all in Hz but the skew), with
    peak value ``peak`` :math:`p_k`. With :math:`c, b, \rho` taken from the mel scale this is exactly
    the rows of :func:`melfront.functional.mel_filterbank`. Differentiable in ``centre_hz``,
    ``bandwidth_hz`` and ``peak``.

    >>> w = triangle_weights(torch.tensor([200.0]), torch.tensor([200.0]), torch.tensor([0.5]),
    ...                      torch.tensor([1.0]), torch.arange(0.0, 400.0, 50.0))
    >>> w
    tensor([[0.0000, 0.0000, 0.0000, 0.5000, 1.0000, 0.5000, 0.0000, 0.0000]])
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

    A single weight on bin 2 gives the window's power spectrum centred there (peak
    :math:`(\sum g)^2` at :math:`\nu = 2/N`, i.e. fine index 2R):

    >>> g = torch.hann_window(16, periodic=True, dtype=torch.float64)
    >>> weights = torch.zeros(1, 9, dtype=torch.float64); weights[0, 2] = 1.0
    >>> r = band_power_responses(weights, g, oversample=4)
    >>> r.shape, int(r.argmax()), round(float(r.max()), 6)
    (torch.Size([1, 64]), 8, 64.0)
    """
    n_bands, n_bins = weights.shape
    n = window.shape[-1]
    if n_bins != n // 2 + 1:
        raise ParameterError(f"weights have {n_bins} bins, expected 1 + n_fft//2 = {n // 2 + 1} for a window of {n}")
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

    >>> k = averaging_kernels(torch.tensor([8.0, 1.0], dtype=torch.float64), step=2, half_taps=2)
    >>> k.shape, [round(float(s), 6) for s in k.sum(-1)], float(k[1, 2])
    (torch.Size([2, 5]), [1.0, 1.0], 1.0)
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


def strided_average(x: torch.Tensor, kernels: torch.Tensor, stride: int, n_out: int) -> torch.Tensor:
    """Per-channel strided correlation ``out[b, k, t] = sum_i kernels[k, i] x[b, k, t * stride + i]``, t < n_out.

    ``x`` ``(batch, channels, time)``, ``kernels`` ``(channels, taps)``; the same as
    ``conv1d(x, kernels[:, None], stride=stride, groups=channels)[..., :n_out]``. float64 on the CPU,
    where conv1d has no fast grouped path, is computed blockwise with matrix products.

    >>> x = torch.arange(10, dtype=torch.float64).reshape(1, 1, 10)
    >>> strided_average(x, torch.tensor([[0.5, 0.5]], dtype=torch.float64), stride=3, n_out=3)
    tensor([[[0.5000, 3.5000, 6.5000]]], dtype=torch.float64)
    """
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


def _check_groups(waveform, groups, hop_length, first_centre, pad):
    if waveform.ndim == 0:
        raise ParameterError("waveform must have a time axis, got a scalar")
    if not waveform.is_floating_point():
        raise ParameterError(f"waveform must be a floating-point tensor, got {waveform.dtype}")
    d_max = max(int(d) for _, d, _ in groups)
    for _, d, kernels in groups:
        if hop_length % d or pad % d or first_centre % d or d_max % d:
            raise ParameterError(f"decimation {d} must be a power of two dividing hop_length={hop_length}, "
                                 f"pad={pad} and first_centre={first_centre}")
        if pad // d < (kernels.shape[-1] - 1) // 2:
            raise ParameterError(f"pad={pad} is shorter than the averaging kernels")
    return d_max


# Over 60 lines only through its docstring (shapes, maths); the body is about 35 lines.
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

    One all-pass band (:math:`|H|^2 = 1`) without averaging returns the signal's power at each frame:

    >>> x = torch.sin(torch.arange(64, dtype=torch.float64))
    >>> groups = [(torch.tensor([0]), 1, torch.ones(1, 1, dtype=torch.float64))]
    >>> out = adaptive_filterbank(x, torch.ones(1, 32, dtype=torch.float64), torch.tensor([0.0]), groups,
    ...                           sample_rate=8000, hop_length=16, n_frames=4, first_centre=0, pad=8)
    >>> out.shape, torch.allclose(out[0], x[::16] ** 2)
    (torch.Size([1, 4]), True)
    """
    d_max = _check_groups(waveform, groups, hop_length, first_centre, pad)
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
        # real and imaginary parts as a last axis of 2 and an index (not a complex unfold): the same numbers,
        # in ops the ONNX exporter has for complex data
        ext = torch.view_as_real(torch.cat([spec[:, -n_sub:], spec, spec[:, :n_sub]], dim=1))    # (B, L + 2M, 2)
        idx = (torch.remainder(first, n_fft) + n_sub)[:, None] + torch.arange(n_sub, device=first.device)[None, :]
        sub = ext[:, idx] * amp.to(ext.dtype)[..., None]                                  # (B, k, M, 2)
        sub = torch.view_as_complex(sub.contiguous())
        y = torch.fft.ifft(sub, dim=-1)
        power = y.real.square() + y.imag.square()                                        # |y|^2 every d samples
        half_taps = (kernels.shape[-1] - 1) // 2
        start = (pad + first_centre) // d - half_taps
        outs.append(strided_average(power[..., start:], kernels.to(power.dtype), hop_length // d, n_frames))
        order.append(bands)
    out = torch.cat(outs, dim=1)
    order = torch.cat(order)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    out = out[:, inverse.to(out.device)]
    return out.reshape(list(lead) + [out.shape[1], n_frames])
