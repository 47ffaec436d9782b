"""The one statistics helper of every report: mean, sample standard deviation and t-based confidence
intervals of a mean and of a mean paired difference.

For values :math:`x_1, \\dots, x_k` the mean is :math:`\\bar x = \\frac1k \\sum_i x_i`, the standard deviation
is the sample one, :math:`s = \\sqrt{\\frac{1}{k-1} \\sum_i (x_i - \\bar x)^2}` (``ddof=1``; 0 for one value,
nan for none), and the confidence interval of the mean at coverage ``c`` is
:math:`\\bar x \\pm t_{(1+c)/2,\\,k-1}\\, s / \\sqrt{k}` (Student 1908), taken from scipy
(``scipy.stats.ttest_1samp(...).confidence_interval(c)``; ``ttest_rel`` for paired samples, whose interval is
the one of the differences ``y - x``). A sample without spread has the interval ``(mean, mean)``; one value
has none (``None``).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats

from ..checks import probability
from ..errors import ParameterError

__all__ = ["mean_std", "mean_interval", "paired_interval", "p_text", "CONFIDENCE"]

#: Default coverage of a confidence interval.
CONFIDENCE = 0.95


def mean_std(values) -> tuple[float, float]:
    """``(mean, std)`` of ``values``: the sample standard deviation (``ddof=1``), 0 for one value; nan, nan for none.

    >>> [round(v, 6) for v in mean_std([0.5, 0.6, 0.55])]
    [0.55, 0.05]
    >>> mean_std([0.3])
    (0.3, 0.0)
    """
    v = np.asarray(values, dtype=float).ravel()
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else 0.0)


def _interval(result, mean: float, std: float, confidence: float) -> tuple[float, float]:
    if std == 0.0:  # no spread: t is undefined, the interval is the point
        return mean, mean
    ci = result.confidence_interval(confidence)
    return float(ci.low), float(ci.high)


def mean_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The t-based ``confidence`` interval ``(low, high)`` of the mean of ``values``; None for fewer than two.

    >>> [round(v, 4) for v in mean_interval([0.1, 0.2, 0.4])]
    [-0.1461, 0.6128]
    >>> mean_interval([0.1]) is None
    True
    """
    confidence = probability("confidence", confidence, open_low=True, open_high=True)
    v = np.asarray(values, dtype=float).ravel()
    if v.size < 2:
        return None
    mean, std = mean_std(v)
    with warnings.catch_warnings():  # scipy warns on (nearly) identical values; the interval is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        return _interval(stats.ttest_1samp(v, 0.0), mean, std, confidence)


def paired_interval(y, x, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The t-based ``confidence`` interval of the mean paired difference ``y - x`` (scipy's ``ttest_rel``);
    None for fewer than two pairs.

    >>> [round(v, 3) for v in paired_interval([0.6, 0.7, 0.65], [0.5, 0.6, 0.55])]
    [0.1, 0.1]
    >>> [round(v, 4) for v in paired_interval([0.3, 0.5, 0.9], [0.2, 0.3, 0.5])]
    [-0.1461, 0.6128]
    """
    confidence = probability("confidence", confidence, open_low=True, open_high=True)
    y = np.asarray(y, dtype=float).ravel()
    x = np.asarray(x, dtype=float).ravel()
    if y.size != x.size:
        raise ParameterError(f"paired_interval: y has {y.size} values but x has {x.size}; pairs need both")
    if y.size < 2:
        return None
    mean, std = mean_std(y - x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _interval(stats.ttest_rel(y, x), mean, std, confidence)


def p_text(p) -> str:
    """A p-value as every report writes it: three decimals, ``<0.001`` below that (a paired test whose differences
    are all equal gives p = 0), ``n/a`` when there is none.

    >>> p_text(0.04321), p_text(0.0), p_text(float("nan")), p_text(None)
    ('0.043', '<0.001', 'n/a', 'n/a')
    """
    if p is None or math.isnan(p):
        return "n/a"
    return f"{p:.3f}" if p >= 0.001 else "<0.001"
