"""Running a study's grid: the trials in order and local or Ray execution into the store (splits: :mod:`.splits`).

The engine part, shared by every study (the few-data grid and the Tax et al. protocol): :func:`pending_units`
(what a store still lacks) and :func:`run_units` (units of :mod:`.execution` into the store, each trial stored the
moment it ends, with a progress bar).
"""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import torch
from tqdm import tqdm

from ..checks import positive_int
from ..data.sampling import n_per_class_actual, seed_for
from ..errors import StudyError
from ..train import DEFAULT_MEL, run_trial
from .config import StudyConfig, Trial, train_settings
from .execution import OneByOne, execute_ray_units, execute_units
from .preflight import preflight
from .splits import check_study, folds_to_test, split_for_trial, study_clips
from .store import ResultStore, StudyLock, error_line

__all__ = ["plan", "split_for_trial", "load_clips", "execute_trial", "run_study", "open_study", "failure_summary",
           "pending_units", "run_units", "say_failures", "CellUnit", "batched_cells"]


def plan(config: StudyConfig, clips) -> list[Trial]:
    """The grid in execution order: fold, n, run, model, frontend (frontends of a cell run back to back).

    >>> from melfront.data import Clip, ClipList
    >>> clips = ClipList([Clip(f"{i}.wav", i % 2, "ab"[i % 2], 1 + i % 3) for i in range(12)], classes=["a", "b"])
    >>> trials = plan(StudyConfig(n_per_class=[1, 2], runs={"default": 2}, frontends=["db", "pcen"]), clips)
    >>> len(trials), trials[0]
    (24, Trial(fold=1, n=1, run=0, model='sbcnn', frontend='db'))
    """
    trials = []
    for fold in folds_to_test(config, clips):
        for n in sorted(int(n) for n in config.n_per_class):
            for run in range(config.runs_for(n)):
                for model in config.models:
                    for fe in config.frontends:
                        trials.append(Trial(fold, n, run, model, fe))
    return trials


# --------------------------------------------------------------------------------------------
# Execution
# --------------------------------------------------------------------------------------------
_DATASETS: dict = {}


def load_clips(config: StudyConfig):
    """The study's readable clips with their groups (:func:`.splits.study_clips`), loaded once per process.

    >>> import tempfile
    >>> config = StudyConfig(root=tempfile.mkdtemp(), dataset_options=dict(n_classes=2, clips_per_class=2,
    ...                      duration=0.25, sample_rate=4000, n_folds=2))
    >>> clips = load_clips(config)
    >>> len(clips), load_clips(config) is clips
    (4, True)
    """
    ident = json.dumps([config.dataset, config.root, config.dataset_options, config.group_by], sort_keys=True)
    if ident not in _DATASETS:
        _DATASETS[ident] = study_clips(config)
    return _DATASETS[ident]


def execute_trial(config_dict: dict, trial_dict: dict, trial_fn=None) -> dict:
    """Run one trial from plain dicts (so that it can be shipped to a process pool or a Ray worker).

    ``trial_fn`` (default :func:`melfront.train.run_trial`) trains and tests; the result gains a ``split`` note
    and ``n_per_class_actual`` (the fewest clips a class really trained on, below ``n`` for a shortfall).

    >>> import tempfile
    >>> config = StudyConfig(root=tempfile.mkdtemp(), n_per_class=[1], dataset_options=dict(n_classes=2,
    ...                      clips_per_class=4, duration=0.25, sample_rate=4000, n_folds=2))
    >>> fake = lambda clips, train_clips, test_clips, **kw: dict(accuracy=len(train_clips) / 10)
    >>> execute_trial(config.to_dict(), dict(fold=1, n=1, run=0, model="sbcnn", frontend="db"), fake)
    {'accuracy': 0.2, 'split': 'official folds', 'n_per_class_actual': 1}
    """
    config = StudyConfig.from_dict(config_dict)
    trial = Trial(**trial_dict)
    clips = load_clips(config)
    train, test, note = split_for_trial(config, clips, trial.fold, trial.n, trial.run)
    trial_fn = run_trial if trial_fn is None else trial_fn
    seed = seed_for(config.seed, trial.n, trial.run, trial.fold) % 2**31
    threads = torch.get_num_threads()
    # One intra-op thread per trial: parallelism comes from running trials side by side (--jobs, Ray),
    # which is faster for these small networks, and the numbers are then the same locally and on Ray.
    torch.set_num_threads(1)
    try:
        result = trial_fn(clips, frontend=trial.frontend, model=trial.model, train_clips=train, test_clips=test,
                          mel={**DEFAULT_MEL, **config.mel}, train=train_settings(config, trial.model), seed=seed,
                          progress=False)
    finally:
        torch.set_num_threads(threads)
    result = dict(result)
    result["split"] = note
    result["n_per_class_actual"] = n_per_class_actual(train, len(clips.classes), result.get("skipped", ()))
    return result


