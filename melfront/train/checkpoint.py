"""ONE checkpoint format for every trained module melfront writes (classifiers and MST models).

A checkpoint is ``torch.save`` of a plain dict::

    {"format": "melfront-checkpoint", "version": 2, "kind": "classifier" | "mst",
     "melfront_version": str, "config": {...JSON-able...}, "state_dict": {name: tensor},
     "optimizer": optimizer state dict or None, "epoch": int or None, **extra}

written atomically (:func:`melfront.fileio.torch_save`) and read with ``torch.load(weights_only=True)``,
so loading a file cannot run code. ``config`` says how to rebuild the module (for a classifier: frontend
spec, model name and options, classes, mel parameters, patch frames, training settings). Version-1
classifier checkpoints (format ``"melfront-classifier"``) are still read.

Every damaged or foreign file raises :class:`~melfront.errors.CheckpointError` naming the file and the
cause; a missing file raises :class:`~melfront.errors.DataNotFoundError` (also a ``FileNotFoundError``).

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "lin.pt"
>>> _ = save_checkpoint(path, torch.nn.Linear(2, 1), {"note": "demo"}, kind="mst", epoch=3)
>>> obj = load_checkpoint(path, kind="mst")
>>> obj["kind"], obj["epoch"], obj["config"], sorted(obj["state_dict"])
('mst', 3, {'note': 'demo'}, ['bias', 'weight'])
"""
from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from torch import nn

from ..checks import nonnegative_int, one_of, optional, positive_float, positive_int
from ..errors import CheckpointError, DataNotFoundError, ParameterError
from ..fileio import torch_save
from .build import MEL_KEYS, build_classifier
from .settings import TrainSettings

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "CHECKPOINT_KINDS", "cpu_state_dict", "save_checkpoint",
           "load_checkpoint", "load_weights", "load_classifier"]

CHECKPOINT_FORMAT = "melfront-checkpoint"
CHECKPOINT_VERSION = 2
#: What a checkpoint may hold: a ``models.Classifier`` or an ``MSTModel`` (melfront.mst).
CHECKPOINT_KINDS = ("classifier", "mst")
_LEGACY = {("melfront-classifier", 1): "classifier"}  # (format, version) -> kind, still read
_RESERVED = ("format", "version", "kind", "melfront_version", "config", "state_dict", "optimizer", "epoch", "path")


def _melfront_version() -> str:
    try:
        return version("melfront")
    except PackageNotFoundError:  # a source tree that was not installed
        return "0.0.0+local"


def cpu_state_dict(module: nn.Module) -> dict:
    """A detached CPU copy of ``module.state_dict()`` (safe to keep while training goes on).

    >>> sorted(cpu_state_dict(torch.nn.Linear(2, 1)))
    ['bias', 'weight']
    """
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def save_checkpoint(path, module: nn.Module, config: dict, *, kind: str = "classifier", optimizer=None,
                    epoch: int | None = None, extra: dict | None = None) -> Path:
    """Write ``module``'s weights and ``config`` as a melfront checkpoint, atomically. Returns the path.

    ``config`` must be JSON-able (checked: ``ParameterError``); ``extra`` adds entries that
    ``torch.load(weights_only=True)`` can read (tensors, numbers, strings, lists, dicts, ``None``)
    and may not reuse the format's own keys.

    >>> import tempfile, pathlib
    >>> p = save_checkpoint(pathlib.Path(tempfile.mkdtemp()) / "c.pt", torch.nn.Linear(1, 1), {}, kind="mst")
    >>> torch.load(p, weights_only=True)["format"]
    'melfront-checkpoint'
    """
    kind = one_of("kind", kind, CHECKPOINT_KINDS)
    if not isinstance(config, dict):
        raise ParameterError(f"config must be a dict, got {type(config).__name__}")
    try:
        json.dumps(config)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ParameterError(f"checkpoint config must be JSON-able: {exc}") from None
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(_RESERVED))
    if clash:
        raise ParameterError(f"extra may not set the checkpoint's own keys {clash}")
    obj = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "kind": kind,
           "melfront_version": _melfront_version(), "config": config, "state_dict": cpu_state_dict(module),
           "optimizer": optimizer.state_dict() if optimizer is not None else None,
           "epoch": optional(nonnegative_int, "epoch", epoch)}
    obj.update(extra)
    path = Path(path)
    torch_save(obj, path)
    return path


