"""The few-data experiment protocol: a grid of trials, a resumable SQLite results store, local or Ray execution.

Protocol (Pons, Serrà & Serra 2019, "Training neural audio classifiers with few data"): for every
test fold of the data set's official folds, every number ``n`` of training clips per class and
every run ``r`` (m runs per n: 20 for n <= 2, 10 for n in {5, 10}, 5 for n >= 20), a class-balanced
subset of ``n`` clips per class is drawn from the training folds, reproducibly from
``(seed, n, run, fold)``; each model x frontend pair is trained on that same subset and tested on
the fold's test clips. Because all frontends see the same subsets, their differences can be tested
with a paired test over matching (fold, run) pairs (see :mod:`melfront.report`).

The store holds one row per finished trial, written in one SQLite transaction when the trial ends:
a killed study loses only the trials in flight, and re-running the same command skips the rows
already there (the primary key is a hash of the trial's full configuration).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from .data.sampling import rng_for, seed_for

__all__ = ["StudyConfig", "Trial", "ResultStore", "plan", "runs_for_n", "run_study", "execute_trial", "PROFILES"]


def runs_for_n(n: int) -> int:
    """Pons et al.'s number of runs per training-set size: 20 for n <= 2, 10 for n <= 10, else 5."""
    return 20 if n <= 2 else 10 if n <= 10 else 5


# Profiles: "quick" is the README's main job (the synthetic set, < 10 minutes on 2 CPU cores);
# "paper" is the published grid and training lengths.
PROFILES = {
    "quick": dict(
        dataset="synth", frontends=["logeps", "loglearn", "db", "power", "pcen(trainable=True)"], models=["sbcnn"],
        n_per_class=[2, 5, 10], runs={"default": 3}, test_folds="first",
        mel=dict(sample_rate=16000, n_fft=512, hop_length=128, n_mels=64),
        train=dict(epochs=40, patch_frames=128, optimizer="adam", lr=0.001, batch_size=16, weight_decay=0.0,
                   models={"sbcnn": {"model_options": {"input_bn": True}}}),
        dataset_options=dict(n_classes=6, clips_per_class=25, duration=1.0, sample_rate=16000, seed=0),
        compare=[["logeps", "loglearn"], ["db", "pcen(trainable=True)"]],
    ),
    "paper": dict(
        dataset="urbansound8k", frontends=["logeps", "loglearn"], models=["sbcnn", "vgg", "timbre", "protonet"],
        n_per_class=[1, 2, 5, 10, 20, 50, 100], runs={}, test_folds="all",
        mel=dict(sample_rate=22050, n_fft=1024, hop_length=512, n_mels=128), train={},
        dataset_options={}, compare=[["logeps", "loglearn"]],
    ),
}


@dataclass
class StudyConfig:
    """Everything that defines a study. Saved with the results (``study`` table) and in ``config.json``."""

    dataset: str = "synth"
    root: str | None = None
    dataset_options: dict = field(default_factory=dict)
    frontends: list = field(default_factory=lambda: ["logeps", "loglearn"])
    models: list = field(default_factory=lambda: ["sbcnn"])
    n_per_class: list = field(default_factory=lambda: [1, 2, 5])
    runs: dict = field(default_factory=dict)        # {"default": m} and/or {"5": m}; empty = Pons's rule
    test_folds: object = "all"                      # "all", "first" or a list of folds
    mel: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    seed: int = 0
    compare: list = field(default_factory=list)     # pairs of frontends for the difference tables
    holdout_per_class: int | None = None            # within-fold split: test clips per class (auto when needed)

    @classmethod
    def from_profile(cls, profile: str = "quick", **overrides) -> "StudyConfig":
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
        values = json.loads(json.dumps(PROFILES[profile]))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @classmethod
    def from_file(cls, path, profile: str | None = None) -> "StudyConfig":
        """Read a YAML (.yaml/.yml) or TOML (.toml) file; keys are this class's fields."""
        path = Path(path)
        text = path.read_text()
        if path.suffix == ".toml":
            import tomllib
            values = tomllib.loads(text)
        else:
            import yaml
            values = yaml.safe_load(text) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: a study config must be a mapping of settings")
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)} - {"profile"}
        if unknown:
            raise ValueError(f"{path}: unknown setting(s) {sorted(unknown)}; "
                             f"known: {sorted(f.name for f in dataclasses.fields(cls))}")
        profile = values.pop("profile", profile)
        return cls.from_profile(profile, **values) if profile else cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def runs_for(self, n: int) -> int:
        runs = {str(k): int(v) for k, v in (self.runs or {}).items()}
        if str(n) in runs:
            return runs[str(n)]
        return runs.get("default", runs_for_n(n))

    def validate(self):
        if not self.frontends or not self.models or not self.n_per_class:
            raise ValueError("a study needs at least one frontend, one model and one n_per_class")
        for n in self.n_per_class:
            if int(n) < 1:
                raise ValueError(f"n_per_class values must be >= 1, got {n}")
        from .frontends import frontend
        from .models import MODELS
        from .training import DEFAULT_MEL, _frontend_common
        for spec in self.frontends:
            frontend(spec, **_frontend_common({**DEFAULT_MEL, **self.mel}))  # a clear error for a bad spec
        from .training import resolve_settings
        for m in self.models:
            if m not in MODELS:
                raise ValueError(f"unknown model {m!r}; choose from {sorted(MODELS)}")
            resolve_settings(m, train_settings(self, m))  # a clear error for a bad training setting


