"""Long recordings in bounded memory: the chunked mel spectrogram equals the one-shot one (frame count and
values, every framing), and the feature cache, ``melfront show`` and ``predict_file`` use it. Peak memory
on a 2-hour clip is measured by benchmarks/bench_memory.py, never here."""
import itertools

import numpy as np
import pytest
import soundfile as sf
import torch

from melfront import functional as F
from melfront.data import FeatureCache
from melfront.errors import ParameterError
from melfront.frontends import MelSpectrogram
from melfront.functional import melspectrogram_chunked
from melfront.plotting.show import decimate_frames, show_clips, waveform_envelope


def _signal(n: int, seed: int = 0) -> torch.Tensor:
    """Noise with a 60 dB level sweep and a tone: a wide dynamic range, like a recording."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n, dtype=torch.float64)
    x = 0.1 * torch.randn(n, generator=g, dtype=torch.float64) * 10 ** (-3 * t / n) + 0.3 * torch.sin(0.05 * t)
    return x.float()


def _max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest element-wise relative difference (mel powers are >= 0; exact zeros must match)."""
    a, b = a.detach(), b.detach()
    return float(((a - b).abs() / b.abs().clamp_min(torch.finfo(b.dtype).tiny)).max())


@pytest.mark.parametrize("center, n_fft, pad_mode", [
    (c, n, p) for c, n, p in itertools.product([True, False], [256, 255], ["constant", "reflect"])
    if c or p == "constant"])
@pytest.mark.parametrize("length", [4999, 8000, 12345])
def test_chunked_mel_equals_the_one_shot_mel(center, n_fft, pad_mode, length):
    x = _signal(length)
    mel = MelSpectrogram(16000, n_fft=n_fft, hop_length=100, n_mels=40, center=center, pad_mode=pad_mode)
    whole = mel(x)
    for chunk in (1, 7, 64, 10 ** 6):  # block boundaries everywhere, and one block
        parts = melspectrogram_chunked(x, **mel.config(), chunk_frames=chunk)
        assert parts.shape == whole.shape and parts.shape[-1] == mel.num_frames(length)
        assert parts.dtype == torch.float32
        assert _max_rel(parts, whole) < 1e-6, (chunk, _max_rel(parts, whole))


def test_chunked_mel_keeps_leading_dimensions_float64_and_gradients():
    x = _signal(3000).double().reshape(1, 3000).repeat(2, 1) * torch.tensor([[1.0], [0.5]], dtype=torch.float64)
    x.requires_grad_(True)
    kw = dict(sample_rate=8000, n_fft=128, hop_length=32, n_mels=16)
    parts = melspectrogram_chunked(x, **kw, chunk_frames=5)
    whole = F.melspectrogram(x, **kw)
    assert parts.shape == whole.shape == (2, 16, 94) and parts.dtype == torch.float64
    assert _max_rel(parts, whole) < 1e-12
    g1, = torch.autograd.grad(parts.sum(), x)
    g2, = torch.autograd.grad(whole.sum(), x)
    assert torch.allclose(g1, g2, rtol=1e-10, atol=1e-12)


def test_chunked_mel_refuses_what_the_one_shot_mel_refuses():
    with pytest.raises(ParameterError, match="chunk_frames"):
        melspectrogram_chunked(torch.zeros(4000), 8000, n_fft=256, chunk_frames=0)
    with pytest.raises(ParameterError, match="fewer than n_fft"):
        melspectrogram_chunked(torch.zeros(100), 8000, n_fft=256, center=False)
    with pytest.raises(ParameterError, match="reflect"):
        melspectrogram_chunked(torch.zeros(100), 8000, n_fft=256, pad_mode="reflect")


def test_a_clip_shorter_than_n_fft_is_padded_at_both_ends_in_one_block():
    x = _signal(300)
    mel = MelSpectrogram(8000, n_fft=512, hop_length=64, n_mels=20)
    assert _max_rel(melspectrogram_chunked(x, **mel.config(), chunk_frames=2), mel(x)) < 1e-6


def _wav(tmp_path, seconds=3.0, sr=8000, name="long.wav"):
    path = tmp_path / name
    sf.write(path, _signal(int(seconds * sr)).numpy(), sr, subtype="FLOAT")
    return path


