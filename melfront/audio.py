"""Reading audio files into float32 tensors, with clear errors for bad, hostile or careless input.

Reading goes through libsndfile (``soundfile``): WAV, FLAC, OGG/Vorbis, AIFF and, where the
installed libsndfile has it, MP3. Resampling uses ``soxr`` at very high quality.

Before any sample is decoded the path and the header are checked: special files (FIFO, socket,
device), directories, broken symbolic links and link loops, unreadable files, containers whose
declared size exceeds the bytes present (WAV, AIFF, Ogg), implausible sample rates (outside
:data:`MIN_SAMPLE_RATE` .. :data:`MAX_SAMPLE_RATE` Hz) and outputs larger than
:data:`MAX_DECODED_BYTES`. Decoding then runs in blocks of bounded size, in float32 throughout:
channels are mixed and resampled block by block, so peak memory is the output plus one block.

>>> import tempfile, pathlib, numpy as np, soundfile
>>> p = pathlib.Path(tempfile.mkdtemp()) / "tone.wav"
>>> soundfile.write(p, np.zeros((800, 2), np.float32), 8000)
>>> wave, rate = load_audio(p, sample_rate=16000)
>>> wave.shape, wave.dtype, rate
(torch.Size([1600]), torch.float32, 16000)
"""
from __future__ import annotations

import errno
import math
import os
import re
import stat
import struct
import sys
from pathlib import Path

import numpy as np
import soundfile
import soxr
import torch

from .checks import boolean, optional, positive_float, positive_int
from .errors import AudioError, ParameterError

__all__ = ["AudioError", "load_audio", "resample", "audio_info", "audio_problem", "MAX_DECODED_BYTES", "MIN_SAMPLE_RATE",
           "MAX_SAMPLE_RATE", "BLOCK_SAMPLES"]

#: Largest float32 output (bytes) :func:`load_audio` produces unless given ``max_bytes=``; 4 GiB is a
#: 2-hour stereo clip at 48 kHz with room to spare. Users may set ``melfront.audio.MAX_DECODED_BYTES``.
MAX_DECODED_BYTES = 4 * 2**30
#: Plausible sample rates (Hz): a header declaring a rate outside this range is treated as corrupt.
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 384_000
#: Samples (frames x channels) decoded per block; bounds the memory used beside the output.
BLOCK_SAMPLES = 1 << 20
_UNKNOWN_FRAMES = 2**62  # libsndfile's frame count when the length is unknown (pipes, streams)

_OS_CAUSES = {errno.ELOOP: "symbolic link loop (too many levels of symbolic links)",
              errno.EACCES: "permission denied", errno.EPERM: "permission denied",
              errno.ENOTDIR: "a component of the path is not a folder",
              errno.ENAMETOOLONG: "file name too long"}
_SPECIAL = ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
            (stat.S_ISBLK, "block device"))


# --------------------------------------------------------------------------------------------
# The path
# --------------------------------------------------------------------------------------------
def _as_path(path) -> Path:
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    try:
        return Path(path)
    except TypeError:
        raise ParameterError(f"path must be a str, bytes or os.PathLike, got {path!r}") from None


def _os_cause(exc: OSError) -> str:
    return _OS_CAUSES.get(exc.errno) or f"cannot be opened ({exc.strerror or type(exc).__name__})"


def _check_path(path) -> Path:
    """The path as a ``Path`` if it names a non-empty, readable regular file; else AudioError with the cause."""
    path = _as_path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise AudioError(path, f"broken symbolic link (it points to {os.readlink(path)!r}, "
                                   "which does not exist)") from None
        raise AudioError(path, "file not found") from None
    except OSError as exc:
        raise AudioError(path, _os_cause(exc)) from None
    if stat.S_ISDIR(st.st_mode):
        raise AudioError(path, "is a directory, not an audio file")
    for test, kind in _SPECIAL:
        if test(st.st_mode):
            raise AudioError(path, f"not a regular file ({kind})")
    if not stat.S_ISREG(st.st_mode):
        raise AudioError(path, "not a regular file")
    if st.st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise AudioError(path, _os_cause(exc)) from None
    return path


