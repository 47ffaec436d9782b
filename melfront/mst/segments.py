"""Waveform segments for the MSTModel and the (a)-(d) study (clip splits: data.sampling.grouped_holdout).

Segments follow Piczak (2015) and Tax et al. (2017): 101 frames (``hop * 100`` = 51200 samples at hop
512, 2.32 s at 22050 Hz) with 50 % overlap; segments whose mean level is at or below -72 dB (clip
peak-normalised, ``power_to_db`` with ``top_db=80``) are dropped as silent; every kept segment is
peak-normalised on its own before it is fed to the model and turned into its target.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ..audio import AudioError, load_audio
from ..checks import finite_float, nonnegative_int, optional, positive_int
from ..data import dataset
from ..errors import DataError, ParameterError
from ..frontends import MelSpectrogram
from .model import DEFAULT_MEL, SEGMENT_FRAMES, log_mel_db, peak_normalise

__all__ = ["Segments", "segment_waveform", "shifted_copies", "load_segments", "load_clips",
           "progress_bar", "SILENCE_DB"]

#: Silent-segment threshold in dB (mean log-mel level of a segment of the clip peak-normalised to 1).
#: The value -72 dB is Tax et al.'s (2017); dropping silent segments at all follows Piczak's (2015)
#: preprocessing, whose paper does not give this number.
SILENCE_DB = -72.0


def progress_bar(iterable=None, progress: bool = True, **kw):
    """A tqdm bar over ``iterable`` that disappears when done; ``progress=False`` hides it.

    >>> list(progress_bar(range(3), progress=False))
    [0, 1, 2]
    """
    return tqdm(iterable, disable=not progress, dynamic_ncols=True, leave=False, **kw)


@dataclass
class Segments:
    """Peak-normalised waveform segments ``(n, samples)`` with the clip each came from and its label.

    ``copy_index`` (``None`` when no copies were made): 0 for a segment of the clip itself, ``k`` for one of
    its ``k``-th time-shifted copy (:func:`shifted_copies`).

    >>> s = Segments(torch.zeros(3, 8), torch.tensor([0, 0, 1]), torch.tensor([2, 2, 0]))
    >>> len(s), s.subset(s.clip_index == 1).labels.tolist(), s.n_copies
    (3, [0], 0)
    """

    waves: torch.Tensor
    clip_index: torch.Tensor
    labels: torch.Tensor | None = None
    paths: list = field(default_factory=list)  # one per clip index
    skipped: list = field(default_factory=list)  # (path, cause)
    copy_index: torch.Tensor | None = None

    def __len__(self):
        return int(self.waves.shape[0])

    @property
    def n_copies(self) -> int:
        """Segments that come from shifted copies (0 without augmentation)."""
        return 0 if self.copy_index is None else int((self.copy_index > 0).sum())

    def subset(self, mask: torch.Tensor) -> "Segments":
        """The segments where ``mask`` is True (same ``paths`` and ``skipped``)."""
        return Segments(self.waves[mask], self.clip_index[mask],
                        None if self.labels is None else self.labels[mask], self.paths, self.skipped,
                        None if self.copy_index is None else self.copy_index[mask])


def segment_waveform(waveform: torch.Tensor, mel_module, segment_frames: int = SEGMENT_FRAMES,
                     overlap: float = 0.5, silence_db: float | None = SILENCE_DB) -> torch.Tensor:
    """Cut a clip ``(time,)`` into peak-normalised segments ``(n, hop * (segment_frames - 1))``.

    Segments start every ``(1 - overlap) * length`` samples (Piczak 2015: 50 %); a clip shorter
    than one segment is zero-padded to one. With ``center=True`` framing each segment yields exactly
    ``segment_frames`` frames. Segments whose mean level (clip peak-normalised, dB of the mel power,
    floored 80 dB below the segment's maximum) is at or below ``silence_db`` are dropped (``None``:
    keep all). Each kept segment is then divided by its own peak. May return zero segments.

    >>> mel = MelSpectrogram(sample_rate=8000, n_fft=256, hop_length=64, n_mels=16)
    >>> x = torch.sin(torch.arange(4000) * 0.3)
    >>> tuple(segment_waveform(x, mel, segment_frames=21).shape)  # 1280-sample segments, 640 apart
    (5, 1280)
    """
    if waveform.ndim != 1:
        raise ParameterError(f"waveform must be 1-D (time,), got shape {tuple(waveform.shape)}")
    if isinstance(segment_frames, bool) or not isinstance(segment_frames, int) or segment_frames < 2:
        raise ParameterError(f"segment_frames must be an integer >= 2, got {segment_frames!r}")
    overlap = finite_float("overlap", overlap, 0.0, 1.0, high_open=True)
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


def shifted_copies(waveform: torch.Tensor, copies: int, max_shift: int, seed=0) -> list:
    """``copies`` time-shifted copies of a clip ``(time,)``: each starts with ``s`` zeros, ``s`` drawn
    uniformly from ``0 .. max_shift - 1`` samples, and keeps the whole clip (it grows by ``s`` samples).

    Tax et al.'s (2017) augmentation as their released code makes it (``esc50_processor.py``,
    ``_augment_esc50``: 4 copies, a shift below one second, ``randint(sample_rate)``; its pitch shift (0
    half-steps) and time stretch (factor 1.0) change nothing and are left out). ``seed``: an int or a
    sequence of ints (e.g. ``(seed, clip_number)``) for :func:`numpy.random.default_rng`.

    >>> [c.shape[0] - 5 for c in shifted_copies(torch.ones(5), 3, max_shift=4, seed=0)]  # the shifts
    [3, 2, 2]
    """
    copies = int(copies)
    max_shift = positive_int("max_shift", max_shift)
    rng = np.random.default_rng(seed)
    return [torch.nn.functional.pad(waveform, (int(rng.integers(max_shift)), 0)) for _ in range(copies)]


# Over 60 lines only through its docstring; the body is about 35 lines.
def load_segments(clips, mel: dict | None = None, segment_frames: int = SEGMENT_FRAMES, overlap: float = 0.5,
                  silence_db: float | None = SILENCE_DB, progress: bool = True, copies: int = 0,
                  max_shift: int | None = None, seed: int = 41) -> Segments:
    """Read clips (``Clip`` records or paths) and cut each into segments (:func:`segment_waveform`).

    A clip that cannot be read (``AudioError``) or has only silent segments is skipped and listed in
    ``Segments.skipped`` with its cause; the run goes on. ``clip_index`` refers to the position in
    ``clips``; ``labels`` is filled when the clips have a ``label``. No usable segment at all is a
    ``DataError``.

    ``copies`` > 0 adds, per clip, the segments of that many time-shifted copies (:func:`shifted_copies`,
    shifts below ``max_shift`` samples, default one second; clip ``i``'s shifts drawn with ``(seed, i)``,
    default seed 41 as Tax et al.'s data script), under the same ``clip_index``; ``copy_index`` tells them
    apart. Training data only: Tax et al. validate and test on the clips themselves.

    >>> import tempfile, soundfile as sf
    >>> path = tempfile.mkdtemp() + "/tone.wav"
    >>> sf.write(path, 0.5 * np.sin(np.arange(4000) * 0.3), 8000)
    >>> s = load_segments([path], dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=16), 21, progress=False)
    >>> len(s), s.clip_index.tolist(), s.labels
    (5, [0, 0, 0, 0, 0], None)
    >>> s2 = load_segments([path], dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=16), 21, progress=False,
    ...                    copies=2)
    >>> len(s2) >= 15, s2.copy_index.max().item()
    (True, 2)
    """
    mel = dict(DEFAULT_MEL if mel is None else mel)
    mel_module = MelSpectrogram(**mel)
    copies = nonnegative_int("copies", copies)
    max_shift = int(mel["sample_rate"]) if max_shift is None else positive_int("max_shift", max_shift)
    waves, index, labels, paths, skipped, copy_index = [], [], [], [], [], []
    has_labels = all(hasattr(c, "label") for c in clips)
    for i, clip in enumerate(progress_bar(clips, progress, desc="segments", unit="clip")):
        path = str(getattr(clip, "path", clip))
        paths.append(path)
        try:
            wave, _ = load_audio(path, sample_rate=int(mel["sample_rate"]))
        except (AudioError, FileNotFoundError) as exc:
            skipped.append((path, str(exc)))
            continue
        versions = [wave] + (shifted_copies(wave, copies, max_shift, (seed, i)) if copies else [])
        cut = [segment_waveform(v, mel_module, segment_frames, overlap, silence_db) for v in versions]
        if cut[0].shape[0] == 0:
            skipped.append((path, f"all segments silent (mean level <= {silence_db} dB)"))
            continue
        for k, segs in enumerate(cut):
            waves.append(segs)
            index.append(torch.full((segs.shape[0],), i, dtype=torch.long))
            copy_index.append(torch.full((segs.shape[0],), k, dtype=torch.long))
            if has_labels:
                labels.append(torch.full((segs.shape[0],), int(clip.label), dtype=torch.long))
    if not waves:
        raise DataError(f"no usable segments in {len(clips)} clip(s)"
                        + (f"; first problem: {skipped[0][0]}: {skipped[0][1]}" if skipped else ""))
    return Segments(torch.cat(waves), torch.cat(index), torch.cat(labels) if has_labels else None, paths, skipped,
                    torch.cat(copy_index) if copies else None)


def load_clips(name: str, root, max_clips: int | None = None, seed: int = 0):
    """The clip list of data set ``name`` (:func:`melfront.data.dataset`), or a seeded random subset of
    ``max_clips`` clips (at least 2) kept in the data set's order.

    >>> import tempfile, soundfile as sf, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for c in "ab":
    ...     (root / c).mkdir()
    ...     for i in range(3):
    ...         sf.write(root / c / f"{i}.wav", np.zeros(800), 8000)
    >>> len(load_clips("folder", root)), len(load_clips("folder", root, max_clips=4))
    (6, 4)
    """
    max_clips = optional(positive_int, "max_clips", max_clips)
    if max_clips is not None and max_clips < 2:
        raise ParameterError(f"max_clips must be an integer >= 2, got {max_clips!r}")
    clips = dataset(name, root)
    if max_clips is not None and len(clips) > max_clips:  # a seeded random subset, in the data set's order
        keep = np.sort(np.random.default_rng(seed + 12345).permutation(len(clips))[:max_clips])
        clips = clips.subset([clips[i] for i in keep])
    return clips
