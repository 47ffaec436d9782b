"""The few-data study report's figures: accuracy (or MAP) against n, and the learned frontend parameters.

The functions take numbers already summarised by :mod:`melfront.report` (no import of the study or the
report here: plotting stays below them).
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from ..fileio import save_figure
from ..functional import mel_frequencies
from .specshow import pyplot

__all__ = ["plot_accuracy_vs_n", "plot_learned_parameters", "percent_band"]


def percent_band(mean, std) -> tuple[np.ndarray, np.ndarray]:
    """The ± band of fractions ``mean`` ± ``std``, in %, clipped to [0, 100] (an accuracy cannot leave it).

    >>> lo, hi = percent_band([0.05, 0.98], [0.1, 0.05])
    >>> lo.round(1).tolist(), hi.round(1).tolist()
    ([0.0, 93.0], [15.0, 100.0])
    """
    m, s = np.asarray(mean, dtype=float), np.asarray(std, dtype=float)
    return np.clip(100 * (m - s), 0.0, 100.0), np.clip(100 * (m + s), 0.0, 100.0)


def plot_accuracy_vs_n(table: dict, path, frontends, metric: str = "accuracy", chance: float | None = None):
    """One panel per model: mean ± std of ``metric`` (in %) against ``n`` (log axis), one line per frontend.

    ``table`` is :func:`melfront.report.summary_table`'s ``{(model, frontend): {n: (mean, std, count)}}``;
    ``frontends`` gives the legend order (colour ``i`` for the ``i``-th). The ± bands are clipped to
    [0, 100] % (:func:`percent_band`); ``chance`` (a fraction, e.g. ``1 / n_classes``) draws the chance
    level as a dashed line. Returns the (closed) figure.

    >>> import tempfile, pathlib
    >>> table = {("sbcnn", "db"): {1: (0.4, 0.05, 4), 5: (0.6, 0.04, 4)}, ("sbcnn", "pcen"): {1: (0.5, 0.1, 4)}}
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "acc.png"
    >>> fig = plot_accuracy_vs_n(table, out, ["db", "pcen"], chance=0.25); out.read_bytes()[:4]
    b'\\x89PNG'
    >>> [line.get_label() for line in fig.axes[0].lines]
    ['db', 'pcen', 'chance (25.0 %)']
    """
    plt = pyplot()
    models = sorted({model for model, _ in table})
    ns_all = sorted({n for stats in table.values() for n in stats})
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4.0), squeeze=False, sharey=True)
    colors = plt.get_cmap("tab10")
    for ax, model in zip(axes[0], models):
        for i, fe in enumerate(frontends):
            stats_by_n = table.get((model, fe))
            if not stats_by_n:
                continue
            ns = sorted(stats_by_n)
            m = np.array([stats_by_n[n][0] for n in ns])
            s = np.array([stats_by_n[n][1] for n in ns])
            ax.plot(ns, 100 * m, "o-", color=colors(i), label=fe, lw=1.6, ms=4)
            ax.fill_between(ns, *percent_band(m, s), color=colors(i), alpha=0.15)
        if chance is not None:
            ax.axhline(100 * chance, color="0.35", ls="--", lw=1.0, label=f"chance ({100 * chance:.1f} %)")
        ax.set_ylim(max(0.0, ax.get_ylim()[0]), min(100.0, ax.get_ylim()[1]))
        ax.set_xscale("log")
        ax.set_xticks(ns_all)
        ax.set_xticklabels([str(n) for n in ns_all])
        ax.minorticks_off()
        ax.set_xlabel("training clips per class (n)")
        ax.set_title(model)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(f"{'accuracy' if metric == 'accuracy' else 'macro MAP'} (%) — mean ± std over runs")
    axes[0, -1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return fig


def _learned_entries(rows) -> dict:
    """``{(frontend, parameter): [(n, values), ...]}`` from the study rows' ``learned`` dicts."""
    entries = defaultdict(list)
    for r in rows:
        for name, values in (r["learned"] or {}).items():
            entries[(r["frontend"], name)].append((r["n"], np.atleast_1d(np.asarray(values, dtype=float))))
    return entries


def _per_band_panel(ax, items, ns, mel: dict, cmap) -> None:
    """Per-band values against the bands' centre frequencies: mean ± std over runs, one line per n."""
    size = items[0][1].size
    freqs = mel_frequencies(size + 2, mel.get("fmin", 0.0), mel.get("fmax") or mel["sample_rate"] / 2)[1:-1]
    for i, n in enumerate(ns):
        stack = np.stack([v for m, v in items if m == n and v.size == size])
        mean, std = stack.mean(0), stack.std(0)
        color = cmap(i / max(1, len(ns) - 1))
        ax.plot(freqs, mean, color=color, lw=1.3, label=f"n={n}")
        ax.fill_between(freqs, mean - std, mean + std, color=color, alpha=0.15)
    ax.set_xscale("log")
    ax.set_xlabel("mel band centre (Hz)")


def plot_learned_parameters(rows, path, mel: dict) -> bool:
    """Learned frontend parameters at the end of training: per-band vectors against mel frequency, scalars
    against n (box plots over runs). ``rows`` are study rows (``frontend``, ``n``, ``learned``); ``mel``
    needs ``sample_rate`` (and may give ``fmin``, ``fmax``). Returns False, drawing nothing, when no row
    learned anything.

    >>> import tempfile, pathlib
    >>> rows = [dict(frontend="loglearn", n=n, learned={"alpha": [0.5 + run], "beta": [1.0, 2.0, 3.0]})
    ...         for n in (1, 5) for run in range(2)]
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "learned.png"
    >>> plot_learned_parameters(rows, out, {"sample_rate": 8000}), plot_learned_parameters([], out, {})
    (True, False)
    """
    entries = _learned_entries(rows)
    if not entries:
        return False
    plt = pyplot()
    keys = sorted(entries)
    cols = min(4, len(keys))
    nrows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.3 * cols, 3.3 * nrows), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for ax, key in zip(axes.flat, keys):
        items = entries[key]
        ns = sorted({n for n, _ in items})
        if max(v.size for _, v in items) > 1:
            _per_band_panel(ax, items, ns, mel, cmap)
        else:
            ax.boxplot([[float(v[0]) for m, v in items if m == n] for n in ns])
            ax.set_xticks(range(1, len(ns) + 1))
            ax.set_xticklabels([str(n) for n in ns])
            ax.set_xlabel("training clips per class (n)")
        ax.set_title(f"{key[0]}: {key[1]}", fontsize=9)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle("learned frontend parameters at the end of training: per-band values as mean ± std over runs "
                 "against band frequency, global values as box plots over runs", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return True
