"""load_audio: formats, scaling, resampling, channels, and clear errors for bad files."""
import numpy as np
import pytest
import soundfile as sf
import torch

import melfront
from melfront import AudioError, load_audio


def tone(sr, seconds=0.5, freq=440.0, amp=0.5):
    t = np.arange(int(sr * seconds)) / sr
    return amp * np.sin(2 * np.pi * freq * t)


@pytest.mark.parametrize("fmt,subtype,ext", [("WAV", "PCM_16", "wav"), ("WAV", "PCM_24", "wav"), ("WAV", "FLOAT", "wav"),
                                             ("FLAC", "PCM_16", "flac"), ("OGG", "VORBIS", "ogg")])
def test_reads_formats_as_float32(tmp_path, fmt, subtype, ext):
    x = tone(16000)
    path = tmp_path / f"a.{ext}"
    sf.write(path, x, 16000, format=fmt, subtype=subtype)
    y, sr = load_audio(path)
    assert sr == 16000 and y.dtype == torch.float32 and y.shape == (len(x),)
    tol = 0.05 if subtype == "VORBIS" else 1e-4
    assert np.max(np.abs(y.numpy() - x)) < tol


def test_int16_full_scale_maps_to_minus_one(tmp_path):
    path = tmp_path / "fs.wav"
    sf.write(path, np.array([-32768, 0, 32767] * 100, dtype=np.int16), 8000, subtype="PCM_16")
    y, _ = load_audio(path)
    assert y.min().item() == -1.0 and 0.9999 < y.max().item() <= 1.0


def test_three_channel_24bit_mono_and_multichannel(tmp_path):
    x = np.stack([tone(8000, amp=0.3), tone(8000, freq=300, amp=0.2), np.zeros(4000)], axis=1)
    path = tmp_path / "three.wav"
    sf.write(path, x, 8000, subtype="PCM_24")
    mono, _ = load_audio(path)
    assert mono.shape == (4000,)
    np.testing.assert_allclose(mono.numpy(), x.mean(axis=1), atol=1e-6)
    multi, _ = load_audio(path, mono=False)
    assert multi.shape == (3, 4000)
    np.testing.assert_allclose(multi.numpy(), x.T, atol=1e-6)


def test_resamples_8k_to_22050(tmp_path):
    path = tmp_path / "8k.wav"
    sf.write(path, tone(8000, seconds=1.0, freq=1000.0), 8000, subtype="PCM_16")
    y, sr = load_audio(path, sample_rate=22050)
    assert sr == 22050 and abs(y.shape[0] - 22050) <= 1
    spectrum = np.abs(np.fft.rfft(y.numpy()[2000:20000] * np.hanning(18000)))
    peak_hz = np.argmax(spectrum) * 22050 / 18000
    assert abs(peak_hz - 1000.0) < 3.0
    assert np.abs(y.numpy()[2000:-2000]).max() == pytest.approx(0.5, abs=0.01)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="not found") as e:
        load_audio(tmp_path / "nope.wav")
    assert "nope.wav" in str(e.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        load_audio(path)


def test_zero_length_audio(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0), 8000)
    with pytest.raises(AudioError, match="no samples"):
        load_audio(path)


def test_text_renamed_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are my notes, not audio\n" * 10)
    with pytest.raises(AudioError, match="notes.wav.*not a readable audio file"):
        load_audio(path)


def test_truncated_wav(tmp_path):
    path = tmp_path / "cut.wav"
    sf.write(path, tone(8000, seconds=1.0), 8000, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match="truncated"):
        load_audio(path)


def test_truncated_flac(tmp_path):
    path = tmp_path / "cut.flac"
    sf.write(path, np.random.default_rng(0).uniform(-0.5, 0.5, 16000), 8000, format="FLAC")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match="cut.flac"):
        load_audio(path)


def test_nan_samples(tmp_path):
    x = tone(8000)
    x[100] = np.nan
    x[200] = np.inf
    path = tmp_path / "nan.wav"
    sf.write(path, x, 8000, subtype="FLOAT")
    with pytest.raises(AudioError, match="2 NaN or infinite"):
        load_audio(path)


def test_directory_is_not_audio(tmp_path):
    with pytest.raises(AudioError, match="directory"):
        load_audio(tmp_path)


def test_bad_sample_rate_argument(tmp_path):
    path = tmp_path / "ok.wav"
    sf.write(path, tone(8000), 8000)
    with pytest.raises(ValueError, match="sample_rate"):
        load_audio(path, sample_rate=-5)


def test_audio_error_is_a_value_error_with_path_and_cause(tmp_path):
    err = AudioError(tmp_path / "x.wav", "broken")
    assert isinstance(err, ValueError) and err.cause == "broken" and str(err).endswith("x.wav: broken")


def test_resample_function_matches_loader(tmp_path):
    x = tone(8000, seconds=0.5).astype(np.float32)
    path = tmp_path / "r.wav"
    sf.write(path, x, 8000, subtype="FLOAT")
    loaded, _ = load_audio(path, sample_rate=16000)
    direct = melfront.resample(torch.from_numpy(x), 8000, 16000)
    torch.testing.assert_close(direct, loaded, rtol=1e-5, atol=1e-6)
