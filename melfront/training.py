"""Training and evaluation of ``frontend -> backbone`` classifiers; checkpoints; the study's trial.

What the reference works did, as settings (defaults per model from :data:`melfront.models.MODELS`,
every one overridable through ``train={...}``):

- optimisers: SGD (``lr``, ``momentum``, ``nesterov``) or Adam (``lr``);
- L2 weight decay on kernels only (``weight_decay``, torch convention: the gradient gets
  ``weight_decay * w``; ``decay_layers`` "all" or "dense", see :func:`melfront.models.kernel_weights`),
  never on biases, batch-norm parameters or the frontend's parameters;
- gradient clipping by global norm (``clip_norm``);
- fixed ``epochs``, or early stopping (``patience`` epochs without gain of the monitored accuracy:
  validation clip accuracy when a validation set is given, else training accuracy, as Pons et al.'s
  prototypical networks), the best weights restored at the end;
- ``sampling="random"``: one random ``patch_frames`` patch per clip per epoch (Pons, Serrà & Serra 2019);
  ``"all"``: every segment, ``segment_hop`` apart (default half a patch: Piczak 2015's 50 % overlap),
  silent segments dropped (``silence_db``); ``"episodes"``: prototypical-network episodes (Snell et al.
  2017) of ``support_per_class`` / ``query_per_class`` patches (see :func:`melfront.data.sampling.episode`).

A clip's prediction aggregates its patches (all patches at ``eval_hop`` frames, or Piczak's segments):
``aggregation="mean_prob"`` (mean softmax), ``"vote"`` (majority of patch decisions, ties broken by the
mean probability) or ``"mean_logprob"`` (mean log-probability, the prototypical networks' rule).
Metrics: accuracy, macro mean average precision (one-vs-rest average precision of the clip scores,
averaged over the classes present: the Merlin team's metric), per-class accuracy and the confusion
matrix, all JSON-able.

Reproducibility: a ``seed`` fixes the initial weights (python, numpy and torch generators are seeded
before building), the data order and patches of every epoch (derived from ``(seed, epoch)`` by
hashing, so a resumed run continues exactly as the uninterrupted one) and dropout (torch is reseeded
at the start of every epoch from ``(seed, epoch)``). Same seed, machine and device: same metrics.
"""
from __future__ import annotations

import copy
import json
import math
import os
import random
import tempfile
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .data.cache import full_mel_config
from .data.patches import PatchDataset, crop, random_crop, samples_for_frames
from .data.sampling import episode, rng_for, seed_for

__all__ = ["DEFAULT_MEL", "AGGREGATIONS", "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "resolve_settings",
           "build_classifier", "Trainer", "aggregate", "clip_metrics", "save_checkpoint", "load_checkpoint",
           "load_classifier", "train_classifier", "run_trial", "predict_file", "learned_parameters",
           "seed_everything", "default_device"]

#: Mel parameters of Pons et al. (2019) and Salamon & Bello (2017) at 22.05 kHz: 128 bands, hop 512,
#: so a 128-frame patch is 2.97 s (their 3 s patches at 44.1 kHz with hop 1024).
DEFAULT_MEL = dict(sample_rate=22050, n_fft=1024, hop_length=512, n_mels=128)
AGGREGATIONS = ("mean_prob", "vote", "mean_logprob")
CHECKPOINT_FORMAT = "melfront-classifier"
CHECKPOINT_VERSION = 1

# Settings the trainer adds to the model's paper settings (MODELS[name][2]).
_EXTRA = dict(
    aggregation=None,         # None: "mean_logprob" for protonet, "vote" for piczak, else "mean_prob"
    eval_hop=None,            # frames between evaluation patches; None: a patch (no overlap), segment_hop for "all"
    segment_hop=None,         # sampling "all": frames between segments; None: half a patch (50 % overlap)
    silence_db=None,          # drop segments this many dB under the clip's loudest frame; None: -60 for "all"
    episodes_per_epoch=None,  # "episodes": None -> ceil(n_train_clips / (n_classes * query_per_class))
    max_epochs=1000,          # cap when epochs is None (early stopping only)
    model_options=None,       # dict of architecture options for melfront.models.build
    eval_batch_size=64,
    query_per_class=5,
    support_per_class=5,
)
_IGNORED = ("source",)


