"""TIMBRE (Pons et al. 2017): one layer of tall timbral filters and a global max."""
from __future__ import annotations

import torch
from torch import nn

from ..checks import positive_int
from .classifier import Backbone, InputConv2d, glorot_init

__all__ = ["Timbre"]


class Timbre(Backbone):
    """A single-layer "timbral" CNN: ``n_classes`` filters of 108 mel bins x 7 frames, global max.

    ``(batch, in_channels, n_mels, n_frames) -> (batch, n_classes)``::

        batch norm on the input (no learned scale/shift)
        conv n_classes @ 108 x 7 valid, no activation
        max over the whole map (frequency and time) -> one logit per filter

    The softmax is left to the loss. Each filter is one class's detector: a vertical (timbre)
    shape spanning most of the spectrum, slid over time (and over the remaining mel positions).
    For one input channel and 10 classes the network has 10 x (108 x 7 + 1) = 7,570 parameters,
    the count Pons et al. report. The input batch norm is kept without affine parameters
    (``affine=False``): a per-channel scale and shift before a linear, activation-free convolution
    is absorbed exactly into that convolution's weights and bias, so the affine version (2 more
    parameters per channel in the TensorFlow original) represents the same functions.

    >>> import torch
    >>> net = Timbre(10).eval()
    >>> tuple(net(torch.randn(1, 1, 128, 128)).shape)  # 10 maps of 21 x 122, each reduced to its maximum
    (1, 10)
    >>> sum(p.numel() for p in net.parameters()), Timbre.min_input(), Timbre.min_input(filter_mels=86)
    (7570, (108, 7), (86, 7))

    Parameters
    ----------
    n_classes : int
        Number of filters = number of logits.
    n_mels, n_frames : int
        Input patch size, default 128 x 128; at least ``filter_mels`` x ``filter_frames``.
    in_channels : int
        Input channels, default 1.
    filter_mels, filter_frames : int
        Filter size, default 108 x 7 (Pons et al. 2019; 86 x 7 was their other choice).
    input_bn : bool
        Normalise the input with batch statistics, default ``True``.

    References
    ----------
    J. Pons, O. Slizovskaia, R. Gong, E. Gómez and X. Serra, "Timbre analysis of music audio
    signals with convolutional neural networks", EUSIPCO 2017.
    J. Pons, J. Serrà and X. Serra, "Training neural audio classifiers with few data", ICASSP 2019.
    """

    def __init__(self, n_classes: int, n_mels: int = 128, n_frames: int = 128, in_channels: int = 1,
                 filter_mels: int = 108, filter_frames: int = 7, input_bn: bool = True):
        super().__init__(n_classes, n_mels, n_frames, in_channels)
        self.filter_mels = positive_int("filter_mels", filter_mels)
        self.filter_frames = positive_int("filter_frames", filter_frames)
        self._require(filter_mels=filter_mels, filter_frames=filter_frames)
        self.input_bn = nn.BatchNorm2d(in_channels, affine=False) if input_bn else nn.Identity()
        self.conv = InputConv2d(in_channels, n_classes, (filter_mels, filter_frames))
        glorot_init(self)

    @classmethod
    def _input_ops(cls, filter_mels: int = 108, filter_frames: int = 7, **options):
        return ([(positive_int("filter_mels", filter_mels), 1, 0)],
                [(positive_int("filter_frames", filter_frames), 1, 0)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.conv(self.input_bn(x)).amax(dim=(-2, -1))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", filter=({self.filter_mels}, {self.filter_frames})"
