"""Batched runs: the runs of one study cell trained as one stacked model.

The runs of a cell (same model, frontend, n, fold; other seeds and training subsets) have the same
architecture and settings. :class:`BatchedRuns` stacks their weights (leading dimension: the run) as the
parameters of one module, whose forward is a ``vmap`` over the runs of ``functional_call(model)``, and trains
it in :class:`melfront.train.Trainer`'s own epoch loop and update step, as the trainer's task: the loss of a
step is the sum of the live runs' mean losses of their own mini-batches, so backward gives every run exactly
its own gradient; gradient clipping is applied per run (each run's global norm, the task's
``clip_gradients``); the optimiser (SGD or Adam, elementwise in every parameter) steps the stacked tensors,
which is each run's own update with its own state. Every run draws exactly what it would draw alone: initial weights (built by the
caller from the run's seed), patches and batch order (``(seed, epoch)``-hashed, :mod:`melfront.train.batches`)
and dropout masks (the run's ``(seed, epoch)`` generator, drawn in the order its layers would draw them on the
CPU). So the weights after ``k`` steps equal those of :meth:`melfront.train.Trainer.fit` alone to float
rounding (tested); each run is then evaluated and stored as its own trial. A run whose loss or weights
become non-finite fails alone (:class:`~melfront.errors.DivergenceError`, as its alone run would); the
others go on.

When it pays: a vmapped convolution with per-run weights runs as a grouped convolution. On a GPU, the
runs' small batches (10 patches per step at n = 1) fill the device together; on the CPU (one thread, oneDNN)
the grouped convolution was measured 1.1-1.45x *slower* than the runs one after another at batches of 10 to
100 patches and faster only at batches of one (BENCHMARKS.md). ``policy="auto"`` therefore batches on CUDA
only; ``"batched"`` forces it where supported, ``"alone"`` never batches.

Supported (:func:`batch_reason` says why not otherwise; such runs are trained one after another, as
before): one random patch per clip per epoch (``sampling="random"``, Pons et al.'s; with ``"all"`` the runs'
patch counts differ, episodes are the protonet's), fixed epochs (no early stopping), float32, no
checkpoint, mel features and a frame-local frontend (:func:`melfront.train.dense.frame_local`: the logarithms
and the learned power; PCEN's custom autograd scan has no vmap rule). Batch norm in training mode works: its
running statistics are stacked per run like the weights and updated in place under ``vmap`` (tested against
the run alone). Runs with different numbers of training clips (shortfalls) are batched in groups of equal
size.
"""
from __future__ import annotations

import copy
import json
import math
import time
from typing import Sequence

import torch
from torch import nn

from ..checks import one_of
from ..data.sampling import seed_for
from ..errors import DivergenceError, TrainingError
from .batches import batches, epoch_order, train_dataset
from .dense import frame_local
from .trainer import _ADVICE, Trainer

__all__ = ["BatchedRuns", "batch_reason", "fit_runs", "run_trials", "POLICIES"]

POLICIES = ("auto", "batched", "alone")
_SAME_EXCEPT = ("seed",)


def _example_runs(k: int, epochs: int) -> list:
    """``k`` SB-CNN trainers (seeds 0..k-1, 52 mel bands, 100-frame patches, lr 0.01) for the examples here."""
    from .build import build_classifier
    from .settings import resolve_settings
    mel = dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=52)
    s = resolve_settings("sbcnn", dict(epochs=epochs, batch_size=2, lr=0.01, patch_frames=100, n_mels=52))
    return [Trainer(build_classifier("logeps", "sbcnn", 2, mel, 100)[0], s, seed=seed, device="cpu", progress=False)
            for seed in range(k)]


def batch_reason(trainers: Sequence[Trainer]) -> str | None:
    """None when :class:`BatchedRuns` can train ``trainers`` together; else why not.

    >>> ts = _example_runs(2, epochs=1)
    >>> batch_reason(ts) is None, batch_reason(ts[:1])
    (True, 'a single run')
    """
    if len(trainers) < 2:
        return "a single run"
    first = trainers[0]
    s = first.s
    if s["sampling"] != "random":
        return f"sampling {s['sampling']!r} (runs differ in their numbers of patches)"
    if s["patience"] is not None:
        return "early stopping (patience)"
    if s.get("precision", "fp32") != "fp32":
        return f"precision {s['precision']}"
    if first.kind != "mel":
        return "waveform features"
    for t in trainers:
        if t.checkpoint is not None:
            return "a checkpoint per run"
        if t.device != first.device:
            return "runs on different devices"
        if {k: v for k, v in t.s.items() if k not in _SAME_EXCEPT} != \
                {k: v for k, v in s.items() if k not in _SAME_EXCEPT}:
            return "runs with different settings"
        if t.epoch or t.finished:
            return "a resumed run"
    model = first.model
    if not frame_local(model.frontend):
        return f"the frontend {type(model.frontend).__name__} (not elementwise)"
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if any({k: tuple(v.shape) for k, v in t.model.state_dict().items()} != shapes for t in trainers):
        return "runs with different architectures"
    return None


