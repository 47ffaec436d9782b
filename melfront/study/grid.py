"""Running a study's grid: the trials in order, each trial's split, and local or Ray execution into the store."""
from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed

import torch
from tqdm import tqdm

from ..data import dataset
from ..data.sampling import few_shot_subset, rng_for, seed_for
from ..errors import ParameterError, StudyError
from ..train import DEFAULT_MEL, run_trial
from .config import StudyConfig, Trial, train_settings
from .store import ResultStore

__all__ = ["plan", "split_for_trial", "load_clips", "execute_trial", "run_study"]


def _test_folds(config: StudyConfig, clips) -> list:
    folds = list(clips.folds)
    if "test" in [str(f) for f in folds]:  # data sets with a published train/test split (FSDD)
        return ["test"]
    if config.test_folds == "all":
        return folds
    if config.test_folds == "first":
        return folds[:1]
    wanted = list(config.test_folds) if isinstance(config.test_folds, (list, tuple)) else [config.test_folds]
    missing = [f for f in wanted if str(f) not in {str(x) for x in folds}]
    if missing:
        raise ParameterError(f"test_folds: fold(s) {missing} not in the data set, whose folds are {folds}")
    return [f for f in folds if str(f) in {str(w) for w in wanted}]


def plan(config: StudyConfig, clips) -> list[Trial]:
    """The grid in execution order: fold, n, run, model, frontend (frontends of a cell run back to back).

    >>> from melfront.data import Clip, ClipList
    >>> clips = ClipList([Clip(f"{i}.wav", i % 2, "ab"[i % 2], 1 + i % 3) for i in range(12)], classes=["a", "b"])
    >>> trials = plan(StudyConfig(n_per_class=[1, 2], runs={"default": 2}, frontends=["db", "pcen"]), clips)
    >>> len(trials), trials[0]
    (24, Trial(fold=1, n=1, run=0, model='sbcnn', frontend='db'))
    """
    trials = []
    for fold in _test_folds(config, clips):
        for n in sorted(int(n) for n in config.n_per_class):
            for run in range(config.runs_for(n)):
                for model in config.models:
                    for fe in config.frontends:
                        trials.append(Trial(fold, n, run, model, fe))
    return trials


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------
def split_for_trial(config: StudyConfig, clips, fold, n: int, run: int):
    """``(train_clips, test_clips, note)`` for one trial.

    Official folds: test = the fold's clips, pool = every other fold (or the "train" split). When the
    pool has fewer than ``max(n_per_class)`` clips of some class (for example a copy of ESC-50 with
    only fold 4), the fold is split in two instead: per class, ``holdout_per_class`` clips (default:
    a third, at least 1) form the test set, chosen by source so that no recording is on both sides,
    and the rest is the pool. The note says which split was used.

    >>> from melfront.data import Clip, ClipList
    >>> clips = ClipList([Clip(f"{i}.wav", i % 2, "ab"[i % 2], 1 + i % 3) for i in range(30)], classes=["a", "b"])
    >>> train, test, note = split_for_trial(StudyConfig(n_per_class=[2]), clips, 1, 2, run=0)
    >>> len(train), len(test), note, {c.fold for c in train}
    (4, 10, 'official folds', {2, 3})
    """
    max_n = max(int(x) for x in config.n_per_class)
    if str(fold) == "test":
        test = [c for c in clips if str(c.fold) == "test"]
        pool = [c for c in clips if str(c.fold) != "test"]
    else:
        test = [c for c in clips if str(c.fold) == str(fold)]
        pool = [c for c in clips if str(c.fold) != str(fold)]
    per_class = {}
    for c in pool:
        per_class[c.label] = per_class.get(c.label, 0) + 1
    note = "official folds"
    if any(per_class.get(label, 0) < max_n for label in range(len(clips.classes))):
        test, pool = _holdout_split(config, clips, test)
        note = f"within fold {fold}: {len(test)} test clips held out by source, the rest is the training pool"
    train = few_shot_subset(pool, n, seed=config.seed, run=run, fold=fold)
    return list(train), list(test), note


