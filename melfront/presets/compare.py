"""The shared machinery of the ``compare``-kind presets (pons2019-us8k, pons2019-tut, merlin).

A :class:`ComparePreset` turns its settings into a :class:`~melfront.study.StudyConfig`, checks it against
the data (clip headers only) in :meth:`~ComparePreset.plan`, prints the grid in
:meth:`~ComparePreset.dry_run`, and runs it with :func:`melfront.study.run_study` in
:meth:`~ComparePreset.run`. Where the data cannot hold the protocol it refuses with a
:class:`~melfront.errors.StudyError` naming the reason and the fix, or declares a reduced version
(``Plan.reduced``); every user override is listed in ``Plan.overrides``. Nothing changes silently.

Setting keys map onto the study config: ``dataset``, ``dataset_options.X``, ``mel.X``, ``train.X`` (every
model), ``train.MODEL.X`` (one model; ``train.MODEL.model_options.X`` for an architecture option),
``frontends``, ``models``, ``n_per_class``, ``runs`` (``"pons"``: :func:`melfront.study.runs_for_n`, or a
number), ``test_folds``, ``split``, ``compare``, ``seed``. Other keys (``protocol.*``) document the protocol.

>>> from melfront.presets.registry import Setting
>>> study_dict([Setting("mel.hop_length", 1024, "x"), Setting("train.vgg.model_options.width", 32, "x"),
...             Setting("runs", "pons", "x")])["train"]
{'models': {'vgg': {'model_options': {'width': 32}}}}
"""
from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path

from ..errors import DataError, MelfrontError, ParameterError, StudyError
from .registry import Plan, Preset

__all__ = ["ComparePreset", "study_dict", "grid_lines", "OVERRIDE_KEYS"]

_MODELS_KNOWN = ("sbcnn", "vgg", "timbre", "piczak", "protonet", "resnet")
#: Study-level keys a user may override (``--runs``, ``--n``, ...); any other key is a mel or training setting.
OVERRIDE_KEYS = ("dataset", "root", "frontends", "models", "n_per_class", "runs", "test_folds", "seed", "split",
                 "group_by", "compare", "dataset_options", "subsets")


def _put(tree: dict, parts: list, value):
    for p in parts[:-1]:
        tree = tree.setdefault(p, {})
    tree[parts[-1]] = copy.deepcopy(value)


def study_dict(settings) -> dict:
    """The StudyConfig fields a preset's settings give (``protocol.*`` keys are documentation only)."""
    out: dict = {}
    for s in settings:
        parts = s.key.split(".")
        head = parts[0]
        if head == "protocol":
            continue
        if head == "runs":
            out["runs"] = {} if s.value == "pons" else {"default": s.value}
        elif head == "train" and len(parts) >= 3 and parts[1] in _MODELS_KNOWN:
            _put(out, ["train", "models", parts[1]] + parts[2:], s.value)
        elif head in ("mel", "train", "dataset_options"):
            _put(out, parts, s.value)
        else:
            out[s.key] = copy.deepcopy(s.value)
    return out


