"""What each PCEN start does on real clips that open quietly (issue 14 item 5); writes the figure.

Clips: every clip of an ESC-50-layout folder (``meta/esc50.csv`` + ``audio/``) whose first 0.5 s is
quiet: the mean frame energy (sum of the mel power over bands) of its first 0.5 s is at least
``--quiet-db`` dB (20) below the clip's median frame energy. Features: ``melfront.MelSpectrogram`` at
22050 Hz, n_fft 1024, hop 512, 128 mels; ``melfront.PCEN()`` with default settings, on the mel power as
it is (audio in [-1, 1]) and scaled by 2**62 (audio scaled as 32-bit integers, as librosa's examples and
the PCEN docstring say).

Starts compared: the four ``init`` modes ("first", "zero", "librosa", "loop") and
``melfront.functional.pcen_start.robust_initial_state`` (per-band ``q``-quantile of the first 40 frames,
0.93 s; and the median of all frames, which like "loop" needs the whole clip), passed as the start.

Metrics, per clip and start (PCEN output averaged over bands):

- ``first s / rest``: mean output over the first second divided by the mean over the rest of the clip
  (the issue's example: 0.454 against 0.217, a ratio of 2.1). No reference needed.
- ``settle (s)``: time after which the band-mean output stays within 10 % (+ 1e-3) of a reference
  output until the clip's end; the clip length (5 s) when it never does. The reference assumes that
  the sound before the clip was its quiet opening: the smoother starts in the steady state of the mean
  mel power of the first 0.5 s (the quiet part, by selection). This favours starts computed from the
  opening, by construction: read it with the reference-free ratio.

Prints the medians and interquartile ranges (Markdown) and writes the figure (one clip, one panel per
start). Reads the data, never copies it; not run by the tests.

    python benchmarks/pcen_start_modes.py --root ../shared/data/esc50-fold4 [--clip NAME.flac] [-o PNG]
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import torch

import melfront
from melfront.functional.pcen_start import robust_initial_state

SR, N_FFT, HOP, N_MELS = 22050, 1024, 512, 128
SCALES = {"as is": 1.0, "x 2**62": 2.0 ** 62}
INITS = ("first", "zero", "librosa", "loop")
QUANTILES = (0.5, 0.75, 0.9)
FIGURE_CLIP = "4-125071-A-19.flac"
FIGURE = Path(__file__).resolve().parent / "figures" / "pcen_start_modes.png"


def frames_in(seconds: float) -> int:
    return int(round(seconds * SR / HOP))


def load_mels(root: Path) -> dict:
    """``{filename: mel power (128, frames) float64}`` for every clip listed in ``meta/esc50.csv``."""
    mel = melfront.MelSpectrogram(sample_rate=SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS)
    out = {}
    with open(root / "meta" / "esc50.csv", newline="") as f:
        for row in csv.DictReader(f):
            path = root / "audio" / row["filename"]
            if not path.exists():
                continue
            y, sr = melfront.load_audio(path, sample_rate=SR)
            with torch.no_grad():
                out[row["filename"]] = mel(y.unsqueeze(0))[0].double()
    return out


def opening_db(S: torch.Tensor) -> float:
    """Mean frame energy of the first 0.5 s relative to the median frame energy, in dB."""
    E = S.sum(0)
    tiny = 1e-30
    return 10 * np.log10((E[:frames_in(0.5)].mean().item() + tiny) / (E.median().item() + tiny))


def starts(S: torch.Tensor) -> dict:
    """``{label: PCEN output (128, frames)}`` for every start, on the mel power ``S``.

    A given start goes in as the state of ``PCEN.stream`` (its first chunk is the whole clip).
    """
    pcen = melfront.PCEN()
    out = {}
    with torch.no_grad():
        for init in INITS:
            out[init] = melfront.PCEN(init=init)(S.unsqueeze(0))[0]
        for q in QUANTILES:
            out[f"robust q={q}"] = pcen.stream(S.unsqueeze(0), robust_initial_state(S.unsqueeze(0), q=q))[0][0]
        whole = robust_initial_state(S.unsqueeze(0), frames=S.shape[-1])   # needs the whole clip, like "loop"
        out["median of all frames"] = pcen.stream(S.unsqueeze(0), whole)[0][0]
        ref_state = S[:, :frames_in(0.5)].mean(-1)
        out["reference"] = pcen.stream(S.unsqueeze(0), ref_state.unsqueeze(0))[0][0]
    return out


def settle_seconds(o: np.ndarray, ref: np.ndarray, tol: float = 0.1, floor: float = 1e-3) -> float:
    """Seconds after which ``|o - ref| <= tol * ref + floor`` holds until the end (clip length if never)."""
    bad = np.nonzero(np.abs(o - ref) > tol * np.abs(ref) + floor)[0]
    t = 0 if bad.size == 0 else bad[-1] + 1
    return t * HOP / SR


def metrics(outputs: dict) -> dict:
    """``{label: (first-second/rest ratio, first-second mean, rest mean, settle seconds)}``."""
    one = frames_in(1.0)
    ref = outputs["reference"].mean(0).numpy()
    res = {}
    for label, out in outputs.items():
        o = out.mean(0).numpy()
        first, rest = float(o[:one].mean()), float(o[one:].mean())
        res[label] = (first / max(rest, 1e-12), first, rest, settle_seconds(o, ref))
    return res


def summarise(per_clip: list[dict], title: str) -> str:
    """A Markdown table: median [IQR] over clips of each metric, one row per start."""
    labels = list(per_clip[0])
    lines = [f"#### {title} ({len(per_clip)} clips)", "",
             "| start | first s / rest | first s mean | rest mean | settle (s) |", "|---|---|---|---|---|"]
    for label in labels:
        cells = []
        for k in range(4):
            v = np.array([m[label][k] for m in per_clip])
            q1, med, q3 = np.percentile(v, [25, 50, 75])
            cells.append(f"{med:.3g} [{q1:.3g}, {q3:.3g}]")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(S: torch.Tensor, name: str, path: Path) -> None:
    """The clip's mel power in dB, then PCEN with each start; left the mel power as is, right x 2**62."""
    from melfront.plotting import power_to_db_display, pyplot, specshow
    plt = pyplot()
    shown = [*INITS, "robust q=0.5"]
    fig, axes = plt.subplots(len(shown) + 1, 2, figsize=(10.5, 11.5), sharex=True, constrained_layout=True)
    kw = dict(sample_rate=SR, hop_length=HOP)
    one = frames_in(1.0)
    for col, (scale_label, scale) in enumerate(SCALES.items()):
        outputs = starts(S * scale)
        vmax = float(max(outputs[k].quantile(0.995) for k in shown))
        specshow(power_to_db_display(S), ax=axes[0, col], **kw)
        axes[0, col].set_title(f"{name}: mel power (dB)", fontsize=9)
        for ax, label in zip(axes[1:, col], shown):
            o = outputs[label]
            img = specshow(o, ax=ax, vmin=0.0, vmax=vmax, **kw)
            first, rest = float(o[:, :one].mean()), float(o[:, one:].mean())
            ax.set_title(f"PCEN(mel {scale_label}), start {label!r}: mean first s {first:.3f}, rest {rest:.3f}",
                         fontsize=8)
            ax.axvline(1.0, color="w", lw=0.6, ls="--")
        fig.colorbar(img, ax=axes[1:, col], shrink=0.5, label="PCEN output")
    for ax in axes[:-1].ravel():
        ax.set_xlabel("")
    for ax in axes[:, 1]:
        ax.set_ylabel("")
    save_small_png(fig, path)
    plt.close(fig)


