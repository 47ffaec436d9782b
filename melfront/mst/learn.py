"""Learning the log-mel transform from raw audio (Tax et al. 2017): ``melfront learn-mel``.

Tax, Diez Antich, Purwins & Maaløe (2017), "Utilizing domain knowledge in end-to-end audio
processing", NIPS ML4Audio workshop (arXiv:1712.00254): :func:`train_mst` trains
:class:`~melfront.mst.MSTModel` by mean squared error against the normalised log-mel of the same audio
(:class:`~melfront.mst.LogMelTarget`): Adam, learning rate 3e-4, batches of 100 segments, early
stopping on a validation split. :func:`run_learn_mel` is ``melfront learn-mel``: data set -> segments ->
training -> checkpoint and the paper's Figure 1 (target vs prediction) and Figure 2 (first-layer filters).

The regression trains in the one training loop, :class:`melfront.train.Trainer`, through its mean-squared-error
task (:class:`melfront.train.regression.Regression`): the trainer's optimiser, update step and
``DivergenceError`` on a non-finite loss, its early stopping on the validation MSE and its best-state restore.
Checkpoints are :func:`~melfront.mst.save_mst` (the one format of :mod:`melfront.train.checkpoint`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..audio import load_audio
from ..checks import positive_float, positive_int
from ..data.sampling import grouped_holdout
from ..errors import DataError, ParameterError
from ..plotting.mst import plot_filters, plot_target_vs_prediction
from ..train import Trainer, default_device, seed_everything
from ..train.regression import Regression, regression_scores
from .checkpoint import save_mst
from .model import DEFAULT_MEL, SEGMENT_FRAMES, LogMelTarget, MSTModel
from .segments import load_clips, load_segments

__all__ = ["MSTResult", "train_mst", "evaluate_mst", "init_output_layer", "learn_mel_from_clips", "run_learn_mel",
           "figure_paths", "levels_off"]

_TINY = dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=16)  # the doctests' mel settings


def _log(progress, *args):
    if progress:
        print(*args, flush=True)


def _batched(fn, x, batch_size=100):
    return torch.cat([fn(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])


@torch.no_grad()
def evaluate_mst(model: MSTModel, waves: torch.Tensor, targets: torch.Tensor, batch_size: int = 100) -> dict:
    """Mean squared error and Pearson correlation (over all bands, frames, segments) of the model's
    output against ``targets`` ``(n, n_mels, frames)``.

    >>> m = MSTModel(n_mels=16, n_fft=256, hop_length=64, n_filters=8, n_hidden=8)
    >>> r = evaluate_mst(m, torch.randn(4, 640), torch.zeros(4, 16, 11))
    >>> sorted(r), r["mse"] >= 0
    (['corr', 'mse'], True)
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pred = _batched(lambda b: model(b.to(device)).cpu(), waves, batch_size)
    model.train(was_training)
    return regression_scores(pred, targets)


@dataclass
class MSTResult:
    """What :func:`train_mst` returns: the kept model, its target, the history and the kept scores.

    ``stopped``: ``"patience"`` (early stopping ended it: converged by the rule) or ``"max_epochs"`` (the cap
    ended it while the validation MSE may still have been improving: not shown to have converged).

    >>> r = MSTResult(None, None, [{"epoch": 0}], 0, {"mse": 1.0, "corr": 0.0}, 0.1)
    >>> r.best_epoch, r.val["mse"], r.stopped
    (0, 1.0, 'max_epochs')
    """

    model: MSTModel
    target: LogMelTarget
    history: list  # one dict per epoch; epoch 0 = before training
    best_epoch: int
    val: dict  # {"mse", "corr"} of the kept (best) model
    seconds: float
    stopped: str = "max_epochs"


