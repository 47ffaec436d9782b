"""Figures of the MSTModel study (Tax et al. 2017): target vs prediction, learned filters, accuracy curves.

The functions take the trained objects (an ``MSTModel``, a ``LogMelTarget``) by duck typing and do not
import :mod:`melfront.mst`, which imports this module to draw its figures.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..fileio import save_figure
from .specshow import pyplot, specshow

__all__ = ["plot_target_vs_prediction", "plot_filters", "plot_study", "plot_fold_average", "plot_mst_curves"]


def _mel_image(ax, data, mel, **kwargs):
    return specshow(data, sample_rate=mel.sample_rate, hop_length=mel.hop_length, y_axis="mel", fmin=mel.fmin,
                    fmax=mel.fmax, htk=mel.htk, ax=ax, **kwargs)


def _save(fig, output, dpi) -> Path:
    output = save_figure(fig, output, dpi=dpi)
    pyplot().close(fig)
    return output


@torch.no_grad()
def plot_target_vs_prediction(model, target, waveform: torch.Tensor, output, title: str = "") -> Path:
    """Figure 1 of Tax et al.: the normalised log-mel target of a clip and the MSTModel's prediction.

    ``waveform`` ``(time,)`` is peak-normalised as a whole and fed in one piece (the model works on
    any length); the two images share one colour scale (the target's [-1, 1] range). A third panel
    shows prediction - target, with the MSE and correlation in its title.

    >>> import tempfile, pathlib
    >>> from melfront.mst import LogMelTarget, MSTModel
    >>> mel = dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=16)
    >>> m = MSTModel(n_mels=16, n_fft=256, hop_length=64, n_filters=4, n_hidden=4)
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "f1.png"
    >>> plot_target_vs_prediction(m, LogMelTarget(mel), torch.randn(2000), out).is_file()
    True
    """
    plt = pyplot()
    x = waveform.float()
    x = x / x.abs().max().clamp_min(1e-8)  # peak-normalised, as melfront.mst.peak_normalise
    model.eval()
    pred = model(x[None])[0].numpy()
    tgt = target.normalise(target.db(x[None]))[0].float().numpy()  # db() is idempotent on normalised input
    r = float(np.corrcoef(pred.ravel(), tgt.ravel())[0, 1])
    mse = float(((pred - tgt) ** 2).mean())
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8), constrained_layout=True)
    for ax, data, name in ((axes[0], tgt, "target: normalised log-mel"), (axes[1], pred, "MSTModel prediction")):
        im = _mel_image(ax, data, target.mel, vmin=-1, vmax=1)
        ax.set_title(name, fontsize=10)
    fig.colorbar(im, ax=axes[:2], pad=0.01, label="normalised log-mel")
    diff = pred - tgt
    lim = max(float(np.abs(diff).max()), 1e-6)
    im = _mel_image(axes[2], diff, target.mel, cmap="coolwarm", vmin=-lim, vmax=lim)
    axes[2].set_title(f"prediction - target (MSE {mse:.4f}, r = {r:.3f})", fontsize=10)
    fig.colorbar(im, ax=axes[2], pad=0.01)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, output, 110)


def _filter_examples(fig, gs, w, db, freqs, picks, peak, sample_rate):
    """The right-hand columns of Figure 2: impulse and magnitude response of each picked filter."""
    n_examples = len(picks)
    t_ms = np.arange(w.shape[-1]) / sample_rate * 1000
    box = dict(facecolor="white", alpha=0.8, lw=0)
    for row, k in enumerate(picks):
        a = fig.add_subplot(gs[row, 1])
        a.plot(t_ms, w[k].numpy(), lw=0.6, color="tab:blue")
        a.set_yticks([])
        a.text(0.99, 0.95, f"filter {k}", transform=a.transAxes, fontsize=8, ha="right", va="top", bbox=box)
        b = fig.add_subplot(gs[row, 2])
        b.plot(freqs, db[k].numpy(), lw=0.7, color="tab:red")
        b.set_ylim(-60, 3)
        b.set_xlim(0, sample_rate / 2)
        b.text(0.99, 0.95, f"peak {freqs[peak[k]]:.0f} Hz", transform=b.transAxes, fontsize=8, ha="right",
               va="top", bbox=box)
        if row == 0:
            a.set_title("impulse response (kernel)", fontsize=10)
            b.set_title("magnitude response (dB re peak)", fontsize=10)
        if row < n_examples - 1:
            a.set_xticklabels([])
            b.set_xticklabels([])
        else:
            a.set_xlabel("time (ms)")
            b.set_xlabel("frequency (Hz)")


@torch.no_grad()
def plot_filters(model, sample_rate: float, output, n_examples: int = 8, title: str = "") -> Path:
    """Figure 2 of Tax et al.: learned first-layer filters and their frequency responses.

    Left: the magnitude response (dB, 4096-point FFT of each kernel) of all first-layer filters,
    sorted by peak frequency. Right: ``n_examples`` filters picked evenly along that order, each as
    its impulse response (kernel over time) and magnitude response.

    >>> import tempfile, pathlib
    >>> from melfront.mst import MSTModel
    >>> m = MSTModel(n_mels=4, n_fft=64, hop_length=32, n_filters=4, n_hidden=4)
    >>> plot_filters(m, 8000, pathlib.Path(tempfile.mkdtemp()) / "f2.png", n_examples=2).is_file()
    True
    """
    plt = pyplot()
    w = model.conv1.weight[:, 0, :].double()  # (n_filters, n_fft)
    mag = torch.fft.rfft(w, n=max(4096, w.shape[-1])).abs()
    db = 20 * torch.log10(mag.clamp_min(1e-12))
    db = db - db.amax(dim=1, keepdim=True)
    peak = mag.argmax(dim=1)
    order = torch.argsort(peak, stable=True)
    freqs = np.linspace(0, sample_rate / 2, mag.shape[1])
    fig = plt.figure(figsize=(15, 9), constrained_layout=True)
    gs = fig.add_gridspec(n_examples, 3, width_ratios=[1.4, 1, 1])
    ax = fig.add_subplot(gs[:, 0])
    im = ax.imshow(db[order].numpy().T, origin="lower", aspect="auto", cmap="viridis", vmin=-40, vmax=0,
                   extent=(-0.5, w.shape[0] - 0.5, 0, sample_rate / 2), interpolation="nearest")
    ax.set_xlabel("filter (sorted by peak frequency)")
    ax.set_ylabel("frequency (Hz)")
    ax.set_title(f"all {w.shape[0]} first-layer filters: magnitude response (dB re peak)", fontsize=10)
    fig.colorbar(im, ax=ax, pad=0.01, label="dB")
    picks = order[np.linspace(0, w.shape[0] - 1, n_examples).round().astype(int)].tolist()
    _filter_examples(fig, gs, w, db, freqs, picks, peak, sample_rate)
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, output, 100)


def plot_study(curves: dict, output, title: str = "", branch_epoch: int | None = None) -> Path:
    """Figure 3 of Tax et al.: test accuracy (clip-level majority vote) against epoch, one line per arm.

    ``curves`` maps an arm (``"a"`` .. ``"d"``) to ``{"label": str, "curve": [{"epoch", "test_accuracy"}, ...]}``
    (``results["variants"]`` of :func:`melfront.mst.run_mst_study`). ``branch_epoch``: the epoch after
    which (d) was unfrozen, marked with a vertical line.

    >>> import tempfile, pathlib
    >>> c = {"a": {"label": "(a)", "curve": [{"epoch": 1, "test_accuracy": 0.5}, {"epoch": 2, "test_accuracy": 1.0}]}}
    >>> plot_study(c, pathlib.Path(tempfile.mkdtemp()) / "f3.png", branch_epoch=1).is_file()
    True
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), constrained_layout=True)
    styles = {"a": ("tab:blue", "-"), "b": ("tab:orange", "-"), "c": ("tab:green", "-"), "d": ("tab:red", "--")}
    for name, curve in curves.items():
        color, ls = styles.get(name[0], (None, "-"))
        ep = [r["epoch"] for r in curve["curve"]]
        acc = [100 * r["test_accuracy"] for r in curve["curve"]]
        ax.plot(ep, acc, ls, color=color, marker="o", ms=3, label=curve["label"])
    return _finish_accuracy(fig, ax, output, "test accuracy, clip majority vote (%)", title, branch_epoch)


