"""Combinations of frontends: :class:`Stack` (side by side, as channels) and :class:`Chain` (in sequence).

>>> import torch
>>> from melfront.frontends import Decibel, MinMax, PCEN, Stack
>>> Stack(Decibel(), PCEN())(torch.rand(2, 4, 6)).shape
torch.Size([2, 2, 4, 6])
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ParameterError
from .base import Frontend
from .registry import register_frontend

__all__ = ["Stack", "Chain"]


def _check_modules(owner: str, frontends) -> None:
    if not frontends:
        raise ParameterError(f"{owner} needs at least one frontend")
    for i, f in enumerate(frontends):
        if not isinstance(f, nn.Module):
            raise ParameterError(f"{owner} takes frontend modules, got {type(f).__name__} as frontend {i}")


@register_frontend("stack", "frontends as channels, e.g. stack(db, pcen, power)", combines=True)
class Stack(Frontend):
    """Several frontends side by side as channels: ``(..., n_mels, frames)`` -> ``(..., channels, n_mels, frames)``.

    E.g. ``Stack(Decibel(), PCEN(), PowerLearn())`` is a 3-channel image for image CNNs (the Merlin
    team's colour channels). ``out_channels`` is the total number of channels; a stacked frontend
    that itself yields channels contributes all of them. All frontends must have the same ``input_kind``.

    >>> from melfront.frontends import Decibel, PCEN, PowerLearn
    >>> st = Stack(Decibel(), Stack(PCEN(), PowerLearn()))
    >>> st.out_channels, st(torch.rand(4, 6)).shape, list(st.learned_parameters())
    (3, torch.Size([3, 4, 6]), ['1.1.exponent'])
    """

    def __init__(self, *frontends: nn.Module):
        super().__init__()
        _check_modules("Stack", frontends)
        kinds = {getattr(f, "input_kind", "mel") for f in frontends}
        if len(kinds) != 1:
            raise ParameterError(f"Stack needs frontends with the same input_kind, got {sorted(kinds)}")
        self.input_kind = kinds.pop()
        self.frontends = nn.ModuleList(frontends)
        self.out_channels = sum(int(getattr(f, "out_channels", 1)) for f in frontends)
        self._single = [int(getattr(f, "out_channels", 1)) == 1 for f in frontends]  # needs a channel axis

    def forward(self, x):
        outs = []
        for i, f in enumerate(self.frontends):
            y = f(x)
            outs.append(y.unsqueeze(-3) if self._single[i] else y)
        return torch.cat(outs, dim=-3)

    def learned_parameters(self):
        """``{"i.name": values}``: the learned values of frontend ``i``."""
        return _merge_learned(self.frontends)


@register_frontend("chain", "frontends in sequence, e.g. chain(minmax, db) or db+minmax", combines=True)
class Chain(Frontend):
    """Frontends applied one after the other (also ``a + b``), e.g. ``MinMax() + Decibel()``.

    Nested chains are flattened; ``input_kind`` is the first frontend's, ``out_channels`` the last one's.

    >>> from melfront.frontends import Decibel, LogLearn, MinMax
    >>> ch = Chain(MinMax(), Chain(Decibel(), LogLearn()))
    >>> [type(f).__name__ for f in ch.frontends], sorted(ch.learned_parameters())
    (['MinMax', 'Decibel', 'LogLearn'], ['2.alpha', '2.beta'])
    """

    def __init__(self, *frontends: nn.Module):
        super().__init__()
        _check_modules("Chain", frontends)
        flat = []
        for f in frontends:
            flat.extend(f.frontends if isinstance(f, Chain) else [f])
        self.frontends = nn.ModuleList(flat)
        self.input_kind = getattr(flat[0], "input_kind", "mel")
        self.out_channels = int(getattr(flat[-1], "out_channels", 1))

    def forward(self, x):
        for f in self.frontends:
            x = f(x)
        return x

    def learned_parameters(self):
        """``{"i.name": values}``: the learned values of frontend ``i`` of the (flattened) chain."""
        return _merge_learned(self.frontends)


def _merge_learned(frontends) -> dict[str, list[float]]:
    out = {}
    for i, f in enumerate(frontends):
        fn = getattr(f, "learned_parameters", None)
        if callable(fn):
            for k, v in (fn() or {}).items():
                out[f"{i}.{k}"] = v
    return out
