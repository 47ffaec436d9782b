"""Settings fitted to the data: :func:`survey` reads the clips' headers, :func:`fit_settings` derives the rest.

What ``compare`` and ``train`` use whenever the user sets nothing else (every value stays overridable;
``--profile paper`` keeps the reference works' settings):

- sample rate: the clips' own (the most common rate), 22.05 kHz at most, so that nothing is upsampled
  that need not be;
- window: the smallest power-of-two ``n_fft`` of at least 25 ms (25-50 ms); hop: 10 ms (rounded up);
- mel bands: 40 below 12 kHz, 64 below 20 kHz, else 128 (the band counts of speech front ends, of
  VGGish/AudioSet at 16 kHz and of Pons et al. 2019 at 22.05 kHz), fewer if a band would be empty at
  that ``n_fft`` with ``fmax = sr / 2``;
- patch length: the median clip, at most 3 s, in frames (a multiple of 4); a backbone that needs more
  (SB-CNN: 100 frames) gets its own minimum, the clips being repeat-padded;
- a recipe that learns from 1-100 clips per class: Adam, lr 1e-3, no weight decay, input batch norm
  before every backbone (``model_options["input_norm"] = "batch"``, see :class:`~melfront.train.build.InputNorm`),
  batches of 16 (32 from 500 training clips) and an epoch budget of about 1200 optimiser steps,
  20 to 100 epochs (1200 steps since issue 15's evidence: at 600, SB-CNN on ESC-50's 50 classes x 4 clips still
  had a training accuracy of 35-60 % at the end and twice the epochs gained 3-10 test points; BENCHMARKS.md).

Input normalisation: batch norm rather than per-example standardisation because (1) it is what the
reference works did (VGG's input BN, Pons et al.'s "SB-CNN | BN input"), (2) it keeps each example's
level relative to the data set, which is exactly what the frontends differ in (a log's offset, PCEN's
gain control): per-example standardisation would erase those differences before the backbone sees
them, and (3) it turned collapsed Adam runs into working ones on FSDD and keyword folders (issue 15).
``--set model_options='{"input_norm": "example"}'`` selects the other.

The examples use a folder of six 0.5 s clips at 8 kHz.
"""
from __future__ import annotations

import functools
import json
import math
import statistics
import warnings
from collections import Counter
from dataclasses import dataclass, field

from ..audio import audio_info
from ..errors import AudioError, DataError, ParameterError
from ..functional import mel_filterbank
from ..models import default_settings, min_input
from .build import backbone_input_shape as _input_shape
from .runs import fold_value

__all__ = ["DataSurvey", "FittedSettings", "survey", "fit_settings", "mel_bands", "backbone_minimum",
           "check_backbones", "training_size", "epoch_budget", "MAX_SAMPLE_RATE", "MAX_PATCH_SECONDS", "TARGET_STEPS"]

#: The highest sample rate chosen (Hz): clips above it are downsampled.
MAX_SAMPLE_RATE = 22050
#: The longest patch chosen, in seconds.
MAX_PATCH_SECONDS = 3.0
#: The epoch budget aims at about this many optimiser steps (within 20 to 100 epochs).
TARGET_STEPS = 1200
_EPOCHS = (20, 100)
_MEL_KEYS = ("sample_rate", "n_fft", "hop_length", "n_mels")


@dataclass
class DataSurvey:
    """What the clips' headers say: sample rates (rate -> count), durations (s) and unreadable clips.

    >>> s = DataSurvey(rates={8000: 3}, durations=[0.4, 0.5, 0.6])
    >>> s.n_read, s.median_duration, s.common_rate
    (3, 0.5, 8000)
    """

    rates: dict
    durations: list
    unreadable: list = field(default_factory=list)  # [path, cause]

    @property
    def n_read(self) -> int:
        return len(self.durations)

    @property
    def median_duration(self) -> float:
        return float(statistics.median(self.durations))

    @property
    def common_rate(self) -> int:
        """The most common sample rate (the lower one on a tie)."""
        return min(self.rates, key=lambda r: (-self.rates[r], r))

    def as_dict(self) -> dict:
        return dict(clips=self.n_read + len(self.unreadable), read=self.n_read, unreadable=len(self.unreadable),
                    sample_rates={str(k): v for k, v in sorted(self.rates.items())},
                    median_duration=round(self.median_duration, 4))