def default_device() -> str:
    """"cuda" when a GPU is usable, else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------
def resolve_settings(model: str, train: dict | None = None) -> dict:
    """The model's paper settings (``MODELS[model][2]``) plus the trainer's, overridden by ``train``.

    Unknown keys raise ``ValueError`` listing the valid ones. Checks types and ranges; fills the
    automatic values (aggregation, hops, silence threshold).
    """
    from .models import default_settings
    s = default_settings(model)
    for k in _IGNORED:
        s.pop(k, None)
    for k, v in _EXTRA.items():
        s.setdefault(k, copy.deepcopy(v))
    train = dict(train or {})
    unknown = sorted(set(train) - set(s))
    if unknown:
        raise ValueError(f"unknown training setting(s) {unknown}; valid: {', '.join(sorted(s))}")
    s.update(train)
    s["model_options"] = dict(s.get("model_options") or {})

    def pos_int(key, allow_none=False):
        v = s[key]
        if v is None and allow_none:
            return
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"train[{key!r}] must be a positive integer{' or None' if allow_none else ''}, got {v!r}")
        s[key] = int(v)

    if s["optimizer"] not in ("sgd", "adam"):
        raise ValueError(f"train['optimizer'] must be 'sgd' or 'adam', got {s['optimizer']!r}")
    for key in ("lr",):
        if not isinstance(s[key], (int, float)) or not s[key] > 0:
            raise ValueError(f"train[{key!r}] must be a positive number, got {s[key]!r}")
    for key in ("momentum", "weight_decay"):
        if not isinstance(s[key], (int, float)) or s[key] < 0:
            raise ValueError(f"train[{key!r}] must be a number >= 0, got {s[key]!r}")
    if s["clip_norm"] is not None and not (isinstance(s["clip_norm"], (int, float)) and s["clip_norm"] > 0):
        raise ValueError(f"train['clip_norm'] must be a positive number or None, got {s['clip_norm']!r}")
    if s["decay_layers"] not in ("all", "dense"):
        raise ValueError(f"train['decay_layers'] must be 'all' or 'dense', got {s['decay_layers']!r}")
    if s["sampling"] not in ("random", "all", "episodes"):
        raise ValueError(f"train['sampling'] must be 'random', 'all' or 'episodes', got {s['sampling']!r}")
    if s["sampling"] == "episodes" and model != "protonet":
        raise ValueError("train['sampling']='episodes' needs model 'protonet'")
    pos_int("patch_frames")
    pos_int("n_mels")
    pos_int("epochs", allow_none=True)
    pos_int("patience", allow_none=True)
    pos_int("max_epochs")
    pos_int("eval_batch_size")
    pos_int("query_per_class")
    pos_int("support_per_class")
    pos_int("episodes_per_epoch", allow_none=True)
    pos_int("batch_size", allow_none=s["sampling"] == "episodes")
    if s["epochs"] is None and s["patience"] is None:
        raise ValueError("give train['epochs'] or train['patience'] (early stopping)")
    if s["aggregation"] is None:
        s["aggregation"] = {"protonet": "mean_logprob", "piczak": "vote"}.get(model, "mean_prob")
    if s["aggregation"] not in AGGREGATIONS:
        raise ValueError(f"train['aggregation'] must be one of {AGGREGATIONS}, got {s['aggregation']!r}")
    if s["segment_hop"] is None:
        s["segment_hop"] = max(1, s["patch_frames"] // 2)
    pos_int("segment_hop")
    if s["eval_hop"] is None:
        s["eval_hop"] = s["segment_hop"] if s["sampling"] == "all" else s["patch_frames"]
    pos_int("eval_hop")
    if s["silence_db"] is None and s["sampling"] == "all":
        s["silence_db"] = -60.0
    return s


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------
def _frontend_common(mel: dict) -> dict:
    return {k: mel[k] for k in ("sample_rate", "n_fft", "hop_length", "n_mels") if k in mel}


def _dummy_input(kind: str, mel: dict, n_frames: int, batch: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    if kind == "mel":
        return torch.rand(batch, mel["n_mels"], n_frames, generator=g) + 1e-3
    return torch.randn(batch, samples_for_frames(n_frames, mel["hop_length"]), generator=g) * 0.1


def build_classifier(frontend: str, model: str, n_classes: int, mel: dict, patch_frames: int,
                     model_options: dict | None = None):
    """``Classifier(melfront.frontend(frontend, **mel), models.build(model, ...))`` for ``patch_frames`` patches.

    The backbone's input shape (bands, frames, channels) is read from a dummy pass through the frontend,
    so that any frontend fits (a waveform frontend with its own number of bands, a stack of three).
    Returns ``(classifier, shape)`` with ``shape = dict(n_mels=, n_frames=, in_channels=)``.
    """
    from . import models
    from .frontends import frontend as make_frontend
    fe = make_frontend(frontend, **_frontend_common(mel))
    kind = getattr(fe, "input_kind", None)
    if kind not in ("mel", "waveform"):
        raise ValueError(f"frontend {frontend!r} has input_kind {kind!r}, expected 'mel' or 'waveform'")
    was_training = fe.training
    fe.eval()
    with torch.no_grad():
        z = fe(_dummy_input(kind, mel, patch_frames))
    fe.train(was_training)
    if z.ndim == 3:
        z = z.unsqueeze(1)
    if z.ndim != 4:
        raise ValueError(f"frontend {frontend!r} yields shape {tuple(z.shape)}, expected (batch, [channels,] n_mels, frames)")
    shape = dict(n_mels=int(z.shape[2]), n_frames=int(z.shape[3]), in_channels=int(z.shape[1]))
    backbone = models.build(model, n_classes, **shape, **(model_options or {}))
    return models.Classifier(fe, backbone), shape


def learned_parameters(classifier) -> dict:
    """``frontend.learned_parameters()`` as a JSON-able dict (``{}`` for a frontend without it)."""
    fe = getattr(classifier, "frontend", classifier)
    fn = getattr(fe, "learned_parameters", None)
    if not callable(fn):
        return {}
    out = {}
    for k, v in (fn() or {}).items():
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu().reshape(-1).tolist()
        elif isinstance(v, (int, float)):
            v = [float(v)]
        out[str(k)] = [float(x) for x in np.asarray(v, dtype=float).reshape(-1)]
    return out


# --------------------------------------------------------------------------------------------
# Clip-level aggregation and metrics
# --------------------------------------------------------------------------------------------
def aggregate(log_probs: torch.Tensor, clip_index: Sequence[int], n_clips: int, method: str = "mean_prob") -> np.ndarray:
    """Clip scores ``(n_clips, n_classes)`` (rows sum to 1) from patch log-probabilities ``(n_patches, n_classes)``.

    - ``"mean_prob"``: mean of the patches' softmax probabilities;
    - ``"mean_logprob"``: softmax of the mean log-probability (the normalised geometric mean);
    - ``"vote"``: fraction of patches voting for each class (argmax), plus ``1e-6`` times the mean
      probability so that ties go to the class with the higher mean probability.

    The predicted class of a clip is the argmax of its row. Every clip must have at least one patch.
    """
    if method not in AGGREGATIONS:
        raise ValueError(f"method must be one of {AGGREGATIONS}, got {method!r}")
    lp = log_probs.detach().double().cpu()
    idx = torch.as_tensor(list(clip_index), dtype=torch.long)
    if idx.numel() != lp.shape[0]:
        raise ValueError(f"clip_index has {idx.numel()} entries for {lp.shape[0]} patches")
    counts = torch.bincount(idx, minlength=n_clips).double()
    if (counts == 0).any():
        raise ValueError(f"clip(s) {torch.nonzero(counts == 0).flatten().tolist()[:5]} have no patch")
    C = lp.shape[1]

    def mean(values):
        return torch.zeros(n_clips, C, dtype=torch.float64).index_add_(0, idx, values) / counts[:, None]

    mean_prob = mean(lp.exp())
    if method == "mean_prob":
        scores = mean_prob
    elif method == "mean_logprob":
        scores = torch.softmax(mean(lp), dim=1)
    else:
        votes = mean(torch.nn.functional.one_hot(lp.argmax(1), C).double())
        scores = votes + 1e-6 * mean_prob
        scores = scores / scores.sum(1, keepdim=True)
    return scores.numpy()


def clip_metrics(scores: np.ndarray, labels: Sequence[int], classes: Sequence[str]) -> dict:
    """Accuracy, macro mean average precision, per-class accuracy and confusion matrix (JSON-able).

    ``scores`` ``(n_clips, n_classes)``; ``labels`` the true class indices. ``map`` is the mean over
    the classes present in ``labels`` of sklearn's ``average_precision_score`` of the one-vs-rest
    problem (class scores as ranking). ``per_class_accuracy`` lists the classes present (recall per
    class); ``confusion[i][j]`` counts clips of class ``i`` predicted as ``j``.
    """
    from sklearn.metrics import average_precision_score
    scores = np.asarray(scores, dtype=np.float64)
    y = np.asarray(list(labels), dtype=np.int64)
    C = len(classes)
    if scores.ndim != 2 or scores.shape != (len(y), C):
        raise ValueError(f"scores must be (n_clips={len(y)}, n_classes={C}), got {scores.shape}")
    if len(y) == 0:
        raise ValueError("no clips to evaluate")
    pred = scores.argmax(1)
    confusion = np.zeros((C, C), dtype=np.int64)
    np.add.at(confusion, (y, pred), 1)
    present = [k for k in range(C) if (y == k).any()]
    aps = [float(average_precision_score((y == k).astype(int), scores[:, k])) for k in present]
    return {
        "accuracy": float((pred == y).mean()),
        "map": float(np.mean(aps)),
        "per_class_accuracy": {str(classes[k]): float(confusion[k, k] / confusion[k].sum()) for k in present},
        "confusion": confusion.tolist(),
        "n": int(len(y)),
    }


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------
def _atomic_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _cpu_state(module: nn.Module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def save_checkpoint(path, classifier: nn.Module, config: dict, optimizer=None, epoch: int | None = None,
                    **extra) -> Path:
    """Write a classifier checkpoint atomically (temporary file in the same folder, then ``os.replace``).

    Content: ``{"format": "melfront-classifier", "version": 1, "melfront_version", "config",
    "state_dict", "optimizer", "epoch", **extra}``; everything loads with ``torch.load(weights_only=True)``.
    ``config`` must be JSON-able (checked).
    """
    from . import __version__
    try:
        json.dumps(config)
    except TypeError as exc:
        raise ValueError(f"checkpoint config must be JSON-able: {exc}") from None
    obj = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "melfront_version": __version__,
           "config": config, "state_dict": _cpu_state(classifier),
           "optimizer": optimizer.state_dict() if optimizer is not None else None, "epoch": epoch}
    obj.update(extra)
    path = Path(path)
    _atomic_save(obj, path)
    return path


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read and validate a classifier checkpoint (``weights_only=True``: it cannot run code).

    Raises ``FileNotFoundError`` for a missing file, ``ValueError`` naming the file for anything that is
    not a melfront classifier checkpoint of format version 1.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # unpickling error, truncated file, non-weights content
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: not a loadable melfront checkpoint (torch.load with weights_only=True "
                         f"failed: {msg})") from None
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a melfront classifier checkpoint (no format {CHECKPOINT_FORMAT!r})")
    if obj.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint format version {obj.get('version')!r} (written by melfront "
                         f"{obj.get('melfront_version')}); this melfront reads version {CHECKPOINT_VERSION}")
    for key in ("config", "state_dict"):
        if not isinstance(obj.get(key), dict):
            raise ValueError(f"{path}: checkpoint has no {key!r} dict")
    obj["path"] = str(path)
    return obj


def _rebuild(obj: dict):
    cfg = obj["config"]
    path = obj.get("path", "checkpoint")
    try:
        clf, shape = build_classifier(cfg["frontend"], cfg["model"], len(cfg["classes"]), cfg["mel"],
                                      cfg["patch_frames"], cfg.get("model_options"))
    except KeyError as exc:
        raise ValueError(f"{path}: checkpoint config lacks {exc}") from None
    try:
        clf.load_state_dict(obj["state_dict"])
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise ValueError(f"{path}: the weights do not fit the model rebuilt from the checkpoint's config "
                         f"({cfg['model']} with frontend {cfg['frontend']!r}, {len(cfg['classes'])} classes, "
                         f"input {shape}): {detail[:600]}") from None
    return clf


def load_classifier(path, map_location="cpu"):
    """Rebuild a trained classifier from a checkpoint (a file or a run folder holding ``checkpoint.pt``).

    The frontend and backbone are rebuilt from the checkpoint's JSON config (frontend spec, model name
    and options, classes, mel parameters, patch frames), then the weights are loaded with
    ``torch.load(weights_only=True)``. Returns ``(classifier, config)``; the classifier is in eval mode.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not a melfront classifier checkpoint, another format version, or weights whose shapes do not
        fit the rebuilt model; the message names the file.
    """
    obj = load_checkpoint(path, map_location)
    clf = _rebuild(obj)
    clf.eval()
    return clf, obj["config"]


# --------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------
class Trainer:
    """Fit and evaluate a :class:`melfront.models.Classifier` on in-memory clip features.

    Parameters
    ----------
    classifier : Classifier
        ``frontend -> backbone``; moved to ``device``.
    settings : dict
        From :func:`resolve_settings` (the model's paper settings with overrides).
    kind : {"mel", "waveform"}
        What the features are (the frontend's ``input_kind``).
    hop_length : int
        Samples per frame (the mel ``hop_length``), for waveform patches.
    seed : int
        See the module docstring.
    device : str or None
        None: CUDA when available, else CPU.
    progress : bool
        tqdm bars (epochs with loss, accuracy and validation accuracy).
    checkpoint : path or None
        Written atomically after every epoch (with optimizer and early-stopping state) and at the end.
    config : dict
        JSON-able config stored in the checkpoint (see :func:`train_classifier`).
    """

    def __init__(self, classifier: nn.Module, settings: dict, *, kind: str = "mel", hop_length: int | None = None,
                 seed: int = 0, device: str | None = None, progress: bool = True, checkpoint=None,
                 config: dict | None = None):
        if kind not in ("mel", "waveform"):
            raise ValueError(f"kind must be 'mel' or 'waveform', got {kind!r}")
        if kind == "waveform" and hop_length is None:
            raise ValueError("hop_length is needed for waveform features")
        self.device = torch.device(device or default_device())
        self.model = classifier.to(self.device)
        self.s = settings
        self.kind, self.hop_length, self.seed = kind, hop_length, int(seed)
        self.progress = progress
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.config = dict(config or {})
        self.history: list[dict] = []
        self.optimizer = self._make_optimizer()
        self.epoch = 0  # epochs completed
        self.best = dict(score=-math.inf, epoch=0, bad=0, state=None)
        self.finished = False

    # ---------------------------------------------------------------- optimiser
    def _make_optimizer(self):
        from .models import kernel_weights
        s = self.s
        decay_ids = {id(p) for p in kernel_weights(self.model.backbone, s["decay_layers"])}
        params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in params if id(p) in decay_ids]
        other = [p for p in params if id(p) not in decay_ids]
        groups = [g for g in (dict(params=decay, weight_decay=float(s["weight_decay"])),
                              dict(params=other, weight_decay=0.0)) if g["params"]]
        if not groups:
            raise ValueError("the classifier has no trainable parameters")
        if s["optimizer"] == "sgd":
            return torch.optim.SGD(groups, lr=s["lr"], momentum=s["momentum"],
                                   nesterov=bool(s["nesterov"]) and s["momentum"] > 0)
        return torch.optim.Adam(groups, lr=s["lr"])

    # ---------------------------------------------------------------- batches
    def _batches(self, ds: PatchDataset, order: Sequence[int], batch_size: int):
        for b in range(0, len(order), batch_size):
            items = [ds[j] for j in order[b:b + batch_size]]
            x = torch.stack([it[0] for it in items]).to(self.device, torch.float32)
            y = torch.tensor([it[1] for it in items], device=self.device)
            yield x, y, [it[2] for it in items]

    def _step(self, loss):
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.s["clip_norm"] is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.s["clip_norm"])
        self.optimizer.step()

    def _train_epoch(self, ds, clips_by_class, n_train, epoch):
        s = self.s
        self.model.train()
        torch.manual_seed(seed_for(self.seed, "dropout", epoch))
        total, correct, loss_sum = 0, 0, 0.0
        if s["sampling"] == "episodes":
            n_classes = len(clips_by_class)
            n_ep = s["episodes_per_epoch"] or max(1, math.ceil(n_train / (n_classes * s["query_per_class"])))
            for k in range(n_ep):
                rng = rng_for("episode", self.seed, epoch, k)
                support, query = episode(clips_by_class, s["support_per_class"], s["query_per_class"], rng)
                g = torch.Generator().manual_seed(seed_for("episode-crops", self.seed, epoch, k))
                patches = [random_crop(ds.features[c], s["patch_frames"], g, self.kind, self.hop_length)
                           for c, _ in support + query]
                x = torch.stack(patches).to(self.device, torch.float32)
                sup_y = torch.tensor([lab for _, lab in support], device=self.device)
                qry_y = torch.tensor([lab for _, lab in query], device=self.device)
                z = self.model.features(x)
                logits = self.model.backbone.logits(z[len(support):], z[:len(support)], sup_y)
                loss = nn.functional.cross_entropy(logits, qry_y)
                self._step(loss)
                loss_sum += float(loss.detach()) * len(query)
                correct += int((logits.argmax(1) == qry_y).sum())
                total += len(query)
        else:
            ds.set_epoch(epoch)
            g = torch.Generator().manual_seed(seed_for("order", self.seed, epoch))
            order = torch.randperm(len(ds), generator=g).tolist()
            bs = s["batch_size"]
            if len(order) % bs == 1 and len(order) > 1:
                order = order[:-1]  # a batch of one breaks batch norm in training mode
            for x, y, _ in self._batches(ds, order, bs):
                logits = self.model(x)
                loss = nn.functional.cross_entropy(logits, y)
                self._step(loss)
                loss_sum += float(loss.detach()) * len(y)
                correct += int((logits.argmax(1) == y).sum())
                total += len(y)
        if not math.isfinite(loss_sum):
            raise FloatingPointError(f"training loss became {loss_sum} in epoch {epoch}; lower train['lr'] "
                                     "or set train['clip_norm']")
        return loss_sum / max(total, 1), correct / max(total, 1)

    # ---------------------------------------------------------------- prototypes (protonet)
    @torch.no_grad()
    def set_prototypes(self, features, labels) -> None:
        """Prototypical network: prototypes from every evaluation patch of the training clips."""
        backbone = self.model.backbone
        if not hasattr(backbone, "set_prototypes"):
            return
        was = self.model.training
        self.model.eval()
        ds = self._eval_dataset(features, labels)
        emb, ys = [], []
        for x, y, _ in self._batches(ds, range(len(ds)), self.s["eval_batch_size"]):
            emb.append(backbone.embed(self.model.features(x)))
            ys.append(y)
        backbone.set_prototypes(torch.cat(emb), torch.cat(ys))
        self.model.train(was)

    # ---------------------------------------------------------------- evaluation
    def _eval_dataset(self, features, labels):
        s = self.s
        silence = s["silence_db"] if s["sampling"] == "all" else None
        return PatchDataset(features, labels, n_frames=s["patch_frames"], mode="all", hop=s["eval_hop"],
                            silence_db=silence, kind=self.kind, hop_length=self.hop_length, seed=self.seed)

    @torch.no_grad()
    def predict(self, features: Sequence[torch.Tensor]) -> np.ndarray:
        """Clip scores ``(n_clips, n_classes)`` (rows sum to 1), aggregated over each clip's patches."""
        if len(features) == 0:
            return np.zeros((0, getattr(self.model, "n_classes", 0) or 0))
        self.model.eval()
        ds = self._eval_dataset(features, [0] * len(features))
        out, idx = [], []
        for x, _, clips in self._batches(ds, range(len(ds)), self.s["eval_batch_size"]):
            out.append(torch.log_softmax(self.model(x).double(), dim=1).cpu())
            idx.extend(clips)
        log_probs = torch.cat(out)
        if not torch.isfinite(log_probs).all():
            raise FloatingPointError("the classifier outputs NaN or infinite values (training diverged?); lower "
                                     "train['lr'] or set train['clip_norm']")
        return aggregate(log_probs, idx, len(features), self.s["aggregation"])

    def evaluate(self, features, labels, classes) -> dict:
        """:func:`clip_metrics` of :meth:`predict` on ``features`` against ``labels``."""
        return clip_metrics(self.predict(features), labels, classes)

    # ---------------------------------------------------------------- checkpointing
    def _save(self, final: bool = False):
        if self.checkpoint is None:
            return
        best_state = self.best["state"] if (self.s["patience"] is not None and not final) else None
        save_checkpoint(self.checkpoint, self.model, self.config, self.optimizer, self.epoch,
                        history=self.history, finished=final, seed=self.seed,
                        early_stopping=dict(score=float(self.best["score"]) if math.isfinite(self.best["score"]) else None,
                                            epoch=self.best["epoch"], bad=self.best["bad"]),
                        best_state_dict=best_state)

    def resume(self, path=None) -> bool:
        """Continue from a checkpoint written by :meth:`fit` (default: this trainer's). False if none exists."""
        path = Path(path) if path is not None else self.checkpoint
        if path is None or not Path(path).is_file():
            return False
        obj = load_checkpoint(path, map_location=self.device)
        saved = {k: v for k, v in obj["config"].items() if k not in ("train_seconds",)}
        mine = {k: v for k, v in self.config.items() if k not in ("train_seconds",)}
        if mine and saved != mine:
            diff = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k))
            raise ValueError(f"{path}: cannot resume, the checkpoint was written for another configuration "
                             f"(differs in {diff})")
        try:
            self.model.load_state_dict(obj["state_dict"])
        except RuntimeError as exc:
            raise ValueError(f"{path}: weights do not fit this model: {' '.join(str(exc).split())[:400]}") from None
        if obj.get("optimizer"):
            self.optimizer.load_state_dict(obj["optimizer"])
        self.epoch = int(obj.get("epoch") or 0)
        self.history = list(obj.get("history") or [])
        es = obj.get("early_stopping") or {}
        self.best = dict(score=es.get("score") if es.get("score") is not None else -math.inf,
                         epoch=es.get("epoch", 0), bad=es.get("bad", 0), state=obj.get("best_state_dict"))
        self.finished = bool(obj.get("finished"))
        return True

    # ---------------------------------------------------------------- fit
    def fit(self, features: Sequence[torch.Tensor], labels: Sequence[int], val_features=None, val_labels=None,
            classes: Sequence[str] | None = None) -> list[dict]:
        """Train; returns the history (one dict per epoch: loss, accuracy, val_accuracy, val_map, seconds).

        Continues after :meth:`resume` from the epoch reached. With ``patience``, stops when the monitored
        accuracy (validation clip accuracy if a validation set is given, else training accuracy) has not
        improved for ``patience`` epochs and restores the best weights.
        """
        s = self.s
        if len(features) != len(labels):
            raise ValueError(f"features and labels differ in length: {len(features)} != {len(labels)}")
        if len(features) == 0:
            raise ValueError("no training clips")
        labels = [int(v) for v in labels]
        n_classes = getattr(self.model, "n_classes", None) or (max(labels) + 1)
        classes = list(classes) if classes is not None else [str(k) for k in range(n_classes)]
        has_val = val_features is not None and len(val_features) > 0
        if self.finished:
            return self.history
        mode = "all" if s["sampling"] == "all" else "random"
        silence = s["silence_db"] if mode == "all" else None
        ds = PatchDataset(features, labels, n_frames=s["patch_frames"], mode=mode, hop=s["segment_hop"],
                          silence_db=silence, kind=self.kind, hop_length=self.hop_length, seed=self.seed)
        by_class: dict[int, list[int]] = {}
        for i, lab in enumerate(labels):
            by_class.setdefault(lab, []).append(i)
        max_epochs = s["epochs"] if s["epochs"] is not None else s["max_epochs"]
        bar = None
        if self.progress:
            from tqdm import tqdm
            bar = tqdm(total=max_epochs, initial=self.epoch, desc="epochs", unit="epoch", leave=True, dynamic_ncols=True)
        try:
            while self.epoch < max_epochs:
                epoch = self.epoch + 1
                t0 = time.perf_counter()
                loss, acc = self._train_epoch(ds, by_class, len(features), epoch)
                rec = dict(epoch=epoch, loss=loss, accuracy=acc)
                if s["sampling"] == "episodes":
                    self.set_prototypes(features, labels)
                if has_val:
                    m = self.evaluate(val_features, val_labels, classes)
                    rec.update(val_accuracy=m["accuracy"], val_map=m["map"])
                rec["seconds"] = time.perf_counter() - t0
                self.history.append(rec)
                self.epoch = epoch
                stop = False
                if s["patience"] is not None:
                    score = rec["val_accuracy"] if has_val else rec["accuracy"]
                    if score > self.best["score"]:
                        self.best.update(score=score, epoch=epoch, bad=0, state=_cpu_state(self.model))
                    else:
                        self.best["bad"] += 1
                        stop = self.best["bad"] >= s["patience"]
                if bar is not None:
                    post = dict(loss=f"{loss:.3f}", acc=f"{acc:.3f}")
                    if has_val:
                        post["val_acc"] = f"{rec['val_accuracy']:.3f}"
                    bar.set_postfix(post)
                    bar.update(1)
                if stop or self.epoch >= max_epochs:
                    break
                self._save()
        finally:
            if bar is not None:
                bar.close()
        if s["patience"] is not None and self.best["state"] is not None:
            self.model.load_state_dict(self.best["state"])
        if s["sampling"] == "episodes":
            self.set_prototypes(features, labels)
        self.finished = True
        self._save(final=True)
        return self.history


