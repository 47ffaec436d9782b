"""Drawing spectrograms: :func:`specshow` (time in seconds, frequency in Hz) and the matplotlib entry point.

Matplotlib is imported on first use (:func:`pyplot`), always with the non-interactive Agg backend, so
figures can be written on machines without a display.
"""
from __future__ import annotations

import numpy as np
import torch

from ..checks import finite_float, one_of, optional, positive_float, positive_int
from ..errors import ParameterError
from ..functional import mel_frequencies, power_to_db

__all__ = ["pyplot", "power_to_db_display", "mel_ticks", "specshow"]


def pyplot():
    """``matplotlib.pyplot`` with the non-interactive Agg backend (imported on first call).

    >>> plt = pyplot()
    >>> plt.get_backend().lower()
    'agg'
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def power_to_db_display(mel: torch.Tensor, top_db: float = 80.0) -> np.ndarray:
    """dB relative to the clip's maximum, floored ``top_db`` below it (for display), as a numpy array.

    >>> power_to_db_display(torch.tensor([[1.0, 0.1], [1e-12, 0.01]])).tolist()
    [[0.0, -10.0], [-80.0, -20.0]]
    """
    return power_to_db(mel, ref="max", top_db=top_db).numpy()


def _hz_label(f: float) -> str:
    return f"{f:.0f}" if f < 1000 else f"{f / 1000:.1f}k"


def mel_ticks(ax, mel, n_ticks: int = 6) -> None:
    """Label a band-index y axis with the bands' centre frequencies in Hz (``n_ticks`` ticks).

    ``mel`` is a :class:`~melfront.frontends.MelSpectrogram` (its ``centre_hz``) or
    the centre frequencies (Hz) of the bands themselves, one per row of the image.

    >>> fig, ax = pyplot().subplots()
    >>> mel_ticks(ax, [100.0, 400.0, 1500.0, 5000.0], n_ticks=4)
    >>> [t.get_text() for t in ax.get_yticklabels()], ax.get_ylabel()
    (['100', '400', '1.5k', '5.0k'], 'frequency (Hz)')
    >>> pyplot().close(fig)
    """
    centres = np.asarray(mel.centre_hz if hasattr(mel, "centre_hz") else mel, dtype=float)
    idx = np.unique(np.linspace(0, len(centres) - 1, positive_int("n_ticks", n_ticks)).round().astype(int))
    ax.set_yticks(idx)
    ax.set_yticklabels([_hz_label(centres[i]) for i in idx])
    ax.set_ylabel("frequency (Hz)")


def _as_image(S) -> np.ndarray:
    data = S.detach().cpu().numpy() if isinstance(S, torch.Tensor) else np.asarray(S)
    if data.ndim != 2:
        raise ParameterError(f"S must be a 2-D (n_bins, frames) array or tensor, got shape {tuple(data.shape)}")
    if data.shape[0] < 1 or data.shape[1] < 1:
        raise ParameterError(f"S must have at least one bin and one frame, got shape {tuple(data.shape)}")
    return data


def specshow(S, *, sample_rate: float = 22050, hop_length: int = 512, y_axis: str | None = "mel",
             x_axis: str | None = "time", fmin: float = 0.0, fmax: float | None = None, htk: bool = False,
             ax=None, cmap: str = "magma", **imshow_kwargs):
    """Draw a spectrogram ``S`` ``(n_bins, frames)`` (tensor or array) with labelled axes; like ``librosa.display.specshow``.

    - ``x_axis="time"``: frame t covers ``[t, t + 1) * hop_length / sample_rate`` seconds (x axis from
      0 to ``frames * hop_length / sample_rate``); ``None``: frame indices.
    - ``y_axis="mel"``: row k is the mel band centred on the k-th of
      ``mel_frequencies(n_bins + 2, fmin, fmax, htk)[1:-1]`` (the bands of a
      :class:`~melfront.frontends.MelSpectrogram` with those settings); the rows are equally spaced
      and the ticks are labelled with the centre frequencies in Hz. ``"linear"``: row k is at
      ``fmin + k (fmax - fmin) / (n_bins - 1)`` Hz (an STFT's bins for the defaults), the axis in Hz
      from ``fmin`` to ``fmax``. ``None``: row indices.
    - ``fmax`` defaults to ``sample_rate / 2``.

    ``ax`` defaults to the current axes; ``cmap`` and ``imshow_kwargs`` (``vmin``, ``vmax``, ...) go
    to ``ax.imshow``. Returns the ``AxesImage``. Values are drawn as given: convert power to
    decibels first (:func:`power_to_db_display`).

    >>> plt = pyplot()
    >>> fig, ax = plt.subplots()
    >>> img = specshow(torch.rand(40, 100), sample_rate=16000, hop_length=160, ax=ax)
    >>> ax.get_xlabel(), ax.get_ylabel(), [float(v) for v in ax.get_xlim()]
    ('time (s)', 'frequency (Hz)', [0.0, 1.0])
    >>> [t.get_text() for t in ax.get_yticklabels()][-1], img.get_array().shape
    ('7.4k', (40, 100))
    >>> img = specshow(np.zeros((257, 10)), sample_rate=16000, hop_length=256, y_axis="linear", ax=ax)
    >>> [float(v) for v in ax.get_ylim()]
    [0.0, 8000.0]
    >>> plt.close(fig)
    """
    data = _as_image(S)
    one_of("y_axis", y_axis, ("mel", "linear", None))
    one_of("x_axis", x_axis, ("time", None))
    sample_rate = positive_float("sample_rate", sample_rate)
    hop_length = positive_int("hop_length", hop_length)
    fmin = finite_float("fmin", fmin, 0.0)
    fmax = optional(finite_float, "fmax", fmax, fmin, low_open=True)
    fmax = sample_rate / 2 if fmax is None else fmax
    if fmax <= fmin:
        raise ParameterError(f"fmax ({fmax}) must be above fmin ({fmin})")
    n_bins, frames = data.shape
    ax = pyplot().gca() if ax is None else ax
    x_ext = (0.0, frames * hop_length / sample_rate) if x_axis == "time" else (-0.5, frames - 0.5)
    step = (fmax - fmin) / max(n_bins - 1, 1)
    y_ext = (fmin - step / 2, fmax + step / 2) if y_axis == "linear" else (-0.5, n_bins - 0.5)
    kwargs = dict(origin="lower", aspect="auto", interpolation="nearest", cmap=cmap)
    kwargs.update(imshow_kwargs)
    img = ax.imshow(data, extent=(*x_ext, *y_ext), **kwargs)
    if x_axis == "time":
        ax.set_xlabel("time (s)")
    if y_axis == "linear":
        ax.set_ylim(fmin, fmax if n_bins > 1 else fmin + step / 2)
        ax.set_ylabel("frequency (Hz)")
    elif y_axis == "mel":
        mel_ticks(ax, mel_frequencies(n_bins + 2, fmin, fmax, htk)[1:-1])
    return img
