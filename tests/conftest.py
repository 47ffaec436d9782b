"""Shared fixtures: every test makes its own tiny audio; nothing is read from ../shared or the network."""
import numpy as np
import pytest
import soundfile as sf
import torch


def make_field_clip(sample_rate=22050, duration=1.5, seed=0):
    """A deterministic clip with a realistic spread of levels: a harmonic call with vibrato, a
    noise burst, a decaying knock and a quiet pink-ish background (about 80 dB of range)."""
    rng = np.random.default_rng(seed)
    n = int(sample_rate * duration)
    t = np.arange(n) / sample_rate
    f0 = 400 + 150 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    call = sum(np.sin(k * phase) / k for k in range(1, 6)) * np.exp(-((t - 0.5) / 0.15) ** 2)
    burst = rng.standard_normal(n) * np.exp(-((t - 1.0) / 0.05) ** 2) * 0.3
    knock = np.sin(2 * np.pi * 120 * t) * np.exp(-np.maximum(t - 1.2, 0) * 30) * (t > 1.2)
    bg = np.cumsum(rng.standard_normal(n)) * 1e-4
    bg -= np.linspace(bg[0], bg[-1], n)
    x = 0.5 * call + burst + 0.8 * knock + bg
    return (x / np.abs(x).max() * 0.9).astype(np.float64)


@pytest.fixture
def field_clip():
    return make_field_clip()


@pytest.fixture
def wav_file(tmp_path):
    """Write a clip to a WAV file and return (path, samples)."""
    def write(x, sample_rate=22050, name="clip.wav", subtype="PCM_16"):
        path = tmp_path / name
        sf.write(path, x, sample_rate, subtype=subtype)
        return path
    return write


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module's tests: tiny convolutions run far faster on one thread than split
    over two, and a second test process then does not fight for the cores. Restored afterwards."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_csv(path, header, rows):
    """A CSV file (header, then rows) at ``path``, folders made: the metadata of the data-set fixtures."""
    import csv
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def banded_features(n_classes=3, per_class=4, n_mels=32):
    """``(features, labels)``: ``per_class`` linear mel spectrograms ``(n_mels, 50 + 7 i)`` per class, each class
    loud in its own 8 bands, so that a small network can tell the classes apart in a few steps."""
    g = torch.Generator().manual_seed(0)
    feats, labels = [], []
    for k in range(n_classes):
        for i in range(per_class):
            x = torch.rand(n_mels, 50 + 7 * i, generator=g) + 1e-3
            x[8 * k:8 * k + 8] *= 20.0
            feats.append(x)
            labels.append(k)
    return feats, labels
