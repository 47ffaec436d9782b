"""Fixed-length training patches and Piczak's segments, for mel spectrograms and raw waveforms.

Classifiers read inputs of a fixed size, so every clip is cut into patches of ``n_frames`` frames:

- **random crop** (Pons, Serrà & Serra 2019; Salamon & Bello 2017): one random 128-frame patch per
  clip per epoch for training;
- **all patches** at a given hop for evaluation, the clip's prediction being an aggregate of its
  patches' predictions (each patch remembers its clip index);
- **short clips are repeat-padded** (Pons et al. 2019): a clip shorter than a patch is tiled
  along time until it fills one;
- **Piczak's segments** (Piczak 2015, "Environmental sound classification with convolutional neural
  networks", MLSP): 41-frame (short) or 101-frame (long) segments with 50 % overlap; silent
  segments are dropped by a threshold on their mean level in dB.

Features are either mel spectrograms ``(n_mels, frames)`` (``kind="mel"``) or waveforms ``(time,)``
(``kind="waveform"``, for frontends that consume audio). A waveform patch of ``F`` frames is the run of
samples that yields exactly ``F`` frames for the mel parameters: with ``center=True`` a signal of
``T`` samples gives ``1 + T // hop`` frames, so ``F`` frames need ``hop * (F - 1)`` samples
(:func:`samples_for_frames`); the patch starting at frame ``k`` starts at sample ``k * hop``, so its
frames are centred on the same sample positions as frames ``k .. k + F - 1`` of the whole clip.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch.utils.data import Dataset

from ..checks import finite_float, one_of, optional, positive_int
from ..errors import ParameterError
from ..functional import num_frames
from .sampling import seed_for

__all__ = [
    "samples_for_frames", "frames_for_samples", "repeat_pad", "patch_starts", "crop",
    "random_crop", "all_patches", "segment_levels_db", "piczak_segments", "PatchDataset",
]

_KINDS = ("mel", "waveform")


def samples_for_frames(n_frames: int, hop_length: int, center: bool = True, n_fft: int | None = None) -> int:
    """Number of samples that produce exactly ``n_frames`` STFT frames.

    With ``center=True`` (librosa's default) a signal of ``T`` samples gives ``1 + T // hop_length``
    frames, so the shortest signal with ``n_frames`` frames has ``hop_length * (n_frames - 1)``
    samples. With ``center=False`` it gives ``1 + (T - n_fft) // hop_length`` frames, so
    ``n_fft + hop_length * (n_frames - 1)`` samples.

    >>> samples_for_frames(128, 512), samples_for_frames(1, 512), samples_for_frames(10, 64, center=False, n_fft=256)
    (65024, 1, 832)
    """
    n_frames = positive_int("n_frames", n_frames)
    hop_length = positive_int("hop_length", hop_length)
    if center:
        # 1 frame from 0 samples is not a signal: at least one sample
        return max(1, hop_length * (n_frames - 1))
    if n_fft is None:
        raise ParameterError("n_fft is needed when center=False")
    return positive_int("n_fft", n_fft) + hop_length * (n_frames - 1)


def frames_for_samples(n_samples: int, hop_length: int, center: bool = True, n_fft: int | None = None) -> int:
    """Number of STFT frames of a signal of ``n_samples`` samples (the inverse view of :func:`samples_for_frames`).

    The count is :func:`melfront.functional.num_frames`'s (``n_fft`` only matters when ``center=False``).

    >>> frames_for_samples(65024, 512), frames_for_samples(832, 64, center=False, n_fft=256)
    (128, 10)
    """
    hop_length = positive_int("hop_length", hop_length)
    if center:
        return num_frames(n_samples, 0 if n_fft is None else n_fft, hop_length, center=True)
    if n_fft is None:
        raise ParameterError("n_fft is needed when center=False")
    return num_frames(n_samples, positive_int("n_fft", n_fft), hop_length, center=False)


def repeat_pad(x: torch.Tensor, length: int) -> torch.Tensor:
    """Tile ``x`` along its last axis until it is at least ``length`` long (Pons et al. 2019).

    ``x`` ``(..., time)`` with ``time >= 1``; returned unchanged when already long enough.
    Repeating keeps the clip's level and texture, unlike zero padding, which adds digital silence.

    >>> repeat_pad(torch.tensor([1., 2., 3.]), 7).tolist()
    [1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0]
    """
    length = positive_int("length", length)
    n = x.shape[-1]
    if n == 0:
        raise ParameterError("cannot repeat-pad an empty clip (0 frames or samples)")
    if n >= length:
        return x
    reps = math.ceil(length / n)
    return x.repeat(*([1] * (x.ndim - 1)), reps)[..., :length]


def patch_starts(total: int, length: int, hop: int, cover_end: bool = True) -> list[int]:
    """Start positions of all patches of ``length`` at ``hop`` within ``total`` positions.

    ``0, hop, 2 hop, ...`` while the patch fits; with ``cover_end`` a last patch ending exactly at
    ``total`` is added when the regular grid leaves a tail uncovered. ``total < length`` -> ``[0]``
    (the caller repeat-pads).

    >>> patch_starts(300, 128, 128), patch_starts(300, 128, 128, cover_end=False), patch_starts(100, 128, 64)
    ([0, 128, 172], [0, 128], [0])
    """
    length = positive_int("length", length)
    hop = positive_int("hop", hop)
    if total <= length:
        return [0]
    starts = list(range(0, total - length + 1, hop))
    if cover_end and starts[-1] + length < total:
        starts.append(total - length)
    return starts


def _unit(kind: str, hop_length: int | None) -> int:
    """Samples per frame step: 1 for mel features, hop_length for waveforms."""
    one_of("kind", kind, _KINDS)
    if kind == "mel":
        return 1
    if hop_length is None:
        raise ParameterError("hop_length (samples per frame) is needed for waveform patches")
    return positive_int("hop_length", hop_length)


def _patch_len(n_frames: int, kind: str, hop_length: int | None) -> int:
    return n_frames if kind == "mel" else samples_for_frames(n_frames, _unit(kind, hop_length))


def _n_frames_of(x: torch.Tensor, kind: str, hop_length: int | None) -> int:
    return x.shape[-1] if kind == "mel" else frames_for_samples(x.shape[-1], _unit(kind, hop_length))


def crop(x: torch.Tensor, start_frame: int, n_frames: int, kind: str = "mel", hop_length: int | None = None) -> torch.Tensor:
    """The patch of ``n_frames`` frames starting at frame ``start_frame`` (repeat-padded if the clip is short).

    Mel ``(..., n_mels, frames)`` -> ``(..., n_mels, n_frames)``; waveform ``(..., time)`` ->
    ``(..., hop_length * (n_frames - 1))`` samples starting at sample ``start_frame * hop_length``.

    >>> crop(torch.zeros(2, 8, 100), 10, 32).shape
    torch.Size([2, 8, 32])
    >>> crop(torch.arange(1000.), 3, 5, kind="waveform", hop_length=10)[[0, -1]].tolist()
    [30.0, 69.0]
    """
    n_frames = positive_int("n_frames", n_frames)
    unit = _unit(kind, hop_length)
    length = _patch_len(n_frames, kind, hop_length)
    x = repeat_pad(x, length)
    s = int(start_frame) * unit
    if s < 0 or s + length > x.shape[-1]:
        raise ParameterError(f"start_frame={start_frame} with n_frames={n_frames} does not fit a clip of "
                         f"{_n_frames_of(x, kind, hop_length)} frames")
    return x[..., s:s + length]


def random_crop(x: torch.Tensor, n_frames: int, generator: torch.Generator | None = None, kind: str = "mel",
                hop_length: int | None = None) -> torch.Tensor:
    """One patch of ``n_frames`` frames at a uniformly random frame offset (see :func:`crop`).

    >>> random_crop(torch.rand(8, 300), 128, torch.Generator().manual_seed(0)).shape
    torch.Size([8, 128])
    """
    n_frames = positive_int("n_frames", n_frames)
    length = _patch_len(n_frames, kind, hop_length)
    x = repeat_pad(x, length)
    unit = _unit(kind, hop_length)
    last = (x.shape[-1] - length) // unit  # last start frame whose patch fits
    start = int(torch.randint(0, last + 1, (1,), generator=generator)) if last > 0 else 0
    return crop(x, start, n_frames, kind, hop_length)


def all_patches(x: torch.Tensor, n_frames: int, hop: int | None = None, kind: str = "mel",
                hop_length: int | None = None, cover_end: bool = True) -> torch.Tensor:
    """Every patch of ``n_frames`` frames, ``hop`` frames apart (default ``n_frames``: no overlap).

    Returns ``(n_patches, ..., n_frames)`` for mel input, ``(n_patches, ..., samples)`` for waveforms.

    >>> all_patches(torch.rand(2, 16, 300), 100, hop=50).shape
    torch.Size([5, 2, 16, 100])
    """
    n_frames = positive_int("n_frames", n_frames)
    hop = n_frames if hop is None else positive_int("hop", hop)
    length = _patch_len(n_frames, kind, hop_length)
    x = repeat_pad(x, length)
    starts = patch_starts(_n_frames_of(x, kind, hop_length), n_frames, hop, cover_end)
    return torch.stack([crop(x, s, n_frames, kind, hop_length) for s in starts])


def _frame_power(x: torch.Tensor, kind: str, hop_length: int | None) -> torch.Tensor:
    """Power per frame ``(frames,)``: mean over mel bands, or mean square over each hop of samples."""
    if kind == "mel":
        return x.reshape(-1, x.shape[-2], x.shape[-1]).mean(dim=(0, 1)) if x.ndim >= 2 else x
    unit = _unit(kind, hop_length)
    w = x.reshape(-1, x.shape[-1]).mean(0)
    n = _n_frames_of(w, kind, hop_length)
    # frame t is centred on sample t * hop: average the squares of samples [t*hop - hop/2, t*hop + hop/2)
    padded = torch.nn.functional.pad(w[None, None], (unit // 2, unit * n - w.shape[-1] - unit // 2 + unit))[0, 0]
    return padded[: unit * n].reshape(n, unit).pow(2).mean(-1)


def segment_levels_db(x: torch.Tensor, starts: Sequence[int], n_frames: int, kind: str = "mel",
                      hop_length: int | None = None, floor: float = 1e-10) -> torch.Tensor:
    """Mean level in dB of each segment, relative to the clip's loudest frame (0 dB).

    For mel input the frame power ``P_t`` is the mel power averaged over bands; for waveforms the mean
    square of the samples of each hop. The level of frame ``t`` is ``10 log10(max(P_t, floor P_max) / P_max)``
    (at least -100 dB for ``floor=1e-10``), averaged over the segment's frames. Relative levels make the
    threshold independent of the recording's gain.

    >>> mel = torch.ones(4, 20)
    >>> mel[:, 10:] = 1e-3
    >>> segment_levels_db(mel, [0, 10], 10).round(decimals=3).tolist()
    [0.0, -30.0]
    """
    p = _frame_power(x.detach().double(), kind, hop_length)
    ref = p.max().clamp_min(1e-30)
    db = 10.0 * torch.log10(torch.maximum(p, ref * floor) / ref)
    return torch.stack([db[s:s + n_frames].mean() for s in starts])


def piczak_segments(x: torch.Tensor, n_frames: int = 41, overlap: float = 0.5, silence_db: float | None = -60.0,
                    kind: str = "mel", hop_length: int | None = None) -> tuple[torch.Tensor, list[int]]:
    """Piczak's (2015) segments: ``n_frames`` (41 short, 101 long) with ``overlap`` (50 %), silent ones dropped.

    A segment is silent when its mean level (:func:`segment_levels_db`) is below ``silence_db`` dB
    relative to the loudest frame of the clip (None keeps all). The loudest segment is always kept, so
    every clip yields at least one. Clips shorter than a segment are repeat-padded.

    Returns ``(segments, starts)``: ``(n_segments, ..., n_frames)`` (or samples) and the start frames.

    >>> mel = torch.ones(60, 205)
    >>> mel[:, :100] = 0.0
    >>> segments, starts = piczak_segments(mel, 41, overlap=0.5, silence_db=-60.0)
    >>> segments.shape, starts
    (torch.Size([5, 60, 41]), [80, 100, 120, 140, 160])
    """
    n_frames = positive_int("n_frames", n_frames)
    overlap = finite_float("overlap", overlap, 0.0, 1.0, high_open=True)
    hop = max(1, int(round(n_frames * (1.0 - overlap))))
    starts = _segment_starts(x, n_frames, hop, silence_db, kind, hop_length)
    x = repeat_pad(x, _patch_len(n_frames, kind, hop_length))
    return torch.stack([crop(x, s, n_frames, kind, hop_length) for s in starts]), starts


def _segment_starts(x, n_frames, hop, silence_db, kind, hop_length, cover_end=False):
    x = repeat_pad(x, _patch_len(n_frames, kind, hop_length))
    starts = patch_starts(_n_frames_of(x, kind, hop_length), n_frames, hop, cover_end)
    if silence_db is None or len(starts) == 1:
        return starts
    levels = segment_levels_db(x, starts, n_frames, kind, hop_length)
    keep = [s for s, lvl in zip(starts, levels.tolist()) if lvl >= silence_db]
    return keep or [starts[int(levels.argmax())]]


class PatchDataset(Dataset):
    """Patches of clips as a ``torch.utils.data.Dataset`` of ``(patch, label, clip_index)``.

    Parameters
    ----------
    features : sequence of Tensor
        One per clip: mel spectrograms ``(n_mels, frames)`` (or ``(channels, n_mels, frames)``) for
        ``kind="mel"``, waveforms ``(time,)`` for ``kind="waveform"``.
    labels : sequence of int
        Class index per clip.
    n_frames : int
        Patch length in frames (default 128, as Pons et al. 2019 and Salamon & Bello 2017).
    mode : {"random", "all"}
        "random": one item per clip, a random crop that changes with :meth:`set_epoch` (training, Pons).
        "all": every patch at ``hop`` frames (default ``n_frames``), for evaluation or Piczak's training
        on all segments.
    hop : int or None
        Frames between patch starts in mode "all" (Piczak: ``n_frames // 2``, 50 % overlap).
    silence_db : float or None
        Mode "all": drop patches whose mean level is below this many dB under the clip's loudest frame
        (Piczak's silent-segment removal, :func:`piczak_segments`); None keeps every patch.
    kind : {"mel", "waveform"}
    hop_length : int or None
        Samples per frame for waveforms (the mel ``hop_length``); patches are ``hop_length * (n_frames - 1)``
        samples (``center=True`` framing).
    seed : int
        Seed of the random crops: the crop of clip ``i`` in epoch ``e`` is a function of ``(seed, e, i)``
        only, so it does not depend on the order of access or the number of DataLoader workers.

    Items are ``(patch, label, clip_index)``; ``clip_index`` indexes ``features`` so that patch
    predictions can be aggregated per clip. ``clip_indices`` lists it for every item.

    >>> ds = PatchDataset([torch.rand(8, 200), torch.rand(8, 50)], [0, 1], n_frames=64, mode="all")
    >>> len(ds), ds.clip_indices, ds[0][0].shape, ds[4][1:]  # starts 0, 64, 128 and 136 (the end) in clip 0
    (5, [0, 0, 0, 0, 1], torch.Size([8, 64]), (1, 1))
    """

    def __init__(self, features: Sequence[torch.Tensor], labels: Sequence[int], n_frames: int = 128,
                 mode: str = "random", hop: int | None = None, silence_db: float | None = None,
                 kind: str = "mel", hop_length: int | None = None, seed: int = 0, cover_end: bool = True):
        if len(features) != len(labels):
            raise ParameterError(f"features and labels differ in length: {len(features)} != {len(labels)}")
        one_of("mode", mode, ("random", "all"))
        self.n_frames = positive_int("n_frames", n_frames)
        _unit(kind, hop_length)
        optional(positive_int, "hop", hop)
        self.features, self.labels = list(features), [int(v) for v in labels]
        self.mode, self.kind, self.hop_length, self.seed = mode, kind, hop_length, int(seed)
        self.hop = self.n_frames if hop is None else int(hop)
        self.silence_db = silence_db
        self.epoch = 0
        for i, f in enumerate(self.features):
            if f.shape[-1] == 0:
                raise ParameterError(f"features[{i}] is empty (0 frames or samples)")
        if mode == "all":
            self.index = [(i, s) for i, f in enumerate(self.features)
                          for s in _segment_starts(f, self.n_frames, self.hop, silence_db, kind, hop_length,
                                                   cover_end=cover_end)]
        else:
            self.index = [(i, None) for i in range(len(self.features))]

    def set_epoch(self, epoch: int) -> None:
        """Choose the random crops of this epoch (mode "random")."""
        self.epoch = int(epoch)

    @property
    def clip_indices(self) -> list[int]:
        """The clip index of every item, in item order."""
        return [i for i, _ in self.index]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int):
        i, start = self.index[item]
        x = self.features[i]
        if start is None:
            g = torch.Generator().manual_seed(seed_for("crop", self.seed, self.epoch, i))
            patch = random_crop(x, self.n_frames, g, self.kind, self.hop_length)
        else:
            patch = crop(x, start, self.n_frames, self.kind, self.hop_length)
        return patch, self.labels[i], i
