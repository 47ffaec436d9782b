"""The (a)-(d) end-to-end study of Tax et al. (2017): ``melfront mst-study``.

PiczakCNN (long segments, 60 x 101) trained (a) on the log-mel, (b) on raw audio with the three
convolutions randomly initialised (Xavier, no batch norm, dropout 0.5 after each, as the paper's raw
baseline), (c) on raw audio with the MSTModel's layers (batch norm kept) frozen and (d) as (c) but
fine-tuned from (c)'s state; test accuracy per epoch (clip label = majority vote over its segments) in
one plot (the paper's Figure 3).

Every arm is trained by :class:`melfront.train.Trainer` (one training loop, one optimiser factory, one
vote: :func:`melfront.train.aggregate` with ``method="vote"``). The trainer works on per-clip features
and cuts them into patches; each clip's feature here is the concatenation of its kept segments (see
:func:`~melfront.mst.load_segments`: 101-frame segments at 50 % overlap, the -72 dB silent ones dropped,
each peak-normalised), and the trainer's ``sampling="all"`` with ``segment_hop = eval_hop = 100`` frames
cuts exactly those segments back out (a waveform patch of 101 frames is ``100 * hop`` samples). The
trainer's own relative silence rule is switched off (``silence_db=-200``: levels are never below -100 dB),
since silence was already removed with the paper's rule. Clip accuracy aggregates the segments by
``aggregation="vote"`` (ties broken by the mean probability).

What (d) changes relative to (c), at the branch point (after ``epochs`` epochs of (c)):

- the model and optimiser are deep copies of (c)'s: same weights, same batch-norm running statistics,
  same optimiser state (momentum buffers / Adam moments of the classifier are kept, no reset);
- the MSTModel's parameters (three convolutions and their batch-norm scale and shift) become
  trainable and learn at ``lr * finetune_lr_scale`` (their own optimiser group, ``frontend_lr_scale``;
  they start without optimiser history since they had no gradient before);
- nothing else: the MST layers stay in eval mode (batch norm keeps normalising with the MSTModel's
  running statistics, which stay fixed; it does not switch to batch statistics), the classifier keeps
  its learning rate, and the batches continue in the same order as (c)'s (the order is a function of
  ``(seed, epoch)``), so (c) and (d) compare at equal epochs.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path

import torch

from ..checks import finite_float, nonnegative_int, one_of, positive_int
from ..data.sampling import grouped_holdout
from ..errors import CheckpointError, ParameterError
from ..fileio import write_json
from ..models import Classifier
from ..models.piczak import PiczakCNN
from ..plotting.mst import plot_study
from ..train import Trainer, aggregate, default_device, resolve_settings, seed_everything
from .checkpoint import load_mst
from .learn import learn_mel_from_clips
from .model import SEGMENT_FRAMES, LogMelTarget, MSTFrontend, MSTModel
from .segments import load_clips, load_segments

__all__ = ["LABELS", "majority_vote", "study_settings", "finetune_branch", "train_fold_arms", "run_mst_study"]

LABELS = {
    "a": "(a) log-mel + PiczakCNN",
    "b": "(b) raw, 3 conv layers random (Xavier, dropout 0.5)",
    "c": "(c) raw, MSTModel layers frozen",
    "d": "(d) raw, MSTModel layers fine-tuned after (c)",
}


def _log(progress, *args):
    if progress:
        print(*args, flush=True)


def majority_vote(probs: torch.Tensor, clip_index: torch.Tensor, n_clips: int | None = None) -> dict:
    """Clip labels from segment probabilities ``(n_segments, n_classes)`` by majority vote.

    Each segment votes for its most probable class; the clip takes the class with most votes, ties
    broken by the larger summed probability among the tied classes (:func:`melfront.train.aggregate`,
    ``method="vote"``). Returns ``{clip: class}`` for every clip index present (``n_clips`` is unused).

    >>> majority_vote(torch.tensor([[0.6, 0.4], [0.1, 0.9], [0.3, 0.7], [0.8, 0.2]]), torch.tensor([0, 0, 0, 4]))
    {0: 1, 4: 0}
    """
    clips = torch.unique(clip_index)
    dense = torch.searchsorted(clips, clip_index)
    scores = aggregate(probs.double().clamp_min(0).log(), dense.tolist(), len(clips), "vote")
    return {int(c): int(scores[i].argmax()) for i, c in enumerate(clips.tolist())}


def study_settings(n_mels: int, epochs: int, batch_size: int = 50, optimizer: str = "sgd", lr: float = 5e-3,
                   segment_frames: int = SEGMENT_FRAMES) -> dict:
    """The :class:`~melfront.train.Trainer` settings shared by every arm (PiczakCNN's, overridden).

    SGD with Nesterov momentum 0.9 (Tax et al.'s classifier trainer) or Adam, no weight decay, no
    gradient clipping, fixed ``epochs``; every segment (``sampling="all"``) of ``segment_frames`` frames,
    segments ``segment_frames - 1`` frames apart (the clip features are concatenated segments, see the
    module docstring), no further silence removal, clip label by majority vote.

    >>> s = study_settings(60, 3)
    >>> s["sampling"], s["patch_frames"], s["segment_hop"], s["aggregation"], s["weight_decay"]
    ('all', 101, 100, 'vote', 0.0)
    """
    one_of("optimizer", optimizer, ("sgd", "adam"))
    hop = positive_int("segment_frames", segment_frames) - 1
    return resolve_settings("piczak", dict(
        optimizer=optimizer, lr=lr, momentum=0.9, nesterov=True, weight_decay=0.0, clip_norm=None,
        batch_size=batch_size, epochs=epochs, patience=None, n_mels=n_mels, patch_frames=segment_frames,
        sampling="all", segment_hop=hop, eval_hop=hop, silence_db=-200.0, aggregation="vote",
        drop_last=True))  # EnvClassification/loader.py lines 137-141: only whole batches


def finetune_branch(trainer: Trainer, finetune_lr_scale: float = 0.1) -> Trainer:
    """Arm (d): a new :class:`~melfront.train.Trainer` branched off ``trainer`` (arm (c)) at its current epoch.

    Deep copies of the classifier and the optimiser state (momentum / moments kept), the same settings,
    seed and device, the epoch counter and history; the :class:`MSTFrontend` is unfrozen with its batch
    norm kept in eval mode (``unfreeze(keep_statistics=True)``) and its parameters learn at
    ``lr * finetune_lr_scale``. ``trainer`` itself is not changed. See the module docstring.

    >>> from melfront.train import Trainer
    >>> mst = MSTModel(n_mels=60, n_fft=64, hop_length=16, n_filters=4, n_hidden=4)
    >>> clf = Classifier(MSTFrontend(mst, frozen=True), PiczakCNN(2, n_mels=60, n_frames=21, hidden=4))
    >>> c = Trainer(clf, study_settings(60, 1, lr=0.1, segment_frames=21), kind="waveform", hop_length=16,
    ...             device="cpu", progress=False)
    >>> d = finetune_branch(c, 0.1)
    >>> [round(g["lr"], 4) for g in d.optimizer.param_groups if g["name"] == "frontend"], d.model.frontend.frozen
    ([0.01], False)
    """
    scale = finite_float("finetune_lr_scale", finetune_lr_scale, 0.0)
    model = copy.deepcopy(trainer.model)
    if not isinstance(model.frontend, MSTFrontend):
        raise ParameterError(f"finetune_branch needs a classifier with an MSTFrontend, got {type(model.frontend).__name__}")
    model.frontend.unfreeze(keep_statistics=True)
    branch = Trainer(model, trainer.s, kind=trainer.kind, hop_length=trainer.hop_length, seed=trainer.seed,
                     device=str(trainer.device), progress=trainer.progress)
    branch.optimizer.load_state_dict(copy.deepcopy(trainer.optimizer.state_dict()))
    branch.set_frontend_lr_scale(scale)
    branch.epoch, branch.history = trainer.epoch, copy.deepcopy(trainer.history)
    return branch


def _mst_checkpoint(mst, dataset, root, mst_dataset, mst_root, clips, test_clips, output_dir, train_opts, progress):
    """The MSTModel for (c)/(d): ``mst`` as given, or one trained on ``mst_dataset`` minus the test clips."""
    if mst is not None:
        return mst, None
    mst_clips = clips if mst_dataset in (None, dataset) else load_clips(mst_dataset, mst_root or root)
    test_names = {Path(c.path).resolve() for c in test_clips}
    mst_clips = [c for c in mst_clips if Path(c.path).resolve() not in test_names]
    _log(progress, f"mst-study: learning the MSTModel on {len(mst_clips)} clips of {mst_dataset or dataset} "
                   f"(test clips excluded)")
    summary = learn_mel_from_clips(mst_clips, output_dir / "mst.pt", progress=progress,
                                   extra={"dataset": mst_dataset or dataset}, **train_opts)
    return output_dir / "mst.pt", summary


def clip_features(segs):
    """One waveform per clip with segments: its segments end to end (shifted copies' included); with their labels."""
    feats, labels = [], []
    for c in torch.unique(segs.clip_index).tolist():
        m = segs.clip_index == c
        feats.append(segs.waves[m].reshape(-1))
        labels.append(int(segs.labels[m][0]))
    return feats, labels


class _Arm:
    """One arm: its trainer and its learning curve (per epoch: epoch, test_accuracy, train_loss, seconds)."""

    def __init__(self, key, trainer, test, classes, curve=None, clock=0.0):
        self.key, self.trainer, self.test, self.classes = key, trainer, test, classes
        self.curve, self.clock, self.branch = list(curve or []), clock, None

    def on_epoch(self, rec, branch_at=None, finetune_lr_scale=0.1):
        t0 = time.perf_counter()
        acc = self.trainer.evaluate(self.test[0], self.test[1], self.classes)["accuracy"]
        self.clock += rec["seconds"] + time.perf_counter() - t0
        self.curve.append({"epoch": rec["epoch"], "test_accuracy": acc, "train_loss": rec["loss"],
                           "seconds": self.clock})
        if "val_accuracy" in rec:
            self.curve[-1]["val_accuracy"] = rec["val_accuracy"]
        if branch_at is not None and rec["epoch"] == branch_at:  # (d) branches off (c) "after convergence"
            self.branch = _Arm("d", finetune_branch(self.trainer, finetune_lr_scale), self.test, self.classes,
                               self.curve, self.clock)

    def summary(self) -> dict:
        accs = [r["test_accuracy"] for r in self.curve]
        return {"label": LABELS[self.key], "curve": self.curve, "final_test_accuracy": accs[-1],
                "best_test_accuracy": max(accs), "seconds": self.clock}


def _frontends(mel, mst_model, target):
    """The frontends of arms (a), (b), (c), built in this order (their random initialisations follow the seed);
    (b) has the MSTModel's layer sizes."""
    return {"a": LogMelTarget(mel, stats=target.stats(), normalise_peak=False, top_db=target.top_db),
            "b": MSTModel(n_mels=mel["n_mels"], n_fft=mel["n_fft"], hop_length=mel["hop_length"], batch_norm=False,
                          dropout=0.5, n_filters=mst_model.n_filters, n_hidden=mst_model.n_hidden),
            "c": MSTFrontend(mst_model, frozen=True)}


def _train_arms(frontends, backbone, settings, train, test, classes, epochs, finetune_lr_scale, hop, seed, device,
                progress, val=None) -> dict:
    """Train (a), (b), (c) for ``settings["epochs"]`` epochs, (d) from (c) after ``epochs``; arm key -> _Arm."""
    arms = {}
    val = tuple(val) if val is not None else (None, None)
    for key, front in frontends.items():
        trainer = Trainer(Classifier(front, backbone()), settings, kind="waveform", hop_length=hop, seed=seed,
                          device=device, progress=False)
        arm = arms[key] = _Arm(key, trainer, test, classes)
        branch_at = epochs if key == "c" and settings["epochs"] > epochs else None
        trainer.fit(*train, *val, classes=classes,
                    on_epoch=lambda r, a=arm: a.on_epoch(r, branch_at, finetune_lr_scale))
        _log(progress, f"mst-study: {LABELS[key]}: test accuracy {arm.curve[-1]['test_accuracy']:.3f} after "
                       f"{trainer.epoch} epochs, {arm.clock:.0f} s")
    if arms["c"].branch is not None:
        d = arms["d"] = arms["c"].branch
        d.trainer.fit(*train, *val, classes=classes, on_epoch=d.on_epoch)
        _log(progress, f"mst-study: {LABELS['d']}: test accuracy {d.curve[-1]['test_accuracy']:.3f} after "
                       f"{d.trainer.epoch} epochs, {d.clock:.0f} s")
    return arms


def train_fold_arms(mst_model: MSTModel, target: LogMelTarget, train, test, classes, *, val=None, epochs: int = 10,
                    finetune_epochs: int = 5, batch_size: int = 50, optimizer: str = "sgd", lr: float = 5e-3,
                    finetune_lr_scale: float = 0.1, hidden: int = 5000, segment_frames: int = SEGMENT_FRAMES,
                    seed: int = 0, device: str | None = None, progress: bool = True) -> dict:
    """One fold of the (a)-(d) study: train every arm on ``train`` and return ``{arm: summary}``.

    ``train``, ``test`` and ``val`` (optional) are :class:`~melfront.mst.Segments` with labels (cut with
    ``target``'s mel settings and ``segment_frames``); ``mst_model`` is the fold's MSTModel for (c) and (d),
    ``target`` its normalisation (arm (a) reads the same normalised log-mel). (a), (b), (c) train
    ``epochs + finetune_epochs`` epochs; (d) branches off (c) after ``epochs`` (none when
    ``finetune_epochs`` is 0). Each summary: ``label``, ``curve`` (per epoch: ``epoch``, ``test_accuracy``,
    ``val_accuracy`` when ``val`` is given, ``train_loss``, ``seconds``), ``final_test_accuracy``,
    ``best_test_accuracy``, ``seconds``. Settings: :func:`study_settings`.
    """
    positive_int("epochs", epochs)
    nonnegative_int("finetune_epochs", finetune_epochs)
    mel = target.mel_kwargs
    settings = study_settings(mel["n_mels"], epochs + finetune_epochs, batch_size, optimizer, lr, segment_frames)
    seed_everything(seed)
    arms = _train_arms(_frontends(mel, mst_model, target),
                       lambda: PiczakCNN(len(classes), n_mels=mel["n_mels"], n_frames=segment_frames, hidden=hidden,
                                         dropout_before_pool=True),  # their PiczakCNN.py lines 62-64
                       settings, clip_features(train), clip_features(test), list(classes), epochs,
                       finetune_lr_scale, mel["hop_length"], seed, str(device or default_device()), progress,
                       val=None if val is None else clip_features(val))
    return {k: arm.summary() for k, arm in arms.items()}


# Over 60 lines only through its docstring and signature (the study's options); the body is about 45 lines.
def run_mst_study(dataset: str, root, output_dir, mst: str | None = None, mst_dataset: str | None = None,
                  mst_root=None, mst_epochs: int = 20, mst_patience: int = 3, mst_lr: float = 3e-4, epochs: int = 10,
                  finetune_epochs: int = 5, test_fraction: float = 0.25, batch_size: int = 50,
                  optimizer: str = "sgd", lr: float = 5e-3, finetune_lr_scale: float = 0.1, hidden: int = 5000,
                  max_clips: int | None = None, seed: int = 0, device: str | None = None,
                  progress: bool = True) -> dict:
    """``melfront mst-study``: PiczakCNN on (a) log-mel, (b) raw audio from scratch, (c) raw audio through the
    frozen MSTModel layers, (d) (c) fine-tuned; Figure 3 and ``results.json`` in ``output_dir``.

    The clips are split (class-stratified, sources kept together) into training and test sets
    (``test_fraction``). Without ``mst``, an MSTModel is first trained by :func:`learn_mel_from_clips` on
    the audio of ``mst_dataset`` (default: the same data set) minus the test clips, saved as
    ``output_dir/mst.pt``; a given checkpoint whose training clips include test clips gets a warning.

    (a), (b), (c) train for ``epochs + finetune_epochs`` epochs; (d) branches off (c) after ``epochs``
    epochs (:func:`finetune_branch`: the MSTModel layers learn at ``lr * finetune_lr_scale``, batch norm
    on its frozen statistics, the classifier's optimiser state kept) and trains ``finetune_epochs`` more,
    so that (c) and (d) compare at equal epochs. Optimiser: SGD with Nesterov momentum 0.9 at 5e-3 as
    Tax et al.'s classifier trainer (or Adam), see :func:`study_settings`; (a) reads the same normalised
    log-mel the MSTModel learned (its checkpoint's statistics). Test accuracy = clip labels by majority
    vote over segments, after every epoch.

    >>> run_mst_study("folder", "/no/such/folder", "/tmp/x", epochs=0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    melfront.errors.ParameterError: epochs must be a positive integer, got 0
    """
    positive_int("epochs", epochs)
    nonnegative_int("finetune_epochs", finetune_epochs)
    finite_float("finetune_lr_scale", finetune_lr_scale, 0.0)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    device = str(device or default_device())
    clips = load_clips(dataset, root, max_clips, seed)
    train_clips, test_clips = grouped_holdout(list(clips), seed=seed, fraction=test_fraction)
    _log(progress, f"mst-study: {dataset}: {len(train_clips)} training and {len(test_clips)} test clips, "
                   f"{len(clips.classes)} classes")
    mst, mst_summary = _mst_checkpoint(mst, dataset, root, mst_dataset, mst_root, clips, test_clips, output_dir,
                                       dict(epochs=mst_epochs, patience=mst_patience, lr=mst_lr, seed=seed,
                                            device=device), progress)
    mst_model, target, mst_config = load_mst(mst)
    if target is None:
        raise CheckpointError(f"{mst}: the checkpoint has no target statistics; retrain it with `melfront learn-mel`")
    warnings = []
    overlap = (set(mst_config.get("train_clips", [])) | set(mst_config.get("val_clips", []))) \
        & {Path(c.path).name for c in test_clips}
    if overlap:
        warnings.append(f"{len(overlap)} test clip(s) were in the MSTModel's (unlabelled) training or "
                        f"validation audio")
        _log(progress, "mst-study: warning: " + warnings[-1])
    mel = target.mel_kwargs
    train = load_segments(train_clips, mel, SEGMENT_FRAMES, progress=progress)
    test = load_segments(test_clips, mel, SEGMENT_FRAMES, progress=progress)
    _log(progress, f"mst-study: {len(train)} training and {len(test)} test segments")
    curves = train_fold_arms(mst_model, target, train, test, list(clips.classes), epochs=epochs,
                             finetune_epochs=finetune_epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                             finetune_lr_scale=finetune_lr_scale, hidden=hidden, seed=seed, device=device,
                             progress=progress)
    fig = plot_study(curves, output_dir / "accuracy_vs_epoch.png",
                     title=f"{dataset}: {len(train_clips)} train / {len(test_clips)} test clips, PiczakCNN "
                           f"(60x101), {optimizer} lr {lr}", branch_epoch=epochs if "d" in curves else None)
    results = {
        "dataset": dataset, "n_train_clips": len(train_clips), "n_test_clips": len(test_clips),
        "n_train_segments": len(train), "n_test_segments": len(test), "classes": list(clips.classes),
        "epochs": epochs, "finetune_epochs": finetune_epochs, "optimizer": optimizer, "lr": lr,
        "finetune_lr_scale": finetune_lr_scale, "batch_size": batch_size, "hidden": hidden, "seed": seed,
        "mst_checkpoint": str(mst), "mst": mst_summary and {k: v for k, v in mst_summary.items() if k != "history"},
        "variants": curves, "figure": str(fig), "warnings": warnings,
        "skipped": [list(s) for s in train.skipped + test.skipped], "device": device,
    }
    write_json(output_dir / "results.json", results)
    return results