def load_checkpoint(path, kind: str | None = None, *, map_location="cpu") -> dict:
    """Read and check a melfront checkpoint (a file, or a run folder holding ``checkpoint.pt``).

    ``kind`` (``"classifier"`` or ``"mst"``; None: either) is what the caller expects. Returns the
    checkpoint dict with ``kind`` and ``path`` set. The config is only checked to be JSON data here:
    what it must hold depends on the caller (:func:`load_classifier` checks a classifier's field by field;
    a :class:`~melfront.train.Trainer` resuming compares it with its own).

    Raises :class:`~melfront.errors.DataNotFoundError` (a ``FileNotFoundError``) for a missing file and
    :class:`~melfront.errors.CheckpointError`, naming the file, for anything else: not a zip/pickle, content ``weights_only`` refuses, another format or
    version or kind, missing or mistyped entries, a config nested too deeply to process.

    >>> import tempfile, pathlib
    >>> bad = pathlib.Path(tempfile.mkdtemp()) / "junk.pt"
    >>> _ = bad.write_bytes(b"not a checkpoint")
    >>> load_checkpoint(bad)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    melfront.errors.CheckpointError: .../junk.pt: not a loadable melfront checkpoint (torch.load ... failed: ...)
    """
    optional(one_of, "kind", kind, CHECKPOINT_KINDS)
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise DataNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # unpickling error, truncated file, non-weights content, RecursionError
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a loadable melfront checkpoint (torch.load with weights_only=True "
                              f"failed: {msg})") from None
    try:
        return _checked(obj, path, kind)
    except RecursionError:
        raise CheckpointError(f"{path}: the checkpoint's content is nested too deeply to be a melfront "
                              "checkpoint") from None