def _progress_line(trial: Trial, outcome: tuple) -> str:
    head = f"fold {trial.fold} n={trial.n:<3} run {trial.run:<2} {trial.model:<8} {trial.frontend:<28} "
    status, result = outcome
    if status != "ok":
        return head + f"FAILED: {result}"
    return head + (f"acc {result['accuracy']:.3f}  map {result.get('map', float('nan')):.3f}  "
                   f"{result.get('train_seconds', 0):.1f}s")


def open_study(config: StudyConfig, store_path) -> ResultStore:
    """The store at ``store_path``, holding ``config`` (or, for a study that grows, the stored config extended by
    it: :meth:`StudyConfig.extended_by`; a change of meaning is a StudyError naming the field).

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "study.db"
    >>> open_study(StudyConfig(frontends=["db"]), path).config().frontends
    ['db']
    >>> open_study(StudyConfig(frontends=["pcen"]), path).config().frontends
    ['db', 'pcen']
    """
    store = ResultStore(store_path)
    saved = store.config()
    if saved is not None and saved.to_dict() != config.to_dict():
        try:
            config = saved.extended_by(config)
        except StudyError as exc:
            raise StudyError(f"{store_path} holds a study with a different configuration: {exc}") from None
    store.save_config(config)
    return store


def failure_summary(failures: list, total: int) -> str:
    """One line: how many of ``total`` trials failed, and the commonest causes.

    >>> failure_summary([{"error": "ValueError: boom"}] * 2 + [{"error": "DivergenceError: loss is nan"}], 10)
    '3 of 10 trials failed: ValueError: boom (2); DivergenceError: loss is nan (1)'
    """
    causes = Counter(f["error"] for f in failures).most_common()
    shown = "; ".join(f"{cause} ({count})" for cause, count in causes[:3])
    more = f"; and {len(causes) - 3} other causes" if len(causes) > 3 else ""
    return f"{len(failures)} of {total} trials failed: {shown}{more}"


def run_study(config: StudyConfig, store_path, *, ray_address: str | None = None, jobs: int | None = 1,
              progress: bool = True, quiet: bool = False, trial_fn=None, ray_num_cpus: float = 1,
              ray_num_gpus: float = 0, retry_failed: bool = False, accepted=None) -> ResultStore:
    """Run (or resume) every trial of ``config`` not yet in the store at ``store_path``.

    ``jobs``: trials run side by side in that many local processes (None: one per CPU core); each
    trial uses one intra-op thread. ``ray_address`` ("auto", "local" or an address) sends every
    trial to Ray instead, as a task with ``ray_num_cpus`` / ``ray_num_gpus``, retried if its worker dies
    (``"auto"``: the running cluster, or a local instance when none runs).

    One study per folder: the folder of ``store_path`` is locked (:class:`.store.StudyLock`) for the whole run.
    The store may hold the same study (resumed) or one this config extends (:func:`open_study`); any
    other is a :class:`~melfront.errors.StudyError`. Once the config is accepted, ``accepted(stored_config)``
    is called (the CLI writes ``config.json`` there). Each trial is stored the moment it ends: a trial that
    raises or diverges is stored as failed with its cause (:meth:`ResultStore.failures`) and the study goes
    on; a rerun skips stored failures unless ``retry_failed``.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> config = StudyConfig(root=str(folder / "synth"), n_per_class=[1], runs={"default": 2}, test_folds="first",
    ...                      dataset_options=dict(n_classes=2, clips_per_class=4, duration=0.25, sample_rate=4000,
    ...                                           n_folds=2))
    >>> fake = lambda clips, train_clips, test_clips, **kw: dict(accuracy=0.5)
    >>> store = run_study(config, folder / "study.db", trial_fn=fake, quiet=True)
    >>> len(store.rows())  # 1 test fold x 1 n x 2 runs x 1 model x 2 frontends
    4
    """
    config.validate()
    if trial_fn is None:  # real training: mel bands, epochs, every model x frontend built before the first trial
        preflight(config)
    jobs = os.cpu_count() or 1 if jobs is None else positive_int("jobs", jobs)
    with StudyLock(Path(store_path).parent):
        return _run_locked(config, store_path, ray_address=ray_address, jobs=jobs, progress=progress, quiet=quiet,
                           trial_fn=trial_fn, ray_num_cpus=ray_num_cpus, ray_num_gpus=ray_num_gpus,
                           retry_failed=retry_failed, accepted=accepted)