def survey(clips) -> DataSurvey:
    """Sample rates and durations of ``clips`` (anything with ``.path``) from their headers only.

    Unreadable clips are listed, not raised; none readable is a ``DataError``.

    >>> import tempfile, pathlib, numpy as np, soundfile
    >>> from melfront.data import Clip
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for i in range(3):
    ...     soundfile.write(d / f"{i}.wav", np.zeros(4000 + 800 * i, np.float32), 8000)
    >>> _ = (d / "bad.wav").write_bytes(b"junk")
    >>> s = survey([Clip(str(p), 0, "a", 1) for p in sorted(d.iterdir())])
    >>> s.rates, s.durations, len(s.unreadable)
    ({8000: 3}, [0.5, 0.6, 0.7], 1)
    """
    rates, durations, unreadable = Counter(), [], []
    for clip in clips:
        path = getattr(clip, "path", clip)
        try:
            info = audio_info(path)
        except AudioError as exc:
            unreadable.append([str(path), str(exc)])
            continue
        rates[int(info.samplerate)] += 1
        durations.append(info.frames / info.samplerate)
    if not durations:
        first = f": {unreadable[0][1]}" if unreadable else ""
        raise DataError(f"no readable clip to fit the settings to ({len(unreadable)} unreadable{first})")
    return DataSurvey(dict(rates), durations, unreadable)


def mel_bands(sample_rate: int, n_fft: int, fmin: float = 0.0, fmax: float | None = None) -> int:
    """The mel bands for a sample rate: 40 below 12 kHz, 64 below 20 kHz, else 128, fewer if one would be empty.

    >>> mel_bands(8000, 256), mel_bands(16000, 512), mel_bands(22050, 1024), mel_bands(22050, 64)
    (40, 64, 128, 18)
    """
    n = 40 if sample_rate < 12000 else 64 if sample_rate < 20000 else 128
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # empty bands are what is being tested for
        while n > 1 and not bool((mel_filterbank(sample_rate, n_fft, n, fmin, fmax).amax(dim=1) > 0).all()):
            n -= 1
    return n


def backbone_minimum(model: str, shape: dict, options: dict | None = None) -> tuple[int, int]:
    """The smallest ``(n_mels, n_frames)``, not below ``shape``'s, that backbone ``model`` accepts.

    Asks the backbone (:func:`melfront.models.min_input`; nothing is built). ``options`` are its
    ``model_options``; ``input_norm`` (the trainer's, not the backbone's) is left out.

    >>> backbone_minimum("sbcnn", dict(n_mels=40, n_frames=48, in_channels=1))
    (40, 100)
    >>> backbone_minimum("timbre", dict(n_mels=40, n_frames=48, in_channels=1), {"filter_mels": 34})
    (40, 48)
    """
    opts = {k: v for k, v in (options or {}).items() if k != "input_norm"}
    least_mels, least_frames = min_input(model, **opts)
    return max(int(shape["n_mels"]), least_mels), max(int(shape["n_frames"]), least_frames)


def _shape(frontend: str, mel: dict, frames: int) -> dict:
    return dict(_cached_shape(frontend, json.dumps(mel, sort_keys=True), int(frames)))


@functools.lru_cache(maxsize=256)
def _cached_shape(frontend, mel_json, frames):
    return tuple(_input_shape(frontend, json.loads(mel_json), frames).items())


def check_backbones(frontends, model_names, mel: dict, patch_frames, model_options=None) -> None:
    """ParameterError saying which setting to change when a backbone cannot take a frontend's output.

    ``patch_frames`` and ``model_options`` are values or functions of the model name.

    >>> mel = dict(sample_rate=8000, n_fft=256, hop_length=80, n_mels=40)
    >>> check_backbones(["db"], ["vgg"], mel, 48)
    >>> check_backbones(["db"], ["sbcnn"], mel, 48)
    Traceback (most recent call last):
    ...
    melfront.errors.ParameterError: sbcnn needs at least 100 frames (patches of 48 frames give 48): --patch-frames 100
    """
    frames_of = patch_frames if callable(patch_frames) else (lambda m: patch_frames)
    options_of = model_options if callable(model_options) else (lambda m: model_options)
    for m in model_names:
        for fe in frontends:
            shape = _shape(fe, mel, frames_of(m))
            min_mels, min_frames = backbone_minimum(m, shape, options_of(m))
            own = shape["n_mels"] == mel["n_mels"] and shape["n_frames"] == frames_of(m)
            where = "" if own else f" after frontend {fe!r}"
            if min_mels > shape["n_mels"]:
                raise ParameterError(f"{m} needs at least {min_mels} mel bands{where} ({shape['n_mels']} given): "
                                     f"--n-mels {mel['n_mels'] + min_mels - shape['n_mels']}")
            if min_frames > shape["n_frames"]:
                want = frames_of(m) + min_frames - shape["n_frames"]
                raise ParameterError(f"{m} needs at least {min_frames} frames{where} (patches of {frames_of(m)} "
                                     f"frames give {shape['n_frames']}): --patch-frames {want}")


