"""AdaptiveFilterbank (Dörfler, Bammer & Grill 2017, Prop. IV.5) and the window-equivalence kernels
(Prop. IV.2 / Thm IV.4): shapes, reproduction of the MelSpectrogram, exactness where the design is
exact, the equivalence residual, gradients and validity of the trainable variant, the CLI figures."""
import functools
import math

import numpy as np
import pytest
import soundfile as sf
import torch

import melfront
import melfront.cli
import melfront.frontends
from melfront import adaptive as FB
from melfront import functional as F

SR = 8000


@pytest.fixture(scope="module")
def mel():
    return melfront.MelSpectrogram(SR, n_fft=256, hop_length=64, n_mels=40)


@pytest.fixture(scope="module")
def ada(mel):
    return FB.AdaptiveFilterbank.from_mel(mel)


def _metrics(m, a, floor_db=60.0):
    """(median relative error, Pearson correlation of the dB values) over mel bins within floor_db of the max."""
    m, a = m.double(), a.double()
    mask = m >= m.max() * 10 ** (-floor_db / 10)
    rel = ((a - m).abs() / m)[mask]
    corr = np.corrcoef(10 * np.log10(m[mask].numpy()), 10 * np.log10(a[mask].clamp(min=1e-30).numpy()))[0, 1]
    return float(rel.median()), float(corr)