# --------------------------------------------------------------------------------------------
# From clips to a trained classifier
# --------------------------------------------------------------------------------------------
def _classes_of(clips) -> list[str]:
    classes = list(getattr(clips, "classes", []) or [])
    if classes:
        return classes
    names = {}
    for c in clips:
        names.setdefault(int(c.label), c.class_name)
    return [names.get(k, str(k)) for k in range(max(names) + 1)]


def _features(clips, mel, kind, cache, progress):
    from .data.cache import load_features
    if not clips:
        return [], [], []
    feats, kept, skipped = load_features(clips, mel, cache=cache, kind=kind, progress=progress)
    return feats, kept, [[str(p), str(c)] for p, c in skipped]


def train_classifier(clips, *, frontend: str, model: str, train_clips, val_clips=None, mel: dict | None = None,
                     train: dict | None = None, seed: int = 0, cache=None, device: str | None = None,
                     progress: bool = False, checkpoint=None, resume: bool = False, extra_config: dict | None = None):
    """Load features, build ``frontend -> model``, train it. Returns ``(trainer, info)``.

    ``info``: ``config`` (what the checkpoint stores), ``n_train``, ``n_val``, ``skipped`` (``[path, cause]``),
    ``train_seconds``, ``epochs``. See :func:`run_trial` for the arguments.
    """
    s = resolve_settings(model, train)
    mel = dict(DEFAULT_MEL, n_mels=s["n_mels"]) if mel is None else dict(mel)
    for key in ("sample_rate", "n_fft", "hop_length", "n_mels"):
        if key not in mel:
            mel[key] = dict(DEFAULT_MEL, n_mels=s["n_mels"])[key]
    mel = full_mel_config(mel)
    s["n_mels"] = int(mel["n_mels"])  # the mel parameters given win over the model's paper setting
    classes = _classes_of(clips)
    seed_everything(seed)
    clf, shape = build_classifier(frontend, model, len(classes), mel, s["patch_frames"], s["model_options"])
    kind = clf.input_kind
    config = dict(frontend=frontend, model=model, model_options=s["model_options"], classes=classes, mel=mel,
                  patch_frames=s["patch_frames"], aggregation=s["aggregation"], input_kind=kind,
                  backbone_input=shape, train=s, seed=int(seed), **(extra_config or {}))
    config = json.loads(json.dumps(config))
    train_feats, train_kept, skipped = _features(list(train_clips), mel, kind, cache, progress)
    val_feats, val_kept, skipped_val = _features(list(val_clips or []), mel, kind, cache, progress)
    if not train_feats:
        raise ValueError(f"no usable training clips ({len(skipped)} skipped)")
    trainer = Trainer(clf, s, kind=kind, hop_length=mel["hop_length"], seed=seed, device=device,
                      progress=progress, checkpoint=checkpoint, config=config)
    if resume:
        trainer.resume()
    t0 = time.perf_counter()
    trainer.fit(train_feats, [c.label for c in train_kept], val_feats, [c.label for c in val_kept], classes)
    info = dict(config=config, n_train=len(train_feats), n_val=len(val_feats), skipped=skipped + skipped_val,
                train_seconds=time.perf_counter() - t0, epochs=trainer.epoch)
    return trainer, info