@dataclass(frozen=True)
class Trial:
    """One cell of the grid: train ``model`` with ``frontend`` on ``n`` clips per class (run ``run``), test on ``fold``."""

    fold: object
    n: int
    run: int
    model: str
    frontend: str

    def key(self, config: StudyConfig) -> str:
        """A stable id from everything that determines the trial's result."""
        c = config.to_dict()
        ident = dict(dataset=c["dataset"], root=os.path.abspath(c["root"]) if c["root"] else None,
                     dataset_options=c["dataset_options"], mel=c["mel"], train=train_settings(config, self.model),
                     seed=c["seed"],
                     holdout=c["holdout_per_class"], fold=str(self.fold), n=self.n, run=self.run,
                     model=self.model, frontend=self.frontend)
        return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:24]


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
        raise ValueError(f"test fold(s) {missing} not in the data set, whose folds are {folds}")
    return [f for f in folds if str(f) in {str(w) for w in wanted}]


def plan(config: StudyConfig, clips) -> list[Trial]:
    """The grid in execution order: fold, n, run, model, frontend (frontends of a cell run back to back)."""
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
    """
    from .data.sampling import few_shot_subset
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
# Results store
# --------------------------------------------------------------------------------------------
class ResultStore:
    """One SQLite file per study: a ``study`` table (the config) and a ``results`` table (one row per finished trial).

    Every write is a single transaction, so a process killed at any moment leaves either the whole
    row or nothing; ``INSERT OR IGNORE`` on the trial key means a trial is never stored twice.
    """

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS study (id INTEGER PRIMARY KEY CHECK (id = 1), config TEXT NOT NULL, created REAL);
    CREATE TABLE IF NOT EXISTS results (
        key TEXT PRIMARY KEY, dataset TEXT, fold TEXT, n INTEGER, run INTEGER, model TEXT, frontend TEXT,
        seed INTEGER, accuracy REAL, map REAL, train_seconds REAL, metrics TEXT, learned TEXT, config TEXT,
        finished REAL);
    """

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(self.SCHEMA)

    def _connect(self):
        db = sqlite3.connect(self.path, timeout=60)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    def save_config(self, config: StudyConfig):
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO study (id, config, created) VALUES (1, ?, ?)",
                       (json.dumps(config.to_dict(), sort_keys=True), time.time()))

    def config(self) -> StudyConfig | None:
        with self._connect() as db:
            row = db.execute("SELECT config FROM study WHERE id = 1").fetchone()
        return StudyConfig(**json.loads(row[0])) if row else None

    def finished_keys(self) -> set:
        with self._connect() as db:
            return {r[0] for r in db.execute("SELECT key FROM results")}

    def add(self, key: str, trial: Trial, config: StudyConfig, result: dict) -> bool:
        """Store one finished trial; returns False when it was already there."""
        metrics = {k: v for k, v in result.items() if k != "learned"}
        with self._connect() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (key, config.dataset, str(trial.fold), trial.n, trial.run, trial.model, trial.frontend, config.seed,
                 float(result["accuracy"]), float(result.get("map", float("nan"))),
                 float(result.get("train_seconds", 0.0)), json.dumps(metrics), json.dumps(result.get("learned", {})),
                 json.dumps(dataclasses.asdict(trial), default=str), time.time()))
            return cur.rowcount == 1

    def rows(self) -> list[dict]:
        """All finished trials as dicts (metrics and learned parameters decoded)."""
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            out = []
            for r in db.execute("SELECT * FROM results ORDER BY fold, n, run, model, frontend"):
                d = dict(r)
                d["metrics"] = json.loads(d["metrics"])
                d["learned"] = json.loads(d["learned"])
                out.append(d)
        return out


