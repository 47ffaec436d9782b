"""Process-level fast paths: glibc's allocator for tensor-sized blocks, channels-last evaluation, bf16 autocast.

**Allocator.** glibc's ``malloc`` serves blocks above its mmap threshold (dynamic, at most 32 MiB on 64-bit)
with fresh ``mmap`` pages and unmaps them on ``free``. A training step's activations (SB-CNN: 100 x 24 x 124
x 124 floats, 148 MB) are above it, so every step maps, zero-fills (page faults) and returns hundreds of MB:
measured 37 % of a plain PyTorch loop's CPU time as system time (issue 20). :func:`tune_allocator` calls
``mallopt`` (glibc's documented tunables, ``man 3 mallopt``) so that such blocks come from the heap and
freed ones are reused: ``M_MMAP_MAX = 0`` (no mmap-served blocks), ``M_TRIM_THRESHOLD`` = 1 GiB (free memory
at the top of the heap beyond this is still returned to the system: the resident size stays bounded by the
peak working set plus 1 GiB), ``M_TOP_PAD`` = 64 MiB (heap growth in large steps). This is what the
environment variables ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...`` do, applied at start-up by the
CLI, the study's worker processes and Ray tasks. It is a no-op off glibc (macOS, Windows, musl), when
``MELFRONT_MALLOC=system`` is set, or when the user set any ``MALLOC_*_`` variable (theirs wins).

**channels-last.** oneDNN's convolutions and max-pools run faster on NHWC maps for some networks and slower for
others; measured on the 2-core development machine (one thread, fp32, one training step, BENCHMARKS.md):
SB-CNN 1.13x (logeps) to 1.46x (loglearn; its max-pools 7x faster), VGG-32 1.36x, ResNet 1.2x, the protonet's
VGG 1.58x, but TIMBRE 0.27x and PiczakCNN 0.72x. :func:`channels_last_preferred` says which backbones the
:class:`~melfront.train.Trainer` keeps in channels-last (values unchanged, results equal to float rounding);
:func:`channels_last` switches a module for the duration of a block.

**bf16.** :func:`autocast` is ``torch.autocast(device, bfloat16)`` for ``precision="bf16"`` and a no-op for
``"fp32"``; frontends switch autocast off inside (:class:`melfront.frontends.Frontend`), so they stay float32.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys

from .checks import one_of

# torch is imported inside the functions that need it: the CLI calls tune_allocator before any command
# (``melfront --help`` and ``melfront report`` stay torch-free).

__all__ = ["tune_allocator", "allocator_state", "channels_last", "channels_last_preferred", "autocast",
           "default_device", "seed_everything"]

#: Backbones (class names) measured faster in channels-last, training and evaluation (module docstring).
CHANNELS_LAST = ("SBCNN", "VGG", "ResNet", "ProtoNet")

# glibc malloc.h
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -2, -3, -4
_GIB, _MIB = 1 << 30, 1 << 20
_STATE: dict = {}


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()  # only glibc has it
        return libc
    except (OSError, AttributeError):
        return None


def tune_allocator(trim_threshold: int = _GIB, top_pad: int = 64 * _MIB, mmap_max: int = 0) -> dict:
    """Set glibc's malloc for tensor-sized blocks (see the module docstring); returns what was set.

    Idempotent (a second call does nothing). Returns ``{"applied": bool, "reason": str, ...settings}``:
    ``applied`` False off glibc, with ``MELFRONT_MALLOC=system`` or when ``MALLOC_*_`` variables are set.
    ``trim_threshold`` and ``top_pad`` are bounded to [128 KiB, 4 GiB], ``mmap_max`` to [0, 65536].

    >>> state = tune_allocator()
    >>> state["applied"] in (True, False), tune_allocator() == state
    (True, True)
    """
    if _STATE:
        return dict(_STATE)
    trim_threshold = min(max(int(trim_threshold), 128 * 1024), 4 * _GIB)
    top_pad = min(max(int(top_pad), 128 * 1024), 4 * _GIB)
    mmap_max = min(max(int(mmap_max), 0), 65536)
    reason = None
    if os.environ.get("MELFRONT_MALLOC", "").lower() == "system":
        reason = "MELFRONT_MALLOC=system"
    elif any(k.startswith("MALLOC_") and k.endswith("_") for k in os.environ):
        reason = "MALLOC_*_ environment variables set"
    libc = None if reason else _libc()
    if reason is None and libc is None:
        reason = "not glibc"
    if reason is None:
        ok = all(libc.mallopt(param, value) == 1 for param, value in
                 ((_M_MMAP_MAX, mmap_max), (_M_TRIM_THRESHOLD, trim_threshold), (_M_TOP_PAD, top_pad)))
        reason = "mallopt" if ok else "mallopt refused a value"
        _STATE.update(applied=ok, reason=reason, mmap_max=mmap_max, trim_threshold=trim_threshold, top_pad=top_pad)
    else:
        _STATE.update(applied=False, reason=reason)
    return dict(_STATE)


def allocator_state() -> dict:
    """What :func:`tune_allocator` did in this process (empty if it was not called).

    >>> isinstance(allocator_state(), dict)
    True
    """
    return dict(_STATE)


def channels_last_preferred(backbone) -> bool:
    """Whether ``backbone`` (or the network a wrapper holds as ``.net``) is one measured faster in channels-last.

    >>> from melfront import models
    >>> channels_last_preferred(models.build("sbcnn", 10)), channels_last_preferred(models.build("timbre", 10))
    (True, False)
    """
    return type(getattr(backbone, "net", backbone)).__name__ in CHANNELS_LAST


@contextlib.contextmanager
def channels_last(module, enabled: bool = True):
    """Inside the block, ``module``'s 4-D parameters and buffers are channels-last (values unchanged).

    Convolutions then produce channels-last maps (oneDNN's faster layout on CPU for some networks). The layout
    is restored on exit; parameters stay the same objects (an optimizer keeps its references). ``enabled``
    False: nothing changes.

    >>> import torch
    >>> conv = torch.nn.Conv2d(2, 3, 3)
    >>> with channels_last(conv):
    ...     inside = conv.weight.is_contiguous(memory_format=torch.channels_last)
    >>> inside, conv.weight.is_contiguous()
    (True, True)
    """
    import torch

    if not enabled:
        yield module
        return
    tensors = [t for t in list(module.parameters()) + list(module.buffers()) if t.dim() == 4]
    before = [t.data for t in tensors]
    for t in tensors:
        t.data = t.data.contiguous(memory_format=torch.channels_last)
    try:
        yield module
    finally:
        for t, old in zip(tensors, before):
            old.copy_(t.data)  # a block that changed the values (it should not) keeps its change
            t.data = old


def autocast(device, precision: str = "fp32"):
    """``torch.autocast(device type, bfloat16)`` for ``precision="bf16"``, a no-op context for ``"fp32"``.

    >>> import torch
    >>> with autocast("cpu", "bf16"):
    ...     y = torch.nn.functional.linear(torch.ones(1, 4), torch.ones(2, 4))
    >>> y.dtype, autocast("cpu", "fp32").__class__.__name__
    (torch.bfloat16, 'nullcontext')
    """
    import torch

    one_of("precision", precision, ("fp32", "bf16"))
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def default_device() -> str:
    """``"cuda"`` when a GPU is usable, else ``"cpu"``.

    >>> default_device() in ("cuda", "cpu")
    True
    """
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global generator and torch (CPU and CUDA).

    >>> import torch
    >>> seed_everything(3); a = torch.rand(1); seed_everything(3); bool(torch.rand(1) == a)
    True
    """
    import random

    import numpy as np
    import torch
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