def _run_locked(config, store_path, *, ray_address, jobs, progress, quiet, trial_fn, ray_num_cpus, ray_num_gpus,
                retry_failed, accepted) -> ResultStore:
    clips = load_clips(config)
    trials = plan(config, clips)
    accounting = check_study(config, clips, trials)  # a DataError here, before anything trains
    config.split = accounting["split"]  # stored with the study: the split rule never changes silently
    store = open_study(config, store_path)
    if accepted is not None:
        accepted(store.config())
    store.set_meta("skipped_clips", clips.skipped)
    store.set_meta("cell_shortfalls", accounting["shortfalls"])
    keyed = [(t.key(config), t) for t in trials]
    cells = batched_cells() and trial_fn is None
    units, old_failed = pending_units(store, _cells(keyed) if cells else [[kt] for kt in keyed], retry_failed)
    pending = sum(len(u) for u in units)
    say = (lambda *a: None) if quiet else print
    for line in accounting["lines"]:
        say(line)
    retry_note = (f"; {old_failed} failed before: {'retrying them' if retry_failed else 'skipped (--retry-failed retries them)'}"
                  if old_failed else "")
    say(f"study: {len(trials)} trials ({len(trials) - pending} already done{retry_note}) on {config.dataset} "
        f"({len(clips)} clips, {len(clips.classes)} classes)")
    if cells:
        say("batched runs: the runs of a cell (fold, n, model, frontend) train together as one stacked model where "
            "the model allows it (melfront.train.batched), each stored as its own trial")
    run_units(store, config, units, CellUnit() if cells else OneByOne(execute_trial), config.to_dict(),
              total=len(trials), trial_fn=trial_fn,
              jobs=jobs, ray_address=ray_address, ray_num_cpus=ray_num_cpus, ray_num_gpus=ray_num_gpus,
              progress=progress, quiet=quiet, describe=_progress_line)
    say_failures(store, {k for k, _ in keyed}, retry_failed, say)
    return store


def batched_cells() -> bool:
    """Whether a study runs each cell as one unit of batched runs: ``$MELFRONT_BATCHED_RUNS`` ``"batched"`` /
    ``"alone"``, else (``"auto"``) where it pays: on CUDA (on the CPU the runs one after another were faster,
    :mod:`melfront.train.batched`).

    >>> batched_cells() == torch.cuda.is_available() or os.environ.get("MELFRONT_BATCHED_RUNS", "auto") != "auto"
    True
    """
    mode = os.environ.get("MELFRONT_BATCHED_RUNS", "auto")
    if mode not in ("auto", "batched", "alone"):
        raise StudyError(f"MELFRONT_BATCHED_RUNS must be auto, batched or alone, got {mode!r}")
    return mode == "batched" or (mode == "auto" and torch.cuda.is_available())


def _cells(keyed) -> list:
    """The trials grouped by cell (fold, n, model, frontend), in plan order of each cell's first trial."""
    cells: dict = {}
    for key, trial in keyed:
        cells.setdefault((trial.fold, trial.n, trial.model, trial.frontend), []).append((key, trial))
    return list(cells.values())


class CellUnit:
    """The unit function of a cell's runs: :func:`melfront.train.batched.run_trials` trains them together where
    the model allows it (each run as it would train alone) and tests each; one outcome per trial, as
    :func:`execute_trial` would give it (a run that fails fails alone). Picklable (worker pool, Ray).

    >>> import tempfile
    >>> config = StudyConfig(root=tempfile.mkdtemp(), n_per_class=[1], dataset_options=dict(n_classes=2,
    ...                      clips_per_class=4, duration=0.25, sample_rate=4000, n_folds=2))
    >>> fake = lambda clips, train_clips, test_clips, **kw: dict(accuracy=len(train_clips) / 10)
    >>> list(CellUnit()(config.to_dict(), [dict(fold=1, n=1, run=r, model="sbcnn", frontend="db") for r in (0, 1)],
    ...                 fake))[1]
    ('ok', {'accuracy': 0.2, 'split': 'official folds', 'n_per_class_actual': 1})
    """

    def __call__(self, cfg: dict, trial_dicts: list, trial_fn=None):
        if trial_fn is not None or len(trial_dicts) < 2:  # a custom trial function: one by one, as always
            yield from OneByOne(execute_trial)(cfg, trial_dicts, trial_fn)
            return
        from ..train.batched import run_trials

        config = StudyConfig.from_dict(cfg)
        trials = [Trial(**d) for d in trial_dicts]
        clips = load_clips(config)
        runs, outcomes = [], [None] * len(trials)
        for i, t in enumerate(trials):
            try:
                train, test, note = split_for_trial(config, clips, t.fold, t.n, t.run)
                runs.append((i, note, dict(train_clips=train, test_clips=test,
                                           seed=seed_for(config.seed, t.n, t.run, t.fold) % 2**31)))
            except Exception as exc:  # this trial's failure only
                outcomes[i] = ("failed", error_line(exc))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as execute_trial: one intra-op thread per unit
        try:
            results = run_trials(clips, frontend=trials[0].frontend, model=trials[0].model,
                                 runs=[r for _, _, r in runs], mel={**DEFAULT_MEL, **config.mel},
                                 train=train_settings(config, trials[0].model), policy="batched")
        finally:
            torch.set_num_threads(threads)
        for (i, note, run), res in zip(runs, results):
            if isinstance(res, Exception):
                outcomes[i] = ("failed", error_line(res))
                continue
            res = dict(res, split=note)
            res["n_per_class_actual"] = n_per_class_actual(run["train_clips"], len(clips.classes),
                                                           res.get("skipped", ()))
            outcomes[i] = ("ok", res)
        yield from outcomes