def _sf_name(path: Path):
    """What libsndfile opens: the raw bytes of the name, so that names that are not UTF-8 work."""
    return str(path) if sys.platform == "win32" else os.fsencode(path)


# --------------------------------------------------------------------------------------------
# Container checks (declared sizes vs bytes present), before libsndfile sees the file
# --------------------------------------------------------------------------------------------
def _find_chunk(f, start: int, size: int, endian: str, wanted: bytes):
    """``(offset, declared_size)`` of the first chunk ``wanted`` of a RIFF/IFF file, or None."""
    pos = start
    while pos + 8 <= size:
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8:
            return None
        chunk_id, chunk_size = head[:4], struct.unpack(endian + "I", head[4:])[0]
        if chunk_id == wanted:
            return pos, chunk_size
        pos += 8 + chunk_size + (chunk_size & 1)
    return None


def _riff_problem(f, size: int) -> str | None:
    found = _find_chunk(f, 12, size, "<", b"data")
    if found is None:
        return None
    pos, declared = found
    available = size - (pos + 8)
    # 0 and 0xFFFFFFFF are used by streaming writers for "unknown length".
    if declared not in (0, 0xFFFFFFFF) and declared > available:
        return (f"truncated: the WAV header declares {declared} bytes of samples "
                f"but only {available} are present")
    return None


def _aiff_problem(f, size: int, form_size: int) -> str | None:
    found = _find_chunk(f, 12, size, ">", b"SSND")
    if found is not None:
        pos, declared = found
        available = size - (pos + 8)
        if declared > available:
            return (f"truncated: the AIFF header declares {declared} bytes of sound data "
                    f"but only {available} are present")
        return None
    if form_size > size - 8:
        return f"truncated: the AIFF header declares {form_size + 8} bytes but only {size} are present"
    return None


def _ogg_scan(f, size: int) -> tuple[int, bool]:
    """Walk the Ogg pages: ``(bytes missing from the last page, whether the last page ends the stream)``.

    Stops (reporting nothing missing) at anything that is not a page, e.g. a tag appended to the file.
    """
    pos, eos = 0, False
    while pos + 27 <= size:
        f.seek(pos)
        head = f.read(27 + 255)
        if head[:4] != b"OggS":
            return 0, eos
        n_segments = head[26]
        page = 27 + n_segments + sum(head[27:27 + n_segments])
        eos = bool(head[5] & 0x04)
        if pos + page > size:  # (a lower bound when the lacing table itself is cut)
            return pos + page - size, eos
        pos += page
    f.seek(pos)
    rest = f.read(4)
    return (27 - (size - pos) if rest and b"OggS".startswith(rest) else 0), eos


