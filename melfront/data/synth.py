"""A synthetic field-recording set: animal-like and mechanical sound events in realistic backgrounds.

Each class is one kind of short event (up/down chirps, trills, harmonic stacks, buzzes, click trains,
knocks, two-note whistles, warbles, band-limited noise bursts, croaks, hoots) with its own parameter
ranges; every clip draws its parameters within its class's ranges, places 1-3 events at random
onsets over a background of pink/brown noise, low-frequency rumble and a slow level drift, with
occasional distractors (broadband transients, faint steady tones) that belong to no class. The
event-to-background ratio is drawn in ``snr_db`` (default -10..+20 dB, measured over the events'
active samples) and the whole clip gets a random gain in ``gain_db`` (default +-20 dB), the two
conditions under which log/dB, power-law and PCEN compressions behave differently
(Wang et al. 2017, "Trainable frontend for robust and far-field keyword spotting"; Lostanlen et al.
2019, "Per-channel energy normalization: why and how").

Everything is determined by ``seed``: clip ``i`` of class ``k`` uses its own generator seeded with
``(seed, k, i)``, so any clip can be regenerated alone and the set is identical on every machine.

On disk the set is an ESC-50-like layout (``audio/{fold}-{src}-A-{target}.wav``,
``meta/esc50.csv`` with the ESC-50 columns) read by the ESC-50 loader's code path.
"""
from __future__ import annotations

import csv
import functools
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checks import finite_float, positive_int
from ..errors import DataError, ParameterError
from ..fileio import atomic_write, write_json
from .base import ClipList
from .cache import default_cache_dir
from .esc50 import read_esc50_layout
from .registry import register_dataset

__all__ = ["CLASS_TYPES", "synth_classes", "synth_clip", "generate_synth", "write_synth", "load_synth",
           "SYNTH_VERSION"]

#: Bumped whenever the generator changes what it writes (part of the cache folder name).
SYNTH_VERSION = 3

# Per class: the event generator and the ranges its per-clip parameters are drawn from (Hz, s).
CLASS_TYPES = [
    ("up_chirp", dict(f0=(900, 2200), ratio=(1.6, 2.6), dur=(0.12, 0.35), count=(1, 3))),
    ("down_chirp", dict(f0=(1800, 4200), ratio=(0.4, 0.65), dur=(0.12, 0.35), count=(1, 3))),
    ("trill", dict(f0=(2500, 5000), rate=(12, 30), dur=(0.4, 1.0), count=(1, 2))),
    ("harmonic_stack", dict(f0=(150, 450), harmonics=(4, 10), dur=(0.3, 0.8), count=(1, 2))),
    ("buzz", dict(f0=(70, 180), dur=(0.4, 1.2), count=(1, 2))),
    ("click_train", dict(rate=(6, 25), f0=(1500, 5000), dur=(0.3, 1.0), count=(1, 2))),
    ("knock", dict(f0=(150, 600), decay=(25, 70), knocks=(1, 4), dur=(0.3, 0.6), count=(1, 2))),
    ("two_note_whistle", dict(f0=(2000, 3500), ratio=(0.6, 0.82), dur=(0.1, 0.25), count=(1, 3))),
    ("warble", dict(f0=(1500, 3500), rate=(6, 14), depth=(0.08, 0.2), dur=(0.3, 0.8), count=(1, 2))),
    ("noise_burst", dict(f0=(500, 3000), octaves=(0.5, 1.5), dur=(0.1, 0.5), count=(1, 3))),
    ("croak", dict(f0=(300, 700), rate=(40, 80), dur=(0.2, 0.5), count=(1, 3))),
    ("hoot", dict(f0=(280, 600), ratio=(0.8, 0.95), dur=(0.25, 0.6), count=(1, 3))),
]


@dataclass(frozen=True)
class _ClassSpec:
    name: str
    kind: str
    ranges: dict
    shift: float  # frequency factor for classes beyond the first len(CLASS_TYPES)


def synth_classes(n_classes: int = 10) -> list[str]:
    """Class names of the synthetic set with ``n_classes`` classes, in label order.

    Beyond the 12 event kinds, later classes reuse them shifted in frequency (``up_chirp_2``, ...).

    >>> synth_classes(3)
    ['up_chirp', 'down_chirp', 'trill']
    >>> synth_classes(13)[-1]
    'up_chirp_2'
    """
    return [s.name for s in _specs(n_classes)]


