"""The price of a study before it runs: CPU seconds per trial from patch-steps, evaluation patches and features.

Training is priced by *patch-steps*: an epoch of a trial is ``B`` optimiser steps over ``P`` patches (one random
patch per training clip, ``batch_size`` a step, a last batch of one dropped; ``sampling="all"``: every segment;
``sampling="episodes"``: ``E`` episodes of ``C (s + q)`` patches, ``s = min(support_per_class, n)``, ``q =
query_per_class``), and one step of ``b`` patches costs ``step + b * patch`` seconds, both measured on this
machine with one thread (:func:`measure_step_cost`: a few timed forward + backward + update steps per model at
the study's input size, at two batch sizes; :mod:`melfront.study.step_cost`). With early stopping the epochs
are not known in advance: a trial takes at least ``patience + 1`` and at most ``max_epochs``, so the estimate
is a range.

Evaluation is priced by the test clips' durations: a clip of ``F`` frames gives ``len(patch_starts(F, L, h))``
patches of ``L`` frames at the evaluation hop ``h`` (Pons et al.'s hop 1: a 4-s clip at 44.1 kHz and hop 1024 is
46 patches), each costing ``eval_patch`` seconds. :data:`EVAL_PRICERS` holds one pricing function per model
(default: that patch loop), so that an evaluation path with another cost (one dense pass per clip) is priced
by registering its own function. Features (mel spectrograms) are computed once per clip and cached.

>>> s = dict(sampling="random", batch_size=4, epochs=3, patience=None, max_epochs=1000, patch_frames=8,
...          eval_hop=8)
>>> epoch_work(s, n_train=10, n_classes=2)  # 10 patches in 3 steps (4 + 4 + 2); accuracy out of 10
(3, 10, 0, 10)
>>> eval_patches(20, 8, 4), epoch_range(s), epoch_range(dict(s, epochs=None, patience=5))
(4, (3, 3), (6, 1000))
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from ..errors import MelfrontError
from .step_cost import StepCost, eval_patches, machine, measure_step_cost

__all__ = ["StepCost", "TrialPrice", "Estimate", "epoch_work", "epoch_range", "eval_patches", "clip_frames",
           "price_evaluation", "price_trial", "measure_step_cost", "estimate_study", "estimate_lines",
           "machine", "part_lines", "EVAL_PRICERS"]


@dataclass
class TrialPrice:
    """One trial's seconds: training at the fewest and the most epochs, evaluation."""

    train_low: float
    train_high: float
    evaluation: float
    epochs: tuple


@dataclass
class Estimate:
    """A study's price: per model ``{model: dict(train_low, train_high, evaluation, trials, epochs)}``, the
    features' seconds, the step costs used and the machine they were measured on."""

    per_model: dict
    features: float
    costs: dict
    machine: str
    notes: list = field(default_factory=list)

    def total(self, high: bool = False) -> float:
        """CPU seconds of every trial (at the most epochs with ``high``), features included."""
        key = "train_high" if high else "train_low"
        return self.features + sum(m[key] + m["evaluation"] for m in self.per_model.values())


# ------------------------------------------------------------------------------------------ arithmetic
def epoch_range(s: dict, levels: int | None = None) -> tuple:
    """``(fewest, most)`` epochs of a trial: ``(epochs, epochs)``; with early stopping only, at least
    ``patience + 1`` (the first epoch gains, then ``patience`` without gain) and at most ``max_epochs``
    (``inf`` when None: no cap). With ``patience_count="total"`` (a counter never reset) a trial also ends
    after at most ``1 + levels + patience`` epochs, ``levels`` being how many higher values the monitored
    accuracy can take (its denominator: the clips or patches it counts).

    >>> epoch_range(dict(epochs=None, patience=5, max_epochs=None)), epoch_range(dict(epochs=None, patience=5,
    ...             max_epochs=None, patience_count="total"), levels=20)
    ((6, inf), (6, 26))
    """
    if s.get("epochs"):
        return int(s["epochs"]), int(s["epochs"])
    low = int(s["patience"]) + 1
    high = math.inf if s.get("max_epochs") is None else int(s["max_epochs"])
    if s.get("patience_count") == "total" and levels is not None:
        high = min(high, low + int(levels))
    return min(low, high), high


