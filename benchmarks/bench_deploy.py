"""Deployment latency (issue 14): eager vs torch.compile vs onnxruntime, streaming PCEN per frame, and the eager
PCEN fast path before/after the plain-tensor (exportable) path was added. Prints Markdown tables of medians.

(a) ``MelSpectrogram(22050, n_fft=1024, hop 512, 128 mels) + PCEN(trainable=True, per_band=True)`` on one 1 s
    clip and on a batch of 64 x 3 s clips, inference (no gradient): eager PyTorch, ``torch.compile`` (inductor,
    compiled before timing) and onnxruntime (CPU provider, as many threads as torch; exported with
    :func:`melfront.export.export_onnx`, which checks the graph against eager first).
(b) ``StreamingPCEN`` one frame at a time, the state carried as an input/output: eager and onnxruntime, per frame.
(c) eager ``melfront.functional.pcen`` (per-band tensors, init "first" in both) forward and forward + backward on
    (64, 128, 130) float32, now vs at commit 0144d31 (before issue 14: ``melfront/functional.py`` of that commit,
    loaded from ``git show`` into a temporary file; skipped with a note when git or the file is not available).

The candidates of each comparison are timed interleaved (A, B, C, A, B, C, ...), so that load from other
processes affects them alike; medians over the repetitions are reported.

    python benchmarks/bench_deploy.py [--reps 15] [--threads N] [--smoke]

``--smoke``: one repetition of everything, no warm-up (checks that the script runs; the figures mean nothing).
"""
from __future__ import annotations

import argparse
import importlib.util
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SR, N_FFT, HOP, N_MELS = 22050, 1024, 512, 128


def interleaved(candidates: dict, reps: int, warmup: int = 1) -> dict:
    """Median seconds per call of each candidate, timed interleaved."""
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


def table(title: str, rows: list[tuple[str, dict]], unit: str = "ms", scale: float = 1e3) -> None:
    """A Markdown table: one row per workload, one column per candidate, plus the ratio to the first column."""
    cols = list(rows[0][1])
    print(f"\n### {title}\n")
    print("| workload | " + " | ".join(f"{c} ({unit})" for c in cols) + " | " +
          " | ".join(f"{c} / {cols[0]}" for c in cols[1:]) + " |")
    print("|---" * (1 + 2 * len(cols) - 1) + "|")
    for name, med in rows:
        cells = [f"{med[c] * scale:.3f}" for c in cols]
        ratios = [f"{med[c] / med[cols[0]]:.2f}" for c in cols[1:]]
        print(f"| {name} | " + " | ".join(cells + ratios) + " |")


def _pipeline():
    from melfront.frontends import Chain, MelSpectrogram
    return Chain(MelSpectrogram(SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS), _pipeline_pcen()).eval()


