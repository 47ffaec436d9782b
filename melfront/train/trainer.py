"""The one training loop: :class:`Trainer` fits and evaluates a ``frontend -> backbone`` classifier.

Reproducibility: a ``seed`` fixes the initial weights (python, numpy and torch generators are seeded
before building, :func:`seed_everything`), the data order and patches of every epoch (derived from
``(seed, epoch)`` by hashing, so a resumed run continues exactly as the uninterrupted one) and dropout
(torch is reseeded at the start of every epoch from ``(seed, epoch)``). Same seed, machine and device:
same metrics.

Prototypical networks (``sampling="episodes"``), setting ``support``: ``"episode"`` (default) draws a
support set every episode and evaluates against the class means of every evaluation patch of the training
clips; ``"fixed"`` draws one support set from ``seed`` (:meth:`Trainer.fixed_support`, re-drawn identically
and checked on resume) for every episode and for the evaluation prototypes, as Pons et al.'s reference code
(what that code does, and how melfront differs: :mod:`melfront.train.batches`).
"""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..checks import finite_float, one_of
from ..data.sampling import seed_for
from ..errors import CheckpointError, DivergenceError, ParameterError, TrainingError
from ..models import kernel_weights, set_batch_norm
from ..runtime import autocast, channels_last, channels_last_preferred, default_device, seed_everything, tune_allocator
from .batches import batches, epoch_order, eval_dataset, train_dataset
from .checkpoint import cpu_state_dict, load_checkpoint, load_weights, save_checkpoint
from .dense import clip_patch_logits
from .episodes import Episodes, tick as _tick
from .metrics import aggregate, clip_metrics
from .settings import TrainSettings

__all__ = ["Trainer", "seed_everything", "default_device"]

_ADVICE = "lower train['lr'] or set train['clip_norm']"