def _fmt(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class ComparePreset(Preset):
    """A preset whose run is a few-data study (``melfront compare``). Subclasses set the attributes and may
    override :meth:`adjust` (extra protocol decisions on the loaded clips, e.g. merlin's ``n``)."""

    needs_folds: tuple = ()          # folds the protocol needs (tut: ("evaluation",)); missing -> refuse
    missing_fix = ""                 # how to get them

    # ---------------------------------------------------------------- plan
    def base_config(self, dataset: str) -> dict:
        values = study_dict(self.settings)
        if dataset != values.get("dataset"):
            values["dataset_options"] = {}
        values["dataset"] = dataset
        return values

    def plan(self, root=None, dataset=None, overrides: dict | None = None) -> Plan:
        """Check the protocol against the data at ``root`` (headers only); refuse or declare (see the module)."""
        from ..study import StudyConfig
        from ..study.preflight import preflight
        from ..study.splits import complete_folds, resolve_split, study_clips
        dataset = dataset or self.default_dataset
        values = self.base_config(dataset)
        reduced, declared, notes = [], [], []
        if dataset != self.default_dataset:
            declared.append(f"dataset: {self.default_dataset} -> {dataset}")
            own = study_dict(self.settings)
            if own.get("dataset_options"):
                declared.append(f"dataset_options: {_fmt(own['dataset_options'])} -> {{}} (they belong to "
                                f"{self.default_dataset})")
            if own.get("test_folds", "all") != "all":
                values["test_folds"] = "all"
                declared.append(f"test_folds: {_fmt(own['test_folds'])} -> \"all\" (they belong to "
                                f"{self.default_dataset})")
        values["root"] = None if root is None else str(root)
        declared += _apply_overrides(values, dict(overrides or {}), study_dict(self.settings))
        declared += _drop_orphan_pairs(values, overrides or {})
        try:
            config = StudyConfig.from_dict(values)
            config.validate()
            preflight(config)  # as the real run does: mel bands, epochs, every model x frontend built
        except ParameterError as exc:
            raise StudyError(f"preset {self.name}: {exc}") from None
        try:
            clips = study_clips(config)
        except FileNotFoundError as exc:
            raise StudyError(f"preset {self.name}: {exc}") from None
        except DataError as exc:
            raise StudyError(f"preset {self.name} cannot run on this data: {exc}") from None
        present = [str(f) for f in clips.folds]
        missing = [f for f in self.needs_folds if f not in present]
        if missing and dataset == self.default_dataset:
            raise StudyError(f"preset {self.name}: the protocol tests on the {', '.join(missing)} set, which is not "
                             f"in {config.root or 'the data folder'} (folds found: {present}); {self.missing_fix}")
        user_split = "split" in (overrides or {})
        if config.split == "folds" and not user_split and len(complete_folds(clips)) < 2:
            config.split = "holdout"
            folds = complete_folds(clips) or clips.folds
            by = "grouped by source" if any(c.source_id for c in clips) else "by clip"
            reduced.append(f"official folds: only fold(s) {folds} hold every class (folds present: {clips.folds}), "
                           f"so each is tested by a holdout within it ({by}, the rest of the data trains) instead of "
                           f"the official {config.test_folds!r} cross-validation")
        try:
            resolve_split(config, clips)  # a DataError for split folds on one fold
            pools = _pool_minimum(config, clips)
            self.adjust(config, clips, pools, notes, overrides or {})
        except (DataError, ParameterError) as exc:
            raise StudyError(f"preset {self.name} cannot run on this data: {exc}") from None
        smallest = min(pools.values())
        wanted = sorted(config.n_per_class)
        kept = [n for n in wanted if n <= smallest]
        if not kept:
            raise StudyError(f"preset {self.name}: every n of {wanted} exceeds the smallest class's training pool "
                             f"({smallest} clips, fold {min(pools, key=pools.get)}); give a larger data set, or "
                             f"--n at most {smallest}")
        if kept != wanted:
            gone = [n for n in wanted if n not in kept]
            reduced.append(f"n: {gone} dropped (the smallest class has {smallest} training clips, fewer than n; "
                           f"fold {min(pools, key=pools.get)}); n = {kept}")
            config.n_per_class = kept
        config.validate()
        from ..study import plan as grid_plan
        trials = grid_plan(config, clips)
        grid = [dict(model=t.model, frontend=t.frontend, n=t.n, fold=t.fold, run=t.run) for t in trials]
        return Plan(self.name, dataset, config.root, reduced, declared, grid,
                    dict(config=config, notes=notes, clips=clips, n_clips=len(clips), n_classes=len(clips.classes)))

    def adjust(self, config, clips, pools: dict, notes: list, overrides: dict) -> None:
        """Hook: protocol decisions that need the clips (default: none). ``pools``: ``{test fold: fewest
        training clips of any class}``; ``notes``: where to say what was decided."""

    # ---------------------------------------------------------------- dry run
    def dry_run(self, plan: Plan, time_one: bool = True) -> str:
        """The grid (trials per model, frontend, n, fold, run, and the total) and, with ``time_one``, an estimate
        of its CPU time per model (:mod:`melfront.study.estimate`: a few training and evaluation steps per model
        timed here, priced by each trial's patch-steps and test-clip durations; the method is printed)."""
        config = plan.details["config"]
        lines = [f"preset {plan.title}: {self.citation}",
                 f"data: {plan.dataset} at {plan.root or '(default folder)'} ({plan.details.get('n_clips')} clips, "
                 f"{plan.details.get('n_classes')} classes); split {config.split}; test folds "
                 f"{sorted({str(g['fold']) for g in plan.grid}, key=_numeric_first)}"]
        for r in plan.reduced:
            lines.append(f"reduced: {r}")
        for o in plan.overrides:
            lines.append(f"override: {o}")
        for note in plan.details.get("notes", []):
            lines.append(f"note: {note}")
        lines += grid_lines(plan.grid)
        if time_one and plan.grid:
            lines += _estimate(self, plan)
        return "\n".join(lines)

    # ---------------------------------------------------------------- run
    def run(self, plan: Plan, output_dir, *, jobs=None, ray=None, quiet=False, retry_failed=False,
            ray_num_gpus=0.0) -> int:
        """Run the plan's study into ``output_dir`` (``study.db``, ``config.json``, ``report/``) with
        :func:`melfront.report.study_to_report`; the ``preset`` meta is stored once the folder is locked and the
        config accepted, before any trial trains. 0: every trial succeeded; 1: some failed (stored, see the report)."""
        from ..fileio import write_json
        from ..report import study_to_report
        from ..study import ResultStore
        out = Path(output_dir)
        meta = self.meta(plan)

        def accepted(stored):
            write_json(out / "config.json", stored.to_dict())
            ResultStore(out / "study.db").set_meta("preset", meta)

        return study_to_report(copy.deepcopy(plan.details["config"]), out, accepted=accepted, ray_address=ray,
                               jobs=jobs, quiet=quiet, retry_failed=retry_failed, ray_num_gpus=ray_num_gpus)


# -------------------------------------------------------------------- helpers
def _numeric_first(k: str):
    """Sort key: numbers in numeric order first ('2' before '10'), then names."""
    return (not k.isdigit(), int(k) if k.isdigit() else 0, k)


def grid_lines(grid: list) -> list:
    """Trials per model, frontend, n, fold and run (numbers in numeric order), and the total.

    >>> grid_lines([dict(model="vgg", frontend="db", n=2, fold=1, run=0), dict(model="vgg", frontend="db", n=10,
    ...             fold=1, run=1)])[2:]
    ['trials per n: 2: 1, 10: 1', 'trials per fold: 1: 2', 'trials per run: 0: 1, 1: 1', 'total: 2 trials']
    """
    lines = []
    for key in ("model", "frontend", "n", "fold", "run"):
        counts = Counter(str(g[key]) for g in grid)
        order = sorted(counts, key=_numeric_first)
        lines.append(f"trials per {key}: " + ", ".join(f"{k}: {counts[k]}" for k in order))
    lines.append(f"total: {len(grid)} trials")
    return lines


def _apply_overrides(values: dict, overrides: dict, display: dict | None = None) -> list:
    """Apply the user's overrides to the study dict; return ``["key: old -> new", ...]``."""
    from ..frontends import MelSpectrogram
    mel_keys = tuple(MelSpectrogram(sample_rate=16000).config())
    said = []
    for key, new in overrides.items():
        if key in OVERRIDE_KEYS:
            if key == "runs" and not isinstance(new, dict):
                new = {"default": new}
            old = (display or {}).get(key, values.get(key))
            if key == "runs":
                old = old or "Pons et al.'s 20/10/5 by n"
            if old != new:
                said.append(f"{key}: {_fmt(old) if old is not None else '(none)'} -> {_fmt(new)}")
            values[key] = copy.deepcopy(new)
        elif key in mel_keys:
            old = values.setdefault("mel", {}).get(key)
            if old != new:
                said.append(f"mel.{key}: {_fmt(old) if old is not None else '(default)'} -> {_fmt(new)}")
            values["mel"][key] = new
        else:  # a training setting: for every model (per-model values of it give way; model_options merge)
            train = values.setdefault("train", {})
            per_model = train.get("models") or {}
            olds = {m: t[key] for m, t in per_model.items() if key in t}
            old = train.get(key)
            shown = _fmt(old) if old is not None else "(model default)"
            if olds:
                shown += " (" + ", ".join(f"{m}: {_fmt(v)}" for m, v in olds.items()) + ")"
            for m, t in per_model.items():
                if key in t:
                    t[key] = {**t[key], **new} if key == "model_options" and isinstance(new, dict) else new
            if key != "model_options" or not olds:
                train[key] = new
            said.append(f"train.{key}: {shown} -> {_fmt(new)}")
    return said


def _drop_orphan_pairs(values: dict, overrides: dict) -> list:
    """When ``--frontends`` leaves out a frontend of a compared pair (and ``--compare`` is not given), drop the
    pair and say so: ``["compare: pair A vs B dropped (B not among --frontends)"]``.

    >>> v = dict(frontends=["logeps"], compare=[["logeps", "loglearn"]])
    >>> _drop_orphan_pairs(v, {"frontends": ["logeps"]}), v["compare"]
    (["compare: pair logeps vs loglearn dropped ('loglearn' not among --frontends); no difference table"], [])
    """
    if "frontends" not in overrides or "compare" in overrides:
        return []
    kept, said = [], []
    for pair in values.get("compare") or []:
        missing = [f for f in pair if f not in values["frontends"]]
        if missing:
            said.append(f"compare: pair {pair[0]} vs {pair[1]} dropped ({', '.join(map(repr, missing))} not among "
                        f"--frontends); no difference table")
        else:
            kept.append(pair)
    values["compare"] = kept
    return said


def _pool_minimum(config, clips) -> dict:
    """``{fold: fewest training clips of any class}`` over the folds the study tests."""
    from ..data.base import class_counts
    from ..study.splits import fold_split, folds_to_test
    out = {}
    for fold in folds_to_test(config, clips):
        pool = fold_split(config, clips, fold)[0]
        out[fold] = min(class_counts(pool, len(clips.classes)))
    return out


def _estimate(preset, plan: Plan, timer=None) -> list:
    """CPU-time estimate of the plan's grid (:mod:`melfront.study.estimate`): training priced by patch-steps with
    step costs measured here per model, evaluation by the test clips' durations and the evaluation hop."""
    from ..study.estimate import estimate_lines, estimate_study
    try:
        est = estimate_study(plan.details["config"], plan.details["clips"], plan.grid, timer=timer)
    except MelfrontError as exc:
        return [f"estimate: timing failed ({exc}); no estimate"]
    return estimate_lines(est)
