"""What defines a study: :class:`StudyConfig` (with the :data:`PROFILES` presets) and its cells, :class:`Trial`.

A study's config is plain JSON-able data, saved with the results; a trial's key is a hash of everything
that determines its result, so that a resumed study skips exactly the trials already done.

>>> StudyConfig.from_profile("quick").models
['sbcnn']
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..checks import positive_int
from ..errors import ParameterError, StudyError
from ..frontends import frontend
from ..models import MODELS
from ..train import DEFAULT_MEL, frontend_common, resolve_settings

__all__ = ["StudyConfig", "Trial", "PROFILES", "runs_for_n", "train_settings"]


def runs_for_n(n: int) -> int:
    """Pons et al.'s number of runs per training-set size: 20 for n <= 2, 10 for n <= 10, else 5.

    >>> [runs_for_n(n) for n in (1, 2, 5, 10, 20, 100)]
    [20, 20, 10, 10, 5, 5]
    """
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
    """Everything that defines a study. Saved with the results (``study`` table) and in ``config.json``.

    >>> config = StudyConfig.from_profile("quick", n_per_class=[1, 5])
    >>> config.dataset, config.n_per_class, config.runs_for(5), StudyConfig().runs_for(5)
    ('synth', [1, 5], 3, 10)
    """

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
        """A profile of :data:`PROFILES` with ``overrides`` (None values ignored).

        >>> StudyConfig.from_profile("paper").dataset
        'urbansound8k'
        >>> StudyConfig.from_profile("quick", colour="red")
        Traceback (most recent call last):
        ...
        melfront.errors.ParameterError: unknown study setting(s) ['colour']; known: ['compare', 'dataset', 'dataset_options', 'frontends', 'holdout_per_class', 'mel', 'models', 'n_per_class', 'root', 'runs', 'seed', 'test_folds', 'train']
        """
        if profile not in PROFILES:
            raise ParameterError(f"profile must be one of {sorted(PROFILES)}, got {profile!r}")
        values = json.loads(json.dumps(PROFILES[profile]))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, values: dict, source: str = "") -> "StudyConfig":
        """A config from a mapping of its fields; ParameterError naming unknown ones (and ``source``).

        >>> StudyConfig.from_dict({"dataset": "esc50", "seed": 3}).seed
        3
        """
        known = sorted(f.name for f in dataclasses.fields(cls))
        unknown = sorted(set(values) - set(known))
        if unknown:
            where = f"{source}: " if source else ""
            raise ParameterError(f"{where}unknown study setting(s) {unknown}; known: {known}")
        return cls(**values)

    @classmethod
    def from_file(cls, path, profile: str | None = None) -> "StudyConfig":
        """Read a YAML (.yaml/.yml) or TOML (.toml) file; keys are this class's fields (and ``profile``).

        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "study.toml"
        >>> _ = path.write_text('profile = "quick"\\nn_per_class = [1]\\n')
        >>> StudyConfig.from_file(path).n_per_class
        [1]
        """
        path = Path(path)
        text = path.read_text()
        if path.suffix == ".toml":
            try:
                values = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise StudyError(f"{path}: not a valid TOML study config: {exc}") from None
        else:
            import yaml  # optional dependency: only YAML configs need it
            try:
                values = yaml.safe_load(text) or {}
            except yaml.YAMLError as exc:
                raise StudyError(f"{path}: not a valid YAML study config: {' '.join(str(exc).split())}") from None
        if not isinstance(values, dict):
            raise StudyError(f"{path}: a study config must be a mapping of settings")
        profile = values.pop("profile", profile)
        StudyConfig.from_dict(values, source=str(path))  # names unknown settings and the file
        return cls.from_profile(profile, **values) if profile else cls.from_dict(values)

    def to_dict(self) -> dict:
        """The config as plain JSON-able data (what the store and ``config.json`` hold)."""
        return dataclasses.asdict(self)

    def runs_for(self, n: int) -> int:
        """Runs for ``n`` clips per class: ``runs[str(n)]``, else ``runs["default"]``, else :func:`runs_for_n`."""
        runs = {str(k): int(v) for k, v in (self.runs or {}).items()}
        if str(n) in runs:
            return runs[str(n)]
        return runs.get("default", runs_for_n(n))

    def validate(self):
        """ParameterError naming the field for a setting the study cannot run with.

        >>> StudyConfig(n_per_class=[0]).validate()
        Traceback (most recent call last):
        ...
        melfront.errors.ParameterError: n_per_class[0] must be a positive integer, got 0
        """
        for name in ("frontends", "models", "n_per_class"):
            if not isinstance(getattr(self, name), (list, tuple)) or not getattr(self, name):
                raise ParameterError(f"{name} must be a non-empty list, got {getattr(self, name)!r}")
        for i, n in enumerate(self.n_per_class):
            positive_int(f"n_per_class[{i}]", n)
        for name in ("dataset_options", "mel", "train", "runs"):
            if not isinstance(getattr(self, name), dict):
                raise ParameterError(f"{name} must be a mapping, got {getattr(self, name)!r}")
        for spec in self.frontends:
            frontend(spec, **frontend_common({**DEFAULT_MEL, **self.mel}))  # a clear error for a bad spec
        for m in self.models:
            if m not in MODELS:
                raise ParameterError(f"models: unknown model {m!r}; choose from {sorted(MODELS)}")
            resolve_settings(m, train_settings(self, m))  # a clear error for a bad training setting


@dataclass(frozen=True)
class Trial:
    """One cell of the grid: train ``model`` with ``frontend`` on ``n`` clips per class (run ``run``), test on ``fold``.

    >>> trial = Trial(1, 5, 0, "sbcnn", "db")
    >>> len(trial.key(StudyConfig())), trial.key(StudyConfig()) == trial.key(StudyConfig(seed=1))
    (24, False)
    """

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


def train_settings(config: StudyConfig, model: str) -> dict:
    """The study's training overrides for ``model``: ``train`` minus its ``models`` key, updated with
    ``train["models"][model]`` (per-model settings such as ``model_options``).

    >>> train_settings(StudyConfig(train=dict(epochs=3, models={"vgg": {"lr": 0.1}})), "vgg")
    {'epochs': 3, 'lr': 0.1}
    """
    settings = {k: v for k, v in config.train.items() if k != "models"}
    settings.update((config.train.get("models") or {}).get(model, {}))
    return settings
