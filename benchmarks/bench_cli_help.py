"""Wall time of ``melfront --help`` and ``melfront COMMAND --help`` (the installed entry point), beside the
interpreter's own start (``python -c pass``), interleaved, medians of ``--repeats`` runs each.

    .venv/bin/python benchmarks/bench_cli_help.py [--repeats 5] [--commands train,compare]

Also lists the modules of torch, numpy, scipy and matplotlib that ``--help`` imported (none expected:
tests/test_cli_help.py asserts that). Never run by the tests.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MELFRONT = Path(sys.executable).with_name("melfront")


def _seconds(argv) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=ROOT)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--commands", default="train,compare,show")
    a = ap.parse_args()
    runs = {"python -c pass": [sys.executable, "-c", "pass"], "melfront --help": [str(MELFRONT), "--help"]}
    runs.update({f"melfront {c} --help": [str(MELFRONT), c, "--help"] for c in a.commands.split(",") if c})
    times = {name: [] for name in runs}
    for _ in range(a.repeats):  # interleaved: load on the machine affects every row alike
        for name, argv in runs.items():
            times[name].append(_seconds(argv))
    for name, ts in times.items():
        print(f"{name:32s} median {statistics.median(ts):.3f} s  (min {min(ts):.3f}, max {max(ts):.3f})")
    probe = ("import sys; from melfront.cli import build_parser; build_parser().format_help(); "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'numpy', 'scipy', 'matplotlib'}))")
    print("heavy modules imported by the parser:", subprocess.run([sys.executable, "-c", probe], capture_output=True,
                                                                   text=True, check=True, cwd=ROOT).stdout.strip())


if __name__ == "__main__":
    main()
