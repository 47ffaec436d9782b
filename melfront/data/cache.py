"""On-disk cache of linear mel spectrograms and resampled waveforms.

The linear power mel spectrogram of a clip is computed once per parameter set and reused; the
compressions (log, dB, power law, PCEN) stay in the model, since they can be learned. An entry is
keyed by the file's identity (resolved path, size in bytes, modification time in ns), every mel
parameter (the full :meth:`melfront.MelSpectrogram.config`, defaults filled in) and
:data:`CACHE_VERSION`; change any of them and the entry is recomputed.

Entries are ``.npy`` files (float32, readable by ``numpy.load``) followed by a trailer holding a
BLAKE2b checksum of the array's dtype, shape and bytes. An entry whose header, length or checksum is
wrong (truncated, garbage, zeroed or flipped data) is recomputed and rewritten. Every entry is written
through :func:`melfront.fileio.atomic_write` (a temporary file in the same folder, flushed, then moved
into place): two processes writing the same entry, or a process killed mid-write, never leave a
half-written entry under the final name; a killed writer's temporary file (``.melfront-tmp-*``) is
removed by the next :class:`FeatureCache` opened on the folder once it is :data:`STALE_TEMP_SECONDS` old.

The mel spectrogram is computed block by block (:func:`melfront.functional.melspectrogram_chunked`:
exact overlap, float32, the same values as ``MelSpectrogram`` over the whole clip), so computing an
entry for a long recording holds the float32 waveform, the mel spectrogram and one block's STFT, never
the whole clip's STFT (a 2-hour clip at 22050 Hz: well under 1.5 GB, see BENCHMARKS.md).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..audio import load_audio
from ..checks import one_of, positive_int
from ..errors import AudioError, ParameterError, PathError
from ..fileio import TEMP_PREFIX, atomic_write
from ..frontends import MelSpectrogram
from ..functional.spectral import melspectrogram_chunked
from .base import ClipList

__all__ = ["CACHE_VERSION", "STALE_TEMP_SECONDS", "FeatureCache", "default_cache_dir", "full_mel_config",
           "load_features"]

#: Part of every key: bump when the way features are computed or stored changes (2: checksummed entries).
CACHE_VERSION = 2
#: A temporary file older than this (seconds) is a dead writer's leftover, removed when a cache is opened.
STALE_TEMP_SECONDS = 300.0

_TRAILER = b"MFBLAKE2"  # followed by the 32-byte digest
_TRAILER_SIZE = len(_TRAILER) + 32


def default_cache_dir() -> Path:
    """``$MELFRONT_CACHE`` if set, else ``$XDG_CACHE_HOME/melfront``, else ``~/.cache/melfront``.

    >>> import os
    >>> os.environ["MELFRONT_CACHE"] = "/tmp/mf-cache"; str(default_cache_dir())
    '/tmp/mf-cache'
    >>> del os.environ["MELFRONT_CACHE"]
    """
    env = os.environ.get("MELFRONT_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "melfront"


_FULL_CONFIGS: dict[str, dict] = {}


def full_mel_config(mel_config: dict) -> dict:
    """The config with defaults filled in, so that equal settings give equal keys (memoised).

    >>> cfg = full_mel_config({"sample_rate": 8000, "n_fft": 256, "hop_length": 128, "n_mels": 20})
    >>> cfg["sample_rate"], cfg["n_mels"], "fmin" in cfg
    (8000, 20, True)
    """
    if not isinstance(mel_config, dict) or "sample_rate" not in mel_config:
        raise ParameterError(f"mel_config must be a dict with at least 'sample_rate', got {mel_config!r}")
    tag = json.dumps(mel_config, sort_keys=True, default=repr)
    full = _FULL_CONFIGS.get(tag)
    if full is None:
        try:
            full = _FULL_CONFIGS[tag] = MelSpectrogram(**mel_config).config()
        except TypeError as exc:
            raise ParameterError(f"mel_config has an unknown parameter: {exc}") from None
    return dict(full)


def _digest(shape: tuple, data) -> bytes:
    h = hashlib.blake2b(f"<f4{tuple(shape)}".encode(), digest_size=32)
    h.update(data)
    return h.digest()


def _read_entry(entry: Path) -> np.ndarray | None:
    """The float32 array of a whole, checksum-verified entry; None if missing or damaged in any way."""
    try:
        with open(entry, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            major, _ = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran_order, dtype = read_header(f)
            nbytes = math.prod(shape) * 4
            if dtype != np.dtype("<f4") or fortran_order or nbytes != size - f.tell() - _TRAILER_SIZE:
                return None  # (checked before allocating: a damaged header may declare any shape)
            data = bytearray(nbytes)
            if f.readinto(data) != nbytes or f.read() != _TRAILER + _digest(shape, data):
                return None
    except (OSError, ValueError, EOFError):  # missing, unreadable, not an .npy file
        return None
    arr = np.frombuffer(data, dtype="<f4").reshape(shape)
    return arr if np.isfinite(arr).all() else None


#: Cache roots that could not be written (read-only, full) in this process, with the error: said once, then
#: features are computed without storing them (the clips are fine; the cache is not).
_UNWRITABLE: dict[str, Exception] = {}


class FeatureCache:
    """A folder of cached features, checksummed and written atomically.

    A cache that cannot be written (a read-only folder, a full disk) does not make clips unusable: the first
    failed write is said once on stderr with its cause (the path and the errno's meaning), and features are
    computed without storing them from then on.

    Parameters
    ----------
    root : str or Path or None
        Where entries live; default :func:`default_cache_dir` ``/ "features"``. Opening a cache removes
        temporary files older than :data:`STALE_TEMP_SECONDS` left there by killed writers.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np, soundfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> soundfile.write(d / "dog.wav", np.zeros(4000, np.float32), 8000)
    >>> cache = FeatureCache(d / "cache")
    >>> mel = cache.mel(d / "dog.wav", {"sample_rate": 8000, "n_fft": 256, "hop_length": 128, "n_mels": 20})
    >>> tuple(mel.shape), (cache.hits, cache.misses)   # (n_mels, frames)
    ((20, 32), (0, 1))
    >>> cache.waveform(d / "dog.wav", 8000).shape, cache.clean_temporary()
    (torch.Size([4000]), 0)
    """

    def __init__(self, root=None):
        self.root = Path(root).expanduser() if root is not None else default_cache_dir() / "features"
        self.hits = 0
        self.misses = 0
        self.clean_temporary(older_than=STALE_TEMP_SECONDS)

    # -- keys --------------------------------------------------------------------------------
    @staticmethod
    def _identity(path) -> dict:
        p = Path(path).expanduser()
        try:
            st = p.stat()
        except FileNotFoundError:
            raise AudioError(p, "file not found") from None
        return dict(path=str(p.resolve()), size=st.st_size, mtime_ns=st.st_mtime_ns)

    def key(self, path, kind: str, params: dict) -> str:
        """Hex digest naming the entry of ``path`` for feature ``kind`` with ``params``."""
        blob = json.dumps(dict(v=CACHE_VERSION, kind=kind, file=self._identity(path), params=params),
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def entry_path(self, key: str) -> Path:
        """The file holding entry ``key`` (``root/<first two hex digits>/<key>.npy``)."""
        return self.root / key[:2] / f"{key}.npy"

    # -- storage -----------------------------------------------------------------------------
    def _load(self, entry: Path):
        arr = _read_entry(entry)
        return None if arr is None else torch.from_numpy(arr)

    def _store(self, entry: Path, tensor: torch.Tensor) -> None:
        arr = np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype="<f4")
        with atomic_write(entry, "wb") as f:
            np.save(f, arr, allow_pickle=False)
            f.write(_TRAILER + _digest(arr.shape, arr.reshape(-1).view(np.uint8)))

    def _get(self, path, kind: str, params: dict, compute):
        entry = self.entry_path(self.key(path, kind, params))
        cached = self._load(entry)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        value = compute().to(torch.float32).contiguous()
        root = str(self.root)
        if root not in _UNWRITABLE:
            try:
                self._store(entry, value)
            except OSError as exc:  # read-only or full: the clip is fine, the cache is not; say it once
                _UNWRITABLE[root] = PathError.from_os_error(exc, doing="cannot write the feature cache")
                print(f"melfront: {_UNWRITABLE[root]}; features are computed without the cache from now on",
                      file=sys.stderr)
        return value

    # -- features ----------------------------------------------------------------------------
    def mel(self, path, mel_config: dict) -> torch.Tensor:
        """Linear power mel spectrogram ``(n_mels, frames)`` float32 of the (mono) file at ``mel_config["sample_rate"]``.

        Same values as ``melfront.MelSpectrogram(**mel_config)(load_audio(path, sample_rate)[0])``, computed
        in bounded memory (:func:`melfront.functional.melspectrogram_chunked`). Raises
        :class:`melfront.AudioError` for unusable files.
        """
        cfg = full_mel_config(mel_config)

        def compute():
            wave, _ = load_audio(path, sample_rate=int(cfg["sample_rate"]))
            with torch.no_grad():
                return melspectrogram_chunked(wave, **cfg)

        return self._get(path, "mel", cfg, compute)

    def waveform(self, path, sample_rate: int) -> torch.Tensor:
        """Mono waveform ``(time,)`` float32 resampled to ``sample_rate`` Hz (as :func:`melfront.load_audio`)."""
        sample_rate = positive_int("sample_rate", sample_rate)
        return self._get(path, "waveform", dict(sample_rate=sample_rate),
                         lambda: load_audio(path, sample_rate=sample_rate)[0])

    def audio_problem(self, path, check) -> str | None:
        """``check(path)`` (a clip's problem, or None when it decodes cleanly: :func:`melfront.audio.audio_problem`),
        remembered for clean files: a file whose size and modification time have not changed since it decoded
        cleanly is not decoded again (an empty entry records it), so a study's scan costs one decode per file,
        not one per process (``--jobs``, Ray workers) and run. Problems are not remembered (checked each time).
        """
        problem = []

        def compute():
            problem.append(check(path))
            if problem[0] is not None:
                raise _Unclean
            return torch.zeros(0)

        try:
            self._get(path, "clean", {}, compute)
        except _Unclean:
            return problem[0]
        except (AudioError, OSError):  # the file's identity cannot be read: let the check say why
            return check(path)
        return None

    # -- housekeeping ------------------------------------------------------------------------
    def clean_temporary(self, older_than: float = 0.0) -> int:
        """Remove temporary files left by killed writers (those older than ``older_than`` seconds; by
        default all, so only call it when no other process writes); returns how many were removed."""
        n = 0
        if self.root.is_dir():
            cutoff = time.time() - older_than
            for tmp in self.root.glob(f"*/.{TEMP_PREFIX}*"):
                try:
                    if older_than <= 0 or tmp.stat().st_mtime < cutoff:
                        tmp.unlink()
                        n += 1
                except OSError:
                    pass
        return n

    def __repr__(self) -> str:
        return f"FeatureCache(root={str(self.root)!r}, hits={self.hits}, misses={self.misses})"


class _Unclean(Exception):
    """Internal: a clip whose check found a problem (nothing is stored for it)."""


class _NoCache(FeatureCache):
    """Computes features without storing them (``load_features(..., cache=False)``)."""

    def __init__(self):
        super().__init__(root=os.devnull)

    def _get(self, path, kind, params, compute):
        self.misses += 1
        return compute().to(torch.float32).contiguous()


#: Errors that mean "this clip is unusable", as opposed to programming errors.
_CLIP_ERRORS = (AudioError, OSError, RuntimeError, EOFError)


def _check_request(kind: str, mel_config: dict | None, sample_rate) -> int | None:
    """Fail early on bad arguments, not once per clip; returns the waveform rate for ``kind="waveform"``."""
    one_of("kind", kind, ("mel", "waveform"))
    if kind == "mel":
        if mel_config is None:
            raise ParameterError("mel_config is required for kind='mel'")
        full_mel_config(mel_config)
        return None
    sample_rate = sample_rate if sample_rate is not None else (mel_config or {}).get("sample_rate")
    if sample_rate is None:
        raise ParameterError("kind='waveform' needs sample_rate (or mel_config with 'sample_rate')")
    return positive_int("sample_rate", sample_rate)


def _store_for(cache) -> FeatureCache:
    if cache is False:
        return _NoCache()
    return cache if isinstance(cache, FeatureCache) else FeatureCache(cache)


def load_features(clips, mel_config: dict | None = None, cache=None, kind: str = "mel", progress: bool = True,
                  sample_rate: int | None = None):
    """Features of every clip, skipping (and listing) the unusable ones.

    Parameters
    ----------
    clips : ClipList or list of Clip
    mel_config : dict
        Parameters of :class:`melfront.MelSpectrogram` (needs ``sample_rate``); for ``kind="waveform"``
        only its ``sample_rate`` is used (or pass ``sample_rate``).
    cache : FeatureCache, str/Path (a cache root), None (the default cache) or False (no cache)
    kind : ``"mel"`` or ``"waveform"``
        ``"mel"``: linear power mel ``(n_mels, frames)``; ``"waveform"``: ``(time,)``.
    progress : bool
        A tqdm bar, and the list of skipped clips printed to stderr at the end.
    sample_rate : int or None
        For ``kind="waveform"``: the rate (Hz), else ``mel_config["sample_rate"]``.

    Returns
    -------
    features : list[torch.Tensor]
        One per kept clip, in order.
    kept : ClipList
        The clips that loaded (same name/classes/root as ``clips``).
    skipped : list[tuple[str, str]]
        ``(path, cause)`` for every clip that could not be used.

    >>> import tempfile, pathlib, numpy as np, soundfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> soundfile.write(d / "a.wav", np.zeros(800, np.float32), 8000)
    >>> feats, kept, skipped = load_features([str(d / "a.wav"), str(d / "gone.wav")], {"sample_rate": 8000},
    ...                                      cache=False, kind="waveform", progress=False)
    >>> [tuple(f.shape) for f in feats], len(kept), skipped[0][1]
    ([(800,)], 1, 'file not found')
    """
    sample_rate = _check_request(kind, mel_config, sample_rate)
    store = _store_for(cache)
    items = list(clips)
    iterator = tqdm(items, desc=f"features ({kind})", unit="clip", leave=False) if progress else items
    features, kept, skipped = [], [], []
    for clip in iterator:
        path = clip.path if hasattr(clip, "path") else str(clip)
        try:
            feat = store.mel(path, mel_config) if kind == "mel" else store.waveform(path, sample_rate)
        except _CLIP_ERRORS as exc:
            skipped.append((str(path), getattr(exc, "cause", None) or f"{type(exc).__name__}: {exc}"))
            continue
        features.append(feat)
        kept.append(clip)
    kept = clips.subset(kept) if isinstance(clips, ClipList) else ClipList(kept)
    if progress and skipped:
        print(f"skipped {len(skipped)} of {len(items)} clip(s):", file=sys.stderr)
        for path, cause in skipped:
            print(f"  {path}: {cause}", file=sys.stderr)
    return features, kept, skipped
