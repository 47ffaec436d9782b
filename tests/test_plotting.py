"""melfront.plotting: specshow's axes (seconds, Hz, mel ticks) and accepted shapes, and `melfront show` feeding
waveform frontends the waveform and drawing every readable file."""
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

pytest.importorskip("matplotlib")

from melfront import functional as F  # noqa: E402
from melfront.errors import AudioError, ParameterError  # noqa: E402
from melfront.frontends import FRONTENDS, MelSpectrogram, frontend  # noqa: E402
from melfront.frontends.registry import register_frontend  # noqa: E402
from melfront.plotting import frontend_panel, mel_ticks, power_to_db_display, pyplot, show_clips, specshow  # noqa: E402
from conftest import make_field_clip  # noqa: E402


@pytest.fixture
def ax():
    fig, ax = pyplot().subplots()
    yield ax
    pyplot().close(fig)


def _limits(values):
    return [float(v) for v in values]


# ------------------------------------------------------------------------------------ specshow
def test_specshow_time_axis_in_seconds(ax):
    img = specshow(np.zeros((20, 50)), sample_rate=8000, hop_length=80, ax=ax)
    assert _limits(ax.get_xlim()) == pytest.approx([0.0, 50 * 80 / 8000])
    assert ax.get_xlabel() == "time (s)"
    assert img.get_array().shape == (20, 50)
    specshow(np.zeros((20, 50)), sample_rate=8000, hop_length=80, x_axis=None, ax=ax)
    assert _limits(ax.get_xlim()) == pytest.approx([-0.5, 49.5])


def test_specshow_linear_axis_in_hz(ax):
    specshow(np.zeros((129, 10)), sample_rate=16000, hop_length=128, y_axis="linear", ax=ax)
    assert _limits(ax.get_ylim()) == pytest.approx([0.0, 8000.0])
    assert ax.get_ylabel() == "frequency (Hz)"
    specshow(np.zeros((65, 10)), sample_rate=16000, y_axis="linear", fmin=1000.0, fmax=5000.0, ax=ax)
    assert _limits(ax.get_ylim()) == pytest.approx([1000.0, 5000.0])


def test_specshow_mel_ticks_are_band_centres_in_hz(ax):
    n_mels, sr = 40, 16000
    specshow(np.zeros((n_mels, 10)), sample_rate=sr, ax=ax)
    centres = F.mel_frequencies(n_mels + 2, 0.0, sr / 2)[1:-1]
    np.testing.assert_allclose(MelSpectrogram(sr, n_fft=512, n_mels=n_mels).centre_hz, centres, rtol=1e-9)
    ticks = ax.get_yticks().astype(int)
    assert ticks[0] == 0 and ticks[-1] == n_mels - 1 and len(ticks) == 6
    labels = [t.get_text() for t in ax.get_yticklabels()]
    expected = [f"{c:.0f}" if c < 1000 else f"{c / 1000:.1f}k" for c in centres[ticks]]
    assert labels == expected and labels[-1] == "7.4k"
    assert ax.get_ylabel() == "frequency (Hz)"
    # fmin / fmax move the centres
    specshow(np.zeros((n_mels, 10)), sample_rate=sr, fmin=300.0, fmax=4000.0, ax=ax)
    assert ax.get_yticklabels()[0].get_text() == f"{F.mel_frequencies(n_mels + 2, 300.0, 4000.0)[1]:.0f}"
    assert float(F.mel_frequencies(n_mels + 2, 300.0, 4000.0)[1]) > 300.0


def test_mel_ticks_from_a_mel_spectrogram(ax):
    mel = MelSpectrogram(22050, n_fft=1024, n_mels=64)
    mel_ticks(ax, mel, n_ticks=3)
    assert [t.get_text() for t in ax.get_yticklabels()][0] == f"{mel.centre_hz[0]:.0f}"


def test_specshow_accepts_tensor_and_numpy(ax):
    x = torch.rand(16, 30, dtype=torch.float64, requires_grad=True)
    a = specshow(x, ax=ax).get_array()
    b = specshow(x.detach().numpy(), ax=ax).get_array()
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert specshow(x.float() * 2, ax=ax).get_array().shape == (16, 30)


