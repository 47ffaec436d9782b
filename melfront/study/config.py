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

from ..checks import nonnegative_int, one_of, positive_int
from ..errors import ParameterError, StudyError
from ..frontends import frontend
from ..models import MODELS
from ..safe_regex import compile_pattern
from ..train import DEFAULT_MEL, MEL_KEYS, frontend_common, resolve_settings

__all__ = ["StudyConfig", "Trial", "PROFILES", "runs_for_n", "train_settings", "read_settings_file",
           "YAML_MAX_NODES", "EXTENSIBLE_FIELDS"]


def runs_for_n(n: int) -> int:
    """Pons et al.'s number of runs per training-set size: 20 for n <= 2, 10 for n <= 10, else 5.

    >>> [runs_for_n(n) for n in (1, 2, 5, 10, 20, 100)]
    [20, 20, 10, 10, 5, 5]
    """
    return 20 if n <= 2 else 10 if n <= 10 else 5


# Profiles: "quick" is the README's main job (the synthetic set, < 10 minutes on 2 CPU cores);
# "paper": melfront's earlier approximation of Pons et al. (22.05 kHz, hop 512, melfront's evaluation hop); the
# published protocol is the preset pons2019-us8k (melfront/presets/pons2019.py, `melfront presets --show`).
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
    holdout_per_class: int | None = None            # holdout split: test clips per class (default a third)
    split: str | None = None                        # "folds" | "holdout"; None: folds if >= 2 folds (study.splits)
    group_by: str | None = None                     # regex on file names giving each clip's group (speaker...)
    subsets: str = "nested"                         # few-shot subsets across n: "nested" or "independent" draws

    @classmethod
    def from_profile(cls, profile: str = "quick", **overrides) -> "StudyConfig":
        """A profile of :data:`PROFILES` with ``overrides`` (None values ignored).

        >>> StudyConfig.from_profile("paper").dataset
        'urbansound8k'
        >>> StudyConfig.from_profile("quick", colour="red")
        Traceback (most recent call last):
        ...
        melfront.errors.ParameterError: unknown study setting(s) ['colour']; known: ['compare', 'dataset', 'dataset_options', 'frontends', 'group_by', 'holdout_per_class', 'mel', 'models', 'n_per_class', 'root', 'runs', 'seed', 'split', 'subsets', 'test_folds', 'train']
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

        Read with :func:`read_settings_file`: a syntax error names the file and line, YAML aliases may not
        expand beyond :data:`YAML_MAX_NODES` nodes, ``!!python`` tags are refused; every field is checked.

        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "study.toml"
        >>> _ = path.write_text('profile = "quick"\\nn_per_class = [1]\\n')
        >>> StudyConfig.from_file(path).n_per_class
        [1]
        """
        path = Path(path)
        values = read_settings_file(path)
        profile = values.pop("profile", profile)
        try:
            StudyConfig.from_dict(values, source=str(path))  # names unknown settings and bad values
            return cls.from_profile(profile, **values) if profile else cls.from_dict(values)
        except ParameterError as exc:
            message = str(exc)
            raise ParameterError(message if message.startswith(str(path)) else f"{path}: {message}") from None

    def to_dict(self) -> dict:
        """The config as plain JSON-able data (what the store and ``config.json`` hold)."""
        return dataclasses.asdict(self)

    def runs_for(self, n: int) -> int:
        """Runs for ``n`` clips per class: ``runs[str(n)]``, else ``runs["default"]``, else :func:`runs_for_n`."""
        runs = {str(k): int(v) for k, v in (self.runs or {}).items()}
        if str(n) in runs:
            return runs[str(n)]
        return runs.get("default", runs_for_n(n))

    def __post_init__(self):
        self.check_fields()

    def check_fields(self):
        """Type- and range-check every field (ParameterError naming it), normalising the forgiving forms:
        ``n_per_class: 5`` is read as ``[5]``, ``runs: 3`` as ``{"default": 3}``, ``frontends: db`` /
        ``models: sbcnn`` (one string) as a one-item list, a flat pair in ``compare`` as one pair.

        >>> StudyConfig(n_per_class=5, runs=3, frontends="db").n_per_class, StudyConfig(runs=3).runs
        ([5], {'default': 3})
        >>> StudyConfig(frontends="db").frontends
        ['db']
        >>> StudyConfig(seed="abc")
        Traceback (most recent call last):
        ...
        melfront.errors.ParameterError: seed must be a non-negative integer, got 'abc'
        """
        _check_name("dataset", self.dataset)
        if self.root is not None:
            if not isinstance(self.root, (str, os.PathLike)) or not str(self.root):
                raise ParameterError(f"root must be a folder path or None, got {self.root!r}")
            self.root = str(self.root)
        for name in ("frontends", "models"):
            value = getattr(self, name)
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, (list, tuple)) or not value:
                raise ParameterError(f"{name} must be a non-empty list of names, got {getattr(self, name)!r}")
            for i, item in enumerate(value):
                _check_name(f"{name}[{i}]", item)
            setattr(self, name, list(value))
        n = [self.n_per_class] if _is_plain_int(self.n_per_class) else self.n_per_class
        if not isinstance(n, (list, tuple)) or not n:
            raise ParameterError(f"n_per_class must be a non-empty list of positive integers, got {n!r}")
        self.n_per_class = [positive_int(f"n_per_class[{i}]", v) for i, v in enumerate(n)]
        self.runs = _check_runs(self.runs)
        self.test_folds = _check_test_folds(self.test_folds)
        for name in ("dataset_options", "mel", "train"):
            value = getattr(self, name)
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise ParameterError(f"{name} must be a mapping of named settings, got {value!r}")
        for key, value in self.mel.items():
            if key in MEL_KEYS:
                positive_int(f"mel.{key}", value)
        self.seed = nonnegative_int("seed", self.seed)
        self.compare = _check_compare(self.compare)
        if self.holdout_per_class is not None:
            self.holdout_per_class = positive_int("holdout_per_class", self.holdout_per_class)
        if self.split is not None:
            self.split = one_of("split", self.split, ("folds", "holdout"))
        self.subsets = one_of("subsets", self.subsets, ("nested", "independent"))
        if self.group_by is not None:  # compiled and length-bounded here; searched with a deadline (safe_regex)
            compile_pattern("group_by", self.group_by)

    def validate(self):
        """ParameterError naming the field for a setting the study cannot run with (the fields' types and
        ranges, then every frontend spec, model name and training setting; a study that trains also runs
        :func:`melfront.study.preflight.preflight`: the mel bands and every model built with every frontend).

        >>> StudyConfig(n_per_class=[1]).validate()
        >>> config = StudyConfig(); config.n_per_class = [0]; config.validate()
        Traceback (most recent call last):
        ...
        melfront.errors.ParameterError: n_per_class[0] must be a positive integer, got 0
        """
        self.check_fields()
        for spec in self.frontends:
            frontend(spec, **frontend_common({**DEFAULT_MEL, **self.mel}))  # a clear error for a bad spec
        for m in self.models:
            if m not in MODELS:
                raise ParameterError(f"models: unknown model {m!r}; choose from {sorted(MODELS)}")
            resolve_settings(m, train_settings(self, m))  # a clear error for a bad training setting

    def extended_by(self, new: "StudyConfig") -> "StudyConfig":
        """The config a store holds once ``new`` runs on a study begun with this one: more frontends, models,
        n values, runs, test folds or comparisons are welcome (finished trials keep their meaning, because a
        trial's key depends only on its own settings); any other difference is a StudyError naming the field.

        >>> old = StudyConfig(frontends=["db"], n_per_class=[1], runs={"default": 2})
        >>> grown = old.extended_by(StudyConfig(frontends=["pcen"], n_per_class=[1, 5], runs={"default": 3}))
        >>> grown.frontends, grown.n_per_class, grown.runs_for(1)
        (['db', 'pcen'], [1, 5], 3)
        >>> old.extended_by(StudyConfig(seed=4))
        Traceback (most recent call last):
        ...
        melfront.errors.StudyError: seed differs from the stored study's (stored 0, now 4): it would change the meaning of finished trials; use another output folder, or the stored value
        """
        return _extend(self, new)

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
                     holdout=c["holdout_per_class"], split=c["split"], group_by=c["group_by"],
                     fold=str(self.fold), n=self.n, run=self.run,
                     model=self.model, frontend=self.frontend)
        if c.get("subsets", "nested") != "nested":  # keys of nested-subset trials stay as they were
            ident["subsets"] = c["subsets"]
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