def levels_off(history: list, key: str = "val_corr", tol: float = 0.005, higher_is_better: bool = True):
    """The first epoch whose ``key`` is within ``tol`` of the best value of the whole curve: where the
    validation curve levels off (``None`` for an empty curve).

    ``history`` is :attr:`MSTResult.history` (``{"epoch", key, ...}`` per epoch). With ``tol=0.005`` on the
    Pearson correlation, the epoch after which at most half a point of correlation was still gained.

    >>> h = [{"epoch": e, "val_corr": c} for e, c in enumerate([0.4, 0.8, 0.93, 0.948, 0.95, 0.951])]
    >>> levels_off(h), levels_off(h, tol=0.05)
    (3, 2)
    """
    rows = [h for h in history if h.get(key) is not None]
    if not rows:
        return None
    values = [float(h[key]) for h in rows]
    best = max(values) if higher_is_better else min(values)
    for h, v in zip(rows, values):
        if abs(best - v) <= tol:
            return int(h["epoch"])
    return None  # pragma: no cover (the best value itself is within tol)


@torch.no_grad()
def init_output_layer(model: MSTModel, y_train: torch.Tensor, scale: float = 0.1) -> None:
    """Start the output at each band's training mean: ``tanh(beta_k) = mean_k`` and a small scale.

    The last batch norm (or, without batch norm, the last convolution's bias) gets
    ``beta_k = atanh(mean_k)`` and ``gamma_k = scale * std_k``, so the untrained model already
    predicts the per-band mean with a little variation instead of unit-variance noise through the
    tanh; training then only has to learn the deviations. A speed-up for short runs, not in the paper.

    >>> m = MSTModel(n_mels=2, n_fft=16, hop_length=8, n_filters=2, n_hidden=2)
    >>> init_output_layer(m, torch.tensor([[[0.5, 0.5], [-0.5, -0.5]]]))
    >>> [round(v, 4) for v in torch.tanh(m.bn3.bias).tolist()]
    [0.5, -0.5]
    """
    mean = y_train.double().mean(dim=(0, 2)).clamp(-0.99, 0.99)
    std = y_train.double().std(dim=(0, 2)).nan_to_num(0.0)
    if isinstance(model.bn3, nn.BatchNorm1d):
        model.bn3.bias.copy_(torch.atanh(mean).to(model.bn3.bias))
        if model.bn3.weight is not None:  # (no scale to set under bn_scale=False, slim's batch norm)
            model.bn3.weight.copy_((scale * std).clamp_min(1e-3).to(model.bn3.weight))
    else:
        model.conv3.bias.copy_(torch.atanh(mean).to(model.conv3.bias))
        model.conv3.weight.mul_(scale)


def _check_training_args(train_waves, val_waves, epochs, patience, batch_size, lr):
    positive_int("epochs", epochs)
    positive_int("patience", patience)
    positive_int("batch_size", batch_size)
    positive_float("lr", lr)
    if train_waves.ndim != 2 or val_waves.ndim != 2 or train_waves.shape[0] == 0 or val_waves.shape[0] == 0:
        raise ParameterError("train_waves and val_waves must be non-empty (n, samples) tensors")