def _checked(obj, path: Path, kind: str | None) -> dict:
    if not isinstance(obj, dict) or "format" not in obj:
        raise CheckpointError(f"{path}: not a melfront checkpoint (no format tag {CHECKPOINT_FORMAT!r})")
    fmt, ver = obj.get("format"), obj.get("version")
    stored = _LEGACY.get((fmt, ver)) if isinstance(fmt, str) else None
    if stored is None:
        if fmt != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path}: not a melfront checkpoint (format {fmt!r}, expected {CHECKPOINT_FORMAT!r})")
        if ver != CHECKPOINT_VERSION:
            raise CheckpointError(f"{path}: checkpoint format version {ver!r} (written by melfront "
                                  f"{obj.get('melfront_version')}); this melfront reads version {CHECKPOINT_VERSION}")
        stored = obj.get("kind")
        if stored not in CHECKPOINT_KINDS:
            raise CheckpointError(f"{path}: unknown checkpoint kind {stored!r}; known: {', '.join(CHECKPOINT_KINDS)}")
    if kind is not None and stored != kind:
        raise CheckpointError(f"{path}: this is a {stored} checkpoint, a {kind} checkpoint was expected")
    for key in ("config", "state_dict"):
        if not isinstance(obj.get(key), dict):
            raise CheckpointError(f"{path}: checkpoint has no {key!r} dict")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj["state_dict"].items()):
        raise CheckpointError(f"{path}: the checkpoint's state_dict is not a dict of named tensors")
    if obj.get("optimizer") is not None and not isinstance(obj["optimizer"], dict):
        raise CheckpointError(f"{path}: the checkpoint's optimizer state is not a dict")
    epoch = obj.get("epoch")
    if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0):
        raise CheckpointError(f"{path}: the checkpoint's epoch {epoch!r} is not a non-negative integer")
    try:
        json.dumps(obj["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: the checkpoint's config is not JSON data ({exc})") from None
    obj["kind"], obj["path"] = stored, str(path)
    return obj


def _check_classifier_config(cfg: dict, path: Path) -> None:
    """CheckpointError naming the file and the field for a classifier config that cannot be used."""
    try:
        missing = [k for k in ("frontend", "model", "classes", "mel", "patch_frames", "input_kind", "train")
                   if k not in cfg]
        if missing:
            raise ParameterError(f"lacks {missing}")
        for key in ("frontend", "model"):
            if not isinstance(cfg[key], str):
                raise ParameterError(f"config[{key!r}] must be a string, got {cfg[key]!r}")
        classes = cfg["classes"]
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
            raise ParameterError(f"config['classes'] must be a non-empty list of names, got {classes!r}")
        mel = cfg["mel"]
        if not isinstance(mel, dict) or any(k not in mel for k in MEL_KEYS):
            raise ParameterError(f"config['mel'] must be a dict with {', '.join(MEL_KEYS)}, got {mel!r}")
        positive_float("config['mel']['sample_rate']", mel["sample_rate"])
        for key in ("n_fft", "hop_length", "n_mels"):
            positive_int(f"config['mel'][{key!r}]", mel[key])
        positive_int("config['patch_frames']", cfg["patch_frames"])
        one_of("config['input_kind']", cfg["input_kind"], ("mel", "waveform"))
        if cfg.get("model_options") is not None and not isinstance(cfg["model_options"], dict):
            raise ParameterError(f"config['model_options'] must be a dict, got {cfg['model_options']!r}")
        TrainSettings.from_dict(cfg["train"])
    except ParameterError as exc:
        raise CheckpointError(f"{path}: the checkpoint's config is unusable: {exc}") from None


def load_weights(module: nn.Module, checkpoint: dict) -> nn.Module:
    """Load ``checkpoint["state_dict"]`` into ``module``; ``CheckpointError`` naming the file if it does not fit.

    >>> load_weights(torch.nn.Linear(2, 1), {"state_dict": {}, "path": "x.pt"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    melfront.errors.CheckpointError: x.pt: the weights do not fit the Linear rebuilt from the checkpoint's config: ...
    """
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise CheckpointError(f"{checkpoint.get('path', 'checkpoint')}: the weights do not fit the "
                              f"{type(module).__name__} rebuilt from the checkpoint's config: {detail[:600]}") from None
    return module


def load_classifier(path, map_location="cpu"):
    """Rebuild a trained classifier from a checkpoint (a file or a run folder holding ``checkpoint.pt``).

    The frontend and backbone are rebuilt from the checkpoint's JSON config (frontend spec, model name
    and options, classes, mel parameters, patch frames), then the weights are loaded with
    ``torch.load(weights_only=True)``. Returns ``(classifier, config)``; the classifier is in eval mode.

    Raises :class:`~melfront.errors.DataNotFoundError` (a ``FileNotFoundError``) for a missing file and
    :class:`~melfront.errors.CheckpointError` naming the file for anything else (see :func:`load_checkpoint`; also a config the model cannot be rebuilt
    from: missing fields, fields of the wrong type or range, and weights whose shapes do not fit the
    rebuilt model).

    >>> import tempfile, pathlib
    >>> load_classifier(pathlib.Path(tempfile.mkdtemp()) / "none.pt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    melfront.errors.DataNotFoundError: checkpoint '.../none.pt' does not exist
    """
    obj = load_checkpoint(path, "classifier", map_location=map_location)
    cfg = obj["config"]
    _check_classifier_config(cfg, Path(obj["path"]))
    try:
        clf, shape = build_classifier(cfg["frontend"], cfg["model"], len(cfg["classes"]), cfg["mel"],
                                      cfg["patch_frames"], cfg.get("model_options"))
    except (ValueError, TypeError, KeyError, RuntimeError) as exc:  # ParameterError is a ValueError
        raise CheckpointError(f"{obj['path']}: cannot rebuild the classifier from the checkpoint's config "
                              f"({cfg['model']} with frontend {cfg['frontend']!r}): {exc}") from None
    try:
        clf.load_state_dict(obj["state_dict"])
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise CheckpointError(f"{obj['path']}: the weights do not fit the model rebuilt from the checkpoint's "
                              f"config ({cfg['model']} with frontend {cfg['frontend']!r}, {len(cfg['classes'])} "
                              f"classes, input {shape}): {detail[:600]}") from None
    clf.eval()
    return clf, cfg
