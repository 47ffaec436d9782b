"""Training-time augmentation: waveform transforms and SpecAugment-style masking.

Waveform transforms (time shift, pitch shift, time stretch, gain, background mixing) go through
``audiomentations`` (install the ``augment`` extra: ``pip install melfront[augment]``). Without it,
time shift, gain and background mixing fall back to the small numpy functions below; pitch shift and
time stretch then raise ImportError, since they need real DSP.

Spectrogram masking follows Park et al. 2019, "SpecAugment: a simple data augmentation method for
automatic speech recognition" (Interspeech): ``F`` frequency masks of width ``f ~ U{0..freq_width}`` and
``T`` time masks of width ``t ~ U{0..time_width}`` at uniform positions, each example drawing its own.
Time warping is not implemented.
"""
from __future__ import annotations

import contextlib
import random

import numpy as np
import torch
from torch import nn

from ..audio import load_audio
from ..checks import finite_float, nonnegative_int, positive_int, probability
from ..errors import ParameterError

__all__ = ["have_audiomentations", "time_shift", "apply_gain", "mix_background", "WaveformAugment",
           "spec_augment", "SpecAugment"]


def have_audiomentations() -> bool:
    """Whether the optional ``audiomentations`` package imports.

    >>> isinstance(have_audiomentations(), bool)
    True
    """
    try:
        import audiomentations  # noqa: F401
    except Exception:
        return False
    return True


# --------------------------------------------------------------------------------------------
# Small numpy transforms (used without audiomentations, and for in-memory backgrounds)
# --------------------------------------------------------------------------------------------
def time_shift(x: np.ndarray, shift: int, rollover: bool = True) -> np.ndarray:
    """Shift ``(..., time)`` audio by ``shift`` samples (positive = later); wrap around or pad with zeros.

    >>> time_shift(np.arange(5), 2).tolist(), time_shift(np.arange(5), -2, rollover=False).tolist()
    ([3, 4, 0, 1, 2], [2, 3, 4, 0, 0])
    """
    shift = int(shift)
    if rollover:
        return np.roll(x, shift, axis=-1)
    out = np.zeros_like(x)
    if shift >= 0:
        out[..., shift:] = x[..., :x.shape[-1] - shift]
    else:
        out[..., :shift] = x[..., -shift:]
    return out


def apply_gain(x: np.ndarray, gain_db: float) -> np.ndarray:
    """Multiply by ``10 ** (gain_db / 20)``.

    >>> apply_gain(np.ones(2, np.float32), 20.0).tolist()
    [10.0, 10.0]
    """
    return x * np.float32(10 ** (gain_db / 20))


def mix_background(x: np.ndarray, background: np.ndarray, snr_db: float, rng=None) -> np.ndarray:
    """Add ``background`` to ``x`` (both ``(time,)``) at a signal-to-background RMS ratio of ``snr_db`` dB.

    The background is tiled or randomly cropped to the length of ``x``. Silent ``x`` or background
    leaves ``x`` unchanged.

    >>> x = np.sin(np.arange(1000, dtype=np.float32) / 5)
    >>> noise = np.random.default_rng(0).standard_normal(300).astype(np.float32)
    >>> mixed = mix_background(x, noise, 10.0, np.random.default_rng(1))
    >>> round(float(10 * np.log10(np.mean(x ** 2) / np.mean((mixed - x) ** 2))), 2)
    10.0
    """
    rng = np.random.default_rng() if rng is None else rng
    n = x.shape[-1]
    bg = np.asarray(background, dtype=np.float32)
    if bg.shape[-1] < n:
        bg = np.tile(bg, int(np.ceil(n / bg.shape[-1])))
    start = int(rng.integers(0, bg.shape[-1] - n + 1))
    bg = bg[start:start + n]
    rx, rb = np.sqrt(np.mean(np.square(x, dtype=np.float64))), np.sqrt(np.mean(np.square(bg, dtype=np.float64)))
    if rx == 0 or rb == 0:
        return x
    return (x + bg * (rx / rb / 10 ** (snr_db / 20))).astype(x.dtype)


@contextlib.contextmanager
def _seeded(seed: int):
    """Seed the global ``random`` and numpy generators (audiomentations draws from them), then restore them."""
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


