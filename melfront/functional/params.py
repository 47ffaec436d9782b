"""Checks and conversions of the tensor arguments shared by the compressions and PCEN.

A spectrogram argument is a floating-point tensor ``(..., n_mels, frames)``; a compression
parameter is a float, a 0-d tensor or a per-band vector ``(n_mels,)``.

>>> import torch
>>> band_param([1.0, 2.0], torch.zeros(3, 2, 5), "alpha").shape
torch.Size([2, 1])
"""
from __future__ import annotations

import torch

from ..errors import ParameterError

__all__ = ["check_spec", "band_param"]


def check_spec(x, name: str = "x", min_ndim: int = 1) -> None:
    """``ParameterError`` naming ``name`` unless ``x`` is a floating-point tensor with ``>= min_ndim`` dimensions.

    >>> check_spec(torch.ones(4, 10), min_ndim=2)
    >>> check_spec(torch.ones(4, dtype=torch.int64))
    Traceback (most recent call last):
    ...
    melfront.errors.ParameterError: x must be a floating-point tensor, got torch.int64
    """
    if not torch.is_tensor(x):
        raise ParameterError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ParameterError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if x.ndim < min_ndim:
        raise ParameterError(f"{name} must have at least {min_ndim} dimensions (..., n_mels, frames), "
                             f"got shape {tuple(x.shape)}")


def band_param(value, like: torch.Tensor, name: str) -> torch.Tensor:
    """A float, a 0-d tensor or a per-band vector ``(n_mels,)`` -> tensor broadcastable to ``(..., n_mels, 1)``.

    The result has ``like``'s dtype and device; a 0-d value stays 0-d, a vector gets a trailing
    axis so that it scales each mel band (axis -2) of ``like`` ``(..., n_mels, frames)``.

    >>> band_param(0.5, torch.zeros(2, 3), "r")
    tensor(0.5000)
    """
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if t.ndim == 0:
        return t
    if t.ndim == 1:
        if like.ndim < 2 or t.shape[0] not in (1, like.shape[-2]):
            raise ParameterError(f"{name} has {t.shape[0]} values but the input has shape {tuple(like.shape)} "
                                 f"(per-band parameters need one value per mel band, axis -2)")
        return t.unsqueeze(-1)
    raise ParameterError(f"{name} must be a number or a 1-D per-band vector, got shape {tuple(t.shape)}")
