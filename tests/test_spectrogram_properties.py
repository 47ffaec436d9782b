"""MelSpectrogram properties: autograd, batch consistency, dtype, device, parameter checks."""
import warnings

import numpy as np
import pytest
import torch

import melfront
from melfront import functional as F
from melfront.errors import ParameterError
from conftest import cuda


def test_gradcheck_through_melspectrogram():
    torch.manual_seed(0)
    mel = melfront.MelSpectrogram(8000, n_fft=32, hop_length=16, n_mels=4)
    x = torch.randn(2, 64, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(mel, (x,), eps=1e-6, atol=1e-6)


def test_gradcheck_magnitude_spectrogram():
    torch.manual_seed(0)
    spec = melfront.Spectrogram(n_fft=32, hop_length=8, power=1.0)
    x = torch.randn(100, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(spec, (x,), eps=1e-6, atol=1e-6)


def test_gradcheck_deltas():
    x = torch.randn(3, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: F.deltas(v, 5, 2), (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batch_equals_items(dtype):
    torch.manual_seed(0)
    mel = melfront.MelSpectrogram(16000, n_fft=512, hop_length=160, n_mels=40)
    x = torch.randn(3, 2, 4000, dtype=dtype) * torch.tensor([1.0, 1e-3, 10.0], dtype=dtype).view(3, 1, 1)
    batch = mel(x)
    assert batch.shape == (3, 2, 40, 1 + 4000 // 160)
    for i in range(3):
        for c in range(2):
            torch.testing.assert_close(batch[i, c], mel(x[i, c]), rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_kept(dtype):
    out = melfront.MelSpectrogram(8000, n_fft=128, n_mels=16)(torch.zeros(1000, dtype=dtype))
    assert out.dtype == dtype
    assert torch.all(out == 0)


def test_frame_count():
    mel = melfront.MelSpectrogram(22050, n_fft=1024, hop_length=512)
    for n in (1, 511, 512, 513, 22050):
        assert mel(torch.zeros(n)).shape[-1] == mel.num_frames(n) == 1 + n // 512
    odd = melfront.MelSpectrogram(8000, n_fft=255, hop_length=100, n_mels=16)
    assert odd(torch.zeros(1000)).shape[-1] == odd.num_frames(1000) == 10
    mel_nc = melfront.MelSpectrogram(22050, n_fft=1024, hop_length=512, center=False)
    assert mel_nc(torch.zeros(5000)).shape[-1] == mel_nc.num_frames(5000) == 1 + (5000 - 1024) // 512


@pytest.mark.parametrize("kwargs,match", [
    (dict(n_fft=0), "n_fft"), (dict(hop_length=0), "hop_length"), (dict(win_length=4096), "win_length"),
    (dict(fmin=12000.0), "fmin"), (dict(window="nope"), "window"), (dict(pad_mode="edge"), "pad_mode"),
    (dict(norm="l2"), "norm"), (dict(n_mels=0), "n_mels"),
])
def test_bad_parameters_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        melfront.MelSpectrogram(22050, **kwargs)


def test_short_input_without_center_raises():
    with pytest.raises(ValueError, match="fewer than n_fft"):
        melfront.MelSpectrogram(22050, n_fft=1024, center=False)(torch.zeros(100))


def test_integer_input_raises():
    with pytest.raises(ParameterError, match="floating-point"):
        melfront.MelSpectrogram(22050)(torch.zeros(4096, dtype=torch.int16))


def test_num_frames_matches_the_stft():
    for n_fft in (255, 256):
        for n in (1, 100, 101, 255, 256, 257, 1000):
            for center in (True, False):
                expected = F.num_frames(n, n_fft, 100, center)
                if expected == 0:
                    assert not center and n < n_fft
                    continue
                got = F.spectrogram(torch.zeros(n), n_fft=n_fft, hop_length=100, center=center).shape[-1]
                assert got == expected
    assert F.num_frames(1000, 256, 100) == 1 + 1000 // 100


@pytest.mark.parametrize("call,match", [
    (lambda: F.mel_filterbank(16000, 512, n_mels=2.5), "n_mels"),
    (lambda: F.mel_filterbank(16000, 512.0, n_mels=40), "n_fft"),
    (lambda: F.spectrogram(torch.zeros(1000), n_fft=256, hop_length=2.5), "hop_length"),
    (lambda: F.spectrogram(torch.zeros(1000), n_fft=256.0), "n_fft"),
    (lambda: F.melspectrogram(torch.zeros(1000), 8000, n_fft=256, n_mels=2.5), "n_mels"),
    (lambda: F.deltas(torch.zeros(2, 20), width=4), "width"),
    (lambda: F.power_to_db(torch.ones(2, 2), amin=0), "amin"),
])
def test_non_integer_or_out_of_range_arguments_raise_parameter_error(call, match):
    with pytest.raises(ParameterError, match=match):
        call()


def test_fmax_above_nyquist_is_refused():
    with pytest.raises(ParameterError, match=r"fmax.*Nyquist.*8000"):
        F.mel_filterbank(16000, 512, n_mels=40, fmax=9000.0)
    assert F.mel_filterbank(16000, 512, n_mels=40, fmax=8000.0).shape == (40, 257)


def test_empty_mel_bands_warn_like_librosa():
    with pytest.warns(UserWarning, match=r"Empty filters.*n_mels=128.*n_fft=128"):
        fb = F.mel_filterbank(22050, 128, n_mels=128)
    assert bool((fb.amax(dim=1) == 0).any())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        F.mel_filterbank(22050, 2048, n_mels=128)  # a usual filterbank does not warn


def test_huge_filterbank_refused_before_allocating(monkeypatch):
    def no_allocation(*args, **kwargs):
        raise AssertionError("allocated")

    monkeypatch.setattr(np, "linspace", no_allocation)
    with pytest.raises(ParameterError, match=r"n_mels=100000.*bytes"):
        F.mel_filterbank(16000, 2 ** 16, n_mels=100000)


@cuda
def test_cuda_matches_cpu():
    torch.manual_seed(0)
    mel = melfront.MelSpectrogram(22050, n_fft=1024, hop_length=256)
    x = torch.randn(2, 22050)
    torch.testing.assert_close(mel.cuda()(x.cuda()).cpu(), mel.cpu()(x), rtol=1e-4, atol=1e-6)
