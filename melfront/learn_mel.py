"""Learning the log-mel transform from raw audio (Tax et al. 2017) and the (a)-(d) end-to-end study.

Tax, Diez Antich, Purwins & Maaløe (2017), "Utilizing domain knowledge in end-to-end audio
processing", NIPS ML4Audio workshop (arXiv:1712.00254):

1. :func:`train_mst` trains :class:`melfront.models.mst.MSTModel` by mean squared error against
   the normalised log-mel of the same audio (:class:`~melfront.models.mst.LogMelTarget`): Adam,
   learning rate 3e-4, batches of 100 segments, early stopping on a validation split.
   :func:`run_learn_mel` is ``melfront learn-mel``: data set -> segments -> training -> checkpoint
   and the paper's Figure 1 (target vs prediction) and Figure 2 (first-layer filters).
2. :func:`run_mst_study` is ``melfront mst-study``: PiczakCNN (long segments, 60 x 101) trained
   (a) on the log-mel, (b) on raw audio with the three convolutions randomly initialised (Xavier,
   no batch norm, dropout 0.5 after each, as the paper's raw baseline), (c) on raw audio with the
   MSTModel's layers (batch norm kept) frozen and (d) as (c) but unfrozen and fine-tuned from (c)'s
   state; test accuracy per epoch (clip label = majority vote over its segments) in one plot
   (the paper's Figure 3).

Segments follow Piczak (2015) and Tax et al.: 101 frames (``hop * 100`` = 51200 samples at hop 512,
2.32 s at 22050 Hz) with 50 % overlap; segments whose mean level is at or below -72 dB (clip
peak-normalised, ``power_to_db`` with ``top_db=80``) are dropped as silent; every kept segment is
peak-normalised on its own before it is fed to the model and turned into its target.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .models.mst import (DEFAULT_MEL, SEGMENT_FRAMES, LogMelTarget, MSTFrontend, MSTModel, load_mst,
                         log_mel_db, peak_normalise, save_mst)
from .plotting import _mel_ticks, _pyplot

__all__ = ["Segments", "segment_waveform", "load_segments", "split_clips", "train_mst", "evaluate_mst",
           "run_learn_mel", "plot_target_vs_prediction", "plot_filters", "majority_vote", "run_mst_study",
           "plot_study"]

SILENCE_DB = -72.0  # Piczak (2015): segments with a mean log-mel level at or below this are silent


def _tqdm(iterable=None, progress=True, **kw):
    from tqdm.auto import tqdm
    return tqdm(iterable, disable=not progress, dynamic_ncols=True, leave=False, **kw)


def _log(progress, *args):
    if progress:
        print(*args, flush=True)


# --------------------------------------------------------------------------------------------
# Segments
# --------------------------------------------------------------------------------------------
@dataclass
class Segments:
    """Peak-normalised waveform segments ``(n, samples)`` with the clip each came from and its label."""

    waves: torch.Tensor
    clip_index: torch.Tensor
    labels: torch.Tensor | None = None
    paths: list = field(default_factory=list)  # one per clip index
    skipped: list = field(default_factory=list)  # (path, cause)

    def __len__(self):
        return int(self.waves.shape[0])

    def subset(self, mask: torch.Tensor) -> "Segments":
        return Segments(self.waves[mask], self.clip_index[mask],
                        None if self.labels is None else self.labels[mask], self.paths, self.skipped)


def segment_waveform(waveform: torch.Tensor, mel_module, segment_frames: int = SEGMENT_FRAMES,
                     overlap: float = 0.5, silence_db: float | None = SILENCE_DB) -> torch.Tensor:
    """Cut a clip ``(time,)`` into peak-normalised segments ``(n, hop * (segment_frames - 1))``.

    Segments start every ``(1 - overlap) * length`` samples (Piczak 2015: 50 %); a clip shorter
    than one segment is zero-padded to one. With ``center=True`` framing each segment yields exactly
    ``segment_frames`` frames. Segments whose mean level (clip peak-normalised, dB of the mel power,
    floored 80 dB below the segment's maximum) is at or below ``silence_db`` are dropped (``None``:
    keep all). Each kept segment is then divided by its own peak. May return zero segments.
    """
    if waveform.ndim != 1:
        raise ValueError(f"waveform must be 1-D (time,), got shape {tuple(waveform.shape)}")
    if not isinstance(segment_frames, int) or segment_frames < 2:
        raise ValueError(f"segment_frames must be an integer >= 2, got {segment_frames!r}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    length = mel_module.hop_length * (segment_frames - 1)
    step = max(1, int(round(length * (1.0 - overlap))))
    x = peak_normalise(waveform.float())
    if x.shape[0] < length:
        x = torch.nn.functional.pad(x, (0, length - x.shape[0]))
    segs = x.unfold(0, length, step)  # (n, length)
    if silence_db is not None:
        level = log_mel_db(mel_module(segs)).mean(dim=(-2, -1))
        segs = segs[level > silence_db]
    return peak_normalise(segs).contiguous()


def load_segments(clips, mel: dict | None = None, segment_frames: int = SEGMENT_FRAMES, overlap: float = 0.5,
                  silence_db: float | None = SILENCE_DB, progress: bool = True) -> Segments:
    """Read clips (``Clip`` records or paths) and cut each into segments (:func:`segment_waveform`).

    A clip that cannot be read (``AudioError``) or has only silent segments is skipped and listed in
    ``Segments.skipped`` with its cause; the run goes on. ``clip_index`` refers to the position in
    ``clips``; ``labels`` is filled when the clips have a ``label``.
    """
    from .audio import AudioError, load_audio
    from .frontends import MelSpectrogram
    mel = dict(DEFAULT_MEL if mel is None else mel)
    mel_module = MelSpectrogram(**mel)
    waves, index, labels, paths, skipped = [], [], [], [], []
    has_labels = all(hasattr(c, "label") for c in clips)
    for i, clip in enumerate(_tqdm(clips, progress, desc="segments", unit="clip")):
        path = str(getattr(clip, "path", clip))
        paths.append(path)
        try:
            wave, _ = load_audio(path, sample_rate=int(mel["sample_rate"]))
        except (AudioError, FileNotFoundError) as exc:
            skipped.append((path, str(exc)))
            continue
        segs = segment_waveform(wave, mel_module, segment_frames, overlap, silence_db)
        if segs.shape[0] == 0:
            skipped.append((path, f"all segments silent (mean level <= {silence_db} dB)"))
            continue
        waves.append(segs)
        index.append(torch.full((segs.shape[0],), i, dtype=torch.long))
        if has_labels:
            labels.append(torch.full((segs.shape[0],), int(clip.label), dtype=torch.long))
    if not waves:
        raise ValueError(f"no usable segments in {len(clips)} clip(s)"
                         + (f"; first problem: {skipped[0][0]}: {skipped[0][1]}" if skipped else ""))
    return Segments(torch.cat(waves), torch.cat(index), torch.cat(labels) if has_labels else None, paths, skipped)


def split_clips(clips, fraction: float, seed: int = 0):
    """Class-stratified split that keeps each source recording on one side -> ``(rest, held_out)`` lists.

    Within each class the sources (``Clip.source_id``, else the file) are shuffled with ``seed`` and
    sources are moved to the held-out side until it has ``round(fraction * n_clips)`` clips of that
    class (at least one where the class has two or more sources). Clips without a label count as one class.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    by_class: dict = {}
    for i, c in enumerate(clips):
        src = getattr(c, "source_id", "") or str(getattr(c, "path", c))
        by_class.setdefault(getattr(c, "label", 0), {}).setdefault(src, []).append(i)
    held = set()
    for label in sorted(by_class):
        groups = list(by_class[label].values())
        order = rng.permutation(len(groups))
        n_clips = sum(len(g) for g in groups)
        want = max(1 if len(groups) > 1 else 0, int(round(fraction * n_clips)))
        taken = 0
        for j in order:
            if taken >= want or (len(groups) > 1 and taken + len(groups[j]) >= n_clips):
                continue
            held.update(groups[j])
            taken += len(groups[j])
    rest = [c for i, c in enumerate(clips) if i not in held]
    out = [c for i, c in enumerate(clips) if i in held]
    return rest, out


