"""Old vs new prototypical-network semantics (issue 21): the paired test-accuracy difference per n, with its CI.

Reads two finished studies of the same grid (same data, seed, subsets, n and runs, so each (fold, n, run) trains
on the same clips in both) that differ only in the protonet's training rules, e.g. ``pons2019-us8k`` as it is
now (the reference's: train-clip monitor, last weights, patch-grid epochs and queries, two passes, TF batch-norm
statistics, never-reset patience counter) and with melfront's former rules restored by ``--set`` (see
BENCHMARKS.md for the two commands). Prints new - old per n: mean, 95 % t-interval, pairs, paired t-test p, and
the epochs each side trained.

    python benchmarks/bench_protonet_semantics.py OLD_STUDY_DIR NEW_STUDY_DIR [--model protonet]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from melfront.report import paired_difference
from melfront.study import ResultStore


def _rows(folder: Path, label: str, model: str) -> list[dict]:
    rows = ResultStore(Path(folder) / "study.db", readonly=True).rows()
    out = []
    for r in rows:
        if r["model"] == model and r.get("status", "ok") == "ok":
            out.append(dict(r, frontend=label, epochs=(r.get("metrics") or {}).get("epochs")))
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old", help="study folder trained with the old semantics")
    p.add_argument("new", help="study folder trained with the new (reference) semantics")
    p.add_argument("--model", default="protonet")
    args = p.parse_args(argv)
    rows = _rows(args.old, "old", args.model) + _rows(args.new, "new", args.model)
    print(f"{args.model}: test accuracy, new - old (paired over (fold, run); same training clips)")
    print("| n | old % | new % | new - old (points) [95 % CI] | pairs | p | epochs old / new (median) |")
    print("|---|---|---|---|---|---|---|")
    for n in sorted({r["n"] for r in rows}):
        d = paired_difference(rows, args.model, n, "old", "new")
        if d is None:
            print(f"| {n} | - | - | no matching pairs | 0 | - | - |")
            continue
        acc = {s: np.mean([r["accuracy"] for r in rows if r["n"] == n and r["frontend"] == s]) for s in ("old", "new")}
        ep = {s: np.median([r["epochs"] for r in rows if r["n"] == n and r["frontend"] == s and r["epochs"]] or [0])
              for s in ("old", "new")}
        ci = "n/a" if d["ci"] is None else f"[{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}]"
        print(f"| {n} | {100 * acc['old']:.1f} | {100 * acc['new']:.1f} | {100 * d['mean']:+.1f} {ci} | {d['count']} "
              f"| {d['p']:.3f} | {ep['old']:.0f} / {ep['new']:.0f} |")


if __name__ == "__main__":
    main()