def trainer_for(classifier, config: dict, device: str | None = None, progress: bool = False) -> Trainer:
    """A :class:`Trainer` that evaluates/predicts with a loaded classifier and its checkpoint config."""
    s = dict(config["train"])
    return Trainer(classifier, s, kind=config["input_kind"], hop_length=config["mel"]["hop_length"],
                   seed=config.get("seed", 0), device=device, progress=progress)


def run_trial(clips: "ClipList", *, frontend: str, model: str, train_clips: list, test_clips: list,
              val_clips: list | None = None, mel: dict | None = None, train: dict | None = None, seed: int = 0,
              cache=None, device: str | None = None, progress: bool = False) -> dict:
    """Train frontend+model on train_clips, evaluate on test_clips. Returns a JSON-able dict:
    {"accuracy": float, "map": float, "per_class_accuracy": {class_name: float}, "confusion": [[int]],
     "train_seconds": float, "epochs": int, "n_train": int, "n_test": int,
     "learned": {name: list[float]}   # frontend.learned_parameters() if it has it, else {}
     "skipped": [[path, cause], ...]}

    Parameters
    ----------
    clips : ClipList
        The data set (its ``classes`` give the label order).
    frontend : str
        A spec for :func:`melfront.frontend`, e.g. ``"db"``, ``"pcen(trainable=True)"``, ``"stack(db, pcen, power)"``.
    model : str
        A name in :data:`melfront.models.MODELS`.
    train_clips, test_clips, val_clips
        Clips of ``clips`` (val: early stopping when ``train['patience']`` is set, else only reported).
    mel : dict or None
        :class:`melfront.MelSpectrogram` parameters; default :data:`DEFAULT_MEL` with the model's ``n_mels``
        (60 for piczak, 128 otherwise).
    train : dict or None
        Overrides of the training settings (:func:`resolve_settings`): epochs, lr, batch_size, patch_frames, ...
    seed : int
        Everything random derives from it: same seed, same machine and device -> same metrics.
    cache : FeatureCache, path, None (default cache) or False (none)
    device : str or None
        None: CUDA when available, else CPU.
    """
    trainer, info = train_classifier(clips, frontend=frontend, model=model, train_clips=train_clips,
                                     val_clips=val_clips, mel=mel, train=train, seed=seed, cache=cache,
                                     device=device, progress=progress)
    test_feats, test_kept, skipped_test = _features(list(test_clips), info["config"]["mel"],
                                                    info["config"]["input_kind"], cache, progress)
    if not test_feats:
        raise ValueError(f"no usable test clips ({len(skipped_test)} skipped)")
    m = trainer.evaluate(test_feats, [c.label for c in test_kept], info["config"]["classes"])
    return {"accuracy": m["accuracy"], "map": m["map"], "per_class_accuracy": m["per_class_accuracy"],
            "confusion": m["confusion"], "train_seconds": float(info["train_seconds"]), "epochs": int(info["epochs"]),
            "n_train": int(info["n_train"]), "n_test": len(test_feats), "learned": learned_parameters(trainer.model),
            "skipped": info["skipped"] + skipped_test}


