"""AdaptiveFilterbank vs MelSpectrogram: reproduction accuracy on real clips, and speed.

    .venv/bin/python benchmarks/bench_filterbanks.py accuracy [--data ../shared/data] [--max-clips N]
    .venv/bin/python benchmarks/bench_filterbanks.py speed [--batch 16 --seconds 3 --repeats 15]

accuracy: for each configuration, AdaptiveFilterbank.from_mel(mel) against mel on every clip;
per clip the median relative error |A - M| / M over the bins within 60 dB of the clip's maximum
(of M), and the Pearson correlation of 10 log10 A and 10 log10 M over the same bins; plus the
pooled median relative error per band (where it departs). speed: forward (no grad) of both, and
forward + backward of the trainable variant, interleaved (A, B, A, B, ...), medians and ratios.
Never run by the tests.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from melfront import MelSpectrogram, load_audio  # noqa: E402
from melfront.filterbanks import AdaptiveFilterbank  # noqa: E402

CONFIGS = [
    # name, data set, MelSpectrogram arguments
    ("esc50 22050 Hz, n_fft 1024, hop 512, 128 mels", "esc50", dict(sample_rate=22050, n_fft=1024, hop_length=512, n_mels=128)),
    ("esc50 22050 Hz, n_fft 2048, hop 512, 128 mels", "esc50", dict(sample_rate=22050, n_fft=2048, hop_length=512, n_mels=128)),
    ("fsdd 8000 Hz, n_fft 256, hop 128, 40 mels", "fsdd", dict(sample_rate=8000, n_fft=256, hop_length=128, n_mels=40)),
]


def clip_metrics(mel: torch.Tensor, ada: torch.Tensor, floor_db: float = 60.0):
    """(median relative error, dB correlation, mask) over the bins of ``mel`` within ``floor_db`` of its max."""
    mel, ada = mel.double(), ada.double()
    mask = mel >= mel.max() * 10 ** (-floor_db / 10)
    rel = ((ada - mel).abs() / mel)[mask]
    db_m = 10 * torch.log10(mel[mask])
    db_a = 10 * torch.log10(ada[mask].clamp(min=1e-30))
    corr = float(np.corrcoef(db_m.numpy(), db_a.numpy())[0, 1])
    return float(rel.median()), corr, mask, ((ada - mel).abs() / mel.clamp(min=1e-30))


def clip_paths(data: Path, which: str, max_clips: int | None):
    if which == "esc50":
        with open(data / "esc50-fold4" / "meta" / "esc50.csv") as fh:
            paths = [data / "esc50-fold4" / "audio" / (Path(r["filename"]).stem + ".flac") for r in csv.DictReader(fh)]
    else:
        paths = sorted((data / "fsdd" / "recordings").glob("*.wav"))
    paths = [p for p in paths if p.exists()]
    if max_clips and len(paths) > max_clips:
        paths = paths[:: -(-len(paths) // max_clips)]
    return paths


def accuracy(args):
    print(f"AdaptiveFilterbank.from_mel vs MelSpectrogram, bins within 60 dB of each clip's maximum; torch {torch.__version__}")
    for name, which, cfg in CONFIGS:
        paths = clip_paths(Path(args.data), which, args.max_clips)
        if not paths:
            print(f"{name}: no clips found under {args.data}")
            continue
        mel = MelSpectrogram(**cfg)
        t0 = time.perf_counter()
        ada = AdaptiveFilterbank.from_mel(mel)
        design_s = time.perf_counter() - t0
        meds, corrs, misses = [], [], []
        band_err = [[] for _ in range(cfg["n_mels"])]
        for path in paths:
            wave, _ = load_audio(path, sample_rate=cfg["sample_rate"])
            with torch.no_grad():
                m, a = mel(wave), ada(wave)
            med, corr, mask, rel = clip_metrics(m, a)
            meds.append(med)
            corrs.append(corr)
            if med > 0.05 or corr < 0.99:
                misses.append(f"{path.name} (median relative error {med:.3f}, dB correlation {corr:.4f})")
            for k in range(cfg["n_mels"]):
                sel = rel[k][mask[k]]
                if sel.numel():
                    band_err[k].append(sel.numpy())
        band_med = np.array([np.median(np.concatenate(b)) if b else np.nan for b in band_err])
        print(f"\n## {name}: {len(paths)} clips (design {design_s:.2f} s; decimations {sorted(set(ada.decimation))})")
        print(f"median relative error per clip: median {statistics.median(meds):.4f}, 90th pct "
              f"{np.percentile(meds, 90):.4f}, max {max(meds):.4f}; clips <= 5%: {np.mean(np.array(meds) <= 0.05):.1%}")
        print(f"dB correlation per clip: median {statistics.median(corrs):.5f}, min {min(corrs):.5f}; "
              f"clips >= 0.99: {np.mean(np.array(corrs) >= 0.99):.1%}")
        print("clips missing a target: " + ("; ".join(misses) if misses else "none"))
        k_ = cfg["n_mels"]
        show = sorted(set(list(range(4)) + list(range(k_ // 4, k_, k_ // 4)) + [k_ - 2, k_ - 1]))
        centres = mel.centre_hz
        print("pooled median relative error by band: " + ", ".join(
            f"#{k} ({centres[k]:.0f} Hz) {band_med[k]:.3f}" for k in show))
        worst = np.argsort(-np.nan_to_num(band_med))[:5]
        print("worst bands: " + ", ".join(f"#{k} ({centres[k]:.0f} Hz) {band_med[k]:.3f}" for k in worst))


def _median_time(fn, repeats):
    return statistics.median(fn() for _ in range(repeats))


def speed(args):
    torch.manual_seed(0)
    sr = 22050
    x = torch.randn(args.batch, int(args.seconds * sr)) * 0.1
    mel = MelSpectrogram(sr, n_fft=1024, hop_length=512, n_mels=128)
    ada = AdaptiveFilterbank.from_mel(mel)
    ada_t = AdaptiveFilterbank.from_mel(mel, trainable=True)

    def run(fn):
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    def mel_fwd():
        with torch.no_grad():
            mel(x)

    def ada_fwd():
        with torch.no_grad():
            ada(x)

    def ada_train():
        ada_t.zero_grad()
        out = ada_t(x)
        torch.log(out + 1e-6).mean().backward()

    def mel_train():  # the mel's own forward + backward to the waveform, for reference
        xx = x.clone().requires_grad_(True)
        torch.log(mel(xx) + 1e-6).mean().backward()

    for fn in (mel_fwd, ada_fwd, ada_train, mel_train):  # warm-up
        fn()
    times = {f.__name__: [] for f in (mel_fwd, ada_fwd, ada_train, mel_train)}
    for _ in range(args.repeats):  # interleaved
        for fn in (mel_fwd, ada_fwd, ada_train, mel_train):
            times[fn.__name__].append(run(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"batch {args.batch} x {args.seconds} s at {sr} Hz, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.repeats} interleaved repeats (medians)")
    print(f"MelSpectrogram forward              {med['mel_fwd'] * 1e3:8.1f} ms")
    print(f"AdaptiveFilterbank forward          {med['ada_fwd'] * 1e3:8.1f} ms   ratio {med['ada_fwd'] / med['mel_fwd']:.1f}x")
    print(f"trainable Adaptive forward+backward {med['ada_train'] * 1e3:8.1f} ms   ratio {med['ada_train'] / med['mel_fwd']:.1f}x mel forward")
    print(f"MelSpectrogram forward+backward     {med['mel_train'] * 1e3:8.1f} ms   (to the waveform, reference)")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    a = sub.add_parser("accuracy")
    a.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    a.add_argument("--max-clips", type=int, default=None, help="subsample each data set to about this many clips")
    s = sub.add_parser("speed")
    s.add_argument("--batch", type=int, default=16)
    s.add_argument("--seconds", type=float, default=3.0)
    s.add_argument("--repeats", type=int, default=15)
    args = p.parse_args()
    accuracy(args) if args.what == "accuracy" else speed(args)


if __name__ == "__main__":
    main()