# --------------------------------------------------------------------------------------------
# Field checks
# --------------------------------------------------------------------------------------------
def _is_plain_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_name(name: str, value):
    if not isinstance(value, str) or not value.strip():
        raise ParameterError(f"{name} must be a non-empty string, got {value!r}")


def _check_runs(runs) -> dict:
    """``runs`` as ``{"default" | "<n>": positive int}`` (a bare integer is the default)."""
    if _is_plain_int(runs):
        runs = {"default": runs}
    if runs is None:
        runs = {}
    if not isinstance(runs, dict):
        raise ParameterError(f"runs must be a positive integer or a mapping {{'default' or n: runs}}, got {runs!r}")
    out = {}
    for key, value in runs.items():
        if key != "default" and not (_is_plain_int(key) or (isinstance(key, str) and key.isdigit())) or key in (0, "0"):
            raise ParameterError(f"runs: keys must be 'default' or a number of clips per class, got {key!r}")
        out[str(key)] = positive_int(f"runs[{str(key)!r}]", value)
        if out[str(key)] > MAX_RUNS:  # the grid is planned in memory: 10^8 runs would never finish planning
            raise ParameterError(f"runs[{str(key)!r}] must be at most {MAX_RUNS}, got {value}")
    return out


#: The most runs per n a study plans (Pons et al. use 20 at most).
MAX_RUNS = 10_000