class WaveformAugment:
    """Random waveform augmentation for training, ``(time,)`` -> ``(time,)`` (same length).

    Parameters
    ----------
    sample_rate : int
        Hz.
    shift : float
        Maximum time shift as a fraction of the clip (rolled over), drawn in ``[-shift, shift]``; 0 disables.
    pitch_semitones : float
        Maximum pitch shift in semitones, drawn in ``[-p, p]``; 0 disables (needs audiomentations).
    stretch : tuple (min_rate, max_rate) or None
        Time-stretch rate range, length kept (needs audiomentations); None disables.
    gain_db : float
        Maximum gain change in dB, drawn in ``[-g, g]``; 0 disables.
    backgrounds : list of paths or arrays, or None
        Background sounds mixed at an SNR drawn in ``snr_db``. Paths go through audiomentations'
        ``AddBackgroundNoise`` when installed; arrays (at ``sample_rate``) through :func:`mix_background`.
    snr_db : (min, max)
    p : float
        Probability of applying each transform.
    seed : int or None
        Makes the sequence of augmentations reproducible (each call draws the next seed).
    use_audiomentations : bool or None
        None: use it when installed.

    >>> augment = WaveformAugment(8000, shift=0.2, gain_db=6.0, p=1.0, seed=0, use_audiomentations=False)
    >>> y = augment(np.ones(800, np.float32))
    >>> y.shape, y.dtype, augment
    ((800,), dtype('float32'), WaveformAugment(sample_rate=8000, shift=0.2, pitch_semitones=0.0, stretch=None, gain_db=6.0, backgrounds=0, p=1.0, backend='numpy'))
    """

    def __init__(self, sample_rate: int, shift: float = 0.2, pitch_semitones: float = 0.0, stretch=None,
                 gain_db: float = 6.0, backgrounds=None, snr_db=(3.0, 30.0), p: float = 0.5, seed: int | None = None,
                 use_audiomentations: bool | None = None):
        positive_int("sample_rate", sample_rate)
        probability("shift", shift)
        finite_float("pitch_semitones", pitch_semitones, 0.0)
        finite_float("gain_db", gain_db, 0.0)
        if stretch is not None and not (len(stretch) == 2 and 0 < stretch[0] <= stretch[1]):
            raise ParameterError(f"stretch must be None or (min_rate, max_rate) with 0 < min <= max, got {stretch!r}")
        probability("p", p)
        have = have_audiomentations()
        if use_audiomentations is None:
            use_audiomentations = have
        if use_audiomentations and not have:
            raise ImportError("audiomentations is not installed: pip install 'melfront[augment]'")
        if (pitch_semitones or stretch) and not use_audiomentations:
            raise ImportError("pitch shift and time stretch need audiomentations: pip install 'melfront[augment]'")
        self.sample_rate, self.shift, self.pitch, self.stretch = int(sample_rate), shift, pitch_semitones, stretch
        self.gain_db, self.snr_db, self.p = gain_db, tuple(snr_db), p
        self.use_audiomentations = use_audiomentations
        self._rng = np.random.default_rng(seed)
        backgrounds = list(backgrounds or [])
        self._bg_paths = [str(b) for b in backgrounds if isinstance(b, (str, bytes)) or hasattr(b, "__fspath__")]
        self._bg_arrays = [np.asarray(b.numpy() if torch.is_tensor(b) else b, dtype=np.float32)
                           for b in backgrounds if not (isinstance(b, (str, bytes)) or hasattr(b, "__fspath__"))]
        self._compose = self._build() if use_audiomentations else None

    def _build(self):
        import audiomentations as A
        steps = []
        if self.shift:
            steps.append(A.Shift(min_shift=-self.shift, max_shift=self.shift, shift_unit="fraction", rollover=True, p=self.p))
        if self.pitch:
            steps.append(A.PitchShift(min_semitones=-self.pitch, max_semitones=self.pitch, p=self.p))
        if self.stretch:
            steps.append(A.TimeStretch(min_rate=self.stretch[0], max_rate=self.stretch[1],
                                       leave_length_unchanged=True, p=self.p))
        if self._bg_paths:
            steps.append(A.AddBackgroundNoise(sounds_path=self._bg_paths, min_snr_db=self.snr_db[0],
                                              max_snr_db=self.snr_db[1], p=self.p))
        if self.gain_db:
            steps.append(A.Gain(min_gain_db=-self.gain_db, max_gain_db=self.gain_db, p=self.p))
        return A.Compose(steps) if steps else None

    def __call__(self, waveform):
        is_tensor = torch.is_tensor(waveform)
        x = waveform.detach().cpu().numpy() if is_tensor else np.asarray(waveform)
        x = x.astype(np.float32, copy=True)
        if x.ndim != 1:
            raise ParameterError(f"waveform must be (time,), got shape {tuple(x.shape)}")
        rng = self._rng
        if self._bg_arrays and rng.random() < self.p:
            bg = self._bg_arrays[int(rng.integers(len(self._bg_arrays)))]
            x = mix_background(x, bg, rng.uniform(*self.snr_db), rng)
        if self._compose is not None:
            with _seeded(int(rng.integers(2**31))):
                x = self._compose(samples=x, sample_rate=self.sample_rate)
        elif not self.use_audiomentations:
            if self.shift and rng.random() < self.p:
                m = int(self.shift * x.shape[-1])
                x = time_shift(x, int(rng.integers(-m, m + 1)))
            if self._bg_paths and rng.random() < self.p:
                bg = load_audio(self._bg_paths[int(rng.integers(len(self._bg_paths)))], self.sample_rate)[0].numpy()
                x = mix_background(x, bg, rng.uniform(*self.snr_db), rng)
            if self.gain_db and rng.random() < self.p:
                x = apply_gain(x, rng.uniform(-self.gain_db, self.gain_db))
        x = np.ascontiguousarray(x, dtype=np.float32)
        return torch.from_numpy(x).to(waveform.device) if is_tensor else x

    def __repr__(self) -> str:
        backend = "audiomentations" if self.use_audiomentations else "numpy"
        return (f"WaveformAugment(sample_rate={self.sample_rate}, shift={self.shift}, pitch_semitones={self.pitch}, "
                f"stretch={self.stretch}, gain_db={self.gain_db}, backgrounds={len(self._bg_paths) + len(self._bg_arrays)}, "
                f"p={self.p}, backend={backend!r})")


