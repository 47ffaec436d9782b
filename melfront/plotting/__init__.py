"""Every figure melfront draws, with matplotlib (Agg backend, imported on first use).

- :mod:`~melfront.plotting.specshow`: :func:`pyplot`, :func:`specshow` (a ``(n_bins, frames)``
  spectrogram with time in seconds and frequency in Hz), :func:`mel_ticks`, :func:`power_to_db_display`.
- :mod:`~melfront.plotting.show`: :func:`show_clips` (``melfront show``, the report's example panels).
- :mod:`~melfront.plotting.adaptive`: :func:`plot_window_equivalence`, :func:`plot_mel_vs_adaptive`
  (``melfront equivalence``).
- :mod:`~melfront.plotting.mst`: :func:`plot_target_vs_prediction`, :func:`plot_filters`, :func:`plot_study`
  (``melfront learn-mel`` and ``melfront mst-study``, Tax et al. 2017).
- :mod:`~melfront.plotting.study`: :func:`plot_accuracy_vs_n`, :func:`plot_learned_parameters`
  (the few-data study report, ``melfront report``).

>>> import melfront.plotting as P
>>> callable(P.specshow) and callable(P.show_clips)
True
"""
from .specshow import mel_ticks, power_to_db_display, pyplot, specshow
from .show import frontend_panel, show_clips
from .adaptive import plot_mel_vs_adaptive, plot_window_equivalence
from .mst import plot_filters, plot_study, plot_target_vs_prediction
from .study import plot_accuracy_vs_n, plot_learned_parameters

__all__ = ["pyplot", "specshow", "mel_ticks", "power_to_db_display", "show_clips", "frontend_panel",
           "plot_window_equivalence", "plot_mel_vs_adaptive",
           "plot_target_vs_prediction", "plot_filters", "plot_study",
           "plot_accuracy_vs_n", "plot_learned_parameters"]
