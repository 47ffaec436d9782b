"""The ``melfront`` command line.

Each command is a pair: ``_add_<name>(subparsers)`` declares its arguments and
``_run_<name>(args)`` does the work. Heavy imports happen inside ``_run_*`` so that
``melfront --help`` stays fast.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


# --------------------------------------------------------------------------------------------
# show
# --------------------------------------------------------------------------------------------
def _add_show(sub):
    p = sub.add_parser("show", help="draw clips' waveforms and mel spectrograms (one panel per frontend)",
                       description="Draw each clip's waveform and its mel spectrogram in dB, plus one panel per "
                                   "frontend given with --frontends, into one PNG.")
    p.add_argument("audio", nargs="+", help="audio files (WAV, FLAC, OGG, ...)")
    p.add_argument("-o", "--output", default="show.png", help="PNG to write (default: show.png)")
    p.add_argument("--sample-rate", type=int, default=22050, help="resample to this rate in Hz (default 22050)")
    p.add_argument("--n-fft", type=int, default=1024, help="FFT size in samples (default 1024)")
    p.add_argument("--hop", type=int, default=512, help="hop length in samples (default 512)")
    p.add_argument("--n-mels", type=int, default=128, help="number of mel bands (default 128)")
    p.add_argument("--frontends", default="",
                   help="comma-separated frontend specs, one extra panel each, e.g. \"db,pcen,pcen(init='loop'),power\"")


def _run_show(args):
    from .plotting import show_clips
    out = show_clips(args.audio, args.output, sample_rate=args.sample_rate, n_fft=args.n_fft,
                     hop_length=args.hop, n_mels=args.n_mels, frontends=split_specs(args.frontends))
    print(f"wrote {out}")


def split_specs(text: str) -> list[str]:
    """Split a comma-separated list of frontend specs, keeping commas inside parentheses."""
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


# --------------------------------------------------------------------------------------------
# Registry: add new commands here, in the order `melfront --help` lists them.
# --------------------------------------------------------------------------------------------
COMMANDS = [
    ("show", _add_show, _run_show),
]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = argparse.ArgumentParser(
        prog="melfront",
        description="Mel-spectrogram frontends for neural audio classifiers: look at them, train with them, compare them.")
    parser.add_argument("--version", action="version", version=f"melfront {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, add, run in COMMANDS:
        add(sub)
        sub.choices[name].set_defaults(_run=run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    from .audio import AudioError
    try:
        result = args._run(args)
    except (AudioError, FileNotFoundError, ValueError) as exc:
        print(f"melfront {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"melfront {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
