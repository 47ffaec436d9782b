"""MSTModel checkpoints and the ``"mst"`` frontend spec.

An MST checkpoint is the one melfront checkpoint format (:mod:`melfront.train.checkpoint`) with
``kind="mst"``; its JSON ``config`` holds ``model`` (the :class:`~melfront.mst.MSTModel` constructor
arguments), ``target`` (mel parameters and training-set statistics of the
:class:`~melfront.mst.LogMelTarget`, or ``None``) and whatever the writer adds (``melfront learn-mel``:
metrics, training and validation clip names, the data set).

This module sits above :mod:`melfront.train` (it uses its checkpoint format), so the ``"mst"``
frontend registers itself here, when :mod:`melfront.mst` is imported (``import melfront`` does).
"""
from __future__ import annotations

from pathlib import Path

from ..checks import boolean
from ..errors import CheckpointError, ParameterError
from ..frontends.registry import register_frontend
from ..train.checkpoint import load_checkpoint, load_weights, save_checkpoint
from .model import LogMelTarget, MSTFrontend, MSTModel

__all__ = ["save_mst", "load_mst", "mst_frontend"]


def save_mst(path, model: MSTModel, target: LogMelTarget | None = None, extra: dict | None = None) -> Path:
    """Write ``model`` (and its ``target``'s statistics) as a ``kind="mst"`` melfront checkpoint, atomically.

    ``config`` is JSON-able: ``model`` (constructor arguments), ``target`` (mel parameters and the
    training-set statistics of :class:`LogMelTarget`) and anything in ``extra`` (e.g. metrics,
    training clips). Returns the path.

    >>> import tempfile, pathlib
    >>> m = MSTModel(n_mels=4, n_fft=16, hop_length=8, n_filters=2, n_hidden=2)
    >>> p = save_mst(pathlib.Path(tempfile.mkdtemp()) / "m.pt", m, extra={"dataset": "demo"})
    >>> load_mst(p)[2]["dataset"]
    'demo'
    """
    config = {"model": model.config(), "target": target.config() if target is not None else None}
    config.update(extra or {})
    return save_checkpoint(path, model, config, kind="mst")


def load_mst(path, map_location="cpu"):
    """Read a checkpoint written by :func:`save_mst` -> ``(MSTModel, LogMelTarget or None, config)``.

    Loaded with ``torch.load(weights_only=True)``. Raises :class:`~melfront.errors.DataNotFoundError`
    (a ``FileNotFoundError``) for a missing file and :class:`~melfront.errors.CheckpointError` naming the file for anything that is not an MST checkpoint
    of the current format, whose config cannot build the model or target, or whose weights do not fit.

    >>> import tempfile, pathlib
    >>> load_mst(pathlib.Path(tempfile.mkdtemp()) / "none.pt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    melfront.errors.DataNotFoundError: checkpoint '.../none.pt' does not exist
    """
    obj = load_checkpoint(path, "mst", map_location=map_location)
    config, where = obj["config"], obj["path"]
    if not isinstance(config.get("model"), dict):
        raise CheckpointError(f"{where}: the MST checkpoint's config has no 'model' dict")
    try:
        model = MSTModel(**config["model"])
    except (TypeError, ParameterError) as exc:
        raise CheckpointError(f"{where}: the MST checkpoint's config cannot build an MSTModel ({exc})") from None
    load_weights(model, obj)
    target = None
    t = config.get("target")
    if t:
        try:
            target = LogMelTarget(mel=t["mel"], stats=t["stats"], normalise_peak=t.get("normalise_peak", True),
                                  top_db=t.get("top_db", 80.0))
        except (TypeError, KeyError, ParameterError) as exc:
            raise CheckpointError(f"{where}: the MST checkpoint's target config is unusable ({exc})") from None
    return model, target, config


@register_frontend("mst", "waveform: learned MSTmodel frontend (Tax et al. 2017) from a checkpoint")
def mst_frontend(checkpoint: str = "mst.pt", frozen: bool = True, normalise_peak: bool = True,
                 **ignored) -> MSTFrontend:
    """Frontend from a ``melfront learn-mel`` checkpoint (spec ``"mst(checkpoint='mst.pt', frozen=True)"``).

    Returns an :class:`MSTFrontend` (``input_kind = "waveform"``, output ``(batch, n_mels, frames)``).
    The checkpoint fixes the mel parameters: other keyword arguments (common frontend options) are
    ignored, except that ``sample_rate``, ``n_fft``, ``hop_length`` or ``n_mels`` that disagree with
    the checkpoint raise ``ParameterError`` (the model would silently compute something else, or its
    frames would not line up with the caller's patches).

    >>> import tempfile, pathlib
    >>> m = MSTModel(n_mels=4, n_fft=16, hop_length=8, n_filters=2, n_hidden=2)
    >>> p = save_mst(pathlib.Path(tempfile.mkdtemp()) / "m.pt", m)
    >>> f = mst_frontend(str(p), n_mels=4)
    >>> f.frozen, f.input_kind, f.n_mels
    (True, 'waveform', 4)
    """
    boolean("frozen", frozen)
    model, target, config = load_mst(checkpoint)
    trained = dict(n_fft=model.n_fft, hop_length=model.hop_length, n_mels=model.n_mels)
    if target is not None:
        trained["sample_rate"] = target.mel_kwargs.get("sample_rate")
    for key, value in trained.items():
        given = ignored.get(key)
        if given is not None and value is not None and float(given) != float(value):
            raise ParameterError(f"{checkpoint}: the MSTModel was trained with {key}={value}, but {key}={given} "
                                 f"was asked for; use {key}={value} (e.g. in the mel settings) or retrain it")
    return MSTFrontend(model, frozen=frozen, config=config, normalise_peak=normalise_peak)
