"""Published protocols as presets (``melfront presets``, ``melfront compare --preset NAME``).

Importing this package registers the built-in presets: pons2019-us8k, pons2019-tut, merlin, tax2017.

>>> from melfront.presets import PRESETS
>>> isinstance(PRESETS, dict)
True
"""
from .registry import PRESETS, STATUSES, Claim, Plan, Preset, Setting, get_preset, register_preset
from . import pons2019, merlin, tax2017  # noqa: F401,E402  (each registers its presets, in this order)

__all__ = ["PRESETS", "STATUSES", "Claim", "Plan", "Preset", "Setting", "get_preset", "register_preset"]