def predict_file(classifier, config: dict, path, top_k: int = 5, device: str | None = None) -> list[tuple[str, float]]:
    """Top-``k`` ``(class name, probability)`` for one audio file with a loaded classifier."""
    from .audio import load_audio
    from .frontends import MelSpectrogram
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    mel = config["mel"]
    wave, _ = load_audio(path, sample_rate=int(mel["sample_rate"]))
    if config["input_kind"] == "mel":
        with torch.no_grad():  # as the feature cache computes it
            feat = MelSpectrogram(**mel)(wave)
    else:
        feat = wave
    scores = trainer_for(classifier, config, device=device).predict([feat])[0]
    order = np.argsort(-scores, kind="stable")[:top_k]
    return [(config["classes"][k], float(scores[k])) for k in order]


# --------------------------------------------------------------------------------------------
# Run folders (the `melfront train / evaluate / predict` commands)
# --------------------------------------------------------------------------------------------
def _fold_value(fold):
    if fold is None:
        return None
    if isinstance(fold, str) and fold.strip().lstrip("-").isdigit():
        return int(fold)
    return fold


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def split_folds(clips, test_fold, val_fold=None):
    """``(train, val, test)`` clips: ``test_fold`` for test, ``val_fold`` (optional) for validation, the rest train.

    Folds are compared after reading digit strings as ints (``"4"`` == ``4``). An unknown fold raises
    ``ValueError`` listing those present.
    """
    test_fold, val_fold = _fold_value(test_fold), _fold_value(val_fold)
    present = list(getattr(clips, "folds", sorted({c.fold for c in clips}, key=str)))
    for name, f in (("test fold", test_fold), ("validation fold", val_fold)):
        if f is not None and f not in present:
            raise ValueError(f"{name} {f!r} is not in the data set; folds present: {present}")
    if val_fold is not None and val_fold == test_fold:
        raise ValueError(f"the validation fold must differ from the test fold ({test_fold!r})")
    test = [c for c in clips if c.fold == test_fold]
    val = [c for c in clips if val_fold is not None and c.fold == val_fold]
    train = [c for c in clips if c.fold != test_fold and (val_fold is None or c.fold != val_fold)]
    if not train:
        raise ValueError(f"no training clips left after taking fold {test_fold!r} for test")
    sub = getattr(clips, "subset", None)
    return tuple(sub(x) if callable(sub) else x for x in (train, val, test))