# --------------------------------------------------------------------------------------------
# Execution
# --------------------------------------------------------------------------------------------
_DATASETS: dict = {}


def _load_clips(config: StudyConfig):
    from .data import dataset
    ident = json.dumps([config.dataset, config.root, config.dataset_options], sort_keys=True)
    if ident not in _DATASETS:
        _DATASETS[ident] = dataset(config.dataset, config.root, **config.dataset_options)
    return _DATASETS[ident]


def train_settings(config: StudyConfig, model: str) -> dict:
    """The study's training overrides for ``model``: ``train`` minus its ``models`` key, updated with
    ``train["models"][model]`` (per-model settings such as ``model_options``)."""
    settings = {k: v for k, v in config.train.items() if k != "models"}
    settings.update((config.train.get("models") or {}).get(model, {}))
    return settings


def execute_trial(config_dict: dict, trial_dict: dict, trial_fn=None) -> dict:
    """Run one trial from plain dicts (so that it can be shipped to a process pool or a Ray worker)."""
    config = StudyConfig(**config_dict)
    trial = Trial(**trial_dict)
    clips = _load_clips(config)
    train, test, note = split_for_trial(config, clips, trial.fold, trial.n, trial.run)
    from .training import DEFAULT_MEL
    if trial_fn is None:
        from .training import run_trial as trial_fn
    seed = seed_for(config.seed, trial.n, trial.run, trial.fold) % 2**31
    import torch
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
    from concurrent.futures import ProcessPoolExecutor, as_completed
    import multiprocessing
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(execute_trial, cfg, dataclasses.asdict(t), trial_fn): (k, t) for k, t in pending}
        for fut in as_completed(futures):
            key, trial = futures[fut]
            on_result(key, trial, fut.result())


def _execute_ray(pending, config, store, on_result, trial_fn, address, num_cpus, num_gpus, max_retries=3):
    try:
        import ray
    except ImportError:
        raise RuntimeError("--ray needs Ray: pip install 'melfront[ray]'") from None
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


def run_study(config: StudyConfig, store_path, *, ray_address: str | None = None, jobs: int | None = 1,
              progress: bool = True, quiet: bool = False, trial_fn=None, ray_num_cpus: float = 1,
              ray_num_gpus: float = 0) -> ResultStore:
    """Run (or resume) every trial of ``config`` not yet in the store at ``store_path``.

    ``jobs``: trials run side by side in that many local processes (None: one per CPU core); each
    trial uses one intra-op thread. ``ray_address`` ("auto", "local" or an address) sends every
    trial to Ray instead, as a task with ``ray_num_cpus`` / ``ray_num_gpus``, retried if its worker dies.
    """
    config.validate()
    if jobs is None:
        jobs = os.cpu_count() or 1
    store = ResultStore(store_path)
    saved = store.config()
    if saved is not None and saved.to_dict() != config.to_dict():
        raise ValueError(f"{store_path} holds a study with a different configuration; use another output "
                         f"folder, or the same settings to resume it")
    store.save_config(config)
    clips = _load_clips(config)
    trials = plan(config, clips)
    done = store.finished_keys()
    pending = [(t.key(config), t) for t in trials]
    pending = [(k, t) for k, t in pending if k not in done]
    say = (lambda *a: None) if quiet else print
    say(f"study: {len(trials)} trials ({len(trials) - len(pending)} already done) on {config.dataset} "
        f"({len(clips)} clips, {len(clips.classes)} classes)")
    bar = None
    if progress and not quiet and pending:
        from tqdm import tqdm
        bar = tqdm(total=len(trials), initial=len(trials) - len(pending), desc="grid", unit="trial")
    write = bar.write if bar else say

    def on_result(key, trial, result):
        store.add(key, trial, config, result)
        line = (f"fold {trial.fold} n={trial.n:<3} run {trial.run:<2} {trial.model:<8} {trial.frontend:<28} "
                f"acc {result['accuracy']:.3f}  map {result.get('map', float('nan')):.3f}  "
                f"{result.get('train_seconds', 0):.1f}s")
        if quiet:
            pass
        else:
            write(line)
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