_STYLES = {"a": ("tab:blue", "-"), "b": ("tab:orange", "-"), "c": ("tab:green", "-"), "d": ("tab:red", "--")}


def plot_fold_average(average: dict, output, title: str = "", branch_epoch: int | None = None) -> Path:
    """Figure 3 of Tax et al. over folds: test accuracy per epoch averaged over the folds, one line per arm,
    shaded +- one standard deviation across folds.

    ``average`` maps an arm to ``{"label": str, "curve": [{"epoch", "mean", "std", "n_folds"}, ...]}``
    (:func:`melfront.mst.protocol.average_curves`); accuracies in [0, 1], drawn in %.

    >>> import tempfile, pathlib
    >>> a = {"a": {"label": "(a)", "curve": [{"epoch": 1, "mean": 0.5, "std": 0.1, "n_folds": 2}]}}
    >>> plot_fold_average(a, pathlib.Path(tempfile.mkdtemp()) / "avg.png").is_file()
    True
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), constrained_layout=True)
    n_folds = 0
    for name, arm in average.items():
        color, ls = _STYLES.get(name[0], (None, "-"))
        ep = np.array([r["epoch"] for r in arm["curve"]])
        mean = np.array([100 * r["mean"] for r in arm["curve"]])
        std = np.array([100 * r["std"] for r in arm["curve"]])
        n_folds = max([n_folds] + [r["n_folds"] for r in arm["curve"]])
        ax.plot(ep, mean, ls, color=color, marker="o", ms=2, label=arm["label"])
        ax.fill_between(ep, mean - std, mean + std, color=color, alpha=0.15, lw=0)
    return _finish_accuracy(fig, ax, output, f"test accuracy, mean over {n_folds} fold(s) (%)", title, branch_epoch)


def _finish_accuracy(fig, ax, output, ylabel: str, title: str, branch_epoch) -> Path:
    """The accuracy-per-epoch axes of the (a)-(d) figures: the branch mark, labels, 0-100 %, legend; saved."""
    if branch_epoch:
        ax.axvline(branch_epoch + 0.5, color="grey", lw=0.8, ls=":")
        ax.text(branch_epoch + 0.7, 97, "(d) unfrozen", fontsize=8, color="grey", va="top")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", framealpha=0.9)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, output, 110)


def plot_mst_curves(histories: dict, output, title: str = "") -> Path:
    """The MSTModel's validation learning curves: MSE (left) and Pearson correlation (right) per epoch,
    one line per fold; each fold's kept (best) epoch marked.

    ``histories`` maps a fold name to ``{"history": [{"epoch", "val_mse", "val_corr"}, ...], "best_epoch": int}``.

    >>> import tempfile, pathlib
    >>> h = {"1-2": {"history": [{"epoch": 0, "val_mse": 0.2, "val_corr": 0.3}, {"epoch": 1, "val_mse": 0.1,
    ...                                                                          "val_corr": 0.6}], "best_epoch": 1}}
    >>> plot_mst_curves(h, pathlib.Path(tempfile.mkdtemp()) / "mst.png").is_file()
    True
    """
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for fold, item in histories.items():
        ep = [h["epoch"] for h in item["history"]]
        line, = ax1.plot(ep, [h["val_mse"] for h in item["history"]], lw=1, label=f"fold {fold}")
        ax2.plot(ep, [h["val_corr"] for h in item["history"]], lw=1, color=line.get_color())
        best = item.get("best_epoch")
        if best is not None and best < len(item["history"]):
            ax2.plot([best], [item["history"][best]["val_corr"]], "o", ms=4, color=line.get_color())
    ax1.set_ylabel("validation MSE")
    ax2.set_ylabel("validation correlation with the target")
    for ax in (ax1, ax2):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, output, 100)