@dataclass
class FittedSettings:
    """Settings fitted to a data set: ``mel``, ``train`` (every model), ``per_model`` (model -> settings that
    differ for it), ``notes`` (setting -> how it was chosen), ``given`` (the keys the user set) and the survey.

    :meth:`train_for` gives one model's training overrides, :meth:`study_train` a study's ``train`` dict
    (per-model settings under ``"models"``), :meth:`summary` the line printed before training,
    :meth:`as_dict` what is stored with the study and the run.
    """

    mel: dict
    train: dict
    per_model: dict
    notes: dict
    given: list
    data: dict
    n_train: int

    def train_for(self, model: str) -> dict:
        """The training overrides for ``model`` (``train`` updated with ``per_model[model]``)."""
        out = dict(self.train)
        for key, value in self.per_model.get(model, {}).items():
            out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
        return out

    def study_train(self) -> dict:
        """A study's ``train`` setting: the common settings, per-model ones under ``"models"``."""
        out = dict(self.train)
        if self.per_model:
            out["models"] = {m: self.train_for(m) for m in self.per_model}
        return out

    def summary(self) -> str:
        """One line: ``derived from the data: sample rate 8000 Hz (...), n_fft 256 (32 ms), ...``."""
        parts = [f"{text}" for key, text in self.notes.items()]
        return "derived from the data: " + ", ".join(parts)

    def as_dict(self) -> dict:
        """JSON-able: mel, train, per_model, notes, given, data (the survey), n_train, summary."""
        return dict(mel=self.mel, train=self.train, per_model=self.per_model, notes=self.notes, given=self.given,
                    data=self.data, n_train=self.n_train, summary=self.summary())


def _num(x: float) -> str:
    """``1e-3`` rather than ``0.001``: how learning rates are written."""
    if 0 < abs(x) < 0.01:
        mantissa, exponent = f"{x:e}".split("e")
        return f"{float(mantissa):g}e{int(exponent)}"
    return f"{x:g}"


def _ms(samples: int, sr: int) -> str:
    return f"{1000 * samples / sr:.0f} ms"


def _rate(s: DataSurvey, given: dict, notes: dict) -> int:
    if "sample_rate" in given:
        notes["sample_rate"] = f"sample rate {given['sample_rate']} Hz (given)"
        return int(given["sample_rate"])
    common, total = s.common_rate, s.n_read
    sr = min(common, MAX_SAMPLE_RATE)
    why = f"all {total} clips are {common} Hz" if s.rates[common] == total else \
        f"{s.rates[common]} of {total} clips are {common} Hz"
    if sr < common:
        why += f"; {MAX_SAMPLE_RATE} Hz at most"
    lower = sum(n for r, n in s.rates.items() if r < sr)
    if lower:
        why += f"; {lower} clips below it are upsampled"
    notes["sample_rate"] = f"sample rate {sr} Hz ({why})"
    return sr


def _mel(s: DataSurvey, given: dict, notes: dict) -> dict:
    sr = _rate(s, given, notes)
    n_fft = int(given.get("n_fft") or 2 ** math.ceil(math.log2(0.025 * sr)))
    hop = int(given.get("hop_length") or math.ceil(0.010 * sr))
    notes["n_fft"] = f"n_fft {n_fft} ({_ms(n_fft, sr)}{', given' if 'n_fft' in given else ''})"
    notes["hop_length"] = f"hop {hop} ({_ms(hop, sr)}{', given' if 'hop_length' in given else ''})"
    if "n_mels" in given:
        n_mels = int(given["n_mels"])
        notes["n_mels"] = f"{n_mels} mel bands (given)"
    else:
        n_mels = mel_bands(sr, n_fft, given.get("fmin", 0.0), given.get("fmax"))
        notes["n_mels"] = f"{n_mels} mel bands"
    extra = {k: v for k, v in given.items() if k not in _MEL_KEYS and k in _MEL_EXTRA}
    return dict(sample_rate=sr, n_fft=n_fft, hop_length=hop, n_mels=n_mels, **extra)


