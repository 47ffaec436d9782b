"""MSTModel: three 1-D convolutions trained to output the normalised log-mel spectrogram of raw audio.

Tax, Diez Antich, Purwins & Maaløe (2017), "Utilizing domain knowledge in end-to-end audio
processing", NIPS 2017 workshop on Machine Learning for Audio (arXiv:1712.00254). The model
("MSTmodel", for mel-spectrogram transformation) learns to imitate the log-mel transform from the
waveform; its layers can then start a raw-waveform classifier (:func:`mst_frontend`).

This module holds

* :class:`MSTModel` -- the network, ``(batch, time) -> (batch, n_mels, frames)``, frame ``t``
  aligned with frame ``t`` of ``MelSpectrogram(center=True)``;
* :class:`LogMelTarget` -- the regression target: peak-normalised audio -> log-mel in dB ->
  z-scored with training-set statistics -> rescaled to [-1, 1] with the training-set extremes;
* :class:`MSTFrontend` / :func:`mst_frontend` -- the learned layers as a frontend, with their
  batch-norm transforms kept, frozen or trainable;
* :func:`save_mst` / :func:`load_mst` -- checkpoints (``torch.save`` of ``{"format", "version",
  "config", "state_dict"}``, read back with ``weights_only=True``).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as TF

__all__ = ["MSTModel", "LogMelTarget", "MSTFrontend", "mst_frontend", "save_mst", "load_mst",
           "peak_normalise", "log_mel_db", "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION"]

CHECKPOINT_FORMAT = "melfront-mst"
CHECKPOINT_VERSION = 1

# The target of Tax et al. (2017): 22050 Hz audio, 1024-sample Hann window, hop 512, 60 mel bands
# (Piczak's 2015 ESC-50 features), segments of 101 frames.
DEFAULT_MEL = dict(sample_rate=22050, n_fft=1024, hop_length=512, n_mels=60)
SEGMENT_FRAMES = 101


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------
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

    Weights are Xavier(Glorot)-uniform, biases zero (the paper's initialisation).

    Attributes
    ----------
    input_kind : "waveform";  out_channels : 1
    """

    input_kind = "waveform"
    out_channels = 1

    def __init__(self, n_mels: int = 60, n_fft: int = 1024, hop_length: int = 512, n_filters: int = 512,
                 n_hidden: int = 256, batch_norm: bool = True, dropout: float = 0.0):
        super().__init__()
        for name, value in (("n_mels", n_mels), ("n_fft", n_fft), ("hop_length", hop_length),
                            ("n_filters", n_filters), ("n_hidden", n_hidden)):
            _check_positive_int(name, value)
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.n_mels, self.n_fft, self.hop_length = n_mels, n_fft, hop_length
        self.n_filters, self.n_hidden = n_filters, n_hidden
        self.batch_norm, self.dropout = bool(batch_norm), float(dropout)

        def bn(c):
            return nn.BatchNorm1d(c) if batch_norm else nn.Identity()

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
        """Xavier-uniform weights and zero biases (Glorot & Bengio 2010), batch norm at identity."""
        for conv in (self.conv1, self.conv2, self.conv3):
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)
        for m in (self.bn1, self.bn2, self.bn3):
            if isinstance(m, nn.BatchNorm1d):
                m.reset_parameters()
                m.reset_running_stats()

    def num_frames(self, n_samples: int) -> int:
        """Output frames for ``n_samples`` input samples (= ``MelSpectrogram(center=True)``'s count)."""
        return 1 + (n_samples + 2 * (self.n_fft // 2) - self.n_fft) // self.hop_length

    def config(self) -> dict:
        """Constructor arguments as a JSON-able dict."""
        return dict(n_mels=self.n_mels, n_fft=self.n_fft, hop_length=self.hop_length, n_filters=self.n_filters,
                    n_hidden=self.n_hidden, batch_norm=self.batch_norm, dropout=self.dropout)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.ndim == 0:
            raise ValueError("waveform must have a time axis, got a scalar")
        if not waveform.is_floating_point():
            raise TypeError(f"waveform must be a floating-point tensor, got {waveform.dtype}")
        lead, length = waveform.shape[:-1], waveform.shape[-1]
        if length + 2 * (self.n_fft // 2) < self.n_fft:
            raise ValueError(f"waveform too short: {length} samples for n_fft={self.n_fft}")
        x = waveform.reshape(-1, 1, length)
        pad = self.n_fft // 2
        x = TF.pad(x, (pad, pad))
        x = self.drop1(torch.relu(self.bn1(self.conv1(x))))
        x = self.drop2(torch.relu(self.bn2(self.conv2(x))))
        x = self.drop3(torch.tanh(self.bn3(self.conv3(x))))
        return x.reshape(*lead, self.n_mels, x.shape[-1])

    def extra_repr(self) -> str:
        return f"n_mels={self.n_mels}, n_fft={self.n_fft}, hop_length={self.hop_length}"


# --------------------------------------------------------------------------------------------
# The target
# --------------------------------------------------------------------------------------------
def peak_normalise(waveform: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Divide each ``(..., time)`` signal by its peak absolute value (silent signals stay silent)."""
    peak = waveform.abs().amax(dim=-1, keepdim=True)
    return waveform / peak.clamp_min(eps)


def log_mel_db(mel_power: torch.Tensor, amin: float = 1e-10, top_db: float | None = 80.0) -> torch.Tensor:
    r"""Power mel spectrogram -> dB: :math:`10 \log_{10} \max(a_{min}, S)`, floored ``top_db`` below
    each spectrogram's maximum (as ``librosa.power_to_db(S, ref=1.0)``; Piczak 2015 and Tax et al.
    used librosa's ``logamplitude``, its predecessor). Shape ``(..., n_mels, frames)`` kept."""
    db = 10.0 * torch.log10(mel_power.clamp_min(amin))
    if top_db is not None:
        if top_db < 0:
            raise ValueError(f"top_db must be non-negative or None, got {top_db}")
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
    Set ``peak_normalise=False`` when the input is already peak-normalised.
    """

    input_kind = "waveform"
    out_channels = 1

    def __init__(self, mel: dict | None = None, stats: dict | None = None, normalise_peak: bool = True,
                 top_db: float | None = 80.0):
        super().__init__()
        from ..frontends import MelSpectrogram
        self.mel_kwargs = dict(DEFAULT_MEL if mel is None else mel)
        self.mel = MelSpectrogram(**self.mel_kwargs)
        self.normalise_peak, self.top_db = bool(normalise_peak), top_db
        stats = stats or dict(mean=0.0, std=1.0, min=-1.0, max=1.0)
        for key in ("mean", "std", "min", "max"):
            if key not in stats:
                raise ValueError(f"stats must have keys mean, std, min, max; missing {key!r}")
            self.register_buffer(key, torch.tensor(float(stats[key]), dtype=torch.float64))
        self._check_stats()

    def _check_stats(self):
        if not float(self.std) > 0:
            raise ValueError(f"stats: std must be positive, got {float(self.std)}")
        if not float(self.max) > float(self.min):
            raise ValueError(f"stats: max ({float(self.max)}) must exceed min ({float(self.min)})")

    def stats(self) -> dict:
        return {k: float(getattr(self, k)) for k in ("mean", "std", "min", "max")}

    def db(self, waveform: torch.Tensor) -> torch.Tensor:
        """Un-normalised log-mel in dB of (peak-normalised) ``waveform``."""
        x = peak_normalise(waveform) if self.normalise_peak else waveform
        return log_mel_db(self.mel(x), top_db=self.top_db)

    @torch.no_grad()
    def fit(self, db_batches) -> "LogMelTarget":
        """Set the statistics from an iterable of dB tensors (training set; float64 accumulation)."""
        n, s, ss = 0, 0.0, 0.0
        lo, hi = math.inf, -math.inf
        for d in db_batches:
            d = d.double()
            n += d.numel()
            s += float(d.sum())
            ss += float((d * d).sum())
            lo, hi = min(lo, float(d.min())), max(hi, float(d.max()))
        if n == 0:
            raise ValueError("fit needs at least one training spectrogram")
        mean = s / n
        std = math.sqrt(max(ss / n - mean * mean, 0.0))
        if std == 0:
            raise ValueError("training log-mels are constant: cannot z-score them")
        self.mean.fill_(mean)
        self.std.fill_(std)
        self.min.fill_((lo - mean) / std)
        self.max.fill_((hi - mean) / std)
        return self

    def normalise(self, db: torch.Tensor) -> torch.Tensor:
        """dB -> z-score -> [-1, 1] with the stored statistics."""
        z = (db - self.mean.to(db.dtype)) / self.std.to(db.dtype)
        return 2.0 * (z - self.min.to(db.dtype)) / (self.max - self.min).to(db.dtype) - 1.0

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.normalise(self.db(waveform))

    def config(self) -> dict:
        return dict(mel=self.mel_kwargs, stats=self.stats(), normalise_peak=self.normalise_peak, top_db=self.top_db)


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------
def save_mst(path, model: MSTModel, target: LogMelTarget | None = None, extra: dict | None = None) -> Path:
    """Write ``{"format": "melfront-mst", "version": 1, "config": {...}, "state_dict": ...}``.

    ``config`` is JSON-able: ``model`` (constructor arguments), ``target`` (mel parameters and the
    training-set statistics of :class:`LogMelTarget`) and anything in ``extra`` (e.g. metrics,
    training clips). The file is written to a temporary name and renamed (atomic).
    """
    import os
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {"model": model.config(), "target": target.config() if target is not None else None}
    config.update(extra or {})
    blob = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": config,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)
    return path


def load_mst(path, map_location="cpu"):
    """Read a checkpoint written by :func:`save_mst` -> ``(MSTModel, LogMelTarget or None, config)``.

    Loaded with ``torch.load(weights_only=True)``. Raises ``FileNotFoundError`` for a missing file
    and ``ValueError`` naming the file for anything that is not an MST checkpoint of this version
    or whose weights do not fit the configured model.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MST checkpoint not found: {path}")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle/zip errors, non-tensor objects refused by weights_only, ...
        raise ValueError(f"{path}: not a readable MST checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        fmt = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise ValueError(f"{path}: not an MST checkpoint (format {fmt!r}, expected {CHECKPOINT_FORMAT!r}; "
                         f"write one with `melfront learn-mel`)")
    if blob.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: MST checkpoint version {blob.get('version')!r} is not supported "
                         f"(this melfront reads version {CHECKPOINT_VERSION})")
    config = blob.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict) or "state_dict" not in blob:
        raise ValueError(f"{path}: MST checkpoint lacks its config or state_dict")
    try:
        model = MSTModel(**config["model"])
        model.load_state_dict(blob["state_dict"])
    except (TypeError, RuntimeError, ValueError) as exc:
        raise ValueError(f"{path}: weights do not fit the configured MSTModel ({exc})") from None
    target = None
    if config.get("target"):
        t = config["target"]
        target = LogMelTarget(mel=t["mel"], stats=t["stats"], normalise_peak=t.get("normalise_peak", True),
                              top_db=t.get("top_db", 80.0))
    return model, target, config


# --------------------------------------------------------------------------------------------
# The learned layers as a frontend
# --------------------------------------------------------------------------------------------
class MSTFrontend(nn.Module):
    """A trained :class:`MSTModel` used as a classifier's first layers: ``(batch, time) -> (batch, n_mels, frames)``.

    The batch-norm transforms learned with the model are kept (the authors' released transfer code
    dropped them, changing the function the layers compute). With ``frozen=True`` no parameter
    requires a gradient and the batch-norm layers stay in eval mode (running statistics fixed)
    even when the parent classifier calls ``.train()``; :meth:`unfreeze` makes the whole stack
    trainable again (fine-tuning, the paper's open question), :meth:`freeze` undoes it.

    The model was trained on peak-normalised segments; with ``normalise_peak=True`` (default) each
    input example is divided by its peak absolute value first (idempotent on normalised input), so
    patches cut by any trainer see what the model saw in training.
    """

    input_kind = "waveform"
    out_channels = 1

    def __init__(self, model: MSTModel, frozen: bool = True, config: dict | None = None,
                 normalise_peak: bool = True):
        super().__init__()
        self.normalise_peak = bool(normalise_peak)
        if not isinstance(model, MSTModel):
            raise ValueError(f"model must be an MSTModel, got {type(model).__name__}")
        self.mst = model
        self.n_mels = model.n_mels
        self.checkpoint_config = config or {}
        self.frozen = False
        if frozen:
            self.freeze()

    def freeze(self) -> "MSTFrontend":
        self.frozen = True
        for p in self.mst.parameters():
            p.requires_grad_(False)
        self.mst.eval()
        return self

    def unfreeze(self) -> "MSTFrontend":
        self.frozen = False
        for p in self.mst.parameters():
            p.requires_grad_(True)
        self.mst.train(self.training)
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.mst.eval()
        return self

    def num_frames(self, n_samples: int) -> int:
        return self.mst.num_frames(n_samples)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.mst(peak_normalise(waveform) if self.normalise_peak else waveform)

    def extra_repr(self) -> str:
        return f"frozen={self.frozen}, normalise_peak={self.normalise_peak}"


def mst_frontend(checkpoint: str = "mst.pt", frozen: bool = True, normalise_peak: bool = True,
                 **ignored) -> MSTFrontend:
    """Frontend from a ``melfront learn-mel`` checkpoint (spec ``"mst(checkpoint='mst.pt', frozen=True)"``).

    Returns an :class:`MSTFrontend` (``input_kind = "waveform"``, output ``(batch, n_mels, frames)``).
    The checkpoint fixes the mel parameters: other keyword arguments (common frontend options) are
    ignored, except that ``sample_rate``, ``n_fft``, ``hop_length`` or ``n_mels`` that disagree with
    the checkpoint raise ``ValueError`` (the model would silently compute something else, or its
    frames would not line up with the caller's patches).
    """
    if not isinstance(frozen, bool):
        raise ValueError(f"frozen must be True or False, got {frozen!r}")
    model, target, config = load_mst(checkpoint)
    trained = dict(n_fft=model.n_fft, hop_length=model.hop_length, n_mels=model.n_mels)
    if target is not None:
        trained["sample_rate"] = target.mel_kwargs.get("sample_rate")
    for key, value in trained.items():
        given = ignored.get(key)
        if given is not None and value is not None and float(given) != float(value):
            raise ValueError(f"{checkpoint}: the MSTModel was trained with {key}={value}, but {key}={given} "
                             f"was asked for; use {key}={value} (e.g. in the mel settings) or retrain it")
    return MSTFrontend(model, frozen=frozen, config=config, normalise_peak=normalise_peak)
