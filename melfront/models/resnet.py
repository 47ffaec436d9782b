"""A ResNet-18-style image CNN (He et al. 2016) for one- or multi-channel spectrogram stacks."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..checks import positive_int
from ..errors import ParameterError
from .classifier import Backbone, InputConv2d

__all__ = ["ResNet", "BasicBlock"]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projection) shortcut.

    ``(batch, in_planes, h, w) -> (batch, planes, ceil(h / stride), ceil(w / stride))``:

    >>> import torch
    >>> block = BasicBlock(8, 16, stride=2)
    >>> tuple(block(torch.randn(2, 8, 9, 10)).shape), sum(p.numel() for p in block.parameters())
    ((2, 16, 5, 5), 3680)
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(Backbone):
    """ResNet-18 layout: 7x7/2 stem, 3x3/2 max-pool, four stages of basic blocks, global average pool.

    ``(batch, in_channels, n_mels, n_frames) -> (batch, n_classes)``::

        conv width @ 7x7 stride 2, batch norm, ReLU, max-pool 3x3 stride 2
        stage i (i = 0..3): layers[i] BasicBlocks with width * 2**i filters (stride 2 from stage 1 on)
        adaptive average pool to 1x1, dense n_classes

    With ``width=64`` and ``layers=(2, 2, 2, 2)`` this is He et al.'s ResNet-18 (11,689,512
    parameters for 1000 classes and 3 channels; 11,181,642 for 10 classes; 6,272 fewer for one
    input channel). Any input of at least 1 x 1 works, thanks to the adaptive pooling; stacked
    frontends enter as channels, like colour planes. ``width`` shrinks it (``width=16``: about
    0.7 M parameters). Kaiming-normal (fan-out) convolution kernels, batch-norm scale 1, shift 0.

    >>> import torch
    >>> net = ResNet(10, n_mels=32, n_frames=24, width=8).eval()
    >>> tuple(net(torch.randn(1, 1, 32, 24)).shape), sum(p.numel() for p in net.parameters())
    ((1, 10), 176578)
    >>> ResNet.min_input()
    (1, 1)

    Parameters
    ----------
    n_classes : int
        Output logits.
    n_mels, n_frames : int
        Input size (only recorded and validated: the network accepts any size).
    in_channels : int
        Input channels, default 1 (3 for three stacked frontends).
    width : int
        Filters of the stem and first stage, default 64.
    layers : sequence of 4 ints
        Blocks per stage, default ``(2, 2, 2, 2)`` (ResNet-18; ``(3, 4, 6, 3)`` gives ResNet-34).

    References
    ----------
    K. He, X. Zhang, S. Ren and J. Sun, "Deep residual learning for image recognition", CVPR 2016.
    """

    def __init__(self, n_classes: int, n_mels: int = 128, n_frames: int = 128, in_channels: int = 1,
                 width: int = 64, layers: Sequence[int] = (2, 2, 2, 2)):
        super().__init__(n_classes, n_mels, n_frames, in_channels)
        self.width = positive_int("width", width)
        layers = tuple(layers) if isinstance(layers, (list, tuple)) else layers
        if not isinstance(layers, tuple) or len(layers) != 4:
            raise ParameterError(f"layers must be 4 positive integers (blocks per stage), got {layers!r}")
        self.layers = tuple(positive_int(f"layers[{i}]", n) for i, n in enumerate(layers))
        self._require()
        self.stem = nn.Sequential(
            InputConv2d(in_channels, width, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages, in_planes = [], width
        for i, n in enumerate(layers):
            planes = width * 2 ** i
            blocks = [BasicBlock(in_planes, planes, stride=1 if i == 0 else 2)]
            blocks += [BasicBlock(planes, planes) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            in_planes = planes
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, n_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @classmethod
    def _input_ops(cls, **options):
        # stem conv 7x7/2 (pad 3), max-pool 3x3/2 (pad 1), stride-2 3x3 convs (pad 1) in stages 1-3:
        # each step maps a single bin to a single bin, so any input size works
        ops = [(7, 2, 3), (3, 2, 1)] + [(3, 2, 1)] * 3
        return ops, ops

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.fc(self.pool(self.stages(self.stem(x))).flatten(1))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", width={self.width}, layers={self.layers}"
