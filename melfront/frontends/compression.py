"""Compression frontends: linear power mel spectrogram ``(..., n_mels, frames)`` -> same shape.

Fixed laws (:class:`Decibel`, :class:`LogOffset`, :class:`LogEPS`, :class:`Log10000`, :class:`LogFloor`,
:class:`MinMax`) and learned ones (:class:`LogLearn`, :class:`PowerLearn`).

>>> import torch
>>> from melfront.frontends import LogEPS
>>> LogEPS()(torch.tensor([[1.0, 100.0]])).tolist()
[[0.0, 2.0]]
"""
from __future__ import annotations

import math
import warnings
from typing import Optional

import torch
from torch import nn

from .. import functional as F
from ..checks import positive_float
from ..errors import ParameterError
from .base import Frontend, band_count, float32_parameter, legacy_band_order
from .registry import register_frontend

__all__ = ["Decibel", "LogOffset", "LogEPS", "Log10000", "LogLearn", "LogFloor", "PowerLearn", "MinMax"]

# ``compress`` calls melfront.functional (argument checks, then the law's one body); ``compress_plain`` calls
# that body, ``F.*_plain``, directly: TorchScript cannot compile the checks, export and compile need none
# (Frontend.forward chooses; tests/test_scripting.py and tests/test_export.py check that both agree).


@register_frontend("db", "decibels, librosa.power_to_db (ref, amin, top_db per example)", input_kind="mel")
class Decibel(Frontend):
    """``librosa.power_to_db`` with ``ref`` ("max" or a number), ``amin`` and ``top_db`` taken per example.

    See :func:`melfront.functional.power_to_db`. Defaults ``ref=1.0, amin=1e-10, top_db=80``.
    A spectrogram with no frames (or no bands) gives an empty output of the same shape.

    >>> Decibel(ref="max")(torch.tensor([[1.0, 0.1, 1e-12]])).tolist()
    [[0.0, -10.0, -80.0]]
    >>> Decibel()(torch.zeros(2, 4, 0)).shape
    torch.Size([2, 4, 0])
    """

    def __init__(self, ref=1.0, amin: float = 1e-10, top_db: float | None = 80.0):
        super().__init__()
        F.power_to_db(torch.ones(1, 1), ref, amin, top_db)  # validates the arguments
        self.ref, self.amin, self.top_db = ref, float(amin), top_db
        self._ref_max = isinstance(ref, str)
        self._ref = 1.0 if self._ref_max else float(ref)  # typed for TorchScript (ref may be "max")
        self._top_db: Optional[float] = None if top_db is None else float(top_db)
        self._fix_settings(ref=ref if isinstance(ref, str) else float(ref), amin=self.amin, top_db=top_db)

    def compress(self, x):
        return F.power_to_db(x, self.ref, self.amin, self.top_db)

    def compress_plain(self, x: torch.Tensor) -> torch.Tensor:
        ref: Optional[torch.Tensor] = None
        if not self._ref_max:
            ref = torch.full((), self._ref, dtype=x.dtype, device=x.device)
        return F.power_to_db_plain(x, ref, self.amin, self._top_db)

    def extra_repr(self):
        return f"ref={self.ref!r}, amin={self.amin:g}, top_db={self.top_db}"