class Trainer(Episodes):
    """Fit and evaluate a :class:`melfront.models.Classifier` on in-memory clip features.

    Parameters
    ----------
    classifier : Classifier
        ``frontend -> backbone``; moved to ``device``.
    settings : dict or TrainSettings
        From :func:`melfront.train.resolve_settings` (checked again here: :class:`TrainSettings`).
    kind : {"mel", "waveform"}
        What the features are (the frontend's ``input_kind``).
    hop_length : int
        Samples per frame (the mel ``hop_length``), for waveform patches.
    seed : int
        See the module docstring.
    device : str or None
        None: CUDA when available, else CPU.
    progress : bool
        tqdm bars: epochs (with loss, accuracy and validation accuracy) and, inside each epoch, its batches.
    checkpoint : path or None
        Written atomically after every epoch (with optimizer and early-stopping state, and the cumulative
        training time :attr:`train_seconds`) and at the end. On Ctrl-C (``KeyboardInterrupt``) during
        :meth:`fit` it holds the state at the start of the interrupted epoch (written then if it was not
        yet, e.g. in the first epoch), so that :meth:`resume` continues exactly; the interrupt is re-raised.
    config : dict
        JSON-able config stored in the checkpoint (see :func:`melfront.train.train_classifier`).
    task : object or None
        None: classification (clip features and labels, the rest of this docstring). Otherwise the hook of another
        objective (e.g. :class:`melfront.train.regression.Regression`, mean squared error): its
        ``train_epoch(trainer, epoch)`` makes every update through :meth:`step`, ``evaluate(trainer)`` gives the
        validation metrics and ``score(record)`` what early stopping maximises; :meth:`fit` then takes no data
        (the task holds it), records the untrained model's metrics as epoch 0, and keeps this class's epoch
        loop, divergence checks, early stopping and best-state restore. Optional: ``clip_gradients(trainer)``
        clips (or otherwise edits) the gradients in :meth:`step` instead of ``clip_grad_norm_`` with
        ``clip_norm``, and ``check_parameters(trainer, epoch)`` replaces the end-of-epoch all-finite check
        (e.g. :class:`melfront.train.batched.BatchedRuns`: per stacked run, a failing run fails alone).

    Optimiser parameter groups (``group["name"]``): ``"decay"`` (the backbone's kernels,
    ``weight_decay``), ``"no_decay"`` (the backbone's other trainable parameters) and ``"frontend"``
    (every frontend parameter, no weight decay, learning rate ``lr * frontend_lr_scale``). The frontend
    group also holds frozen parameters (``requires_grad=False``: they get no gradient, so no update), so
    that a frontend unfrozen later for fine-tuning learns in the same optimiser, which keeps its state.

    Modes: the trainer only calls ``model.train()`` / ``model.eval()``, which reach every submodule
    through its ``train(mode)``; a frontend that overrides ``train`` keeps the mode it chooses (e.g.
    ``MSTFrontend(frozen=True)`` keeps its batch norm in eval mode, running statistics fixed).

    >>> from melfront.train import build_classifier, resolve_settings
    >>> mel = dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=32)
    >>> clf, _ = build_classifier("loglearn", "vgg", 2, mel, 32, {"width": 4})
    >>> s = resolve_settings("vgg", dict(epochs=2, batch_size=2, lr=0.01, patch_frames=32, n_mels=32,
    ...                                  frontend_lr_scale=0.5))
    >>> t = Trainer(clf, s, device="cpu", progress=False)
    >>> [(g["name"], g["lr"]) for g in t.optimizer.param_groups]
    [('decay', 0.01), ('no_decay', 0.01), ('frontend', 0.005)]
    >>> feats = [torch.rand(32, 40) + 1e-3 for _ in range(4)]
    >>> seen = []
    >>> [h["epoch"] for h in t.fit(feats, [0, 1, 0, 1], on_epoch=seen.append)], len(seen)
    ([1, 2], 2)
    >>> t.predict(feats[:1]).shape
    (1, 2)
    """

    def __init__(self, classifier: nn.Module, settings, *, kind: str = "mel", hop_length: int | None = None,
                 seed: int = 0, device: str | None = None, progress: bool = True, checkpoint=None,
                 config: dict | None = None, task=None):
        one_of("kind", kind, ("mel", "waveform"))
        if kind == "waveform" and hop_length is None:
            raise ParameterError("hop_length is needed for waveform features")
        tune_allocator()  # glibc malloc for tensor-sized blocks, once per process (melfront/runtime.py)
        self.device = torch.device(device or default_device())
        self.model = classifier.to(self.device)
        if channels_last_preferred(getattr(self.model, "backbone", None)):  # measured faster (runtime.py)
            self.model.backbone.to(memory_format=torch.channels_last)
        self.s = TrainSettings.from_dict(settings).as_dict()
        self.kind, self.hop_length, self.seed = kind, hop_length, int(seed)
        self.progress = progress
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.config = dict(config or {})
        self.history: list[dict] = []
        set_batch_norm(getattr(self.model, "backbone", self.model), self.s["bn_momentum"], self.s["bn_eps"])
        self.optimizer = self._make_optimizer()
        self.epoch = 0  # epochs completed
        self.best = dict(score=-math.inf, epoch=0, bad=0, state=None)
        self.finished = False
        self.train_seconds = 0.0  # wall time spent in fit, over every session (kept across resume)
        self._saved_epoch = None  # the epoch whose end state the checkpoint file holds
        self._support = None  # support="fixed": (x, labels, clip indices), drawn by fit
        self._checkpoint_support = None  # the fixed support clips a resumed checkpoint was trained with
        self.task = task  # None: classification; else the objective's hook (see the class docstring)

    # ---------------------------------------------------------------- optimiser
    def _make_optimizer(self):
        s = self.s
        frontend = getattr(self.model, "frontend", None)
        front_ids = {id(p) for p in frontend.parameters()} if frontend is not None else set()
        decay_ids = {id(p) for p in kernel_weights(getattr(self.model, "backbone", self.model), s["decay_layers"])}
        params = [p for p in self.model.parameters() if p.requires_grad and id(p) not in front_ids]
        # decay_before_clip: _step adds the decay to the gradient itself, before clipping
        groups = [dict(name="decay", params=[p for p in params if id(p) in decay_ids],
                       weight_decay=0.0 if s["decay_before_clip"] else float(s["weight_decay"])),
                  dict(name="no_decay", params=[p for p in params if id(p) not in decay_ids], weight_decay=0.0),
                  dict(name="frontend", params=list(frontend.parameters()) if frontend is not None else [],
                       weight_decay=0.0, lr=s["lr"] * s["frontend_lr_scale"])]
        groups = [g for g in groups if g["params"]]
        if not any(p.requires_grad for g in groups for p in g["params"]):
            raise TrainingError("the classifier has no trainable parameters")
        if s["optimizer"] == "sgd":
            return torch.optim.SGD(groups, lr=s["lr"], momentum=s["momentum"],
                                   nesterov=bool(s["nesterov"]) and s["momentum"] > 0)
        return torch.optim.Adam(groups, lr=s["lr"])

    def set_frontend_lr_scale(self, scale: float) -> None:
        """Let the frontend learn at ``lr * scale`` from now on (e.g. fine-tuning after a frozen phase).

        The optimiser and its state are kept; ``settings["frontend_lr_scale"]`` is updated.
        """
        scale = finite_float("frontend_lr_scale", scale, 0.0)
        self.s["frontend_lr_scale"] = scale
        for g in self.optimizer.param_groups:
            if g.get("name") == "frontend":
                g["lr"] = self.s["lr"] * scale

    # ---------------------------------------------------------------- one epoch
    def step(self, loss, epoch: int, batch: int) -> float:
        """One update from ``loss`` (what a task's ``train_epoch`` calls): its value, after the divergence check."""
        return self._step(loss, epoch, batch)

    def _step(self, loss, epoch: int, batch: int) -> float:
        value = float(loss.detach())
        if not math.isfinite(value):
            raise DivergenceError(f"training diverged: the loss became {value} in epoch {epoch}, batch {batch}; "
                                  + _ADVICE)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.s["decay_before_clip"] and self.s["weight_decay"]:
            for g in self.optimizer.param_groups:
                if g.get("name") == "decay":
                    for p in g["params"]:
                        if p.grad is not None:
                            p.grad.add_(p.detach(), alpha=float(self.s["weight_decay"]))
        clip = getattr(self.task, "clip_gradients", None)
        if clip is not None:  # a task's own clipping (e.g. per stacked run: train/batched.py)
            clip(self)
        elif self.s["clip_norm"] is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.s["clip_norm"])
        self.optimizer.step()
        return value

    def _train_epoch(self, ds, clips_by_class, n_train, epoch):
        """One epoch of mini-batches (or episodes); returns ``(mean loss, accuracy)`` over the items."""
        s = self.s
        self.model.train()
        torch.manual_seed(seed_for(self.seed, "dropout", epoch))
        total, correct, loss_sum = 0, 0, 0.0
        if s["sampling"] == "episodes":
            bar, loss_sum, correct, total = self._episodes_epoch(ds, clips_by_class, n_train, epoch)
        else:
            ds.set_epoch(epoch)
            order = epoch_order(len(ds), s["batch_size"], self.seed, epoch, drop_last=s["drop_last"])
            bar = self._batch_bar(epoch, math.ceil(len(order) / s["batch_size"]), "batch")
            for b, (x, y, _) in enumerate(batches(ds, order, s["batch_size"], self.device)):
                logits = self.model(x)
                loss_sum += self._step(nn.functional.cross_entropy(logits, y), epoch, b + 1) * len(y)
                correct += int((logits.argmax(1) == y).sum())
                total += len(y)
                _tick(bar, loss_sum, total)
        if bar is not None:
            bar.close()
        self._check_parameters(epoch)
        return loss_sum / max(total, 1), correct / max(total, 1)

    def _check_parameters(self, epoch: int) -> None:
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            raise DivergenceError(f"training diverged: a parameter became NaN or infinite in epoch {epoch}; "
                                  + _ADVICE)

    def _batch_bar(self, epoch: int, total: int, unit: str):
        """The per-batch progress bar of one epoch (None without ``progress``); it disappears when the epoch ends."""
        if not self.progress:
            return None
        return tqdm(total=total, desc=f"epoch {epoch}", unit=unit, leave=False, dynamic_ncols=True)

    # ---------------------------------------------------------------- evaluation
    def _eval_dataset(self, features, labels):
        return eval_dataset(features, labels, self.s, self.kind, self.hop_length, self.seed)

    @torch.no_grad()
    def predict(self, features: Sequence[torch.Tensor]) -> np.ndarray:
        """Clip scores ``(n_clips, n_classes)`` (rows sum to 1), aggregated over each clip's patches."""
        if len(features) == 0:
            return np.zeros((0, getattr(self.model, "n_classes", 0) or 0))
        self.model.eval()
        ds = self._eval_dataset(features, [0] * len(features))
        out, idx = [], []
        net = getattr(self.model, "backbone", self.model)
        with autocast(self.device, self.s["precision"]), channels_last(net, channels_last_preferred(net)):
            if self.kind == "mel":  # exact dense evaluation where it is exact, else batched patches (train/dense.py)
                logits = clip_patch_logits(self.model, ds.features, ds.index, ds.n_frames,
                                           self.s["eval_batch_size"], device=self.device)
                out, idx = [torch.log_softmax(logits.double(), dim=1).cpu()], ds.clip_indices
            for x, _, clips in ([] if out else batches(ds, range(len(ds)), self.s["eval_batch_size"], self.device)):
                out.append(torch.log_softmax(self.model(x).double(), dim=1).cpu())
                idx.extend(clips)
        log_probs = torch.cat(out)
        if not torch.isfinite(log_probs).all():
            raise DivergenceError("the classifier outputs NaN or infinite values (training diverged?); " + _ADVICE)
        return aggregate(log_probs, idx, len(features), self.s["aggregation"])

    def evaluate(self, features, labels, classes) -> dict:
        """:func:`melfront.train.clip_metrics` of :meth:`predict` on ``features`` against ``labels``."""
        return clip_metrics(self.predict(features), labels, classes)

    # ---------------------------------------------------------------- checkpointing
    def _save(self, final: bool = False):
        if self.checkpoint is None:
            return
        best_state = self.best["state"] if (self.s["patience"] is not None and not final) else None
        score = float(self.best["score"]) if math.isfinite(self.best["score"]) else None
        save_checkpoint(self.checkpoint, self.model, self.config, kind="classifier", optimizer=self.optimizer,
                        epoch=self.epoch,
                        extra=dict(history=self.history, finished=final, seed=self.seed, best_state_dict=best_state,
                                   early_stopping=dict(score=score, epoch=self.best["epoch"], bad=self.best["bad"]),
                                   train_seconds=float(self.train_seconds),
                                   fixed_support=None if self._support is None else list(self._support[2])))
        self._saved_epoch = self.epoch

    def resume(self, path=None) -> bool:
        """Continue from a checkpoint written by :meth:`fit` (default: this trainer's). False if none exists.

        A checkpoint written for another configuration, or whose weights do not fit, raises
        :class:`~melfront.errors.CheckpointError`.
        """
        path = Path(path) if path is not None else self.checkpoint
        if path is None or not Path(path).is_file():
            return False
        obj = load_checkpoint(path, "classifier", map_location=self.device)
        saved = {k: v for k, v in obj["config"].items() if k not in ("train_seconds",)}
        mine = {k: v for k, v in self.config.items() if k not in ("train_seconds",)}
        if mine and saved != mine:
            diff = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k))
            raise CheckpointError(f"{path}: cannot resume, the checkpoint was written for another configuration "
                                  f"(differs in {diff})")
        load_weights(self.model, obj)
        if obj.get("optimizer"):
            self.optimizer.load_state_dict(obj["optimizer"])
        self.epoch = int(obj.get("epoch") or 0)
        self.history = list(obj.get("history") or [])
        es = obj.get("early_stopping") or {}
        self.best = dict(score=es.get("score") if es.get("score") is not None else -math.inf,
                         epoch=es.get("epoch", 0), bad=es.get("bad", 0), state=obj.get("best_state_dict"))
        self.finished = bool(obj.get("finished"))
        self.train_seconds = float(obj.get("train_seconds") or 0.0)
        self._checkpoint_support = obj.get("fixed_support")
        self._saved_epoch = self.epoch
        return True

    # ---------------------------------------------------------------- fit
    def fit(self, features: Sequence[torch.Tensor] = None, labels: Sequence[int] = None, val_features=None, val_labels=None,
            classes: Sequence[str] | None = None, on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
        """Train; returns the history (one dict per epoch: epoch, loss, accuracy, val_accuracy, val_map, seconds).

        Continues after :meth:`resume` from the epoch reached. With ``patience``, stops when the monitored
        accuracy (setting ``monitor``: validation clip accuracy if a validation set is given, else training
        accuracy; or the inference-mode clip accuracy of the training clips) has not improved for ``patience``
        epochs (``patience_count``: consecutive or in total) and restores the best weights (unless
        ``restore_best`` is False: then the last weights stay).

        ``on_epoch(record)``, if given, is called with each epoch's history record right after the epoch
        (before early stopping and the checkpoint), e.g. to evaluate a test set for a learning curve;
        JSON-able entries it adds to ``record`` are kept in the history and the checkpoint.

        A non-finite loss raises :class:`~melfront.errors.DivergenceError` naming the epoch and batch. Ctrl-C
        (``KeyboardInterrupt``) leaves the checkpoint at the start of the interrupted epoch, then re-raises.
        The wall time spent here is added to :attr:`train_seconds` (which a resumed trainer continues).
        With a ``task``, ``fit(on_epoch=...)`` takes no data: the task holds it.
        """
        if self.task is not None:
            return self._fit_task(on_epoch)
        if len(features) != len(labels):
            raise ParameterError(f"features and labels differ in length: {len(features)} != {len(labels)}")
        if len(features) == 0:
            raise ParameterError("features: no training clips")
        labels = [int(v) for v in labels]
        n_classes = getattr(self.model, "n_classes", None) or (max(labels) + 1)
        classes = list(classes) if classes is not None else [str(k) for k in range(n_classes)]
        val = (val_features, val_labels, classes) if val_features is not None and len(val_features) > 0 else None
        if self.finished:
            return self.history
        ds = train_dataset(features, labels, self.s, self.kind, self.hop_length, self.seed)
        by_class: dict[int, list[int]] = {}
        for i, lab in enumerate(labels):
            by_class.setdefault(lab, []).append(i)
        self._support = self._draw_support(features, labels)
        max_epochs = self.s["epochs"] if self.s["epochs"] is not None else self.s["max_epochs"]
        if max_epochs is None:  # max_epochs=None: no cap, patience alone ends training (see TrainSettings)
            max_epochs = math.inf
        bar = None
        if self.progress:
            bar = tqdm(total=max_epochs if math.isfinite(max_epochs) else None, initial=self.epoch, desc="epochs", unit="epoch", leave=True,
                       dynamic_ncols=True)
        return self._epochs(lambda: self._epoch(ds, by_class, features, labels, val, classes), on_epoch,
                            val is not None, max_epochs, bar, lambda: self._finish(features, labels))

    def _epochs(self, next_epoch, on_epoch, has_val: bool, max_epochs, bar, finish) -> list[dict]:
        """The epoch loop: ``next_epoch()`` trains one epoch and returns its record; early stopping, checkpoints,
        training time and Ctrl-C as :meth:`fit` says; ``finish()`` ends the run."""
        start = self._epoch_start_state()
        t0 = time.perf_counter()
        try:
            while self.epoch < max_epochs:
                rec = next_epoch()
                if on_epoch is not None:
                    on_epoch(rec)
                stop = self._early_stopping(rec, has_val)
                _show(bar, rec)
                if stop or self.epoch >= max_epochs:
                    break
                self.train_seconds += time.perf_counter() - t0
                t0 = time.perf_counter()
                self._save()
            self.train_seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            return finish()
        except KeyboardInterrupt:
            self.train_seconds += time.perf_counter() - t0
            self._save_interrupted(start)
            raise
        finally:
            if bar is not None:
                bar.close()

    def _fit_task(self, on_epoch) -> list[dict]:
        """:meth:`fit` with a task: epoch 0 records the untrained model (and is the first best state)."""
        if self.finished:
            return self.history
        if self.epoch == 0 and not self.history:
            rec = dict(epoch=0, loss=None, **self.task.evaluate(self), seconds=0.0)
            self.history.append(rec)
            self._early_stopping(rec, True)
        max_epochs = self.s["epochs"] if self.s["epochs"] is not None else (self.s["max_epochs"] or math.inf)
        bar = None
        if self.progress:
            bar = tqdm(total=max_epochs if math.isfinite(max_epochs) else None, initial=self.epoch, desc="epochs",
                       unit="epoch", leave=True, dynamic_ncols=True)
        return self._epochs(self._task_epoch, on_epoch, True, max_epochs, bar, self._finish_task)

    def _task_epoch(self) -> dict:
        epoch = self.epoch + 1
        t0 = time.perf_counter()
        self.model.train()
        torch.manual_seed(seed_for(self.seed, "dropout", epoch))
        loss = self.task.train_epoch(self, epoch)
        check = getattr(self.task, "check_parameters", None)
        if check is not None:
            check(self, epoch)
        else:
            self._check_parameters(epoch)
        rec = dict(epoch=epoch, loss=loss, **self.task.evaluate(self))
        rec["seconds"] = time.perf_counter() - t0
        self.history.append(rec)
        self.epoch = epoch
        return rec

    def _finish_task(self) -> list[dict]:
        if self.s["patience"] is not None and self.s["restore_best"] and self.best["state"] is not None:
            self.model.load_state_dict(self.best["state"])
        self.model.eval()
        self.finished = True
        self._save(final=True)
        return self.history

    def _epoch_start_state(self):
        """What :meth:`_save_interrupted` needs when no checkpoint holds the current epoch's start yet."""
        if self.checkpoint is None or self._saved_epoch == self.epoch:
            return None
        return dict(epoch=self.epoch, history=len(self.history), model=cpu_state_dict(self.model),
                    optimizer=copy.deepcopy(self.optimizer.state_dict()))

    def _save_interrupted(self, start) -> None:
        """After Ctrl-C: make the checkpoint hold the state at the start of the interrupted epoch.

        Epochs finished in this session were saved when they ended (or are saved now, if the interrupt came
        between an epoch's end and its save); an interrupt in the session's first epoch restores the state
        the session started from (``start``) and saves it, so that a first-epoch Ctrl-C leaves a checkpoint too.
        """
        if self.checkpoint is None or self._saved_epoch == self.epoch:
            return
        if start is not None and self.epoch == start["epoch"]:
            self.model.load_state_dict(start["model"])
            self.optimizer.load_state_dict(start["optimizer"])
            del self.history[start["history"]:]
        self._save()

    def _epoch(self, ds, by_class, features, labels, val, classes=None) -> dict:
        """Train one epoch, evaluate the validation set; append and return the history record."""
        epoch = self.epoch + 1
        t0 = time.perf_counter()
        with autocast(self.device, self.s["precision"]):  # "bf16": the backbone in bfloat16, frontends float32
            loss, acc = self._train_epoch(ds, by_class, len(features), epoch)
        rec = dict(epoch=epoch, loss=loss, accuracy=acc)
        if self.s["sampling"] == "episodes":
            self.set_prototypes(features, labels)
        if self.s["monitor"] == "train_clip_accuracy":
            rec["train_clip_accuracy"] = self.evaluate(features, labels, classes)["accuracy"]
        if val is not None:
            m = self.evaluate(*val)
            rec.update(val_accuracy=m["accuracy"], val_map=m["map"])
        rec["seconds"] = time.perf_counter() - t0
        self.history.append(rec)
        self.epoch = epoch
        return rec

    def _early_stopping(self, rec: dict, has_val: bool) -> bool:
        """Track the best monitored accuracy; True when ``patience`` epochs passed without gain."""
        if self.s["patience"] is None:
            return False
        if self.task is not None:
            score = self.task.score(rec)
        elif self.s["monitor"] == "train_clip_accuracy":
            score = rec["train_clip_accuracy"]
        else:
            score = rec["val_accuracy"] if has_val else rec["accuracy"]
        if score > self.best["score"]:
            bad = 0 if self.s["patience_count"] == "consecutive" else self.best["bad"]
            state = cpu_state_dict(self.model) if self.s["restore_best"] else None
            self.best.update(score=score, epoch=rec["epoch"], bad=bad, state=state)
            return False
        self.best["bad"] += 1
        return self.best["bad"] >= self.s["patience"]

    def _finish(self, features, labels) -> list[dict]:
        if self.s["patience"] is not None and self.s["restore_best"] and self.best["state"] is not None:
            self.model.load_state_dict(self.best["state"])
        if self.s["sampling"] == "episodes":
            self.set_prototypes(features, labels)
        self.finished = True
        self._save(final=True)
        return self.history


def _show(bar, rec: dict) -> None:
    if bar is None:
        return
    post = {k: f"{rec[k]:.3f}" for k in ("loss", "accuracy", "val_mse", "val_corr") if rec.get(k) is not None}
    if "val_accuracy" in rec:
        post["val_acc"] = f"{rec['val_accuracy']:.3f}"
    bar.set_postfix(post)
    bar.update(1)