_MEL_EXTRA = ("fmin", "fmax", "power", "htk", "norm", "win_length", "window", "center", "pad_mode")


def epoch_budget(n_train: int) -> tuple[int, int]:
    """``(batch_size, epochs)`` of the fitted recipe for ``n_train`` training clips: batches of 16 (32 from 500
    clips) and about :data:`TARGET_STEPS` optimiser steps, 20 to 100 epochs.

    >>> epoch_budget(200), epoch_budget(40), epoch_budget(5000)
    ((16, 93), (16, 100), (32, 20))
    """
    batch = 16 if n_train < 500 else 32
    steps = max(1, math.ceil(n_train / batch))
    return batch, min(max(math.ceil(TARGET_STEPS / steps), _EPOCHS[0]), _EPOCHS[1])


def _recipe(n_train: int, given: dict, notes: dict) -> dict:
    train = dict(optimizer="adam", lr=1e-3, weight_decay=0.0)
    train["batch_size"], train["epochs"] = epoch_budget(n_train)
    train["model_options"] = {"input_norm": "batch"}
    for key, value in given.items():
        if key == "model_options":
            train[key] = {**train[key], **value}
        elif key not in _MEL_KEYS and key not in _MEL_EXTRA:
            train[key] = value
    opt = "Adam" if train["optimizer"] == "adam" else str(train["optimizer"]).upper()
    tag = " (given)" if {"optimizer", "lr"} & set(given) else ""
    notes["optimizer"] = f"{opt} {_num(train['lr'])}{tag}"
    notes["input_norm"] = {"batch": "input batch norm", "example": "input standardised per example",
                           "none": "no input normalisation"}.get(train["model_options"].get("input_norm"), "?")
    why = "given" if "epochs" in given else f"about {TARGET_STEPS} steps of {train['batch_size']} on {n_train} clips"
    notes["epochs"] = f"{train['epochs']} epochs ({why})"
    return train


def fit_settings(clips, *, models=("sbcnn",), frontends=("db",), given: dict | None = None,
                 n_train: int | None = None) -> FittedSettings:
    """Mel and training settings fitted to ``clips`` (or a :class:`DataSurvey`); ``given`` (flat: mel keys such
    as ``sample_rate``, ``hop_length`` and training settings) win, and the rest is derived consistently with them.

    ``n_train`` (default: the number of clips) sizes the epoch budget: the training clips of the largest
    cell. Every (frontend, model) pair is checked to fit: a derived ``n_mels`` too small for a backbone is
    raised, a derived patch too short gets the backbone's own minimum (in ``per_model``), TIMBRE's filter
    keeps its 108/128 share of the bands; a given setting that does not fit is a ParameterError naming
    the option to change.

    >>> s = DataSurvey(rates={8000: 3000}, durations=[0.42] * 3000)
    >>> f = fit_settings(s, models=["sbcnn", "vgg"], n_train=2700)
    >>> f.mel, f.train["epochs"], f.per_model
    ({'sample_rate': 8000, 'n_fft': 256, 'hop_length': 80, 'n_mels': 40}, 20, {'sbcnn': {'patch_frames': 100}})
    >>> print(f.summary())  # doctest: +NORMALIZE_WHITESPACE
    derived from the data: sample rate 8000 Hz (all 3000 clips are 8000 Hz), n_fft 256 (32 ms), hop 80 (10 ms),
    40 mel bands, patches of 44 frames (0.44 s, median clip 0.42 s; sbcnn: 100, its minimum, clips repeat-padded),
    Adam 1e-3, input batch norm, 20 epochs (about 1200 steps of 32 on 2700 clips)
    >>> fit_settings(s, given={"patch_frames": 60})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    melfront.errors.ParameterError: sbcnn needs at least 100 frames (patches of 60 frames give 60): --patch-frames 100
    """
    s = clips if isinstance(clips, DataSurvey) else survey(clips)
    given = dict(given or {})
    notes: dict = {}
    mel = _mel(s, given, notes)
    n_train = int(n_train if n_train is not None else s.n_read)
    train = _recipe(n_train, given, notes)
    per_model = {m: {} for m in models}
    if "timbre" in per_model and mel["n_mels"] < 108 and "filter_mels" not in train["model_options"]:
        per_model["timbre"]["model_options"] = {"filter_mels": max(1, round(mel["n_mels"] * 108 / 128))}
    if "protonet" in per_model:  # an episode is the batch; the epoch budget replaces early stopping
        per_model["protonet"].update(batch_size=None, patience=None)
    if "piczak" in per_model and "patch_frames" not in given:  # its own short segments: a dense layer per frame
        per_model["piczak"]["patch_frames"] = default_settings("piczak")["patch_frames"]
    frames = _patch(s, mel, given, train, notes)
    if "n_mels" not in given:
        mel["n_mels"] = _fit_bands(frontends, per_model, mel, frames, train, notes)
    raised = _fit_frames(frontends, per_model, mel, frames, train, "patch_frames" in given)
    if raised:
        notes["patch_frames"] = notes["patch_frames"][:-1] + "; " + ", ".join(
            f"{m}: {n}" for m, n in raised.items()) + ", its minimum, clips repeat-padded)"
    check_backbones(frontends, models, mel, lambda m: per_model[m].get("patch_frames", frames),
                    lambda m: {**train["model_options"], **per_model[m].get("model_options", {})})
    notes = {k: notes[k] for k in ("sample_rate", "n_fft", "hop_length", "n_mels", "patch_frames", "optimizer",
                                   "input_norm", "epochs")}
    return FittedSettings(mel=mel, train=train, per_model={m: v for m, v in per_model.items() if v}, notes=notes,
                          given=sorted(given), data=s.as_dict(), n_train=n_train)


