"""The ``frontend -> backbone`` classifier, and the base class every backbone derives from.

A backbone maps a batch of (possibly stacked) time-frequency patches
``(batch, in_channels, n_mels, n_frames)`` to class logits ``(batch, n_classes)``.
:class:`Classifier` puts a frontend (:mod:`melfront.frontends`) in front of it, so that a
learnable compression (log-learn, power, PCEN, ...) is trained jointly with the network.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["Backbone", "Classifier", "InputConv2d", "kernel_weights"]

# One pooling/convolution step along one axis: (kernel, stride, padding), output floor((n + 2p - k) / s) + 1.
Op = tuple[int, int, int]


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _trace(n: int, ops: Sequence[Op]) -> int:
    """Size after applying ``ops`` to an axis of ``n`` bins; 0 as soon as any step leaves nothing."""
    for k, s, p in ops:
        n = (n + 2 * p - k) // s + 1 if n + 2 * p >= k else 0
        if n < 1:
            return 0
    return n


def _minimum(ops: Sequence[Op]) -> int:
    n = 1
    while _trace(n, ops) < 1:
        n += 1
    return n


class Backbone(nn.Module):
    """Base of every architecture in :mod:`melfront.models`: validated input shape and the helpers.

    Attributes ``n_classes``, ``n_mels``, ``n_frames`` and ``in_channels`` record what the network
    was built for. Subclasses call :meth:`_require` with the per-axis (kernel, stride, padding) of
    their valid convolutions and poolings so that a too-small input gets a clear ``ValueError`` at
    construction instead of a shape error deep inside ``forward``.
    """

    def __init__(self, n_classes: int, n_mels: int, n_frames: int, in_channels: int = 1):
        super().__init__()
        self.n_classes = _positive_int(n_classes, "n_classes")
        self.n_mels = _positive_int(n_mels, "n_mels")
        self.n_frames = _positive_int(n_frames, "n_frames")
        self.in_channels = _positive_int(in_channels, "in_channels")

    def _require(self, mel_ops: Sequence[Op], frame_ops: Sequence[Op]) -> tuple[int, int]:
        """Raise ``ValueError`` when ``n_mels`` / ``n_frames`` are too small for the ops; return the output size."""
        name = type(self).__name__
        for axis, n, ops in (("n_mels", self.n_mels, mel_ops), ("n_frames", self.n_frames, frame_ops)):
            if _trace(n, ops) < 1:
                raise ValueError(f"{name} needs {axis} >= {_minimum(ops)}, got {n}")
        return _trace(self.n_mels, mel_ops), _trace(self.n_frames, frame_ops)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4:
            raise ValueError(f"{type(self).__name__} expects (batch, channels, n_mels, frames), got shape "
                             f"{tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} was built for in_channels={self.in_channels}, "
                             f"got an input with {x.shape[1]} channels")

    def extra_repr(self) -> str:
        return (f"n_classes={self.n_classes}, n_mels={self.n_mels}, n_frames={self.n_frames}, "
                f"in_channels={self.in_channels}")


class _InputConv2dFunction(torch.autograd.Function):
    """conv2d whose input gradient is computed as a transposed convolution with oneDNN off.

    With a trainable frontend the first convolution must back-propagate to its input. For a
    convolution with few input channels (1 for a mel image, 3 for a stack), oneDNN's
    backward-data is several times slower on CPU than PyTorch's native transposed convolution
    (measured: 350 vs 90 ms for SB-CNN's 24@5x5 on 32 x 128 x 128, see BENCHMARKS.md); the forward
    and the weight gradient keep oneDNN. Values equal autograd's up to float rounding.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, dilation, groups)
        return nn.functional.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conf
        grad_x = grad_w = grad_b = None
        # Under torch.autocast the forward ran in bfloat16 (or float16) and ``grad`` arrives in that type while
        # the saved x and weight are float32: the gradients are computed in the saved tensors' common type.
        dtype = torch.promote_types(x.dtype, weight.dtype)
        x_in, grad = x, grad.to(dtype)
        x, weight = x.to(dtype), weight.to(dtype)
        if ctx.needs_input_grad[0]:
            enabled = torch._C._get_mkldnn_enabled()
            torch._C._set_mkldnn_enabled(False)  # (torch.backends.mkldnn.flags() warns about TF32 each call)
            try:
                grad_x = torch.nn.grad.conv2d_input(x.shape, weight, grad, stride, padding, dilation, groups)
            finally:
                torch._C._set_mkldnn_enabled(enabled)
        if ctx.needs_input_grad[1]:
            grad_w = torch.ops.aten.convolution_backward(grad, x, weight, None, stride, padding, dilation, False,
                                                         [0, 0], groups, [False, True, False])[1]
        if ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        if grad_x is not None:
            grad_x = grad_x.to(x_in.dtype)
        return grad_x, grad_w, grad_b, None, None, None, None


class InputConv2d(nn.Conv2d):
    """``nn.Conv2d`` for a network's first layer: same parameters and values, a faster input gradient on CPU.

    Only when the input requires a gradient (a trainable frontend in front) and runs on the CPU
    with a plain (zero) padding mode does it use :class:`_InputConv2dFunction`; otherwise it is
    ``nn.Conv2d``.
    """

    def forward(self, x):
        if x.requires_grad and x.device.type == "cpu" and self.padding_mode == "zeros" \
                and isinstance(self.padding, tuple) and torch.is_grad_enabled():
            return _InputConv2dFunction.apply(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                                              self.groups)
        return super().forward(x)


def glorot_init(module: nn.Module) -> None:
    """Glorot/Xavier-uniform kernels and zero biases for every conv / linear layer of ``module``.

    This is TensorFlow's default (``variance_scaling(1.0, 'fan_avg', uniform)``), the initialiser
    of the reference implementations of SB-CNN, VGG, TIMBRE and the prototypical network
    (Pons, Serrà & Serra 2019) and of Keras/Lasagne-era models such as Piczak's (2015).
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def kernel_weights(module: nn.Module, layers: str = "all") -> list[nn.Parameter]:
    """The kernels (weights of conv and linear layers, no biases, no batch-norm scales) of ``module``.

    What the reference works apply L2 regularisation to: every kernel in Pons et al. 2019 and
    Piczak 2015 (``layers="all"``), the kernels of the dense layers only in Salamon & Bello 2017
    (``layers="dense"``). A trainer puts these in an optimizer group with ``weight_decay`` and the
    rest in a group without.
    """
    if layers not in ("all", "dense"):
        raise ValueError(f"layers must be 'all' or 'dense', got {layers!r}")
    kinds = (nn.Linear,) if layers == "dense" else (nn.Linear, nn.Conv1d, nn.Conv2d)
    return [m.weight for m in module.modules() if isinstance(m, kinds)]


class Classifier(nn.Module):
    """A frontend followed by a backbone, trained jointly.

    Parameters
    ----------
    frontend : nn.Module
        Has ``input_kind`` (``"mel"``: consumes a linear power mel spectrogram ``(batch, n_mels, frames)``;
        ``"waveform"``: consumes audio ``(batch, time)``) and yields ``(batch, n_mels, frames)`` or,
        stacked, ``(batch, channels, n_mels, frames)``. Its ``out_channels`` (1 if absent) must equal
        the backbone's ``in_channels``.
    backbone : nn.Module
        ``(batch, channels, n_mels, frames) -> (batch, n_classes)`` logits, e.g. from
        :func:`melfront.models.build`.

    ``forward(x)`` returns logits ``(batch, n_classes)``; :meth:`features` returns what the backbone
    reads (frontend output with a channel axis), which the episodic training of a prototypical
    network needs: ``clf.backbone.logits(clf.features(query), clf.features(support), labels)``.
    """

    def __init__(self, frontend: nn.Module, backbone: nn.Module):
        super().__init__()
        if not isinstance(frontend, nn.Module) or not isinstance(backbone, nn.Module):
            raise ValueError("frontend and backbone must both be torch.nn.Module instances")
        kind = getattr(frontend, "input_kind", None)
        if kind not in ("mel", "waveform"):
            raise ValueError(f"frontend must have input_kind 'mel' or 'waveform', got {kind!r}")
        out_ch = getattr(frontend, "out_channels", 1)
        in_ch = getattr(backbone, "in_channels", out_ch)
        if out_ch != in_ch:
            raise ValueError(f"the frontend yields {out_ch} channel(s) but the backbone was built for "
                             f"in_channels={in_ch}")
        self.frontend = frontend
        self.backbone = backbone

    @property
    def input_kind(self) -> str:
        return self.frontend.input_kind

    @property
    def n_classes(self) -> int | None:
        return getattr(self.backbone, "n_classes", None)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Frontend output with a channel axis: ``(batch, channels, n_mels, frames)``."""
        z = self.frontend(x)
        if z.ndim == 3:
            z = z.unsqueeze(1)
        return z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.features(x))
