"""Paired differences between two frontends of a study: :func:`paired_difference` over matching (fold, run)
trials (mean, t-based CI, paired t-test, Wilcoxon signed-rank test from :data:`WILCOXON_MIN_PAIRS` pairs),
and the report's family of them, p-values adjusted by :func:`holm` (Holm 1979). Re-exported by
:mod:`melfront.report`.
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from scipy.stats import ttest_rel, wilcoxon  # (not `stats`: the name is this package's stats module)

from .stats import CONFIDENCE, mean_std, paired_interval

__all__ = ["paired_difference", "holm", "difference_family", "family_size", "difference_table",
           "difference_tables", "SIGNIFICANCE", "WILCOXON_MIN_PAIRS"]

#: Holm-adjusted p-value below which a paired difference is marked significant (``*``, highlighted cells).
SIGNIFICANCE = 0.05
#: Fewest pairs for which the Wilcoxon signed-rank test is given too (its smallest two-sided p is 2 / 2**pairs).
WILCOXON_MIN_PAIRS = 6

# Example rows of the doctests: "b" beats "a" by 0.1 in each of 3 paired runs.
_ROWS = [dict(model="sbcnn", frontend=fe, n=1, fold=1, run=run, accuracy=acc + (0.1 if fe == "b" else 0.0))
         for run, acc in enumerate((0.5, 0.6, 0.55)) for fe in ("a", "b")]


def holm(pvalues) -> list[float]:
    """Holm's step-down adjustment of p-values for their number (nan entries are left out and stay nan).

    The ``k``-th smallest of ``m`` p-values becomes ``max_{j <= k} min(1, (m - j + 1) p_(j))``: it controls
    the family-wise error rate without assuming independence (Holm 1979), and is uniformly less
    conservative than Bonferroni.

    >>> holm([0.01, 0.04, 0.03, float("nan")])
    [0.03, 0.06, 0.06, nan]
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    order = idx[np.argsort(p[idx], kind="stable")]
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - k) * p[i]))
        out[i] = running
    return [round(float(v), 12) for v in out]


def _paired_p(x, y, d) -> tuple[float, float]:
    """``(t-test p, Wilcoxon p)`` of paired samples ``y`` vs ``x`` (``d = y - x``); nan where not defined."""
    if len(d) < 2:
        return float("nan"), float("nan")
    if np.allclose(d, 0.0):  # no difference at all: nothing against the null
        p_t = p_w = 1.0
    elif np.allclose(d, d[0]):  # a constant non-zero difference: t is infinite
        p_t, p_w = 0.0, float(wilcoxon(y, x).pvalue)
    else:
        p_t, p_w = float(ttest_rel(y, x).pvalue), float(wilcoxon(y, x).pvalue)
    return p_t, (p_w if len(d) >= WILCOXON_MIN_PAIRS else float("nan"))


def paired_difference(rows, model, n, a, b, metric="accuracy"):
    """``metric[b] - metric[a]`` over matching (fold, run) pairs: None when no pair matches, else a dict.

    ``mean``, ``std`` (ddof 1) and ``count`` (pairs); ``ci`` = ``(low, high)``, the t-based
    :data:`CONFIDENCE` interval of the mean (None for one pair); ``p``: the paired t-test's two-sided
    p-value; ``p_wilcoxon``: the Wilcoxon signed-rank test's (from :data:`WILCOXON_MIN_PAIRS` pairs, else
    nan). A constant non-zero difference has ``p`` 0, no difference at all ``p`` 1, one pair ``p`` nan.
    ``p_holm`` and ``p_wilcoxon_holm`` are the same until :func:`difference_tables` adjusts them.

    >>> d = paired_difference(_ROWS, "sbcnn", 1, "a", "b")
    >>> round(d["mean"], 3), round(d["std"], 3), d["p"], d["count"], [round(v, 3) for v in d["ci"]]
    (0.1, 0.0, 0.0, 3, [0.1, 0.1])
    """
    by = {fe: {(str(r["fold"]), r["run"]): r[metric] for r in rows
               if r["model"] == model and r["n"] == n and r["frontend"] == fe} for fe in (a, b)}
    keys = sorted(set(by[a]) & set(by[b]))
    if not keys:
        return None
    x = np.array([by[a][k] for k in keys], dtype=float)
    y = np.array([by[b][k] for k in keys], dtype=float)
    d = y - x
    mean, std = mean_std(d)
    ci = paired_interval(y, x, CONFIDENCE)
    p, p_w = _paired_p(x, y, d)
    return dict(mean=mean, std=std, count=len(keys), ci=ci, p=p, p_wilcoxon=p_w, p_holm=p, p_wilcoxon_holm=p_w)


