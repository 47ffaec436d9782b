"""Timing of the compression frontends (issue 3). One script, one run; prints medians and ratios.

(a) MelSpectrogram + Decibel on 64 x 3 s clips at 22050 Hz (n_fft 1024, hop 512, 128 mels)
    vs librosa clip by clip, vs nnAudio's MelSpectrogram (+ the same dB), vs the floor: a bare
    torch.stft + power + matmul with a precomputed filterbank.
(b) per-band trainable PCEN forward + backward on (32, 128, 1000) float32 vs the frame-by-frame
    loop (tests/oracles.py pcen_reference in float32, autograd through the loop), and vs Decibel.
(c) one SGD step (forward, loss, backward, update) of SB-CNN on 128 x 128 patches, batch 32,
    with Decibel vs with trainable per-band PCEN.

The candidates of each comparison are timed interleaved (A, B, A, B, ...) so that load from
other processes affects them alike; medians over the repetitions are reported.

    python benchmarks/bench_frontends.py [--reps 7] [--threads N]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test oracle, tests/oracles.py
from oracles import pcen_reference  # noqa: E402


def interleaved(candidates: dict, reps: int, warmup: int = 1) -> dict:
    for f in candidates.values():
        for _ in range(warmup):
            f()
    times = {k: [] for k in candidates}
    for _ in range(reps):
        for k, f in candidates.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def report(title: str, med: dict, base: str):
    print(f"\n{title}")
    for k, v in med.items():
        print(f"  {k:<44} {v * 1e3:9.1f} ms   {v / med[base]:6.2f} x the time of the first")


def bench_mel(reps: int):
    import librosa
    from melfront import Decibel, MelSpectrogram, mel_filterbank
    sr, n_fft, hop, n_mels = 22050, 1024, 512, 128
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(64, 3 * sr, generator=g) * 0.1).float()
    x_np = x.numpy()
    mel = MelSpectrogram(sr, n_fft=n_fft, hop_length=hop, n_mels=n_mels)
    db = Decibel(ref="max")
    fb = mel_filterbank(sr, n_fft, n_mels)
    window = torch.hann_window(n_fft)

    def ours():
        with torch.no_grad():
            return db(mel(x))

    def floor():
        with torch.no_grad():
            spec = torch.stft(x, n_fft, hop, window=window, center=True, return_complex=True)
            return fb @ (spec.real ** 2 + spec.imag ** 2)

    def librosa_clips():
        return [librosa.power_to_db(librosa.feature.melspectrogram(y=c, sr=sr, n_fft=n_fft, hop_length=hop,
                                                                   n_mels=n_mels), ref=np.max) for c in x_np]

    cands = {"melfront MelSpectrogram + Decibel": ours, "librosa, clip by clip": librosa_clips}
    try:
        from nnAudio.features import MelSpectrogram as NNMel
        nn_mel = NNMel(sr=sr, n_fft=n_fft, hop_length=hop, n_mels=n_mels, center=True, pad_mode="constant",
                       power=2.0, htk=False, fmin=0.0, fmax=None, norm=1, trainable_mel=False,
                       trainable_STFT=False, verbose=False)

        def nnaudio():
            with torch.no_grad():
                return db(nn_mel(x))
        cands["nnAudio MelSpectrogram + the same Decibel"] = nnaudio
    except Exception as exc:  # noqa: BLE001 - report and go on
        print(f"nnAudio unavailable: {exc!r}")
    cands["floor: torch.stft + |.|^2 + matmul"] = floor
    med = interleaved(cands, reps)
    report("(a) mel + dB, 64 x 3 s at 22050 Hz (n_fft 1024, hop 512, 128 mels), no grad", med,
           "melfront MelSpectrogram + Decibel")
    o = med["melfront MelSpectrogram + Decibel"]
    print(f"  -> speed-up vs librosa {med['librosa, clip by clip'] / o:.2f}x (target >= 3), "
          + (f"vs nnAudio {med['nnAudio MelSpectrogram + the same Decibel'] / o:.2f}x (target >= 2.5), "
             if "nnAudio MelSpectrogram + the same Decibel" in med else "")
          + f"time / floor {o / med['floor: torch.stft + |.|^2 + matmul']:.2f} (target <= 1.2)")
    return med


def bench_pcen(reps: int):
    from melfront import PCEN, Decibel
    g = torch.Generator().manual_seed(1)
    x = torch.rand(32, 128, 1000, generator=g) * 10.0 ** torch.empty(32, 1, 1).uniform_(-6, 2, generator=g)
    pcen = PCEN(n_mels=128, per_band=True, trainable=True, init="first")  # the loop reference starts from the first frame
    db = Decibel(ref="max")

    def ours():
        pcen.zero_grad(set_to_none=True)
        pcen(x).sum().backward()

    def loop():
        pcen.zero_grad(set_to_none=True)
        values = [getattr(pcen, n) for n in pcen.readable]
        pcen_reference(x, *values, init="first", dtype=torch.float32).sum().backward()

    xg = x.clone().requires_grad_()

    def decibel():
        xg.grad = None
        db(xg).sum().backward()

    med = interleaved({"melfront PCEN (chunked exact recursion)": ours, "frame-by-frame loop (float32)": loop,
                       "Decibel (grad w.r.t. input)": decibel}, reps)
    report("(b) trainable per-band PCEN forward + backward, (32, 128, 1000) float32", med,
           "melfront PCEN (chunked exact recursion)")
    o = med["melfront PCEN (chunked exact recursion)"]
    print(f"  -> PCEN vs loop {med['frame-by-frame loop (float32)'] / o:.2f}x faster (target >= 8); "
          f"PCEN / Decibel {o / med['Decibel (grad w.r.t. input)']:.2f}")
    return med


def _sbcnn(n_classes=10):
    try:
        from melfront import models
        return models.build("sbcnn", n_classes, n_mels=128, n_frames=128, in_channels=1), "melfront.models sbcnn"
    except Exception:  # noqa: BLE001 - the models issue may not have landed: a local CNN of the same shape
        from torch import nn
        net = nn.Sequential(nn.Conv2d(1, 24, 5), nn.ReLU(), nn.MaxPool2d((2, 4)), nn.Conv2d(24, 48, 5), nn.ReLU(),
                            nn.MaxPool2d((2, 4)), nn.Conv2d(48, 48, 5), nn.ReLU(), nn.Flatten(), nn.Dropout(0.5),
                            nn.LazyLinear(64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, n_classes))
        net(torch.zeros(1, 1, 128, 128))
        return net, "local SB-CNN-shaped CNN"


def bench_training(reps: int):
    from melfront import PCEN, Decibel
    g = torch.Generator().manual_seed(2)
    x = torch.rand(32, 128, 128, generator=g) * 10.0 ** torch.empty(32, 1, 1).uniform_(-6, 2, generator=g)
    y = torch.randint(0, 10, (32,), generator=g)
    setups = {}
    for name, fe in (("Decibel", Decibel(ref="max")), ("PCEN(trainable, per band)", PCEN(n_mels=128, per_band=True,
                                                                                           trainable=True))):
        torch.manual_seed(0)
        net, kind = _sbcnn()
        opt = torch.optim.SGD(list(fe.parameters()) + list(net.parameters()), lr=0.01, momentum=0.9)
        setups[name] = (fe, net, opt)
    x_grad = x.clone().requires_grad_()

    def step(name, inp=x, mkldnn=True):
        fe, net, opt = setups[name]
        with torch.backends.mkldnn.flags(enabled=mkldnn):
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(net(fe(inp).unsqueeze(1)), y)
            loss.backward()
            opt.step()

    def pcen_alone():
        fe = setups["PCEN(trainable, per band)"][0]
        fe.zero_grad(set_to_none=True)
        fe(x).sum().backward()

    cands = {
        "SGD step with Decibel": lambda: step("Decibel"),
        "SGD step with PCEN(trainable, per band)": lambda: step("PCEN(trainable, per band)"),
        "SGD step with Decibel, input requiring grad": lambda: step("Decibel", x_grad),
        "same three without oneDNN: Decibel": lambda: step("Decibel", mkldnn=False),
        "  PCEN(trainable, per band)": lambda: step("PCEN(trainable, per band)", mkldnn=False),
        "  Decibel, input requiring grad": lambda: step("Decibel", x_grad, mkldnn=False),
        "PCEN forward + backward alone": pcen_alone,
    }
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        med = interleaved(cands, reps)
    report(f"(c) one SGD step, {kind}, 32 x 128 x 128 patches", med, "SGD step with Decibel")
    r = med["SGD step with PCEN(trainable, per band)"] / med["SGD step with Decibel"]
    r_in = med["SGD step with PCEN(trainable, per band)"] / med["SGD step with Decibel, input requiring grad"]
    r_nd = med["  PCEN(trainable, per band)"] / med["same three without oneDNN: Decibel"]
    print(f"  -> PCEN step / Decibel step {r:.3f} (target <= 1.10); vs a Decibel step that also back-propagates "
          f"to the input (as any trainable frontend must) {r_in:.3f}; without oneDNN {r_nd:.3f}")
    return med


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--only", choices=["a", "b", "c"], action="append")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"python {platform.python_version()}")
    try:
        import os
        print(f"load average at start: {os.getloadavg()}")
    except OSError:
        pass
    parts = args.only or ["a", "b", "c"]
    if "a" in parts:
        bench_mel(args.reps)
    if "b" in parts:
        bench_pcen(args.reps)
    if "c" in parts:
        bench_training(args.reps)


if __name__ == "__main__":
    main()