def _container_problem(path: Path) -> str | None:
    """A description of a container whose header promises more bytes than the file holds, or None."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            return _riff_problem(f, size)
        if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
            return _aiff_problem(f, size, struct.unpack(">I", head[4:8])[0])
        if head[:4] == b"OggS":
            missing, _ = _ogg_scan(f, size)
            if missing:
                return f"truncated: the last Ogg page lacks {missing} byte(s)"
    return None


# --------------------------------------------------------------------------------------------
# Opening and the header
# --------------------------------------------------------------------------------------------
def _clean(exc: Exception) -> str:
    text = getattr(exc, "error_string", None) or str(exc).strip()
    text = text.strip().splitlines()[-1] if text.strip() else type(exc).__name__
    if "does not exist or is not a regular file" in text:  # libsndfile's guess; we checked the path already
        return "unrecognised or malformed audio data"
    text = re.sub(r"^Error\s*:\s*", "", text).rstrip(".")
    return text.replace("Error opening", "cannot open").strip()


def _open(path: Path) -> soundfile.SoundFile:
    try:
        return soundfile.SoundFile(_sf_name(path))
    except Exception as exc:  # libsndfile's errors are RuntimeError subclasses with terse text
        raise AudioError(path, f"not a readable audio file or unsupported format ({_clean(exc)})") from None


def _size_text(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _too_big(need: int, limit: int, what: str) -> str:
    return (f"{what} would need {_size_text(need)} ({need} bytes) of float32 output, more than the limit of "
            f"{_size_text(limit)}; pass max_bytes= to load_audio or set melfront.audio.MAX_DECODED_BYTES "
            "to allow it")


def _is_mp3(f: soundfile.SoundFile) -> bool:
    return f.format == "MP3" or str(f.subtype).startswith("MPEG")


def _plan(path: Path, f: soundfile.SoundFile, sample_rate, mono: bool, max_bytes: int) -> int:
    """Check the header; return the expected number of output frames (0 when the length is unknown)."""
    rate = f.samplerate
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(path, f"header declares a sample rate of {rate} Hz, outside the plausible "
                               f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz: the header is corrupt")
    if f.channels < 1:
        raise AudioError(path, f"header declares {f.channels} channels")
    declared = f.frames
    if not 0 < declared < _UNKNOWN_FRAMES:
        return 0
    out_rate = rate if sample_rate is None else sample_rate
    frames = declared if out_rate == rate else math.ceil(declared * out_rate / rate)
    need = frames * (1 if mono else f.channels) * 4
    if need > max_bytes:
        resampled = f", resampled to {out_rate} Hz" if out_rate != rate else ""
        what = (f"header declares {declared} frames x {f.channels} channel(s) at {rate} Hz{resampled}: "
                "decoding")
        raise AudioError(path, _too_big(need, max_bytes, what))
    return frames


# --------------------------------------------------------------------------------------------
# Decoding in blocks
# --------------------------------------------------------------------------------------------
class _Output:
    """A ``(channels, capacity)`` float32 buffer filled block by block; grows only if the header undercounted."""

    def __init__(self, path: Path, channels: int, capacity: int, max_bytes: int):
        self.path, self.max_bytes = path, max_bytes
        self.data = np.empty((channels, max(capacity, 1)), dtype=np.float32)
        self.n = 0

    def append(self, block: np.ndarray) -> None:
        m = block.shape[0]
        if not m:
            return
        channels, capacity = self.data.shape
        if self.n + m > capacity:
            if (self.n + m) * channels * 4 > self.max_bytes:
                raise AudioError(self.path, _too_big((self.n + m) * channels * 4, self.max_bytes,
                                                     "the decoded audio (longer than its header said)"))
            grown = np.empty((channels, min(max(self.n + m, capacity * 3 // 2),
                                            self.max_bytes // (4 * channels))), dtype=np.float32)
            grown[:, :self.n] = self.data[:, :self.n]
            self.data = grown
        self.data[:, self.n:self.n + m] = block.T
        self.n += m

    def result(self) -> np.ndarray:
        """The filled part, C-contiguous, compacted in place (no second full-size buffer)."""
        channels, capacity = self.data.shape
        if self.n == capacity or channels == 1:
            return self.data[:, :self.n]
        flat = self.data.reshape(-1)
        for c in range(1, channels):  # each row moves towards the start: never overwrites unread data
            flat[c * self.n:(c + 1) * self.n] = self.data[c, :self.n].copy()
        return flat[:channels * self.n].reshape(channels, self.n)


def _decode(path: Path, f: soundfile.SoundFile, mono: bool, out_rate: int, capacity: int, max_bytes: int):
    """Read, check, mix and resample block by block: ``(array (channels, time), frames read, bad samples)``."""
    channels = f.channels
    out_channels = 1 if mono else channels
    stream = None
    if out_rate != f.samplerate:
        stream = soxr.ResampleStream(f.samplerate, out_rate, out_channels, dtype="float32", quality="VHQ")
    out = _Output(path, out_channels, capacity, max_bytes)
    block = max(1, BLOCK_SAMPLES // channels)
    read = bad = 0
    while True:
        try:
            x = f.read(block, dtype="float32", always_2d=True)
        except Exception as exc:
            raise AudioError(path, f"corrupt or truncated audio data after {read} frames ({_clean(exc)})") from None
        if not x.shape[0]:
            break
        read += x.shape[0]
        finite = np.isfinite(x)
        if not finite.all():
            bad += int(x.size - np.count_nonzero(finite))
        del finite
        if mono and channels > 1:
            x = x.mean(axis=1, dtype=np.float32, keepdims=True)
        out.append(x if stream is None else stream.resample_chunk(x))
    if stream is not None and read:
        out.append(stream.resample_chunk(np.zeros((0, out_channels), np.float32), last=True))
    return out.result(), read, bad


def _no_samples_cause(path: Path, f: soundfile.SoundFile) -> str:
    if 0 < f.frames < _UNKNOWN_FRAMES:
        return f"truncated or corrupt: the header declares {f.frames} frames but none could be decoded"
    if f.format == "OGG":
        with open(path, "rb") as fh:
            _, eos = _ogg_scan(fh, path.stat().st_size)
        if not eos:
            return "truncated or corrupt: no samples could be decoded and the Ogg stream has no end page"
    return "contains no samples (zero-length audio)"


# --------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------
def audio_info(path) -> soundfile._SoundFileInfo:
    """Header information (sample rate, channels, frames, format) without reading the samples.

    >>> import tempfile, pathlib, numpy as np, soundfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.flac"
    >>> soundfile.write(p, np.zeros(400, np.float32), 8000)
    >>> info = audio_info(p)
    >>> info.samplerate, info.channels, info.frames
    (8000, 1, 400)
    """
    path = _check_path(path)
    try:
        return soundfile.info(_sf_name(path))
    except Exception as exc:
        raise AudioError(path, f"not a readable audio file ({_clean(exc)})") from None


def audio_problem(path) -> str | None:
    """Why ``path`` cannot be used as audio, or None: every sample is decoded once (at the file's own rate,
    block by block, nothing kept), so a truncated file, undecodable data and NaN or infinite samples are found
    as :func:`load_audio` would find them, without resampling or holding the clip in memory.

    >>> import tempfile, pathlib, numpy as np, soundfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> soundfile.write(d / "ok.wav", np.zeros(800, np.float32), 8000)
    >>> soundfile.write(d / "nan.wav", np.full(800, np.nan, np.float32), 8000, subtype="FLOAT")
    >>> audio_problem(d / "ok.wav"), audio_problem(d / "nan.wav"), audio_problem(d / "gone.wav")
    (None, 'contains 800 NaN or infinite sample(s)', 'file not found')
    """
    try:
        path = _check_path(path)
        problem = _container_problem(path)
        if problem:
            return problem
        with _open(path) as f:
            if not MIN_SAMPLE_RATE <= f.samplerate <= MAX_SAMPLE_RATE:
                return f"header declares a sample rate of {f.samplerate} Hz: the header is corrupt"
            block = max(1, BLOCK_SAMPLES // max(1, f.channels))
            read = bad = 0
            while True:
                try:
                    x = f.read(block, dtype="float32", always_2d=True)
                except Exception as exc:
                    return f"corrupt or truncated audio data after {read} frames ({_clean(exc)})"
                if not x.shape[0]:
                    break
                read += x.shape[0]
                bad += int(x.size - np.count_nonzero(np.isfinite(x)))
            if read == 0:
                return _no_samples_cause(path, f)
            if 0 < f.frames < _UNKNOWN_FRAMES and read < f.frames and not _is_mp3(f):
                return f"truncated: header declares {f.frames} frames, only {read} could be read"
    except AudioError as exc:
        return exc.cause
    return f"contains {bad} NaN or infinite sample(s)" if bad else None


def load_audio(path, sample_rate: int | None = None, mono: bool = True, max_bytes: int | None = None):
    """Read an audio file as a float32 tensor, in bounded memory.

    Parameters
    ----------
    path : str, bytes or Path
        WAV, FLAC, OGG/Vorbis, AIFF (and MP3 where libsndfile has it); any file name, UTF-8 or not.
    sample_rate : int or None
        Resample to this rate (Hz) with soxr at very high quality (float32, streamed); None: the file's.
    mono : bool
        Average all channels to one (in float32, block by block). Otherwise all channels are returned.
    max_bytes : int or None
        Refuse, before decoding, files whose float32 output (after mixing and resampling) would exceed
        this many bytes; None uses :data:`MAX_DECODED_BYTES` (4 GiB).

    Returns
    -------
    waveform : torch.Tensor, float32
        Shape ``(time,)`` when ``mono``, else ``(channels, time)``. Integer PCM is scaled to
        [-1, 1] (full scale of the file's bit depth).
    sample_rate : int
        The rate of the returned waveform in Hz.

    Raises
    ------
    AudioError
        Missing, empty, special (FIFO, device), unreadable or truncated file; broken symbolic link or
        link loop; unsupported format; implausible header; output over ``max_bytes``; no samples;
        NaN or infinite samples. The message names the file and the cause.

    >>> import tempfile, pathlib, numpy as np, soundfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "stereo.wav"
    >>> soundfile.write(p, np.full((1000, 2), 0.25, np.float32), 8000)
    >>> wave, rate = load_audio(p, mono=False)
    >>> tuple(wave.shape), rate, float(wave[1, 0])
    ((2, 1000), 8000, 0.25)
    >>> load_audio(p, max_bytes=1000)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    melfront.errors.AudioError: ...would need 3.9 KiB (4000 bytes) of float32 output, more than the limit...
    """
    path = _check_path(path)
    sample_rate, mono = optional(positive_int, "sample_rate", sample_rate), boolean("mono", mono)
    max_bytes = positive_int("max_bytes", MAX_DECODED_BYTES if max_bytes is None else max_bytes)
    problem = _container_problem(path)
    if problem:
        raise AudioError(path, problem)
    with _open(path) as f:
        capacity = _plan(path, f, sample_rate, mono, max_bytes)
        out_rate = f.samplerate if sample_rate is None else sample_rate
        data, read, bad = _decode(path, f, mono, out_rate, capacity, max_bytes)
        if read == 0:
            raise AudioError(path, _no_samples_cause(path, f))
        if 0 < f.frames < _UNKNOWN_FRAMES and read < f.frames and not _is_mp3(f):  # MP3 counts are estimates
            raise AudioError(path, f"truncated: header declares {f.frames} frames, only {read} could be read")
    if bad:
        raise AudioError(path, f"contains {bad} NaN or infinite sample(s)")
    waveform = torch.from_numpy(data)
    return (waveform[0] if mono else waveform), int(out_rate)


def resample(waveform: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Resample ``(..., time)`` audio with soxr (very high quality). Not differentiable.

    Float64 input is resampled in float64, anything else in float32; the result has the input's
    dtype and device.

    >>> y = resample(torch.zeros(2, 8000), 8000, 16000)
    >>> tuple(y.shape), y.dtype
    ((2, 16000), torch.float32)
    """
    orig_rate = positive_float("orig_rate", orig_rate)
    new_rate = positive_float("new_rate", new_rate)
    if orig_rate == new_rate:
        return waveform
    x = waveform.detach().cpu().numpy()
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1]).T.astype(np.float32 if x.dtype != np.float64 else np.float64)
    out = soxr.resample(flat, orig_rate, new_rate, quality="VHQ")
    out = torch.from_numpy(np.ascontiguousarray(out.T)).reshape(*lead, -1)
    return out.to(device=waveform.device, dtype=waveform.dtype)