def _signals(n=SR, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    tones = sum(np.cos(2 * np.pi * f * t + p) * a for f, p, a in ((220.0, 0.3, 1.0), (1375.0, 1.0, 0.3), (3100.0, 2.0, 0.1)))
    k = math.log(3800 / 60) / t[-1]
    chirp = np.sin(2 * np.pi * 60 * (np.exp(k * t) - 1) / k)
    noise = rng.standard_normal(n)
    return {"tones": tones, "chirp": chirp, "noise": noise}


# ------------------------------------------------------------------------------------ design
def test_band_triangles_are_the_mel_filterbank(mel, ada):
    """The parametric triangles at initialisation are exactly the mel filterbank rows (Lambda_k)."""
    np.testing.assert_allclose(ada.band_weights().numpy(), mel.mel_basis.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ada.learned_parameters()["centre_hz"], mel.centre_hz, rtol=1e-9)


@pytest.mark.parametrize("norm", [None, 2.0])
def test_band_triangles_other_norms(norm):
    m = melfront.MelSpectrogram(SR, n_fft=128, hop_length=32, n_mels=16, norm=norm)
    a = FB.AdaptiveFilterbank.from_mel(m)
    np.testing.assert_allclose(a.band_weights().numpy(), m.mel_basis.numpy(), rtol=1e-9, atol=1e-12)


def test_power_response_is_mel_response_to_exponentials(mel, ada):
    """|H_k(nu)|^2 = sum_j Lambda_k[j] |g^(nu - xi_j)|^2: the mel of a complex exponential, computed directly."""
    resp = ada.power_responses()                                  # (K, R N)
    grid = resp.shape[-1]
    n = 4096
    m = torch.arange(n, dtype=torch.float64)
    for i in (37, 400, 1500, 3333):          # grid frequencies i / grid cycles/sample (3333: a negative frequency)
        x = torch.exp(2j * math.pi * (i / grid) * m)
        stft = torch.stft(x, 256, 64, window=mel.window, center=False, return_complex=True, onesided=False)
        power = (stft.abs() ** 2)[:129, 5]
        direct = mel.mel_basis @ power
        np.testing.assert_allclose(resp[:, i].numpy(), direct.numpy(), rtol=1e-6, atol=1e-9 * float(resp.max()))


# ------------------------------------------------------------------------------------ shapes
@functools.lru_cache(maxsize=None)
def _pair(center, pad_mode):
    m = melfront.MelSpectrogram(SR, n_fft=256, hop_length=64, n_mels=24, center=center, pad_mode=pad_mode)
    return m, FB.AdaptiveFilterbank.from_mel(m)


@pytest.mark.parametrize("center,pad_mode", [(True, "constant"), (True, "reflect"), (False, "constant")])
@pytest.mark.parametrize("length", [1000, 1777])
def test_frames_and_shapes_match_melspectrogram(center, pad_mode, length):
    m, a = _pair(center, pad_mode)
    x = torch.randn(2, 3, length, dtype=torch.float64)
    out, ref = a(x), m(x)
    assert out.shape == ref.shape == (2, 3, 24, m.num_frames(length))
    assert a.num_frames(length) == m.num_frames(length)
    # batch items are independent and equal to single calls
    np.testing.assert_allclose(out[1, 2].numpy(), a(x[1, 2]).numpy(), rtol=1e-9, atol=1e-12)
    # frames are aligned with the mel's: same values to the reproduction tolerance on a broadband signal
    med, corr = _metrics(ref, out)
    assert med < 0.1 and corr > 0.97


def test_frames_odd_n_fft():
    m = melfront.MelSpectrogram(SR, n_fft=255, hop_length=64, n_mels=20)
    a = FB.AdaptiveFilterbank.from_mel(m)
    for length in (640, 641, 700):
        x = torch.randn(length)
        assert a(x).shape == m(x).shape


def test_output_is_nonnegative_power_float32(ada):
    x = torch.randn(3000)
    out = ada(x)
    assert out.dtype == torch.float32 and bool((out >= 0).all()) and bool(torch.isfinite(out).all())
    # power: doubling the amplitude multiplies the output by 4
    np.testing.assert_allclose(ada(2 * x).numpy(), 4 * out.numpy(), rtol=1e-4, atol=1e-6)


def test_frame_centring_of_a_click(mel, ada):
    """A click at sample t*hop peaks in frame t, in every band, as in the mel spectrogram."""
    x = torch.zeros(4000, dtype=torch.float64)
    x[30 * 64] = 1.0
    a, m = ada(x), mel(x)
    assert bool((a.argmax(dim=1) == 30).all()) and bool((m.argmax(dim=1) == 30).all())


# ------------------------------------------------------------------------------------ reproduction
@pytest.mark.parametrize("kind", ["tones", "chirp", "noise"])
def test_from_mel_reproduces_mel_on_generated_signals(mel, ada, kind):
    x = torch.tensor(_signals()[kind])
    med, corr = _metrics(mel(x), ada(x))
    assert med <= 0.05, f"{kind}: median relative error {med:.3f}"
    assert corr >= 0.99, f"{kind}: dB correlation {corr:.4f}"


@pytest.mark.parametrize("freq", [70.0, 300.0, 1234.5, 3500.0])
def test_steady_tone_is_exact(mel, ada, freq):
    """The frequency responses are exact: a steady tone gives the mel value in every band within 30 dB."""
    t = torch.arange(SR, dtype=torch.float64) / SR
    x = torch.cos(2 * math.pi * freq * t)
    m, a = mel(x)[:, 10:-10], ada(x)[:, 10:-10]
    mask = m > m.max() * 1e-3
    assert float(((a - m).abs() / m)[mask].max()) < 0.01


def test_noise_band_means_match(mel, ada):
    """White noise: time-averaged band powers agree (both are E|X|^2-weighted sums of the same response)."""
    x = torch.tensor(np.random.default_rng(3).standard_normal(4 * SR))
    m, a = mel(x)[:, 5:-5].mean(1), ada(x)[:, 5:-5].mean(1)
    np.testing.assert_allclose(a.numpy(), m.numpy(), rtol=0.05)


def test_from_mel_field_clip_default_config(field_clip):
    """The project's default configuration (22050 Hz, n_fft 1024, hop 512, 128 mels) on a realistic clip."""
    a = FB.adaptive_frontend()
    m = melfront.MelSpectrogram(22050, n_fft=1024, hop_length=512, n_mels=128)
    x = torch.tensor(field_clip)
    med, corr = _metrics(m(x), a(x))
    assert med <= 0.05 and corr >= 0.99


# ------------------------------------------------------------------------------------ trainable
@pytest.fixture
def small_trainable():
    m = melfront.MelSpectrogram(SR, n_fft=128, hop_length=32, n_mels=12)
    return m, FB.AdaptiveFilterbank.from_mel(m, trainable=True)


def test_trainable_starts_at_from_mel(small_trainable):
    m, a = small_trainable
    fixed = FB.AdaptiveFilterbank.from_mel(m)
    x = torch.randn(1500)
    np.testing.assert_allclose(a(x).detach().numpy(), fixed(x).numpy(), rtol=1e-5, atol=1e-7)
    names = {n for n, _ in a.named_parameters()}
    assert names == {"centre_logit", "log_bandwidth", "log_averaging"}
    assert len(list(fixed.parameters())) == 0


def test_gradients_flow_to_all_parameters(small_trainable):
    _, a = small_trainable
    x = torch.randn(2, 1500)
    torch.log(a(x) + 1e-6).mean().backward()
    for name, p in a.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
        assert float(p.grad.abs().max()) > 0, name


def test_parameters_stay_valid_after_sgd(small_trainable):
    _, a = small_trainable
    opt = torch.optim.SGD(a.parameters(), lr=50.0)   # large steps, to push parameters against their limits
    x = torch.randn(2, 800)
    target = torch.rand(2, 12, a.num_frames(800)) * 10
    for _ in range(3):
        opt.zero_grad()
        loss = ((torch.log(a(x) + 1e-6) - target) ** 2).mean()
        loss.backward()
        opt.step()
    p = a.learned_parameters()
    c, b, w = (np.array(p[k]) for k in ("centre_hz", "bandwidth_hz", "averaging_s"))
    assert len(c) == len(b) == len(w) == 12
    assert ((c > 0) & (c < SR / 2)).all()
    lo, hi = a.limits["bandwidth_hz"]
    assert ((b >= lo - 1e-9) & (b <= hi + 1e-9)).all()
    lo, hi = a.limits["averaging_s"]
    assert ((w >= lo - 1e-12) & (w <= hi + 1e-12)).all()
    out = a(x)
    assert bool(torch.isfinite(out).all()) and bool((out >= 0).all())
    assert bool(torch.isfinite(loss))


def test_gradcheck_tiny_configuration():
    # fmin, fmax keep the triangles' corners off the FFT bins (the weights are piecewise linear there)
    m = melfront.MelSpectrogram(1000, n_fft=32, hop_length=8, n_mels=4, fmin=13.0, fmax=487.0)
    fixed = FB.AdaptiveFilterbank.from_mel(m).double()
    x = torch.randn(64, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fixed, (x,), eps=1e-6, atol=1e-6, fast_mode=True)
    # with respect to the three learnable parameter sets
    a = FB.AdaptiveFilterbank.from_mel(m, trainable=True).double()
    names = sorted(n for n, _ in a.named_parameters())
    params = tuple(dict(a.named_parameters())[n].detach().clone().requires_grad_(True) for n in names)
    x0 = x.detach()

    def f(*values):
        return torch.func.functional_call(a, dict(zip(names, values)), (x0,))
    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-6, fast_mode=True)