def _holdout_split(config, clips, fold_clips):
    by_class: dict[int, list] = {}
    for c in fold_clips:
        by_class.setdefault(c.label, []).append(c)
    test, pool = [], []
    for label, items in sorted(by_class.items()):
        sources: dict[str, list] = {}
        for c in sorted(items, key=lambda c: c.path):
            sources.setdefault(c.source_id or c.path, []).append(c)
        order = list(sources)
        rng_for(config.seed, "holdout", label).shuffle(order)
        want = config.holdout_per_class or max(1, len(items) // 3)
        taken = 0
        for s in order:
            (test if taken < want else pool).extend(sources[s])
            if taken < want:
                taken += len(sources[s])
    return test, pool


# --------------------------------------------------------------------------------------------
# Execution
# --------------------------------------------------------------------------------------------
_DATASETS: dict = {}


def load_clips(config: StudyConfig):
    """The study's data set, loaded once per process (trials of one worker share it).

    >>> import tempfile
    >>> config = StudyConfig(root=tempfile.mkdtemp(), dataset_options=dict(n_classes=2, clips_per_class=2,
    ...                      duration=0.25, sample_rate=4000, n_folds=2))
    >>> clips = load_clips(config)
    >>> len(clips), load_clips(config) is clips
    (4, True)
    """
    ident = json.dumps([config.dataset, config.root, config.dataset_options], sort_keys=True)
    if ident not in _DATASETS:
        _DATASETS[ident] = dataset(config.dataset, config.root, **config.dataset_options)
    return _DATASETS[ident]


def execute_trial(config_dict: dict, trial_dict: dict, trial_fn=None) -> dict:
    """Run one trial from plain dicts (so that it can be shipped to a process pool or a Ray worker).

    ``trial_fn`` (default :func:`melfront.train.run_trial`) trains and tests; the result gains a ``split`` note.

    >>> import tempfile
    >>> config = StudyConfig(root=tempfile.mkdtemp(), n_per_class=[1], dataset_options=dict(n_classes=2,
    ...                      clips_per_class=4, duration=0.25, sample_rate=4000, n_folds=2))
    >>> fake = lambda clips, train_clips, test_clips, **kw: dict(accuracy=len(train_clips) / 10)
    >>> execute_trial(config.to_dict(), dict(fold=1, n=1, run=0, model="sbcnn", frontend="db"), fake)
    {'accuracy': 0.2, 'split': 'official folds'}
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
    return result


def _execute_local(pending, config, store, on_result, trial_fn, jobs):
    cfg = config.to_dict()
    if jobs <= 1:
        for key, trial in pending:
            on_result(key, trial, execute_trial(cfg, dataclasses.asdict(trial), trial_fn))
        return
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(execute_trial, cfg, dataclasses.asdict(t), trial_fn): (k, t) for k, t in pending}
        for fut in as_completed(futures):
            key, trial = futures[fut]
            on_result(key, trial, fut.result())


def _execute_ray(pending, config, store, on_result, trial_fn, address, num_cpus, num_gpus, max_retries=3):
    try:
        import ray  # optional heavy dependency
    except ImportError:
        raise StudyError("running on Ray needs Ray: pip install 'melfront[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=None if address in (None, "local") else address, ignore_reinit_error=True,
                 log_to_driver=False, include_dashboard=False)
    remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries,
                        retry_exceptions=False)(execute_trial)
    cfg = config.to_dict()
    refs = {remote.remote(cfg, dataclasses.asdict(t), trial_fn): (k, t) for k, t in pending}
    while refs:
        done, _ = ray.wait(list(refs), num_returns=1)
        for ref in done:
            key, trial = refs.pop(ref)
            on_result(key, trial, ray.get(ref))


def _progress_line(trial: Trial, result: dict) -> str:
    return (f"fold {trial.fold} n={trial.n:<3} run {trial.run:<2} {trial.model:<8} {trial.frontend:<28} "
            f"acc {result['accuracy']:.3f}  map {result.get('map', float('nan')):.3f}  "
            f"{result.get('train_seconds', 0):.1f}s")


def _open_store(config: StudyConfig, store_path) -> ResultStore:
    store = ResultStore(store_path)
    saved = store.config()
    if saved is not None and saved.to_dict() != config.to_dict():
        raise StudyError(f"{store_path} holds a study with a different configuration; use another output "
                         f"folder, or the same settings to resume it")
    store.save_config(config)
    return store


def run_study(config: StudyConfig, store_path, *, ray_address: str | None = None, jobs: int | None = 1,
              progress: bool = True, quiet: bool = False, trial_fn=None, ray_num_cpus: float = 1,
              ray_num_gpus: float = 0) -> ResultStore:
    """Run (or resume) every trial of ``config`` not yet in the store at ``store_path``.

    ``jobs``: trials run side by side in that many local processes (None: one per CPU core); each
    trial uses one intra-op thread. ``ray_address`` ("auto", "local" or an address) sends every
    trial to Ray instead, as a task with ``ray_num_cpus`` / ``ray_num_gpus``, retried if its worker dies.
    A store holding a study with another configuration is a :class:`~melfront.errors.StudyError`.

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
    jobs = os.cpu_count() or 1 if jobs is None else jobs
    store = _open_store(config, store_path)
    clips = load_clips(config)
    trials = plan(config, clips)
    done = store.finished_keys()
    pending = [(k, t) for k, t in ((t.key(config), t) for t in trials) if k not in done]
    say = (lambda *a: None) if quiet else print
    say(f"study: {len(trials)} trials ({len(trials) - len(pending)} already done) on {config.dataset} "
        f"({len(clips)} clips, {len(clips.classes)} classes)")
    bar = None
    if progress and not quiet and pending:
        bar = tqdm(total=len(trials), initial=len(trials) - len(pending), desc="grid", unit="trial")
    write = bar.write if bar else say

    def on_result(key, trial, result):
        store.add(key, trial, config, result)
        write(_progress_line(trial, result))
        if bar:
            bar.update(1)

    try:
        if ray_address:
            _execute_ray(pending, config, store, on_result, trial_fn, ray_address, ray_num_cpus, ray_num_gpus)
        else:
            _execute_local(pending, config, store, on_result, trial_fn, jobs)
    finally:
        if bar:
            bar.close()
    return store
