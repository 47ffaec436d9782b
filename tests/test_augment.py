"""Waveform augmentation (numpy fallbacks and audiomentations) and SpecAugment masking."""
import random

import numpy as np
import pytest
import soundfile
import torch

from melfront.data.augment import (SpecAugment, WaveformAugment, apply_gain, have_audiomentations, mix_background,
                                   spec_augment, time_shift)

SR = 8000


def _sig(seed=0, n=4000):
    t = np.arange(n) / SR
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(n)).astype(np.float32)


# -- SpecAugment ----------------------------------------------------------------------------------
def test_masks_are_whole_bands_and_frame_ranges_within_widths():
    mel = torch.rand(16, 40, 100) + 1.0  # strictly positive, so a 0 marks a masked cell
    g = torch.Generator().manual_seed(0)
    out = spec_augment(mel, freq_masks=1, freq_width=7, time_masks=1, time_width=15, mask_value=0.0, generator=g)
    assert out.shape == mel.shape
    masked = out == 0
    assert torch.equal(out[~masked], mel[~masked])
    for m in masked:
        rows = m.all(dim=1)  # fully masked bands
        cols = m.all(dim=0)  # fully masked frames
        assert torch.equal(m, rows[:, None] | cols[None, :])  # nothing but whole bands and whole frames
        for line, width in ((rows, 7), (cols, 15)):
            idx = torch.nonzero(line).flatten()
            if len(idx):
                assert idx.max() - idx.min() + 1 == len(idx) <= width  # one contiguous run
    assert masked.any()
    # every example draws its own masks
    assert len({tuple(torch.nonzero(m.all(dim=1)).flatten().tolist()) for m in masked}) > 3


def test_reproducible_with_a_generator_and_leading_dims():
    mel = torch.rand(2, 3, 20, 50)
    a = spec_augment(mel, generator=torch.Generator().manual_seed(1))
    b = spec_augment(mel, generator=torch.Generator().manual_seed(1))
    c = spec_augment(mel, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == mel.shape


def test_mean_fill_zero_masks_and_gradients():
    mel = torch.rand(4, 20, 30, requires_grad=True)
    same = spec_augment(mel, freq_masks=0, time_masks=0)
    assert torch.equal(same, mel)
    out = spec_augment(mel, freq_masks=2, freq_width=5, time_masks=0, generator=torch.Generator().manual_seed(3))
    changed = out != mel
    for i in range(4):
        if changed[i].any():
            assert torch.allclose(out[i][changed[i]], mel[i].mean().expand(int(changed[i].sum())))
    out.sum().backward()
    assert (mel.grad[~changed] != 0).all()


def test_spec_augment_bad_arguments_and_module():
    with pytest.raises(ValueError, match="freq_width"):
        spec_augment(torch.rand(5, 5), freq_width=-1)
    with pytest.raises(ValueError, match="mask_value"):
        spec_augment(torch.rand(5, 5), mask_value="max")
    with pytest.raises(ValueError, match="n_mels, frames"):
        spec_augment(torch.rand(5))
    m = SpecAugment(freq_width=10, time_width=10, mask_value=0.0)
    x = torch.rand(3, 20, 40) + 1
    assert not torch.equal(m(x), x)
    m.eval()
    assert m(x) is x


# -- numpy waveform transforms --------------------------------------------------------------------
def test_shift_gain_and_mixing():
    x = np.arange(10, dtype=np.float32)
    assert time_shift(x, 3).tolist() == [7, 8, 9, 0, 1, 2, 3, 4, 5, 6]
    assert time_shift(x, 3, rollover=False).tolist() == [0, 0, 0, 0, 1, 2, 3, 4, 5, 6]
    assert time_shift(x, -2, rollover=False).tolist() == [2, 3, 4, 5, 6, 7, 8, 9, 0, 0]
    np.testing.assert_allclose(apply_gain(x, 20.0), 10 * x, rtol=1e-6)
    s, bg = _sig(0), np.random.default_rng(1).standard_normal(1500).astype(np.float32)
    for snr in (-5.0, 10.0):
        mixed = mix_background(s, bg, snr, np.random.default_rng(0))
        noise = mixed - s
        got = 20 * np.log10(np.sqrt(np.mean(s.astype(np.float64) ** 2)) / np.sqrt(np.mean(noise.astype(np.float64) ** 2)))
        assert abs(got - snr) < 0.05 and mixed.shape == s.shape


def test_numpy_backend_is_reproducible_and_keeps_length():
    x = _sig()
    a = WaveformAugment(SR, shift=0.3, gain_db=10, backgrounds=[_sig(5, 1000)], p=1.0, seed=0, use_audiomentations=False)
    b = WaveformAugment(SR, shift=0.3, gain_db=10, backgrounds=[_sig(5, 1000)], p=1.0, seed=0, use_audiomentations=False)
    ya, yb = [a(x) for _ in range(3)], [b(x) for _ in range(3)]
    assert all(np.array_equal(u, v) for u, v in zip(ya, yb))
    assert not np.array_equal(ya[0], ya[1])
    assert all(y.shape == x.shape and y.dtype == np.float32 for y in ya)
    t = a(torch.from_numpy(x))
    assert torch.is_tensor(t) and t.shape == (4000,)
    ident = WaveformAugment(SR, p=0.0, seed=0, use_audiomentations=False)
    assert np.array_equal(ident(x), x)


def test_bad_waveform_arguments():
    with pytest.raises(ValueError, match="shift"):
        WaveformAugment(SR, shift=2.0, use_audiomentations=False)
    with pytest.raises(ValueError, match="stretch"):
        WaveformAugment(SR, stretch=(1.2, 0.8), use_audiomentations=False)
    with pytest.raises(ImportError, match="audiomentations"):
        WaveformAugment(SR, pitch_semitones=2, use_audiomentations=False)
    with pytest.raises(ValueError, match=r"\(time,\)"):
        WaveformAugment(SR, use_audiomentations=False)(np.zeros((2, 10), np.float32))


# -- audiomentations backend ----------------------------------------------------------------------
@pytest.mark.skipif(not have_audiomentations(), reason="optional extra 'augment' (audiomentations) not installed")
def test_audiomentations_pitch_stretch_reproducible_and_global_rng_untouched(tmp_path):
    x = _sig()
    soundfile.write(str(tmp_path / "bg.wav"), _sig(9, 8000) * 0.5, SR)
    kw = dict(shift=0.1, pitch_semitones=3, stretch=(0.8, 1.25), gain_db=6, backgrounds=[tmp_path / "bg.wav"],
              p=1.0, seed=4)
    random.seed(123)
    np.random.seed(123)
    before = (random.random(), np.random.random())
    random.seed(123)
    np.random.seed(123)
    a, b = WaveformAugment(SR, **kw), WaveformAugment(SR, **kw)
    ya, yb = a(x), b(x)
    assert (random.random(), np.random.random()) == before
    assert np.array_equal(ya, yb) and ya.shape == x.shape and not np.allclose(ya, x)
    # pitch shift alone moves the spectral peak of a 440 Hz tone
    p = WaveformAugment(SR, shift=0, pitch_semitones=4, gain_db=0, p=1.0, seed=1)
    spec = np.abs(np.fft.rfft(p(x)))
    assert abs(np.argmax(spec) * SR / len(x) - 440) > 15