def train_run(out_dir, *, dataset: str, root=None, dataset_options: dict | None = None, frontend: str = "db",
              model: str = "sbcnn", test_fold=None, val_fold=None, n_per_class: int | None = None,
              mel: dict | None = None, train: dict | None = None, seed: int = 0, cache=None,
              device: str | None = None, progress: bool = True, resume: bool = False, log=print) -> dict:
    """Train on a data set's folds and write ``out_dir/checkpoint.pt``, ``config.json`` and ``metrics.json``.

    The test fold is held out; ``val_fold`` (optional) is reported each epoch and used for early
    stopping when ``train['patience']`` is set; ``n_per_class`` draws a class-balanced few-shot subset of
    the training clips (:func:`melfront.data.sampling.few_shot_subset` with ``run=0``). The checkpoint is
    rewritten after every epoch; ``resume=True`` continues from it. Returns the metrics dict.
    """
    from .data import dataset as load_dataset
    from .data.sampling import few_shot_subset
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clips = load_dataset(dataset, root, **(dataset_options or {}))
    if test_fold is None:
        raise ValueError(f"give a test fold; folds of {dataset!r}: {clips.folds}")
    train_clips, val_clips, test_clips = split_folds(clips, test_fold, val_fold)
    if n_per_class is not None:
        train_clips = few_shot_subset(train_clips, n_per_class, seed=seed, run=0, fold=_fold_value(test_fold))
    ckpt = out / "checkpoint.pt"
    if ckpt.exists() and not resume:
        log(f"note: {ckpt} exists and is overwritten (use --resume to continue it)")
    extra = dict(dataset=dataset, root=None if root is None else str(Path(root).resolve()),
                 dataset_options=dict(dataset_options or {}), test_fold=_fold_value(test_fold),
                 val_fold=_fold_value(val_fold), n_per_class=n_per_class)
    trainer, info = train_classifier(clips, frontend=frontend, model=model, train_clips=train_clips,
                                     val_clips=val_clips, mel=mel, train=train, seed=seed, cache=cache,
                                     device=device, progress=progress, checkpoint=ckpt, resume=resume,
                                     extra_config=extra)
    _write_json(out / "config.json", info["config"])
    cfg = info["config"]
    feats, kept, skipped = _features(list(test_clips), cfg["mel"], cfg["input_kind"], cache, progress)
    if not feats:
        raise ValueError(f"no usable test clips in fold {test_fold!r} ({len(skipped)} skipped)")
    metrics = trainer.evaluate(feats, [c.label for c in kept], cfg["classes"])
    learned = learned_parameters(trainer.model)
    result = dict(metrics, fold=_fold_value(test_fold), n_train=info["n_train"], n_val=info["n_val"],
                  n_test=len(feats), epochs=info["epochs"], train_seconds=info["train_seconds"],
                  device=str(trainer.device), learned=learned, history=trainer.history,
                  skipped=info["skipped"] + skipped)
    _write_json(out / "metrics.json", result)
    return result


