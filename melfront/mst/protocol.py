"""Tax et al.'s (2017) per-fold protocol: one MSTModel and the (a)-(d) arms per ESC-50 fold pair, averaged.

Tax, Diez Antich, Purwins & Maaløe (2017), "Utilizing domain knowledge in end-to-end audio processing"
(arXiv:1712.00254), as their released code runs it (github.com/corticph/MSTmodel, ``Experiments/*.sh``):
for each (validation, test) fold pair (1, 2), (2, 3), (3, 4), (4, 5), (5, 1) of ESC-50, the other three
folds train; each training clip adds 4 time-shifted copies; 101-frame segments at 50 % overlap, silent
ones (mean <= -72 dB) dropped; an MSTModel is trained on that fold's training audio with early stopping on
the validation fold; then PiczakCNN arms (a)-(d) (:func:`melfront.mst.study.train_fold_arms`) are trained
and their test accuracy (majority vote per clip) recorded per epoch; the curves are averaged over the
folds (the paper's Figure 3).

The protocol is a study like any other (:mod:`melfront.study`): one SQLite store, one row per fold and trained
thing (the fold's MSTModel, model and frontend ``"mst"``; each arm, model ``"piczak"``, frontend ``a``-``d``),
per-epoch curves in each row's ``history``; one execution unit per fold (:mod:`melfront.study.execution`), so
folds resume, fail alone and run side by side; the report is :func:`melfront.report.write_report`'s
(:mod:`melfront.report.protocol` adds the protocol's own tables and curves).

- :func:`fold_splits` / :func:`holdout_split`: the fold pairs, or one grouped split when folds are missing;
- :func:`protocol_trials`, :func:`trial_key`, :func:`study_config`: the study's rows, their ids, its config;
- :func:`run_fold_unit`: one fold's unit (segments, MSTModel, arms), one outcome per row;
- :func:`run_protocol`: every fold into ``OUT/study.db`` (finished rows never redone);
- :func:`average_curves`: the arms' curves averaged over folds (the figure).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..checks import boolean, finite_float, nonnegative_int, one_of, positive_float, positive_int
from ..data.sampling import grouped_holdout
from ..errors import ParameterError, StudyError
from ..fileio import write_json
from ..report.stats import mean_std
from ..study import ResultStore, StudyConfig
from ..study.store import StudyLock
from ..study.config import Trial
from ..study.grid import pending_units, run_units, say_failures
from ..train import default_device
from .checkpoint import load_mst, save_mst
from .learn import levels_off, train_mst
from .model import DEFAULT_MEL, SEGMENT_FRAMES
from .segments import SILENCE_DB, load_segments
from .study import LABELS, train_fold_arms

__all__ = ["FOLD_PAIRS", "ARMS", "MST_ROW", "ProtocolSettings", "fold_splits", "holdout_split", "protocol_trials",
           "trial_key", "run_fold_unit", "study_config", "average_curves",
           "run_protocol", "class_counts_of"]

#: The MSTmodel's batch norm as Tax et al.'s MSTmodel/MSTmodel.py (lines 66-82): slim.batch_norm's defaults,
#: a learned shift and no scale, decay 0.999 (torch momentum 0.001), epsilon 0.001.
MST_SLIM_BN = dict(bn_scale=False, bn_momentum=0.001, bn_eps=1e-3)

#: (validation fold, test fold) pairs of Tax et al.'s released scripts (``mst_learning.sh``,
#: ``classifier_training.sh``); the other three folds train.
FOLD_PAIRS = ((1, 2), (2, 3), (3, 4), (4, 5), (5, 1))


def _log(progress, *args):
    if progress:
        print(*args, flush=True)


@dataclass(frozen=True)
class ProtocolSettings:
    """Every setting of the protocol; the defaults are Tax et al.'s (see :mod:`melfront.presets.tax2017` for
    each one's source and status).

    ``epochs`` is the epoch after which (d) branches off (c), ``finetune_epochs`` the epochs after it:
    (a), (b), (c) train ``epochs + finetune_epochs`` epochs in all (the paper's 200).
    ``mst_model_options``: extra :class:`~melfront.mst.MSTModel` sizes (``n_filters``, ``n_hidden``; tests).

    >>> s = ProtocolSettings()
    >>> s.copies, s.mst_patience, s.epochs + s.finetune_epochs, s.batch_size
    (4, 50, 200, 500)
    >>> ProtocolSettings(copies=-1).check()
    Traceback (most recent call last):
    ...
    melfront.errors.ParameterError: copies must be a non-negative integer, got -1
    """

    mel: dict = field(default_factory=lambda: dict(DEFAULT_MEL))
    segment_frames: int = SEGMENT_FRAMES
    overlap: float = 0.5
    silence_db: float = SILENCE_DB
    copies: int = 4
    max_shift_seconds: float = 1.0
    augment_seed: int = 41
    mst_epochs: int = 800
    mst_patience: int = 50
    mst_lr: float = 3e-4
    mst_batch_size: int = 100
    mst_init_output: bool = False
    mst_model_options: dict = field(default_factory=dict)
    epochs: int = 100
    finetune_epochs: int = 100
    batch_size: int = 500
    optimizer: str = "sgd"
    lr: float = 5e-3
    finetune_lr_scale: float = 0.1
    hidden: int = 5000
    seed: int = 0

    def check(self) -> "ProtocolSettings":
        """Range-check every field (``ParameterError`` naming the first bad one); returns ``self``."""
        for name in ("segment_frames", "mst_epochs", "mst_patience", "mst_batch_size", "epochs", "batch_size",
                     "hidden"):
            positive_int(name, getattr(self, name))
        for name in ("copies", "finetune_epochs", "augment_seed", "seed"):
            nonnegative_int(name, getattr(self, name))
        if self.segment_frames < 20:
            raise ParameterError(f"segment_frames must be at least 20 (PiczakCNN), got {self.segment_frames}")
        finite_float("overlap", self.overlap, 0.0, 1.0, high_open=True)
        finite_float("silence_db", self.silence_db)
        for name in ("max_shift_seconds", "mst_lr", "lr"):
            positive_float(name, getattr(self, name))
        finite_float("finetune_lr_scale", self.finetune_lr_scale, 0.0)
        boolean("mst_init_output", self.mst_init_output)
        one_of("optimizer", self.optimizer, ("sgd", "adam"))
        return self

    def as_dict(self) -> dict:
        """JSON-able copy of every field."""
        return json.loads(json.dumps(asdict(self)))

    def replace(self, **changes) -> "ProtocolSettings":
        """A checked copy with ``changes`` (unknown names: ``ParameterError`` listing the known ones)."""
        known = set(self.__dataclass_fields__)
        bad = sorted(set(changes) - known)
        if bad:
            raise ParameterError(f"unknown protocol setting(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
        return replace(self, **changes).check()


def fold_splits(clips, pairs=FOLD_PAIRS) -> list:
    """One split per (validation, test) pair: ``{"name": "v-t", "validation": v, "test": t, "train": [...],
    "val": [...], "test_clips": [...]}``, training on every clip of the other folds.

    >>> from melfront.data.base import Clip
    >>> clips = [Clip(f"{f}.wav", 0, "x", f) for f in range(1, 6)]
    >>> s = fold_splits(clips)[4]
    >>> s["name"], [c.fold for c in s["train"]], s["val"][0].fold, s["test_clips"][0].fold
    ('5-1', [2, 3, 4], 5, 1)
    """
    out = []
    for v, t in pairs:
        out.append({"name": f"{v}-{t}", "validation": v, "test": t,
                    "train": [c for c in clips if c.fold not in (v, t)],
                    "val": [c for c in clips if c.fold == v], "test_clips": [c for c in clips if c.fold == t]})
    return out


def holdout_split(clips, val_fraction: float = 0.2, test_fraction: float = 0.2, seed: int = 0) -> dict:
    """One split of ``clips`` when the folds are incomplete: test and validation held out class by class, each
    source recording on one side (:func:`~melfront.data.sampling.grouped_holdout`); fractions of all clips.

    >>> from melfront.data.base import Clip
    >>> clips = [Clip(f"{i}.wav", i % 2, "ab"[i % 2], 4, str(i)) for i in range(20)]
    >>> s = holdout_split(clips)
    >>> s["name"], len(s["train"]), len(s["val"]), len(s["test_clips"])
    ('holdout', 12, 4, 4)
    """
    test_fraction = finite_float("test_fraction", test_fraction, 0.0, 1.0, low_open=True, high_open=True)
    val_fraction = finite_float("val_fraction", val_fraction, 0.0, 1.0 - test_fraction, low_open=True,
                                high_open=True)
    rest, test = grouped_holdout(list(clips), seed=seed, fold="test", fraction=test_fraction)
    train, val = grouped_holdout(rest, seed=seed, fold="validation", fraction=val_fraction / (1.0 - test_fraction))
    return {"name": "holdout", "validation": None, "test": None, "train": train, "val": val, "test_clips": test}


def _fold_counts(split, train, val, test) -> dict:
    return {"n_train_clips": len(split["train"]), "n_val_clips": len(split["val"]),
            "n_test_clips": len(split["test_clips"]), "n_train_segments": len(train),
            "n_train_segments_from_copies": train.n_copies, "n_val_segments": len(val),
            "n_test_segments": len(test)}


ARMS = ("a", "b", "c", "d")
#: model and frontend names of a fold's MSTModel row in the store (the arms' rows: model "piczak", frontend a-d)
MST_ROW = "mst"


def protocol_trials(splits: list, settings: ProtocolSettings, n: int) -> list:
    """The study's trials, fold by fold: the MSTModel row, then the arms (``(d)`` only with fine-tuning epochs).
    ``n`` is the fewest training clips of a class over the folds (the tables' n).

    >>> s = ProtocolSettings(finetune_epochs=0)
    >>> [(t.fold, t.model, t.frontend) for t in protocol_trials([{"name": "1-2"}], s, 24)]
    [('1-2', 'mst', 'mst'), ('1-2', 'piczak', 'a'), ('1-2', 'piczak', 'b'), ('1-2', 'piczak', 'c')]
    """
    arms = ARMS if settings.finetune_epochs else ARMS[:3]
    out = []
    for split in splits:
        out.append(Trial(split["name"], n, 0, MST_ROW, MST_ROW))
        out += [Trial(split["name"], n, 0, "piczak", arm) for arm in arms]
    return out


def trial_key(config: StudyConfig, settings: ProtocolSettings, split: dict, trial: Trial) -> str:
    """A stable id of a protocol trial: data set, root, the settings, the fold's clips and the row.

    >>> t = Trial("1-2", 24, 0, "piczak", "a")
    >>> len(trial_key(StudyConfig(dataset="esc50"), ProtocolSettings(), {"train": [], "val": [], "test_clips": []}, t))
    24
    """
    clips = {side: sorted(str(getattr(c, "path", c)) for c in split[side]) for side in ("train", "val", "test_clips")}
    ident = dict(protocol="tax2017", dataset=config.dataset, root=os.path.abspath(config.root) if config.root else None,
                 settings=settings.as_dict(), clips=clips, fold=str(trial.fold), model=trial.model,
                 frontend=trial.frontend)
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _segments(split: dict, s: ProtocolSettings, progress: bool):
    for side in ("train", "val", "test_clips"):
        if not split[side]:
            raise StudyError(f"split {split['name']}: no {side.replace('_clips', '')} clips")
    cut = dict(mel=s.mel, segment_frames=s.segment_frames, overlap=s.overlap, silence_db=s.silence_db,
               progress=progress)
    train = load_segments(split["train"], copies=s.copies, max_shift=max(1, round(s.max_shift_seconds
                          * s.mel["sample_rate"])), seed=s.augment_seed, **cut)
    return train, load_segments(split["val"], **cut), load_segments(split["test_clips"], **cut)


def _fold_mst(split, s: ProtocolSettings, train, val, checkpoint: Path, key: str, wanted: bool, device, progress):
    """The fold's MSTModel and target, and its row (None when not ``wanted``): trained, or (its row stored
    already) loaded from the fold's checkpoint of the same key; saved atomically for the arms of a rerun."""
    if not wanted and checkpoint.is_file():
        model, target, config = load_mst(checkpoint)
        if config.get("key") == key:
            return model, target, None
    result = train_mst(train.waves, val.waves, s.mel, epochs=s.mst_epochs, patience=s.mst_patience,
                       batch_size=s.mst_batch_size, lr=s.mst_lr, seed=s.seed,
                       model_options={**MST_SLIM_BN, **s.mst_model_options},
                       device=device, progress=progress, init_output=s.mst_init_output)
    row = {"accuracy": result.val["corr"] ** 2, "val_mse": result.val["mse"], "val_corr": result.val["corr"],
           "best_epoch": result.best_epoch, "stopped": result.stopped, "epochs_run": len(result.history) - 1,
           "corr_levels_off_epoch": levels_off(result.history), "train_seconds": result.seconds,
           "history": result.history}
    save_mst(checkpoint, result.model, result.target, extra={"key": key, "fold": split["name"],
                                                              "training": {k: v for k, v in row.items()
                                                                           if k != "history"}})
    return result.model, result.target, row


def run_fold_unit(cfg: dict, trial_dicts: list, trial_fn=None):
    """The unit of one fold (:mod:`melfront.study.execution`): yields one outcome per trial of ``trial_dicts``
    (all of one fold; the MSTModel row first, then arms), each the moment it is known.

    Cuts the fold's segments (shifted copies for training only), trains the fold's MSTModel to early stopping
    (``FOLDER/fold_NAME/mst.pt``; when its row is stored already, that checkpoint is loaded instead), then the
    arms (:func:`~melfront.mst.study.train_fold_arms`: they train together, (d) branching off (c)). The
    MSTModel row's ``accuracy`` is the squared validation correlation r² (in [0, 1]); its ``history`` the
    validation curve. An arm row's ``accuracy`` is the final test accuracy, ``best_accuracy`` the best over
    epochs, ``history`` the per-epoch curve. ``cfg``: ``settings`` (:class:`ProtocolSettings` fields),
    ``splits`` (name -> split), ``classes``, ``folder``, ``keys`` (name -> the MSTModel row's key), ``device``,
    ``progress``. ``trial_fn`` is unused (the units' signature).
    """
    s = ProtocolSettings(**cfg["settings"]).check()
    name = str(trial_dicts[0]["fold"])
    split = cfg["splits"][name]
    progress = bool(cfg.get("progress"))
    device = str(cfg.get("device") or default_device())
    wanted = [t["frontend"] for t in trial_dicts]
    t0 = time.perf_counter()
    train, val, test = _segments(split, s, progress)
    counts = _fold_counts(split, train, val, test)
    _log(progress, f"tax2017 fold {name}: {counts['n_train_segments']} training segments "
                   f"({counts['n_train_segments_from_copies']} from shifted copies), {len(val)} validation, "
                   f"{len(test)} test ({time.perf_counter() - t0:.0f} s to prepare)")
    model, target, row = _fold_mst(split, s, train, val, Path(cfg["folder"]) / f"fold_{name}" / "mst.pt",
                                   cfg["keys"][name], MST_ROW in wanted, device, progress)
    if MST_ROW in wanted:
        yield "ok", {**row, **counts}
    arms_wanted = [w for w in wanted if w != MST_ROW]
    if not arms_wanted:
        return
    arms = train_fold_arms(model, target, train, test, cfg["classes"], val=val, epochs=s.epochs,
                           finetune_epochs=s.finetune_epochs, batch_size=s.batch_size, optimizer=s.optimizer,
                           lr=s.lr, finetune_lr_scale=s.finetune_lr_scale, hidden=s.hidden,
                           segment_frames=s.segment_frames, seed=s.seed, device=device, progress=progress)
    for arm in arms_wanted:
        if arm not in arms:
            yield "failed", f"StudyError: arm ({arm}) was not trained (no fine-tuning epochs?)"
            continue
        a = arms[arm]
        yield "ok", {"accuracy": a["final_test_accuracy"], "best_accuracy": a["best_test_accuracy"],
                     "label": a["label"], "history": a["curve"], "train_seconds": a["seconds"], **counts}


def _progress_line(trial: Trial, outcome: tuple) -> str:
    head = f"tax2017 fold {trial.fold}: " + ("MSTModel" if trial.model == MST_ROW else LABELS[trial.frontend])
    status, result = outcome
    if status != "ok":
        return f"{head}: FAILED: {result}"
    if trial.model == MST_ROW:
        return (f"{head}: validation MSE {result['val_mse']:.4f}, correlation {result['val_corr']:.3f} "
                f"(best epoch {result['best_epoch']}, stopped by {result['stopped']})")
    return f"{head}: test accuracy {result['accuracy']:.3f} (best {result['best_accuracy']:.3f})"


def study_config(splits: list, settings: ProtocolSettings, dataset: str, root, n: int) -> StudyConfig:
    """The :class:`~melfront.study.StudyConfig` the store holds for the protocol (what the report reads):
    model piczak, frontends the arms, the folds as test folds, one run, the claims' pairs as comparisons."""
    arms = list(ARMS if settings.finetune_epochs else ARMS[:3])
    compare = [["a", "c"], ["a", "b"]] + ([["c", "d"], ["a", "d"]] if "d" in arms else [])
    return StudyConfig(dataset=dataset, root=None if root is None else str(root), frontends=arms, models=["piczak"],
                       n_per_class=[n], runs={"default": 1}, test_folds=[s["name"] for s in splits],
                       mel=dict(settings.mel), seed=settings.seed, compare=compare)


def run_protocol(splits: list, classes, output_dir, settings: ProtocolSettings | None = None, *,
                 dataset: str = "esc50", root=None, meta: dict | None = None, device: str | None = None,
                 jobs: int = 1, ray_address: str | None = None, ray_num_gpus: float = 0, progress: bool = True,
                 quiet: bool = False, retry_failed: bool = False) -> ResultStore:
    """Run (or resume) the protocol as a study into ``output_dir/study.db``: one unit per fold
    (:func:`run_fold_unit`), each row stored as it ends; finished rows are never redone, failed ones only with
    ``retry_failed``; a fold whose unit raises is failed rows and the other folds finish; ``jobs`` folds side by
    side (or Ray tasks). ``meta``: the preset's (stored as the ``preset`` meta, for the report). The folder is
    locked for the run (:class:`~melfront.study.StudyLock`). Returns the store.
    """
    s = (settings or ProtocolSettings()).check()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = min((min(class_counts_of(sp["train"]).values(), default=1) for sp in splits), default=1)
    config = study_config(splits, s, dataset, root, max(1, n))
    trials = protocol_trials(splits, s, config.n_per_class[0])
    by_name = {sp["name"]: sp for sp in splits}
    keyed = [(trial_key(config, s, by_name[t.fold], t), t) for t in trials]
    units = [[kt for kt in keyed if kt[1].fold == sp["name"]] for sp in splits]
    say = (lambda *a: None) if quiet else print
    with StudyLock(out):
        store = ResultStore(out / "study.db")
        old = store.config()
        if old is not None and old.to_dict() != config.to_dict() and store.rows():
            say(f"tax2017: {out / 'study.db'} held the protocol with other settings or data; its rows stay, the "
                f"report shows this run's")
        store.save_config(config)
        store.set_meta("protocol", "tax2017")
        store.set_meta("protocol_settings", s.as_dict())
        if meta is not None:
            store.set_meta("preset", meta)
        store.set_meta("skipped_clips", [])
        write_json(out / "config.json", {"study": config.to_dict(), "protocol": s.as_dict()})
        pending, old_failed = pending_units(store, units, retry_failed)
        n_pending = sum(len(u) for u in pending)
        note = (f"; {old_failed} failed before: {'retrying them' if retry_failed else 'skipped (--retry-failed)'}"
                if old_failed else "")
        say(f"tax2017: {len(splits)} fold(s), {len(keyed)} rows ({len(keyed) - n_pending} already done{note})")
        cfg = {"settings": s.as_dict(), "splits": by_name, "classes": list(classes), "folder": str(out),
               "keys": {t.fold: k for k, t in keyed if t.model == MST_ROW}, "device": device,
               "progress": progress and not quiet and jobs <= 1 and not ray_address}
        run_units(store, config, pending, run_fold_unit, cfg, total=len(keyed), jobs=jobs, ray_address=ray_address,
                  ray_num_gpus=ray_num_gpus, progress=False, quiet=quiet, describe=_progress_line)
        say_failures(store, {k for k, _ in keyed}, retry_failed, say)
    return store


def class_counts_of(clips) -> dict:
    """``{label: clips}`` of ``clips``.

    >>> from melfront.data.base import Clip
    >>> class_counts_of([Clip("a.wav", 0, "x", 1), Clip("b.wav", 0, "x", 1), Clip("c.wav", 1, "y", 1)])
    {0: 2, 1: 1}
    """
    counts: dict = {}
    for c in clips:
        counts[c.label] = counts.get(c.label, 0) + 1
    return counts


def average_curves(fold_arms: list) -> dict:
    """Average per-epoch test accuracy over folds: ``fold_arms`` is a list (one per fold) of
    ``{arm: {"label", "curve": [{"epoch", "test_accuracy"}, ...]}}``. Returns ``{arm: {"label", "curve":
    [{"epoch", "mean", "std", "n_folds"}], "final": {"mean", "std"}, "best": {"mean", "std"}}}``; ``std`` is the
    sample standard deviation across folds (0 for one fold); an epoch missing in some fold averages the others.

    >>> f1 = {"a": {"label": "(a)", "curve": [{"epoch": 1, "test_accuracy": 0.2}, {"epoch": 2, "test_accuracy": 0.6}]}}
    >>> f2 = {"a": {"label": "(a)", "curve": [{"epoch": 1, "test_accuracy": 0.4}, {"epoch": 2, "test_accuracy": 0.4}]}}
    >>> avg = average_curves([f1, f2])["a"]
    >>> [round(r["mean"], 3) for r in avg["curve"]], round(avg["best"]["mean"], 3)
    ([0.3, 0.5], 0.5)
    """
    out = {}
    arms = sorted({k for f in fold_arms for k in f})
    for arm in arms:
        per_fold = [f[arm] for f in fold_arms if arm in f]
        by_epoch: dict = {}
        for item in per_fold:
            for r in item["curve"]:
                by_epoch.setdefault(int(r["epoch"]), []).append(float(r["test_accuracy"]))
        curve = []
        for ep in sorted(by_epoch):
            m, sd = mean_std(by_epoch[ep])
            curve.append({"epoch": ep, "mean": m, "std": sd, "n_folds": len(by_epoch[ep])})
        final = mean_std([item["curve"][-1]["test_accuracy"] for item in per_fold])
        best = mean_std([max(r["test_accuracy"] for r in item["curve"]) for item in per_fold])
        out[arm] = {"label": per_fold[0].get("label", LABELS.get(arm, arm)), "curve": curve,
                    "final": {"mean": final[0], "std": final[1]}, "best": {"mean": best[0], "std": best[1]}}
    return out