@pytest.mark.parametrize("shape", [(2, 16, 30), (30,), (1, 2, 3, 4)])
def test_specshow_needs_2d(ax, shape):
    with pytest.raises(ParameterError, match="2-D"):
        specshow(torch.zeros(shape), ax=ax)


def test_specshow_bad_arguments(ax):
    with pytest.raises(ParameterError, match="y_axis"):
        specshow(np.zeros((4, 4)), y_axis="log", ax=ax)
    with pytest.raises(ParameterError, match="hop_length"):
        specshow(np.zeros((4, 4)), hop_length=0, ax=ax)
    with pytest.raises(ParameterError, match="fmax"):
        specshow(np.zeros((4, 4)), fmin=5000.0, fmax=100.0, ax=ax)


def test_specshow_passes_imshow_arguments(ax):
    img = specshow(np.linspace(0, 1, 20).reshape(4, 5), vmin=0.25, vmax=0.5, cmap="gray", ax=ax)
    assert img.get_clim() == (0.25, 0.5) and img.get_cmap().name == "gray"


# ------------------------------------------------------------------------------------ melfront show
class _Spy(nn.Module):
    """A waveform frontend that records what it is fed."""
    input_kind = "waveform"
    out_channels = 1
    seen = []

    def __init__(self, n_mels: int = 128, hop_length: int = 512, **ignored):
        super().__init__()
        self.n_mels, self.hop_length = n_mels, hop_length

    def forward(self, x):
        _Spy.seen.append(tuple(x.shape))
        frames = 1 + x.shape[-1] // self.hop_length
        return torch.ones(x.shape[0], self.n_mels, frames)


@pytest.fixture
def spy():
    register_frontend("test_plotting_spy", "waveform: records its input (tests)")(_Spy)
    _Spy.seen.clear()
    yield _Spy
    del FRONTENDS["test_plotting_spy"]


def test_show_feeds_waveform_frontends_the_waveform(tmp_path, spy):
    sr = 8000
    path = tmp_path / "clip.wav"
    sf.write(path, make_field_clip(sr, 0.5), sr)
    out = show_clips([path], tmp_path / "show.png", sample_rate=sr, n_fft=256, hop_length=64, n_mels=16,
                     frontends=["test_plotting_spy", "db"])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert spy.seen == [(1, int(0.5 * sr))]      # (batch, time): the waveform, not a (batch, n_mels, frames) mel


def test_adaptive_panel_is_the_filterbank_on_the_waveform():
    sr, hop = 8000, 64
    wave = torch.as_tensor(make_field_clip(sr, 0.5), dtype=torch.float32)
    mel_module = MelSpectrogram(sr, n_fft=256, hop_length=hop, n_mels=16)
    mel = mel_module(wave)
    module = frontend("adaptive", sample_rate=sr, n_fft=256, hop_length=hop, n_mels=16)
    assert module.input_kind == "waveform"
    img, label, _ = frontend_panel(module, wave, mel)
    with torch.no_grad():
        expected = power_to_db_display(module(wave.unsqueeze(0))[0])
    np.testing.assert_allclose(img, expected)
    assert img.shape == tuple(mel.shape) and label == "dB re max"
    # and it looks like the mel spectrogram in dB (it reproduces it), which a mel input would not give
    assert np.corrcoef(img.ravel(), power_to_db_display(mel).ravel())[0, 1] > 0.9
    db_img, db_label, _ = frontend_panel(frontend("db", n_mels=16), wave, mel)
    assert db_img.shape == tuple(mel.shape) and db_label == "dB"


def test_show_skips_an_unreadable_file_and_reports_it(tmp_path):
    good, bad = tmp_path / "good.wav", tmp_path / "bad.wav"
    sf.write(good, make_field_clip(8000, 0.4), 8000)
    bad.write_text("not audio")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = show_clips([bad, good], tmp_path / "show.png", sample_rate=8000, n_fft=256, hop_length=64, n_mels=16)
    assert out.exists() and out.stat().st_size > 5000
    messages = [str(w.message) for w in caught]
    assert any("bad.wav" in m and "not a readable audio file" in m for m in messages)


def test_show_with_no_readable_file_raises(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    with pytest.raises(AudioError, match="bad.wav"):
        show_clips([bad, tmp_path / "missing.wav"], tmp_path / "show.png")
    assert not (tmp_path / "show.png").exists()
