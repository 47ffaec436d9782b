"""Patches and segments: shapes, repeat padding, waveform/mel alignment, silence dropping, determinism."""
import pytest
import torch

from melfront import MelSpectrogram
from melfront.data.patches import (PatchDataset, all_patches, crop, frames_for_samples, patch_starts,
                                   piczak_segments, random_crop, repeat_pad, samples_for_frames,
                                   segment_levels_db)


# ---------------------------------------------------------------- frame / sample arithmetic
@pytest.mark.parametrize("hop", [64, 160, 512])
@pytest.mark.parametrize("n_frames", [1, 2, 41, 128])
def test_samples_for_frames_is_the_shortest_signal_with_that_many_frames(hop, n_frames):
    mel = MelSpectrogram(sample_rate=8000, n_fft=256, hop_length=hop, n_mels=8)
    n = samples_for_frames(n_frames, hop)
    assert mel(torch.zeros(n)).shape[-1] == n_frames
    assert frames_for_samples(n, hop) == n_frames
    if n > 1:
        assert mel(torch.zeros(n - 1)).shape[-1] == n_frames - 1


def test_samples_for_frames_uncentred():
    mel = MelSpectrogram(sample_rate=8000, n_fft=256, hop_length=64, n_mels=8, center=False)
    n = samples_for_frames(10, 64, center=False, n_fft=256)
    assert mel(torch.zeros(n)).shape[-1] == 10
    assert mel(torch.zeros(n - 1)).shape[-1] == 9
    with pytest.raises(ValueError, match="n_fft"):
        samples_for_frames(10, 64, center=False)