def _ort_session(path: Path, threads: int):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def bench_pipeline(reps: int, warmup: int, threads: int, folder: Path) -> None:
    from melfront.export import export_onnx
    f = _pipeline()
    g = torch.Generator().manual_seed(1)
    inputs = {"1 clip x 1 s": torch.randn(1, SR, generator=g) * 0.1,
              "64 clips x 3 s": torch.randn(64, 3 * SR, generator=g) * 0.1}
    path = export_onnx(f, torch.randn(2, SR // 2, generator=g) * 0.1, folder / "mel_pcen.onnx",
                       input_names=["waveform"], output_names=["pcen"])
    session = _ort_session(path, threads)
    compiled = torch.compile(f, dynamic=False)
    rows = []
    for name, x in inputs.items():
        x_np = x.numpy()

        def eager(x=x):
            with torch.no_grad():
                f(x)

        def comp(x=x):
            with torch.no_grad():
                compiled(x)

        def onnx(x_np=x_np):
            session.run(None, {"waveform": x_np})

        comp()  # compile for this shape outside the timing
        rows.append((name, interleaved({"eager": eager, "torch.compile": comp, "onnxruntime": onnx}, reps, warmup)))
    table("MelSpectrogram + PCEN(trainable, per band), inference", rows)


def bench_streaming(reps: int, warmup: int, threads: int, folder: Path, frames: int = 200) -> None:
    from melfront.export import export_onnx
    from melfront.frontends import StreamingPCEN
    stream = StreamingPCEN(_pipeline_pcen()).eval()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, N_MELS, frames, generator=g) * 1e-3
    state0 = stream.initial_state(first_frames=x[..., :40])
    path = export_onnx(stream, (x[..., :20], state0), folder / "stream.onnx", input_names=["mel", "state"],
                       output_names=["pcen", "state_out"])
    session = _ort_session(path, threads)
    cols = [x[..., t:t + 1].contiguous() for t in range(frames)]
    cols_np = [c.numpy() for c in cols]

    def eager():
        state = state0
        with torch.no_grad():
            for c in cols:
                _, state = stream(c, state)

    def onnx():
        state = state0.numpy()
        for c in cols_np:
            _, state = session.run(None, {"mel": c, "state": state})

    med = interleaved({"eager": eager, "onnxruntime": onnx}, reps, warmup)
    table(f"StreamingPCEN(trainable, per band, 128 mels), one frame per call (mean of {frames} frames)",
          [("one frame", {k: v / frames for k, v in med.items()})], unit="us", scale=1e6)


def _pipeline_pcen():
    """Trainable per-band PCEN with learned-looking values (not the start values)."""
    from melfront.frontends import PCEN
    pcen = PCEN(n_mels=N_MELS, per_band=True, trainable=True)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in pcen.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return pcen


def _old_functional(folder: Path):
    """``melfront/functional.py`` at commit 0144d31 as a module, or None (with the reason printed)."""
    try:
        text = subprocess.run(["git", "show", "0144d31:melfront/functional.py"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"\n(before/after skipped: cannot read melfront/functional.py at 0144d31: {exc})")
        return None
    path = folder / "functional_0144d31.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("functional_0144d31", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # an import the old file needs that no longer exists
        print(f"\n(before/after skipped: the old functional.py does not load: {type(exc).__name__}: {exc})")
        return None
    return module


def bench_fast_path(reps: int, warmup: int, folder: Path) -> None:
    from melfront import functional as F
    old = _old_functional(folder)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(64, N_MELS, 130, generator=g) * 1e-3
    values = [torch.full((N_MELS,), v) for v in (0.025, 0.98, 2.0, 0.5, 1e-6)]
    impls = {"now": F.pcen} if old is None else {"now": F.pcen, "0144d31 (before)": old.pcen}

    def forward(fn):
        def run():
            with torch.no_grad():
                fn(x, *values, init="first")
        return run

    def backward(fn):
        def run():
            xs = x.clone().requires_grad_()
            ps = [v.clone().requires_grad_() for v in values]
            fn(xs, *ps, init="first").sum().backward()
        return run

    rows = [("forward", interleaved({k: forward(fn) for k, fn in impls.items()}, reps, warmup)),
            ("forward + backward", interleaved({k: backward(fn) for k, fn in impls.items()}, reps, warmup))]
    table("Eager functional.pcen, per band, (64, 128, 130) float32", rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None, help="torch and onnxruntime threads (default: torch's)")
    ap.add_argument("--smoke", action="store_true", help="one repetition, no warm-up: only checks that it runs")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    reps, warmup = (1, 0) if args.smoke else (args.reps, 2)
    print(f"## Deployment latency\n\n{platform.processor() or platform.machine()}, {threads} threads, "
          f"torch {torch.__version__}, Python {platform.python_version()}; medians of {reps} interleaved runs")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bench_pipeline(reps, warmup, threads, folder)
        bench_streaming(reps, warmup, threads, folder)
        bench_fast_path(reps, warmup, folder)


if __name__ == "__main__":
    main()
