"""The dry-run estimate (melfront.study.estimate) against measured CPU time, and the full-grid estimates.

    .venv/bin/python benchmarks/bench_estimate.py subgrid [--epochs 5] [--test-per-class 5] [--models M,..] [--data DIR]
    .venv/bin/python benchmarks/bench_estimate.py fullgrid [--data DIR]

``subgrid`` (a few minutes, one thread): a pons2019-us8k sub-grid of all four models (SB-CNN, VGG-32, TIMBRE,
the protonet's VGG-128) x both frontends (logeps, loglearn), n = 2, one run, test fold 1, fixed epochs, on a
UrbanSound8K-shaped folder of 4-s 44.1 kHz clips (10 classes; fold 1: ``--test-per-class`` test clips per class,
fold 2: 2 per class). It prices the grid as ``compare --dry-run`` does, then runs every trial for real in this
process and prints estimate vs measured CPU time (this process's user + system time) per model and in all; the
target is a ratio within 1/1.5 .. 1.5.

``fullgrid`` (a minute or two): the full pons2019-us8k and pons2019-tut dry-run estimates on header-only folders
of the real sets' shapes (US8K: 10 folds x 10 classes x 87 clips of 4 s; TUT 2017: 4,680 development and 1,620
evaluation clips of 10 s, 15 scenes), the clips written at 1 kHz (the estimate reads durations from headers).

Prints JSON lines (the machine first) and the dry-run text.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

from melfront.presets import get_preset
from melfront.study import run_study
from melfront.study.estimate import estimate_lines, estimate_study, machine
from melfront.train import run_trial


def _write_csv(path: Path, header, rows):
    import csv
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def us8k_folder(root: Path, per_fold: dict, seconds: float, sr: int, classes: int = 10, noise: bool = True):
    """UrbanSound8K layout: ``per_fold`` = {fold: clips per class}."""
    if (root / "metadata" / "UrbanSound8K.csv").exists():
        return root
    rows, rng = [], np.random.default_rng(0)
    for fold, count in per_fold.items():
        for k in range(classes):
            for i in range(count):
                fs = 100000 * fold + 1000 * k + i
                rows.append([f"{fs}-{k}-0-0.wav", fs, 0, seconds, 1, fold, k, f"class{k}"])
    t = np.arange(int(seconds * sr)) / sr
    for r in rows:
        path = root / "audio" / f"fold{r[5]}" / r[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        x = np.zeros(len(t), np.float32)
        if noise:  # a class tone in noise (content does not matter for timing, silence would for some paths)
            x = (0.05 * rng.standard_normal(len(t)) + 0.2 * np.sin(2 * np.pi * (200 + 150 * r[6]) * t))
        soundfile.write(str(path), x.astype(np.float32), sr)
    _write_csv(root / "metadata" / "UrbanSound8K.csv",
               ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"], rows)
    return root


def tut_folder(root: Path, dev_per_scene=312, eval_per_scene=108, scenes=15, seconds=10.0, sr=1000):
    """TUT Acoustic Scenes 2017 layout (development with 4 evaluate lists, evaluation set), silent clips."""
    from melfront.data.tut import DEV_FOLDER, EVAL_FOLDER
    dev, ev = root / DEV_FOLDER, root / EVAL_FOLDER
    if (ev / "meta.txt").exists():
        return root
    zeros = np.zeros(int(seconds * sr), np.float32)
    meta, folds = [], {f: [] for f in range(1, 5)}
    for k in range(scenes):
        for i in range(dev_per_scene):
            src = f"s{k:02d}x{i // 12:03d}"  # a location: 12 ten-second segments of one recording
            name = f"audio/{src}_{i % 12}.wav"
            (dev / "audio").mkdir(parents=True, exist_ok=True)
            soundfile.write(str(dev / name), zeros, sr)
            meta.append(f"{name}\tscene{k}\t{src}")
            folds[1 + (i // 12) % 4].append(f"{name}\tscene{k}")
    (dev / "meta.txt").write_text("\n".join(meta) + "\n")
    (dev / "evaluation_setup").mkdir(exist_ok=True)
    for f, lines in folds.items():
        (dev / "evaluation_setup" / f"fold{f}_evaluate.txt").write_text("\n".join(lines) + "\n")
    lines = []
    (ev / "audio").mkdir(parents=True, exist_ok=True)
    for k in range(scenes):
        for i in range(eval_per_scene):
            name = f"audio/e{k:02d}_{i:04d}.wav"
            soundfile.write(str(ev / name), zeros, sr)
            lines.append(f"{name}\tscene{k}")
    (ev / "meta.txt").write_text("\n".join(lines) + "\n")
    return root


def subgrid(args):
    data = Path(args.data or tempfile.mkdtemp(prefix="bench-estimate-"))
    os.environ["MELFRONT_CACHE"] = str(data / "cache")  # features computed fresh (and counted once)
    root = us8k_folder(data / "UrbanSound8K", {1: args.test_per_class, 2: 2}, 4.0, 44100)
    preset = get_preset("pons2019-us8k")
    overrides = {"n_per_class": [2], "runs": {"default": 1}, "test_folds": [1], "epochs": args.epochs}
    if args.models:
        overrides["models"] = args.models.split(",")
    plan = preset.plan(root=root, overrides=overrides)
    config, clips = plan.details["config"], plan.details["clips"]
    t0 = time.process_time()
    est = estimate_study(config, clips, plan.grid)
    timing = time.process_time() - t0
    print("\n".join(estimate_lines(est)))
    measured: dict = {}

    def timed(clips, **kw):
        c0 = time.process_time()
        try:
            return run_trial(clips, **kw)
        finally:
            measured[kw["model"]] = measured.get(kw["model"], 0.0) + time.process_time() - c0

    out = data / "study"
    if (out / "study.db").exists():
        raise SystemExit(f"{out} holds a study already: give a fresh --data folder")
    run_study(config, out / "study.db", jobs=1, trial_fn=timed, quiet=True)
    rows = []
    for model, m in est.per_model.items():
        e = m["train_low"] + m["evaluation"]
        rows.append(dict(model=model, estimate_s=round(e, 1), measured_cpu_s=round(measured.get(model, 0.0), 1),
                         ratio=round(e / max(measured.get(model, 0.0), 1e-9), 2)))
        print(json.dumps(rows[-1]))
    total_e, total_m = est.total(), sum(measured.values())
    print(json.dumps(dict(total_estimate_s=round(total_e, 1), total_measured_cpu_s=round(total_m, 1),
                          ratio=round(total_e / max(total_m, 1e-9), 2), timing_cpu_s=round(timing, 1),
                          within_1_5x=1 / 1.5 <= total_e / max(total_m, 1e-9) <= 1.5)))


def fullgrid(args):
    data = Path(args.data or tempfile.mkdtemp(prefix="bench-estimate-"))
    us8k = us8k_folder(data / "UrbanSound8K", {f: 87 for f in range(1, 11)}, 4.0, 1000, noise=False)
    tut = tut_folder(data / "TUT")
    for name, root in (("pons2019-us8k", us8k), ("pons2019-tut", tut))[args.skip:]:
        preset = get_preset(name)
        t0 = time.perf_counter()
        plan = preset.plan(root=root)
        print(preset.dry_run(plan))
        print(json.dumps(dict(preset=name, dry_run_wall_s=round(time.perf_counter() - t0, 1))))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["subgrid", "fullgrid"])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--test-per-class", type=int, default=5)
    p.add_argument("--models", help="subgrid: comma-separated models (default: the preset's four)")
    p.add_argument("--data", help="folder for the generated data (default: a new temporary folder)")
    p.add_argument("--skip", type=int, default=0, help=argparse.SUPPRESS)  # fullgrid: skip the first N presets
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    print(json.dumps(dict(machine=machine(), load_avg=os.getloadavg(), python=sys.version.split()[0])))
    {"subgrid": subgrid, "fullgrid": fullgrid}[args.what](args)


if __name__ == "__main__":
    main()
