"""The ``frontend -> backbone`` classifier, and the base class every backbone derives from.

A backbone maps a batch of (possibly stacked) time-frequency patches
``(batch, in_channels, n_mels, n_frames)`` to class logits ``(batch, n_classes)``.
:class:`Classifier` puts a frontend (:mod:`melfront.frontends`) in front of it, so that a
learnable compression (log-learn, power, PCEN, ...) is trained jointly with the network.
"""
from __future__ import annotations

import inspect
from typing import Sequence

import torch
from torch import nn

from ..checks import one_of, positive_int
from ..errors import ParameterError

__all__ = ["Backbone", "Classifier", "InputConv2d", "kernel_weights", "glorot_init"]

# One pooling/convolution step along one axis: (kernel, stride, padding), output floor((n + 2p - k) / s) + 1.
Op = tuple[int, int, int]
# The constructor arguments that are the input's shape, not architecture options.
_SHAPE_ARGS = ("self", "n_classes", "n_mels", "n_frames", "in_channels")


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
    was built for. A subclass lists the per-axis (kernel, stride, padding) of its valid convolutions
    and poolings in the classmethod ``_input_ops(**options)``; from them

    - :meth:`min_input` says, before anything is built, the smallest ``(n_mels, n_frames)`` the
      architecture takes with those options (what :func:`melfront.train.fitted.backbone_minimum` asks);
    - :meth:`_require`, called by the constructor, refuses a smaller input with a
      :class:`~melfront.errors.ParameterError` naming the axis, instead of a shape error deep inside
      ``forward``, and returns the size of the last map.

    An axis of ``n`` bins leaves ``floor((n + 2 p - k) / s) + 1`` after each step; the minimum is the
    smallest ``n`` that leaves at least one bin after every step.

    >>> from melfront.models import SBCNN
    >>> SBCNN.min_input()
    (32, 100)
    >>> SBCNN(10, n_mels=32, n_frames=99)
    Traceback (most recent call last):
    ...
    melfront.errors.ParameterError: SBCNN needs n_frames >= 100, got 99
    """

    def __init__(self, n_classes: int, n_mels: int, n_frames: int, in_channels: int = 1):
        super().__init__()
        self.n_classes = positive_int("n_classes", n_classes)
        self.n_mels = positive_int("n_mels", n_mels)
        self.n_frames = positive_int("n_frames", n_frames)
        self.in_channels = positive_int("in_channels", in_channels)

    @classmethod
    def options(cls) -> list[str]:
        """The architecture options of the constructor (every argument but the input shape and ``n_classes``).

        >>> from melfront.models import Timbre
        >>> Timbre.options()
        ['filter_mels', 'filter_frames', 'input_bn']
        """
        return [p for p in inspect.signature(cls.__init__).parameters if p not in _SHAPE_ARGS]

    @classmethod
    def check_options(cls, options: dict) -> None:
        """``ParameterError`` naming any key of ``options`` that the constructor does not take."""
        unknown = sorted(set(options) - set(cls.options()))
        if unknown:
            raise ParameterError(f"unknown option(s) {unknown} for {cls.__name__}; accepted: "
                                 f"{', '.join(cls.options())}")

    @classmethod
    def _input_ops(cls, **options) -> tuple[Sequence[Op], Sequence[Op]]:
        """``(mel_ops, frame_ops)`` of the architecture with ``options``; none by default (any size works)."""
        return (), ()

    @classmethod
    def min_input(cls, **options) -> tuple[int, int]:
        """The smallest ``(n_mels, n_frames)`` the architecture accepts with the constructor options ``options``.

        Options that do not change the minimum may be given or left out; an unknown one is a
        ``ParameterError``. The minimum does not depend on ``in_channels`` or ``n_classes``.

        >>> from melfront.models import VGG
        >>> VGG.min_input(), VGG.min_input(n_blocks=3)
        ((32, 32), (8, 8))
        """
        cls.check_options(options)
        mel_ops, frame_ops = cls._input_ops(**options)
        return _minimum(mel_ops), _minimum(frame_ops)

    def _require(self, **options) -> tuple[int, int]:
        """Refuse an ``n_mels`` / ``n_frames`` below :meth:`min_input`; return the last map's ``(mels, frames)``."""
        least = type(self).min_input(**options)
        for axis, n, low in zip(("n_mels", "n_frames"), (self.n_mels, self.n_frames), least):
            if n < low:
                raise ParameterError(f"{type(self).__name__} needs {axis} >= {low}, got {n}")
        mel_ops, frame_ops = type(self)._input_ops(**options)
        return _trace(self.n_mels, mel_ops), _trace(self.n_frames, frame_ops)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4:
            raise ParameterError(f"{type(self).__name__} expects (batch, channels, n_mels, frames), got shape "
                                 f"{tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ParameterError(f"{type(self).__name__} was built for in_channels={self.in_channels}, "
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

    >>> import torch
    >>> conv, ref = InputConv2d(1, 4, 3), torch.nn.Conv2d(1, 4, 3)
    >>> _ = ref.load_state_dict(conv.state_dict())
    >>> x = torch.randn(2, 1, 8, 8, requires_grad=True)
    >>> g1, = torch.autograd.grad(conv(x).sum(), x)
    >>> g2, = torch.autograd.grad(ref(x).sum(), x)
    >>> torch.allclose(g1, g2, atol=1e-5)
    True
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

    >>> import torch
    >>> layer = torch.nn.Linear(200, 100)
    >>> glorot_init(layer)
    >>> bound = (6 / (200 + 100)) ** 0.5  # U(-bound, bound)
    >>> bool(layer.weight.abs().max() <= bound), bool((layer.bias == 0).all())
    (True, True)
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

    >>> from melfront.models import SBCNN
    >>> [tuple(w.shape) for w in kernel_weights(SBCNN(10), "dense")]
    [(64, 2400), (10, 64)]
    >>> len(kernel_weights(SBCNN(10)))  # three convolutions and two dense layers
    5
    """
    one_of("layers", layers, ("all", "dense"))
    kinds = (nn.Linear,) if layers == "dense" else (nn.Linear, nn.Conv1d, nn.Conv2d)
    return [m.weight for m in module.modules() if isinstance(m, kinds)]


def set_batch_norm(module: nn.Module, momentum: float | None = None, eps: float | None = None) -> None:
    """Set ``momentum`` and ``eps`` (None: leave as is) on every batch-norm layer of ``module``, e.g. TensorFlow's
    ``batch_normalization`` defaults (decay 0.99, epsilon 1e-3) are torch's momentum 0.01, eps 1e-3.

    >>> from melfront.models import SBCNN
    >>> net = SBCNN(10, input_bn=True); set_batch_norm(net, 0.01, 1e-3)
    >>> {(m.momentum, m.eps) for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    {(0.01, 0.001)}
    """
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if momentum is not None:
                m.momentum = float(momentum)
            if eps is not None:
                m.eps = float(eps)


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

    >>> import torch
    >>> from melfront.frontends import MelSpectrogram
    >>> from melfront.models import Timbre
    >>> frontend = MelSpectrogram(sample_rate=8000, n_fft=256, hop_length=64, n_mels=40)
    >>> clf = Classifier(frontend, Timbre(3, n_mels=40, n_frames=26, filter_mels=30)).eval()
    >>> clf.input_kind, tuple(clf(torch.randn(2, 1600)).shape)  # 1600 samples -> 26 frames -> 3 logits
    ('waveform', (2, 3))
    """

    def __init__(self, frontend: nn.Module, backbone: nn.Module):
        super().__init__()
        for name, module in (("frontend", frontend), ("backbone", backbone)):
            if not isinstance(module, nn.Module):
                raise ParameterError(f"{name} must be a torch.nn.Module, got {type(module).__name__}")
        kind = getattr(frontend, "input_kind", None)
        if kind not in ("mel", "waveform"):
            raise ParameterError(f"frontend must have input_kind 'mel' or 'waveform', got {kind!r}")
        out_ch = getattr(frontend, "out_channels", 1)
        in_ch = getattr(backbone, "in_channels", out_ch)
        if out_ch != in_ch:
            raise ParameterError(f"the frontend yields {out_ch} channel(s) but the backbone was built for "
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