# ---------------------------------------------------------------- waveform patches line up with mel frames
def test_waveform_patch_frames_equal_the_clip_frames_away_from_its_edges():
    torch.manual_seed(0)
    hop, n_fft, F = 64, 256, 20
    mel = MelSpectrogram(sample_rate=8000, n_fft=n_fft, hop_length=hop, n_mels=16).double()
    wave = torch.randn(8000, dtype=torch.float64)
    full = mel(wave)
    k = 37
    patch = crop(wave, k, F, kind="waveform", hop_length=hop)
    assert patch.shape[-1] == hop * (F - 1)
    assert torch.equal(patch, wave[k * hop:k * hop + hop * (F - 1)])
    part = mel(patch)
    assert part.shape[-1] == F
    # frames whose window lies inside the patch (not touched by the zero padding) are identical
    inner = [j for j in range(F) if j * hop - n_fft // 2 >= 0 and j * hop + n_fft // 2 <= patch.shape[-1]]
    assert len(inner) >= F - 2 * (n_fft // 2 // hop) - 1
    torch.testing.assert_close(part[:, inner], full[:, [k + j for j in inner]], rtol=1e-9, atol=1e-12)
    # and the edge frames do differ (the test can tell misalignment from alignment)
    off = mel(crop(wave, k + 1, F, kind="waveform", hop_length=hop))
    assert not torch.allclose(off[:, inner], full[:, [k + j for j in inner]])


def test_waveform_random_crop_starts_on_a_frame_boundary():
    hop = 50
    wave = torch.arange(5000, dtype=torch.float32)
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        p = random_crop(wave, 10, g, kind="waveform", hop_length=hop)
        assert p.shape == (hop * 9,)
        assert int(p[0]) % hop == 0
        assert torch.equal(p, wave[int(p[0]):int(p[0]) + hop * 9])


# ---------------------------------------------------------------- repeat padding
def test_repeat_pad_tiles_short_clips():
    x = torch.arange(3.0).expand(2, 3)
    y = repeat_pad(x, 8)
    assert y.shape == (2, 8)
    assert y[0].tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    assert repeat_pad(x, 2) is x
    with pytest.raises(ValueError, match="empty"):
        repeat_pad(torch.zeros(4, 0), 5)


def test_short_clip_gives_one_repeat_padded_patch():
    mel = torch.rand(8, 30)
    patches = all_patches(mel, 128)
    assert patches.shape == (1, 8, 128)
    assert torch.equal(patches[0, :, 30:60], mel)
    assert torch.equal(random_crop(mel, 128), patches[0])


# ---------------------------------------------------------------- all patches / starts
def test_patch_starts_cover_the_clip():
    assert patch_starts(300, 128, 128) == [0, 128, 172]
    assert patch_starts(300, 128, 128, cover_end=False) == [0, 128]
    assert patch_starts(256, 128, 64) == [0, 64, 128]
    assert patch_starts(100, 128, 64) == [0]
    with pytest.raises(ValueError, match="hop"):
        patch_starts(100, 10, 0)


def test_all_patches_shapes_and_content():
    mel = torch.rand(2, 16, 300)  # (channels, n_mels, frames)
    p = all_patches(mel, 100, hop=50)
    assert p.shape == (5, 2, 16, 100)
    assert torch.equal(p[3], mel[..., 150:250])


# ---------------------------------------------------------------- Piczak segments
def test_piczak_segments_overlap_and_drop_silence():
    torch.manual_seed(0)
    mel = torch.rand(60, 205) + 0.5
    mel[:, :82] = 0.0  # digital silence at the start (as zero-padded ESC-50 clips)
    seg, starts = piczak_segments(mel, 41, overlap=0.5, silence_db=-60.0)
    # a segment with m silent frames (-100 dB) of 41 averages about -100 m / 41 dB: kept iff m <= 24, i.e. start >= 58
    assert starts == [s for s in range(0, 205 - 41 + 1, 20) if s >= 58]
    assert seg.shape == (len(starts), 60, 41)
    levels = segment_levels_db(mel, starts, 41)
    assert (levels >= -60).all()
    seg_all, starts_all = piczak_segments(mel, 41, silence_db=None)
    assert starts_all == list(range(0, 165, 20))
    assert seg_all.shape[0] == 9
    long, _ = piczak_segments(mel, 101, silence_db=None)
    assert long.shape[1:] == (60, 101)


def test_piczak_silence_threshold_is_gain_invariant_and_keeps_one_segment():
    mel = torch.rand(10, 200) + 0.1
    mel[:, 100:] *= 1e-9
    _, a = piczak_segments(mel, 41, silence_db=-30)
    _, b = piczak_segments(mel * 1e-6, 41, silence_db=-30)
    assert a == b and max(a) < 100
    silent = torch.zeros(10, 200)
    seg, starts = piczak_segments(silent, 41, silence_db=-30)
    assert seg.shape[0] >= 1


def test_piczak_segments_on_waveforms():
    hop = 32
    wave = torch.zeros(hop * 200)
    wave[hop * 120:] = torch.randn(hop * 80)
    seg, starts = piczak_segments(wave, 41, silence_db=-60, kind="waveform", hop_length=hop)
    assert seg.shape[1:] == (hop * 40,)
    assert min(starts) >= 80 and len(starts) >= 3


# ---------------------------------------------------------------- the Dataset
def _toy(n=5, frames=(200, 90, 300, 128, 20)):
    feats = [torch.full((8, f), float(i)) + torch.arange(f) * 1e-3 for i, f in enumerate(frames)]
    return feats, [i % 3 for i in range(n)]


def test_patch_dataset_random_mode_one_patch_per_clip_seeded_per_epoch():
    feats, labels = _toy()
    ds = PatchDataset(feats, labels, n_frames=64, mode="random", seed=1)
    assert len(ds) == 5
    items = [ds[i] for i in range(len(ds))]
    for i, (patch, label, clip) in enumerate(items):
        assert patch.shape == (8, 64) and label == labels[i] and clip == i
        assert torch.all(patch.round() == i)  # the patch comes from its own clip
    again = [ds[i][0] for i in reversed(range(len(ds)))][::-1]
    assert all(torch.equal(a[0], b) for a, b in zip(items, again))  # order-independent
    ds.set_epoch(1)
    other = [ds[i][0] for i in range(len(ds))]
    assert any(not torch.equal(a[0], b) for a, b in zip(items, other))
    ds2 = PatchDataset(feats, labels, n_frames=64, mode="random", seed=2)
    assert any(not torch.equal(a[0], ds2[i][0]) for i, a in enumerate(items))


def test_patch_dataset_all_mode_remembers_clips():
    feats, labels = _toy()
    ds = PatchDataset(feats, labels, n_frames=64, mode="all", hop=32)
    expected = [len(patch_starts(max(f.shape[-1], 64), 64, 32)) for f in feats]
    assert len(ds) == sum(expected)
    assert ds.clip_indices == [i for i, k in enumerate(expected) for _ in range(k)]
    for j in range(len(ds)):
        patch, label, clip = ds[j]
        assert patch.shape == (8, 64) and label == labels[clip] and torch.all(patch.round() == clip)


def test_patch_dataset_waveforms():
    hop = 16
    waves = [torch.randn(16000), torch.randn(300)]
    ds = PatchDataset(waves, [0, 1], n_frames=32, mode="all", kind="waveform", hop_length=hop)
    for j in range(len(ds)):
        assert ds[j][0].shape == (hop * 31,)
    with pytest.raises(ValueError, match="hop_length"):
        PatchDataset(waves, [0, 1], n_frames=32, kind="waveform")


def test_patch_dataset_argument_errors():
    feats, labels = _toy()
    with pytest.raises(ValueError, match="mode"):
        PatchDataset(feats, labels, mode="segments")
    with pytest.raises(ValueError, match="n_frames"):
        PatchDataset(feats, labels, n_frames=0)
    with pytest.raises(ValueError, match="length"):
        PatchDataset(feats, labels[:2])
    with pytest.raises(ValueError, match="kind"):
        PatchDataset(feats, labels, kind="stft")
