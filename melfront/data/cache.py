"""On-disk cache of linear mel spectrograms and resampled waveforms.

The linear power mel spectrogram of a clip is computed once per parameter set and reused; the
compressions (log, dB, power law, PCEN) stay in the model, since they can be learned. An entry is
keyed by the file's identity (resolved path, size in bytes, modification time in ns), every mel
parameter (the full :meth:`melfront.MelSpectrogram.config`, defaults filled in) and
:data:`CACHE_VERSION`; change any of them and the entry is recomputed.

Entries are ``.npy`` files (float32) written to a temporary file in the same folder and moved into
place with :func:`os.replace`, which is atomic on POSIX and Windows: two processes writing the same
entry, or a process killed mid-write, never leave a half-written entry under the final name. An
entry that fails to load (truncated, garbage) is recomputed and rewritten. (Entries are not fsync'ed: after
a power loss an entry may be empty or damaged, and is then recomputed like any corrupt entry.)
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..audio import AudioError, load_audio
from .base import ClipList

__all__ = ["CACHE_VERSION", "FeatureCache", "default_cache_dir", "load_features"]

#: Part of every key: bump when the way features are computed or stored changes.
CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """``$MELFRONT_CACHE`` if set, else ``$XDG_CACHE_HOME/melfront``, else ``~/.cache/melfront``."""
    env = os.environ.get("MELFRONT_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "melfront"


_FULL_CONFIGS: dict[str, dict] = {}


def full_mel_config(mel_config: dict) -> dict:
    """The config with defaults filled in, so that equal settings give equal keys (memoised)."""
    from ..frontends import MelSpectrogram

    if not isinstance(mel_config, dict) or "sample_rate" not in mel_config:
        raise ValueError(f"mel_config must be a dict with at least 'sample_rate', got {mel_config!r}")
    tag = json.dumps(mel_config, sort_keys=True, default=repr)
    full = _FULL_CONFIGS.get(tag)
    if full is None:
        try:
            full = _FULL_CONFIGS[tag] = MelSpectrogram(**mel_config).config()
        except TypeError as exc:
            raise ValueError(f"mel_config has an unknown parameter: {exc}") from None
    return dict(full)


class FeatureCache:
    """A folder of cached features.

    Parameters
    ----------
    root : str or Path or None
        Where entries live; default :func:`default_cache_dir` ``/ "features"``.

    Examples
    --------
    >>> cache = FeatureCache()
    >>> mel = cache.mel("dog.wav", {"sample_rate": 22050, "n_fft": 1024, "hop_length": 512, "n_mels": 128})
    >>> mel.shape   # (n_mels, frames)
    """

    def __init__(self, root=None):
        self.root = Path(root).expanduser() if root is not None else default_cache_dir() / "features"
        self._modules: dict[str, torch.nn.Module] = {}
        self.hits = 0
        self.misses = 0

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
        return self.root / key[:2] / f"{key}.npy"

    # -- storage -----------------------------------------------------------------------------
    def _load(self, entry: Path):
        try:
            arr = np.load(entry, allow_pickle=False)
        except FileNotFoundError:
            return None
        except Exception:  # truncated or garbage: recompute
            return None
        if arr.dtype != np.float32 or not np.isfinite(arr).all():
            return None
        return torch.from_numpy(arr)

    def _store(self, entry: Path, tensor: torch.Tensor) -> None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npy", dir=entry.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, tensor.detach().cpu().numpy().astype(np.float32, copy=False), allow_pickle=False)
            os.replace(tmp, entry)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def _get(self, path, kind: str, params: dict, compute):
        entry = self.entry_path(self.key(path, kind, params))
        cached = self._load(entry)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        value = compute().to(torch.float32).contiguous()
        self._store(entry, value)
        return value

    # -- features ----------------------------------------------------------------------------
    def mel(self, path, mel_config: dict) -> torch.Tensor:
        """Linear power mel spectrogram ``(n_mels, frames)`` float32 of the (mono) file at ``mel_config["sample_rate"]``.

        Same values as ``melfront.MelSpectrogram(**mel_config)(load_audio(path, sample_rate)[0])``.
        Raises :class:`melfront.AudioError` for unusable files.
        """
        cfg = full_mel_config(mel_config)
        tag = json.dumps(cfg, sort_keys=True)

        def compute():
            module = self._modules.get(tag)
            if module is None:
                from ..frontends import MelSpectrogram
                module = self._modules[tag] = MelSpectrogram(**mel_config)
            wave, _ = load_audio(path, sample_rate=int(cfg["sample_rate"]))
            with torch.no_grad():
                return module(wave)

        return self._get(path, "mel", cfg, compute)

    def waveform(self, path, sample_rate: int) -> torch.Tensor:
        """Mono waveform ``(time,)`` float32 resampled to ``sample_rate`` Hz (as :func:`melfront.load_audio`)."""
        if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        return self._get(path, "waveform", dict(sample_rate=int(sample_rate)),
                         lambda: load_audio(path, sample_rate=int(sample_rate))[0])

    # -- housekeeping ------------------------------------------------------------------------
    def clean_temporary(self) -> int:
        """Remove temporary files left by killed writers; returns how many were removed."""
        n = 0
        if self.root.is_dir():
            for tmp in self.root.glob("*/.tmp-*"):
                try:
                    tmp.unlink()
                    n += 1
                except OSError:
                    pass
        return n

    def __repr__(self) -> str:
        return f"FeatureCache(root={str(self.root)!r}, hits={self.hits}, misses={self.misses})"


class _NoCache(FeatureCache):
    """Computes features without storing them (``load_features(..., cache=False)``)."""

    def __init__(self):
        super().__init__(root=os.devnull)

    def _get(self, path, kind, params, compute):
        self.misses += 1
        return compute().to(torch.float32).contiguous()


#: Errors that mean "this clip is unusable", as opposed to programming errors.
_CLIP_ERRORS = (AudioError, OSError, RuntimeError, EOFError)


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

    Returns
    -------
    features : list[torch.Tensor]
        One per kept clip, in order.
    kept : ClipList
        The clips that loaded (same name/classes/root as ``clips``).
    skipped : list[tuple[str, str]]
        ``(path, cause)`` for every clip that could not be used.
    """
    if kind not in ("mel", "waveform"):
        raise ValueError(f"kind must be 'mel' or 'waveform', got {kind!r}")
    if kind == "mel" and mel_config is None:
        raise ValueError("mel_config is required for kind='mel'")
    if kind == "waveform":
        sample_rate = sample_rate if sample_rate is not None else (mel_config or {}).get("sample_rate")
        if sample_rate is None:
            raise ValueError("kind='waveform' needs sample_rate (or mel_config with 'sample_rate')")
    else:
        full_mel_config(mel_config)  # fail early on bad parameters, not once per clip
    if cache is False:
        store = _NoCache()
    elif isinstance(cache, FeatureCache):
        store = cache
    else:
        store = FeatureCache(cache)

    items = list(clips)
    iterator = items
    if progress:
        from tqdm import tqdm
        iterator = tqdm(items, desc=f"features ({kind})", unit="clip", leave=False)
    features, kept, skipped = [], [], []
    for clip in iterator:
        path = clip.path if hasattr(clip, "path") else str(clip)
        try:
            feat = store.mel(path, mel_config) if kind == "mel" else store.waveform(path, int(sample_rate))
        except _CLIP_ERRORS as exc:
            skipped.append((str(path), getattr(exc, "cause", None) or f"{type(exc).__name__}: {exc}"))
            continue
        features.append(feat)
        kept.append(clip)
    if isinstance(clips, ClipList):
        kept = clips.subset(kept)
    else:
        kept = ClipList(kept)
    if progress and skipped:
        print(f"skipped {len(skipped)} of {len(items)} clip(s):", file=sys.stderr)
        for path, cause in skipped:
            print(f"  {path}: {cause}", file=sys.stderr)
    return features, kept, skipped
