"""Tax et al.'s (2017) per-fold protocol: one MSTModel and the (a)-(d) arms per ESC-50 fold pair, averaged.

Tax, Diez Antich, Purwins & Maaløe (2017), "Utilizing domain knowledge in end-to-end audio processing"
(arXiv:1712.00254), as their released code runs it (github.com/corticph/MSTmodel, ``Experiments/*.sh``):
for each (validation, test) fold pair (1, 2), (2, 3), (3, 4), (4, 5), (5, 1) of ESC-50, the other three
folds train; each training clip adds 4 time-shifted copies; 101-frame segments at 50 % overlap, silent
ones (mean <= -72 dB) dropped; an MSTModel is trained on that fold's training audio with early stopping on
the validation fold; then PiczakCNN arms (a)-(d) (:func:`melfront.mst.study.train_fold_arms`) are trained
and their test accuracy (majority vote per clip) recorded per epoch; the curves are averaged over the
folds (the paper's Figure 3).

- :func:`fold_splits` / :func:`holdout_split`: the fold pairs, or one grouped split when folds are missing;
- :func:`run_fold`: one fold = one call (segments, MSTModel, arms);
- :func:`run_protocol`: every fold (finished folds are reused), the averages, ``results.json``, the
  figures and ``report.md`` (:func:`report_markdown`).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..checks import boolean, finite_float, nonnegative_int, one_of, positive_float, positive_int
from ..data.sampling import grouped_holdout
from ..errors import MelfrontError, ParameterError, StudyError
from ..fileio import write_json
from ..plotting.mst import plot_fold_average, plot_mst_curves
from ..report.stats import mean_interval, mean_std
from ..train import default_device
from .checkpoint import save_mst
from .learn import levels_off, train_mst
from .model import DEFAULT_MEL, SEGMENT_FRAMES
from .segments import SILENCE_DB, load_segments
from .study import LABELS, train_fold_arms

__all__ = ["FOLD_PAIRS", "ProtocolSettings", "fold_splits", "holdout_split", "run_fold", "average_curves",
           "run_protocol", "report_markdown"]

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


def run_fold(split: dict, classes, settings: ProtocolSettings, output_dir, *, device: str | None = None,
             progress: bool = True) -> dict:
    """One fold: cut the segments (shifted copies for training only), train the fold's MSTModel to early
    stopping (saved as ``output_dir/mst.pt``), then the arms (:func:`~melfront.mst.study.train_fold_arms`),
    validation and test accuracy after every epoch. Returns a JSON-able dict: the split's name and folds,
    counts, ``mst`` (history, best epoch, kept scores, ``stopped``, ``levels_off``) and ``arms``.
    """
    s = settings.check()
    output_dir = Path(output_dir)
    device = str(device or default_device())
    for side in ("train", "val", "test_clips"):
        if not split[side]:
            raise StudyError(f"split {split['name']}: no {side.replace('_clips', '')} clips")
    cut = dict(mel=s.mel, segment_frames=s.segment_frames, overlap=s.overlap, silence_db=s.silence_db,
               progress=progress)
    t0 = time.perf_counter()
    train = load_segments(split["train"], copies=s.copies, max_shift=max(1, round(s.max_shift_seconds
                          * s.mel["sample_rate"])), seed=s.augment_seed, **cut)
    val, test = load_segments(split["val"], **cut), load_segments(split["test_clips"], **cut)
    counts = _fold_counts(split, train, val, test)
    _log(progress, f"tax2017 fold {split['name']}: {counts['n_train_segments']} training segments "
                   f"({counts['n_train_segments_from_copies']} from shifted copies), {len(val)} validation, "
                   f"{len(test)} test ({time.perf_counter() - t0:.0f} s to prepare)")
    result = train_mst(train.waves, val.waves, s.mel, epochs=s.mst_epochs, patience=s.mst_patience,
                       batch_size=s.mst_batch_size, lr=s.mst_lr, seed=s.seed,
                       model_options={**MST_SLIM_BN, **s.mst_model_options},
                       device=device, progress=progress, init_output=s.mst_init_output)
    mst = {"history": result.history, "best_epoch": result.best_epoch, "val_mse": result.val["mse"],
           "val_corr": result.val["corr"], "stopped": result.stopped, "epochs_run": len(result.history) - 1,
           "corr_levels_off_epoch": levels_off(result.history), "seconds": result.seconds}
    save_mst(output_dir / "mst.pt", result.model, result.target,
             extra={"training": {k: v for k, v in mst.items() if k != "history"}, "fold": split["name"]})
    _log(progress, f"tax2017 fold {split['name']}: MSTModel validation correlation {mst['val_corr']:.3f} "
                   f"(best epoch {mst['best_epoch']}, stopped by {mst['stopped']})")
    arms = train_fold_arms(result.model, result.target, train, test, classes, val=val, epochs=s.epochs,
                           finetune_epochs=s.finetune_epochs, batch_size=s.batch_size, optimizer=s.optimizer,
                           lr=s.lr, finetune_lr_scale=s.finetune_lr_scale, hidden=s.hidden,
                           segment_frames=s.segment_frames, seed=s.seed, device=device, progress=progress)
    return {"name": split["name"], "validation": split["validation"], "test": split["test"], "status": "ok",
            **counts, "mst": mst, "arms": arms, "skipped": [list(x) for x in train.skipped + val.skipped
                                                             + test.skipped]}


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


def _cached(path: Path, settings: dict, retry_failed: bool, progress: bool, name: str):
    """A finished fold's record from an earlier run with the same settings (failed ones unless retried)."""
    if not path.is_file():
        return None
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if old.get("settings") != settings:
        _log(progress, f"tax2017 fold {name}: earlier results were made with other settings; running it again")
        return None
    if old.get("status") != "ok" and retry_failed:
        return None
    _log(progress, f"tax2017 fold {name}: reusing the earlier {old.get('status')} result in {path}")
    return old


