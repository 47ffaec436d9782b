"""Peak memory (maximum resident set size) and wall time of ``load_audio``, the feature cache,
``melfront show`` and ``melfront predict`` on one long clip (default: 2 hours at 22050 Hz, mono FLAC).

Each measurement is its own process run under ``/usr/bin/time -v`` ("Maximum resident set size",
"Elapsed (wall clock) time"), one at a time. ``--tree`` runs another copy of the package (e.g. the
last commit, for "before" numbers: ``git archive HEAD melfront | tar -x -C /tmp/before``); predict
first trains a tiny run (synthetic folder, 1 epoch) with the same tree.

    .venv/bin/python benchmarks/bench_memory.py [--clip /tmp/long.flac] [--hours 2] [--tree DIR]
                                                [--only load_audio cache show predict]
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SAMPLE_RATE = 22050
MEL = dict(sample_rate=SAMPLE_RATE, n_fft=1024, hop_length=512, n_mels=128)  # show's and the cache's defaults


def make_clip(path: Path, hours: float, sample_rate: int = SAMPLE_RATE, block_seconds: int = 60) -> Path:
    """Write a mono 16-bit FLAC of noise with slow level changes and tones, block by block (bounded memory)."""
    import soundfile as sf
    rng = np.random.default_rng(0)
    n_blocks = int(round(hours * 3600 / block_seconds))
    block = block_seconds * sample_rate
    with sf.SoundFile(path, "w", samplerate=sample_rate, channels=1, subtype="PCM_16", format="FLAC") as f:
        for b in range(n_blocks):
            t = (np.arange(block) + b * block) / sample_rate
            level = 0.05 * (1.5 + np.sin(2 * np.pi * t / 600.0))
            tone = 0.2 * np.sin(2 * np.pi * (440.0 + 200 * np.sin(2 * np.pi * t / 97.0)) * t) * (np.sin(t) > 0.5)
            f.write((level * rng.standard_normal(block) + tone).astype(np.float32))
    return path


_SNIPPETS = {
    "load_audio": "from melfront import load_audio\nw, sr = load_audio({clip!r}, sample_rate={sr})\n"
                  "print(w.shape, w.dtype)",
    "cache": "from melfront.data import load_features\n"
             "f, kept, skipped = load_features([{clip!r}], {mel!r}, cache={cache!r}, progress=False)\n"
             "print(f[0].shape, skipped)",
    "show": "import sys\nfrom melfront.cli import main\nsys.exit(main(['show', {clip!r}, '-o', {png!r}]))",
    "train": "import sys\nfrom melfront.cli import main\n"
             "sys.exit(main(['train', '--dataset', 'synth', '--root', {synth!r}, '--dataset-option', 'n_classes=2',"
             " '--dataset-option', 'clips_per_class=4', '--dataset-option', 'n_folds=2', '--no-cache',"
             " '--test-fold', '2', '--device', 'cpu', '--model', 'vgg', '--epochs', '1', '--quiet', '-o', {run!r}]))",
    "predict": "import sys\nfrom melfront.cli import main\n"
               "sys.exit(main(['predict', {run!r}, {clip!r}, '--device', 'cpu', '--top-k', '2']))",
}


def measure(name: str, code: str, tree: str | None, cwd: Path) -> dict:
    """Run ``code`` in a fresh Python under ``/usr/bin/time -v`` in ``cwd`` (not the repository, whose
    ``melfront/`` would shadow ``tree``): peak RSS (GB), wall time (s), exit status."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"), MPLBACKEND="Agg")
    if tree:
        env["PYTHONPATH"] = tree + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, cwd=cwd)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", proc.stderr)
    seconds = 0.0
    for part in (wall.group(1).split(":") if wall else []):
        seconds = seconds * 60 + float(part)
    tail = (proc.stdout.strip().splitlines() or [""])[-1][:80]
    if proc.returncode:
        tail = (proc.stderr.strip().splitlines() or [""])[-1][:120] if not rss else \
            [ln for ln in proc.stderr.splitlines() if "Command exited" in ln or "Error" in ln][:1]
    return dict(name=name, gb=int(rss.group(1)) / 1e6 if rss else float("nan"), seconds=seconds,
                rc=proc.returncode, out=tail)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip", default="/tmp/melfront-2h.flac", help="long clip (made if missing)")
    p.add_argument("--hours", type=float, default=2.0, help="length of a clip made here")
    p.add_argument("--tree", default=None, help="folder holding the melfront package to measure (default: installed)")
    p.add_argument("--only", nargs="*", default=["load_audio", "cache", "show", "predict"])
    args = p.parse_args(argv)
    clip = Path(args.clip)
    if not clip.exists():
        print(f"writing {clip} ({args.hours} h at {SAMPLE_RATE} Hz)", flush=True)
        make_clip(clip, args.hours)
    work = Path(tempfile.mkdtemp(prefix="melfront-bench-memory-"))
    fill = dict(clip=str(clip), sr=SAMPLE_RATE, mel=MEL, cache=str(work / "cache"), png=str(work / "show.png"),
                synth=str(work / "synth"), run=str(work / "run"))
    rows = []
    for name in args.only:
        if name == "predict":
            trained = measure("train (tiny, for predict)", _SNIPPETS["train"].format(**fill), args.tree, work)
            if trained["rc"]:
                rows.append(trained)
                continue
        rows.append(measure(name, _SNIPPETS[name].format(**fill), args.tree, work))
        r = rows[-1]
        print(f"{r['name']}: {r['gb']:.2f} GB peak, {r['seconds']:.1f} s, exit {r['rc']} {r['out']}", flush=True)
    tree = args.tree or "installed"
    print(f"\nclip: {clip} ({clip.stat().st_size / 1e6:.0f} MB), tree: {tree}, load: {os.getloadavg()}\n")
    print("| step | peak RSS (GB) | wall (s) |\n|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['gb']:.2f} | {r['seconds']:.1f} |" + ("" if r["rc"] == 0 else f" exit {r['rc']}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