# Over 60 lines only through its docstring (parameters and a doctest); the body is about 30 lines.
def train_mst(train_waves: torch.Tensor, val_waves: torch.Tensor, mel: dict | None = None, epochs: int = 100,
              patience: int = 5, batch_size: int = 100, lr: float = 3e-4, seed: int = 0,
              model_options: dict | None = None, device: str | None = None, progress: bool = True,
              init_output: bool = True) -> MSTResult:
    """Train an :class:`MSTModel` to output the normalised log-mel of peak-normalised segments.

    Parameters
    ----------
    train_waves, val_waves : Tensor ``(n, samples)``
        Peak-normalised segments (:func:`~melfront.mst.load_segments`). The target's statistics (global
        mean, std, then min and max of the z-scores: :class:`LogMelTarget`) come from ``train_waves`` only.
    mel : dict
        Mel parameters of the target (default 22050 Hz, n_fft 1024, hop 512, 60 mels). The model's
        kernel, stride and band count follow them.
    epochs, patience : int
        At most ``epochs`` passes; stop when the validation MSE has not improved for ``patience``
        epochs and keep (restore) the best model (Tax et al.'s released ``mst_learning.py``: Adam 3e-4,
        batch 100, at most 800 epochs, stop after 50 epochs without improvement). ``MSTResult.stopped``
        says which of the two ended the run.
    model_options : dict
        Extra :class:`MSTModel` arguments (``n_filters``, ``n_hidden``; small ones for tests).
    init_output : bool
        Start the output layer at the training target's per-band means (:func:`init_output_layer`;
        default True; False = the paper's plain Xavier / batch-norm initialisation).

    Returns an :class:`MSTResult`; ``history[0]`` is the untrained model's validation score. A
    non-finite training loss raises :class:`melfront.errors.DivergenceError`.

    >>> x = torch.randn(6, 640)
    >>> r = train_mst(x[:4], x[4:], _TINY, epochs=2, batch_size=2, model_options=dict(n_filters=8, n_hidden=8),
    ...               device="cpu", progress=False)
    >>> len(r.history) >= 2, r.val["mse"] == min(h["val_mse"] for h in r.history)
    (True, True)
    """
    _check_training_args(train_waves, val_waves, epochs, patience, batch_size, lr)
    mel = dict(DEFAULT_MEL if mel is None else mel)
    device = torch.device(device or default_device())
    seed_everything(seed)
    target = LogMelTarget(mel, normalise_peak=False)
    train_db = _batched(target.db, train_waves)
    target.fit([train_db])
    y_train = target.normalise(train_db).float()
    y_val = _batched(target, val_waves).float()
    model = MSTModel(n_mels=target.mel.n_mels, n_fft=target.mel.n_fft, hop_length=target.mel.hop_length,
                     **(model_options or {}))
    if init_output:
        init_output_layer(model, y_train)
    task = Regression(train_waves, y_train, val_waves, y_val, batch_size=batch_size)
    trainer = Trainer(model, Regression.settings(lr, epochs, patience, batch_size), task=task, seed=seed,
                      device=str(device), progress=progress)
    start = time.perf_counter()
    history, clock = [], 0.0
    for h in trainer.fit():  # the trainer's records, under learn-mel's names (seconds: since the start)
        clock += h["seconds"]
        history.append({"epoch": h["epoch"], "train_mse": h["loss"], "val_mse": h["val_mse"],
                        "val_corr": h["val_corr"], "seconds": clock})
    best = int(trainer.best["epoch"])
    stopped = "patience" if trainer.best["bad"] >= patience else "max_epochs"
    kept = next(h for h in history if h["epoch"] == best)
    return MSTResult(trainer.model.cpu().eval(), target, history, best, {"mse": kept["val_mse"], "corr": kept["val_corr"]},
                     time.perf_counter() - start, stopped)


def figure_paths(checkpoint) -> tuple[Path, Path]:
    """Where ``learn-mel`` writes Figures 1 and 2: next to the checkpoint, named after it.

    >>> [p.name for p in figure_paths("out/mst.pt")]
    ['mst_target_vs_predicted.png', 'mst_filters.png']
    """
    checkpoint = Path(checkpoint)
    stem = checkpoint.with_suffix("")
    return (stem.with_name(stem.name + "_target_vs_predicted.png"), stem.with_name(stem.name + "_filters.png"))


def _clip_names(clips) -> list:
    return sorted(Path(str(getattr(c, "path", c))).name for c in clips)


