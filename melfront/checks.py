"""Argument checks shared by every public function and constructor.

Each check returns the value (converted to a plain Python type) or raises
:class:`~melfront.errors.ParameterError` naming the argument. Booleans are never accepted as numbers,
floats never as integers: ``n_mels=2.5`` is an error, not 2.

>>> from melfront.checks import positive_int, probability
>>> positive_int("n_mels", 64)
64
>>> probability("overlap", 0.5)
0.5
>>> positive_int("n_mels", 2.5)
Traceback (most recent call last):
...
melfront.errors.ParameterError: n_mels must be a positive integer, got 2.5
"""
from __future__ import annotations

import math
import numbers

from .errors import ParameterError

__all__ = ["positive_int", "nonnegative_int", "probability", "finite_float", "positive_float", "boolean",
           "one_of", "optional"]


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(name: str, value) -> int:
    """``value`` as an ``int`` >= 1; ``ParameterError`` for anything else (bools and floats included)."""
    if not _is_int(value) or value < 1:
        raise ParameterError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def nonnegative_int(name: str, value) -> int:
    """``value`` as an ``int`` >= 0.

    >>> nonnegative_int("pad", 0)
    0
    """
    if not _is_int(value) or value < 0:
        raise ParameterError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def finite_float(name: str, value, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite ``float`` in ``[low, high]`` (``(low, ...`` with ``low_open``).

    >>> finite_float("alpha", 0.98, 0.0, 1.0)
    0.98
    >>> finite_float("alpha", float("inf"))
    Traceback (most recent call last):
    ...
    melfront.errors.ParameterError: alpha must be a finite number, got inf
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ParameterError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ParameterError(f"{name} must be a finite number, got {value!r}")
    if low is not None and (v < low or (low_open and v == low)):
        raise ParameterError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and (v > high or (high_open and v == high)):
        raise ParameterError(f"{name} must be {'<' if high_open else '<='} {high}, got {value!r}")
    return v


def positive_float(name: str, value) -> float:
    """``value`` as a finite ``float`` > 0.

    >>> positive_float("eps", 1e-6)
    1e-06
    """
    return finite_float(name, value, 0.0, low_open=True)


def probability(name: str, value, open_low: bool = False, open_high: bool = False) -> float:
    """``value`` as a finite ``float`` in ``[0, 1]`` (ends excluded on request)."""
    return finite_float(name, value, 0.0, 1.0, low_open=open_low, high_open=open_high)


def boolean(name: str, value) -> bool:
    """``value`` if it is a ``bool`` (numpy bools included); ``'yes'``, ``1`` and the like are refused.

    >>> boolean("trainable", True)
    True
    """
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise ParameterError(f"{name} must be True or False, got {value!r}")


def one_of(name: str, value, choices) -> object:
    """``value`` if it is one of ``choices``.

    >>> one_of("init", "first", ("first", "zero"))
    'first'
    """
    if not isinstance(value, (str, int, float, type(None))) or value not in tuple(choices):
        raise ParameterError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def optional(check, name: str, value, *args, **kwargs):
    """``None`` passes; anything else goes through ``check(name, value, ...)``.

    >>> optional(positive_int, "fmax", None) is None
    True
    """
    return None if value is None else check(name, value, *args, **kwargs)
