"""Feature cache: first pass (compute + store) vs second pass (load) over real data sets.

For each repetition a fresh cache folder is made, then pass 1 (cold cache) and pass 2 (warm cache)
run back to back, so that machine load affects both alike; medians over repetitions are reported.
The audio files themselves are in the OS page cache after the first repetition (as they are for
any repeated run), so pass 1 times mostly computation (decode, resample, STFT, mel) and the write.

    .venv/bin/python benchmarks/bench_cache.py [--data ../shared/data] [--reps 3]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from melfront.data import FeatureCache, dataset, load_features

SETS = {
    "esc50-fold4": ("esc50", dict(sample_rate=22050, n_fft=1024, hop_length=512, n_mels=128)),
    "fsdd": ("fsdd", dict(sample_rate=8000, n_fft=256, hop_length=80, n_mels=40)),
}


def _pass(clips, cfg, root):
    cache = FeatureCache(root)
    t = time.perf_counter()
    feats, kept, skipped = load_features(clips, cfg, cache=cache, progress=False)
    return time.perf_counter() - t, feats, kept, skipped, cache


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| data set | clips | mel parameters | pass 1 (cold) s | pass 2 (warm) s | speed-up | ms/clip warm | cache size | skipped |")
    print("|---|---|---|---|---|---|---|---|---|")
    for folder, (name, cfg) in SETS.items():
        clips = dataset(name, Path(args.data) / folder)
        cold, warm = [], []
        for _ in range(args.reps):
            with tempfile.TemporaryDirectory(prefix="melfront-bench-") as tmp:
                t1, f1, kept, skipped, c1 = _pass(clips, cfg, tmp)
                t2, f2, _, _, c2 = _pass(clips, cfg, tmp)
                assert c2.hits == len(kept) and c2.misses == 0
                assert all(torch.equal(a, b) for a, b in zip(f1, f2))
                size = sum(p.stat().st_size for p in Path(tmp).rglob("*.npy"))
            cold.append(t1)
            warm.append(t2)
        c, w = statistics.median(cold), statistics.median(warm)
        params = f"sr {cfg['sample_rate']}, n_fft {cfg['n_fft']}, hop {cfg['hop_length']}, {cfg['n_mels']} mels"
        print(f"| {folder} | {len(clips)} | {params} | {c:.2f} | {w:.3f} | {c / w:.0f}x | {1000 * w / len(clips):.2f} "
              f"| {size / 2**20:.1f} MiB | {len(skipped)} |", flush=True)
        print(f"<!-- {folder}: cold {[round(x, 2) for x in cold]}, warm {[round(x, 3) for x in warm]} -->")


if __name__ == "__main__":
    main()