def run_protocol(splits: list, classes, output_dir, settings: ProtocolSettings | None = None, *,
                 meta: dict | None = None, device: str | None = None, progress: bool = True,
                 retry_failed: bool = False) -> dict:
    """Run every split (:func:`run_fold`), average the arms' curves over the folds that finished, and write
    ``results.json``, ``accuracy_vs_epoch.png`` (fold average), ``mst_learning_curves.png`` and ``report.md``
    in ``output_dir``. ``meta``: what the report states besides the results (``title``, ``citation``,
    ``reduced``, ``overrides``, ``settings`` rows, ``claims``; see :func:`report_markdown`).

    Each fold's record is kept in ``fold_NAME/fold.json``; a rerun with the same settings reuses finished folds
    (and failed ones, unless ``retry_failed``). A fold that fails (a :class:`~melfront.errors.MelfrontError`,
    e.g. divergence) is recorded with its error and the others go on; ``results["failed"]`` counts them.
    """
    s = (settings or ProtocolSettings()).check()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    settings_dict = s.as_dict()
    folds = []
    for split in splits:
        fold_dir = output_dir / f"fold_{split['name']}"
        record = _cached(fold_dir / "fold.json", settings_dict, retry_failed, progress, split["name"])
        if record is None:
            try:
                record = run_fold(split, classes, s, fold_dir, device=device, progress=progress)
            except MelfrontError as exc:
                _log(progress, f"tax2017 fold {split['name']}: FAILED: {exc}")
                record = {"name": split["name"], "validation": split["validation"], "test": split["test"],
                          "status": "failed", "error": f"{type(exc).__name__}: {exc}"}
            record["settings"] = settings_dict
            write_json(fold_dir / "fold.json", record)
        folds.append(record)
    ok = [f for f in folds if f["status"] == "ok"]
    average = average_curves([f["arms"] for f in ok]) if ok else {}
    figures = {}
    if ok:
        branch = s.epochs if s.finetune_epochs else None
        figures["accuracy"] = str(plot_fold_average(
            average, output_dir / "accuracy_vs_epoch.png", branch_epoch=branch,
            title=f"{(meta or {}).get('title', 'tax2017')}: test accuracy, mean over {len(ok)} fold(s)"))
        figures["mst"] = str(plot_mst_curves({f["name"]: f["mst"] for f in ok}, output_dir / "mst_learning_curves.png",
                                             title="MSTModel validation curves per fold"))
    results = {"meta": meta or {}, "settings": settings_dict, "classes": list(classes), "folds": folds,
               "average": average, "figures": figures, "failed": len(folds) - len(ok),
               "device": str(device or default_device())}
    write_json(output_dir / "results.json", results)
    (output_dir / "report.md").write_text(report_markdown(results))
    return results


