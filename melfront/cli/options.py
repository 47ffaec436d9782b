"""Argument groups shared by several commands, and the small parsers of their values.

>>> import argparse
>>> p = argparse.ArgumentParser()
>>> add_mel_args(p, MEL_DEFAULTS)
>>> vars(p.parse_args(["--hop", "256"]))
{'sample_rate': 22050, 'n_fft': 1024, 'hop': 256, 'n_mels': 128}
"""
from __future__ import annotations

import ast
import json
from functools import lru_cache

from ..checks import one_of, positive_float, positive_int
from ..errors import ParameterError

# No torch here: ``melfront --help`` builds every parser from this module. MelSpectrogram, TrainSettings,
# OPTIMIZERS and MAX_EPOCHS (torch-importing layers) are looked up when a setting is checked.

__all__ = ["split_specs", "parse_value", "key_values", "int_list", "add_mel_args", "add_dataset_args",
           "add_split_args", "cache_arg", "MEL_DEFAULTS", "SETTING_OPTIONS", "MEL_SETTINGS", "add_settings_args",
           "settings_from_args", "split_settings", "check_setting_type", "MAX_EPOCHS"]

#: Defaults of the mel options of ``show`` and ``equivalence`` (``train`` defaults to the model's settings).
MEL_DEFAULTS = dict(sample_rate=22050, n_fft=1024, hop=512, n_mels=128)


def split_specs(text: str) -> list[str]:
    """Split a comma-separated list of frontend specs, keeping commas inside parentheses.

    >>> split_specs("db, pcen(init='loop', s=0.02),power")
    ['db', "pcen(init='loop', s=0.02)", 'power']
    """
    specs, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            if cur.strip():
                specs.append(cur.strip())
            cur = ""
            continue
        depth += (ch == "(") - (ch == ")")
        cur += ch
    if cur.strip():
        specs.append(cur.strip())
    return specs


def parse_value(text: str):
    """A command-line value: JSON (``3``, ``1e-3``, ``true``, ``null``, ``{"width": 8}``), else a Python literal
    (``'adam'``, ``{'width': 8}``, ``None``), else the plain string.

    >>> [parse_value(t) for t in ("3", "1e-3", "true", "null", "'adam'", "adam", '{"width": 8}', "None")]
    [3, 0.001, True, None, 'adam', 'adam', {'width': 8}, None]
    """
    text = text.strip()
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
    return text


