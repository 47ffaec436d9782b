"""``melfront show``: one column per clip with its waveform, mel spectrogram and frontend outputs (also the
report's example panels).

Long recordings are drawn in bounded memory: the mel spectrogram is computed in blocks
(:func:`melfront.functional.melspectrogram_chunked`), and what is handed to matplotlib is reduced to
about what the picture can show: the waveform to its min/max envelope (:func:`waveform_envelope`),
images to at most :data:`MAX_DRAW_FRAMES` columns, each the maximum of the frames it covers
(:func:`decimate_frames`). Clips short enough to fit are drawn exactly as computed.
"""
from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import numpy as np
import torch

from ..audio import AudioError, load_audio
from ..fileio import save_figure
from ..frontends import MelSpectrogram
from ..frontends import frontend as build_frontend
from ..functional.spectral import melspectrogram_chunked
from .specshow import power_to_db_display, pyplot, specshow

__all__ = ["show_clips", "frontend_panel", "decimate_frames", "waveform_envelope", "MAX_DRAW_FRAMES",
           "MAX_DRAW_SAMPLES"]

#: Most frames an image panel hands to matplotlib (a panel is about 700 pixels wide).
MAX_DRAW_FRAMES = 2000
#: Most envelope columns of a waveform panel; a clip up to twice as long is drawn sample by sample.
MAX_DRAW_SAMPLES = 10000

_LABELS = {"LogEPS": "log10", "Log10000": "log10", "LogLearn": "ln", "LogFloor": "ln", "LogOffset": "log",
           "PowerLearn": "X ** p", "PCEN": "PCEN", "MinMax": "0..1", "MSTModel": "log-mel",
           "MSTFrontend": "log-mel (normalised)"}


def _frontend_label(module) -> str:
    """Colour-bar label for a frontend's output."""
    name = type(module).__name__
    if name == "Decibel":
        return "dB re max" if getattr(module, "ref", None) == "max" else "dB"
    return _LABELS.get(name, "value")


def frontend_panel(module, wave: torch.Tensor, mel: torch.Tensor):
    """What ``melfront show`` draws for one frontend: ``(image, colour-bar label, vmax)``.

    A waveform frontend (``input_kind == "waveform"``: the adaptive filterbank, an MST model) is fed
    the clip's waveform ``(time,)``, any other the clip's linear mel spectrogram ``(n_mels, frames)``.
    The image is ``(n_bins, frames)``, or ``(3, n_bins, frames)`` for a three-channel stack (drawn as
    red, green and blue); other stacks give their first channel. Linear-power outputs (the adaptive
    filterbank) are shown in dB re max; a power law is clipped at its 99.5th percentile (``vmax``).

    >>> from melfront.frontends import frontend
    >>> mel = torch.rand(16, 20) + 0.1
    >>> img, label, vmax = frontend_panel(frontend("db", n_mels=16), torch.zeros(1000), mel)
    >>> img.shape, label, vmax
    ((16, 20), 'dB', None)
    >>> fb = frontend("adaptive", sample_rate=8000, n_fft=128, hop_length=50, n_mels=16)
    >>> img, label, vmax = frontend_panel(fb, torch.randn(950), mel)
    >>> img.shape, label
    ((16, 20), 'dB re max')
    """
    with torch.no_grad():
        if getattr(module, "input_kind", "mel") == "waveform":
            out = module(wave.unsqueeze(0))[0]
        else:
            out = module(mel.unsqueeze(0))[0]
    label, vmax = _frontend_label(module), None
    if type(module).__name__ == "AdaptiveFilterbank":  # linear power, like the mel spectrogram
        return power_to_db_display(out), "dB re max", None
    if out.ndim == 3 and out.shape[0] == 3:
        label = "channels as R, G, B"
    elif out.ndim == 3:  # other stacks: show the first channel
        out, label = out[0], "channel 0"
    out = out.numpy()
    if label == "X ** p":  # a power law is dominated by its peaks: clip the colours at the 99.5th percentile
        vmax, label = float(np.percentile(out, 99.5)), "X ** p (clipped at 99.5th pct)"
    return out, label, vmax