# --------------------------------------------------------------------------------------------
# SpecAugment
# --------------------------------------------------------------------------------------------
def _masks(batch: int, size: int, n_masks: int, max_width: int, generator, device) -> torch.Tensor:
    """Boolean ``(batch, size)``: True inside any of ``n_masks`` random intervals of width 0..max_width."""
    if n_masks == 0 or max_width == 0:
        return torch.zeros(batch, size, dtype=torch.bool, device=device)
    max_width = min(max_width, size)
    width = torch.randint(0, max_width + 1, (batch, n_masks), generator=generator)
    start = (torch.rand(batch, n_masks, generator=generator) * (size - width + 1)).floor().long()
    pos = torch.arange(size)
    inside = (pos >= start[..., None]) & (pos < (start + width)[..., None])  # (batch, n_masks, size)
    return inside.any(dim=1).to(device)


def spec_augment(mel: torch.Tensor, freq_masks: int = 2, freq_width: int = 8, time_masks: int = 2,
                 time_width: int = 20, mask_value="mean", generator: torch.Generator | None = None) -> torch.Tensor:
    """SpecAugment frequency and time masking (Park et al. 2019) of ``(..., n_mels, frames)``.

    Parameters
    ----------
    mel : Tensor ``(..., n_mels, frames)``
        Every leading index (every example, every channel) gets its own masks.
    freq_masks, freq_width : number of frequency masks and their maximum width in bands (``F`` in the paper).
    time_masks, time_width : number of time masks and their maximum width in frames (``T``).
    mask_value : float or ``"mean"``
        Value written in the masked cells; ``"mean"`` uses each example's mean (sensible for log/dB input;
        use 0.0 for linear power mel).
    generator : torch.Generator or None, for reproducible masks.

    Returns
    -------
    Tensor of the same shape (a new tensor; gradients flow through unmasked cells).

    >>> out = spec_augment(torch.ones(2, 10, 30), freq_masks=1, freq_width=3, time_masks=0, mask_value=0.0,
    ...                    generator=torch.Generator().manual_seed(0))
    >>> out.shape, bool(((out == 0).all(-1) | (out == 1).all(-1)).all())  # whole bands are masked
    (torch.Size([2, 10, 30]), True)
    """
    if mel.dim() < 2:
        raise ParameterError(f"mel must be (..., n_mels, frames), got shape {tuple(mel.shape)}")
    for name, v in (("freq_masks", freq_masks), ("freq_width", freq_width), ("time_masks", time_masks),
                    ("time_width", time_width)):
        nonnegative_int(name, v)
    if not (isinstance(mask_value, str) and mask_value == "mean") and (
            isinstance(mask_value, bool) or not isinstance(mask_value, (int, float))):
        raise ParameterError(f"mask_value must be a number or 'mean', got {mask_value!r}")
    n_mels, frames = mel.shape[-2:]
    flat = mel.reshape(-1, n_mels, frames)
    b = flat.shape[0]
    fmask = _masks(b, n_mels, freq_masks, freq_width, generator, mel.device)
    tmask = _masks(b, frames, time_masks, time_width, generator, mel.device)
    mask = fmask[:, :, None] | tmask[:, None, :]
    if mask_value == "mean":
        fill = flat.mean(dim=(-2, -1), keepdim=True).expand_as(flat)
    else:
        fill = torch.full_like(flat, float(mask_value))
    return torch.where(mask, fill, flat).reshape(mel.shape)


class SpecAugment(nn.Module):
    """:func:`spec_augment` as a module, active only in training mode (identity in ``eval()``).

    >>> m = SpecAugment(freq_width=4, time_width=4, mask_value=0.0)
    >>> x = torch.ones(1, 8, 20)
    >>> m.eval()(x) is x
    True
    """

    def __init__(self, freq_masks: int = 2, freq_width: int = 8, time_masks: int = 2, time_width: int = 20,
                 mask_value="mean"):
        super().__init__()
        spec_augment(torch.zeros(1, 1), freq_masks, freq_width, time_masks, time_width, mask_value)  # validate
        self.freq_masks, self.freq_width, self.time_masks, self.time_width = freq_masks, freq_width, time_masks, time_width
        self.mask_value = mask_value

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return mel
        return spec_augment(mel, self.freq_masks, self.freq_width, self.time_masks, self.time_width, self.mask_value)

    def extra_repr(self) -> str:
        return (f"freq_masks={self.freq_masks}, freq_width={self.freq_width}, time_masks={self.time_masks}, "
                f"time_width={self.time_width}, mask_value={self.mask_value!r}")