def difference_tables(rows, pairs, metric="accuracy") -> dict:
    """``{(a, b): {model: {n: paired_difference(...)}}}`` for every pair (b - a), with ``p_holm`` and
    ``p_wilcoxon_holm`` adjusted by :func:`holm` over every cell of every table (the report's comparisons).

    >>> t = difference_tables(_ROWS + [dict(r, n=2) for r in _ROWS], [("a", "b")])
    >>> [(n, d["p"], d["p_holm"]) for n, d in t[("a", "b")]["sbcnn"].items()]
    [(1, 0.0, 0.0), (2, 0.0, 0.0)]
    """
    family = difference_family(rows, [(a, b, metric) for a, b in pairs])
    return {(a, b): family[(a, b, metric)] for a, b in pairs}


def difference_family(rows, comparisons) -> dict:
    """``{(a, b, metric): {model: {n: paired_difference(...)}}}`` for every ``(a, b, metric)`` (b - a in that
    metric), ``p_holm`` and ``p_wilcoxon_holm`` adjusted by :func:`holm` over every cell of them all (one
    family: the report's comparisons, its difference tables and a preset's claims). Trials whose metric
    is missing (a store without MAP) are left out of that metric's pairs.

    >>> f = difference_family(_ROWS, [("a", "b", "accuracy"), ("b", "a", "accuracy")])
    >>> [(round(f[k]["sbcnn"][1]["mean"], 3), f[k]["sbcnn"][1]["p_holm"]) for k in f]
    [(0.1, 0.0), (-0.1, 0.0)]
    """
    out = {}
    for a, b, metric in comparisons:
        if (a, b, metric) in out:
            continue
        kept = [r for r in rows if isinstance(r.get(metric), (int, float)) and math.isfinite(r[metric])]
        table = defaultdict(dict)
        for model in sorted({r["model"] for r in kept}):
            for n in sorted({r["n"] for r in kept}):
                d = paired_difference(kept, model, n, a, b, metric)
                if d:
                    table[model][n] = d
        out[(a, b, metric)] = dict(table)
    reverse = _reversed(out)
    cells = [d for k, table in out.items() if k not in reverse for by_n in table.values() for d in by_n.values()]
    for key in ("p", "p_wilcoxon"):
        for d, adjusted in zip(cells, holm([d[key] for d in cells])):
            d[key + "_holm"] = adjusted
    for k, first in reverse.items():
        for model, by_n in out[k].items():
            for n, d in by_n.items():
                d.update(p_holm=out[first][model][n]["p_holm"], p_wilcoxon_holm=out[first][model][n]["p_wilcoxon_holm"])
    return out


def _reversed(family) -> dict:
    """``{(b, a, metric): (a, b, metric)}`` for each comparison that comes after its reverse (the same test)."""
    order = list(family)
    return {k: (k[1], k[0], k[2]) for i, k in enumerate(order) if (k[1], k[0], k[2]) in order[:i]}


def family_size(family) -> int:
    """The number of comparisons (cells) that :func:`difference_family` adjusted for, a reversed pair once.

    >>> family_size(difference_family(_ROWS, [("a", "b", "accuracy"), ("b", "a", "accuracy")]))
    1
    """
    reverse = _reversed(family)
    return sum(len(by_n) for k, table in family.items() if k not in reverse for by_n in table.values())


def difference_table(rows, a, b, metric="accuracy") -> dict:
    """``{model: {n: paired_difference(...)}}`` for frontends ``a`` and ``b`` (b - a), Holm over its own cells.

    >>> list(difference_table(_ROWS, "a", "b")), list(difference_table(_ROWS, "a", "b")["sbcnn"])
    (['sbcnn'], [1])
    """
    return difference_tables(rows, [(a, b)], metric)[(a, b)]