def test_adaptive_frontend_factory():
    a = FB.adaptive_frontend(sample_rate=SR, n_fft=256, hop_length=64, n_mels=20, trainable=True, fmin=50.0)
    assert isinstance(a, FB.AdaptiveFilterbank)
    assert a.input_kind == "waveform" and a.out_channels == 1 and a.trainable and a.n_bands == 20
    assert a.learned_parameters()["centre_hz"][0] > 50.0


def test_frontend_spec_adaptive():
    """The frontend factory's "adaptive(trainable=True)" spec builds this module (lazily)."""
    fe = melfront.frontends.frontend("adaptive(trainable=True)", sample_rate=SR, n_fft=256, hop_length=64, n_mels=20)
    assert isinstance(fe, FB.AdaptiveFilterbank) and fe.trainable and fe.n_bands == 20
    assert fe(torch.randn(2, 1000)).shape == (2, 20, 1 + 1000 // 64)


def test_state_dict_roundtrip(small_trainable):
    m, a = small_trainable
    with torch.no_grad():
        a.centre_logit += 0.1
    b = FB.AdaptiveFilterbank.from_mel(m, trainable=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(800)
    np.testing.assert_allclose(b(x).detach().numpy(), a(x).detach().numpy(), rtol=1e-6)


def test_parameter_checks(mel):
    with pytest.raises(ValueError, match="power"):
        FB.AdaptiveFilterbank.from_mel(melfront.MelSpectrogram(SR, n_fft=256, n_mels=20, power=1.0))
    w = torch.hann_window(64, dtype=torch.float64)
    with pytest.raises(ValueError, match="centre_hz"):
        FB.AdaptiveFilterbank(SR, w, [5000.0], [100.0], [0.5], [0.01], 16)
    with pytest.raises(ValueError, match="bandwidth_hz"):
        FB.AdaptiveFilterbank(SR, w, [500.0], [-1.0], [0.5], [0.01], 16)
    with pytest.raises(ValueError, match="equal length"):
        FB.AdaptiveFilterbank(SR, w, [500.0, 600.0], [100.0], [0.5], [0.01], 16)
    with pytest.raises(ValueError, match="hop_length"):
        FB.AdaptiveFilterbank(SR, w, [500.0], [100.0], [0.5], [0.01], 0)
    a = FB.AdaptiveFilterbank.from_mel(melfront.MelSpectrogram(SR, n_fft=256, hop_length=64, n_mels=20, center=False))
    with pytest.raises(ValueError, match="n_fft"):
        a(torch.randn(100))


# ------------------------------------------------------------------------------------ window equivalence
def _hann(n):
    return F.get_window("hann", n, dtype=torch.float64)


def test_window_equivalence_exact_on_full_lattice():
    """With hop 1 (no frame sampling) the identity is exact: residual at machine precision."""
    x = FB.damped_notes(SR, 0.128)[:1024]
    r = FB.window_equivalence(x, _hann(64), _hann(16), 128, 1)
    assert r["residual"] < 1e-10
    raw = torch.linalg.norm(r["spec_g"] / r["spec_g"].sum() - r["spec_h"] / r["spec_h"].sum()) / torch.linalg.norm(
        r["spec_g"] / r["spec_g"].sum())
    assert raw > 0.1  # the spectrograms themselves differ a lot


def test_window_equivalence_damped_notes_residual():
    """Long (256) and short (64) windows, frames every 4 samples: relative residual below 1e-4 (stated bound)."""
    x = FB.damped_notes(SR, 0.5)
    x = x[: (x.numel() // 4) * 4]
    r = FB.window_equivalence(x, _hann(256), _hann(64), 512, 4)
    assert r["residual"] < 1e-4
    # the kernels are real and localised: w_g (for the long window) is short in time, w_h long in time
    kg, kh = torch.fft.fftshift(r["kernel_g"]), torch.fft.fftshift(r["kernel_h"])
    c_t, c_f = kg.shape[0] // 2, kg.shape[1] // 2

    def width(v):  # number of lattice points at or above half the maximum
        return int((v >= 0.5 * v.max()).sum())
    assert width(kg[:, c_f]) < width(kh[:, c_f])      # along time
    assert width(kg[c_t]) > width(kh[c_t])            # along frequency


def test_window_equivalence_kernels_are_real():
    _, _, mg, mh = FB.window_equivalence_kernels(_hann(64), _hann(16), 128, 4, 512)
    for mult in (mg, mh):
        k = torch.fft.ifft2(mult)
        assert float(k.imag.abs().max()) < 1e-12 * float(k.real.abs().max())


def test_window_equivalence_checks():
    with pytest.raises(ValueError, match="multiple of hop_length"):
        FB.cyclic_spectrogram(torch.zeros(1001), _hann(64), 128, 4)
    with pytest.raises(ValueError, match="n_fft"):
        FB.window_equivalence_kernels(_hann(64), _hann(16), 64, 4, 512)


# ------------------------------------------------------------------------------------ figures / CLI
def test_equivalence_cli_writes_figures(tmp_path):
    clip = tmp_path / "clip.wav"
    sf.write(clip, FB.demo_clip(SR, 1.0).numpy(), SR)
    rc = melfront.cli.main(["equivalence", "-o", str(tmp_path / "out"), "--audio", str(clip), "--sample-rate", str(SR),
                            "--n-fft", "256", "--hop", "64", "--n-mels", "40", "--long-window", "256",
                            "--short-window", "64", "--duration", "0.5"])
    assert rc == 0
    for name in ("window_equivalence.png", "mel_vs_adaptive.png"):
        assert (tmp_path / "out" / name).stat().st_size > 10_000
