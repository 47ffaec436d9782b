"""The training settings: :class:`TrainSettings`, typed and range-checked, and :func:`resolve_settings`.

What the reference works did, as settings (defaults per model from :data:`melfront.models.MODELS`,
every one overridable through ``train={...}``):

- optimisers: SGD (``lr``, ``momentum``, ``nesterov``) or Adam (``lr``);
- L2 weight decay on kernels only (``weight_decay``, torch convention: the gradient gets
  ``weight_decay * w``; ``decay_layers`` "all" or "dense", see :func:`melfront.models.kernel_weights`),
  never on biases, batch-norm parameters or the frontend's parameters;
- gradient clipping by global norm (``clip_norm``);
- fixed ``epochs``, or early stopping (``patience`` epochs without gain of the monitored accuracy:
  validation clip accuracy when a validation set is given, else training accuracy, as Pons et al.'s
  prototypical networks), the best weights restored at the end;
- ``sampling="random"``: one random ``patch_frames`` patch per clip per epoch (Pons, Serrà & Serra 2019);
  ``"all"``: every segment, ``segment_hop`` apart (default half a patch: Piczak 2015's 50 % overlap),
  silent segments dropped (``silence_db``); ``"episodes"``: prototypical-network episodes (Snell et al.
  2017) of ``support_per_class`` / ``query_per_class`` patches (see :func:`melfront.data.sampling.episode`);
  ``support``: ``"episode"`` (default) draws a new support set every episode, ``"fixed"`` draws one support
  set at the start of training and keeps it for every episode and for the prototypes used in evaluation, as
  Pons et al.'s reference code does (src/proto.py, see :meth:`melfront.train.Trainer.fixed_support`).

Settings this project adds: ``aggregation`` (clip rule, see :func:`melfront.train.aggregate`),
``eval_hop`` (default: a patch; 42 frames, at most a patch, for ``sampling="episodes"``: the hop of
Pons et al.'s prototypical-network test patches, src/proto.py ``eval``: "42 being a second of audio" at
44.1 kHz and hop 1024), ``eval_batch_size``, ``max_epochs`` (cap under early stopping), ``model_options``
(architecture options for :func:`melfront.models.build`, plus ``input_norm``: ``"batch"``, ``"example"`` or
``"none"``, the normalisation between frontend and backbone, see :class:`melfront.train.build.InputNorm`;
settings fitted to the data use ``"batch"``, see :mod:`melfront.train.fitted`), ``episodes_per_epoch`` and
``frontend_lr_scale``: the frontend's parameters learn at ``lr * frontend_lr_scale`` (1: as the
backbone; 0: not at all; e.g. 0.1 to fine-tune a pretrained frontend gently), ``precision`` (``"fp32"``, the
default, or ``"bf16"``: the backbone runs under ``torch.autocast`` in bfloat16 for training and evaluation, the
frontend stays float32 (:class:`melfront.frontends.Frontend` switches autocast off inside); opt-in).

Protocol semantics (defaults: melfront's own rules; the presets set the reference codes' rules, see
:mod:`melfront.presets`):

- ``monitor``: what early stopping watches. ``"auto"`` (default): the validation clip accuracy when a
  validation set is given, else the training-mode accuracy of the epoch's batches or episodes.
  ``"train_clip_accuracy"``: after every epoch, the clip accuracy over every training clip in inference
  mode (patches ``eval_hop`` apart; a prototypical network against its prototypes), as Pons et al.'s
  src/proto.py (lines 338-351).
- ``restore_best`` (default True): at the end, restore the weights of the best monitored epoch; False:
  keep the last weights (Pons et al.'s prototypical networks test the last model, src/proto.py 359-367).
- ``patience_count``: ``"consecutive"`` (default: epochs without gain since the last gain) or ``"total"``
  (every epoch without gain counts, the counter is never reset, as src/proto.py's ``not_improve``).
- ``epoch_updates`` (``sampling="episodes"``): ``"episodes"`` (default, :func:`melfront.train.batches.
  episodes_per_epoch`) or ``"patch_grid"``: an epoch is ``total_patches // query_size`` updates, where
  ``total_patches`` counts the ``patch_frames`` patches ``grid_hop`` frames apart in every training clip and
  ``query_size`` the episode's queries (src/proto.py line 339).
- ``queries``: ``"clips"`` (default: ``query_per_class`` training clips per class drawn with replacement,
  one random patch each) or ``"grid_patches"``: up to ``query_per_class`` distinct patches per class from
  the ``grid_hop`` grid of its training clips (src/proto.py lines 290, 303).
- ``grid_hop``: the hop of that training grid (default ``eval_hop``; Pons et al.: 42 frames).
- ``episode_passes``: 1 (default: support and queries embedded in one pass) or 2 (apart, so batch norm
  sees each set alone, as src/proto.py's two ``models.select`` calls).
- ``bn_momentum``, ``bn_eps``: set on every batch-norm layer of the backbone (torch convention: the running
  statistic becomes ``(1 - momentum) * old + momentum * batch``); None keeps the layers' own (torch:
  0.1, 1e-5). TensorFlow's ``tf.layers.batch_normalization`` defaults, momentum 0.99 and epsilon 1e-3, are
  ``bn_momentum=0.01, bn_eps=1e-3`` here.
- ``decay_before_clip`` (default False): False adds ``weight_decay * w`` to the gradient after clipping
  (torch's optimiser); True adds the L2 term's gradient before clipping, so the clipped norm includes it, as a
  loss ``+ weight_decay * sum(w^2) / 2`` does (Pons et al.'s src/sl_train.py lines 30-33, 165-166).
- ``drop_last`` (default False: only a last batch of one item is dropped, batch norm needs two): True drops
  every last partial batch (Tax et al.'s EnvClassification loader).
- ``max_epochs`` None: no cap under early stopping (Pons et al.'s ``max_epochs: np.inf``): training then ends
  only when ``patience`` runs out, which on a network that keeps improving its training accuracy can take
  long; give a number to bound a run.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, fields

from ..checks import boolean, finite_float, one_of, optional, positive_float, positive_int, probability
from ..errors import ParameterError
from ..models import default_settings
from .metrics import AGGREGATIONS

__all__ = ["TrainSettings", "resolve_settings", "OPTIMIZERS", "SAMPLINGS", "SUPPORTS", "MONITORS",
           "EPOCH_UPDATES", "QUERIES", "PONS_PROTO_EVAL_HOP"]

OPTIMIZERS = ("sgd", "adam")
SAMPLINGS = ("random", "all", "episodes")
SUPPORTS = ("episode", "fixed")
MONITORS = ("auto", "train_clip_accuracy")
EPOCH_UPDATES = ("episodes", "patch_grid")
QUERIES = ("clips", "grid_patches")
#: The hop, in frames, of the test patches of Pons et al.'s prototypical networks (reference code src/proto.py).
PONS_PROTO_EVAL_HOP = 42
#: ``precision``: float32 everywhere, or the backbone in bfloat16 under ``torch.autocast`` (opt-in).
PRECISIONS = ("fp32", "bf16")
_IGNORED = ("source",)  # the paper reference in MODELS[name][2]: documentation, not a setting


@dataclass
class TrainSettings:
    """Every training setting, checked on construction (``ParameterError`` naming the field).

    The first thirteen fields are a model's paper settings (``MODELS[name][2]``); the rest have the
    trainer's defaults. ``None`` in ``aggregation``, ``segment_hop``, ``eval_hop`` and ``silence_db`` is
    filled in: ``"mean_prob"`` (:meth:`for_model` picks the model's rule), half a patch, a patch (the
    segment hop for ``sampling="all"``; ``min(42, patch_frames)`` for ``sampling="episodes"``, Pons et al.'s
    prototypical-network test hop) and -60 dB for ``sampling="all"``.

    ``support`` (``"episode"`` or ``"fixed"``, default ``"episode"``) only applies to ``sampling="episodes"``;
    ``"fixed"`` with another sampling is refused (it would be ignored).

    >>> s = TrainSettings.for_model("vgg", {"epochs": 3, "lr": 0.01})
    >>> s.epochs, s.lr, s.optimizer, s.aggregation, s.frontend_lr_scale
    (3, 0.01, 'sgd', 'mean_prob', 1.0)
    >>> p = TrainSettings.for_model("protonet", {"support": "fixed"})
    >>> p.support, p.eval_hop, p.patch_frames
    ('fixed', 42, 128)
    >>> TrainSettings.for_model("vgg", {"epochs": 0})
    Traceback (most recent call last):
    ...
    melfront.errors.ParameterError: train['epochs'] must be a positive integer, got 0
    """

    optimizer: str
    lr: float
    momentum: float
    nesterov: bool
    weight_decay: float
    decay_layers: str
    clip_norm: float | None
    batch_size: int | None  # None only for sampling="episodes" (an episode is the batch)
    epochs: int | None      # None: early stopping only (needs patience)
    patience: int | None
    n_mels: int
    patch_frames: int
    sampling: str
    aggregation: str | None = None
    eval_hop: int | None = None
    segment_hop: int | None = None
    silence_db: float | None = None
    episodes_per_epoch: int | None = None  # "episodes": None -> ceil(n_train_clips / (n_classes * query_per_class))
    max_epochs: int | None = 1000           # cap when epochs is None (early stopping only); None: no cap
    model_options: dict | None = None       # architecture options for melfront.models.build
    eval_batch_size: int = 64
    query_per_class: int = 5
    support_per_class: int = 5
    frontend_lr_scale: float = 1.0
    precision: str = "fp32"                 # or "bf16": the backbone under torch.autocast (frontends fp32)
    support: str = "episode"                # "episodes": a new support set per episode, or one "fixed" set
    monitor: str = "auto"                   # early stopping watches: see the module docstring
    restore_best: bool = True               # restore the best monitored epoch's weights at the end
    patience_count: str = "consecutive"     # or "total": non-improving epochs never reset
    epoch_updates: str = "episodes"         # "episodes" or "patch_grid" (total_patches // query_size)
    queries: str = "clips"                  # "clips" or "grid_patches" (distinct patches on the grid)
    grid_hop: int | None = None             # hop of the training patch grid; None: eval_hop
    episode_passes: int = 1                 # 1: support and queries in one pass; 2: apart
    bn_momentum: float | None = None        # torch convention; None: the layers' own
    bn_eps: float | None = None
    decay_before_clip: bool = False
    drop_last: bool = False

    def __post_init__(self):
        def name(key):
            return f"train[{key!r}]"

        self.optimizer = one_of(name("optimizer"), self.optimizer, OPTIMIZERS)
        self.lr = positive_float(name("lr"), self.lr)
        self.momentum = finite_float(name("momentum"), self.momentum, 0.0)
        self.nesterov = boolean(name("nesterov"), self.nesterov)
        self.weight_decay = finite_float(name("weight_decay"), self.weight_decay, 0.0)
        self.decay_layers = one_of(name("decay_layers"), self.decay_layers, ("all", "dense"))
        self.clip_norm = optional(positive_float, name("clip_norm"), self.clip_norm)
        self.sampling = one_of(name("sampling"), self.sampling, SAMPLINGS)
        self.support = one_of(name("support"), self.support, SUPPORTS)
        if self.support == "fixed" and self.sampling != "episodes":
            raise ParameterError(f"train['support']='fixed' needs sampling='episodes' (a prototypical network), "
                                 f"got sampling={self.sampling!r}")
        for key in ("n_mels", "patch_frames", "eval_batch_size", "query_per_class", "support_per_class"):
            setattr(self, key, positive_int(name(key), getattr(self, key)))
        self.monitor = one_of(name("monitor"), self.monitor, MONITORS)
        self.patience_count = one_of(name("patience_count"), self.patience_count, ("consecutive", "total"))
        self.epoch_updates = one_of(name("epoch_updates"), self.epoch_updates, EPOCH_UPDATES)
        self.queries = one_of(name("queries"), self.queries, QUERIES)
        for key in ("epoch_updates", "queries"):
            if getattr(self, key) != getattr(TrainSettings, key) and self.sampling != "episodes":
                raise ParameterError(f"train[{key!r}]={getattr(self, key)!r} needs sampling='episodes' (a "
                                     f"prototypical network), got sampling={self.sampling!r}")
        if self.episode_passes not in (1, 2) or isinstance(self.episode_passes, bool):
            raise ParameterError(f"train['episode_passes'] must be 1 or 2, got {self.episode_passes!r}")
        for key in ("restore_best", "decay_before_clip", "drop_last"):
            setattr(self, key, boolean(name(key), getattr(self, key)))
        self.bn_momentum = optional(probability, name("bn_momentum"), self.bn_momentum, open_low=True)
        self.bn_eps = optional(positive_float, name("bn_eps"), self.bn_eps)
        for key in ("epochs", "patience", "episodes_per_epoch", "max_epochs", "grid_hop"):
            setattr(self, key, optional(positive_int, name(key), getattr(self, key)))
        if self.batch_size is not None or self.sampling != "episodes":
            self.batch_size = positive_int(name("batch_size"), self.batch_size)
        if self.epochs is None and self.patience is None:
            raise ParameterError("give train['epochs'] or train['patience'] (early stopping)")
        self.frontend_lr_scale = finite_float(name("frontend_lr_scale"), self.frontend_lr_scale, 0.0)
        self.precision = one_of(name("precision"), self.precision, PRECISIONS)
        if self.model_options is not None and not isinstance(self.model_options, dict):
            raise ParameterError(f"train['model_options'] must be a dict, got {self.model_options!r}")
        self.model_options = copy.deepcopy(dict(self.model_options or {}))
        self.aggregation = one_of(name("aggregation"), self.aggregation or "mean_prob", AGGREGATIONS)
        if self.segment_hop is None:
            self.segment_hop = max(1, self.patch_frames // 2)
        self.segment_hop = positive_int(name("segment_hop"), self.segment_hop)
        if self.eval_hop is None:
            self.eval_hop = {"all": self.segment_hop,
                             "episodes": min(PONS_PROTO_EVAL_HOP, self.patch_frames)}.get(self.sampling,
                                                                                          self.patch_frames)
        self.eval_hop = positive_int(name("eval_hop"), self.eval_hop)
        if self.grid_hop is None:
            self.grid_hop = self.eval_hop
        if self.silence_db is None and self.sampling == "all":
            self.silence_db = -60.0
        self.silence_db = optional(finite_float, name("silence_db"), self.silence_db)

    @classmethod
    def known(cls) -> tuple[str, ...]:
        """The setting names, sorted.

        >>> "frontend_lr_scale" in TrainSettings.known()
        True
        """
        return tuple(sorted(f.name for f in fields(cls)))

    @classmethod
    def from_dict(cls, settings: dict) -> "TrainSettings":
        """Check a complete settings dict (e.g. a checkpoint's ``config["train"]``); unknown keys are refused.

        Settings added since the dict was written take their defaults.

        >>> d = resolve_settings("vgg", {"epochs": 2})
        >>> TrainSettings.from_dict(d).as_dict() == d
        True
        """
        if isinstance(settings, cls):
            return copy.deepcopy(settings)
        if not isinstance(settings, dict):
            raise ParameterError(f"settings must be a dict or TrainSettings, got {type(settings).__name__}")
        settings = {k: v for k, v in settings.items() if k not in _IGNORED}
        _refuse_unknown(settings)
        missing = sorted(f.name for f in fields(cls) if f.default is dataclasses.MISSING and f.name not in settings)
        if missing:
            raise ParameterError(f"training settings lack {missing}")
        return cls(**copy.deepcopy(settings))

    @classmethod
    def for_model(cls, model: str, overrides: dict | None = None) -> "TrainSettings":
        """The model's paper settings (``MODELS[model][2]``) plus the trainer's, overridden by ``overrides``.

        The clip aggregation defaults to the model's rule: ``"mean_logprob"`` for protonet, ``"vote"`` for
        piczak, else ``"mean_prob"``. ``sampling="episodes"`` needs model ``"protonet"``.

        >>> TrainSettings.for_model("piczak").aggregation
        'vote'
        """
        values = default_settings(model)
        for key in _IGNORED:
            values.pop(key, None)
        overrides = dict(overrides or {})
        _refuse_unknown(overrides)
        values.update(copy.deepcopy(overrides))
        if values.get("aggregation") is None:
            values["aggregation"] = {"protonet": "mean_logprob", "piczak": "vote"}.get(model, "mean_prob")
        if values.get("sampling") == "episodes" and model != "protonet":
            raise ParameterError("train['sampling']='episodes' needs model 'protonet'")
        return cls(**values)

    def as_dict(self) -> dict:
        """A JSON-able dict of every setting (what checkpoints, study rows and :class:`Trainer` use).

        >>> TrainSettings.for_model("vgg").as_dict()["batch_size"]
        256
        """
        return dataclasses.asdict(self)


def _refuse_unknown(settings: dict) -> None:
    unknown = sorted(set(settings) - set(TrainSettings.known()), key=str)
    if unknown:
        raise ParameterError(f"unknown training setting(s) {unknown}; known: {', '.join(TrainSettings.known())}")


def resolve_settings(model: str, train: dict | None = None) -> dict:
    """The model's paper settings (``MODELS[model][2]``) plus the trainer's, overridden by ``train``, as a dict.

    ``dataclasses.asdict`` of :meth:`TrainSettings.for_model`: types and ranges are checked and the
    automatic values (aggregation, hops, silence threshold) filled in. Unknown keys raise
    ``ParameterError`` listing the known ones.

    >>> s = resolve_settings("piczak")
    >>> s["sampling"], s["segment_hop"], s["silence_db"], s["aggregation"]
    ('all', 20, -60.0, 'vote')
    >>> resolve_settings("vgg", {"epoch": 3})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    melfront.errors.ParameterError: unknown training setting(s) ['epoch']; known: aggregation, batch_size, ...
    """
    return TrainSettings.for_model(model, train).as_dict()
