"""Frontends: thin ``torch.nn.Module`` wrappers over :mod:`melfront.functional`, and the spec-string factory.

A frontend maps audio or a linear mel spectrogram to what a classifier reads. Each module
declares what it consumes in ``input_kind``: ``"waveform"`` ``(..., time)`` or ``"mel"``
(a linear power mel spectrogram ``(..., n_mels, frames)``).

- :mod:`.registry`: :data:`FRONTENDS`, :func:`register_frontend` and :func:`frontend` (spec strings)
- :mod:`.base`: the :class:`Frontend` base class
- :mod:`.spectrogram`: :class:`Spectrogram`, :class:`MelSpectrogram` (waveform -> spectrogram)
- :mod:`.compression`: :class:`Decibel`, :class:`LogOffset`, :class:`LogEPS`, :class:`Log10000`,
  :class:`LogLearn`, :class:`LogFloor`, :class:`PowerLearn`, :class:`MinMax`
- :mod:`.pcen`: :class:`PCEN`; :mod:`.combine`: :class:`Stack`, :class:`Chain`
- :mod:`.streaming`: :class:`StreamingPCEN`, :class:`StreamingMelSpectrogram` (chunks with explicit state)

Importing this package registers the frontends defined here; ``adaptive`` (:mod:`melfront.adaptive`)
and ``mst`` (:mod:`melfront.mst`) register themselves when those packages are imported, which
:data:`FRONTENDS` does the first time it is listed or misses a name (``registry.PROVIDERS``).

>>> import torch
>>> from melfront.frontends import MelSpectrogram, frontend
>>> mel = MelSpectrogram(22050, n_fft=1024, hop_length=512, n_mels=16)
>>> frontend("stack(db, pcen)", n_mels=16)(mel(torch.randn(2, 22050))).shape
torch.Size([2, 2, 16, 44])
"""
from .registry import FRONTENDS, FrontendEntry, frontend, register_frontend
from .base import Frontend
from .spectrogram import MelSpectrogram, Spectrogram
from .compression import Decibel, Log10000, LogEPS, LogFloor, LogLearn, LogOffset, MinMax, PowerLearn
from .pcen import PCEN
from .combine import Chain, Stack
from .streaming import StreamingMelSpectrogram, StreamingPCEN

__all__ = ["Spectrogram", "MelSpectrogram", "Frontend", "LogOffset", "LogEPS", "Log10000", "LogLearn", "Decibel",
           "LogFloor", "PowerLearn", "PCEN", "MinMax", "Stack", "Chain", "frontend", "FRONTENDS",
           "FrontendEntry", "register_frontend", "StreamingPCEN", "StreamingMelSpectrogram"]