def training_size(clips, test_fold=None, val_fold=None, n_per_class: int | None = None) -> int:
    """How many clips a run trains on (for the epoch budget): ``n_per_class`` per class, else the clips outside
    the test and validation folds, else (a flat folder, held out by itself) two thirds of them.

    >>> from melfront.data import Clip, ClipList
    >>> clips = ClipList([Clip(f"{i}.wav", i % 2, "ab"[i % 2], 1 + i % 3) for i in range(12)], classes=["a", "b"])
    >>> training_size(clips, "1"), training_size(clips, 1, 2), training_size(clips), training_size(clips, 1, None, 5)
    (8, 4, 8, 10)
    """
    if n_per_class is not None:
        return int(n_per_class) * max(1, len(getattr(clips, "classes", []) or {c.label for c in clips}))
    held = {fold_value(test_fold), fold_value(val_fold)} - {None}
    n = sum(1 for c in clips if c.fold not in held)
    return n if held and n else max(1, 2 * len(clips) // 3)


def _patch(s: DataSurvey, mel: dict, given: dict, train: dict, notes: dict) -> int:
    sr, hop = mel["sample_rate"], mel["hop_length"]
    if "patch_frames" in given:
        frames = int(given["patch_frames"])
        notes["patch_frames"] = f"patches of {frames} frames ({frames * hop / sr:.2f} s, given)"
    else:
        seconds = min(s.median_duration, MAX_PATCH_SECONDS)
        frames = max(4, int((1 + round(seconds * sr) // hop) / 4 + 0.5) * 4)
        notes["patch_frames"] = (f"patches of {frames} frames ({frames * hop / sr:.2f} s, median clip "
                                 f"{s.median_duration:.2f} s{'' if seconds == s.median_duration else ', 3 s at most'})")
    train["patch_frames"] = frames
    return frames


def _options(train: dict, per_model: dict, m: str) -> dict:
    return {**train["model_options"], **per_model[m].get("model_options", {})}


def _fit_bands(frontends, per_model, mel, frames, train, notes) -> int:
    """``n_mels`` raised to what every backbone needs."""
    need, who = mel["n_mels"], []
    for m in per_model:
        for fe in frontends:
            shape = _shape(fe, mel, per_model[m].get("patch_frames", frames))
            more = backbone_minimum(m, shape, _options(train, per_model, m))[0] - shape["n_mels"]
            if more > 0:
                need = max(need, mel["n_mels"] + more)
                who.append(m)
    if need > mel["n_mels"]:
        notes["n_mels"] = f"{need} mel bands (raised from {mel['n_mels']}: {', '.join(dict.fromkeys(who))} need it)"
    return need


def _fit_frames(frontends, per_model, mel, frames, train, given: bool) -> dict:
    raised = {}
    if given:
        return raised
    for m in per_model:
        need = frames
        if "patch_frames" in per_model[m]:
            continue
        for fe in frontends:
            shape = _shape(fe, mel, frames)
            need = max(need, frames + backbone_minimum(m, shape, _options(train, per_model, m))[1] - shape["n_frames"])
        if need > frames:
            per_model[m]["patch_frames"] = raised[m] = need
    return raised
