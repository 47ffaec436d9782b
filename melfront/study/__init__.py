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

Modules: :mod:`.config` (StudyConfig, Trial, PROFILES), :mod:`.store` (ResultStore), :mod:`.grid` (plan,
execution), :mod:`.splits` (the clips, split rule and groups of a study).

>>> from melfront.study import StudyConfig, runs_for_n
>>> runs_for_n(1), StudyConfig.from_profile("paper").n_per_class
(20, [1, 2, 5, 10, 20, 50, 100])
"""
from .config import PROFILES, StudyConfig, Trial, runs_for_n, train_settings
from .grid import execute_trial, load_clips, plan, run_study
from .splits import split_for_trial
from .store import ResultStore

__all__ = ["StudyConfig", "Trial", "ResultStore", "plan", "runs_for_n", "run_study", "execute_trial", "PROFILES",
           "split_for_trial", "train_settings", "load_clips"]