def learn_mel_from_clips(clips, output, mel: dict | None = None, epochs: int = 100, patience: int = 5,
                         val_fraction: float = 0.15, batch_size: int = 100, lr: float = 3e-4, seed: int = 0,
                         segment_frames: int = SEGMENT_FRAMES, model_options: dict | None = None,
                         device: str | None = None, progress: bool = True, extra: dict | None = None,
                         figures: bool = True) -> dict:
    """Split ``clips`` (by source), cut segments, train, save the checkpoint and (``figures``) the two figures.

    Returns a JSON-able summary: validation MSE and correlation of the kept model, epochs, run time,
    the checkpoint and figure paths, and skipped clips.

    >>> import tempfile, numpy as np, soundfile as sf, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for i in range(4):
    ...     sf.write(d / f"{i}.wav", 0.5 * np.sin(np.arange(2000) * (0.2 + 0.1 * i)), 8000)
    >>> s = learn_mel_from_clips(sorted(d.glob("*.wav")), d / "m.pt", _TINY, epochs=1, val_fraction=0.25,
    ...                          segment_frames=11, model_options=dict(n_filters=8, n_hidden=8), device="cpu",
    ...                          progress=False, figures=False)
    >>> s["n_train_clips"], s["n_val_clips"], s["checkpoint"] == str(d / "m.pt")
    (3, 1, True)
    """
    mel = dict(DEFAULT_MEL if mel is None else mel)
    train_clips, val_clips = grouped_holdout(list(clips), seed=seed, fraction=val_fraction)
    if not train_clips or not val_clips:
        raise DataError(f"need clips on both sides of the validation split, got {len(train_clips)} train "
                        f"and {len(val_clips)} validation clip(s) from {len(clips)}")
    _log(progress, f"learn-mel: {len(train_clips)} training and {len(val_clips)} validation clips")
    t0 = time.perf_counter()
    train = load_segments(train_clips, mel, segment_frames, progress=progress)
    val = load_segments(val_clips, mel, segment_frames, progress=progress)
    prep_seconds = time.perf_counter() - t0
    _log(progress, f"learn-mel: {len(train)} training and {len(val)} validation segments "
                   f"of {train.waves.shape[-1]} samples ({prep_seconds:.1f} s to prepare)")
    result = train_mst(train.waves, val.waves, mel, epochs=epochs, patience=patience, batch_size=batch_size,
                       lr=lr, seed=seed, model_options=model_options, device=device, progress=progress)
    summary = {
        "val_mse": result.val["mse"], "val_corr": result.val["corr"], "best_epoch": result.best_epoch,
        "epochs_run": len(result.history) - 1, "stopped": result.stopped,
        "corr_levels_off_epoch": levels_off(result.history), "train_seconds": result.seconds, "prep_seconds": prep_seconds,
        "n_train_clips": len(train_clips), "n_val_clips": len(val_clips),
        "n_train_segments": len(train), "n_val_segments": len(val), "segment_frames": segment_frames,
        "history": result.history, "skipped": [list(s) for s in train.skipped + val.skipped],
    }
    config_extra = {"training": {k: v for k, v in summary.items() if k != "skipped"},
                    "train_clips": _clip_names(train_clips), "val_clips": _clip_names(val_clips)}
    config_extra.update(extra or {})
    output = save_mst(output, result.model, result.target, extra=config_extra)
    summary.update(checkpoint=str(output), figures=_write_figures(result, val, mel, output) if figures else [])
    return summary


def _write_figures(result: MSTResult, val, mel: dict, output: Path) -> list:
    fig1, fig2 = figure_paths(output)
    # Figure 1: the validation clip with the most segments kept (an eventful one), fed whole
    counts = torch.bincount(val.clip_index, minlength=len(val.paths))
    pick = int(counts.argmax())
    wave, _ = load_audio(val.paths[pick], sample_rate=int(mel["sample_rate"]))
    plot_target_vs_prediction(result.model, result.target, wave, fig1,
                              title=f"validation clip {Path(val.paths[pick]).name}")
    plot_filters(result.model, mel["sample_rate"], fig2,
                 title=f"MSTModel first layer after {result.best_epoch} epoch(s)")
    return [str(fig1), str(fig2)]


def run_learn_mel(dataset: str, root, output, epochs: int = 100, patience: int = 5, max_clips: int | None = None,
                  val_fraction: float = 0.15, batch_size: int = 100, lr: float = 3e-4, seed: int = 0,
                  device: str | None = None, progress: bool = True, figures: bool = True) -> dict:
    """``melfront learn-mel``: train the MSTModel on a data set's audio (labels unused); see
    :func:`learn_mel_from_clips` for the summary it returns.

    >>> run_learn_mel("folder", "data", "m.pt", max_clips=1)
    Traceback (most recent call last):
    ...
    melfront.errors.ParameterError: max_clips must be an integer >= 2, got 1
    """
    clips = load_clips(dataset, root, max_clips, seed)
    return learn_mel_from_clips(clips, output, epochs=epochs, patience=patience, val_fraction=val_fraction,
                                batch_size=batch_size, lr=lr, seed=seed, device=device, progress=progress,
                                extra={"dataset": dataset}, figures=figures)
