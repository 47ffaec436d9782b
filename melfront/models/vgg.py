"""The small VGG-like network of Pons, Serrà & Serra (2019), width 32 or 128."""
from __future__ import annotations

import torch
from torch import nn

from ..checks import positive_int, probability
from .classifier import Backbone, InputConv2d, glorot_init

__all__ = ["VGG"]


class VGG(Backbone):
    """VGG-like CNN: input batch norm, then ``n_blocks`` x [3x3 conv, ELU, batch norm, 2x2 max-pool].

    ``(batch, in_channels, n_mels, n_frames) -> (batch, n_classes)``::

        batch norm on the input
        5 x [conv width @ 3x3 same, ELU, batch norm, max-pool 2x2]
        flatten, dropout 0.5, dense n_classes

    With ``width=32`` and a 128 x 128 one-channel input the last map is 32 x 4 x 4 and the
    network has 42,764 trainable parameters for 10 classes (Pons et al. 2019 round it to 42.8k);
    ``width=128`` is their larger variant and, with ``n_classes=10``, the embedding of their
    prototypical network (:class:`melfront.models.ProtoNet`). Kernels Glorot-uniform, biases zero.

    >>> import torch
    >>> net = VGG(10).eval()
    >>> z = net.features(net.input_bn(torch.randn(1, 1, 128, 128)))  # the last map
    >>> tuple(z.shape), tuple(net.head(z).shape)
    ((1, 32, 4, 4), (1, 10))
    >>> sum(p.numel() for p in net.parameters()), VGG.min_input(), VGG.min_input(n_blocks=3)
    (42764, (32, 32), (8, 8))

    Parameters
    ----------
    n_classes : int
        Output size (logits, or embedding dimensions when used as an embedding).
    n_mels, n_frames : int
        Input patch size, default 128 x 128; at least ``2 ** n_blocks`` each.
    in_channels : int
        Input channels, default 1.
    width : int
        Filters per convolution, default 32 (Pons et al. also use 128).
    n_blocks : int
        Number of conv blocks, default 5.
    dropout : float
        Dropout before the dense layer, default 0.5.

    References
    ----------
    J. Pons, J. Serrà and X. Serra, "Training neural audio classifiers with few data", ICASSP 2019.
    K. Simonyan and A. Zisserman, "Very deep convolutional networks for large-scale image
    recognition", ICLR 2015 (the 3x3-stack design).
    """

    def __init__(self, n_classes: int, n_mels: int = 128, n_frames: int = 128, in_channels: int = 1,
                 width: int = 32, n_blocks: int = 5, dropout: float = 0.5):
        super().__init__(n_classes, n_mels, n_frames, in_channels)
        self.width, self.n_blocks = positive_int("width", width), positive_int("n_blocks", n_blocks)
        probability("dropout", dropout, open_high=True)
        mel_h, time_w = self._require(n_blocks=n_blocks)
        self.input_bn = nn.BatchNorm2d(in_channels)
        blocks = []
        for i in range(n_blocks):
            blocks += [(InputConv2d if i == 0 else nn.Conv2d)(in_channels if i == 0 else width, width, 3, padding=1), nn.ELU(),
                       nn.BatchNorm2d(width), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(width * mel_h * time_w, n_classes))
        glorot_init(self)

    @classmethod
    def _input_ops(cls, n_blocks: int = 5, **options):
        pool = [(2, 2, 0)] * positive_int("n_blocks", n_blocks)  # the 3x3 'same' convolutions keep the size
        return pool, pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.head(self.features(self.input_bn(x)))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", width={self.width}, n_blocks={self.n_blocks}"