# --------------------------------------------------------------------------------------------
# Training the MSTModel
# --------------------------------------------------------------------------------------------
def _batched(fn, x, batch_size=100):
    return torch.cat([fn(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])


@torch.no_grad()
def evaluate_mst(model: MSTModel, waves: torch.Tensor, targets: torch.Tensor, batch_size: int = 100) -> dict:
    """Mean squared error and Pearson correlation (over all bands, frames, segments) of the model's
    output against ``targets`` ``(n, n_mels, frames)``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pred = _batched(lambda b: model(b.to(device)).cpu(), waves, batch_size).double()
    model.train(was_training)
    t = targets.double()
    mse = float(((pred - t) ** 2).mean())
    p, q = pred.flatten() - pred.mean(), t.flatten() - t.mean()
    corr = float((p @ q) / (p.norm() * q.norm()).clamp_min(1e-12))
    return {"mse": mse, "corr": corr}


@dataclass
class MSTResult:
    model: MSTModel
    target: LogMelTarget
    history: list  # one dict per epoch; epoch 0 = before training
    best_epoch: int
    val: dict  # {"mse", "corr"} of the kept (best) model
    seconds: float


@torch.no_grad()
def _init_output_layer(model: MSTModel, y_train: torch.Tensor, scale: float = 0.1):
    """Start the output at each band's training mean: ``tanh(beta_k) = mean_k`` and a small scale.

    The last batch norm (or, without batch norm, the last convolution's bias) gets
    ``beta_k = atanh(mean_k)`` and ``gamma_k = scale * std_k``, so the untrained model already
    predicts the per-band mean with a little variation instead of unit-variance noise through the
    tanh; training then only has to learn the deviations. A speed-up for short runs, not in the paper.
    """
    mean = y_train.double().mean(dim=(0, 2)).clamp(-0.99, 0.99)
    std = y_train.double().std(dim=(0, 2))
    if isinstance(model.bn3, nn.BatchNorm1d):
        model.bn3.bias.copy_(torch.atanh(mean).to(model.bn3.bias))
        model.bn3.weight.copy_((scale * std).clamp_min(1e-3).to(model.bn3.weight))
    else:
        model.conv3.bias.copy_(torch.atanh(mean).to(model.conv3.bias))
        model.conv3.weight.mul_(scale)


def train_mst(train_waves: torch.Tensor, val_waves: torch.Tensor, mel: dict | None = None, epochs: int = 100,
              patience: int = 5, batch_size: int = 100, lr: float = 3e-4, seed: int = 0,
              model_options: dict | None = None, device: str | None = None, progress: bool = True,
              init_output: bool = True) -> MSTResult:
    """Train an :class:`MSTModel` to output the normalised log-mel of peak-normalised segments.

    Parameters
    ----------
    train_waves, val_waves : Tensor ``(n, samples)``
        Peak-normalised segments (:func:`load_segments`). The target's statistics (global mean,
        std, then min and max of the z-scores: :class:`LogMelTarget`) come from ``train_waves`` only.
    mel : dict
        Mel parameters of the target (default 22050 Hz, n_fft 1024, hop 512, 60 mels). The model's
        kernel, stride and band count follow them.
    epochs, patience : int
        At most ``epochs`` passes; stop when the validation MSE has not improved for ``patience``
        epochs and keep the best model (Tax et al.: Adam 3e-4, batch 100, early stopping).
    model_options : dict
        Extra :class:`MSTModel` arguments (``n_filters``, ``n_hidden``; small ones for tests).
    init_output : bool
        Start the output layer at the training target's per-band means (:func:`_init_output_layer`;
        default True; False = the paper's plain Xavier / batch-norm initialisation).

    Returns an :class:`MSTResult`; ``history[0]`` is the untrained model's validation score.
    """
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
        raise ValueError(f"patience must be a positive integer, got {patience!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if train_waves.ndim != 2 or val_waves.ndim != 2 or train_waves.shape[0] == 0 or val_waves.shape[0] == 0:
        raise ValueError("train_waves and val_waves must be non-empty (n, samples) tensors")
    mel = dict(DEFAULT_MEL if mel is None else mel)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)

    target = LogMelTarget(mel, normalise_peak=False)
    train_db = _batched(target.db, train_waves)
    target.fit([train_db])
    y_train = target.normalise(train_db).float()
    y_val = _batched(target, val_waves).float()

    model = MSTModel(n_mels=target.mel.n_mels, n_fft=target.mel.n_fft, hop_length=target.mel.hop_length,
                     **(model_options or {})).to(device)
    if model.num_frames(train_waves.shape[-1]) != y_train.shape[-1]:
        raise ValueError("model frames do not match the target's frames")  # cannot happen: same framing
    if init_output:
        _init_output_layer(model, y_train)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.MSELoss()
    start = time.perf_counter()
    score = evaluate_mst(model, val_waves, y_val)
    history = [{"epoch": 0, "train_mse": None, "val_mse": score["mse"], "val_corr": score["corr"], "seconds": 0.0}]
    best = (score["mse"], 0, {k: v.detach().clone() for k, v in model.state_dict().items()}, score)
    bar = _tqdm(range(1, epochs + 1), progress, desc="learn-mel", unit="epoch")
    for epoch in bar:
        model.train()
        order = torch.randperm(train_waves.shape[0], generator=gen)
        total, count = 0.0, 0
        for i in _tqdm(range(0, len(order), batch_size), progress, desc=f"epoch {epoch}", unit="batch"):
            idx = order[i:i + batch_size]
            if len(idx) < 2 and count > 0:  # batch norm needs 2+ samples; drop a last singleton
                continue
            x, y = train_waves[idx].to(device), y_train[idx].to(device)
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        score = evaluate_mst(model, val_waves, y_val)
        history.append({"epoch": epoch, "train_mse": total / max(count, 1), "val_mse": score["mse"],
                        "val_corr": score["corr"], "seconds": time.perf_counter() - start})
        bar.set_postfix(train=f"{total / max(count, 1):.4f}", val=f"{score['mse']:.4f}", corr=f"{score['corr']:.3f}")
        if score["mse"] < best[0]:
            best = (score["mse"], epoch, {k: v.detach().clone() for k, v in model.state_dict().items()}, score)
        elif epoch - best[1] >= patience:
            break
    model.load_state_dict(best[2])
    model.eval()
    return MSTResult(model.cpu(), target, history, best[1], best[3], time.perf_counter() - start)


# --------------------------------------------------------------------------------------------
# Figures 1 and 2
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def plot_target_vs_prediction(model: MSTModel, target: LogMelTarget, waveform: torch.Tensor, output,
                              title: str = "") -> Path:
    """Figure 1 of Tax et al.: the normalised log-mel target of a clip and the MSTModel's prediction.

    ``waveform`` ``(time,)`` is peak-normalised as a whole and fed in one piece (the model works on
    any length); the two images share one colour scale (the target's [-1, 1] range).
    """
    plt = _pyplot()
    x = peak_normalise(waveform.float())
    model.eval()
    pred = model(x[None])[0].numpy()
    tgt = target.normalise(log_mel_db(target.mel(x[None]), top_db=target.top_db))[0].float().numpy()
    r = float(np.corrcoef(pred.ravel(), tgt.ravel())[0, 1])
    mse = float(((pred - tgt) ** 2).mean())
    duration = x.shape[-1] / target.mel.sample_rate
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8), constrained_layout=True)
    for ax, data, name in ((axes[0], tgt, "target: normalised log-mel"), (axes[1], pred, "MSTModel prediction")):
        im = ax.imshow(data, origin="lower", aspect="auto", cmap="magma", vmin=-1, vmax=1, interpolation="nearest",
                       extent=(0, duration, -0.5, data.shape[0] - 0.5))
        _mel_ticks(ax, target.mel)
        ax.set_xlabel("time (s)")
        ax.set_title(name, fontsize=10)
    fig.colorbar(im, ax=axes[:2], pad=0.01, label="normalised log-mel")
    diff = pred - tgt
    lim = max(float(np.abs(diff).max()), 1e-6)
    im = axes[2].imshow(diff, origin="lower", aspect="auto", cmap="coolwarm", vmin=-lim, vmax=lim,
                        interpolation="nearest", extent=(0, duration, -0.5, diff.shape[0] - 0.5))
    _mel_ticks(axes[2], target.mel)
    axes[2].set_xlabel("time (s)")
    axes[2].set_title(f"prediction - target (MSE {mse:.4f}, r = {r:.3f})", fontsize=10)
    fig.colorbar(im, ax=axes[2], pad=0.01)
    if title:
        fig.suptitle(title, fontsize=10)
    output = Path(output)
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output


@torch.no_grad()
def plot_filters(model: MSTModel, sample_rate: float, output, n_examples: int = 8, title: str = "") -> Path:
    """Figure 2 of Tax et al.: learned first-layer filters and their frequency responses.

    Left: the magnitude response (dB, 4096-point FFT of each kernel) of all first-layer filters,
    sorted by peak frequency. Right: ``n_examples`` filters picked evenly along that order, each as
    its impulse response (kernel over time) and magnitude response.
    """
    plt = _pyplot()
    w = model.conv1.weight[:, 0, :].double()  # (n_filters, n_fft)
    n_fft = max(4096, w.shape[-1])
    mag = torch.fft.rfft(w, n=n_fft).abs()
    db = 20 * torch.log10(mag.clamp_min(1e-12))
    db = db - db.amax(dim=1, keepdim=True)
    peak = mag.argmax(dim=1)
    order = torch.argsort(peak, stable=True)
    freqs = np.linspace(0, sample_rate / 2, mag.shape[1])
    fig = plt.figure(figsize=(15, 9), constrained_layout=True)
    gs = fig.add_gridspec(n_examples, 3, width_ratios=[1.4, 1, 1])
    ax = fig.add_subplot(gs[:, 0])
    im = ax.imshow(db[order].numpy().T, origin="lower", aspect="auto", cmap="viridis", vmin=-40, vmax=0,
                   extent=(-0.5, w.shape[0] - 0.5, 0, sample_rate / 2), interpolation="nearest")
    ax.set_xlabel("filter (sorted by peak frequency)")
    ax.set_ylabel("frequency (Hz)")
    ax.set_title(f"all {w.shape[0]} first-layer filters: magnitude response (dB re peak)", fontsize=10)
    fig.colorbar(im, ax=ax, pad=0.01, label="dB")
    picks = order[np.linspace(0, w.shape[0] - 1, n_examples).round().astype(int)]
    t_ms = np.arange(w.shape[-1]) / sample_rate * 1000
    for row, k in enumerate(picks.tolist()):
        a = fig.add_subplot(gs[row, 1])
        a.plot(t_ms, w[k].numpy(), lw=0.6, color="tab:blue")
        a.set_yticks([])
        a.text(0.99, 0.95, f"filter {k}", transform=a.transAxes, fontsize=8, ha="right", va="top",
               bbox=dict(facecolor="white", alpha=0.8, lw=0))
        b = fig.add_subplot(gs[row, 2])
        b.plot(freqs, db[k].numpy(), lw=0.7, color="tab:red")
        b.set_ylim(-60, 3)
        b.set_xlim(0, sample_rate / 2)
        b.text(0.99, 0.95, f"peak {freqs[peak[k]]:.0f} Hz", transform=b.transAxes, fontsize=8, ha="right",
               va="top", bbox=dict(facecolor="white", alpha=0.8, lw=0))
        if row == 0:
            a.set_title("impulse response (kernel)", fontsize=10)
            b.set_title("magnitude response (dB re peak)", fontsize=10)
        if row < n_examples - 1:
            a.set_xticklabels([])
            b.set_xticklabels([])
        else:
            a.set_xlabel("time (ms)")
            b.set_xlabel("frequency (Hz)")
    if title:
        fig.suptitle(title, fontsize=11)
    output = Path(output)
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return output


def figure_paths(checkpoint) -> tuple[Path, Path]:
    """Where ``learn-mel`` writes Figures 1 and 2: next to the checkpoint, named after it."""
    checkpoint = Path(checkpoint)
    stem = checkpoint.with_suffix("")
    return (stem.with_name(stem.name + "_target_vs_predicted.png"), stem.with_name(stem.name + "_filters.png"))


# --------------------------------------------------------------------------------------------
# melfront learn-mel
# --------------------------------------------------------------------------------------------
def _load_dataset(name, root, max_clips=None, seed=0):
    from .data import dataset
    clips = dataset(name, root)
    if max_clips is not None:
        if isinstance(max_clips, bool) or not isinstance(max_clips, int) or max_clips < 2:
            raise ValueError(f"max_clips must be an integer >= 2, got {max_clips!r}")
        if len(clips) > max_clips:  # a seeded random subset, in the data set's order
            keep = np.sort(np.random.default_rng(seed + 12345).permutation(len(clips))[:max_clips])
            clips = clips.subset([clips[i] for i in keep])
    return clips


def learn_mel_from_clips(clips, output, mel: dict | None = None, epochs: int = 100, patience: int = 5,
                         val_fraction: float = 0.15, batch_size: int = 100, lr: float = 3e-4, seed: int = 0,
                         segment_frames: int = SEGMENT_FRAMES, model_options: dict | None = None,
                         device: str | None = None, progress: bool = True, extra: dict | None = None) -> dict:
    """Split ``clips`` (by source), cut segments, train, save the checkpoint and the two figures.

    Returns a JSON-able summary: validation MSE and correlation of the kept model, epochs, run time,
    the checkpoint and figure paths, and skipped clips.
    """
    mel = dict(DEFAULT_MEL if mel is None else mel)
    train_clips, val_clips = split_clips(list(clips), val_fraction, seed=seed)
    if not train_clips or not val_clips:
        raise ValueError(f"need clips on both sides of the validation split, got {len(train_clips)} train "
                         f"and {len(val_clips)} validation clip(s) from {len(clips)}")
    _log(progress, f"learn-mel: {len(train_clips)} training and {len(val_clips)} validation clips")
    t0 = time.perf_counter()
    train = load_segments(train_clips, mel, segment_frames, progress=progress)
    val = load_segments(val_clips, mel, segment_frames, progress=progress)
    prep_seconds = time.perf_counter() - t0
    _log(progress, f"learn-mel: {len(train)} training and {len(val)} validation segments "
                   f"of {train.waves.shape[-1]} samples ({prep_seconds:.1f} s to prepare)")
    result = train_mst(train.waves, val.waves, mel, epochs=epochs, patience=patience, batch_size=batch_size,
                       lr=lr, seed=seed, model_options=model_options, device=device, progress=progress)
    skipped = [list(s) for s in train.skipped + val.skipped]
    summary = {
        "val_mse": result.val["mse"], "val_corr": result.val["corr"], "best_epoch": result.best_epoch,
        "epochs_run": len(result.history) - 1, "train_seconds": result.seconds, "prep_seconds": prep_seconds,
        "n_train_clips": len(train_clips), "n_val_clips": len(val_clips),
        "n_train_segments": len(train), "n_val_segments": len(val), "segment_frames": segment_frames,
        "history": result.history, "skipped": skipped,
    }
    config_extra = {"training": {k: v for k, v in summary.items() if k != "skipped"},
                    "train_clips": sorted(Path(str(getattr(c, "path", c))).name for c in train_clips),
                    "val_clips": sorted(Path(str(getattr(c, "path", c))).name for c in val_clips)}
    config_extra.update(extra or {})
    output = save_mst(output, result.model, result.target, extra=config_extra)
    fig1, fig2 = figure_paths(output)
    # Figure 1: the validation clip with the most segments kept (an eventful one), fed whole
    counts = torch.bincount(val.clip_index, minlength=len(val.paths))
    pick = int(counts.argmax())
    from .audio import load_audio
    wave, _ = load_audio(val.paths[pick], sample_rate=int(mel["sample_rate"]))
    plot_target_vs_prediction(result.model, result.target, wave, fig1,
                              title=f"validation clip {Path(val.paths[pick]).name}")
    plot_filters(result.model, mel["sample_rate"], fig2,
                 title=f"MSTModel first layer after {result.best_epoch} epoch(s)")
    summary.update(checkpoint=str(output), figures=[str(fig1), str(fig2)])
    return summary


def run_learn_mel(dataset: str, root, output, epochs: int = 100, patience: int = 5, max_clips: int | None = None,
                  val_fraction: float = 0.15, batch_size: int = 100, lr: float = 3e-4, seed: int = 0,
                  device: str | None = None, progress: bool = True) -> dict:
    """``melfront learn-mel``: train the MSTModel on a data set's audio (labels unused)."""
    clips = _load_dataset(dataset, root, max_clips, seed)
    return learn_mel_from_clips(clips, output, epochs=epochs, patience=patience, val_fraction=val_fraction,
                                batch_size=batch_size, lr=lr, seed=seed, device=device, progress=progress,
                                extra={"dataset": dataset})


# --------------------------------------------------------------------------------------------
# The (a)-(d) study
# --------------------------------------------------------------------------------------------
def majority_vote(probs: torch.Tensor, clip_index: torch.Tensor, n_clips: int | None = None) -> dict:
    """Clip labels from segment probabilities ``(n_segments, n_classes)`` by majority vote.

    Each segment votes for its most probable class; the clip takes the class with most votes, ties
    broken by the larger summed probability among the tied classes. Returns ``{clip: class}`` for
    every clip index present.
    """
    votes = probs.argmax(dim=1)
    out = {}
    for c in torch.unique(clip_index).tolist():
        m = clip_index == c
        counts = torch.bincount(votes[m], minlength=probs.shape[1]).double()
        tied = counts == counts.max()
        score = torch.where(tied, probs[m].double().sum(0), torch.full_like(counts, -math.inf))
        out[c] = int(score.argmax())
    return out


def _clip_accuracy(probs, seg_labels, clip_index) -> float:
    pred = majority_vote(probs, clip_index)
    truth = {int(c): int(seg_labels[clip_index == c][0]) for c in pred}
    return float(np.mean([pred[c] == truth[c] for c in pred]))


class _Variant:
    """One arm of the study: a frontend + PiczakCNN and its training state."""

    def __init__(self, name, frontend, backbone, precompute: bool):
        from .models.classifier import Classifier
        self.name, self.precompute = name, precompute
        self.model = Classifier(frontend, backbone)
        self.curve = []  # per epoch: dict(epoch, test_accuracy, segment_accuracy, train_loss, seconds)


def _make_optimizer(params, optimizer, lr, momentum=0.9, weight_decay=0.0):
    params = [p for p in params if p.requires_grad]
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")


@torch.no_grad()
def _frontend_features(frontend, waves, batch_size=100):
    frontend.eval()
    z = _batched(frontend, waves, batch_size)
    return z.unsqueeze(1) if z.ndim == 3 else z


def _train_epochs(v: _Variant, train: Segments, test: Segments, epochs: int, first_epoch: int, opt,
                  batch_size: int, gen: torch.Generator, device, progress: bool, clock: float):
    """Train ``v`` for ``epochs`` epochs; after each, the test accuracy (majority vote) is appended to its curve."""
    model = v.model.to(device)
    loss_fn = nn.CrossEntropyLoss()
    if v.precompute:  # a fixed frontend: compute its output once, train the backbone on it
        x_train = _frontend_features(model.frontend, train.waves)
        x_test = _frontend_features(model.frontend, test.waves)
        net = model.backbone
    else:
        x_train, x_test, net = train.waves, test.waves, model
    for epoch in _tqdm(range(first_epoch, first_epoch + epochs), progress, desc=v.name, unit="epoch"):
        t0 = time.perf_counter()
        net.train()
        order = torch.randperm(len(train), generator=gen)
        total, count = 0.0, 0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            if len(idx) < 2:
                continue
            logits = net(x_train[idx].to(device))
            loss = loss_fn(logits, train.labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        net.eval()
        with torch.no_grad():
            probs = _batched(lambda b: torch.softmax(net(b.to(device)), dim=1).cpu(), x_test)
        clock += time.perf_counter() - t0
        v.curve.append({"epoch": epoch + 1, "test_accuracy": _clip_accuracy(probs, test.labels, test.clip_index),
                        "segment_accuracy": float((probs.argmax(1) == test.labels).double().mean()),
                        "train_loss": total / max(count, 1), "seconds": clock})
    return clock


def plot_study(curves: dict, output, title: str = "", branch_epoch: int | None = None) -> Path:
    """Figure 3 of Tax et al.: test accuracy (clip-level majority vote) against epoch, one line per arm.

    ``branch_epoch``: the epoch after which (d) was unfrozen, marked with a vertical line.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), constrained_layout=True)
    styles = {"a": ("tab:blue", "-"), "b": ("tab:orange", "-"), "c": ("tab:green", "-"), "d": ("tab:red", "--")}
    for name, curve in curves.items():
        color, ls = styles.get(name[0], (None, "-"))
        ep = [r["epoch"] for r in curve["curve"]]
        acc = [100 * r["test_accuracy"] for r in curve["curve"]]
        ax.plot(ep, acc, ls, color=color, marker="o", ms=3, label=curve["label"])
    if branch_epoch:
        ax.axvline(branch_epoch + 0.5, color="grey", lw=0.8, ls=":")
        ax.text(branch_epoch + 0.7, 97, "(d) unfrozen", fontsize=8, color="grey", va="top")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy, clip majority vote (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", framealpha=0.9)
    if title:
        ax.set_title(title, fontsize=10)
    output = Path(output)
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output


LABELS = {
    "a": "(a) log-mel + PiczakCNN",
    "b": "(b) raw, 3 conv layers random (Xavier, dropout 0.5)",
    "c": "(c) raw, MSTModel layers frozen",
    "d": "(d) raw, MSTModel layers fine-tuned after (c)",
}


def run_mst_study(dataset: str, root, output_dir, mst: str | None = None, mst_dataset: str | None = None,
                  mst_root=None, mst_epochs: int = 20, mst_patience: int = 3, mst_lr: float = 3e-4, epochs: int = 10,
                  finetune_epochs: int = 5, test_fraction: float = 0.25, batch_size: int = 50,
                  optimizer: str = "sgd", lr: float = 5e-3, finetune_lr: float | None = None, hidden: int = 5000,
                  max_clips: int | None = None, seed: int = 0, device: str | None = None,
                  progress: bool = True) -> dict:
    """``melfront mst-study``: PiczakCNN on (a) log-mel, (b) raw audio from scratch, (c) raw audio through the
    frozen MSTModel layers, (d) (c) fine-tuned; Figure 3 and ``results.json`` in ``output_dir``.

    The clips are split (class-stratified, sources kept together) into training and test sets
    (``test_fraction``). Without ``mst``, an MSTModel is first trained by :func:`learn_mel_from_clips` on
    the audio of ``mst_dataset`` (default: the same data set) minus the test clips, saved as
    ``output_dir/mst.pt``; a given checkpoint whose training clips include test clips gets a warning.

    (a), (b), (c) train for ``epochs + finetune_epochs`` epochs; (d) starts from (c) after ``epochs``
    epochs, unfreezes the MSTModel layers (batch norm included) and trains everything for
    ``finetune_epochs`` more, at ``finetune_lr`` (default ``lr``), so that (c) and (d) compare at equal
    epochs. Optimiser: SGD with Nesterov momentum 0.9 at 5e-3 as Tax et al.'s classifier trainer
    (or Adam); (a) reads the same normalised log-mel the MSTModel learned (its checkpoint's statistics).
    Test accuracy = clip labels by majority vote over segments, after every epoch.
    """
    from .models.piczak import PiczakCNN
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    clips = _load_dataset(dataset, root, max_clips, seed)
    train_clips, test_clips = split_clips(list(clips), test_fraction, seed=seed)
    _log(progress, f"mst-study: {dataset}: {len(train_clips)} training and {len(test_clips)} test clips, "
                   f"{len(clips.classes)} classes")
    warnings = []
    if mst is None:
        mst_clips = clips if mst_dataset in (None, dataset) else _load_dataset(mst_dataset, mst_root or root)
        test_names = {Path(c.path).resolve() for c in test_clips}
        mst_clips = [c for c in mst_clips if Path(c.path).resolve() not in test_names]
        _log(progress, f"mst-study: learning the MSTModel on {len(mst_clips)} clips of "
                       f"{mst_dataset or dataset} (test clips excluded)")
        mst_summary = learn_mel_from_clips(mst_clips, output_dir / "mst.pt", epochs=mst_epochs,
                                           patience=mst_patience, lr=mst_lr, seed=seed, device=device,
                                           progress=progress,
                                           extra={"dataset": mst_dataset or dataset})
        mst = output_dir / "mst.pt"
    else:
        mst_summary = None
    mst_model, target, mst_config = load_mst(mst)
    if target is None:
        raise ValueError(f"{mst}: the checkpoint has no target statistics; retrain it with `melfront learn-mel`")
    seen = set(mst_config.get("train_clips", [])) | set(mst_config.get("val_clips", []))
    overlap = seen & {Path(c.path).name for c in test_clips}
    if overlap:
        warnings.append(f"{len(overlap)} test clip(s) were in the MSTModel's (unlabelled) training or "
                        f"validation audio")
        _log(progress, "mst-study: warning: " + warnings[-1])
    mel = target.mel_kwargs
    frames = SEGMENT_FRAMES
    train = load_segments(train_clips, mel, frames, progress=progress)
    test = load_segments(test_clips, mel, frames, progress=progress)
    n_classes = len(clips.classes)
    _log(progress, f"mst-study: {len(train)} training and {len(test)} test segments")

    def backbone():
        return PiczakCNN(n_classes, n_mels=mel["n_mels"], n_frames=frames, hidden=hidden)

    torch.manual_seed(seed)
    log_mel = LogMelTarget(mel, stats=target.stats(), normalise_peak=False, top_db=target.top_db)
    variants = {
        "a": _Variant("a", log_mel, backbone(), precompute=True),
        "b": _Variant("b", MSTModel(n_mels=mel["n_mels"], n_fft=mel["n_fft"], hop_length=mel["hop_length"],
                                    batch_norm=False, dropout=0.5), backbone(), precompute=False),
        "c": _Variant("c", MSTFrontend(mst_model, frozen=True), backbone(), precompute=True),
    }
    total_epochs = epochs + finetune_epochs
    for key in ("a", "b", "c"):
        v = variants[key]
        gen = torch.Generator().manual_seed(seed + 1)
        opt = _make_optimizer(v.model.parameters(), optimizer, lr)
        clock = _train_epochs(v, train, test, epochs, 0, opt, batch_size, gen, device, progress, 0.0)
        if key == "c" and finetune_epochs > 0:  # branch (d) off (c) "after convergence"
            import copy
            d = _Variant("d", copy.deepcopy(v.model.frontend), copy.deepcopy(v.model.backbone), precompute=False)
            d.model.frontend.unfreeze()
            d.curve = [dict(r) for r in v.curve]
            d_gen = torch.Generator()
            d_gen.set_state(gen.get_state())  # the same batch order as (c)'s continuation
            # a fresh optimiser over all parameters (the frontend's have no momentum to carry over)
            d_opt = _make_optimizer(d.model.parameters(), optimizer, finetune_lr or lr)
            d.clock = clock
            variants["d"] = d
            d_state = (d_opt, d_gen)
        clock = _train_epochs(v, train, test, finetune_epochs, epochs, opt, batch_size, gen, device, progress, clock)
        _log(progress, f"mst-study: {LABELS[key]}: test accuracy {v.curve[-1]['test_accuracy']:.3f} after "
                       f"{total_epochs} epochs, {clock:.0f} s")
    if "d" in variants:
        d = variants["d"]
        d_opt, d_gen = d_state
        clock = _train_epochs(d, train, test, finetune_epochs, epochs, d_opt, batch_size, d_gen, device,
                              progress, d.clock)
        _log(progress, f"mst-study: {LABELS['d']}: test accuracy {d.curve[-1]['test_accuracy']:.3f} after "
                       f"{total_epochs} epochs, {clock:.0f} s")
    curves = {k: {"label": LABELS[k], "curve": v.curve, "final_test_accuracy": v.curve[-1]["test_accuracy"],
                  "best_test_accuracy": max(r["test_accuracy"] for r in v.curve),
                  "seconds": v.curve[-1]["seconds"]} for k, v in variants.items()}
    fig = plot_study(curves, output_dir / "accuracy_vs_epoch.png",
                     title=f"{dataset}: {len(train_clips)} train / {len(test_clips)} test clips, PiczakCNN "
                           f"(60x101), {optimizer} lr {lr}", branch_epoch=epochs if "d" in variants else None)
    results = {
        "dataset": dataset, "n_train_clips": len(train_clips), "n_test_clips": len(test_clips),
        "n_train_segments": len(train), "n_test_segments": len(test), "classes": list(clips.classes),
        "epochs": epochs, "finetune_epochs": finetune_epochs, "optimizer": optimizer, "lr": lr,
        "finetune_lr": finetune_lr or lr, "batch_size": batch_size, "hidden": hidden, "seed": seed,
        "mst_checkpoint": str(mst), "mst": mst_summary and {k: v for k, v in mst_summary.items() if k != "history"},
        "variants": curves, "figure": str(fig), "warnings": warnings,
        "skipped": [list(s) for s in train.skipped + test.skipped], "device": str(device),
    }
    (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    return results
