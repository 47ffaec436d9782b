"""Generated demo signals for the adaptive filterbank and window-equivalence figures (``melfront equivalence``)."""
from __future__ import annotations

import numpy as np
import torch

from ..checks import positive_float

__all__ = ["damped_notes", "demo_clip"]


def damped_notes(sample_rate: float = 22050, duration: float = 1.5, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """A test signal of damped harmonic notes (piano-like: sharp onsets, exponential decays), ``(time,)``.

    Eight notes at random times, pitches 110-880 Hz, 1-6 harmonics with 1/h amplitudes and decay
    times 0.08-0.4 s, plus a short click; peak-normalised to 0.9. Deterministic for a given ``seed``.

    >>> x = damped_notes(8000, 0.5)
    >>> x.shape, round(float(x.abs().max()), 6), torch.equal(x, damped_notes(8000, 0.5))
    (torch.Size([4000]), 0.9, True)
    """
    positive_float("sample_rate", sample_rate)
    positive_float("duration", duration)
    rng = np.random.default_rng(seed)
    n = int(round(duration * sample_rate))
    t = np.arange(n) / sample_rate
    x = np.zeros(n)
    for _ in range(8):
        onset = rng.uniform(0.02, 0.8) * duration
        f0 = 110.0 * 2 ** rng.uniform(0, 3)
        tau = rng.uniform(0.08, 0.4)
        env = np.where(t >= onset, np.exp(-(t - onset) / tau), 0.0)
        for h in range(1, rng.integers(1, 7) + 1):
            if h * f0 < sample_rate / 2.2:
                x += env * np.sin(2 * np.pi * h * f0 * (t - onset) + rng.uniform(0, 2 * np.pi)) / h
    click = int(0.5 * n)
    x[click:click + 3] += np.array([1.0, -0.6, 0.3])
    x *= 0.9 / np.abs(x).max()
    return torch.tensor(x, dtype=dtype)


def demo_clip(sample_rate: float = 22050, duration: float = 3.0, seed: int = 1) -> torch.Tensor:
    """A generated clip with something in every band (``(time,)``, float32): damped notes, a
    logarithmic chirp 100 Hz -> 0.45 ``sample_rate``, two bursts of coloured noise and a few clicks.

    >>> x = demo_clip(8000, 0.5)
    >>> x.shape, x.dtype, round(float(x.abs().max()), 6)
    (torch.Size([4000]), torch.float32, 0.9)
    """
    rng = np.random.default_rng(seed)
    n = int(round(duration * sample_rate))
    t = np.arange(n) / sample_rate
    x = 0.5 * damped_notes(sample_rate, duration, seed=seed).numpy()
    f0, f1 = 100.0, 0.45 * sample_rate
    k = np.log(f1 / f0) / duration
    x += 0.15 * np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k) * np.hanning(n)
    noise = np.cumsum(rng.standard_normal(n)) * 0.002 + rng.standard_normal(n) * 0.05
    for start, stop in ((0.35, 0.6), (0.7, 0.8)):
        env = ((t >= start * duration) & (t < stop * duration)).astype(float)
        x += noise * np.convolve(env, np.hanning(401) / np.hanning(401).sum(), mode="same")
    for c in rng.uniform(0.05, 0.95, 4):
        x[int(c * n)] += 0.8
    return torch.tensor(0.9 * x / np.abs(x).max(), dtype=torch.float32)