def _check_test_folds(test_folds):
    """``"all"``, ``"first"`` or a non-empty list of fold names (a single fold becomes a one-item list)."""
    if test_folds in ("all", "first"):
        return test_folds
    folds = [test_folds] if isinstance(test_folds, (str, int)) and not isinstance(test_folds, bool) else test_folds
    if not isinstance(folds, (list, tuple)) or not folds or not all(
            (isinstance(f, str) and f.strip()) or _is_plain_int(f) for f in folds):
        raise ParameterError(f"test_folds must be 'all', 'first' or a list of folds, got {test_folds!r}")
    return list(folds)


def _check_compare(compare) -> list:
    """A list of ``[A, B]`` frontend pairs (a flat pair of two names is read as one pair)."""
    if compare is None:
        return []
    if isinstance(compare, (list, tuple)) and len(compare) == 2 and all(isinstance(c, str) for c in compare):
        compare = [compare]
    if not isinstance(compare, (list, tuple)):
        raise ParameterError(f"compare must be a list of [A, B] frontend pairs, got {compare!r}")
    for i, pair in enumerate(compare):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(
                isinstance(f, str) and f.strip() for f in pair):
            raise ParameterError(f"compare[{i}] must be a pair [A, B] of frontend specs, got {pair!r}")
    return [list(p) for p in compare]


# --------------------------------------------------------------------------------------------
# Studies that grow
# --------------------------------------------------------------------------------------------
#: Fields a study may grow in (the union is kept); every other field must stay as stored.
EXTENSIBLE_FIELDS = ("frontends", "models", "n_per_class", "runs", "test_folds", "compare", "train")


def _union(a: list, b: list) -> list:
    return list(a) + [x for x in b if x not in a]


def _refuse(name, stored, now):
    raise StudyError(f"{name} differs from the stored study's (stored {stored!r}, now {now!r}): it would change "
                     f"the meaning of finished trials; use another output folder, or the stored value")


