"""MSTModel: three 1-D convolutions trained to output the normalised log-mel spectrogram of raw audio.

Tax, Diez Antich, Purwins & Maaløe (2017), "Utilizing domain knowledge in end-to-end audio
processing", NIPS 2017 workshop on Machine Learning for Audio (arXiv:1712.00254). The model
("MSTmodel", for mel-spectrogram transformation) learns to imitate the log-mel transform from the
waveform; its layers can then start a raw-waveform classifier (:class:`MSTFrontend`).

This module holds

* :class:`MSTModel` -- the network, ``(batch, time) -> (batch, n_mels, frames)``, frame ``t``
  aligned with frame ``t`` of ``MelSpectrogram(center=True)``;
* :class:`LogMelTarget` -- the regression target: peak-normalised audio -> log-mel in dB ->
  z-scored with training-set statistics -> rescaled to [-1, 1] with the training-set extremes;
* :class:`MSTFrontend` -- the learned layers as a frontend, with their batch-norm transforms kept,
  frozen or trainable.

Checkpoints and the ``"mst"`` frontend spec are in :mod:`melfront.mst.checkpoint`.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as TF

from ..checks import boolean, finite_float, positive_int
from ..errors import ParameterError
from ..frontends import MelSpectrogram

__all__ = ["MSTModel", "LogMelTarget", "MSTFrontend", "peak_normalise", "log_mel_db", "DEFAULT_MEL",
           "SEGMENT_FRAMES"]

#: The target of Tax et al. (2017): 22050 Hz audio, 1024-sample Hann window, hop 512, 60 mel bands
#: (Piczak's 2015 ESC-50 features).
DEFAULT_MEL = dict(sample_rate=22050, n_fft=1024, hop_length=512, n_mels=60)
#: Frames per segment (Piczak's "long" segments, 2.32 s at hop 512 and 22050 Hz).
SEGMENT_FRAMES = 101


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------
class ShiftBatchNorm1d(nn.BatchNorm1d):
    """Batch norm with a learned shift and no scale (TF-slim's ``batch_norm`` default, ``scale=False``).

    >>> bn = ShiftBatchNorm1d(3)
    >>> bn.weight is None, [n for n, _ in bn.named_parameters()]
    (True, ['bias'])
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__(num_features, eps=eps, momentum=momentum, affine=False)
        self.bias = nn.Parameter(torch.zeros(num_features))

    # forward is BatchNorm1d's: F.batch_norm(x, ..., weight=None, bias=self.bias) shifts without scaling

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if getattr(self, "bias", None) is not None:
            nn.init.zeros_(self.bias)


class MSTModel(nn.Module):
    r"""Three 1-D convolutions from the waveform to a log-mel-like image (Tax et al. 2017).

    ``(..., time) -> (..., n_mels, frames)`` with ``frames = 1 + time // hop_length`` (even
    ``n_fft``), the frame count of :class:`melfront.MelSpectrogram` with ``center=True``.

    Layers:

    1. ``Conv1d(1, n_filters=512, kernel=n_fft=1024, stride=hop_length=512)``, batch norm, ReLU.
       The input is zero-padded by ``n_fft // 2`` samples on both sides, as the centred STFT
       pads it, so output frame ``t`` sees samples ``[t*hop - n_fft//2, t*hop + n_fft//2)``:
       the same samples as STFT frame ``t`` (the "same" padding of the paper, aligned with
       ``center=True`` framing).
    2. ``Conv1d(512, n_hidden=256, kernel=3, padding=1)``, batch norm, ReLU.
    3. ``Conv1d(256, n_mels=60, kernel=3, padding=1)``, batch norm, ``tanh`` (the target lies in
       [-1, 1], see :class:`LogMelTarget`).

    Parameters
    ----------
    n_mels : int
        Output bands (default 60).
    n_fft, hop_length : int
        Kernel size and stride of the first layer in samples (default 1024 and 512: one output
        frame per STFT frame of the target).
    n_filters, n_hidden : int
        Channels of the first and second layer (default 512 and 256, as the paper).
    batch_norm : bool
        Batch norm after each convolution (default True, as the paper's MSTmodel). The paper's
        randomly initialised raw-waveform baseline has none: ``batch_norm=False, dropout=0.5``.
    dropout : float
        Dropout probability after each layer's activation (default 0).
    bn_scale : bool
        A learned scale (gamma) in each batch norm (default True, torch's). Tax et al.'s MSTmodel/MSTmodel.py
        (lines 66-82) uses ``slim.batch_norm`` with its defaults: a learned shift, no scale (``scale=False``).
    bn_momentum, bn_eps : float
        Running-statistics momentum (torch convention) and epsilon, default 0.1 and 1e-5 (torch's).
        ``slim.batch_norm``'s defaults, decay 0.999 and epsilon 0.001, are ``bn_momentum=0.001, bn_eps=1e-3``.

    Weights are Xavier(Glorot)-uniform, biases zero (the paper's initialisation).

    Attributes
    ----------
    input_kind : "waveform";  out_channels : 1

    >>> m = MSTModel(n_mels=16, n_fft=256, hop_length=64, n_filters=8, n_hidden=8).eval()
    >>> tuple(m(torch.zeros(2, 640)).shape)  # 1 + 640 // 64 frames
    (2, 16, 11)
    >>> tf = MSTModel(n_mels=4, n_fft=16, hop_length=8, n_filters=2, n_hidden=2, bn_scale=False,
    ...               bn_momentum=0.001, bn_eps=1e-3)
    >>> tf.bn1.weight is None, tf.bn1.bias.shape, tf.bn1.momentum, tf.bn1.eps
    (True, torch.Size([2]), 0.001, 0.001)
    """

    input_kind = "waveform"
    out_channels = 1

    def __init__(self, n_mels: int = 60, n_fft: int = 1024, hop_length: int = 512, n_filters: int = 512,
                 n_hidden: int = 256, batch_norm: bool = True, dropout: float = 0.0, bn_scale: bool = True,
                 bn_momentum: float = 0.1, bn_eps: float = 1e-5):
        super().__init__()
        self.n_mels, self.n_fft = positive_int("n_mels", n_mels), positive_int("n_fft", n_fft)
        self.hop_length = positive_int("hop_length", hop_length)
        self.n_filters, self.n_hidden = positive_int("n_filters", n_filters), positive_int("n_hidden", n_hidden)
        self.batch_norm = boolean("batch_norm", batch_norm)
        self.dropout = finite_float("dropout", dropout, 0.0, 1.0, high_open=True)
        self.bn_scale = boolean("bn_scale", bn_scale)
        self.bn_momentum = finite_float("bn_momentum", bn_momentum, 0.0, 1.0, low_open=True)
        self.bn_eps = finite_float("bn_eps", bn_eps, 0.0, low_open=True)

        def bn(c):
            if not batch_norm:
                return nn.Identity()
            return (nn.BatchNorm1d if bn_scale else ShiftBatchNorm1d)(c, eps=bn_eps, momentum=bn_momentum)

        def drop():
            return nn.Dropout(dropout) if dropout > 0 else nn.Identity()

        self.conv1 = nn.Conv1d(1, n_filters, n_fft, stride=hop_length)
        self.bn1, self.drop1 = bn(n_filters), drop()
        self.conv2 = nn.Conv1d(n_filters, n_hidden, 3, padding=1)
        self.bn2, self.drop2 = bn(n_hidden), drop()
        self.conv3 = nn.Conv1d(n_hidden, n_mels, 3, padding=1)
        self.bn3, self.drop3 = bn(n_mels), drop()
        self.reset_parameters()

    def reset_parameters(self):
        """Xavier-uniform weights and zero biases (Glorot & Bengio 2010), batch norm at identity.

        >>> m = MSTModel(n_mels=4, n_fft=16, hop_length=8, n_filters=2, n_hidden=2)
        >>> m.reset_parameters(); float(m.conv1.bias.detach().abs().sum())
        0.0
        """
        for conv in (self.conv1, self.conv2, self.conv3):
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)
        for m in (self.bn1, self.bn2, self.bn3):
            if isinstance(m, nn.BatchNorm1d):
                m.reset_parameters()
                m.reset_running_stats()

    def num_frames(self, n_samples: int) -> int:
        """Output frames for ``n_samples`` input samples (= ``MelSpectrogram(center=True)``'s count).

        >>> MSTModel(n_mels=4, n_fft=16, hop_length=8, n_filters=2, n_hidden=2).num_frames(80)
        11
        """
        return 1 + (n_samples + 2 * (self.n_fft // 2) - self.n_fft) // self.hop_length

    def config(self) -> dict:
        """Constructor arguments as a JSON-able dict.

        >>> MSTModel(n_mels=4, n_fft=16, hop_length=8, n_filters=2, n_hidden=3).config()["n_hidden"]
        3
        """
        out = dict(n_mels=self.n_mels, n_fft=self.n_fft, hop_length=self.hop_length, n_filters=self.n_filters,
                   n_hidden=self.n_hidden, batch_norm=self.batch_norm, dropout=self.dropout)
        if (self.bn_scale, self.bn_momentum, self.bn_eps) != (True, 0.1, 1e-5):  # older configs stay as they were
            out.update(bn_scale=self.bn_scale, bn_momentum=self.bn_momentum, bn_eps=self.bn_eps)
        return out

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.ndim == 0:
            raise ParameterError("waveform must have a time axis, got a scalar")
        if not waveform.is_floating_point():
            raise ParameterError(f"waveform must be a floating-point tensor, got {waveform.dtype}")
        lead, length = waveform.shape[:-1], waveform.shape[-1]
        if length + 2 * (self.n_fft // 2) < self.n_fft:
            raise ParameterError(f"waveform too short: {length} samples for n_fft={self.n_fft}")
        x = waveform.reshape(-1, 1, length)
        pad = self.n_fft // 2
        x = TF.pad(x, (pad, pad))
        x = self.drop1(torch.relu(self.bn1(self.conv1(x))))
        x = self.drop2(torch.relu(self.bn2(self.conv2(x))))
        x = self.drop3(torch.tanh(self.bn3(self.conv3(x))))
        return x.reshape(list(lead) + [self.n_mels, x.shape[-1]])   # a list: TorchScript cannot unpack a shape

    def extra_repr(self) -> str:
        return f"n_mels={self.n_mels}, n_fft={self.n_fft}, hop_length={self.hop_length}"


# --------------------------------------------------------------------------------------------
# The target
# --------------------------------------------------------------------------------------------
def peak_normalise(waveform: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Divide each ``(..., time)`` signal by its peak absolute value (silent signals stay silent).

    >>> peak_normalise(torch.tensor([[0.5, -2.0], [0.0, 0.0]])).tolist()
    [[0.25, -1.0], [0.0, 0.0]]
    """
    peak = waveform.abs().amax(dim=-1, keepdim=True)
    return waveform / peak.clamp_min(eps)


def log_mel_db(mel_power: torch.Tensor, amin: float = 1e-10, top_db: float | None = 80.0) -> torch.Tensor:
    r"""Power mel spectrogram -> dB: :math:`10 \log_{10} \max(a_{min}, S)`, floored ``top_db`` below
    each spectrogram's maximum (as ``librosa.power_to_db(S, ref=1.0)``; Piczak 2015 and Tax et al.
    used librosa's ``logamplitude``, its predecessor). Shape ``(..., n_mels, frames)`` kept.

    >>> log_mel_db(torch.tensor([[[1.0, 1e-3, 0.0]]]), top_db=20.0).tolist()
    [[[0.0, -20.0, -20.0]]]
    """
    db = 10.0 * torch.log10(mel_power.clamp_min(amin))
    if top_db is not None:
        if top_db < 0:
            raise ParameterError(f"top_db must be non-negative or None, got {top_db}")
        peak = db.amax(dim=(-2, -1), keepdim=True)
        db = torch.maximum(db, peak - top_db)
    return db


class LogMelTarget(nn.Module):
    r"""The MSTModel's regression target: waveform segment -> normalised log-mel in about [-1, 1].

    .. math::
        x \leftarrow x / \max|x|, \quad
        L = \mathrm{dB}(\mathrm{Mel}(x)), \quad
        z = (L - \mu) / \sigma, \quad
        y = 2 (z - z_{min}) / (z_{max} - z_{min}) - 1

    with ``mu, sigma`` the mean and standard deviation of ``L`` over all training-set bands,
    frames and segments, and ``z_min, z_max`` the extremes of ``z`` on the training set: **global**
    scalars, as the authors' released loader computes them (one mean, one std, one min, one max
    for the whole training array), not per band. Values of new audio may fall slightly outside
    [-1, 1]. Statistics are buffers (``mean, std, min, max``), saved in the MST checkpoint.

    ``(..., time) -> (..., n_mels, frames)``, mel parameters as :class:`melfront.MelSpectrogram`
    (``center=True``, zero padding). Default: 22050 Hz, ``n_fft`` 1024, hop 512, 60 mels.
    Set ``normalise_peak=False`` when the input is already peak-normalised.

    >>> t = LogMelTarget(dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=16))
    >>> tuple(t(torch.randn(3, 640)).shape), t.stats()["std"]
    ((3, 16, 11), 1.0)
    """

    input_kind = "waveform"
    out_channels = 1

    def __init__(self, mel: dict | None = None, stats: dict | None = None, normalise_peak: bool = True,
                 top_db: float | None = 80.0):
        super().__init__()
        self.mel_kwargs = dict(DEFAULT_MEL if mel is None else mel)
        self.mel = MelSpectrogram(**self.mel_kwargs)
        self.normalise_peak, self.top_db = boolean("normalise_peak", normalise_peak), top_db
        stats = stats or dict(mean=0.0, std=1.0, min=-1.0, max=1.0)
        for key in ("mean", "std", "min", "max"):
            if key not in stats:
                raise ParameterError(f"stats must have keys mean, std, min, max; missing {key!r}")
            self.register_buffer(key, torch.tensor(finite_float(f"stats[{key!r}]", stats[key]), dtype=torch.float64))
        if not float(self.std) > 0:
            raise ParameterError(f"stats: std must be positive, got {float(self.std)}")
        if not float(self.max) > float(self.min):
            raise ParameterError(f"stats: max ({float(self.max)}) must exceed min ({float(self.min)})")

    def stats(self) -> dict:
        """The training-set statistics ``{"mean", "std", "min", "max"}`` as floats.

        >>> LogMelTarget(stats=dict(mean=-40.0, std=12.0, min=-2.5, max=3.0)).stats()["mean"]
        -40.0
        """
        return {k: float(getattr(self, k)) for k in ("mean", "std", "min", "max")}

    def db(self, waveform: torch.Tensor) -> torch.Tensor:
        """Un-normalised log-mel in dB of (peak-normalised) ``waveform``.

        >>> t = LogMelTarget(dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=16))
        >>> float(t.db(torch.zeros(1, 640)).max())  # silence: the amin floor, 10 log10(1e-10)
        -100.0
        """
        x = peak_normalise(waveform) if self.normalise_peak else waveform
        return log_mel_db(self.mel(x), top_db=self.top_db)

    @torch.no_grad()
    def fit(self, db_batches) -> "LogMelTarget":
        """Set the statistics from an iterable of dB tensors (training set; float64 accumulation).

        >>> t = LogMelTarget().fit([torch.tensor([[[-10.0, -30.0]]])])
        >>> t.stats()
        {'mean': -20.0, 'std': 10.0, 'min': -1.0, 'max': 1.0}
        """
        n, s, ss = 0, 0.0, 0.0
        lo, hi = math.inf, -math.inf
        for d in db_batches:
            d = d.double()
            n += d.numel()
            s += float(d.sum())
            ss += float((d * d).sum())
            lo, hi = min(lo, float(d.min())), max(hi, float(d.max()))
        if n == 0:
            raise ParameterError("fit needs at least one training spectrogram")
        mean = s / n
        std = math.sqrt(max(ss / n - mean * mean, 0.0))
        if std == 0:
            raise ParameterError("training log-mels are constant: cannot z-score them")
        self.mean.fill_(mean)
        self.std.fill_(std)
        self.min.fill_((lo - mean) / std)
        self.max.fill_((hi - mean) / std)
        return self

    def normalise(self, db: torch.Tensor) -> torch.Tensor:
        """dB -> z-score -> [-1, 1] with the stored statistics.

        >>> t = LogMelTarget(stats=dict(mean=-20.0, std=10.0, min=-1.0, max=1.0))
        >>> t.normalise(torch.tensor([-30.0, -20.0, -10.0])).tolist()
        [-1.0, 0.0, 1.0]
        """
        z = (db - self.mean.to(db.dtype)) / self.std.to(db.dtype)
        return 2.0 * (z - self.min.to(db.dtype)) / (self.max - self.min).to(db.dtype) - 1.0

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.normalise(self.db(waveform))

    def config(self) -> dict:
        """Constructor arguments as a JSON-able dict (mel parameters, statistics, options).

        >>> sorted(LogMelTarget().config())
        ['mel', 'normalise_peak', 'stats', 'top_db']
        """
        return dict(mel=self.mel_kwargs, stats=self.stats(), normalise_peak=self.normalise_peak, top_db=self.top_db)


# --------------------------------------------------------------------------------------------
# The learned layers as a frontend
# --------------------------------------------------------------------------------------------
class MSTFrontend(nn.Module):
    """A trained :class:`MSTModel` used as a classifier's first layers: ``(batch, time) -> (batch, n_mels, frames)``.

    The batch-norm transforms learned with the model are kept (the authors' released transfer code
    dropped them, changing the function the layers compute). With ``frozen=True`` no parameter
    requires a gradient and the MST layers stay in eval mode (batch norm on its fixed running
    statistics) even when the parent classifier calls ``.train()``; :meth:`unfreeze` makes the
    whole stack trainable again (fine-tuning, the paper's open question), :meth:`freeze` undoes it.
    ``unfreeze(keep_statistics=True)`` trains the parameters (convolutions and batch-norm scale and
    shift) while the layers stay in eval mode: batch norm keeps normalising with the frozen
    running statistics, so the function computed at the moment of unfreezing is unchanged.
    ``fixed_mode`` is True while the MST layers ignore ``.train()``.

    The model was trained on peak-normalised segments; with ``normalise_peak=True`` (default) each
    input example is divided by its peak absolute value first (idempotent on normalised input), so
    patches cut by any trainer see what the model saw in training.

    >>> m = MSTModel(n_mels=16, n_fft=256, hop_length=64, n_filters=8, n_hidden=8)
    >>> f = MSTFrontend(m, frozen=True).train()
    >>> f.mst.training, any(p.requires_grad for p in f.parameters())
    (False, False)
    """

    input_kind = "waveform"
    out_channels = 1

    def __init__(self, model: MSTModel, frozen: bool = True, config: dict | None = None,
                 normalise_peak: bool = True):
        super().__init__()
        self.normalise_peak = boolean("normalise_peak", normalise_peak)
        if not isinstance(model, MSTModel):
            raise ParameterError(f"model must be an MSTModel, got {type(model).__name__}")
        self.mst = model
        self.n_mels = model.n_mels
        self.checkpoint_config = config or {}
        self.frozen, self.fixed_mode = False, False
        if boolean("frozen", frozen):
            self.freeze()

    def freeze(self) -> "MSTFrontend":
        """No gradients, MST layers in eval mode (running statistics fixed).

        >>> m = MSTModel(n_mels=4, n_fft=16, hop_length=8, n_filters=2, n_hidden=2)
        >>> MSTFrontend(m, frozen=False).freeze().frozen
        True
        """
        self.frozen, self.fixed_mode = True, True
        for p in self.mst.parameters():
            p.requires_grad_(False)
        self.mst.eval()
        return self

    def unfreeze(self, keep_statistics: bool = False) -> "MSTFrontend":
        """Make every MST parameter trainable.

        ``keep_statistics=False``: the MST layers follow the parent's train/eval mode again (batch norm
        normalises with batch statistics in training and updates its running statistics).
        ``keep_statistics=True``: the layers stay in eval mode (batch norm on its running statistics,
        which stay fixed); only the parameters learn.

        >>> m = MSTModel(n_mels=4, n_fft=16, hop_length=8, n_filters=2, n_hidden=2)
        >>> f = MSTFrontend(m).unfreeze(keep_statistics=True).train()
        >>> f.mst.training, all(p.requires_grad for p in f.parameters())
        (False, True)
        """
        self.frozen = False
        self.fixed_mode = boolean("keep_statistics", keep_statistics)
        for p in self.mst.parameters():
            p.requires_grad_(True)
        self.mst.train(self.training and not self.fixed_mode)
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        if self.fixed_mode:
            self.mst.eval()
        return self

    def num_frames(self, n_samples: int) -> int:
        """Output frames for ``n_samples`` input samples.

        >>> MSTFrontend(MSTModel(n_mels=4, n_fft=16, hop_length=8, n_filters=2, n_hidden=2)).num_frames(80)
        11
        """
        return self.mst.num_frames(n_samples)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.mst(peak_normalise(waveform) if self.normalise_peak else waveform)

    def extra_repr(self) -> str:
        return f"frozen={self.frozen}, fixed_mode={self.fixed_mode}, normalise_peak={self.normalise_peak}"