@register_frontend("logoffset", "fixed log(alpha X + beta), any base", input_kind="mel")
class LogOffset(Frontend):
    r"""Fixed logarithm :math:`\log_{base}(\alpha X + \beta)`; see :func:`melfront.functional.log_offset`.

    Defaults ``alpha=1``, ``beta=2.22e-16`` (machine epsilon), ``base="e"``. ``alpha`` and ``beta`` must
    be finite and positive.

    >>> LogOffset(alpha=10.0, beta=1.0, base=10)(torch.tensor([[0.0, 9.9]])).tolist()
    [[0.0, 2.0]]
    """

    def __init__(self, alpha: float = 1.0, beta: float = F.LOG_EPS, base="e"):
        super().__init__()
        alpha, beta = positive_float("alpha", alpha), positive_float("beta", beta)
        F.log_offset(torch.ones(1, 1), alpha, beta, base)  # validates base
        self.alpha, self.beta, self.base = alpha, beta, base
        self._scale = 1.0 if base == "e" else 1.0 / math.log(float(base))
        self._fix_settings(alpha=alpha, beta=beta, base=base if isinstance(base, str) else float(base))

    def compress(self, x):
        return F.log_offset(x, self.alpha, self.beta, self.base)

    def compress_plain(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_offset_plain(x, torch.full((), self.alpha, dtype=x.dtype, device=x.device),
                                  torch.full((), self.beta, dtype=x.dtype, device=x.device), self._scale)

    def extra_repr(self):
        return f"alpha={self.alpha:g}, beta={self.beta:g}, base={self.base!r}"


@register_frontend("logeps", "log10(X + machine epsilon), Pons et al.'s log-EPS", input_kind="mel")
class LogEPS(LogOffset):
    """``log10(X + eps)`` with the machine epsilon ``eps = 2.22e-16``: Pons, Serrà & Serra (2019)'s "log-EPS".

    >>> LogEPS().beta
    2.220446049250313e-16
    """

    def __init__(self):
        super().__init__(1.0, F.LOG_EPS, 10)


@register_frontend("log10000", "log10(10000 X + 1)", input_kind="mel")
class Log10000(LogOffset):
    """``log10(10000 X + 1)``, a common fixed log compression (e.g. Pons et al. 2019's baselines).

    >>> Log10000()(torch.tensor([[0.0, 0.0999]])).tolist()
    [[0.0, 3.0]]
    """

    def __init__(self):
        super().__init__(10000.0, 1.0, 10)


@register_frontend("loglearn", "learned log(alpha X + beta), global or per band (Pons et al.)", input_kind="mel")
class LogLearn(Frontend):
    r"""Learned logarithm :math:`\log(\alpha X + \beta)` (Pons, Serrà & Serra 2019, "log-learn").

    :math:`\alpha = e^{t_a}` and :math:`\beta = \mathrm{softplus}(t_b)` keep both positive; the
    trainable pre-gates start at ``init_alpha=7`` and ``init_beta=1`` (:math:`\alpha_0 = 1096.63`,
    :math:`\beta_0 = 1.31`, as Pons et al.). ``per_band=True`` learns one pair per mel band
    (needs ``n_mels``; ``n_mels, per_band`` come first, in that order, in every per-band frontend). Read the learned values as ``.alpha`` and ``.beta`` (vectors when per band).
    The pre-gates are float32: a start value whose :math:`\alpha` or :math:`\beta` is not finite and
    positive in float32 (``init_alpha`` outside about (-103, 88.7), ``init_beta`` below about -103)
    is refused.

    While training, each pre-gate is clamped to :attr:`GATE_RANGE` (widened to include its start
    value, so that the initial output is unchanged) before the transform: :math:`\alpha` stays in
    about :math:`[4 \cdot 10^{-18}, 2 \cdot 10^{17}]` and :math:`\beta \ge 4 \cdot 10^{-18}`, so
    :math:`\alpha X + \beta` neither overflows (for any mel power below about :math:`10^{21}`) nor
    reaches 0 (silence gives :math:`\log\beta \ge -40`). The gradients with respect to the
    pre-gates are at most 1 times the output's; at a bound they are 0. Unbounded, SGD at lr 0.1
    drove :math:`\alpha` to ``inf`` (NaN outputs) within a few hundred steps.

    >>> f = LogLearn(per_band=True, n_mels=3)
    >>> values = f.learned_parameters()
    >>> f.alpha.shape, round(values["alpha"][0], 2), round(values["beta"][0], 2)
    (torch.Size([3]), 1096.63, 1.31)
    >>> with torch.no_grad():
    ...     _ = f.pre_alpha.fill_(1e4)   # far beyond float32's exp: clamped to GATE_RANGE
    >>> bool(torch.isfinite(f(torch.full((3, 2), 1e3))).all()), f"{f.alpha[0].item():.3g}"
    (True, '2.35e+17')
    """

    readable = ("alpha", "beta")
    #: ``(low, high)`` of the pre-gates ``t_a`` and ``t_b`` while training (widened to include the start values).
    GATE_RANGE = (-40.0, 40.0)

    def __init__(self, n_mels: int | None = None, per_band: bool = False, init_alpha: float = 7.0,
                 init_beta: float = 1.0):
        super().__init__()
        n_mels, per_band = legacy_band_order("LogLearn", n_mels, per_band)
        n_mels = band_count("LogLearn", per_band, n_mels)
        init_alpha = float32_parameter("init_alpha", init_alpha, torch.exp, "alpha = exp(init_alpha)")
        init_beta = float32_parameter("init_beta", init_beta, nn.functional.softplus, "beta = softplus(init_beta)")
        self.per_band, self.n_mels = bool(per_band), n_mels
        self._param("pre_alpha", init_alpha, per_band, n_mels, True)
        self._param("pre_beta", init_beta, per_band, n_mels, True)
        low, high = self.GATE_RANGE
        self.alpha_low, self.alpha_high = min(low, init_alpha), max(high, init_alpha)
        self.beta_low, self.beta_high = min(low, init_beta), max(high, init_beta)

    @property
    def alpha(self) -> torch.Tensor:
        """:math:`\\alpha = e^{t_a}`, the learned gain (``t_a`` clamped to its range)."""
        return torch.exp(torch.clamp(self.pre_alpha, self.alpha_low, self.alpha_high))

    @property
    def beta(self) -> torch.Tensor:
        """:math:`\\beta = \\mathrm{softplus}(t_b)`, the learned offset (``t_b`` clamped to its range)."""
        return nn.functional.softplus(torch.clamp(self.pre_beta, self.beta_low, self.beta_high))

    def compress(self, x):
        return F.log_offset(x, self.alpha.to(x.dtype), self.beta.to(x.dtype))

    def compress_plain(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_offset_plain(x, self.alpha.to(x.dtype), self.beta.to(x.dtype))

    def extra_repr(self):
        return f"per_band={self.per_band}, n_mels={self.n_mels}"


@register_frontend("logfloor", "log(max(X, floor)), the Macaulay/Merlin decibel form", input_kind="mel")
class LogFloor(Frontend):
    """``log(max(X, floor))``, the Macaulay Library / Merlin "decibel" form (natural log); ``floor=1e-6``.

    >>> LogFloor(floor=1.0)(torch.tensor([[0.0, 1.0]])).tolist()
    [[0.0, 0.0]]
    """

    def __init__(self, floor: float = 1e-6):
        super().__init__()
        self.floor = positive_float("floor", floor)
        self._fix_settings(floor=self.floor)

    def compress(self, x):
        return F.log_floor(x, self.floor)

    def compress_plain(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_floor_plain(x, self.floor)

    def extra_repr(self):
        return f"floor={self.floor:g}"


@register_frontend("power", "learned power X ** sigmoid(a), global or per band (Schlueter 2018)", input_kind="mel")
class PowerLearn(Frontend):
    r"""Learned power law :math:`X^{\sigma(a)} = X^{1 / (1 + e^{-a})}` (Schlüter 2018).

    ``a`` starts at ``init_a=0`` (the square root) and the exponent stays in (0, 1). ``per_band``
    learns one exponent per mel band (needs ``n_mels``). Read it as ``.exponent``. ``a`` is float32:
    an ``init_a`` whose exponent underflows to 0 in float32 (below about -103) is refused. While
    training, ``a`` is clamped to :attr:`GATE_RANGE` (widened to include ``init_a``, so that the
    initial output is unchanged) before the sigmoid: the exponent never underflows to exactly 0.
    ``init``, the old name of ``init_a`` (PCEN's ``init`` is a start mode), still works with a
    ``DeprecationWarning``, in specs too (``power(init=2.0)``).

    Sign convention: melfront's exponent is :math:`\sigma(a) = 1 / (1 + e^{-a})`, so a larger ``a``
    compresses less (``a -> +inf``: exponent 1, no compression). The Macaulay Library's Merlin blog
    (Cornell Lab of Ornithology, on spectrogram compression for Merlin Sound ID) writes the same law
    as :math:`S^{1 / (1 + e^{a})}`: its ``a`` is minus melfront's (a larger blog ``a`` compresses
    more). Both start at ``a = 0``, the square root. To start from a blog value ``a_blog``, pass
    ``init_a=-a_blog``.

    >>> PowerLearn()(torch.tensor([[4.0, 9.0]])).tolist()
    [[2.0, 3.0]]
    >>> round(float(PowerLearn(init_a=2.0).exponent.detach()), 4), round(1 / (1 + math.exp(-2.0)), 4)  # sigmoid(+2)
    (0.8808, 0.8808)
    """

    readable = ("exponent",)
    #: ``(low, high)`` of ``a`` while training (widened to include the start value).
    GATE_RANGE = (-40.0, 40.0)

    def __init__(self, n_mels: int | None = None, per_band: bool = False, init_a: float = 0.0,
                 init: float | None = None):
        super().__init__()
        n_mels, per_band = legacy_band_order("PowerLearn", n_mels, per_band)
        n_mels = band_count("PowerLearn", per_band, n_mels)
        name = "init_a"
        if init is not None:  # the name before 2026-12; PCEN's init is a start mode, not a number
            if init_a != 0.0:
                raise ParameterError(f"PowerLearn got init_a={init_a!r} and init={init!r}: pass init_a only "
                                     f"(init is its old name)")
            warnings.warn("PowerLearn(init=...) is deprecated: the start value of a is now init_a "
                          "(power(init_a=...) in specs)", DeprecationWarning, stacklevel=2)
            name, init_a = "init", init
        init_a = float32_parameter(name, init_a, torch.sigmoid, f"exponent = sigmoid({name})")
        self.per_band, self.n_mels = bool(per_band), n_mels
        self._param("a", init_a, per_band, n_mels, True)
        self.a_low, self.a_high = min(self.GATE_RANGE[0], init_a), max(self.GATE_RANGE[1], init_a)

    @property
    def exponent(self) -> torch.Tensor:
        """:math:`\\sigma(a)`, the learned exponent in (0, 1) (``a`` clamped to its range)."""
        return torch.sigmoid(torch.clamp(self.a, self.a_low, self.a_high))

    def compress(self, x):
        return F.power_compress(x, self.exponent.to(x.dtype))

    def compress_plain(self, x: torch.Tensor) -> torch.Tensor:
        return F.power_compress_plain(x, self.exponent.to(x.dtype))

    def extra_repr(self):
        return f"per_band={self.per_band}, n_mels={self.n_mels}"


@register_frontend("minmax", "per-example rescale to [0, 1]", input_kind="mel")
class MinMax(Frontend):
    """Rescale each example to [0, 1] over ``(n_mels, frames)`` (the Merlin pipeline normalises before and after compression).

    A spectrogram with no frames (or no bands) gives an empty output of the same shape.

    >>> MinMax()(torch.tensor([[2.0, 4.0, 3.0]])).tolist()
    [[0.0, 1.0, 0.5]]
    >>> MinMax()(torch.zeros(3, 0)).shape
    torch.Size([3, 0])
    """

    def __init__(self):
        super().__init__()

    def compress(self, x):
        return F.minmax(x)

    def compress_plain(self, x: torch.Tensor) -> torch.Tensor:
        return F.minmax_plain(x)