# ---------------------------------------------------------------------------------------------------- report
def _pct(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _pm(d) -> str:
    return f"{_pct(d['mean'])} ± {_pct(d['std'])}"


def _mst_section(ok) -> list:
    lines = ["## MSTModel per fold (early stopping on the validation split)", "",
             "| fold | epochs run | stopped by | best epoch | val MSE | val correlation | correlation levels off "
             "(within 0.005 of its best) at epoch |", "|---|---|---|---|---|---|---|"]
    for f in ok:
        m = f["mst"]
        lines.append(f"| {f['name']} | {m['epochs_run']} | {m['stopped']} | {m['best_epoch']} | {m['val_mse']:.4f} | "
                     f"{m['val_corr']:.3f} | {m['corr_levels_off_epoch']} |")
    capped = [f["name"] for f in ok if f["mst"]["stopped"] == "max_epochs"]
    lines += ["", "Target of issue 12: validation correlation about 0.95. "
              + (f"Fold(s) {', '.join(capped)} hit the epoch cap before early stopping: not shown to have "
                 "converged; raise mst_epochs." if capped else "Every fold stopped by early stopping.")]
    for f in ok:
        h = f["mst"]["history"]
        picks = sorted({int(round(x)) for x in np.linspace(0, len(h) - 1, min(len(h), 12))})
        lines += ["", f"Fold {f['name']}, validation curve:", "",
                  "| epoch | " + " | ".join(str(h[i]["epoch"]) for i in picks) + " |",
                  "|---|" + "---|" * len(picks),
                  "| MSE | " + " | ".join(f"{h[i]['val_mse']:.4f}" for i in picks) + " |",
                  "| correlation | " + " | ".join(f"{h[i]['val_corr']:.3f}" for i in picks) + " |"]
    return lines


def _arm_section(ok, average) -> list:
    lines = ["## Test accuracy per arm (clip majority vote, %)", ""]
    for arm, avg in average.items():
        lines += [f"### {avg['label']}", "", "| fold | final | best (epoch) |", "|---|---|---|"]
        for f in ok:
            if arm not in f["arms"]:
                continue
            curve = f["arms"][arm]["curve"]
            best = max(curve, key=lambda r: r["test_accuracy"])
            lines.append(f"| {f['name']} | {_pct(curve[-1]['test_accuracy'])} | {_pct(best['test_accuracy'])} "
                         f"({best['epoch']}) |")
        if len(ok) > 1:  # one fold has no spread to show
            lines.append(f"| mean ± std | {_pm(avg['final'])} | {_pm(avg['best'])} |")
        lines.append("")
    return lines


def _claims_section(ok, claims) -> list:
    lines = ["## The paper's claims beside the measured result", "",
             "| claim | measured: final accuracy B - A (%), mean ± std over folds | folds | reading |",
             "|---|---|---|---|"]
    for c in claims:
        a, b = c["pair"]
        diffs = [f["arms"][b]["curve"][-1]["test_accuracy"] - f["arms"][a]["curve"][-1]["test_accuracy"]
                 for f in ok if a in f["arms"] and b in f["arms"]]
        lines.append(f"| ({b}) - ({a}): {c['text']} | {_measured(diffs)} | {len(diffs)} | "
                     f"{_reading(diffs, ok)} |")
    return lines


def _measured(diffs) -> str:
    if not diffs:
        return "not measured"
    if len(diffs) == 1:
        return f"{100 * diffs[0]:+.1f}"
    mean, std = mean_std(diffs)
    return f"{100 * mean:+.1f} ± {_pct(std)}"


def _reading(diffs, ok) -> str:
    """What the measured differences can and cannot say (never more than the folds support)."""
    if not diffs:
        return "-"
    clip = 100.0 / max(min(f["n_test_clips"] for f in ok), 1)
    if len(diffs) == 1:
        return (f"one fold: no spread to test against; one test clip is {clip:.1f} points and the final epoch "
                f"alone is noisy")
    mean = mean_std(diffs)[0]
    low, high = mean_interval(diffs, 0.95)  # 95 % CI of the mean over folds
    half = (high - low) / 2
    if abs(mean) <= half:
        return f"within the fold-to-fold noise (95 % CI ±{100 * half:.1f} points spans 0)"
    return f"{'B' if mean > 0 else 'A'} better by {100 * abs(mean):.1f} points (95 % CI ±{100 * half:.1f} excludes 0)"


def report_markdown(results: dict) -> str:
    """``report.md`` of :func:`run_protocol`'s results: the protocol and its declared reductions and overrides,
    the settings with sources, the data per fold, the MSTModel learning curves, a table per arm (final and
    best test accuracy per fold, mean ± std), the paper's claims beside the measured differences, failures.

    >>> print(report_markdown({"meta": {"title": "tax2017"}, "folds": [], "average": {}, "failed": 0}).splitlines()[0])
    # tax2017
    """
    meta = results.get("meta", {})
    ok = [f for f in results["folds"] if f["status"] == "ok"]
    lines = [f"# {meta.get('title', 'tax2017')}", ""]
    if meta.get("citation"):
        lines += [meta["citation"], ""]
    lines += ["## Protocol", "", "Reduced: " + ("no, the full protocol." if not meta.get("reduced") else "yes:")]
    lines += [f"- {r}" for r in meta.get("reduced", [])]
    lines += ["", "User overrides: " + (", ".join(meta["overrides"]) if meta.get("overrides") else "none."), ""]
    if meta.get("settings"):
        lines += ["| setting | value | status | source |", "|---|---|---|---|"]
        lines += [f"| {r['key']} | {json.dumps(r['value'])} | {r['status']} | {r['source']} |"
                  for r in meta["settings"]]
        lines.append("")
    lines += ["## Data per fold", "", "| fold (validation-test) | train clips | val | test | train segments (from "
              "shifted copies) | val segments | test segments |", "|---|---|---|---|---|---|---|"]
    for f in ok:
        lines.append(f"| {f['name']} | {f['n_train_clips']} | {f['n_val_clips']} | {f['n_test_clips']} | "
                     f"{f['n_train_segments']} ({f['n_train_segments_from_copies']}) | {f['n_val_segments']} | "
                     f"{f['n_test_segments']} |")
    lines.append("")
    if ok:
        lines += _mst_section(ok) + [""] + _arm_section(ok, results["average"])
        lines += ["Figures: `accuracy_vs_epoch.png` (test accuracy per epoch, mean ± std over folds, the paper's "
                  "Figure 3) and `mst_learning_curves.png`.", ""]
        lines += _claims_section(ok, meta.get("claims", []))
    failed = [f for f in results["folds"] if f["status"] != "ok"]
    lines += ["", "## Failures", ""] + ([f"- fold {f['name']}: {f['error']}" for f in failed] or ["None."])
    return "\n".join(lines) + "\n"
