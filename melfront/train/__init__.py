"""Training and evaluation of ``frontend -> backbone`` classifiers; checkpoints; the study's trial.

One concept per module:

- :mod:`~melfront.train.settings`: :class:`TrainSettings` (every setting, typed and checked) and
  :func:`resolve_settings` (a model's paper settings with overrides, as a dict);
- :mod:`~melfront.train.build`: :func:`build_classifier`, :data:`DEFAULT_MEL`, :func:`frontend_common`;
- :mod:`~melfront.train.metrics`: clip aggregation (:func:`aggregate`) and :func:`clip_metrics`;
- :mod:`~melfront.train.checkpoint`: the one checkpoint format (classifiers and MST models);
- :mod:`~melfront.train.batches`: patch datasets, mini-batches and episodes of an epoch;
- :mod:`~melfront.train.trainer`: :class:`Trainer`, the one training loop;
- :mod:`~melfront.train.trial`: :func:`train_classifier`, :func:`run_trial`, :func:`predict_file`;
- :mod:`~melfront.train.runs`: the run folders of ``melfront train / evaluate``;
- :mod:`~melfront.train.fitted`: settings fitted to the data (:func:`fit_settings`).

>>> from melfront.train import resolve_settings
>>> resolve_settings("vgg")["optimizer"]
'sgd'
"""
from .settings import OPTIMIZERS, SAMPLINGS, TrainSettings, resolve_settings
from .build import DEFAULT_MEL, MEL_KEYS, build_classifier, dummy_input, frontend_common, learned_parameters
from .metrics import AGGREGATIONS, aggregate, clip_metrics
from .checkpoint import (CHECKPOINT_FORMAT, CHECKPOINT_KINDS, CHECKPOINT_VERSION, cpu_state_dict, load_checkpoint,
                         load_classifier, load_weights, save_checkpoint)
from .trainer import Trainer, default_device, seed_everything
from .trial import classes_of, clip_features, predict_file, run_trial, train_classifier, trainer_for
from .runs import evaluate_run, fold_value, split_folds, train_run
from .fitted import DataSurvey, FittedSettings, epoch_budget, fit_settings, survey, training_size

__all__ = ["DEFAULT_MEL", "AGGREGATIONS", "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "resolve_settings",
           "build_classifier", "Trainer", "aggregate", "clip_metrics", "save_checkpoint", "load_checkpoint",
           "load_classifier", "train_classifier", "run_trial", "predict_file", "learned_parameters",
           "seed_everything", "default_device",
           # also public in training.py, and new with the package
           "split_folds", "train_run", "evaluate_run", "trainer_for", "TrainSettings", "OPTIMIZERS", "SAMPLINGS",
           "MEL_KEYS", "frontend_common", "dummy_input", "CHECKPOINT_KINDS", "cpu_state_dict", "load_weights",
           "classes_of", "clip_features", "fold_value",
           # settings fitted to the data (train/fitted.py)
           "DataSurvey", "FittedSettings", "fit_settings", "survey", "training_size"]