def _specs(n_classes: int) -> list[_ClassSpec]:
    out = []
    for k in range(n_classes):
        kind, ranges = CLASS_TYPES[k % len(CLASS_TYPES)]
        rnd = k // len(CLASS_TYPES)
        # Later rounds reuse the event kinds an octave-ish lower/higher: distinct but confusable classes.
        shift = 1.0 if rnd == 0 else (0.6 if rnd % 2 else 1.45) ** ((rnd + 1) // 2)
        name = kind if rnd == 0 else f"{kind}_{rnd + 1}"
        out.append(_ClassSpec(name, kind, ranges, shift))
    return out


# --------------------------------------------------------------------------------------------
# Signal pieces (all numpy, vectorised over samples)
# --------------------------------------------------------------------------------------------
def _u(rng, lo_hi):
    lo, hi = lo_hi
    return float(rng.uniform(lo, hi))


def _env(n: int, attack: float = 0.1) -> np.ndarray:
    """A smooth attack/release envelope of ``n`` samples (raised-cosine ramps)."""
    a = max(1, int(n * attack))
    e = np.ones(n)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(a) / a)
    e[:a] = ramp
    e[n - a:] = np.minimum(e[n - a:], ramp[::-1])
    return e


def _tone(freq: np.ndarray, sr: int, phase0: float = 0.0) -> np.ndarray:
    """Sine with instantaneous frequency ``freq`` (Hz per sample)."""
    return np.sin(phase0 + 2 * np.pi * np.cumsum(freq) / sr)


def _band_noise(rng, n: int, sr: int, lo: float, hi: float) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sr)
    spec[(f < lo) | (f > hi)] = 0
    out = np.fft.irfft(spec, n)
    return out / (np.std(out) + 1e-12)


