"""load_audio against hostile and careless input: lying headers, huge outputs, truncated containers,
special files, odd names, and bounded memory for long recordings. Every file is made in tmp_path."""
import errno
import io
import os
import struct
import sys
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
import torch

import melfront.audio
from melfront.audio import AudioError, load_audio
from melfront.errors import ParameterError


def _wav_header(rate, channels=1, bits=16, data_bytes=0):
    block = channels * bits // 8
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, bits)
            + b"data" + struct.pack("<I", data_bytes))


def _raw_wav(path, rate, frames, channels=1):
    data = np.zeros(frames * channels, np.int16).tobytes()
    path.write_bytes(_wav_header(rate, channels, data_bytes=len(data)) + data)
    return path


def _noise(n, channels=1, seed=0):
    x = 0.3 * np.random.default_rng(seed).standard_normal((n, channels))
    return x.astype(np.float32)


# -- the header ------------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [1, 999, 384_001, 4_000_000])
def test_implausible_sample_rate_is_refused(tmp_path, rate):
    path = _raw_wav(tmp_path / "lying.wav", rate, 4000)
    with pytest.raises(AudioError, match=f"header declares a sample rate of {rate} Hz") as e:
        load_audio(path, sample_rate=22050)
    assert "lying.wav" in str(e.value)


def test_plausible_edges_load(tmp_path):
    assert load_audio(_raw_wav(tmp_path / "lo.wav", 1000, 100))[1] == 1000
    assert load_audio(_raw_wav(tmp_path / "hi.wav", 384_000, 100))[1] == 384_000


def test_output_size_limit_counts_resampling_and_is_checked_before_decoding(tmp_path):
    path = _raw_wav(tmp_path / "long.wav", 1000, 20_000)  # 40 kB of PCM; 441k frames at 22050 Hz
    tracemalloc.start()
    try:
        with pytest.raises(AudioError, match=r"would need 1\.7 MiB \(1764000 bytes\).*max_bytes=") as e:
            load_audio(path, sample_rate=22050, max_bytes=1_000_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200_000  # refused from the header: nothing was decoded or resampled
    assert "MAX_DECODED_BYTES" in str(e.value) and "long.wav" in str(e.value)
    wave, rate = load_audio(path, sample_rate=22050, max_bytes=2_000_000)  # a raised limit lets it through
    assert rate == 22050 and wave.shape == (441_000,)
    assert load_audio(path, max_bytes=1_000_000)[0].shape == (20_000,)  # 80 kB at the file's rate


def test_module_limit_is_settable_and_max_bytes_is_checked(tmp_path, monkeypatch):
    path = tmp_path / "a.wav"
    sf.write(path, _noise(4000, 2), 8000)
    monkeypatch.setattr(melfront.audio, "MAX_DECODED_BYTES", 20_000)
    assert load_audio(path)[0].shape == (4000,)  # 16 kB mono
    with pytest.raises(AudioError, match="would need 31.2 KiB"):
        load_audio(path, mono=False)  # 32 kB
    with pytest.raises(ParameterError, match="max_bytes"):
        load_audio(path, max_bytes=0)
    with pytest.raises(ParameterError, match="sample_rate"):
        load_audio(path, sample_rate=8000.0)


# -- bounded memory, float32 throughout ------------------------------------------------------------
@pytest.mark.parametrize("kw", [dict(), dict(sample_rate=16000), dict(mono=False)])
def test_peak_memory_is_output_plus_a_block(tmp_path, monkeypatch, kw):
    monkeypatch.setattr(melfront.audio, "BLOCK_SAMPLES", 1 << 16)  # 256 kB blocks
    x = _noise(500_000, 2, seed=1)
    path = tmp_path / "stereo.wav"
    sf.write(path, x, 8000, subtype="FLOAT")
    tracemalloc.start()
    try:
        wave, _ = load_audio(path, **kw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    out_bytes = wave.numel() * 4
    assert wave.dtype == torch.float32 and wave.is_contiguous()
    assert peak < out_bytes + 2_000_000, (peak, out_bytes)  # the float64 mix alone would be 8 MB
    if not kw:
        np.testing.assert_allclose(wave.numpy(), x.astype(np.float64).mean(axis=1), atol=1e-7)
    if "mono" in kw:
        np.testing.assert_array_equal(wave.numpy(), x.T)


def test_streamed_resampling_equals_one_shot(tmp_path, monkeypatch):
    monkeypatch.setattr(melfront.audio, "BLOCK_SAMPLES", 5000)  # many blocks
    x = _noise(40_000, 3, seed=2)
    path = tmp_path / "three.wav"
    sf.write(path, x, 8000, subtype="FLOAT")
    multi, rate = load_audio(path, sample_rate=22050, mono=False)
    direct = melfront.audio.resample(torch.from_numpy(np.ascontiguousarray(x.T)), 8000, 22050)
    assert rate == 22050 and multi.shape == direct.shape and multi.is_contiguous()
    torch.testing.assert_close(multi, direct, rtol=1e-5, atol=1e-6)


# -- truncated containers --------------------------------------------------------------------------
def _write_cut(tmp_path, name, fmt, fraction, n=16000, **kw):
    path = tmp_path / name
    sf.write(path, _noise(n), 8000, format=fmt, **kw)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.95])
def test_truncated_aiff(tmp_path, fraction):
    with pytest.raises(AudioError, match="truncated: the AIFF header declares"):
        load_audio(_write_cut(tmp_path, "cut.aiff", "AIFF", fraction))