def epoch_work(s: dict, n_train: int, n_classes: int, train_frames: list | None = None) -> tuple:
    """``(steps, patches, eval_patches, levels)`` of one training epoch of ``n_train`` clips.

    ``eval_patches``: the evaluation-mode patches an epoch adds: a prototypical network's prototypes (the
    fixed support set, or every evaluation patch of the training clips for ``support="episode"``) and, with
    ``monitor="train_clip_accuracy"``, every evaluation patch of the training clips. ``levels``: the
    denominator of the accuracy early stopping watches (see :func:`epoch_range`). ``train_frames``: the
    training clips' frame counts (None: one patch a clip), for segment sampling and the evaluation patches.

    >>> epoch_work(dict(sampling="random", batch_size=4), 9, 3)  # 9 = 4 + 4 + 1: the batch of one is dropped
    (2, 8, 0, 8)
    >>> epoch_work(dict(sampling="episodes", episodes_per_epoch=None, query_per_class=5, support_per_class=5,
    ...                 support="fixed"), n_train=20, n_classes=10)  # n = 2: 10 x (2 + 5) patches an episode
    (1, 70, 20, 50)
    >>> epoch_work(dict(sampling="episodes", epoch_updates="patch_grid", grid_hop=42, eval_hop=42, patch_frames=128,
    ...                 query_per_class=5, support_per_class=5, support="fixed"), n_train=20, n_classes=10,
    ...            train_frames=[300] * 20)[0]  # 20 clips x 5 grid patches = 100 patches // 50 queries
    2
    """
    def patches_at(hop):
        if train_frames is None:
            return n_train
        return sum(eval_patches(f, s["patch_frames"], hop) for f in train_frames)

    clip_monitor = s.get("monitor") == "train_clip_accuracy"
    extra = patches_at(s["eval_hop"]) if clip_monitor else 0
    if s["sampling"] == "episodes":
        n = max(1, n_train // max(1, n_classes))
        support = n_classes * min(int(s["support_per_class"]), n)
        if s.get("epoch_updates") == "patch_grid":  # total_patches // query_size (batches.grid_updates_per_epoch)
            total = patches_at(s.get("grid_hop") or s["eval_hop"])
            episodes = max(1, total // max(1, n_classes * int(s["query_per_class"])))
        else:
            episodes = s.get("episodes_per_epoch") or max(1, math.ceil(n_train / (n_classes * s["query_per_class"])))
        queries = episodes * n_classes * int(s["query_per_class"])
        extra += support if s.get("support") == "fixed" else patches_at(s["eval_hop"])
        return int(episodes), int(episodes * support + queries), extra, n_train if clip_monitor else queries
    items = n_train if s["sampling"] == "random" else patches_at(s["segment_hop"])
    batch = int(s["batch_size"])
    if items % batch == 1 and items > 1:
        items -= 1  # epoch_order drops a last batch of one (batch norm needs two)
    return math.ceil(items / batch), items, extra, n_train if clip_monitor else items


def price_evaluation(model: str, s: dict, frames: list, cost: StepCost) -> float:
    """Seconds to evaluate clips of ``frames`` frames: :data:`EVAL_PRICERS` ``[model]`` if registered, else every
    patch at ``eval_hop`` times ``cost.eval_patch`` (the patch loop).

    >>> price_evaluation("vgg", dict(patch_frames=128, eval_hop=1), [172, 172], StepCost(0, 0, 0.01))
    0.9
    """
    pricer = EVAL_PRICERS.get(model, _patch_loop)
    return pricer(s, frames, cost)


def _patch_loop(s: dict, frames: list, cost: StepCost) -> float:
    return cost.eval_patch * sum(eval_patches(f, s["patch_frames"], s["eval_hop"]) for f in frames)


#: ``{model: pricer(settings, test_frames, cost) -> seconds}``: evaluation paths priced otherwise than patch by
#: patch (e.g. one dense pass over each clip); models not listed use the patch loop.
EVAL_PRICERS: dict = {}


def price_trial(model: str, s: dict, n_train: int, n_classes: int, test_frames: list, cost: StepCost,
                train_frames: list | None = None) -> TrialPrice:
    """One trial's :class:`TrialPrice` (see the module docstring for the model).

    >>> s = dict(sampling="random", batch_size=4, epochs=None, patience=2, max_epochs=10, patch_frames=8,
    ...          eval_hop=8)
    >>> p = price_trial("vgg", s, 10, 2, [16, 8], StepCost(step=0.5, patch=1.0, eval_patch=0.25))
    >>> p.train_low, p.train_high, p.evaluation, p.epochs  # (3 x 0.5 + 10 x 1.0) x 3 epochs, x 10 epochs
    (34.5, 115.0, 0.75, (3, 10))
    """
    steps, patches, extra, levels = epoch_work(s, n_train, n_classes, train_frames)
    per_epoch = steps * cost.step + patches * cost.patch + extra * cost.eval_patch
    low, high = epoch_range(s, levels)
    return TrialPrice(per_epoch * low, per_epoch * high, price_evaluation(model, s, test_frames, cost), (low, high))


# ------------------------------------------------------------------------------------------ a study
def clip_frames(clips, mel: dict, known: dict | None = None) -> list:
    """``[(frames, seconds), ...]`` of ``clips`` at the mel settings, from their headers (no audio decoded);
    ``known`` caches them by path. An unreadable header counts as 0 frames (the study skips that clip).

    >>> import tempfile, pathlib, numpy as np, soundfile
    >>> from melfront.data import Clip
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.wav"
    >>> soundfile.write(p, np.zeros(8000, np.float32), 8000)
    >>> clip_frames([Clip(str(p), 0, "a", 1)], dict(sample_rate=16000, n_fft=1024, hop_length=1024))
    [(16, 1.0)]
    """
    from ..audio import audio_info
    from ..functional.spectral import num_frames
    known = {} if known is None else known
    out = []
    for c in clips:
        if c.path not in known:
            try:
                info = audio_info(c.path)
                seconds = info.frames / info.samplerate
            except MelfrontError:
                seconds = 0.0
            samples = int(round(seconds * mel["sample_rate"]))
            frames = num_frames(samples, mel["n_fft"], mel["hop_length"], mel.get("center", True)) if samples else 0
            known[c.path] = (frames, seconds)
        out.append(known[c.path])
    return out


def _field(g, name):
    return g[name] if isinstance(g, dict) else getattr(g, name)


def estimate_study(config, clips, grid, timer=None) -> Estimate:
    """The :class:`Estimate` of the trials ``grid`` (dicts or :class:`~melfront.study.config.Trial`\\ s with
    model, frontend, n, fold, run) of ``config`` on ``clips``. ``timer(model, frontend, settings, mel,
    n_classes, eval_frames=F) -> StepCost`` (default :func:`measure_step_cost`) is called once per model, input
    channels and evaluation path (frame-local frontend or not), with the first such frontend of the grid and
    ``F`` the median length of the test clips in frames; the training and test clips of every trial come from the study's own
    split (:func:`melfront.study.splits.split_for_trial`), their lengths from the headers. The features are priced
    per second of audio: with the default timer by making those of a few of the study's clips (decoding,
    resampling, mel), else at the timer's ``features`` rate.

    >>> import tempfile
    >>> from melfront.study import StudyConfig, load_clips, plan
    >>> config = StudyConfig(root=tempfile.mkdtemp(), n_per_class=[1], runs={"default": 2}, models=["vgg"],
    ...                      frontends=["db"], test_folds="first", train=dict(epochs=3, batch_size=4),
    ...                      dataset_options=dict(n_classes=2, clips_per_class=4, duration=1.0, sample_rate=8000,
    ...                                           n_folds=2))
    >>> clips = load_clips(config)
    >>> fixed = lambda model, frontend, s, mel, n_classes, eval_frames: StepCost(step=0.5, patch=1.0, eval_patch=0.25)
    >>> est = estimate_study(config, clips, plan(config, clips), timer=fixed)
    >>> est.per_model["vgg"]["train_low"]  # 2 trials x 3 epochs x (1 step x 0.5 s + 2 patches x 1 s)
    15.0
    """
    from ..data.cache import full_mel_config
    from ..train import DEFAULT_MEL, resolve_settings
    from .config import train_settings
    from .splits import split_for_trial
    from ..frontends import frontend as make_frontend
    own_timer = timer is None
    timer = measure_step_cost if timer is None else timer
    n_classes = len(clips.classes)
    known, tests, per_model, costs, settings, channels = {}, {}, {}, {}, {}, {}
    used = {}
    mel = full_mel_config({**DEFAULT_MEL, **config.mel})
    for g in grid:
        model, fold, n, run, fe = (_field(g, k) for k in ("model", "fold", "n", "run", "frontend"))
        if fe not in channels:
            module = make_frontend(fe, **mel)
            channels[fe] = (int(getattr(module, "out_channels", 1)), _frame_local(module))
        if model not in settings:
            s = resolve_settings(model, train_settings(config, model))
            s["n_mels"] = int(mel["n_mels"])
            settings[model] = s
            per_model[model] = dict(train_low=0.0, train_high=0.0, evaluation=0.0, trials=0, epochs=(math.inf, 0))
        key = (fold, n, run)
        if key not in tests:
            train, test, _ = split_for_trial(config, clips, fold, n, run)
            tests[key] = (train, test)
        train, test = tests[key]
        test_frames = [f for f, _ in clip_frames(test, mel, known)]
        # one timing per model, input channels (a stack's are more) and evaluation path (dense needs a frame-local
        # frontend), its evaluation on a clip of the test set's median length
        s, timing = settings[model], (model, channels[fe][0], channels[fe][1])
        if timing not in costs:
            median = sorted(test_frames)[len(test_frames) // 2] if test_frames else s["patch_frames"]
            costs[timing] = timer(model, fe, s, mel, n_classes, eval_frames=max(median, s["patch_frames"]))
        cost = costs[timing]
        train_frames = [f for f, _ in clip_frames(train, mel, known)]
        price = price_trial(model, s, len(train), n_classes, test_frames, cost, train_frames)
        m = per_model[model]
        m["epochs"] = (min(m["epochs"][0], price.epochs[0]), max(m["epochs"][1], price.epochs[1]))
        m["train_low"] += price.train_low
        m["train_high"] += price.train_high
        m["evaluation"] += price.evaluation
        m["trials"] += 1
        for c in list(train) + list(test):
            used[c.path] = c
    first = next(iter(costs.values()), None)
    seconds = sum(sec for _, sec in clip_frames(used.values(), mel, known))
    rate = first.features if first else 0.0
    if own_timer and used:  # the real loader on a few of the study's clips: decoding, resampling, mel
        rate = _feature_rate(list(used.values())[:3], mel, known) or rate
    features = seconds * rate
    named = {(m if sum(k[0] == m for k in costs) == 1 else
              f"{m} ({ch} channel{'s' * (ch > 1)}{', frame-local frontend' if local else ''})"): c
             for (m, ch, local), c in costs.items()}
    return Estimate(per_model, features, named, machine())


def _feature_rate(clips, mel: dict, known: dict) -> float:
    """CPU seconds per second of audio to make the features of ``clips`` as a trial does (decode, resample,
    mel; no cache), or 0 when none could be read."""
    from ..train.trial import clip_features
    audio = sum(sec for _, sec in clip_frames(clips, mel, known))
    t0 = time.process_time()
    try:
        clip_features(list(clips), mel, "mel", cache=False, progress=False)
    except MelfrontError:
        return 0.0
    return (time.process_time() - t0) / audio if audio else 0.0


def _frame_local(module) -> bool:
    """Whether exact dense evaluation may apply to this frontend (:func:`melfront.train.dense.frame_local`)."""
    try:
        from ..train.dense import frame_local
    except ImportError:  # no dense evaluation in this version
        return False
    return bool(frame_local(module))


def _hours(seconds: float) -> str:
    h = seconds / 3600
    return f"{h:,.0f} h" if h >= 100 else f"{h:,.1f} h" if h >= 1 else f"{seconds / 60:,.1f} min"


def estimate_lines(est: Estimate, jobs: int | None = None) -> list:
    """The estimate as printed by ``compare --dry-run``: total (a range where patience decides the epochs),
    the share of each model (largest first), the measured step costs and the machine, how it was computed.

    >>> est = Estimate({"vgg": dict(train_low=3000.0, train_high=3000.0, evaluation=600.0, trials=4,
    ...                             epochs=(10, 10)),
    ...                 "protonet": dict(train_low=6000.0, train_high=60000.0, evaluation=400.0, trials=4,
    ...                                  epochs=(201, 1000))}, 0.0, {}, "test machine")
    >>> print("\\n".join(estimate_lines(est)[:4]))
    estimated CPU time: 2.8 h (patience decides some models' epochs: at most 17.8 h); measured on test machine, one thread per trial
      protonet: 64.0 % (1.8 h: training 1.7 h at 201 epochs ... 16.7 h at 1000, evaluation 6.7 min; 4 trials)
      vgg: 36.0 % (1.0 h: training 50.0 min at 10 epochs, evaluation 10.0 min; 4 trials)
      features (mel spectrograms, computed once per clip and cached): 0.0 % (0.0 min)
    """
    low, high = est.total(), est.total(high=True)
    head = f"estimated CPU time: {_hours(low)}"
    if math.isinf(high):
        head += (" at least (patience decides some models' epochs, with no cap: max_epochs None; "
                 "--set max_epochs=N bounds them)")
    elif high > low * 1.0001:
        head += f" (patience decides some models' epochs: at most {_hours(high)})"
    lines = [head + f"; measured on {est.machine}, one thread per trial"]
    order = sorted(est.per_model, key=lambda m: -(est.per_model[m]["train_low"] + est.per_model[m]["evaluation"]))
    for model in order:
        m = est.per_model[model]
        own = m["train_low"] + m["evaluation"]
        lo, hi = m["epochs"]
        train = (f"training {_hours(m['train_low'])} at {lo} epochs" if lo == hi else
                 f"training {_hours(m['train_low'])} at {lo} epochs ... " +
                 ("no upper bound (no max_epochs)" if math.isinf(hi) else f"{_hours(m['train_high'])} at {hi}"))
        lines.append(f"  {model}: {100 * own / max(low, 1e-12):.1f} % ({_hours(own)}: {train}, evaluation "
                     f"{_hours(m['evaluation'])}; {m['trials']} trials)")
    lines.append(f"  features (mel spectrograms, computed once per clip and cached): "
                 f"{100 * est.features / max(low, 1e-12):.1f} % ({_hours(est.features)})")
    for model, c in est.costs.items():
        lines.append(f"  {model} measured: training {1e3 * c.patch:.2f} ms per patch + {1e3 * c.step:.2f} ms per "
                     f"step, evaluation {1e3 * c.eval_patch:.2f} ms per patch" + (f" ({c.how})" if c.how else ""))
    lines.append("  how: training = epochs x (steps x step cost + patches x patch cost), one random patch per "
                 "training clip an epoch (or every segment, or episodes of support + query patches); evaluation = "
                 "each test clip's patches at the evaluation hop (from its duration) x patch cost; with early "
                 "stopping a trial takes patience + 1 epochs at least, max_epochs at most")
    if jobs and jobs > 1:
        lines.append(f"  wall time with --jobs {jobs}: about {_hours(low / jobs)} (trials side by side, one thread "
                     f"each)")
    else:
        lines.append("  wall time: divide by the trials run side by side (--jobs, or the Ray cluster's CPUs)")
    return lines + [f"  note: {n}" for n in est.notes]


def part_lines(parts: dict, where: str, why: str = "") -> list:
    """The head and share lines of an estimate made of ``parts`` ``{name: (fewest, most) seconds}`` (largest
    share first): the total, as a range when some part's epochs are not fixed (``why`` says why), the machine.

    >>> print("\\n".join(part_lines({"arm (a)": (3600, 3600), "MSTModel": (1800, 7200)}, "here", "patience")))
    estimated CPU time: 1.5 h ... 3.0 h (patience); measured on here
      arm (a): 66.7 % (1.0 h)
      MSTModel: 33.3 % (30.0 min ... 2.0 h)
    """
    low, high = sum(p[0] for p in parts.values()), sum(p[1] for p in parts.values())
    head = f"estimated CPU time: {_hours(low)}"
    if high > low * 1.0001:
        head += f" ... {_hours(high)}" + (f" ({why})" if why else "")
    lines = [head + f"; measured on {where}"]
    for name in sorted(parts, key=lambda k: -parts[k][0]):
        lo, hi = parts[name]
        lines.append(f"  {name}: {100 * lo / max(low, 1e-12):.1f} % ({_hours(lo)}"
                     + (f" ... {_hours(hi)}" if hi > lo * 1.0001 else "") + ")")
    return lines
