"""SB-CNN (Salamon & Bello 2017), in the form Pons, Serrà & Serra (2019) used it."""
from __future__ import annotations

import torch
from torch import nn

from ..checks import probability
from .classifier import Backbone, InputConv2d, glorot_init

__all__ = ["SBCNN"]

_CONV = (5, 1, 0)


class SBCNN(Backbone):
    """SB-CNN: three 5x5 valid convolutions and two dense layers.

    ``(batch, in_channels, n_mels, n_frames) -> (batch, n_classes)`` logits::

        [batch norm on the input, optional]
        conv 24 @ 5x5 valid, ReLU, max-pool 2 (mel) x 4 (time)
        conv 48 @ 5x5 valid, ReLU, max-pool 2 x 4
        conv 48 @ 5x5 valid, ReLU
        flatten, dropout 0.5, dense 64, ReLU, dropout 0.5, dense n_classes

    For a 128 mel x 128 frame, 1-channel input the last map is 48 x 25 x 2 and the network has
    241,434 parameters for 10 classes (the count Pons et al. 2019 report). Poolings floor, as
    TensorFlow's ``valid`` pooling does. Kernels are Glorot-uniform, biases zero.

    >>> import torch
    >>> net = SBCNN(10).eval()
    >>> z = net.features(torch.randn(1, 1, 128, 128))  # the last map
    >>> tuple(z.shape), tuple(net.head(z).shape)
    ((1, 48, 25, 2), (1, 10))
    >>> sum(p.numel() for p in net.parameters()), SBCNN.min_input()
    (241434, (32, 100))

    Parameters
    ----------
    n_classes : int
        Number of output logits.
    n_mels, n_frames : int
        Input patch size (default 128 x 128, 3 s at 44.1 kHz with hop 1024); at least 32 mels x
        100 frames.
    in_channels : int
        Channels of the input (stacked frontends), default 1.
    input_bn : bool
        Batch norm on the input (``True`` adds 2 parameters per channel: Pons et al.'s "SB-CNN | BN
        input" variant). Default ``False``: Salamon & Bello's network.
    dropout : float
        Dropout rate before each dense layer, default 0.5.

    References
    ----------
    J. Salamon and J. P. Bello, "Deep convolutional neural networks and data augmentation for
    environmental sound classification", IEEE Signal Processing Letters 24(3), 2017.
    J. Pons, J. Serrà and X. Serra, "Training neural audio classifiers with few data", ICASSP 2019.
    """

    def __init__(self, n_classes: int, n_mels: int = 128, n_frames: int = 128, in_channels: int = 1,
                 input_bn: bool = False, dropout: float = 0.5):
        super().__init__(n_classes, n_mels, n_frames, in_channels)
        probability("dropout", dropout, open_high=True)
        mel_h, time_w = self._require()
        self.input_bn = nn.BatchNorm2d(in_channels) if input_bn else nn.Identity()
        self.features = nn.Sequential(
            InputConv2d(in_channels, 24, 5), nn.ReLU(), nn.MaxPool2d((2, 4)),
            nn.Conv2d(24, 48, 5), nn.ReLU(), nn.MaxPool2d((2, 4)),
            nn.Conv2d(48, 48, 5), nn.ReLU(),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(48 * mel_h * time_w, 64), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(64, n_classes),
        )
        glorot_init(self)

    @classmethod
    def _input_ops(cls, **options):
        # three valid 5x5 convolutions; max-pool 2 (mel) x 4 (time) after the first two
        return ([_CONV, (2, 2, 0), _CONV, (2, 2, 0), _CONV],
                [_CONV, (4, 4, 0), _CONV, (4, 4, 0), _CONV])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.head(self.features(self.input_bn(x)))