# One branch per event kind, a few lines each: kept in one function so that the order of the random draws
# (on which the set's bytes depend) reads top to bottom in one place.
def _event(spec: _ClassSpec, rng, sr: int) -> np.ndarray:
    """One event of class ``spec`` with parameters drawn in its ranges."""
    r, kind = spec.ranges, spec.kind
    nyq = 0.45 * sr
    f0 = min(_u(rng, r["f0"]) * spec.shift, nyq) if "f0" in r else 0.0
    dur = _u(rng, r["dur"])
    n = max(16, int(dur * sr))
    t = np.arange(n) / sr
    ph = rng.uniform(0, 2 * np.pi)
    if kind in ("up_chirp", "down_chirp", "hoot"):
        f1 = min(f0 * _u(rng, r["ratio"]), nyq)
        freq = f0 * (f1 / f0) ** (t / dur)  # exponential sweep
        x = _tone(freq, sr, ph)
        if kind == "hoot":
            x = x + 0.3 * _tone(2 * np.minimum(freq, nyq / 2), sr, ph)
        return x * _env(n, 0.15)
    if kind == "trill":
        rate = _u(rng, r["rate"])
        gate = np.clip(np.sin(2 * np.pi * rate * t) * 1.5, 0, 1) ** 2
        freq = f0 * (1 + 0.05 * np.sin(2 * np.pi * rate * t))
        return _tone(freq, sr, ph) * gate * _env(n, 0.05)
    if kind in ("harmonic_stack", "buzz", "croak"):
        if kind == "buzz":
            h = np.arange(1, max(2, int(nyq / f0)) + 1)
            amps = 1.0 / h
        elif kind == "croak":
            h = np.arange(1, 5)
            amps = np.array([0.6, 1.0, 0.7, 0.3])
        else:
            h = np.arange(1, int(rng.integers(r["harmonics"][0], r["harmonics"][1] + 1)) + 1)
            amps = rng.uniform(0.3, 1.0, h.size) / h ** 0.5
        keep = h * f0 * 1.01 < nyq  # no harmonic above Nyquist, vibrato included
        h, amps = h[keep], amps[keep]
        vib = 1 + 0.01 * np.sin(2 * np.pi * rng.uniform(4, 7) * t)
        phase = 2 * np.pi * np.cumsum(f0 * vib) / sr
        # one period as a wavetable (sum of harmonics), read at the running phase: O(n) for any harmonic count
        size = 2048
        theta = 2 * np.pi * np.arange(size + 1) / size
        table = (amps[:, None] * np.sin(h[:, None] * theta[None, :] + rng.uniform(0, 2 * np.pi, (h.size, 1)))).sum(0)
        pos = (phase % (2 * np.pi)) * (size / (2 * np.pi))
        i0 = np.minimum(pos.astype(int), size - 1)
        frac = pos - i0
        x = table[i0] * (1 - frac) + table[i0 + 1] * frac
        if kind == "buzz":  # insect-like wing-beat amplitude roughness
            x = x * (1 + 0.3 * _band_noise(rng, n, sr, 5, 40))
        if kind == "croak":
            rate = _u(rng, r["rate"])
            x = x * np.clip(np.sin(2 * np.pi * rate * t), 0, 1) ** 3
        return x * _env(n, 0.1)
    if kind == "click_train":
        rate = _u(rng, r["rate"])
        x = np.zeros(n)
        onsets = (np.arange(0, dur, 1 / rate) * sr).astype(int)
        onsets = onsets + rng.integers(-int(0.1 * sr / rate), int(0.1 * sr / rate) + 1, onsets.size)
        onsets = onsets[(onsets >= 0) & (onsets < n)]
        x[onsets] = rng.uniform(0.6, 1.0, onsets.size)
        click = _band_noise(rng, int(0.004 * sr) + 8, sr, f0 / 1.5, min(f0 * 1.5, nyq))
        click = click * np.exp(-np.arange(click.size) / (0.001 * sr))
        return np.convolve(x, click)[:n]
    if kind == "knock":
        x = np.zeros(n)
        k = int(rng.integers(r["knocks"][0], r["knocks"][1] + 1))
        onsets = np.sort(rng.integers(0, max(1, n - int(0.1 * sr)), k))
        decay = _u(rng, r["decay"])
        m = int(0.25 * sr)
        tm = np.arange(m) / sr
        ring = (np.sin(2 * np.pi * f0 * tm) + 0.5 * np.sin(2 * np.pi * min(2.7 * f0, nyq) * tm)) * np.exp(-decay * tm)
        for o in onsets:  # a damped resonance struck at each onset
            end = min(n, o + m)
            x[o:end] += ring[:end - o]
        return x
    if kind == "two_note_whistle":
        f1 = f0 * _u(rng, r["ratio"])
        gap = int(rng.uniform(0.02, 0.08) * sr)
        n2 = max(16, int(_u(rng, r["dur"]) * sr))
        a = _tone(np.full(n, f0), sr, ph) * _env(n, 0.15)
        b = _tone(np.full(n2, f1), sr, ph) * _env(n2, 0.15)
        return np.concatenate([a, np.zeros(gap), b])
    if kind == "warble":
        rate, depth = _u(rng, r["rate"]), _u(rng, r["depth"])
        freq = np.minimum(f0 * (1 + depth * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))), nyq)
        return _tone(freq, sr, ph) * _env(n, 0.1)
    if kind == "noise_burst":
        octv = _u(rng, r["octaves"])
        lo, hi = f0 / 2 ** (octv / 2), min(f0 * 2 ** (octv / 2), nyq)
        return _band_noise(rng, n, sr, lo, hi) * _env(n, 0.2)
    raise AssertionError(kind)


