"""Reading audio files into float32 tensors, with clear errors for bad input.

Reading goes through libsndfile (``soundfile``): WAV, FLAC, OGG/Vorbis, AIFF and, where the
installed libsndfile has it, MP3. Resampling uses ``soxr`` at very high quality.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import soundfile
import soxr
import torch

__all__ = ["AudioError", "load_audio", "resample", "audio_info"]


class AudioError(ValueError):
    """A file that cannot be used as audio. The message names the file and the cause."""

    def __init__(self, path, cause: str):
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


def _riff_truncation(path: Path) -> str | None:
    """For RIFF/WAVE files, compare the declared ``data`` chunk size with the bytes present.

    libsndfile silently shortens a WAV whose data chunk was cut off; we want to say so instead.
    Returns a description of the problem, or None when the file is whole or not RIFF.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk = f.read(8)
            if len(chunk) < 8:
                break
            chunk_id, chunk_size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if chunk_id == b"data":
                available = size - (pos + 8)
                # 0 and 0xFFFFFFFF are used by streaming writers for "unknown length".
                if chunk_size not in (0, 0xFFFFFFFF) and chunk_size > available:
                    return (f"truncated: the WAV header declares {chunk_size} bytes of samples "
                            f"but only {available} are present")
                return None
            pos += 8 + chunk_size + (chunk_size & 1)
    return None


def audio_info(path) -> soundfile._SoundFileInfo:
    """Header information (sample rate, channels, frames, format) without reading the samples."""
    path = _check_path(path)
    try:
        return soundfile.info(str(path))
    except Exception as exc:  # libsndfile's errors are RuntimeError subclasses with terse text
        raise AudioError(path, f"not a readable audio file ({_clean(exc)})") from None


def _check_path(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "file not found")
    if path.is_dir():
        raise AudioError(path, "is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    return path


def _clean(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return text.replace("Error opening", "cannot open").strip()


def load_audio(path, sample_rate: int | None = None, mono: bool = True):
    """Read an audio file as a float32 tensor.

    Parameters
    ----------
    path : str or Path
        WAV, FLAC, OGG/Vorbis, AIFF (and MP3 where libsndfile supports it).
    sample_rate : int or None
        Resample to this rate (Hz) with soxr at very high quality; None keeps the file's rate.
    mono : bool
        Average all channels to one. Otherwise all channels are returned.

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
        Missing, empty, truncated or unreadable file; unsupported format; no samples;
        NaN or infinite samples. The message names the file and the cause.
    """
    path = _check_path(path)
    if sample_rate is not None and (not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0):
        raise ValueError(f"sample_rate must be a positive integer or None, got {sample_rate!r}")
    problem = _riff_truncation(path)
    if problem:
        raise AudioError(path, problem)
    try:
        with soundfile.SoundFile(str(path)) as f:
            file_rate = f.samplerate
            declared = f.frames
            data = f.read(dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(path, f"not a readable audio file or unsupported format ({_clean(exc)})") from None
    if data.shape[0] == 0:
        raise AudioError(path, "contains no samples (zero-length audio)")
    if 0 < declared < 2**62 and data.shape[0] < declared:
        raise AudioError(path, f"truncated: header declares {declared} frames, only {data.shape[0]} could be read")
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise AudioError(path, f"contains {bad} NaN or infinite sample(s)")
    if mono:
        data = data.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
    if sample_rate is not None and sample_rate != file_rate:
        data = soxr.resample(data, file_rate, int(sample_rate), quality="VHQ").astype(np.float32, copy=False)
        file_rate = int(sample_rate)
    waveform = torch.from_numpy(np.ascontiguousarray(data.T))
    if mono:
        waveform = waveform[0]
    return waveform, int(file_rate)


def resample(waveform: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Resample ``(..., time)`` audio with soxr (very high quality). Not differentiable."""
    if orig_rate == new_rate:
        return waveform
    x = waveform.detach().cpu().numpy()
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1]).T.astype(np.float32 if x.dtype != np.float64 else np.float64)
    out = soxr.resample(flat, orig_rate, new_rate, quality="VHQ")
    out = torch.from_numpy(np.ascontiguousarray(out.T)).reshape(*lead, -1)
    return out.to(device=waveform.device, dtype=waveform.dtype)

