"""One pons2019-us8k SB-CNN trial pair run by ``melfront compare`` against a plain fp32 PyTorch loop (issue 20).

The work (issue 20, "Done means"): the pons2019-us8k preset's SB-CNN (input batch norm, SGD lr 0.1, L2 0.001
inside the clipped gradient, clipping 5, batch 256, one random 128-frame patch per clip per epoch, 128 mels,
n_fft = hop = 1024 at 44.1 kHz) with the two frontends of the pair (logeps, loglearn); n = 10 clips per class,
10 epochs, one run, test fold 1, hop-1 evaluation (every 128-frame patch one frame apart) of 80 clips of 4 s
(46 patches each), mean of the patches' probabilities per clip.

- melfront: ``melfront compare --preset pons2019-us8k --root DIR --models sbcnn --n 10 --runs 1 --test-folds 1
  --epochs 10 --jobs 1 --quiet`` in a fresh process with a fresh feature cache (the study runs its trials with
  one intra-op thread);
- the loop: a fresh process, one thread, glibc's default allocator (``MELFRONT_MALLOC=system``), features from
  ``torch.stft`` and a mel matrix, a plain ``nn.Sequential`` SB-CNN trained for the same steps and evaluated on
  every hop-1 patch in batches of 64, frontends applied per patch (no melfront code in its timed path but the
  data reading and the mel filterbank matrix).

The data: a US8K-shaped folder (``audio/fold{k}/{fsID}-{classID}-0-{i}.wav``, ``metadata/UrbanSound8K.csv`` as
:mod:`melfront.data.urbansound8k` reads it) of synthetic 4-s 44.1 kHz clips: fold 1 the 80 test clips, folds 2-3
the training pool (``--train-per-class`` per class). Both sides run interleaved, ``--reps`` times; the medians and
their ratio are printed (target: melfront <= 0.40 x the loop).

    .venv/bin/python benchmarks/bench_pons_trial.py [--reps 3] [--keep DIR]
    .venv/bin/python benchmarks/bench_pons_trial.py --quick     # tiny: checks that it runs (~1 min)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

SR, SECONDS, N_CLASSES = 44100, 4.0, 10
CLASSES = ["air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling", "engine_idling", "gun_shot",
           "jackhammer", "siren", "street_music"]


def make_folder(root: Path, test_per_class: int, train_per_class: int, seed: int = 0) -> None:
    """Synthetic UrbanSound8K layout: fold 1 = test clips, folds 2 and 3 = the training pool."""
    rng = np.random.default_rng(seed)
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    rows = ["slice_file_name,fsID,start,end,salience,fold,classID,class"]
    t = np.arange(int(SR * SECONDS)) / SR
    fs_id = 100000
    for fold, per_class in ((1, test_per_class), (2, math.ceil(train_per_class / 2)),
                            (3, train_per_class - math.ceil(train_per_class / 2))):
        folder = root / "audio" / f"fold{fold}"
        folder.mkdir(parents=True, exist_ok=True)
        for c in range(N_CLASSES):
            for i in range(per_class):
                fs_id += 1
                f0 = 200.0 * (1.3 ** c) * (1 + 0.02 * rng.standard_normal())
                x = 0.3 * np.sin(2 * np.pi * f0 * t + rng.uniform(0, 6.3)) * (0.5 + 0.5 * np.sin(2 * np.pi * (c + 1) * t))
                x = x + 0.05 * rng.standard_normal(t.size)
                name = f"{fs_id}-{c}-0-{i}.wav"
                with wave.open(str(folder / name), "wb") as w:
                    w.setnchannels(1)
                    w.setsampwidth(2)
                    w.setframerate(SR)
                    w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
                rows.append(f"{name},{fs_id},0,{SECONDS},1,{fold},{c},{CLASSES[c]}")
    (root / "metadata" / "UrbanSound8K.csv").write_text("\n".join(rows) + "\n")


def run_melfront(root: Path, n: int, epochs: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
        env.update(MELFRONT_CACHE=str(Path(tmp) / "cache"), OMP_NUM_THREADS="1")
        cmd = [str(Path(sys.executable).parent / "melfront"), "compare", "--preset", "pons2019-us8k", "--root",
               str(root), "--models", "sbcnn", "--n", str(n), "--runs", "1", "--test-folds", "1", "--epochs",
               str(epochs), "--jobs", "1", "--quiet", "-o", str(Path(tmp) / "study")]
        t = time.perf_counter()
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if out.returncode != 0:
            raise SystemExit(f"melfront compare failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
        return wall


def run_loop(root: Path, n: int, epochs: int) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(MELFRONT_MALLOC="system", OMP_NUM_THREADS="1")
    t = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--loop", str(root), str(n), str(epochs)], env=env,
                         capture_output=True, text=True)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"the plain loop failed:\n{out.stderr[-3000:]}")
    return wall


# ------------------------------------------------------------------------------------------------------------
# The plain loop (a child process): what a PyTorch user writes for the same trial pair
# ------------------------------------------------------------------------------------------------------------
def loop_child(root: str, n: int, epochs: int) -> None:
    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(0)
    from melfront.functional import mel_filterbank  # the mel matrix only (librosa's Slaney filters)

    fb = mel_filterbank(SR, 1024, 128).float()  # (n_mels, n_fft // 2 + 1)

    def load(path):
        with wave.open(path, "rb") as w:
            x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
        spec = torch.stft(torch.from_numpy(x), 1024, 1024, window=torch.hann_window(1024), center=True,
                          pad_mode="reflect", return_complex=True).abs() ** 2
        return fb @ spec  # (128, frames)

    rows = [line.split(",") for line in (Path(root) / "metadata" / "UrbanSound8K.csv").read_text().splitlines()[1:]]
    rng = np.random.default_rng(0)
    train, test = [], []
    for c in range(N_CLASSES):
        pool = [r for r in rows if int(r[6]) == c and r[5] != "1"]
        train += [(r, c) for r in (pool[i] for i in rng.choice(len(pool), n, replace=False))]
        test += [(r, c) for r in rows if int(r[6]) == c and r[5] == "1"]
    path = lambda r: str(Path(root) / "audio" / f"fold{r[5]}" / r[0])  # noqa: E731
    xtr = [load(path(r)) for r, _ in train]
    ytr = torch.tensor([c for _, c in train])
    xte = [load(path(r)) for r, _ in test]
    yte = torch.tensor([c for _, c in test])

    class LogLearn(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Parameter(torch.tensor(7.0)), nn.Parameter(torch.tensor(1.0))

        def forward(self, x):
            return torch.log(torch.exp(self.a) * x + nn.functional.softplus(self.b))

    class LogEPS(nn.Module):
        def forward(self, x):
            return torch.log10(x + 2.220446049250313e-16)

    def sbcnn():
        return nn.Sequential(
            nn.BatchNorm2d(1, momentum=0.01, eps=1e-3),
            nn.Conv2d(1, 24, 5), nn.ReLU(), nn.MaxPool2d((2, 4)),
            nn.Conv2d(24, 48, 5), nn.ReLU(), nn.MaxPool2d((2, 4)),
            nn.Conv2d(48, 48, 5), nn.ReLU(),
            nn.Flatten(), nn.Dropout(0.5), nn.Linear(48 * 25 * 2, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 10))

    for front in (LogEPS(), LogLearn()):
        net = sbcnn()
        params = list(net.parameters()) + list(front.parameters())
        opt = torch.optim.SGD(params, lr=0.1)
        kernels = [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        for _ in range(epochs):
            net.train()
            order = torch.randperm(len(xtr))
            for b in range(0, len(order), 256):
                idx = order[b:b + 256]
                crops = []
                for i in idx.tolist():
                    s = int(torch.randint(0, xtr[i].shape[1] - 128 + 1, (1,)))
                    crops.append(xtr[i][:, s:s + 128])
                x = front(torch.stack(crops)).unsqueeze(1)
                loss = nn.functional.cross_entropy(net(x), ytr[idx]) + 0.001 * sum((w ** 2).sum() for w in kernels) / 2
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(params, 5.0)
                opt.step()
        net.eval()
        correct = 0
        with torch.no_grad():
            for clip, label in zip(xte, yte):
                patches = torch.stack([clip[:, s:s + 128] for s in range(clip.shape[1] - 128 + 1)])
                probs = torch.cat([torch.softmax(net(front(patches[b:b + 64]).unsqueeze(1)), 1)
                                   for b in range(0, len(patches), 64)])
                correct += int(probs.mean(0).argmax() == label)
        print(json.dumps(dict(frontend=type(front).__name__, accuracy=correct / len(xte))), file=sys.stderr)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--loop":
        loop_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="tiny: 2 test clips per class, n=2, 1 epoch, 1 rep")
    ap.add_argument("--keep", help="build (or reuse) the synthetic folder here instead of a temporary one")
    args = ap.parse_args()
    test_per_class, n, epochs, reps = (2, 2, 1, 1) if args.quick else (8, 10, 10, args.reps)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep) if args.keep else Path(tmp) / "us8k"
        if not (root / "metadata" / "UrbanSound8K.csv").is_file():
            make_folder(root, test_per_class, max(n, 10))
        import torch
        print(f"torch {torch.__version__}; {N_CLASSES * test_per_class} test clips of {SECONDS:g} s at {SR} Hz, "
              f"n={n}, {epochs} epochs, pair logeps/loglearn, SB-CNN, hop-1 evaluation; {reps} interleaved reps")
        mf, lp = [], []
        for r in range(reps):
            lp.append(run_loop(root, n, epochs))
            mf.append(run_melfront(root, n, epochs))
            print(f"rep {r + 1}: plain loop {lp[-1]:.1f} s, melfront compare {mf[-1]:.1f} s")
        a, b = statistics.median(mf), statistics.median(lp)
        print(f"median: melfront {a:.1f} s, plain loop {b:.1f} s, ratio {a / b:.2f} (target <= 0.40)")


if __name__ == "__main__":
    main()
