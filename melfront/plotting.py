"""Pictures of clips and frontends (``melfront show`` and the report's example panels).

Matplotlib is imported lazily and always with the non-interactive Agg backend.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def power_to_db_display(mel: torch.Tensor, top_db: float = 80.0) -> np.ndarray:
    """dB relative to the clip's maximum, floored ``top_db`` below it (for display)."""
    from .functional import power_to_db
    return power_to_db(mel, ref="max", top_db=top_db).numpy()


def _frontend_label(module) -> str:
    """Colour-bar label for a frontend's output."""
    name = type(module).__name__
    if name == "Decibel":
        return "dB re max" if getattr(module, "ref", None) == "max" else "dB"
    return {"LogEPS": "log10", "Log10000": "log10", "LogLearn": "ln", "LogFloor": "ln", "LogOffset": "log",
            "PowerLearn": "X ** p", "PCEN": "PCEN", "MinMax": "0..1"}.get(name, "value")


def _mel_ticks(ax, mel_module, n_ticks: int = 6):
    """Label a mel-band axis with the bands' centre frequencies in Hz."""
    centres = mel_module.mel_center_frequencies()
    idx = np.linspace(0, len(centres) - 1, n_ticks).round().astype(int)
    ax.set_yticks(idx)
    ax.set_yticklabels([f"{centres[i]:.0f}" if centres[i] < 1000 else f"{centres[i] / 1000:.1f}k" for i in idx])
    ax.set_ylabel("frequency (Hz)")


def _image(ax, fig, data: np.ndarray, duration: float, title: str, mel_module, cbar_label: str, vmax=None):
    extent = (0, duration, -0.5, data.shape[-2] - 0.5)
    if data.ndim == 3:  # three stacked channels as red, green, blue, each rescaled to [0, 1]
        lo = data.min(axis=(1, 2), keepdims=True)
        span = np.maximum(data.max(axis=(1, 2), keepdims=True) - lo, 1e-30)
        ax.imshow(np.moveaxis((data - lo) / span, 0, -1), origin="lower", aspect="auto", interpolation="nearest",
                  extent=extent)
        _mel_ticks(ax, mel_module)
        ax.set_title(title + f"  ({cbar_label})", fontsize=9)
        from matplotlib.cm import ScalarMappable
        fig.colorbar(ScalarMappable(), ax=ax, pad=0.01).ax.set_visible(False)  # same width as the other panels
        return
    im = ax.imshow(data, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
                   extent=extent, vmax=vmax)
    _mel_ticks(ax, mel_module)
    ax.set_title(title, fontsize=9)
    cb = fig.colorbar(im, ax=ax, pad=0.01)
    cb.set_label(cbar_label, fontsize=8)


def show_clips(paths, output, sample_rate: int = 22050, n_fft: int = 1024, hop_length: int = 512,
               n_mels: int = 128, frontends=()) -> Path:
    """Draw, for each clip (one column each), its waveform, its mel spectrogram in dB and one panel per
    frontend spec in ``frontends`` applied to the linear mel spectrogram. Returns the PNG path."""
    from .audio import load_audio
    from .frontends import MelSpectrogram

    plt = _pyplot()
    mel_module = MelSpectrogram(sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels)
    modules = []
    if frontends:
        from .frontends import frontend as build_frontend
        for spec in frontends:
            modules.append((spec, build_frontend(spec, n_mels=n_mels, sample_rate=sample_rate, hop_length=hop_length)))
    rows = 2 + len(modules)
    cols = len(paths)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 2.3 * rows + 0.6), squeeze=False,
                             gridspec_kw=dict(height_ratios=[0.7] + [1.0] * (rows - 1)))
    for c, path in enumerate(paths):
        wave, sr = load_audio(path, sample_rate=sample_rate)
        duration = wave.shape[-1] / sr
        t = np.arange(wave.shape[-1]) / sr
        ax = axes[0, c]
        ax.plot(t, wave.numpy(), lw=0.4, color="#1f4e79")
        ax.set_xlim(0, duration)
        ax.set_ylabel("amplitude")
        ax.set_title(f"{Path(path).name}  ({sr} Hz, {duration:.2f} s)", fontsize=10)
        with torch.no_grad():
            mel = mel_module(wave)
        _image(axes[1, c], fig, power_to_db_display(mel), duration,
               f"mel spectrogram, dB re max (n_fft={n_fft}, hop={hop_length}, n_mels={n_mels})", mel_module, "dB")
        for r, (spec, module) in enumerate(modules, start=2):
            with torch.no_grad():
                out = module(mel.unsqueeze(0))[0]
            label, vmax = _frontend_label(module), None
            if out.ndim == 3 and out.shape[0] == 3:
                label = "channels as R, G, B"
            elif out.ndim == 3:  # other stacks: show the first channel
                out, label = out[0], "channel 0"
            if label == "X ** p":  # a power law is dominated by its peaks: clip the colours at the 99.5th percentile
                vmax, label = float(np.percentile(out.numpy(), 99.5)), "X ** p (clipped at 99.5th pct)"
            _image(axes[r, c], fig, out.numpy(), duration, f"frontend: {spec}", mel_module, label, vmax)
    for ax in axes[-1]:
        ax.set_xlabel("time (s)")
    for ax in axes[0]:
        ax.set_xlabel("time (s)")
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output