def test_feature_cache_uses_the_chunked_mel(tmp_path, monkeypatch):
    path = _wav(tmp_path)
    cfg = dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=32)
    calls = []
    real = melspectrogram_chunked

    def spy(*args, **kwargs):
        calls.append(kwargs.get("n_fft"))
        return real(*args, **kwargs)

    monkeypatch.setattr("melfront.data.cache.melspectrogram_chunked", spy)
    mel = FeatureCache(tmp_path / "cache").mel(path, cfg)
    wave = torch.from_numpy(sf.read(path, dtype="float32")[0])
    assert calls == [256] and _max_rel(mel, MelSpectrogram(**cfg)(wave)) < 1e-6


def test_predict_file_equals_predicting_the_one_shot_mel(tmp_path):
    from melfront.data import dataset
    from melfront.train.trial import predict_file, train_classifier, trainer_for
    clips = dataset("synth", root=tmp_path / "synth", n_classes=2, clips_per_class=2, duration=0.5,
                    sample_rate=8000, n_folds=2)
    mel = dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=32)
    train = dict(epochs=1, batch_size=2, lr=0.01, patch_frames=32, n_mels=32, model_options={"width": 4})
    trainer, info = train_classifier(clips, frontend="db", model="vgg", train_clips=clips, mel=mel, train=train,
                                     cache=False, device="cpu")
    long_clip = _wav(tmp_path, seconds=4.0)
    for path in (clips[0].path, long_clip):
        top = predict_file(trainer.model, info["config"], path, top_k=2, device="cpu")
        wave = torch.from_numpy(sf.read(path, dtype="float32")[0])
        with torch.no_grad():
            one_shot = MelSpectrogram(**info["config"]["mel"])(wave)
        scores = trainer_for(trainer.model, info["config"], device="cpu").predict([one_shot])[0]
        assert [name for name, _ in top] == [info["config"]["classes"][k] for k in np.argsort(-scores, kind="stable")]
        assert np.allclose([p for _, p in top], np.sort(scores)[::-1], rtol=1e-5, atol=1e-7)


def test_decimated_drawing_keeps_peaks_and_short_clips_untouched():
    img = np.zeros((2, 9000), dtype=np.float32)
    img[1, 4321] = 5.0
    small, k = decimate_frames(img, max_frames=1000)
    assert k == 9 and small.shape == (2, 1000) and small.max() == 5.0 and small[1, 4321 // 9] == 5.0
    same, k = decimate_frames(img[:, :1000], max_frames=1000)
    assert k == 1 and same.shape == (2, 1000)
    wave = np.sin(np.arange(100_000) * 0.01)
    t, lo, hi = waveform_envelope(wave, 1000.0, max_points=500)
    assert len(t) == len(lo) == len(hi) == 500 and lo.min() == wave.min() and hi.max() == wave.max()
    t, lo, hi = waveform_envelope(wave[:800], 1000.0, max_points=500)
    assert lo is hi and len(t) == 800


def test_show_draws_a_long_clip_with_a_true_time_axis(tmp_path, monkeypatch):
    monkeypatch.setattr("melfront.plotting.show.MAX_DRAW_FRAMES", 50)
    monkeypatch.setattr("melfront.plotting.show.MAX_DRAW_SAMPLES", 300)
    path = _wav(tmp_path, seconds=6.0)
    captured = []
    import melfront.plotting.show as show
    real = show.specshow

    def spy(data, **kwargs):
        captured.extend([data.shape, kwargs["ax"]])
        return real(data, **kwargs)

    monkeypatch.setattr(show, "specshow", spy)
    out = show_clips([path], tmp_path / "show.png", sample_rate=8000, n_fft=256, hop_length=64, n_mels=16,
                     frontends=["pcen"])
    assert out.read_bytes()[:4] == b"\x89PNG"
    frames = F.num_frames(48000, 256, 64)  # 751 frames -> 16 per column
    assert captured[0] == (16, -(-frames // 16)) and captured[2] == captured[0]
    assert captured[1].get_xlim() == pytest.approx((0.0, frames * 64 / 8000))  # not 47 * 16 frames
