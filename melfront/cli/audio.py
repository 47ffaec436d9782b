"""Commands that look at audio and frontends: ``show``, ``frontends``, ``equivalence``.

>>> [name for name, _, _ in COMMANDS]
['show', 'frontends', 'equivalence']
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

from ..errors import ParameterError
from .options import MEL_DEFAULTS, add_mel_args, split_specs

__all__ = ["COMMANDS"]


def _add_show(sub):
    p = sub.add_parser("show", help="draw clips' waveforms and mel spectrograms (one panel per frontend)",
                       description="Draw each clip's waveform and its mel spectrogram in dB, plus one panel per "
                                   "frontend given with --frontends, into one PNG.")
    p.add_argument("audio", nargs="+", help="audio files (WAV, FLAC, OGG, ...)")
    p.add_argument("-o", "--output", default="show.png", help="PNG to write (default: show.png)")
    add_mel_args(p, MEL_DEFAULTS)
    p.add_argument("--frontends", default="",
                   help="comma-separated frontend specs, one extra panel each, e.g. \"db,pcen,pcen(init='loop'),power\"")


def _run_show(args):
    """Each file on its own: an unreadable one is one line on stderr (show_clips skips it with a warning), the
    others are drawn; the exit status is 1 when any file was skipped."""
    from ..plotting import show_clips
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = show_clips(args.audio, args.output, sample_rate=args.sample_rate, n_fft=args.n_fft,
                         hop_length=args.hop, n_mels=args.n_mels, frontends=split_specs(args.frontends))
    skipped = [str(w.message) for w in caught if str(w.message).startswith("melfront show: skipped ")]
    for w in caught:  # other warnings go on as they came
        if str(w.message) not in skipped:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    for line in skipped:
        print(line, file=sys.stderr)
    print(f"wrote {out}")
    if skipped:
        print(f"melfront show: {len(skipped)} of {len(args.audio)} file(s) skipped", file=sys.stderr)
        return 1  # as melfront.cli.train.EXIT_SOME_FAILED
    return 0


def _add_frontends(sub):
    sub.add_parser("frontends", help="list the frontend names usable in specs, with a one-line description",
                   description="List the frontend names of melfront.frontend(spec) specs (e.g. \"db\", "
                               "\"pcen(trainable=True, per_band=True, init='loop')\", \"stack(db, pcen, power)\").")


def _run_frontends(args):
    from ..frontends import FRONTENDS
    width = max(len(n) for n in FRONTENDS)
    for name, entry in FRONTENDS.items():
        print(f"{name:<{width}}  {entry.description}")
    print("\nArguments go in parentheses as Python literals, e.g. pcen(trainable=True, per_band=True, init='loop');")
    print("stack(a, b, ...) makes channels, chain(a, b) or a+b applies in sequence.")


def _add_equivalence(sub):
    p = sub.add_parser("equivalence", help="figures for the Dörfler-Bammer-Grill equivalences (windows; mel vs adaptive filterbank)",
                       description="Write two PNGs into DIR: window_equivalence.png (Figure 1 of Dörfler, Bammer & Grill "
                                   "2017 on a synthetic signal of damped notes: spectrograms with a 2048- and a 512-sample "
                                   "window, each convolved with its kernel and max-pooled, and their difference) and "
                                   "mel_vs_adaptive.png (a MelSpectrogram against the AdaptiveFilterbank designed from it, "
                                   "on --audio or a generated clip).")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the PNGs")
    p.add_argument("--audio", default=None, help="audio file for the mel-vs-adaptive figure (default: a generated clip)")
    add_mel_args(p, MEL_DEFAULTS)
    p.add_argument("--long-window", type=int, default=2048, help="long Hann window g in samples (default 2048)")
    p.add_argument("--short-window", type=int, default=512, help="short Hann window h in samples (default 512)")
    p.add_argument("--duration", type=float, default=1.5, help="length of the damped-notes signal in s (default 1.5)")


def _run_equivalence(args):
    import torch
    from ..adaptive import demo_clip
    from ..audio import load_audio
    from ..plotting import plot_mel_vs_adaptive, plot_window_equivalence
    out = Path(args.output)
    if not 0 < args.short_window < args.long_window:
        raise ParameterError(f"need 0 < --short-window < --long-window, got {args.short_window}, {args.long_window}")
    fig1 = plot_window_equivalence(out / "window_equivalence.png", sample_rate=args.sample_rate,
                                   long_window=args.long_window, short_window=args.short_window,
                                   hop_length=max(1, args.short_window // 16), duration=args.duration)
    print(f"wrote {fig1['path']}  (relative residual {fig1['residual']:.2e} on the lattice, "
          f"{fig1['pooled_residual']:.2e} after pooling)")
    if args.audio:
        wave, sr = load_audio(args.audio, sample_rate=args.sample_rate)
        name = Path(args.audio).name
    else:
        wave, sr, name = demo_clip(args.sample_rate), args.sample_rate, "generated clip"
    fig2 = plot_mel_vs_adaptive(out / "mel_vs_adaptive.png", torch.as_tensor(wave), sr, n_fft=args.n_fft,
                                hop_length=args.hop, n_mels=args.n_mels, title=name)
    print(f"wrote {fig2['path']}  (median relative error {fig2['median_relative_error']:.2%}, "
          f"dB correlation {fig2['db_correlation']:.4f})")


#: ``(name, add_parser, run)`` of this module's commands, in ``melfront --help`` order.
COMMANDS = [("show", _add_show, _run_show), ("frontends", _add_frontends, _run_frontends),
            ("equivalence", _add_equivalence, _run_equivalence)]
