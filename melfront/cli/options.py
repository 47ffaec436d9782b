"""Argument groups shared by several commands, and the small parsers of their values.

>>> import argparse
>>> p = argparse.ArgumentParser()
>>> add_mel_args(p, MEL_DEFAULTS)
>>> vars(p.parse_args(["--hop", "256"]))
{'sample_rate': 22050, 'n_fft': 1024, 'hop': 256, 'n_mels': 128}
"""
from __future__ import annotations

import ast

from ..errors import ParameterError

__all__ = ["split_specs", "key_values", "int_list", "add_mel_args", "mel_from_args", "add_dataset_args", "add_split_args",
           "cache_arg", "MEL_DEFAULTS"]

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


def key_values(items, what: str) -> dict:
    """``["a=1", "b='x'"]`` -> ``{"a": 1, "b": "x"}`` (values are Python literals, else plain strings).

    >>> key_values(["epochs=3", "optimizer='adam'", "name=plain"], "--set")
    {'epochs': 3, 'optimizer': 'adam', 'name': 'plain'}
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
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()
    return out


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


def mel_from_args(args) -> dict:
    """The mel options given on the command line as a ``MelSpectrogram`` config subset (None ones left out).

    >>> import argparse
    >>> mel_from_args(argparse.Namespace(sample_rate=None, n_fft=512, hop=128, n_mels=None))
    {'n_fft': 512, 'hop_length': 128}
    """
    given = dict(sample_rate=args.sample_rate, n_fft=args.n_fft, hop_length=args.hop, n_mels=args.n_mels)
    return {k: v for k, v in given.items() if v is not None}


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
