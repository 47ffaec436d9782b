"""Commands that fetch or make data sets: ``download``, ``synth``.

>>> [name for name, _, _ in COMMANDS]
['download', 'synth']
"""
from __future__ import annotations

import sys

from ..errors import DownloadError

__all__ = ["COMMANDS"]


def _add_download(sub):
    p = sub.add_parser("download", help="download and extract a public data set",
                       description="Fetch a data set from its canonical public address (resuming an interrupted "
                                   "transfer, verifying size/checksum where known) and extract it safely into --root, "
                                   "so that melfront.data.dataset(NAME, ROOT) reads it. Exit status 1 when the "
                                   "transfer fails, 2 for other errors (e.g. an unsafe archive).")
    p.add_argument("name", choices=["esc50", "esc10", "urbansound8k", "tut2017", "fsdd"], help="data set")
    p.add_argument("--root", required=True, help="folder to download and extract into")
    p.add_argument("--mirror", default=None, help="base URL of a mirror holding the same archive names")
    p.add_argument("--delete-archives", action="store_true", help="delete each archive once extracted")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _run_download(args):
    from ..data.download import download_dataset
    try:
        root = download_dataset(args.name, args.root, progress=not args.quiet,
                                keep_archives=not args.delete_archives, mirror=args.mirror)
    except DownloadError as exc:  # a failed transfer (network, size, checksum): exit status 1, worth retrying
        print(f"melfront download: error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.name} is in {root}")


def _add_synth(sub):
    p = sub.add_parser("synth", help="write the synthetic field-recording set (ESC-50-like layout)",
                       description="Generate the synthetic field-recording set (animal-like and mechanical events "
                                   "at random SNR and gain in noisy backgrounds) as audio/*.wav + meta/esc50.csv.")
    p.add_argument("--root", required=True, help="folder to write (audio/, meta/)")
    p.add_argument("--n-classes", type=int, default=10, help="number of classes (default 10)")
    p.add_argument("--clips-per-class", type=int, default=40, help="clips per class (default 40)")
    p.add_argument("--duration", type=float, default=3.0, help="clip length in seconds (default 3.0)")
    p.add_argument("--sample-rate", type=int, default=22050, help="Hz (default 22050)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--n-folds", type=int, default=5, help="number of folds (default 5)")
    p.add_argument("--snr-db", type=float, nargs=2, default=(-10.0, 20.0), metavar=("MIN", "MAX"),
                   help="event-to-background ratio range in dB (default -10 20)")
    p.add_argument("--gain-db", type=float, nargs=2, default=(-20.0, 20.0), metavar=("MIN", "MAX"),
                   help="overall gain range in dB (default -20 20)")


def _run_synth(args):
    from ..data.synth import load_synth
    clips = load_synth(args.root, n_classes=args.n_classes, clips_per_class=args.clips_per_class,
                       duration=args.duration, sample_rate=args.sample_rate, seed=args.seed, n_folds=args.n_folds,
                       progress=True, snr_db=tuple(args.snr_db), gain_db=tuple(args.gain_db))
    print(f"wrote {len(clips)} clips of {len(clips.classes)} classes to {clips.root}")


#: ``(name, add_parser, run)`` of this module's commands, in ``melfront --help`` order.
COMMANDS = [("download", _add_download, _run_download), ("synth", _add_synth, _run_synth)]
