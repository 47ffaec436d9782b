"""PiczakCNN (Piczak 2015): two convolutions and two 5000-unit dense layers on short log-mel segments."""
from __future__ import annotations

import torch
from torch import nn

from .. import functional as F
from ..checks import boolean, positive_int, probability
from ..errors import ParameterError
from .classifier import Backbone, InputConv2d, glorot_init

__all__ = ["PiczakCNN"]


def _check_delta_width(width) -> int:
    if positive_int("delta_width", width) < 3 or width % 2 == 0:
        raise ParameterError(f"delta_width must be an odd integer >= 3, got {width!r}")
    return width


class PiczakCNN(Backbone):
    """Piczak's environmental-sound CNN on 60-band segments of 41 (short) or 101 (long) frames.

    ``(batch, in_channels, n_mels, n_frames) -> (batch, n_classes)``::

        [deltas of the input stacked as extra channels, if deltas=True]
        conv 80 @ 57 x 6 (mel x time) valid, ReLU, max-pool 4 x 3 stride 1 x 3, dropout 0.5
        conv 80 @ 1 x 3 valid, ReLU, max-pool 1 x 3 stride 1 x 3
        flatten, dense 5000, ReLU, dropout 0.5, dense 5000, ReLU, dropout 0.5, dense n_classes

    The layers as recalled from Piczak 2015, Sec. 2 (not checked against the paper's text in this
    workspace): 80 filters of 57 x 6, max-pooling 4 x 3 with stride 1 x 3; then 80 filters of 1 x 3,
    max-pooling 1 x 3 with stride 1 x 3; two dense layers of 5000 units. With 60 mels the first
    convolution leaves 4 mel rows, which its pooling reduces to one, so the second works along time
    only. Frames: ``t -> t - 5`` (conv 6) ``-> (t - 5 - 3) // 3 + 1`` (pool 3, stride 3) ``-> - 2``
    (conv 3) ``-> (... - 3) // 3 + 1`` (pool 3, stride 3). The channels of the input (1, or 2 with
    deltas) do not change these shapes. For 60 x 41 the last map is 80 x 1 x 3 (240 values into the
    first dense layer); for 60 x 101, 80 x 1 x 10 (800 values):

    >>> import torch
    >>> for frames in (41, 101):
    ...     net = PiczakCNN(10, n_frames=frames, deltas=True, hidden=8)
    ...     x = torch.rand(2, 1, 60, frames)
    ...     z = net.features(torch.cat([x, x], dim=1))  # what forward feeds it: input and deltas
    ...     print(frames, tuple(z.shape[1:]), net.head[1].in_features, tuple(net(x).shape))
    41 (80, 1, 3) 240 (2, 10)
    101 (80, 1, 10) 800 (2, 10)

    Other ``n_mels`` work (the first kernel stays 57 tall, the dense layer grows with what is left)
    but 60 is what the network was made for.

    Deltas (Piczak 2015: log-mel and its deltas as two input channels) are off by default. In
    training, turn them on with ``model_options={"deltas": True}`` (:class:`melfront.train.TrainSettings`),
    on the command line ``melfront train --model piczak --set 'model_options={"deltas": true}'`` (the
    value is JSON; a dotted key such as ``model_options.deltas`` is not understood), or in
    :func:`melfront.models.build` as ``build("piczak", n_classes, deltas=True)``:

    >>> PiczakCNN(10, hidden=8).features[0].in_channels, PiczakCNN(10, hidden=8, deltas=True).features[0].in_channels
    (1, 2)

    Parameters at the default size (60 x 41, 1 channel, 10 classes, ``hidden=5000``): 26,306,730,
    almost all in the two dense layers; the smallest input is 60 x 20 (and ``delta_width`` frames
    with deltas):

    >>> sum(p.numel() for p in PiczakCNN(10, hidden=8).parameters())  # hidden=8 keeps the example fast
    48810
    >>> PiczakCNN.min_input(), PiczakCNN.min_input(deltas=True, delta_width=25)
    ((60, 20), (60, 25))

    Parameters
    ----------
    n_classes : int
        Output logits.
    n_mels, n_frames : int
        Segment size, default 60 x 41 (short); 60 x 101 is Piczak's long variant. At least
        60 mels x 20 frames (and ``delta_width`` frames with deltas).
    in_channels : int
        Channels of the input, default 1.
    deltas : bool
        If ``True``, ``forward`` computes :func:`melfront.functional.deltas` of the input along
        time (Savitzky-Golay, ``delta_width`` frames, as ``librosa.feature.delta``) and stacks them
        after the input channels, so the convolutions see ``2 * in_channels`` channels whatever the
        frontend. Piczak's 2-channel setting is ``in_channels=1, deltas=True``. Default ``False``.
    delta_width : int
        Width of the delta filter in frames (odd, >= 3), default 9.
    hidden : int
        Units of each dense layer, default 5000.
    dropout : float
        Dropout rate, default 0.5.
    dropout_before_pool : bool
        Default ``False``: conv, ReLU, pool, dropout in the first block. ``True``: conv, ReLU, dropout, pool,
        the order of Tax et al.'s EnvClassification/Models/PiczakCNN.py (lines 62-64). The weights are the
        same modules either way (a checkpoint loads into both).

    References
    ----------
    K. J. Piczak, "Environmental sound classification with convolutional neural networks",
    IEEE International Workshop on Machine Learning for Signal Processing (MLSP), 2015.
    """

    def __init__(self, n_classes: int, n_mels: int = 60, n_frames: int = 41, in_channels: int = 1,
                 deltas: bool = False, delta_width: int = 9, hidden: int = 5000, dropout: float = 0.5,
                 dropout_before_pool: bool = False):
        super().__init__(n_classes, n_mels, n_frames, in_channels)
        self.hidden = positive_int("hidden", hidden)
        probability("dropout", dropout, open_high=True)
        self.deltas, self.delta_width = boolean("deltas", deltas), delta_width
        mel_h, time_w = self._require(deltas=deltas, delta_width=delta_width)
        channels = in_channels * (2 if deltas else 1)
        self.dropout_before_pool = boolean("dropout_before_pool", dropout_before_pool)
        first = [nn.MaxPool2d((4, 3), stride=(1, 3)), nn.Dropout(dropout)]
        self.features = nn.Sequential(
            InputConv2d(channels, 80, (57, 6)), nn.ReLU(), *(first[::-1] if self.dropout_before_pool else first),
            nn.Conv2d(80, 80, (1, 3)), nn.ReLU(), nn.MaxPool2d((1, 3), stride=(1, 3)),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(80 * mel_h * time_w, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, n_classes),
        )
        glorot_init(self)

    @classmethod
    def _input_ops(cls, **options):
        # conv 57 x 6, pool 4 x 3 stride 1 x 3, conv 1 x 3, pool 1 x 3 stride 1 x 3 (all valid)
        return [(57, 1, 0), (4, 1, 0), (1, 1, 0), (1, 1, 0)], [(6, 1, 0), (3, 3, 0), (3, 1, 0), (3, 3, 0)]

    @classmethod
    def min_input(cls, **options) -> tuple[int, int]:
        """As :meth:`Backbone.min_input`, and with ``deltas=True`` at least ``delta_width`` frames."""
        n_mels, n_frames = super().min_input(**options)
        if options.get("deltas", False):
            n_frames = max(n_frames, _check_delta_width(options.get("delta_width", 9)))
        return n_mels, n_frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        if self.deltas:
            x = torch.cat([x, F.deltas(x, width=self.delta_width)], dim=1)
        return self.head(self.features(x))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", deltas={self.deltas}, hidden={self.hidden}"