def save_small_png(fig, path: Path, dpi: int = 72) -> None:
    """Save ``fig`` as a palette PNG (256 colours): the noisy panels stay sharp and the file commit-sized."""
    import io

    from PIL import Image
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    buf.seek(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.open(buf).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("../shared/data/esc50-fold4"))
    ap.add_argument("--quiet-db", type=float, default=20.0)
    ap.add_argument("--clip", default=FIGURE_CLIP, help=f"clip for the figure (default {FIGURE_CLIP}, a "
                    "thunderstorm that fades in from a quiet background; else the quietest opening)")
    ap.add_argument("-o", "--output", type=Path, default=FIGURE)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    mels = load_mels(args.root)
    opening = {name: opening_db(S) for name, S in mels.items()}
    for threshold in (args.quiet_db, args.quiet_db / 2):
        quiet = sorted((n for n in mels if opening[n] <= -threshold), key=opening.get)
        print(f"\n{len(quiet)} of {len(mels)} clips open >= {threshold:g} dB below their median frame energy:")
        print(", ".join(f"{n} ({opening[n]:.0f} dB)" for n in quiet))
        for label, scale in SCALES.items():
            per_clip = [metrics(starts(mels[n] * scale)) for n in quiet]
            print("\n" + summarise(per_clip, f"quiet openings (>= {threshold:g} dB), mel power {label}"))
    for label, scale in SCALES.items():  # do the starts change clips that do not open quietly?
        per_clip = [metrics(starts(S * scale)) for S in mels.values()]
        print("\n" + summarise(per_clip, f"all clips, mel power {label}"))
    name = args.clip if args.clip in mels else min(mels, key=opening.get)
    figure(mels[name], name, args.output)
    print(f"\nfigure: {args.output} ({args.output.stat().st_size // 1024} kB), clip {name}")


if __name__ == "__main__":
    sys.exit(main())