class _Mask(nn.Module):
    """Dropout replaced by a given mask (already divided by the keep probability), a per-run input of vmap."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mask", torch.ones(1), persistent=False)

    def forward(self, x):
        return x * self.mask


def _template(model: nn.Module):
    """A meta-device copy of ``model`` for functional_call: dropout -> :class:`_Mask`, InputConv2d -> Conv2d.

    Returns ``(template, [(mask name, p)])`` in forward order (the modules' registration order).
    """
    tmpl = copy.deepcopy(model).to("meta")
    drops = []
    for name, mod in list(tmpl.named_modules()):
        for cname, child in list(mod.named_children()):
            full = f"{name}.{cname}" if name else cname
            if isinstance(child, nn.Dropout):
                setattr(mod, cname, _Mask())
                drops.append((full + ".mask", float(child.p)))
            elif isinstance(child, nn.Conv2d) and type(child) is not nn.Conv2d:
                child.__class__ = nn.Conv2d  # InputConv2d: same parameters, autograd's own backward (vmap-able)
    return tmpl, drops


class BatchedRuns:
    """Train the :class:`~melfront.train.Trainer` s of one cell together (see the module docstring).

    After :meth:`fit` every trainer holds its trained weights, ``history``, ``epoch``, ``finished`` and
    ``train_seconds`` (the batch's wall time divided by the number of runs), so that its ``predict`` /
    ``evaluate`` score it alone.

    >>> ts = _example_runs(3, epochs=2)
    >>> feats = [[torch.rand(52, 120) + 1e-3 for _ in range(4)] for _ in ts]
    >>> out = BatchedRuns(ts).fit(feats, [[0, 1, 0, 1]] * 3)
    >>> [len(h) for h in out], ts[1].epoch, ts[1].predict(feats[1]).shape
    ([2, 2, 2], 2, (4, 2))
    """

    def __init__(self, trainers: Sequence[Trainer]):
        reason = batch_reason(trainers)
        if reason is not None:
            raise TrainingError(f"these runs cannot be trained as one stacked model: {reason}")
        self.trainers = list(trainers)
        self.s = self.trainers[0].s
        self.device = self.trainers[0].device
        self.template, self.drops = _template(self.trainers[0].model)

    def _stack(self):
        models = [t.model for t in self.trainers]
        trainable = [n for n, p in models[0].named_parameters() if p.requires_grad]
        params = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]).clone()
                  for n, _ in models[0].named_parameters()}
        consts = {n: torch.stack([dict(m.named_buffers())[n] for m in models])
                  for n, _ in models[0].named_buffers()}
        for n in list(params):
            if n not in trainable:
                consts[n] = params.pop(n)
        return params, consts

    def _optimizer(self, params: dict):
        """One optimiser over the stacked tensors with the trainers' groups (elementwise: per run)."""
        s, model = self.s, self.trainers[0].model
        names = {id(p): n for n, p in model.named_parameters()}
        groups = []
        for g in self.trainers[0].optimizer.param_groups:
            ps = [params[names[id(p)]] for p in g["params"] if names[id(p)] in params]
            if ps:
                wd = 0.0 if s.get("decay_before_clip") else g["weight_decay"]
                groups.append(dict(name=g.get("name"), params=ps, lr=g["lr"], weight_decay=wd))
        if s["optimizer"] == "sgd":
            return torch.optim.SGD(groups, lr=s["lr"], momentum=s["momentum"],
                                   nesterov=bool(s["nesterov"]) and s["momentum"] > 0)
        return torch.optim.Adam(groups, lr=s["lr"])

    def _masks(self, gens, shapes: dict) -> dict:
        """Each run's dropout masks for one batch, drawn from its generator in forward order (as alone)."""
        out, per_run = {}, [[] for _ in gens]
        for r, g in enumerate(gens):
            for name, p in self.drops:
                m = torch.empty(shapes[name], dtype=torch.float32).bernoulli_(1 - p, generator=g)
                per_run[r].append(m.div_(1 - p) if p < 1 else m)
        for j, (name, _) in enumerate(self.drops):
            out[name] = torch.stack([per_run[r][j] for r in range(len(gens))]).to(self.device)
        return out

    def _drop_shapes(self, x: torch.Tensor) -> dict:
        """The input shape of every dropout layer for a batch like ``x`` (one run's)."""
        shapes, hooks = {}, []
        model = self.trainers[0].model
        for name, mod in model.named_modules():
            if isinstance(mod, nn.Dropout):
                hooks.append(mod.register_forward_hook(
                    lambda m, inp, out, key=name + ".mask": shapes.__setitem__(key, tuple(inp[0].shape))))
        try:
            was = model.training
            model.eval()
            with torch.no_grad():
                model(x[:1].to(self.device))
            model.train(was)
        finally:
            for h in hooks:
                h.remove()
        return {k: (x.shape[0],) + v[1:] for k, v in shapes.items()}

    def fit(self, features: Sequence[Sequence[torch.Tensor]], labels: Sequence[Sequence[int]]) -> list:
        """Train every run; per run its history (list of epoch dicts) or the exception that ended it.

        The stacked model is trained by a :class:`~melfront.train.Trainer` of its own (its epoch loop, its
        update step), with this object as its task (:meth:`train_epoch`, :meth:`clip_gradients`,
        :meth:`check_parameters`).
        """
        s, m = self.s, len(self.trainers)
        self._dss = [train_dataset(f, [int(v) for v in lab], s, t.kind, t.hop_length, t.seed)
                     for t, f, lab in zip(self.trainers, features, labels)]
        if len({len(ds) for ds in self._dss}) != 1:
            raise TrainingError("batched runs need the same number of training items per run")
        params, consts = self._stack()
        stack = _Stack(self.template, params, consts)
        trainer = Trainer(stack, s, kind=self.trainers[0].kind, hop_length=self.trainers[0].hop_length,
                          seed=self.trainers[0].seed, device=self.device, progress=False, task=self)
        trainer.optimizer = self._optimizer(stack.named_stacked())  # the runs' own groups, learning rates
        self.failed: list[Exception | None] = [None] * m
        self.histories: list[list[dict]] = [[] for _ in range(m)]
        self._shapes = None
        trainer.fit()
        stacked = stack.named_stacked()
        seconds = trainer.train_seconds / m
        for r, t in enumerate(self.trainers):
            with torch.no_grad():
                for n, p in t.model.named_parameters():
                    p.copy_(stacked[n][r] if n in stacked else consts[n][r])
                for n, buf in t.model.named_buffers():  # batch norm's running statistics, updated per run
                    buf.copy_(consts[n][r])
            t.history, t.epoch, t.finished = self.histories[r], s["epochs"], self.failed[r] is None
            t.train_seconds += seconds
        return [self.failed[r] if self.failed[r] is not None else self.histories[r] for r in range(m)]

    # ---------------------------------------------------------------- the stacked trainer's task
    def train_epoch(self, trainer: Trainer, epoch: int) -> float:
        """One epoch of every run's own batches; each update is ``trainer.step`` of the sum of the live runs'
        mean losses (so each run gets exactly its own gradient). Appends each run's history record; returns
        the mean loss of the live runs."""
        s, m = self.s, len(self.trainers)
        te = time.perf_counter()
        gens = [torch.Generator().manual_seed(seed_for(t.seed, "dropout", epoch)) for t in self.trainers]
        iters = []
        for t, ds in zip(self.trainers, self._dss):
            ds.set_epoch(epoch)
            order = epoch_order(len(ds), s["batch_size"], t.seed, epoch, drop_last=s["drop_last"])
            iters.append(batches(ds, order, s["batch_size"], self.device))
        loss_sum, correct, total = [0.0] * m, [0] * m, 0
        for b, parts in enumerate(zip(*iters)):
            x = torch.stack([p[0] for p in parts])
            y = torch.stack([p[1] for p in parts])
            if self._shapes is None or next(iter(self._shapes.values()), (x.shape[1],))[0] != x.shape[1]:
                self._shapes = self._drop_shapes(x[0])
            logits = trainer.model(x, self._masks(gens, self._shapes))  # (runs, batch, classes)
            losses = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
            losses = losses.reshape(y.shape).mean(1)
            values = losses.detach().tolist()
            for r, value in enumerate(values):
                if self.failed[r] is None and not math.isfinite(value):
                    self.failed[r] = DivergenceError(f"training diverged: the loss became {value} in epoch "
                                                     f"{epoch}, batch {b + 1}; " + _ADVICE)
                loss_sum[r] += value * y.shape[1]
                correct[r] += int((logits[r].detach().argmax(1) == y[r]).sum())
            total += y.shape[1]
            live = [r for r in range(m) if self.failed[r] is None]
            if live:
                trainer.step(losses[live].sum(), epoch, b + 1)
        for r in range(m):
            self.histories[r].append(dict(epoch=epoch, loss=loss_sum[r] / max(total, 1),
                                          accuracy=correct[r] / max(total, 1),
                                          seconds=(time.perf_counter() - te) / m))
        live = [loss_sum[r] / max(total, 1) for r in range(m) if self.failed[r] is None]
        return sum(live) / len(live) if live else math.nan

    def clip_gradients(self, trainer: Trainer) -> None:
        """A failed run's gradients zeroed (it stops moving; the others are untouched), then clipping per run:
        each run's global norm (``clip_norm``)."""
        grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
        dead = [r for r, f in enumerate(self.failed) if f is not None]
        with torch.no_grad():
            if dead:
                for g in grads:
                    g[dead] = 0.0
            if self.s["clip_norm"] is not None and grads:
                norms = torch.stack([torch.linalg.vector_norm(g.reshape(g.shape[0], -1), dim=1)
                                     for g in grads], dim=1)  # (runs, params)
                total = torch.linalg.vector_norm(norms, dim=1)
                coef = torch.clamp(self.s["clip_norm"] / (total + 1e-6), max=1.0)
                for g in grads:
                    g.mul_(coef.reshape((-1,) + (1,) * (g.dim() - 1)))

    def check_parameters(self, trainer: Trainer, epoch: int) -> None:
        """Per run: one whose weights became non-finite fails alone (the others go on)."""
        stacked = list(trainer.model.parameters())
        for r in range(len(self.trainers)):
            if self.failed[r] is None and not all(bool(torch.isfinite(p[r]).all()) for p in stacked):
                self.failed[r] = DivergenceError(f"training diverged: a parameter became NaN or infinite in epoch "
                                                 f"{epoch}; " + _ADVICE)

    def evaluate(self, trainer: Trainer) -> dict:
        """No validation metrics: each run is evaluated alone afterwards."""
        return {}

    @staticmethod
    def score(record: dict) -> float:
        """Unused: batched runs have no early stopping (:func:`batch_reason`)."""
        return 0.0


class _Stack(nn.Module):
    """The runs' stacked trainable parameters as this module's parameters (leading dimension: the run);
    ``forward(x, masks)`` is ``vmap`` over the runs of ``functional_call(template)`` with each run's
    parameters, buffers (updated in place: batch norm's running statistics) and dropout masks."""

    def __init__(self, template: nn.Module, params: dict, consts: dict):
        super().__init__()
        self.names = list(params)
        self.stacked = nn.ParameterList([nn.Parameter(p) for p in params.values()])
        self.consts = consts  # buffers and frozen parameters, stacked per run
        self._template = (template,)  # not a submodule: a meta-device copy, never moved or trained

    def named_stacked(self) -> dict:
        return dict(zip(self.names, self.stacked))

    def train(self, mode: bool = True):
        self._template[0].train(mode)
        return super().train(mode)

    def forward(self, x: torch.Tensor, masks: dict) -> torch.Tensor:
        from torch.func import functional_call, vmap
        template = self._template[0]

        def one(p, c, xr):
            return functional_call(template, {**p, **c}, (xr,))
        return vmap(one)(self.named_stacked(), {**self.consts, **masks}, x)


def fit_runs(trainers: Sequence[Trainer], features, labels, policy: str = "auto") -> list:
    """Fit every trainer; per run its history or the exception that ended it (the others go on).

    ``policy``: ``"auto"`` (batched on CUDA, where it pays; alone on the CPU), ``"batched"`` (batched where
    :func:`batch_reason` allows, else alone) or ``"alone"``. Runs are batched in groups with the same number
    of training clips.

    >>> ts = _example_runs(2, epochs=1)
    >>> feats = [[torch.rand(52, 120) + 1e-3 for _ in range(2)] for _ in ts]
    >>> [len(h) for h in fit_runs(ts, feats, [[0, 1]] * 2, policy="alone")]
    [1, 1]
    """
    one_of("policy", policy, POLICIES)
    out: list = [None] * len(trainers)
    use = policy == "batched" or (policy == "auto" and trainers and trainers[0].device.type == "cuda")
    groups: dict[int, list[int]] = {}
    for r, f in enumerate(features):
        groups.setdefault(len(f), []).append(r)
    for rows in groups.values():
        ts = [trainers[r] for r in rows]
        if use and len(rows) > 1 and batch_reason(ts) is None:
            for r, res in zip(rows, BatchedRuns(ts).fit([features[r] for r in rows], [labels[r] for r in rows])):
                out[r] = res
            continue
        for r in rows:
            try:
                out[r] = trainers[r].fit(features[r], labels[r])
            except Exception as exc:  # one run's failure is that run's outcome
                out[r] = exc
    return out


def run_trials(clips, *, frontend: str, model: str, runs: Sequence[dict], mel: dict | None = None,
               train: dict | None = None, cache=None, device: str | None = None, policy: str = "auto",
               progress: bool = False) -> list:
    """:func:`melfront.train.run_trial` for the runs of one cell, trained together where that pays (:func:`fit_runs`).

    ``runs``: one dict per run with ``train_clips``, ``test_clips`` and ``seed``. Returns, per run, the dict
    :func:`~melfront.train.run_trial` returns for it (each run its own row) or the exception that ended it
    (that run's failure only). Each run is built exactly as :func:`~melfront.train.train_classifier` builds it
    (seeded, same config) and evaluated alone.

    >>> import tempfile
    >>> from melfront.data import dataset
    >>> clips = dataset("synth", root=tempfile.mkdtemp(), n_classes=2, clips_per_class=2, duration=0.5,
    ...                 sample_rate=8000, n_folds=2)
    >>> MEL = dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=52)
    >>> TRAIN = dict(epochs=1, batch_size=2, lr=0.01, patch_frames=40, n_mels=52)
    >>> runs = [dict(train_clips=clips.by_fold(1), test_clips=clips.by_fold(2), seed=k) for k in range(2)]
    >>> out = run_trials(clips, frontend="logeps", model="timbre", runs=runs, mel=MEL,
    ...                  train=dict(TRAIN, model_options={"filter_mels": 40}), cache=False, device="cpu")
    >>> [(r["n_train"], r["n_test"], r["epochs"]) for r in out]
    [(2, 2, 1), (2, 2, 1)]
    """
    from ..errors import DataError
    from .build import build_classifier, learned_parameters
    from .settings import resolve_settings
    from .trainer import seed_everything
    from .trial import _mel_config, classes_of, clip_features

    s = resolve_settings(model, train)
    mel = _mel_config(mel, s["n_mels"])
    s["n_mels"] = int(mel["n_mels"])
    classes = classes_of(clips)
    out: list = [None] * len(runs)
    ready = []  # (run index, trainer, features, labels, info)
    for r, run in enumerate(runs):
        try:
            seed = int(run["seed"])
            seed_everything(seed)
            clf, shape = build_classifier(frontend, model, len(classes), mel, s["patch_frames"], s["model_options"])
            kind = clf.input_kind
            config = dict(frontend=frontend, model=model, model_options=s["model_options"], classes=classes, mel=mel,
                          patch_frames=s["patch_frames"], aggregation=s["aggregation"], input_kind=kind,
                          backbone_input=shape, train=s, seed=seed)
            config = json.loads(json.dumps(config))
            feats, kept, skipped = clip_features(list(run["train_clips"]), mel, kind, cache, progress)
            if not feats:
                raise DataError(f"no usable training clips ({len(skipped)} skipped)")
            trainer = Trainer(clf, s, kind=kind, hop_length=mel["hop_length"], seed=seed, device=device,
                              progress=progress, config=config)
            ready.append((r, trainer, feats, [c.label for c in kept], dict(config=config, skipped=skipped)))
        except Exception as exc:  # this run's failure only
            out[r] = exc
    fitted = fit_runs([x[1] for x in ready], [x[2] for x in ready], [x[3] for x in ready], policy)
    for (r, trainer, feats, _, info), fit in zip(ready, fitted):
        if isinstance(fit, Exception):
            out[r] = fit
            continue
        try:
            test_feats, test_kept, skipped_test = clip_features(list(runs[r]["test_clips"]), info["config"]["mel"],
                                                                info["config"]["input_kind"], cache, progress)
            if not test_feats:
                raise DataError(f"no usable test clips ({len(skipped_test)} skipped)")
            m = trainer.evaluate(test_feats, [c.label for c in test_kept], classes)
            history = [{k: round(float(v), 5) for k, v in rec.items() if isinstance(v, (int, float))}
                       for rec in trainer.history]
            out[r] = {"accuracy": m["accuracy"], "map": m["map"], "per_class_accuracy": m["per_class_accuracy"],
                      "confusion": m["confusion"], "train_seconds": float(trainer.train_seconds),
                      "epochs": int(trainer.epoch), "n_train": len(feats), "n_test": len(test_feats),
                      "learned": learned_parameters(trainer.model), "skipped": info["skipped"] + skipped_test,
                      "history": history}
        except Exception as exc:
            out[r] = exc
    return out
