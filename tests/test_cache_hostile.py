"""Feature cache against damaged entries that still look valid, and dead writers' leftovers."""
import io
import os
import time

import numpy as np
import pytest
import soundfile
import torch

import melfront
from melfront.data import FeatureCache
from melfront.data.cache import STALE_TEMP_SECONDS
from melfront.errors import ParameterError
from melfront.fileio import TEMP_PREFIX

CFG = dict(sample_rate=8000, n_fft=256, hop_length=128, n_mels=20)


def _tone(path, freq=440.0, sr=8000, seconds=0.5):
    t = np.arange(int(sr * seconds)) / sr
    soundfile.write(str(path), (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr, subtype="PCM_16")
    return str(path)


def _reference(path):
    return melfront.MelSpectrogram(**CFG)(melfront.load_audio(path, sample_rate=CFG["sample_rate"])[0])


def _entry(tmp_path):
    wav = _tone(tmp_path / "a.wav")
    cache = FeatureCache(tmp_path / "c")
    cache.mel(wav, CFG)
    (entry,) = list((tmp_path / "c").rglob("*.npy"))
    return wav, cache, entry


def _data_offset(raw: bytes) -> int:
    f = io.BytesIO(raw)
    np.lib.format.read_magic(f)
    np.lib.format.read_array_header_1_0(f)
    return f.tell()


@pytest.mark.parametrize("damage", ["zeroed", "one_bit", "no_trailer", "other_values"])
def test_entry_with_a_valid_header_and_bad_data_is_recomputed(tmp_path, damage):
    wav, cache, entry = _entry(tmp_path)
    good = entry.read_bytes()
    start = _data_offset(good)
    body = bytearray(good)
    if damage == "zeroed":
        body[start:-40] = bytes(len(body) - 40 - start)  # what a power loss can leave: a header, then zeros
    elif damage == "one_bit":
        body[start + 17] ^= 0x01
    elif damage == "no_trailer":  # an entry of the old format, or cut just after the data
        body = body[:-40]
    else:  # a whole, valid .npy of other values: only the checksum tells
        buf = io.BytesIO()
        np.save(buf, np.ones((20, 32), np.float32))
        body = bytearray(buf.getvalue()) + good[-40:]
    entry.write_bytes(bytes(body))
    assert np.load(entry).shape == (20, 32)  # numpy alone would accept it
    again = cache.mel(wav, CFG)
    assert (cache.misses, cache.hits) == (2, 0)
    torch.testing.assert_close(again, _reference(wav), rtol=0, atol=0)
    assert entry.read_bytes() == good  # rewritten whole
    assert FeatureCache(tmp_path / "c").mel(wav, CFG) is not None


def test_entries_stay_readable_by_numpy_and_hit(tmp_path):
    wav, cache, entry = _entry(tmp_path)
    np.testing.assert_array_equal(np.load(entry), _reference(wav).numpy())
    cache.mel(wav, CFG)
    assert cache.hits == 1


def test_header_declaring_a_huge_array_is_rejected_without_allocating(tmp_path):
    wav, cache, entry = _entry(tmp_path)
    raw = entry.read_bytes()
    header_end = _data_offset(raw)
    fake = io.BytesIO()
    np.lib.format.write_array_header_1_0(fake, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 10**3)})
    entry.write_bytes(fake.getvalue() + raw[header_end:])  # (the header starts with the magic string)
    assert cache._load(entry) is None
    cache.mel(wav, CFG)
    assert cache.misses == 2


def test_stale_temporary_files_are_removed_when_a_cache_opens(tmp_path):
    root = tmp_path / "c"
    (root / "ab").mkdir(parents=True)
    old = root / "ab" / f".{TEMP_PREFIX}dead.npy"
    fresh = root / "ab" / f".{TEMP_PREFIX}writing.npy"
    kept = root / "ab" / "abcdef.npy"
    for p in (old, fresh, kept):
        p.write_bytes(b"x")
    past = time.time() - STALE_TEMP_SECONDS - 60
    os.utime(old, (past, past))
    os.utime(kept, (past, past))
    cache = FeatureCache(root)
    assert not old.exists() and fresh.exists() and kept.exists()  # another process may still be writing `fresh`
    assert cache.clean_temporary() == 1 and not fresh.exists() and kept.exists()


def test_bad_arguments_are_parameter_errors(tmp_path):
    wav = _tone(tmp_path / "a.wav")
    cache = FeatureCache(tmp_path / "c")
    with pytest.raises(ParameterError, match="sample_rate"):
        cache.waveform(wav, 0)
    with pytest.raises(ParameterError, match="mel_config"):
        cache.mel(wav, {"n_mels": 20})