def decimate_frames(data: np.ndarray, max_frames: int = MAX_DRAW_FRAMES) -> tuple[np.ndarray, int]:
    """``(image, factor)``: ``data`` ``(..., frames)`` with every ``factor`` frames replaced by their maximum,
    ``factor`` the smallest that leaves at most ``max_frames`` columns (1: ``data`` itself). The last
    column covers the remaining frames (fewer than ``factor``). Maxima keep short loud events visible.

    >>> img, k = decimate_frames(np.arange(10.0).reshape(1, 10), max_frames=4)
    >>> img.tolist(), k
    ([[2.0, 5.0, 8.0, 9.0]], 3)
    >>> decimate_frames(np.zeros((2, 5)), max_frames=8)[1]
    1
    """
    frames = data.shape[-1]
    factor = max(1, -(-frames // max_frames))
    if factor == 1:
        return data, 1
    return _group_reduce(data, factor, np.max), factor


def _group_reduce(data: np.ndarray, factor: int, reduce) -> np.ndarray:
    """``reduce`` over each ``factor`` consecutive entries of the last axis (the last group may be shorter),
    without copying ``data`` (a long clip's waveform is hundreds of MB)."""
    full = data.shape[-1] // factor * factor
    parts = [reduce(data[..., :full].reshape(*data.shape[:-1], -1, factor), axis=-1)]
    if full < data.shape[-1]:
        parts.append(reduce(data[..., full:], axis=-1, keepdims=True))
    return np.concatenate(parts, axis=-1)


def waveform_envelope(wave: np.ndarray, sample_rate: float, max_points: int = MAX_DRAW_SAMPLES):
    """``(times, low, high)`` to draw a waveform ``(time,)``: itself (``low == high``) when it has at most
    ``2 * max_points`` samples, else the minimum and maximum of each of ``max_points`` equal groups of
    samples, ``times`` (seconds) at each group's first sample.

    >>> t, lo, hi = waveform_envelope(np.array([0.0, 1, -1, 2, 0, -3, 1, 1]), 2.0, max_points=3)
    >>> t.tolist(), lo.tolist(), hi.tolist()
    ([0.0, 1.5, 3.0], [-1.0, -3.0, 1.0], [1.0, 2.0, 1.0])
    """
    wave = np.asarray(wave)
    n = wave.shape[-1]
    if n <= 2 * max_points:
        return np.arange(n) / sample_rate, wave, wave
    factor = -(-n // max_points)
    low, high = _group_reduce(wave, factor, np.min), _group_reduce(wave, factor, np.max)
    return np.arange(len(low)) * factor / sample_rate, low, high


def _draw(ax, fig, data: np.ndarray, title: str, cbar_label: str, sample_rate, hop_length, vmax=None):
    """One spectrogram panel with its colour bar; ``(3, n_bins, frames)`` is drawn as RGB; long images are
    reduced by :func:`decimate_frames`, the time axis kept true."""
    frames = data.shape[-1]
    data, factor = decimate_frames(data, MAX_DRAW_FRAMES)
    _draw_image(ax, fig, data, title, cbar_label, sample_rate, hop_length * factor, vmax)
    if factor > 1:
        ax.set_xlim(0, frames * hop_length / sample_rate)  # the last column may cover fewer frames


def _draw_image(ax, fig, data: np.ndarray, title: str, cbar_label: str, sample_rate, hop_length, vmax=None):
    """One spectrogram panel with its colour bar; ``(3, n_bins, frames)`` is drawn as RGB."""
    if data.ndim == 3:  # three stacked channels as red, green, blue, each rescaled to [0, 1]
        lo = data.min(axis=(1, 2), keepdims=True)
        span = np.maximum(data.max(axis=(1, 2), keepdims=True) - lo, 1e-30)
        img = specshow(data[0], sample_rate=sample_rate, hop_length=hop_length, ax=ax)
        img.set_data(np.moveaxis((data - lo) / span, 0, -1))  # same axes as a 2-D panel, RGB pixels
        ax.set_title(title + f"  ({cbar_label})", fontsize=9)
        from matplotlib.cm import ScalarMappable
        fig.colorbar(ScalarMappable(), ax=ax, pad=0.01).ax.set_visible(False)  # same width as the other panels
        return
    img = specshow(data, sample_rate=sample_rate, hop_length=hop_length, ax=ax, vmax=vmax)
    ax.set_title(title, fontsize=9)
    fig.colorbar(img, ax=ax, pad=0.01).set_label(cbar_label, fontsize=8)


def _draw_waveform(ax, path, wave: torch.Tensor, sr) -> None:
    """The top panel: the waveform, or its min/max envelope for a long clip (:func:`waveform_envelope`)."""
    duration = wave.shape[-1] / sr
    times, low, high = waveform_envelope(wave.numpy(), sr, MAX_DRAW_SAMPLES)
    if low is high:
        ax.plot(times, low, lw=0.4, color="#1f4e79")
    else:
        ax.fill_between(times, low, high, lw=0.4, color="#1f4e79")
    ax.set_xlim(0, duration)
    ax.set_ylabel("amplitude")
    ax.set_xlabel("time (s)")
    ax.set_title(f"{Path(path).name}  ({sr} Hz, {duration:.2f} s)", fontsize=10)


def _load_all(paths, sample_rate):
    """``([(path, wave, sr)], [(path, cause)])``: every clip read on its own; unreadable ones are skipped."""
    clips, skipped = [], []
    for path in paths:
        try:
            wave, sr = load_audio(path, sample_rate=sample_rate)
        except AudioError as exc:
            skipped.append((str(path), exc.cause))
            continue
        clips.append((path, wave, sr))
    if not clips:
        first = skipped[0] if skipped else ("(no files)", "nothing to show")
        raise AudioError(first[0], first[1] + (f" (and {len(skipped) - 1} other file(s) unreadable)"
                                               if len(skipped) > 1 else ""))
    for path, cause in skipped:
        warnings.warn(f"melfront show: skipped {path}: {cause}", RuntimeWarning, stacklevel=3)
    return clips, skipped


def show_clips(paths, output, sample_rate: int = 22050, n_fft: int = 1024, hop_length: int = 512,
               n_mels: int = 128, frontends=()) -> Path:
    """Draw, for each clip (one column each), its waveform, its mel spectrogram in dB and one panel per
    frontend spec in ``frontends``; write a PNG and return its path.

    Mel frontends get the clip's linear mel spectrogram, waveform frontends (``input_kind ==
    "waveform"``, e.g. ``"adaptive"``) its waveform (see :func:`frontend_panel`). Each file is read on
    its own: an unreadable file is skipped with a ``RuntimeWarning`` naming it and listed in the
    figure's title; if no file can be read, the first one's :class:`~melfront.errors.AudioError` is
    raised and nothing is written.

    Drawing takes a few seconds, so the example is not run by the doctests (``tests/test_plotting.py``
    and ``tests/test_cli_show.py`` run it):

    >>> import tempfile, soundfile as sf
    >>> folder = Path(tempfile.mkdtemp())
    >>> sf.write(folder / "tone.wav", np.sin(np.arange(4000) * 0.3), 8000)
    >>> png = show_clips([folder / "tone.wav"], folder / "show.png", sample_rate=8000,  # doctest: +SKIP
    ...                  n_fft=256, hop_length=128, n_mels=16, frontends=["db", "adaptive"])
    >>> png.read_bytes()[:4]  # doctest: +SKIP
    b'\\x89PNG'
    """
    clips, skipped = _load_all(paths, sample_rate)
    plt = pyplot()
    mel_module = MelSpectrogram(sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels)
    modules = [(spec, build_frontend(spec, n_mels=n_mels, sample_rate=sample_rate, hop_length=hop_length))
               for spec in frontends]
    rows, cols = 2 + len(modules), len(clips)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 2.3 * rows + 0.6), squeeze=False,
                             gridspec_kw=dict(height_ratios=[0.7] + [1.0] * (rows - 1)))
    need_wave = any(getattr(module, "input_kind", "mel") == "waveform" for _, module in modules)
    for c in range(len(clips)):
        path, wave, sr = clips[c]
        clips[c] = None  # the loop holds the only reference: a long clip's waveform is freed once used
        _draw_waveform(axes[0, c], path, wave, sr)
        with torch.no_grad():
            mel = melspectrogram_chunked(wave, **mel_module.config())
        wave = wave if need_wave else None  # mel frontends need only the mel spectrogram
        _draw(axes[1, c], fig, power_to_db_display(mel),
              f"mel spectrogram, dB re max (n_fft={n_fft}, hop={hop_length}, n_mels={n_mels})", "dB", sr, hop_length)
        for r, (spec, module) in enumerate(modules, start=2):
            img, label, vmax = frontend_panel(module, wave, mel)
            _draw(axes[r, c], fig, img, f"frontend: {spec}", label, sr, hop_length, vmax)
    if skipped:
        text = "not drawn (unreadable): " + "; ".join(f"{Path(p).name}: {cause}" for p, cause in skipped)
        fig.suptitle(textwrap.fill(text, width=100 * cols), fontsize=9, color="#a00000")
    fig.tight_layout()
    output = save_figure(fig, output, dpi=110)
    plt.close(fig)
    return output
