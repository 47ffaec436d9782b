"""fp32 vs bf16 parity study (issue 20 item 3): the same grid trained twice, ``--precision fp32`` and ``bf16``.

Runs ``melfront compare`` twice with the same data, grid, seeds and settings (only ``--precision`` differs), then
pairs the two studies' rows by (model, frontend, n, fold, run) and prints, per model and frontend, the mean
accuracy of each, the mean paired difference bf16 - fp32 with its 95 % t interval
(:func:`melfront.report.stats.paired_interval`) and each study's wall time. Parity: every interval holds 0 and
is narrow against the frontends' own differences.

    .venv/bin/python benchmarks/bench_precision.py --dataset fsdd --root ../shared/data/fsdd \\
        --frontends "db,pcen(trainable=True)" --models sbcnn --n 20 --runs 10 -o studies/precision
    (any further option is passed to both `melfront compare` runs, e.g. --test-folds 4 for ESC-50 fold 4)
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default="studies/precision")
    args, rest = ap.parse_known_args()
    melfront = str(Path(sys.executable).parent / "melfront")
    walls = {}
    for precision in ("fp32", "bf16"):
        t = time.perf_counter()
        subprocess.run([melfront, "compare", *rest, "--precision", precision, "--quiet", "-o",
                        str(Path(args.output) / precision)], check=True)
        walls[precision] = time.perf_counter() - t
    from melfront.report.stats import paired_interval
    from melfront.study.store import ResultStore
    rows = {p: {(r["model"], r["frontend"], r["n"], r["fold"], r["run"]): r["accuracy"]
                for r in ResultStore(Path(args.output) / p / "study.db").rows()} for p in walls}
    keys = sorted(set(rows["fp32"]) & set(rows["bf16"]))
    print(f"wall: fp32 {walls['fp32']:.0f} s, bf16 {walls['bf16']:.0f} s ({walls['fp32'] / walls['bf16']:.2f}x); "
          f"{len(keys)} paired trials")
    print("| model | frontend | n | fp32 acc % | bf16 acc % | bf16 - fp32 (points) | 95 % CI |")
    print("|---|---|---|---|---|---|---|")
    for cell in sorted({k[:3] for k in keys}):
        ks = [k for k in keys if k[:3] == cell]
        a = [rows["fp32"][k] for k in ks]
        b = [rows["bf16"][k] for k in ks]
        ci = paired_interval(b, a)
        shown = "-" if ci is None else f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"
        print(f"| {cell[0]} | {cell[1]} | {cell[2]} | {100 * statistics.mean(a):.1f} | {100 * statistics.mean(b):.1f} | "
              f"{100 * (statistics.mean(b) - statistics.mean(a)):+.1f} | {shown} |")


if __name__ == "__main__":
    main()
