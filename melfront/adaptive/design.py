r"""The adaptive filterbank module and its design from a mel spectrogram (Dörfler, Bammer & Grill 2017).

M. Dörfler, R. Bammer, T. Grill, "Inside the spectrogram: convolutional neural networks in audio
processing", SampTA 2017 (arXiv:1710.03013).

**Mel = adaptive filterbank + time averaging** (their Proposition IV.5). A mel band is a
frequency-weighted sum of STFT powers, :math:`M_k(t) = \sum_j \Lambda_k[j]\,|V_g f(t, \xi_j)|^2`.
The same number is (to a documented approximation) obtained by filtering the signal with one
band-pass filter :math:`h_k` per band, taking the squared magnitude and averaging over time with
:math:`w_k`: :math:`A_k(t) = (|f * h_k|^2 * w_k)(t)`. :class:`AdaptiveFilterbank` computes
:math:`A_k`; :meth:`AdaptiveFilterbank.from_mel` designs :math:`h_k, w_k` from a
:class:`~melfront.frontends.MelSpectrogram` (derivation in its docstring). The tensor kernels are
in :mod:`melfront.adaptive.kernels`.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .. import functional as F
from ..checks import boolean, finite_float, positive_float, positive_int
from ..errors import ParameterError
from ..frontends import MelSpectrogram
from ..frontends.registry import register_frontend
from .kernels import adaptive_filterbank, averaging_kernels, band_power_responses, triangle_weights

__all__ = ["AdaptiveFilterbank", "adaptive_frontend"]


def _band_tensors(centre_hz, bandwidth_hz, skew, averaging_s, sample_rate: float):
    """The band description as float64 vectors of one length, checked."""
    centre, width, skew_t, avg = (torch.as_tensor(v, dtype=torch.float64).flatten()
                                  for v in (centre_hz, bandwidth_hz, skew, averaging_s))
    n_bands = centre.numel()
    if n_bands == 0 or not all(t.numel() == n_bands for t in (width, skew_t, avg)):
        raise ParameterError("centre_hz, bandwidth_hz, skew and averaging_s must be non-empty and of equal length")
    nyquist = float(sample_rate) / 2
    if not bool(((centre > 0) & (centre < nyquist)).all()):
        raise ParameterError(f"centre_hz must lie in (0, Nyquist={nyquist}) Hz")
    if not bool((width > 0).all()):
        raise ParameterError("bandwidth_hz must be positive")
    if not bool(((skew_t > 0) & (skew_t < 1)).all()):
        raise ParameterError("skew must lie in (0, 1)")
    if not bool((avg > 0).all()):
        raise ParameterError("averaging_s must be positive")
    return centre, width, skew_t, avg


class AdaptiveFilterbank(nn.Module):
    r"""Adaptive (mel-like) filterbank on raw audio: ``(..., time)`` -> ``(..., n_bands, frames)``.

    One zero-phase complex band-pass filter :math:`h_k` per band, with its own centre frequency and
    bandwidth (wide at high frequencies, as mel bands are), applied by FFT convolution; squared
    magnitude; time averaging with a per-band function :math:`w_k`; decimation to the frame rate of
    a :class:`~melfront.frontends.MelSpectrogram` (frame t centred on sample ``t * hop_length`` for
    ``center=True``, same frame count). The output is a *linear power* representation in the units
    of that mel spectrogram, so compressions (decibels, PCEN, ...) can follow it.

    Band k is described by a triangle :math:`\Lambda_k` on the STFT bins (centre :math:`c_k`, total
    width :math:`b_k`, skew :math:`\rho_k`, see :func:`~melfront.adaptive.triangle_weights`) and the
    STFT window g; its filter has the power response
    :math:`|\hat h_k(\nu)|^2 = \sum_j \Lambda_k[j] |\hat g(\nu - \xi_j)|^2`
    (:func:`~melfront.adaptive.band_power_responses`), and :math:`w_k` is a squared-Hann window of
    length :math:`\ell_k` (:func:`~melfront.adaptive.averaging_kernels`). Build it with
    :meth:`from_mel` (or :func:`adaptive_frontend`).

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

    >>> fb = AdaptiveFilterbank(8000, torch.hann_window(64, dtype=torch.float64), centre_hz=[500.0, 1500.0],
    ...                         bandwidth_hz=[200.0, 400.0], skew=[0.5, 0.5], averaging_s=[0.004, 0.004],
    ...                         hop_length=16)
    >>> fb(torch.randn(2, 800)).shape, fb.num_frames(800), fb.input_kind
    (torch.Size([2, 2, 51]), 51, 'waveform')
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
            raise ParameterError(f"window must be a 1-D tensor of n_fft samples, got shape {tuple(window.shape)}")
        self.sample_rate = positive_float("sample_rate", sample_rate)
        self.hop_length = positive_int("hop_length", hop_length)
        self.center = boolean("center", center)
        if pad_mode not in ("constant", "reflect"):
            raise ParameterError(f"pad_mode must be 'constant' or 'reflect', got {pad_mode!r}")
        if positive_int("oversample", oversample) < 4:
            raise ParameterError(f"oversample must be >= 4, got {oversample}")
        finite_float("rate_factor", rate_factor, 1.0)
        finite_float("margin_bins", margin_bins, 0.0)
        finite_float("max_bandwidth_factor", max_bandwidth_factor, 1.0)
        if norm not in ("slaney", None) and not isinstance(norm, (int, float)):
            raise ParameterError(f"norm must be 'slaney', None or a number, got {norm!r}")
        centre, width, skew_t, avg = _band_tensors(centre_hz, bandwidth_hz, skew, averaging_s, self.sample_rate)
        self.pad_mode, self.n_fft, self.n_bands, self.norm = pad_mode, window.numel(), centre.numel(), norm
        self.oversample, self.trainable = int(oversample), boolean("trainable", trainable)
        self._plan(window, width, avg, margin_bins, max_bandwidth_factor, max_averaging_s, rate_factor)
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("bin_hz", torch.arange(self.n_fft // 2 + 1, dtype=torch.float64)
                             * (self.sample_rate / self.n_fft), persistent=False)
        self.register_buffer("skew", skew_t)
        self.register_buffer("gain", torch.ones(self.n_bands, dtype=torch.float64) if gain is None
                             else torch.as_tensor(gain, dtype=torch.float64).flatten())
        raw = dict(centre_logit=torch.logit(centre / (self.sample_rate / 2)), log_bandwidth=torch.log(width),
                   log_averaging=torch.log(avg))
        for name, value in raw.items():
            if self.trainable:
                setattr(self, name, nn.Parameter(value.clone()))
            else:
                self.register_buffer(name, value.clone())
        self._cache = None

    def _plan(self, window, width, avg, margin_bins, max_bandwidth_factor, max_averaging_s, rate_factor):
        """Parameter limits, per-band decimations, the band groups and the zero padding."""
        bin_hz = self.sample_rate / self.n_fft
        nyquist = self.sample_rate / 2
        # limits keeping trainable parameters valid (and inside the sub-band each band is computed on)
        bw_lo = float(min(bin_hz, width.min()))
        bw_hi = torch.clamp(max_bandwidth_factor * width if self.trainable else width, max=2 * nyquist)
        win_len = int((window != 0).sum())
        avg_hi = float(max_averaging_s if max_averaging_s is not None else 2 * win_len / self.sample_rate)
        avg_hi = max(avg_hi, float(avg.max()))
        avg_lo = float(min(1.0 / self.sample_rate, avg.min()))
        self.limits = dict(bandwidth_hz=(bw_lo, float(bw_hi.max())), averaging_s=(avg_lo, avg_hi))
        self.register_buffer("bandwidth_max", bw_hi.clone(), persistent=False)
        # per-band decimation D_k: the largest power of two dividing the hop (and the frame offset) with
        # a sub-band rate sample_rate / D_k >= rate_factor x (the band's widest triangle + margins on both sides);
        # bands with the same D_k are computed together
        offset = 0 if self.center else self.n_fft // 2
        decim = []
        for k in range(self.n_bands):
            support = float(bw_hi[k]) + 2 * margin_bins * bin_hz
            d = 1
            while (self.hop_length % (2 * d) == 0 and offset % (2 * d) == 0
                   and self.sample_rate / (2 * d) >= rate_factor * support):
                d *= 2
            decim.append(d)
        self.decimation = decim
        self.groups = [([k for k in range(self.n_bands) if decim[k] == d], d,
                        int(math.ceil(avg_hi * self.sample_rate / 2 / d))) for d in sorted(set(decim))]
        d_max = max(decim)
        # zero padding on each side: filter half-length (the window length) + averaging half-length
        self.pad = int(math.ceil((self.n_fft + max(t * d for _, d, t in self.groups)) / d_max)) * d_max

    # ----------------------------------------------------------------------------- construction
    @classmethod  # over 60 lines only because its docstring holds the derivation; the code is 30 lines
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

        >>> mel = MelSpectrogram(8000, n_fft=128, hop_length=32, n_mels=8)
        >>> fb = AdaptiveFilterbank.from_mel(mel)
        >>> x = torch.randn(1000, dtype=torch.float64)
        >>> fb(x).shape == mel(x).shape == (8, 32)
        True
        >>> torch.allclose(fb.band_weights(), mel.mel_basis.double())
        True
        """
        if getattr(mel_spectrogram, "power", None) != 2.0:
            raise ParameterError("from_mel needs a power (power=2) MelSpectrogram; the adaptive filterbank yields power")
        m = mel_spectrogram
        mel_f = torch.as_tensor(F.mel_frequencies(m.n_mels + 2, m.fmin, m.fmax, m.htk), dtype=torch.float64)
        lo, centre, hi = mel_f[:-2], mel_f[1:-1], mel_f[2:]
        width = hi - lo
        skew = (centre - lo) / width
        nyquist = m.sample_rate / 2
        if not bool(((centre > 0) & (centre < nyquist)).all()):
            raise ParameterError("every mel band centre must lie strictly between 0 Hz and Nyquist (check fmin/fmax)")
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
        """Centre frequencies (Hz), ``(n_bands,)``, always in (0, Nyquist).

        >>> round(float(adaptive_frontend(8000, n_fft=128, hop_length=32, n_mels=4).centre_hz[0]), 1)
        468.9
        """
        return torch.clamp(torch.sigmoid(self.centre_logit), 1e-6, 1 - 1e-6) * (self.sample_rate / 2)

    @property
    def bandwidth_hz(self) -> torch.Tensor:
        """Total widths (lower to upper edge, Hz) of the bands' triangles, ``(n_bands,)``.

        >>> adaptive_frontend(8000, n_fft=128, hop_length=32, n_mels=4).bandwidth_hz.shape
        torch.Size([4])
        """
        return torch.minimum(torch.clamp(torch.exp(self.log_bandwidth), min=self.limits["bandwidth_hz"][0]),
                             self.bandwidth_max.to(self.log_bandwidth.dtype))

    @property
    def averaging_s(self) -> torch.Tensor:
        """Lengths (s) of the squared-Hann averaging functions w_k, ``(n_bands,)``.

        >>> bool((adaptive_frontend(8000, n_fft=128, hop_length=32, n_mels=4).averaging_s > 0).all())
        True
        """
        return torch.clamp(torch.exp(self.log_averaging), *self.limits["averaging_s"])

    def band_weights(self) -> torch.Tensor:
        r"""The bands' triangles :math:`\Lambda_k` on the STFT bins, ``(n_bands, 1 + n_fft // 2)``.

        >>> adaptive_frontend(8000, n_fft=128, hop_length=32, n_mels=4).band_weights().shape
        torch.Size([4, 65])
        """
        width = self.bandwidth_hz
        peak = 2.0 / width if self.norm == "slaney" else torch.ones_like(width)
        return triangle_weights(self.centre_hz, width, self.skew, peak * self.gain, self.bin_hz)

    def power_responses(self) -> torch.Tensor:
        r""":math:`|\hat h_k|^2` on the grid ``i / (oversample * n_fft)`` cycles/sample, ``(n_bands, oversample * n_fft)``.

        >>> adaptive_frontend(8000, n_fft=128, hop_length=32, n_mels=4).power_responses().shape
        torch.Size([4, 2048])
        """
        return band_power_responses(self.band_weights(), self.window, self.oversample)

    def learned_parameters(self) -> dict:
        """Current centre frequencies (Hz), bandwidths (Hz) and averaging widths (s), as plain lists.

        >>> sorted(adaptive_frontend(8000, n_fft=128, hop_length=32, n_mels=4).learned_parameters())
        ['averaging_s', 'bandwidth_hz', 'centre_hz']
        """
        with torch.no_grad():
            return dict(centre_hz=self.centre_hz.tolist(), bandwidth_hz=self.bandwidth_hz.tolist(),
                        averaging_s=self.averaging_s.tolist())

    def num_frames(self, n_samples: int) -> int:
        """Number of frames produced for ``n_samples`` input samples (as the MelSpectrogram's).

        >>> adaptive_frontend(8000, n_fft=128, hop_length=32, n_mels=4).num_frames(1000)
        32
        """
        return F.num_frames(n_samples, self.n_fft, self.hop_length, center=self.center)

    # ----------------------------------------------------------------------------- forward
    def _design(self, dtype):
        """(power responses, support centres, groups); cached when nothing is trainable."""
        key = (dtype, str(self.window.device))
        cached = not (self.trainable or torch.compiler.is_compiling() or torch.compiler.is_exporting())
        if cached and self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        resp = self.power_responses().to(dtype)
        support_centre = self.centre_hz + (0.5 - self.skew) * self.bandwidth_hz
        widths = self.averaging_s * self.sample_rate
        groups = []
        for bands, d, half_taps in self.groups:
            idx = torch.tensor(bands, dtype=torch.long, device=self.window.device)
            groups.append((idx, d, averaging_kernels(widths[idx], d, half_taps).to(dtype)))
        design = (resp, support_centre, groups)
        if cached:
            self._cache = (key, (resp.detach(), support_centre.detach(), [(i, d, k.detach()) for i, d, k in groups]))
        return design

    def __prepare_scriptable__(self):
        """``torch.jit.script`` refuses the module with a :class:`~melfront.errors.ParameterError` saying why.

        Its design (band responses, per-band decimation groups, a cache) and the kernel's FFT-length
        search are Python-level code that TorchScript cannot compile; deploy it with ``torch.export``
        or ONNX (fixed number of samples) or ``torch.compile`` instead.

        >>> torch.jit.script(adaptive_frontend(8000, n_fft=128, hop_length=32, n_mels=4))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        melfront.errors.ParameterError: AdaptiveFilterbank cannot be scripted ...
        """
        raise ParameterError("AdaptiveFilterbank cannot be scripted with torch.jit.script (its filter design and FFT-length "
                             "search are Python code TorchScript cannot compile); export it with torch.export or "
                             "ONNX (fixed number of samples) or run it under torch.compile")

    def _apply(self, fn, *args, **kwargs):
        self._cache = None
        return super()._apply(fn, *args, **kwargs)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Band powers of ``waveform`` ``(..., time)``: ``(..., n_bands, frames)`` (see the class docstring).

        Deployment: ``torch.compile`` (also ``fullgraph=True``) and ``torch.export`` / ONNX
        (``torch.onnx.export(..., dynamo=True)``) with a **fixed number of samples** (e.g.
        :func:`melfront.export.export_onnx` with ``time_axis=False``); exported, the FFTs run in float64
        whatever the input's dtype (onnxruntime's float32 DFT of lengths that are not powers of two is
        off by ~1e-4 relative), so the graph matches eager to ~1e-7. A dynamic number of samples is refused
        (:class:`~melfront.errors.ParameterError`): the FFT length is the smallest 2-3-5-smooth number
        above the padded signal's, a function of the length that an exported graph cannot express (a
        plain multiple of the decimation moves every band's frequency grid and changes the output by
        2e-5 to 2e-4 relative, beyond the 1e-5 an export must match).
        """
        if waveform.ndim == 0:
            raise ParameterError("waveform must have a time axis, got a scalar")
        length = waveform.shape[-1]
        if torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export():
            if not isinstance(length, int):
                raise ParameterError("AdaptiveFilterbank exports only with a fixed number of samples (its FFT length "
                                     "is the smallest 2-3-5-smooth number above the padded signal's, which an "
                                     "exported graph cannot compute from a dynamic length); export with a static "
                                     "time axis, e.g. melfront.export.export_onnx(..., time_axis=False)")
            if waveform.dtype != torch.float64:
                return self._forward(waveform.to(torch.float64)).to(waveform.dtype)
        return self._forward(waveform)

    def _forward(self, waveform: torch.Tensor) -> torch.Tensor:
        length = waveform.shape[-1]
        if not self.center and length < self.n_fft:
            raise ParameterError(f"waveform has {length} samples, fewer than n_fft={self.n_fft} (use center=True)")
        n_frames = self.num_frames(length)
        first = 0 if self.center else self.n_fft // 2
        if self.center and self.pad_mode == "reflect":
            half = self.n_fft // 2
            if length <= half:
                raise ParameterError(f"reflect padding needs more than n_fft//2={half} samples, got {length}")
            lead = waveform.shape[:-1]
            waveform = torch.nn.functional.pad(waveform.reshape(-1, 1, length), (half, half), mode="reflect")
            waveform = waveform.reshape(list(lead) + [-1])
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
    return _best_squared_hann_length(h2, target, core.numel(), 4 * n_grid) / sample_rate


def _best_squared_hann_length(h2, target, win_len: int, n_cands: int) -> torch.Tensor:
    """Length (samples) of the squared-Hann w with h2 * w closest to target, per row, ``(K,)``."""
    grid = h2.shape[-1]
    # candidate lengths, log-spaced from 0.5 sample (no averaging) to twice the window; squared error of
    # each candidate by Parseval, in the frequency domain
    logs = torch.linspace(math.log(0.5), math.log(2 * win_len), n_cands, dtype=torch.float64)
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
    return torch.exp(logs[i] + shift * step)


@register_frontend("adaptive", "waveform: adaptive (nonstationary Gabor) filterbank, Doerfler et al. 2017")
def adaptive_frontend(sample_rate: float = 22050, n_fft: int = 1024, hop_length: int = 512, n_mels: int = 128,
                      trainable: bool = False, **kw) -> AdaptiveFilterbank:
    """The :class:`AdaptiveFilterbank` designed (:meth:`AdaptiveFilterbank.from_mel`) from
    ``MelSpectrogram(sample_rate, n_fft, hop_length, n_mels=n_mels, **mel_kw)``.

    Keyword arguments that :class:`~melfront.frontends.MelSpectrogram` accepts (``fmin``, ``fmax``,
    ``window``, ``norm``, ``htk``, ``center``, ``pad_mode``, ``win_length``) go to it, the others to
    :meth:`AdaptiveFilterbank.from_mel`. Used by the frontend factory for ``"adaptive(...)"`` specs.

    >>> fb = adaptive_frontend(8000, n_fft=128, hop_length=32, n_mels=10, fmin=50.0, trainable=True)
    >>> fb.n_bands, fb.trainable, fb(torch.randn(3, 640)).shape
    (10, True, torch.Size([3, 10, 21]))
    """
    mel_keys = {"fmin", "fmax", "window", "norm", "htk", "center", "pad_mode", "win_length"}
    mel_kw = {k: v for k, v in kw.items() if k in mel_keys}
    rest = {k: v for k, v in kw.items() if k not in mel_keys}
    mel = MelSpectrogram(sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, **mel_kw)
    return AdaptiveFilterbank.from_mel(mel, trainable=trainable, **rest)