def _background(rng, n: int, sr: int) -> np.ndarray:
    """Pink + brown noise + low-frequency rumble, with a slow level drift; unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sr)
    f[0] = f[1]
    w_pink, w_brown, w_rumble = rng.uniform(0.2, 1.0), rng.uniform(0.0, 1.0), rng.uniform(0.0, 1.0)
    cut = rng.uniform(40, 120)
    shape = (w_pink / np.sqrt(f / 100) + w_brown / (f / 100)
             + w_rumble * 30 / (1 + (f / cut) ** 4))  # 4th-order-like low-pass rumble (wind, traffic)
    shape[f < 15] = 0  # no DC / sub-audio
    x = np.fft.irfft(spec * shape, n)
    x /= np.std(x) + 1e-12
    t = np.arange(n) / sr
    drift_db = rng.uniform(1, 6) * np.sin(2 * np.pi * rng.uniform(0.05, 0.5) * t + rng.uniform(0, 2 * np.pi))
    return x * 10 ** (drift_db / 20)


def _distractor(rng, sr: int, duration: float) -> np.ndarray:
    if rng.random() < 0.5:  # broadband transient: a twig snap, a drop
        m = int(rng.uniform(0.005, 0.03) * sr) + 8
        return rng.standard_normal(m) * np.exp(-np.arange(m) / (0.2 * m))
    m = int(min(rng.uniform(0.5, 2.0), duration) * sr)  # faint steady tone: distant engine, insect
    return _tone(np.full(m, rng.uniform(200, 0.4 * sr)), sr) * _env(m, 0.2)


def synth_clip(label: int, index: int, n_classes: int = 10, duration: float = 3.0, sample_rate: int = 22050,
               seed: int = 0, snr_db=(-10.0, 20.0), gain_db=(-20.0, 20.0), return_info: bool = False):
    """Generate clip ``index`` of class ``label`` (deterministic in all arguments).

    Returns
    -------
    waveform : np.ndarray, float32, shape ``(round(duration * sample_rate),)``
        Peak at most 0.99 (a clip whose gain would clip is scaled down).
    info : dict (only with ``return_info``)
        ``snr_db``, ``gain_db``, ``onsets`` (s), ``n_distractors``.

    >>> x, info = synth_clip(1, 0, n_classes=3, duration=0.5, sample_rate=8000, return_info=True)
    >>> x.shape, x.dtype, bool(abs(x).max() <= 0.99), -10 <= info["snr_db"] <= 20
    ((4000,), dtype('float32'), True, True)
    """
    _check(n_classes=n_classes, duration=duration, sample_rate=sample_rate)
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label < n_classes:
        raise ParameterError(f"label must be an integer in 0..{n_classes - 1}, got {label!r}")
    spec = _specs(n_classes)[label]
    rng = np.random.default_rng([int(seed), int(label), int(index)])
    sr = int(sample_rate)
    n = int(round(duration * sr))
    bg = _background(rng, n, sr)
    ev = np.zeros(n)
    count = int(rng.integers(spec.ranges["count"][0], spec.ranges["count"][1] + 1))
    onsets = []
    for _ in range(count):
        e = _event(spec, rng, sr)[:n]
        start = int(rng.integers(0, n - e.size + 1))
        ev[start:start + e.size] += e * rng.uniform(0.7, 1.0)
        onsets.append(start / sr)
    active = np.abs(ev) > 1e-3 * np.abs(ev).max()
    ev_rms = np.sqrt(np.mean(ev[active] ** 2))
    snr = rng.uniform(*snr_db)
    x = bg + ev * (10 ** (snr / 20) / ev_rms)
    n_distr = int(rng.choice([0, 0, 1, 2]))
    for _ in range(n_distr):
        d = _distractor(rng, sr, duration)[:n]
        level = rng.uniform(-5, 10) if d.size < 0.1 * sr else rng.uniform(-18, -3)  # tones stay faint
        d = d / (np.sqrt(np.mean(d ** 2)) + 1e-12) * 10 ** (level / 20)
        start = int(rng.integers(0, n - d.size + 1))
        x[start:start + d.size] += d
    gain = rng.uniform(*gain_db)
    x *= 10 ** ((-45 + gain) / 20)  # background at -45 dBFS RMS before the random gain
    peak = np.abs(x).max()
    if peak > 0.99:
        x *= 0.99 / peak
    x = x.astype(np.float32)
    if return_info:
        return x, dict(snr_db=float(snr), gain_db=float(gain), onsets=onsets, n_distractors=n_distr)
    return x


def _check(n_classes=10, clips_per_class=1, duration=1.0, sample_rate=8000, n_folds=1):
    positive_int("n_classes", n_classes)
    positive_int("clips_per_class", clips_per_class)
    finite_float("duration", duration, 0.2, low_open=True)
    if positive_int("sample_rate", sample_rate) < 4000:
        raise ParameterError(f"sample_rate must be at least 4000 Hz, got {sample_rate!r}")
    if positive_int("n_folds", n_folds) > clips_per_class:
        raise ParameterError(f"n_folds must be in 1..clips_per_class ({clips_per_class}), got {n_folds!r}")


def generate_synth(n_classes: int = 10, clips_per_class: int = 40, duration: float = 3.0,
                   sample_rate: int = 22050, seed: int = 0, n_folds: int = 5, **kw):
    """The whole set in memory.

    Returns
    -------
    waveforms : np.ndarray, float32, shape ``(n_classes * clips_per_class, time)``
    labels : np.ndarray, int64
    folds : np.ndarray, int64 (1..n_folds, balanced per class)
    classes : list[str]

    >>> waves, labels, folds, classes = generate_synth(n_classes=2, clips_per_class=2, duration=0.25,
    ...                                                sample_rate=4000, n_folds=2)
    >>> waves.shape, labels.tolist(), folds.tolist(), classes
    ((4, 1000), [0, 0, 1, 1], [1, 2, 1, 2], ['up_chirp', 'down_chirp'])
    """
    _check(n_classes, clips_per_class, duration, sample_rate, n_folds)
    waves, labels, folds = [], [], []
    for k in range(n_classes):
        for i in range(clips_per_class):
            waves.append(synth_clip(k, i, n_classes, duration, sample_rate, seed, **kw))
            labels.append(k)
            folds.append(i % n_folds + 1)
    return np.stack(waves), np.array(labels), np.array(folds), synth_classes(n_classes)


def _params(n_classes, clips_per_class, duration, sample_rate, seed, n_folds, snr_db, gain_db) -> dict:
    return dict(n_classes=int(n_classes), clips_per_class=int(clips_per_class), duration=float(duration),
                sample_rate=int(sample_rate), seed=int(seed), n_folds=int(n_folds),
                snr_db=[float(v) for v in snr_db], gain_db=[float(v) for v in gain_db], version=SYNTH_VERSION)


def _check_ranges(snr_db, gain_db):
    for name, r in (("snr_db", snr_db), ("gain_db", gain_db)):
        if len(r) != 2 or not r[0] <= r[1]:
            raise ParameterError(f"{name} must be a (min, max) pair in dB with min <= max, got {r!r}")


def write_synth(root, n_classes: int = 10, clips_per_class: int = 40, duration: float = 3.0,
                sample_rate: int = 22050, seed: int = 0, n_folds: int = 5, progress: bool = False,
                snr_db=(-10.0, 20.0), gain_db=(-20.0, 20.0)) -> Path:
    """Write the set as an ESC-50-like layout under ``root`` (16-bit WAV, ``meta/esc50.csv``, ``meta/synth.json``).

    The csv is written last and atomically, so a folder with ``meta/esc50.csv`` is complete.
    File names follow ESC-50: ``{fold}-{src}-A-{target}.wav`` with ``src`` unique per clip.

    >>> import tempfile, pathlib
    >>> root = write_synth(pathlib.Path(tempfile.mkdtemp()) / "s", n_classes=2, clips_per_class=1, duration=0.25,
    ...                    sample_rate=4000, n_folds=1)
    >>> sorted(p.name for p in (root / "audio").iterdir()), (root / "meta" / "esc50.csv").is_file()
    (['1-0x000x0000-A-0.wav', '1-0x001x0000-A-1.wav'], True)
    """
    import soundfile

    _check(n_classes, clips_per_class, duration, sample_rate, n_folds)
    _check_ranges(snr_db, gain_db)
    root = Path(root)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    (root / "meta").mkdir(parents=True, exist_ok=True)
    classes = synth_classes(n_classes)
    rows = []
    items = [(k, i) for k in range(n_classes) for i in range(clips_per_class)]
    if progress:
        from tqdm import tqdm
        items = tqdm(items, desc="synth", unit="clip")
    for k, i in items:
        fold = i % n_folds + 1
        src = f"{seed}x{k:03d}x{i:04d}"
        name = f"{fold}-{src}-A-{k}.wav"
        x = synth_clip(k, i, n_classes, duration, sample_rate, seed, snr_db, gain_db)
        with atomic_write(root / "audio" / name, "wb") as f:
            soundfile.write(f, x, sample_rate, subtype="PCM_16", format="WAV")
        rows.append([name, fold, k, classes[k], "False", src, "A"])
    write_json(root / "meta" / "synth.json", _params(n_classes, clips_per_class, duration, sample_rate,
                                                      seed, n_folds, snr_db, gain_db), indent=1)
    text = io.StringIO(newline="")
    w = csv.writer(text)
    w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
    w.writerows(rows)
    with atomic_write(root / "meta" / "esc50.csv", "wb") as f:
        f.write(text.getvalue().encode("utf-8"))
    return root


def _default_root() -> Path:
    return default_cache_dir() / "synth"


def _cached_root(params: dict, write) -> Path:
    """The cache folder of the set with ``params``, generated with ``write(folder)`` if absent."""
    base = _default_root()
    tag = "k{n_classes}-n{clips_per_class}-d{duration:g}-sr{sample_rate}-s{seed}-f{n_folds}".format(**params)
    if params["snr_db"] != [-10.0, 20.0] or params["gain_db"] != [-20.0, 20.0]:
        tag += "-snr{:g}_{:g}-g{:g}_{:g}".format(*params["snr_db"], *params["gain_db"])
    root = base / (tag + f"-v{SYNTH_VERSION}")
    if not (root / "meta" / "esc50.csv").is_file():
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{tag}-v{SYNTH_VERSION}.", dir=base))
        try:
            write(tmp)
            try:
                os.rename(tmp, root)  # atomic: a concurrent generator either wins or finds it done
            except OSError:
                if not (root / "meta" / "esc50.csv").is_file():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return root


def _check_same_params(root: Path, params: dict) -> None:
    """DataError when ``root`` holds a synthetic set made with other parameters."""
    info = root / "meta" / "synth.json"
    if info.is_file():
        have = json.loads(info.read_text())
        if have != params:
            diff = {k: (have.get(k), v) for k, v in params.items() if have.get(k) != v}
            raise DataError(f"root {str(root)!r} holds a synthetic set with other parameters "
                            f"(have, asked): {diff}; use another root or delete it")


@register_dataset("synth", description="the synthetic field-recording set (generated and cached on first use)")
def load_synth(root=None, n_classes: int = 10, clips_per_class: int = 40, duration: float = 3.0,
               sample_rate: int = 22050, seed: int = 0, n_folds: int = 5, progress: bool = False,
               snr_db=(-10.0, 20.0), gain_db=(-20.0, 20.0)) -> ClipList:
    """The synthetic set as a :class:`ClipList`, generated on first use and reused afterwards.

    Parameters
    ----------
    root : str or Path or None
        None: a folder under the melfront cache directory named after the parameters. A given folder
        is generated into when it has no ``meta/esc50.csv``, else read (its ``meta/synth.json`` must
        match the parameters).
    n_classes, clips_per_class, duration (s), sample_rate (Hz), seed, n_folds
        The set's shape; folds are balanced within each class (clip ``i`` is in fold ``i % n_folds + 1``).
    snr_db, gain_db : (min, max) in dB
        Event-to-background ratio and overall gain ranges (defaults -10..+20 and -20..+20 dB).

    >>> import tempfile, pathlib
    >>> clips = load_synth(pathlib.Path(tempfile.mkdtemp()) / "s", n_classes=2, clips_per_class=2, duration=0.25,
    ...                    sample_rate=4000, n_folds=2)
    >>> clips.name, clips.classes, clips.folds, len(clips)
    ('synth', ['up_chirp', 'down_chirp'], [1, 2], 4)
    """
    _check(n_classes, clips_per_class, duration, sample_rate, n_folds)
    _check_ranges(snr_db, gain_db)
    params = _params(n_classes, clips_per_class, duration, sample_rate, seed, n_folds, snr_db, gain_db)
    write = functools.partial(write_synth, n_classes=n_classes, clips_per_class=clips_per_class, duration=duration,
                              sample_rate=sample_rate, seed=seed, n_folds=n_folds, progress=progress,
                              snr_db=snr_db, gain_db=gain_db)
    if root is None:
        root = _cached_root(params, write)
    else:
        root = Path(root).expanduser()
        if not (root / "meta" / "esc50.csv").is_file():
            write(root)
        else:
            _check_same_params(root, params)
    clips = read_esc50_layout(root, name="synth", command="synth", valid_folds=range(1, n_folds + 1))
    # keep every class name even if a class had no clip (cannot happen here, but labels must index classes)
    clips.classes = synth_classes(n_classes)
    return clips