def _extend(old: StudyConfig, new: StudyConfig) -> StudyConfig:
    a, b = old.to_dict(), new.to_dict()
    for name in a:
        if name not in EXTENSIBLE_FIELDS and a[name] != b[name]:
            _refuse(name, a[name], b[name])
    merged = dict(b)
    for name in ("frontends", "models", "n_per_class", "compare"):
        merged[name] = _union(a[name], b[name])
    merged["n_per_class"] = sorted(merged["n_per_class"])
    if a["test_folds"] != b["test_folds"]:
        if "all" in (a["test_folds"], b["test_folds"]):
            merged["test_folds"] = "all"
        elif isinstance(a["test_folds"], list) and isinstance(b["test_folds"], list):
            merged["test_folds"] = _union(a["test_folds"], b["test_folds"])
        else:
            _refuse("test_folds", a["test_folds"], b["test_folds"])
    runs = {str(n): max(old.runs_for(n), new.runs_for(n)) for n in merged["n_per_class"]}
    merged["runs"] = b["runs"] if all(new.runs_for(n) == runs[str(n)] for n in merged["n_per_class"]) else runs
    for model in set(a["models"]) & set(b["models"]):  # a model's finished trials keep their training settings
        if train_settings(old, model) != train_settings(new, model):
            _refuse(f"train (for model {model})", train_settings(old, model), train_settings(new, model))
    train = {k: v for k, v in b["train"].items() if k != "models"}
    per_model = {**(a["train"].get("models") or {}), **(b["train"].get("models") or {})}
    for model in set(a["models"]) - set(b["models"]):  # keep what the stored-only models were trained with
        per_model[model] = {k: v for k, v in train_settings(old, model).items() if train.get(k) != v}
    merged["train"] = {**train, "models": per_model} if per_model else train
    return StudyConfig.from_dict(merged)


# --------------------------------------------------------------------------------------------
# Settings files
# --------------------------------------------------------------------------------------------
#: The most YAML nodes a settings file may expand to once its aliases are followed ("billion laughs" guard).
YAML_MAX_NODES = 10_000


def read_settings_file(path) -> dict:
    """The mapping in a YAML (.yaml/.yml) or TOML (.toml) settings file. StudyError naming the file (and line)
    for a syntax error, a ``!!python`` (or other non-standard) tag, or aliases expanding beyond
    :data:`YAML_MAX_NODES` nodes (counted on the composed node graph, before any value is built; aliases
    within that bound are fine).

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "s.yaml"
    >>> _ = path.write_text("a: &x [1, 2]\\nb: *x\\n")
    >>> read_settings_file(path)
    {'a': [1, 2], 'b': [1, 2]}
    >>> _ = path.write_text("a: 1\\nb: c: d\\n")
    >>> read_settings_file(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    melfront.errors.StudyError: .../s.yaml: not a valid YAML study config, line 2: ...
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise StudyError(f"{path}: not a text file ({exc.reason})") from None
    if path.suffix == ".toml":
        try:
            values = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:  # its message ends "(at line L, column C)"
            raise StudyError(f"{path}: not a valid TOML study config: {exc}") from None
    else:
        values = _read_yaml(path, text)
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise StudyError(f"{path}: a study config must be a mapping of settings, got {type(values).__name__}")
    return values


def _read_yaml(path: Path, text: str):
    import yaml  # optional dependency: only YAML configs need it

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_yaml_nodes(path, node, yaml)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise StudyError(f"{path}: not a valid YAML study config{where}: {' '.join(str(exc.problem).split())}") \
            from None
    except yaml.YAMLError as exc:
        raise StudyError(f"{path}: not a valid YAML study config: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise StudyError(f"{path}: YAML nested too deeply") from None
    finally:
        loader.dispose()


def _check_yaml_nodes(path: Path, root, yaml):
    """Refuse non-standard tags, and count the nodes the graph expands to (shared nodes once per use)."""
    sizes: dict[int, int] = {}
    visiting = set()
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        if not children_done and id(node) in visiting:
            raise StudyError(f"{path}, line {node.start_mark.line + 1}: a YAML alias refers to itself")
        visiting.add(id(node))
        if not node.tag.startswith("tag:yaml.org,2002:") or node.tag.startswith("tag:yaml.org,2002:python/"):
            raise StudyError(f"{path}, line {node.start_mark.line + 1}: the tag {node.tag!r} is not allowed in a "
                             f"study config (plain YAML values only)")
        children = ([c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode)
                    else list(node.value) if isinstance(node, yaml.SequenceNode) else [])
        if not children_done:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
            continue
        sizes[id(node)] = 1 + sum(sizes.get(id(c), 1) for c in children)
        if sizes[id(node)] > YAML_MAX_NODES:
            raise StudyError(f"{path}: YAML aliases expand to more than {YAML_MAX_NODES} values (line "
                             f"{node.start_mark.line + 1}); write the settings out instead")
