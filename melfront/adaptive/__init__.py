"""Adaptive filterbanks and window equivalence (Dörfler, Bammer & Grill 2017, arXiv:1710.03013).

- :mod:`~melfront.adaptive.design`: :class:`AdaptiveFilterbank` (mel = adaptive filterbank + time
  averaging, Prop. IV.5), :meth:`AdaptiveFilterbank.from_mel` and :func:`adaptive_frontend`, which
  registers the ``"adaptive"`` frontend spec.
- :mod:`~melfront.adaptive.kernels`: the pure tensor kernels (band triangles, power responses,
  averaging functions, the filterbank itself).
- :mod:`~melfront.adaptive.equivalence`: window equivalence of spectrograms (Prop. IV.2 / Thm IV.4).
- :mod:`~melfront.adaptive.signals`: generated demo signals.

The figures are in :mod:`melfront.plotting.adaptive`.

>>> import torch, melfront.adaptive as A
>>> A.adaptive_frontend(8000, n_fft=128, hop_length=32, n_mels=8)(torch.randn(640)).shape
torch.Size([8, 21])
"""
from .design import AdaptiveFilterbank, adaptive_frontend
from .equivalence import ambiguity_multiplier, cyclic_spectrogram, window_equivalence, window_equivalence_kernels
from .kernels import adaptive_filterbank, averaging_kernels, band_power_responses, strided_average, triangle_weights
from .signals import damped_notes, demo_clip

__all__ = ["AdaptiveFilterbank", "adaptive_frontend", "triangle_weights", "band_power_responses", "averaging_kernels",
           "strided_average", "adaptive_filterbank", "cyclic_spectrogram", "ambiguity_multiplier",
           "window_equivalence_kernels", "window_equivalence", "damped_notes", "demo_clip"]