def evaluate_run(run_dir, *, dataset: str | None = None, root=None, dataset_options: dict | None = None, fold=None,
                 cache=None, device: str | None = None, progress: bool = False) -> dict:
    """Metrics of a trained run (a folder with ``checkpoint.pt``, or the file) on a fold of a data set.

    The data set, root, options and fold default to those the run was trained with (its test fold).
    """
    from .data import dataset as load_dataset
    clf, cfg = load_classifier(run_dir)
    name = dataset or cfg.get("dataset")
    if name is None:
        raise ValueError("give --dataset: the checkpoint does not say which data set it was trained on")
    if dataset is None:
        root = root if root is not None else cfg.get("root")
        dataset_options = dataset_options if dataset_options is not None else cfg.get("dataset_options")
    fold = _fold_value(fold) if fold is not None else cfg.get("test_fold")
    clips = load_dataset(name, root, **(dataset_options or {}))
    if list(clips.classes) != list(cfg["classes"]):
        raise ValueError(f"the data set's classes {clips.classes[:5]}... differ from the checkpoint's "
                         f"{cfg['classes'][:5]}...")
    if fold is None:
        test = clips
    else:
        if fold not in clips.folds:
            raise ValueError(f"fold {fold!r} is not in the data set; folds present: {clips.folds}")
        test = clips.subset(c for c in clips if c.fold == fold)
    feats, kept, skipped = _features(list(test), cfg["mel"], cfg["input_kind"], cache, progress)
    if not feats:
        raise ValueError(f"no usable clips to evaluate ({len(skipped)} skipped)")
    metrics = trainer_for(clf, cfg, device=device).evaluate(feats, [c.label for c in kept], cfg["classes"])
    return dict(metrics, fold=fold, dataset=name, skipped=skipped)
