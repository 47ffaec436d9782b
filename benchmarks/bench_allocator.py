"""glibc allocator tuning (melfront/runtime.py): a plain SB-CNN training loop with and without it (issue 20 item 3).

Each measurement is a fresh process (``python benchmarks/bench_allocator.py --child ...``) running ``--steps`` SGD
steps of SB-CNN (128 x 128 patches, batch ``--batch``, loglearn frontend, one thread) and ``--eval`` no-grad
forward passes of the same batch; the child reports its wall time (from start-up), user and system CPU time and peak
resident size (``getrusage(RUSAGE_SELF)``). "system": ``MELFRONT_MALLOC=system`` (glibc's defaults);
"tuned": :func:`melfront.runtime.tune_allocator` at start (what the CLI and every Trainer do). Interleaved,
medians over ``--reps``.

    .venv/bin/python benchmarks/bench_allocator.py [--steps 20] [--batch 100] [--reps 3]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


T0 = time.perf_counter()


def child(steps: int, batch: int, evals: int) -> None:
    import torch
    from melfront.runtime import tune_allocator
    from melfront.train import build_classifier
    if os.environ.get("MELFRONT_MALLOC") != "system":
        tune_allocator()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    mel = dict(sample_rate=44100, n_fft=2048, hop_length=1024, n_mels=128)
    clf = build_classifier("loglearn", "sbcnn", 10, mel, 128)[0]
    opt = torch.optim.SGD(clf.parameters(), lr=0.01)
    x, y = torch.rand(batch, 128, 128) + 1e-4, torch.randint(0, 10, (batch,))
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(clf(x), y).backward()
        opt.step()
    clf.eval()
    with torch.no_grad():
        for _ in range(evals):
            clf(x)
    use = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps(dict(wall=time.perf_counter() - T0, user=use.ru_utime, sys=use.ru_stime,
                          rss=use.ru_maxrss / 1024)))  # ru_maxrss: KiB on Linux


def measure(mode: str, args) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.pop("MELFRONT_MALLOC", None)
    if mode == "system":
        env["MELFRONT_MALLOC"] = "system"
    out = subprocess.run([sys.executable, __file__, "--child", str(args.steps), str(args.batch), str(args.eval)],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*map(int, sys.argv[2:5]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--eval", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    runs = {"system": [], "tuned": []}
    for _ in range(args.reps):
        for mode in ("system", "tuned"):
            runs[mode].append(measure(mode, args))
    print(f"SB-CNN, {args.steps} steps of batch {args.batch} + {args.eval} evaluations, 1 thread, "
          f"medians of {args.reps} fresh processes")
    print("| allocator | wall s | user s | sys s | peak RSS MiB |")
    print("|---|---|---|---|---|")
    for mode, rs in runs.items():
        med = {k: statistics.median(r[k] for r in rs) for k in ("wall", "user", "sys", "rss")}
        print(f"| {mode} | {med['wall']:.1f} | {med['user']:.1f} | {med['sys']:.1f} | {med['rss']:.0f} |")


if __name__ == "__main__":
    main()