def test_whole_aiff_loads(tmp_path):
    path = tmp_path / "ok.aiff"
    sf.write(path, _noise(1001), 8000, format="AIFF")
    assert load_audio(path)[0].shape == (1001,)


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_truncated_flac_says_truncated_or_corrupt(tmp_path, fraction):
    with pytest.raises(AudioError, match="cut.flac.*(truncated|corrupt)"):
        load_audio(_write_cut(tmp_path, "cut.flac", "FLAC", fraction))


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.99])
def test_truncated_ogg_is_not_called_zero_length(tmp_path, fraction):
    with pytest.raises(AudioError, match="truncated") as e:
        load_audio(_write_cut(tmp_path, "cut.ogg", "OGG", fraction, subtype="VORBIS"))
    assert "zero-length" not in str(e.value)


def test_ogg_cut_at_a_page_boundary_with_no_samples_is_truncated(tmp_path):
    path = tmp_path / "a.ogg"
    sf.write(path, _noise(16000), 8000, format="OGG")
    data = path.read_bytes()
    pages, pos = [], 0
    while pos < len(data):  # page boundaries
        n = data[pos + 26]
        pos += 27 + n + sum(data[pos + 27:pos + 27 + n])
        pages.append(pos)
    path.write_bytes(data[:pages[1]])  # only the header pages, without the end-of-stream page
    with pytest.raises(AudioError, match="truncated") as e:
        load_audio(path)
    assert "zero-length" not in str(e.value)


def test_zero_length_ogg_is_zero_length(tmp_path):
    path = tmp_path / "z.ogg"
    sf.write(path, np.zeros(0, np.float32), 8000, format="OGG")
    with pytest.raises(AudioError, match="zero-length"):
        load_audio(path)


def test_wav_data_read_short_of_header_is_truncated(tmp_path):
    path = tmp_path / "w.wav"
    sf.write(path, _noise(8000), 8000, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[:-1000])
    with pytest.raises(AudioError, match="truncated"):
        load_audio(path)


_MP3 = pytest.mark.skipif("MP3" not in sf.available_formats(),
                          reason="the installed libsndfile cannot write MP3 (soundfile.available_formats())")


@_MP3
@pytest.mark.parametrize("n, rate, channels", [(16000, 8000, 1), (30011, 22050, 2), (5513, 44100, 1)])
def test_valid_mp3_loads(tmp_path, n, rate, channels):
    path = tmp_path / "ok.mp3"
    sf.write(path, _noise(n, channels), rate, format="MP3")
    wave, got = load_audio(path)
    assert got == rate and wave.dtype == torch.float32 and abs(wave.shape[0] - n) <= 1152 * 2


@_MP3
def test_mp3_reading_fewer_frames_than_estimated_is_accepted(tmp_path):
    path = _write_cut(tmp_path, "short.mp3", "MP3", 0.9)
    with sf.SoundFile(str(path)) as f:
        estimate = f.frames
    wave, _ = load_audio(path)
    assert 0 < wave.shape[0] < estimate  # the estimate overcounts; the clip is still usable


# -- the path --------------------------------------------------------------------------------------
def test_fifo_is_refused_without_blocking(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    os.mkfifo(tmp_path / "pipe.wav")
    with pytest.raises(AudioError, match=r"not a regular file \(FIFO\)"):
        load_audio(tmp_path / "pipe.wav")


def test_symlink_loop_and_broken_symlink(tmp_path):
    os.symlink(tmp_path / "b.wav", tmp_path / "a.wav")
    os.symlink(tmp_path / "a.wav", tmp_path / "b.wav")
    with pytest.raises(AudioError, match="symbolic link loop"):
        load_audio(tmp_path / "a.wav")
    os.symlink(tmp_path / "gone.wav", tmp_path / "dangling.wav")
    with pytest.raises(AudioError, match="broken symbolic link.*gone.wav") as e:
        load_audio(tmp_path / "dangling.wav")
    assert "not found" not in str(e.value)
    sf.write(tmp_path / "real.wav", _noise(800), 8000)
    os.symlink(tmp_path / "real.wav", tmp_path / "good-link.wav")
    assert load_audio(tmp_path / "good-link.wav")[0].shape == (800,)


def test_directory_and_device(tmp_path):
    with pytest.raises(AudioError, match="is a directory"):
        load_audio(tmp_path)
    if os.path.exists("/dev/null"):
        with pytest.raises(AudioError, match=r"not a regular file \(character device\)"):
            load_audio("/dev/null")


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root (or Windows) ignores file modes")
def test_permission_denied_real(tmp_path):
    path = tmp_path / "secret.wav"
    sf.write(path, _noise(800), 8000)
    path.chmod(0)
    try:
        with pytest.raises(AudioError, match="permission denied"):
            load_audio(path)
    finally:
        path.chmod(0o644)


def test_permission_denied_is_reported_as_such(tmp_path, monkeypatch):
    path = tmp_path / "secret.wav"
    sf.write(path, _noise(800), 8000)

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(melfront.audio, "open", denied, raising=False)
    with pytest.raises(AudioError, match="secret.wav: permission denied"):
        load_audio(path)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs a file system taking any byte in names")
def test_name_that_is_not_utf8_loads(tmp_path):
    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9.wav")
    buf = io.BytesIO()
    sf.write(buf, _noise(1234), 8000, format="WAV")
    with open(raw, "wb") as f:
        f.write(buf.getvalue())
    for name in (raw, os.fsdecode(raw)):
        wave, rate = load_audio(name)
        assert wave.shape == (1234,) and rate == 8000
    with pytest.raises(AudioError, match="file not found"):
        load_audio(os.path.join(os.fsencode(tmp_path), b"\xff\xfe.wav"))
