"""Training figures for BENCHMARKS.md ("Training"): FSDD (published split) and ESC-10 (within fold 4).

    .venv/bin/python benchmarks/bench_training.py fsdd  [--root ../shared/data/fsdd]  [--epochs 40]
    .venv/bin/python benchmarks/bench_training.py esc10 [--root ../shared/data/esc50-fold4] [--epochs 30]

Prints one JSON line per run (accuracy, mAP, epochs, seconds) and the machine's load average.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from melfront.data import dataset
from melfront.data.sampling import rng_for
from melfront.training import run_trial, split_folds

# FSDD: 8 kHz speech, 0.14-2.28 s. A 32 ms window (n_fft 256), 8 ms hop, 64 mel bands; 128-frame
# patches cover 1.02 s, shorter clips are repeat-padded (Pons et al. 2019).
FSDD_MEL = dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=64)
# ESC-10 at 22050 Hz: the Pons / Salamon & Bello setting, 128 bands, hop 512, 128-frame (2.97 s) patches.
ESC_MEL = dict(sample_rate=22050, n_fft=1024, hop_length=512, n_mels=128)


def machine() -> dict:
    return dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(), torch=torch.__version__,
                threads=torch.get_num_threads(), load_avg=os.getloadavg())


def fsdd(args):
    clips = dataset("fsdd", args.root)
    train, _, test = split_folds(clips, "test")
    t0 = time.perf_counter()
    r = run_trial(clips, frontend=args.frontend, model="sbcnn", train_clips=train, test_clips=test, mel=FSDD_MEL,
                  train=dict(epochs=args.epochs, n_mels=64, patch_frames=128, **json.loads(args.train)),
                  seed=args.seed, progress=not args.quiet)
    return dict(task="fsdd", frontend=args.frontend, model="sbcnn", seed=args.seed, wall_seconds=time.perf_counter() - t0,
                **{k: r[k] for k in ("accuracy", "map", "epochs", "n_train", "n_test", "train_seconds", "learned")},
                n_skipped=len(r["skipped"]))


def esc10(args):
    """Only fold 4 of ESC-50 is complete in ../shared/data/esc50-fold4: split its ESC-10 clips 50/50 per
    class, keeping clips of one source recording (src_file) on the same side."""
    clips = dataset("esc10", args.root)
    fold4 = clips.subset(c for c in clips if c.fold == 4)
    train, test = [], []
    for label in range(len(clips.classes)):
        sources = sorted({c.source_id for c in fold4 if c.label == label})
        order = rng_for("esc10-split", args.seed, label).permutation(len(sources))
        half = {sources[i] for i in order[: len(sources) // 2]}
        for c in fold4:
            if c.label == label:
                (train if c.source_id in half else test).append(c)
    t0 = time.perf_counter()
    r = run_trial(clips, frontend=args.frontend, model=args.model, train_clips=train, test_clips=test, mel=ESC_MEL,
                  train=dict(epochs=args.epochs, **json.loads(args.train)), seed=args.seed, progress=not args.quiet)
    return dict(task="esc10-fold4-split", frontend=args.frontend, model=args.model, seed=args.seed,
                wall_seconds=time.perf_counter() - t0,
                **{k: r[k] for k in ("accuracy", "map", "epochs", "n_train", "n_test", "train_seconds",
                                     "per_class_accuracy", "learned")}, n_skipped=len(r["skipped"]))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=["fsdd", "esc10"])
    p.add_argument("--root")
    p.add_argument("--frontend", default="db")
    p.add_argument("--model", default="sbcnn")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train", default="{}", help="extra training settings as JSON")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    if args.root is None:
        sub = "fsdd" if args.task == "fsdd" else "esc50-fold4"
        args.root = os.path.join(here, "..", "..", "shared", "data", sub)
    if args.epochs is None:
        args.epochs = 40 if args.task == "fsdd" else 30
    before = machine()
    result = fsdd(args) if args.task == "fsdd" else esc10(args)
    print(json.dumps(dict(result, machine_before=before, load_avg_after=os.getloadavg())))


if __name__ == "__main__":
    main()
