"""Figures of ``melfront equivalence``: window equivalence (Dörfler, Bammer & Grill 2017, Figure 1) and the
mel spectrogram next to :meth:`~melfront.adaptive.AdaptiveFilterbank.from_mel`."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .. import functional as F
from ..adaptive import AdaptiveFilterbank, damped_notes, window_equivalence
from ..frontends import MelSpectrogram
from ..fileio import save_figure
from .specshow import pyplot, specshow

__all__ = ["plot_window_equivalence", "plot_mel_vs_adaptive"]


def _db(x: torch.Tensor, top_db: float = 80.0) -> np.ndarray:
    x = torch.as_tensor(x, dtype=torch.float64)
    db = 10 * torch.log10(torch.clamp(x, min=float(x.max()) * 1e-12 + 1e-300))
    return torch.clamp(db - db.max(), min=-top_db).numpy()


def _save(fig, output) -> Path:
    fig.tight_layout()
    output = save_figure(fig, output, dpi=100)
    pyplot().close(fig)
    return output


def _kernel_slices(ax, res, sample_rate, hop_length, n_fft, long_window, short_window):
    """The two kernels as (time, frequency) slices through their centres, normalised."""
    kg = torch.fft.fftshift(res["kernel_g"])
    kh = torch.fft.fftshift(res["kernel_h"])
    c_t, c_f = kg.shape[0] // 2, kg.shape[1] // 2
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


def _difference_panel(fig, ax, pg, ph, pooled_residual, axis) -> float:
    """(pooled g - pooled h) / max as an image; returns its largest absolute value."""
    diff = ((pg - ph) / pg.max()).numpy()
    lim = float(np.abs(diff).max()) or 1.0
    scale = 10.0 ** math.floor(math.log10(lim))
    im = specshow(diff / scale, ax=ax, cmap="RdBu_r", vmin=-lim / scale, vmax=lim / scale, **axis)
    ax.set_title(f"(pooled g - pooled h) / max, largest {lim:.1e}; relative L2 residual {pooled_residual:.1e}",
                 fontsize=9)
    fig.colorbar(im, ax=ax, pad=0.01).set_label(f"x {scale:.0e}", fontsize=8)
    return lim


def plot_window_equivalence(output, sample_rate: float = 22050, long_window: int = 2048, short_window: int = 512,
                            hop_length: int = 32, duration: float = 1.5, pool=(8, 8), max_hz: float = 6000.0,
                            seed: int = 0) -> dict:
    """Reproduce Figure 1 of Dörfler, Bammer & Grill (2017) on :func:`~melfront.adaptive.damped_notes`; write a PNG.

    Panels: the Hann-window spectrograms with ``long_window`` (g) and ``short_window`` (h) samples,
    each convolved with its kernel from :func:`~melfront.adaptive.window_equivalence_kernels` and
    max-pooled by ``pool`` = (frames, bins), side by side, and their difference. Returns the residuals
    (before and after pooling), the largest pooled difference and the path.

    Drawing takes a few seconds (matplotlib layout and PNG encoding), so the example is not run by the
    doctests; ``tests/test_filterbanks.py`` runs it through ``melfront equivalence``:

    >>> import tempfile
    >>> out = plot_window_equivalence(Path(tempfile.mkdtemp()) / "eq.png", sample_rate=8000,  # doctest: +SKIP
    ...                               long_window=64, short_window=16, hop_length=4, duration=0.1, max_hz=3000.0)
    >>> out["path"].stat().st_size > 10_000, out["residual"] < 1e-2  # doctest: +SKIP
    (True, True)
    """
    plt = pyplot()
    n_fft = 2 * max(long_window, short_window)
    x = damped_notes(sample_rate, duration, seed=seed)
    x = x[: (x.numel() // hop_length) * hop_length]
    g = F.get_window("hann", long_window, dtype=torch.float64)
    h = F.get_window("hann", short_window, dtype=torch.float64)
    res = window_equivalence(x, g, h, n_fft, hop_length)
    n_bins = int(max_hz / sample_rate * n_fft)
    pool_t, pool_f = pool
    bin_hz = sample_rate / n_fft

    def pooled(s):
        s = s[:, :n_bins].T[None, None]                                    # (1, 1, bins, frames)
        return torch.nn.functional.max_pool2d(s, (pool_f, pool_t))[0, 0]

    pg, ph = pooled(res["smooth_g"]), pooled(res["smooth_h"])
    pooled_residual = float(torch.linalg.norm(pg - ph) / torch.linalg.norm(pg))
    full = dict(sample_rate=sample_rate, hop_length=hop_length, y_axis="linear", fmax=(n_bins - 1) * bin_hz)
    f0 = (pool_f - 1) / 2 * bin_hz                                         # centre of the first pooled row
    coarse = dict(sample_rate=sample_rate, hop_length=hop_length * pool_t, y_axis="linear", fmin=f0,
                  fmax=f0 + max(pg.shape[0] - 1, 1) * pool_f * bin_hz)
    fig, axes = plt.subplots(3, 2, figsize=(12, 10))
    panels = [
        (axes[0, 0], _db(res["spec_g"][:, :n_bins].T), full, f"spectrogram, Hann window g = {long_window} samples"),
        (axes[0, 1], _db(res["spec_h"][:, :n_bins].T), full, f"spectrogram, Hann window h = {short_window} samples"),
        (axes[1, 0], _db(pg), coarse, f"|V_g f|^2 * w_g, max-pooled {pool_t}x{pool_f}"),
        (axes[1, 1], _db(ph), coarse, f"|V_h f|^2 * w_h, max-pooled {pool_t}x{pool_f}"),
    ]
    for ax, img, axis, title in panels:
        im = specshow(img, ax=ax, **axis)
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, pad=0.01).set_label("dB re max", fontsize=8)
    lim = _difference_panel(fig, axes[2, 0], pg, ph, pooled_residual, coarse)
    _kernel_slices(axes[2, 1], res, sample_rate, hop_length, n_fft, long_window, short_window)
    fig.suptitle(f"Window equivalence (Dörfler, Bammer & Grill 2017, Prop. IV.2 / Thm IV.4) on damped notes: "
                 f"relative residual {res['residual']:.1e} (lattice), {pooled_residual:.1e} (pooled)", fontsize=10)
    output = _save(fig, output)
    return dict(path=output, residual=res["residual"], pooled_residual=pooled_residual, max_difference=lim)


def plot_mel_vs_adaptive(output, waveform: torch.Tensor, sample_rate: float, n_fft: int = 1024, hop_length: int = 512,
                         n_mels: int = 128, title: str = "") -> dict:
    """Mel spectrogram vs :meth:`~melfront.adaptive.AdaptiveFilterbank.from_mel` on one clip; write a PNG.

    Panels: both in dB, their dB difference and the median relative error per band. Returns the
    figures of merit (median relative error and dB correlation over the bins within 60 dB of the
    maximum) and the path.

    Drawing takes a few seconds, so the example is not run by the doctests (``tests/test_filterbanks.py``
    runs it through ``melfront equivalence``):

    >>> import tempfile
    >>> from melfront.adaptive import demo_clip
    >>> out = plot_mel_vs_adaptive(Path(tempfile.mkdtemp()) / "mva.png", demo_clip(8000, 0.5),  # doctest: +SKIP
    ...                            8000, n_fft=256, hop_length=64, n_mels=20)
    >>> out["path"].stat().st_size > 10_000, out["db_correlation"] > 0.9  # doctest: +SKIP
    (True, True)
    """
    plt = pyplot()
    mel = MelSpectrogram(sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels)
    ada = AdaptiveFilterbank.from_mel(mel)
    with torch.no_grad():
        m = mel(waveform.to(torch.float64))
        a = ada(waveform.to(torch.float64))
    mask = m >= m.max() * 1e-6
    rel = (a - m).abs() / m.clamp(min=1e-300)
    median_rel = float(rel[mask].median())
    corr = float(np.corrcoef(10 * np.log10(m[mask].numpy()), 10 * np.log10(a[mask].clamp(min=1e-300).numpy()))[0, 1])
    axis = dict(sample_rate=sample_rate, hop_length=hop_length, y_axis="mel", fmin=mel.fmin, fmax=mel.fmax,
                htk=mel.htk)
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5))
    ref = float(m.max())
    for ax, x, name in ((axes[0, 0], m, "MelSpectrogram"), (axes[0, 1], a, "AdaptiveFilterbank.from_mel")):
        db = torch.clamp(10 * torch.log10(torch.clamp(x, min=1e-30) / ref), min=-80).numpy()
        im = specshow(db, ax=ax, vmin=-80, vmax=0, **axis)
        ax.set_title(f"{name} (dB re mel max)", fontsize=9)
        fig.colorbar(im, ax=ax, pad=0.01)
    ddb = (10 * torch.log10(a.clamp(min=1e-30) / m.clamp(min=1e-30))).numpy()
    ddb[~mask.numpy()] = np.nan
    im = specshow(ddb, ax=axes[1, 0], cmap="RdBu_r", vmin=-1, vmax=1, **axis)
    axes[1, 0].set_title("adaptive / mel in dB (bins within 60 dB of the max; +-1 dB = +26%/-21%)", fontsize=9)
    fig.colorbar(im, ax=axes[1, 0], pad=0.01).set_label("dB", fontsize=8)
    band_med = [float(rel[k][mask[k]].median()) if bool(mask[k].any()) else np.nan for k in range(n_mels)]
    ax = axes[1, 1]
    ax.semilogx(mel.centre_hz, np.array(band_med) * 100, ".-", lw=0.8)
    ax.axhline(5, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("band centre (Hz)")
    ax.set_ylabel("median relative error (%)")
    ax.set_title("median relative error per band (dashed: the 5% target)", fontsize=9)
    ax.grid(alpha=0.3)
    fig.suptitle(f"{title}  mel vs adaptive filterbank: median relative error {median_rel:.2%}, dB correlation {corr:.4f}",
                 fontsize=10)
    output = _save(fig, output)
    return dict(path=output, median_relative_error=median_rel, db_correlation=corr)