def key_values(items, what: str) -> dict:
    """``["a=1", "b='x'"]`` -> ``{"a": 1, "b": "x"}`` (values read by :func:`parse_value`).

    >>> key_values(["epochs=3", "optimizer='adam'", "name=plain", "lr=1e-3"], "--set")
    {'epochs': 3, 'optimizer': 'adam', 'name': 'plain', 'lr': 0.001}
    >>> key_values(["epochs"], "--set")
    Traceback (most recent call last):
    ...
    melfront.errors.ParameterError: --set must look like KEY=VALUE, got 'epochs'
    """
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ParameterError(f"{what} must look like KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        depth = _nesting(value)
        if depth > MAX_VALUE_DEPTH:
            raise ParameterError(f"{what} {key.strip()}: the value is nested {depth} levels deep; at most "
                                 f"{MAX_VALUE_DEPTH} are accepted")
        out[key.strip()] = parse_value(value)
    return out


#: The deepest nesting of brackets a ``KEY=VALUE`` value may have (a settings dict needs two or three).
MAX_VALUE_DEPTH = 32


def _nesting(text: str) -> int:
    """The deepest bracket nesting in ``text`` (quotes ignored: an over-count only refuses absurd values).

    >>> _nesting('{"a": [1, {"b": 2}]}'), _nesting("3")
    (3, 0)
    """
    depth = deepest = 0
    for ch in text:
        if ch in "[{(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]})":
            depth -= 1
    return deepest


def int_list(text: str, what: str) -> list[int]:
    """``"1,2,5"`` -> ``[1, 2, 5]``; ParameterError naming the option otherwise.

    >>> int_list("1, 2,5", "--n")
    [1, 2, 5]
    >>> int_list("1,two", "--n")
    Traceback (most recent call last):
    ...
    melfront.errors.ParameterError: --n must be comma-separated integers, got '1,two'
    """
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ParameterError(f"{what} must be comma-separated integers, got {text!r}") from None


def add_mel_args(p, defaults: dict | None = None, n_mels_help: str | None = None) -> None:
    """The mel options ``--sample-rate --n-fft --hop --n-mels`` (dests ``sample_rate, n_fft, hop, n_mels``).

    ``defaults`` (e.g. :data:`MEL_DEFAULTS`) sets their defaults; None leaves them None so that the
    command can tell "not given" (``train``: the model's settings then apply).

    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_mel_args(p)
    >>> p.parse_args([]).n_fft is None, p.parse_args(["--n-fft", "512"]).n_fft
    (True, 512)
    """
    d = defaults or {}
    shown = {**MEL_DEFAULTS, **d}
    prefix = "" if defaults else "mel: "

    def say(key, text):
        return f"{prefix}{text} (default {shown[key]})"

    p.add_argument("--sample-rate", type=int, default=d.get("sample_rate"),
                   help=say("sample_rate", "resample to this rate in Hz"))
    p.add_argument("--n-fft", type=int, default=d.get("n_fft"), help=say("n_fft", "FFT size in samples"))
    p.add_argument("--hop", type=int, default=d.get("hop"), help=say("hop", "hop length in samples"))
    p.add_argument("--n-mels", type=int, default=d.get("n_mels"),
                   help=n_mels_help or say("n_mels", "number of mel bands"))


def add_dataset_args(p, required: bool) -> None:
    """``--dataset --root --dataset-option KEY=VALUE --cache --no-cache --device``.

    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_dataset_args(p, required=True)
    >>> args = p.parse_args(["--dataset", "synth", "--dataset-option", "n_classes=3", "--no-cache"])
    >>> args.dataset, args.dataset_option, cache_arg(args)
    ('synth', ['n_classes=3'], False)
    """
    p.add_argument("--dataset", required=required, help="esc50, esc10, urbansound8k, tut2017, fsdd, folder or synth")
    p.add_argument("--root", help="data set folder")
    p.add_argument("--dataset-option", action="append", metavar="KEY=VALUE", default=None,
                   help="loader option, e.g. n_classes=3 for synth (repeatable)")
    p.add_argument("--cache", help="feature cache folder (default $MELFRONT_CACHE or ~/.cache/melfront)")
    p.add_argument("--no-cache", action="store_true", help="compute features without the cache")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")


def add_split_args(p) -> None:
    """``--split folds|holdout`` and ``--group-by REGEX`` (dests ``split``, ``group_by``; None when not given).

    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_split_args(p)
    >>> vars(p.parse_args(["--group-by", "^([^_]+)_nohash_"]))
    {'split': None, 'group_by': '^([^_]+)_nohash_'}
    """
    p.add_argument("--split", choices=("folds", "holdout"),
                   help="folds: the data set's official folds; holdout: hold out a stratified, grouped part of "
                        "each test fold (default: folds with two folds or more, holdout for a flat folder)")
    p.add_argument("--group-by", metavar="REGEX",
                   help="each clip's group (speaker, recording, site) from its file name: the first capture group "
                        "or the whole match, e.g. '^([^_]+)_nohash_'; no group is ever on both sides of a split")


def cache_arg(args):
    """The ``cache`` argument of the training functions: False with ``--no-cache``, else ``--cache`` (or None).

    >>> import argparse
    >>> cache_arg(argparse.Namespace(no_cache=True, cache="/c")), cache_arg(argparse.Namespace(no_cache=False, cache=None))
    (False, None)
    """
    return False if args.no_cache else args.cache


#: The common settings of ``compare`` and ``train`` as options: ``(flag, setting, check, help)``.
SETTING_OPTIONS = (
    ("--sample-rate", "sample_rate", positive_int, "sample rate in Hz (default: the clips' own, 22050 at most)"),
    ("--n-fft", "n_fft", positive_int, "FFT size in samples (default: a power of two of 25-50 ms)"),
    ("--hop", "hop_length", positive_int, "hop length in samples (default: 10 ms)"),
    ("--n-mels", "n_mels", positive_int, "mel bands (default: 40, 64 or 128 by sample rate, none empty)"),
    ("--patch-frames", "patch_frames", positive_int, "patch length in frames (default: the median clip, 3 s at most)"),
    ("--epochs", "epochs", positive_int, "training epochs (default: about 1200 steps, 20-100 epochs)"),
    ("--optimizer", "optimizer", lambda name, v: one_of(name, v, _optimizers()), "sgd or adam (default adam)"),
    ("--lr", "lr", positive_float, "learning rate (default 1e-3)"),
    ("--batch-size", "batch_size", positive_int, "batch size (default 16; 32 from 500 training clips)"),
    ("--precision", "precision", lambda name, v: one_of(name, v, ("fp32", "bf16")),
     "fp32 (default) or bf16: the backbone under torch.autocast in bfloat16, frontends float32 (opt-in)"),
)



def _optimizers():
    from ..train import OPTIMIZERS
    return OPTIMIZERS


@lru_cache(maxsize=1)
def _mel_default_config() -> dict:
    from ..frontends import MelSpectrogram
    return MelSpectrogram(sample_rate=16000).config()


def _mel_settings() -> tuple:
    """:data:`MEL_SETTINGS`: the mel settings ``--set`` accepts (those of :class:`melfront.MelSpectrogram`)."""
    return tuple(_mel_default_config())


def _max_epochs() -> int:
    from ..study.preflight import MAX_EPOCHS
    return MAX_EPOCHS


def __getattr__(name: str):
    """``MEL_SETTINGS`` (the mel settings ``--set`` accepts; the rest are training settings) and ``MAX_EPOCHS``
    (:data:`melfront.study.preflight.MAX_EPOCHS`), computed on first use."""
    if name == "MEL_SETTINGS":
        return _mel_settings()
    if name == "MAX_EPOCHS":
        return _max_epochs()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def add_settings_args(p) -> None:
    """The common settings (:data:`SETTING_OPTIONS`) and ``--set KEY=VALUE``, in one group.

    Options not given stay None: the command fits them to the data (or takes its profile's).

    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_settings_args(p)
    >>> args = p.parse_args(["--hop", "160", "--lr", "1e-3", "--set", "fmin=50", "--set", "patience=5"])
    >>> settings_from_args(args)
    {'fmin': 50, 'patience': 5, 'hop_length': 160, 'lr': 0.001}
    """
    group = p.add_argument_group("settings", "mel and training settings; every one not given is fitted to the "
                                             "data (see --profile)")
    for flag, _, check, text in SETTING_OPTIONS:
        kind = str if flag in ("--optimizer", "--precision") else float if flag == "--lr" else int
        metavar = {"--sample-rate": "HZ", "--optimizer": "NAME", "--lr": "LR", "--precision": "P"}.get(flag, "N")
        group.add_argument(flag, type=kind, default=None, metavar=metavar, help=text)
    group.add_argument("--set", action="append", metavar="KEY=VALUE", default=None,
                       help="any other mel or training setting, e.g. fmin=50, patience=10, "
                            "model_options='{\"width\": 8}' (repeatable; value as JSON, else text; "
                            "model_options takes a whole dict, dotted keys such as model_options.width "
                            "are refused)")


def settings_from_args(args, extra_keys=()) -> dict:
    """The settings given on the command line, flat (``hop_length``, ``epochs``, ...), checked.

    ``--set`` keys must be mel or training settings, or one of ``extra_keys`` (a preset's own settings, e.g.
    tax2017's ``mst_patience``; checked by the preset) (ParameterError listing them); the options win over
    ``--set``.

    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_settings_args(p)
    >>> settings_from_args(p.parse_args(["--set", "epoch=3"]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    melfront.errors.ParameterError: --set: unknown setting 'epoch'; known: aggregation, batch_size, ...
    >>> settings_from_args(p.parse_args(["--epochs", "0"]))
    Traceback (most recent call last):
    ...
    melfront.errors.ParameterError: --epochs must be a positive integer, got 0
    """
    from ..train import TrainSettings
    given = key_values(getattr(args, "set", None), "--set")
    known = sorted(set(_mel_settings()) | set(TrainSettings.known()) | set(extra_keys))
    for key in given:
        if key not in known:
            raise ParameterError(f"--set: unknown setting {key!r}; known: {', '.join(known)}")
    for key, value in given.items():
        check_setting_type(f"--set {key}", key, value)
    for flag, key, check, _ in SETTING_OPTIONS:
        value = getattr(args, flag[2:].replace("-", "_"), None)
        if value is not None:
            value = check(flag, value)
            check_setting_type(flag, key, value)
            if key in given and given[key] != value:
                raise ParameterError(f"{flag} {value} and --set {key}={given[key]!r} disagree: give the setting once")
            given[key] = value
    return given


def check_setting_type(name: str, key: str, value) -> None:
    """ParameterError when ``value`` is not of the type of setting ``key`` (a mel setting: the type of
    :class:`melfront.MelSpectrogram`'s default; a training setting: :class:`melfront.train.TrainSettings`'
    field type); ranges are checked where the settings are used. ``model_options`` must be a mapping of
    option names; epochs are bounded by :data:`MAX_EPOCHS`.

    >>> check_setting_type("--set lr", "lr", 0.1)
    >>> check_setting_type("--set lr", "lr", "0.001")
    Traceback (most recent call last):
    ...
    melfront.errors.ParameterError: --set lr must be a number, got '0.001' (a string: write lr=0.001)
    >>> check_setting_type("--set model_options", "model_options", [1, 2])
    Traceback (most recent call last):
    ...
    melfront.errors.ParameterError: --set model_options must be a mapping of option names, e.g. {"width": 8}; got [1, 2]
    """
    import dataclasses

    from ..train import TrainSettings
    if key in _mel_settings():
        default = _mel_default_config().get(key)
        kinds = "float" if isinstance(default, float) else type(default).__name__ if default is not None else ""
        kinds += " | None" if key in ("fmax", "win_length", "norm") else ""
    else:
        kinds = {f.name: str(f.type) for f in dataclasses.fields(TrainSettings)}.get(key, "")
    if (value is None and ("None" in kinds or not kinds)) or key == "norm":  # norm: 'slaney', None or a number
        return
    if "dict" in kinds:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ParameterError(f"{name} must be a mapping of option names, e.g. {{\"width\": 8}}; got {value!r}")
        return
    base = kinds.split("|")[0].strip()
    ok = {"float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "bool": lambda v: isinstance(v, bool), "str": lambda v: isinstance(v, str)}.get(base)
    if ok is not None and not ok(value):
        what = {"float": "a number", "int": "an integer", "bool": "true or false", "str": "a text"}[base]
        hint = f" (a string: write {key}={value})" if isinstance(value, str) and base != "str" else ""
        raise ParameterError(f"{name} must be {what}, got {value!r}{hint}")
    if key in ("epochs", "max_epochs") and isinstance(value, int) and value > _max_epochs():
        raise ParameterError(f"{name} must be at most {_max_epochs()} epochs, got {value}")


def split_settings(given: dict) -> tuple[dict, dict]:
    """Flat settings -> ``(mel, train)``; ``n_mels`` is a mel setting (the mel config's wins in training).

    >>> split_settings({"hop_length": 160, "n_mels": 40, "epochs": 3})
    ({'hop_length': 160, 'n_mels': 40}, {'epochs': 3})
    """
    mel = {k: v for k, v in given.items() if k in _mel_settings()}
    return mel, {k: v for k, v in given.items() if k not in mel}
