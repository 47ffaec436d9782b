"""Mel spectrogram, filterbank and deltas against librosa (the oracle)."""
import itertools

import librosa
import numpy as np
import pytest
import torch

import melfront
from melfront import functional as F


def rel_err(ours, ref, floor=1e-6):
    mask = ref > floor * ref.max()
    return float(np.max(np.abs(ours - ref)[mask] / ref[mask]))


@pytest.mark.parametrize("htk,norm,power,center",
                         list(itertools.product([True, False], ["slaney", None], [1.0, 2.0], [True, False])))
def test_melspectrogram_matches_librosa(field_clip, htk, norm, power, center):
    kw = dict(n_fft=1024, hop_length=256, n_mels=64, htk=htk, norm=norm, power=power, center=center)
    ref = librosa.feature.melspectrogram(y=field_clip, sr=22050, **kw)
    ours = melfront.MelSpectrogram(22050, **kw)(torch.from_numpy(field_clip)).numpy()
    assert ours.shape == ref.shape
    assert rel_err(ours, ref) <= 1e-4


def test_melspectrogram_float32_close_to_librosa(field_clip):
    """float32 STFT round-off limits accuracy far below the peak; within 60 dB it stays at 1e-4."""
    y = field_clip.astype(np.float32)
    ref = librosa.feature.melspectrogram(y=y, sr=22050, n_fft=1024, hop_length=512)
    ours = melfront.MelSpectrogram(22050, n_fft=1024, hop_length=512)(torch.from_numpy(y))
    assert ours.dtype == torch.float32
    assert rel_err(ours.numpy(), ref, floor=1e-6) <= 1e-4


@pytest.mark.parametrize("kw", [dict(win_length=512), dict(window="hamming"), dict(pad_mode="reflect"),
                                dict(fmin=50.0, fmax=8000.0), dict(n_fft=512, hop_length=100)])
def test_melspectrogram_options_match_librosa(field_clip, kw):
    args = dict(n_fft=1024, hop_length=256, n_mels=40)
    args.update(kw)
    ref = librosa.feature.melspectrogram(y=field_clip, sr=22050, **args)
    ours = melfront.MelSpectrogram(22050, **args)(torch.from_numpy(field_clip)).numpy()
    assert rel_err(ours, ref) <= 1e-4


@pytest.mark.parametrize("htk,norm", list(itertools.product([True, False], ["slaney", None, 2.0])))
@pytest.mark.parametrize("sr,n_fft,n_mels,fmax", [(22050, 2048, 128, None), (8000, 256, 40, 3500.0), (44100, 1024, 60, None)])
def test_mel_filterbank_matches_librosa(htk, norm, sr, n_fft, n_mels, fmax):
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmax=fmax, htk=htk, norm=norm, dtype=np.float64)
    ours = F.mel_filterbank(sr, n_fft, n_mels, fmax=fmax, htk=htk, norm=norm, dtype=torch.float64).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)
    ours32 = F.mel_filterbank(sr, n_fft, n_mels, fmax=fmax, htk=htk, norm=norm).numpy()
    np.testing.assert_allclose(ours32, ref, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("htk", [True, False])
def test_mel_scale_matches_librosa(htk):
    f = np.array([0.0, 100.0, 999.0, 1000.0, 1001.0, 4000.0, 11025.0])
    np.testing.assert_allclose(F.hz_to_mel(f, htk), librosa.hz_to_mel(f, htk=htk), rtol=1e-12)
    m = F.hz_to_mel(f, htk)
    np.testing.assert_allclose(F.mel_to_hz(m, htk), f, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("width,order", [(9, 1), (9, 2), (5, 1), (3, 1), (7, 3)])
def test_deltas_match_librosa(width, order):
    x = np.random.default_rng(1).standard_normal((2, 5, 30))
    ref = librosa.feature.delta(x, width=width, order=order)
    np.testing.assert_allclose(F.deltas(torch.from_numpy(x), width, order).numpy(), ref, atol=1e-10)


def test_spectrogram_matches_librosa_stft(field_clip):
    ref = np.abs(librosa.stft(field_clip, n_fft=512, hop_length=128)) ** 2
    ours = melfront.Spectrogram(n_fft=512, hop_length=128)(torch.from_numpy(field_clip)).numpy()
    assert rel_err(ours, ref) <= 1e-6
