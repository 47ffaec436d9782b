"""STFT and mel spectrogram modules: waveform ``(..., time)`` -> ``(..., bins, frames)``.

>>> import torch
>>> from melfront.frontends import MelSpectrogram
>>> mel = MelSpectrogram(16000, n_fft=512, hop_length=160, n_mels=40)
>>> mel(torch.zeros(2, 16000)).shape, mel.num_frames(16000)
(torch.Size([2, 40, 101]), 101)
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from .. import functional as F
from ..checks import boolean, finite_float, one_of, optional, positive_float, positive_int
from ..errors import ParameterError
from .base import FixedSettings

__all__ = ["Spectrogram", "MelSpectrogram"]


class Spectrogram(FixedSettings, nn.Module):
    """STFT magnitude (``power=1``) or power (``power=2``): ``(..., time)`` -> ``(..., 1 + n_fft//2, frames)``.

    Arguments as :func:`melfront.functional.spectrogram` (librosa's names and defaults).

    >>> spec = Spectrogram(n_fft=256, hop_length=64)
    >>> spec(torch.randn(3, 1000)).shape
    torch.Size([3, 129, 16])
    """

    input_kind = "waveform"

    def __init__(self, n_fft: int = 2048, hop_length: int | None = None, win_length: int | None = None,
                 window="hann", center: bool = True, pad_mode: str = "constant", power: float | None = 2.0):
        super().__init__()
        self.hop_length, self.win_length = F.check_stft_args(n_fft, hop_length, win_length)
        one_of("pad_mode", pad_mode, ("constant", "reflect"))
        optional(positive_float, "power", power)  # stored as given, like n_fft: config() keys caches
        self.n_fft, self.center, self.pad_mode, self.power = n_fft, boolean("center", center), pad_mode, power
        self._power = None if power is None else float(power)  # typed for TorchScript (power=2 is an int)
        self.window_name = window if isinstance(window, str) else "custom"
        # Buffers are kept in float64 and cast to the input's dtype at use, so that float64 input
        # gets a float64 window and filterbank (exact to ~1e-12 of librosa) and float32 input loses nothing.
        self.register_buffer("window", F.get_window(window, self.win_length, n_fft, dtype=torch.float64), persistent=False)
        if type(self) is Spectrogram:
            self._fix_settings(**self._stft_settings())

    def _stft_settings(self) -> dict:
        return dict(n_fft=self.n_fft, hop_length=self.hop_length, win_length=self.win_length, window=self.window_name,
                    center=self.center, pad_mode=self.pad_mode, power=self.power)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self._stft(waveform)

    def _stft(self, waveform: torch.Tensor) -> torch.Tensor:
        """The STFT: :func:`melfront.functional.spectrogram` (checked) in eager mode, its unchecked body
        :func:`~melfront.functional.spectrogram_plain` under TorchScript, export, compile and tracing
        (:func:`~melfront.functional.plain_mode`: checks there would fix the number of samples)."""
        if not torch.jit.is_scripting():  # TorchScript skips this block
            if not F.plain_mode():
                return F.spectrogram(waveform, self.n_fft, self.hop_length, self.win_length, None, self.center,
                                     self.pad_mode, self.power, window_tensor=self.window.to(waveform.dtype))
        return F.spectrogram_plain(waveform, self.n_fft, self.hop_length, self.window, self.center, self.pad_mode,
                                   self._power)

    def num_frames(self, n_samples: int) -> int:
        """Number of frames produced for ``n_samples`` input samples (:func:`melfront.functional.num_frames`).

        >>> Spectrogram(n_fft=1024, hop_length=512).num_frames(22050)
        44
        """
        return F.num_frames(n_samples, self.n_fft, self.hop_length, self.center)

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

    >>> mel = MelSpectrogram(22050, n_fft=1024, hop_length=512, n_mels=64)
    >>> mel(torch.zeros(22050)).shape, mel.frame_rate, mel.config()["fmax"]
    (torch.Size([64, 44]), 43.06640625, 11025.0)
    """

    __jit_unused_properties__ = ["centre_hz"]  # numpy: TorchScript leaves it out

    def __init__(self, sample_rate: float = 22050, n_fft: int = 2048, hop_length: int | None = None,
                 win_length: int | None = None, window="hann", center: bool = True, pad_mode: str = "constant",
                 power: float = 2.0, n_mels: int = 128, fmin: float = 0.0, fmax: float | None = None,
                 htk: bool = False, norm="slaney"):
        if power is None:
            raise ParameterError("MelSpectrogram needs a real power (1 or 2), not None")
        # checked here, stored as given (config() keys caches: 22050 stays 22050, not 22050.0)
        positive_float("sample_rate", sample_rate)
        finite_float("fmin", fmin, 0.0)
        n_mels, htk, fmax = positive_int("n_mels", n_mels), boolean("htk", htk), optional(finite_float, "fmax", fmax)
        super().__init__(n_fft, hop_length, win_length, window, center, pad_mode, power)
        self.sample_rate, self.n_mels, self.fmin, self.htk, self.norm = sample_rate, n_mels, fmin, htk, norm
        self.fmax = float(sample_rate) / 2 if fmax is None else fmax
        self.register_buffer("mel_basis", F.mel_filterbank(sample_rate, n_fft, n_mels, fmin, self.fmax, htk, norm,
                                                           dtype=torch.float64),
                             persistent=False)
        self._fix_settings(**self.config())

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        spec = self._stft(waveform)
        return torch.matmul(self.mel_basis.to(spec.dtype), spec)

    @property
    def frame_rate(self) -> float:
        """Frames per second."""
        return self.sample_rate / self.hop_length

    def config(self) -> dict:
        """The parameters as a JSON-able dict (for caches and checkpoints).

        >>> MelSpectrogram(16000, n_fft=512, n_mels=40).config()["hop_length"]
        128
        """
        return dict(sample_rate=self.sample_rate, n_fft=self.n_fft, hop_length=self.hop_length,
                    win_length=self.win_length, window=self.window_name, center=self.center, pad_mode=self.pad_mode,
                    power=self.power, n_mels=self.n_mels, fmin=self.fmin, fmax=self.fmax, htk=self.htk, norm=self.norm)

    @property
    def centre_hz(self) -> np.ndarray:
        """Centre frequency (Hz) of each mel band, float64 ``(n_mels,)`` (the name AdaptiveFilterbank uses too).

        >>> MelSpectrogram(16000, n_fft=512, n_mels=40).centre_hz.shape
        (40,)
        """
        return F.mel_frequencies(self.n_mels + 2, self.fmin, self.fmax, self.htk)[1:-1]

    def mel_center_frequencies(self) -> np.ndarray:
        """Deprecated name of :attr:`centre_hz` (a ``DeprecationWarning``; same values).

        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     MelSpectrogram(16000, n_fft=512, n_mels=40).mel_center_frequencies().shape
        (40,)
        """
        warnings.warn("MelSpectrogram.mel_center_frequencies() is deprecated: use the property centre_hz",
                      DeprecationWarning, stacklevel=2)
        return self.centre_hz

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, " + super().extra_repr()
                + f", n_mels={self.n_mels}, fmin={self.fmin}, fmax={self.fmax}, htk={self.htk}, norm={self.norm!r}")
