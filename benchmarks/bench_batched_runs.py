"""Batched runs vs one run after another: trials per hour of one cell at n = 1, 10, 100 (issue 20 item 2).

A cell of ``--runs`` SB-CNN + loglearn runs (Pons et al.'s settings: 10 classes, 128 x 128 patches, one random
patch per clip per epoch, batch 256, SGD lr 0.1, clipping 5) on synthetic mel features, trained for
``--epochs`` epochs one run after another (:meth:`melfront.train.Trainer.fit`) and as one stacked model
(:class:`melfront.train.batched.BatchedRuns`), interleaved, medians over ``--reps``. Reports seconds per run-epoch
and the implied trials per hour of training at Pons et al.'s 200 epochs (evaluation excluded: it does not
depend on n). One intra-op thread unless ``--threads``; ``--device cuda`` where a GPU is present.

    .venv/bin/python benchmarks/bench_batched_runs.py [--n 1 10 100] [--runs 4] [--epochs 1] [--reps 3]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from melfront.train import Trainer, build_classifier, resolve_settings
from melfront.train.batched import BatchedRuns

MEL = dict(sample_rate=44100, n_fft=2048, hop_length=1024, n_mels=128)


def _cell(n, runs, epochs, device):
    s = resolve_settings("sbcnn", dict(epochs=epochs))
    made = []
    for k in range(runs):
        torch.manual_seed(k)
        clf = build_classifier("loglearn", "sbcnn", 10, MEL, 128)[0]
        g = torch.Generator().manual_seed(k)
        feats = [torch.rand(128, 173, generator=g) + 1e-4 for _ in range(10 * n)]
        made.append((clf, s, k, feats, [i % 10 for i in range(10 * n)]))
    return made


def _alone(cell, device):
    t = time.perf_counter()
    for clf, s, seed, feats, labels in cell:
        Trainer(copy.deepcopy(clf), s, seed=seed, device=device, progress=False).fit(feats, labels)
    return time.perf_counter() - t


def _batched(cell, device):
    trainers = [Trainer(copy.deepcopy(clf), s, seed=seed, device=device, progress=False) for clf, s, seed, _, _ in cell]
    t = time.perf_counter()
    BatchedRuns(trainers).fit([c[3] for c in cell], [c[4] for c in cell])
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1, 10, 100])
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), device {args.device}, {args.runs} runs per cell, "
          f"{args.epochs} epoch(s), medians of {args.reps}")
    print("| n per class | patches/step | alone s/run-epoch | batched s/run-epoch | speed-up | "
          "trials/h alone (200 ep) | trials/h batched |")
    print("|---|---|---|---|---|---|---|")
    for n in args.n:
        cell = _cell(n, args.runs, args.epochs, args.device)
        _batched(cell, args.device)  # warm-up (vmap tracing, allocator)
        a, b = [], []
        for _ in range(args.reps):
            a.append(_alone(cell, args.device))
            b.append(_batched(cell, args.device))
        per = args.runs * args.epochs
        sa, sb = statistics.median(a) / per, statistics.median(b) / per
        print(f"| {n} | {min(10 * n, 256)} | {sa:.3f} | {sb:.3f} | {sa / sb:.2f}x | {3600 / (200 * sa):.1f} | "
              f"{3600 / (200 * sb):.1f} |")


if __name__ == "__main__":
    main()