def pending_units(store: ResultStore, units, retry_failed: bool = False) -> tuple[list, int]:
    """``(units without the trials the store holds, how many of the units' trials failed before)``: finished
    trials are always left out, failed ones too unless ``retry_failed``; units left empty are dropped.

    >>> import tempfile, pathlib
    >>> from melfront.study.config import Trial
    >>> store = ResultStore(pathlib.Path(tempfile.mkdtemp()) / "study.db")
    >>> t = Trial(1, 1, 0, "sbcnn", "db")
    >>> _ = store.add("k1", t, StudyConfig(), {"accuracy": 0.5}); _ = store.add_failure("k2", t, StudyConfig(), "x")
    >>> pending_units(store, [[("k1", t), ("k2", t)], [("k3", t)]])
    ([[('k3', Trial(fold=1, n=1, run=0, model='sbcnn', frontend='db'))]], 1)
    >>> len(pending_units(store, [[("k1", t), ("k2", t)]], retry_failed=True)[0][0])
    1
    """
    done, failed = store.finished_keys(), store.failed_keys()
    skip = done if retry_failed else done | failed
    keys = {k for u in units for k, _ in u}
    out = [[(k, t) for k, t in u if k not in skip] for u in units]
    return [u for u in out if u], len(keys & failed)


def run_units(store: ResultStore, config: StudyConfig, units, run_unit, cfg: dict, *, total: int, trial_fn=None,
              jobs: int = 1, ray_address: str | None = None, ray_num_cpus: float = 1, ray_num_gpus: float = 0,
              progress: bool = True, quiet: bool = False, describe=None, unit_name: str = "trial") -> None:
    """Run ``units`` (:mod:`.execution`: lists of ``(key, trial)``, ``run_unit(cfg, trial_dicts, trial_fn)``) and
    store each trial the moment its outcome is known (ok row, or failed row with its cause), so a killed run
    keeps every finished trial. ``jobs`` worker processes, or Ray tasks (one per unit) with ``ray_address``.
    ``total``: the study's trial count (the progress bar starts at those already stored); ``describe(trial,
    outcome)``: the progress line of a trial.
    """
    say = (lambda *a: None) if quiet else print
    pending = sum(len(u) for u in units)
    bar = None
    if progress and not quiet and pending:
        bar = tqdm(total=total, initial=total - pending, desc="grid", unit=unit_name)
    write = bar.write if bar else say

    def on_outcome(key, trial, outcome):
        if outcome[0] == "ok":
            store.add(key, trial, config, outcome[1])
        else:
            store.add_failure(key, trial, config, outcome[1])
        if describe is not None:
            write(describe(trial, outcome))
        if bar:
            bar.update(1)

    try:
        if ray_address:
            execute_ray_units(units, run_unit, cfg, trial_fn, on_outcome, address=ray_address, num_cpus=ray_num_cpus,
                              num_gpus=ray_num_gpus, say=write)
        else:
            execute_units(units, run_unit, cfg, trial_fn, jobs, on_outcome)
    finally:
        if bar:
            bar.close()


def say_failures(store: ResultStore, planned: set, retry_failed: bool, say=print) -> list:
    """The stored failures among the ``planned`` keys, said in one line (:func:`failure_summary`) when any."""
    failures = [f for f in store.failures() if f["key"] in planned]
    if failures:
        say(failure_summary(failures, len(planned)) + "; every other trial is stored"
            + ("" if retry_failed else "; rerun with --retry-failed to try the failed ones again"))
    return failures
