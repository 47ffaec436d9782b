"""Compression frontends other than PCEN's internals: librosa parity of power_to_db, per-example
(batch-independent) statistics, the fixed and learned log / power laws, MinMax, Stack / Chain and
the spec-string factory."""
import json

import numpy as np
import pytest
import torch

import melfront
from melfront import functional as F
from melfront.frontends import (FRONTENDS, PCEN, Chain, Decibel, Log10000, LogEPS, LogFloor, LogLearn, LogOffset,
                                MelSpectrogram, MinMax, PowerLearn, Stack, frontend)

from conftest import make_field_clip
from frontend_specs import all_specs

COMMON = dict(n_mels=16, sample_rate=22050, hop_length=512, n_fft=1024)
# every registered mel frontend with its flags, and the combinations (frontend_specs.py: from the registry)
MEL_SPECS = all_specs() + ["stack(db, pcen, power)"]


@pytest.fixture(scope="module")
def mel64():
    """A real-looking linear power mel spectrogram (16 bands), float64, from the synthetic field clip."""
    x = torch.from_numpy(make_field_clip(duration=1.0))
    return MelSpectrogram(22050, n_fft=1024, hop_length=512, n_mels=16)(x)


# ---------------------------------------------------------------------------- librosa parity
@pytest.mark.parametrize("ref", [1.0, "max", 1e-3])
@pytest.mark.parametrize("top_db", [80.0, 40.0, None])
@pytest.mark.parametrize("amin", [1e-10, 1e-5])
def test_power_to_db_matches_librosa(mel64, ref, top_db, amin):
    librosa = pytest.importorskip("librosa")
    S = mel64.numpy()
    want = librosa.power_to_db(S, ref=np.max if ref == "max" else ref, amin=amin, top_db=top_db)
    got = F.power_to_db(mel64, ref=ref, amin=amin, top_db=top_db).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_power_to_db_float32_close_to_librosa(mel64):
    librosa = pytest.importorskip("librosa")
    want = librosa.power_to_db(mel64.numpy(), ref=np.max)
    got = Decibel(ref="max")(mel64.float()).double().numpy()
    np.testing.assert_allclose(got, want, atol=1e-3)


# ---------------------------------------------------------------------------- per example
@pytest.mark.parametrize("spec", MEL_SPECS)
def test_an_example_alone_equals_it_in_a_batch_with_a_much_louder_one(mel64, spec):
    torch.manual_seed(0)
    f = frontend(spec, **COMMON)
    quiet = mel64.float()
    loud = 1e6 * mel64.float().flip(-1)
    alone = f(quiet.unsqueeze(0))[0]
    batch = f(torch.stack([loud, quiet]))[1]
    torch.testing.assert_close(batch, alone, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("law", [lambda x: F.power_to_db(x, ref="max"), lambda x: F.power_to_db(x, top_db=40.0),
                                 F.minmax])
def test_per_example_laws_give_an_empty_output_for_no_frames(law):
    """Their one body (F.*_plain, shared with the frontends) takes no maximum of nothing."""
    x = torch.zeros(2, 4, 0, requires_grad=True)
    y = law(x)
    assert y.shape == (2, 4, 0)
    y.sum().backward()
    assert x.grad.shape == (2, 4, 0)


def test_top_db_is_per_example_not_batch_wide(mel64):
    quiet, loud = mel64, mel64 * 1e8  # 80 dB louder
    out = F.power_to_db(torch.stack([quiet, loud]), ref="max", top_db=80.0)
    # each example's own floor is 80 dB below its own max: both reach exactly -80 somewhere
    assert out[0].min().item() == pytest.approx(-80.0) and out[1].min().item() == pytest.approx(-80.0)
    assert out[0].max().item() == 0.0 and out[1].max().item() == 0.0
    # a batch-wide max would have clipped the quiet example to a constant
    assert out[0].std() > 1.0


def test_ref_tensor_per_example(mel64):
    x = torch.stack([mel64, 10 * mel64])
    ref = x.amax(dim=(-2, -1), keepdim=True)
    torch.testing.assert_close(F.power_to_db(x, ref=ref), F.power_to_db(x, ref="max"))


# ---------------------------------------------------------------------------- fixed and learned laws
def test_fixed_logs(mel64):
    x = mel64
    torch.testing.assert_close(LogEPS()(x), torch.log10(x + np.finfo(np.float64).eps))
    torch.testing.assert_close(Log10000()(x), torch.log10(10000 * x + 1))
    torch.testing.assert_close(LogOffset(3.0, 0.5, base=2)(x), torch.log2(3 * x + 0.5))
    torch.testing.assert_close(LogFloor(1e-3)(x), torch.log(torch.clamp(x, min=1e-3)))


def test_loglearn_starts_as_pons_et_al_and_is_a_log(mel64):
    f = LogLearn()
    assert f.alpha.item() == pytest.approx(1096.633, rel=1e-5)
    assert f.beta.item() == pytest.approx(1.3133, rel=1e-4)
    torch.testing.assert_close(f(mel64.float()), torch.log(1096.6332 * mel64.float() + 1.3132616), rtol=1e-5, atol=1e-5)
    g = LogLearn(per_band=True, n_mels=16)
    assert g.alpha.shape == (16,) and g.beta.shape == (16,)
    with torch.no_grad():
        g.pre_alpha[3] = 0.0  # band 3 alone changes
    diff = (g(mel64.float()) - f(mel64.float())).abs().amax(-1)
    assert diff[3] > 0.1 and torch.all(diff[torch.arange(16) != 3] < 1e-5)


def test_powerlearn_starts_at_square_root_and_per_band(mel64):
    x = mel64.float()
    torch.testing.assert_close(PowerLearn()(x), torch.sqrt(x))
    f = PowerLearn(per_band=True, n_mels=16, init_a=2.0)
    p = torch.sigmoid(torch.tensor(2.0))
    torch.testing.assert_close(f(x), x ** p, rtol=1e-5, atol=1e-7)
    assert f.exponent.shape == (16,)


def test_power_compress_gradient_finite_at_zero():
    a = torch.tensor(0.3, requires_grad=True)
    x = torch.tensor([[0.0, 1e-30, 2.0]])
    F.power_compress(x, torch.sigmoid(a)).sum().backward()
    assert torch.isfinite(a.grad)


def test_minmax_range_and_constant():
    torch.manual_seed(0)
    x = torch.rand(3, 4, 9) * torch.tensor([1.0, 1e3, 1e-3]).view(3, 1, 1)
    y = MinMax()(x)
    assert torch.allclose(y.amin(dim=(-2, -1)), torch.zeros(3)) and torch.allclose(y.amax(dim=(-2, -1)), torch.ones(3))
    assert torch.equal(MinMax()(torch.full((2, 4, 5), 3.0)), torch.zeros(2, 4, 5))


# ---------------------------------------------------------------------------- Stack / Chain
def test_stack_channels_and_chain_order(mel64):
    x = mel64.float().unsqueeze(0)
    st = Stack(Decibel(), PCEN(), PowerLearn())
    y = st(x)
    assert st.out_channels == 3 and y.shape == (1, 3, 16, x.shape[-1])
    torch.testing.assert_close(y[:, 0], Decibel()(x))
    torch.testing.assert_close(y[:, 1], PCEN()(x))
    nested = Stack(Decibel(), st)
    assert nested.out_channels == 4 and nested(x).shape == (1, 4, 16, x.shape[-1])
    ch = MinMax() + Decibel()
    assert isinstance(ch, Chain)
    torch.testing.assert_close(ch(x), Decibel()(MinMax()(x)))
    assert len((ch + LogFloor()).frontends) == 3  # chains flatten


def test_learned_parameters_are_json_and_named(mel64):
    st = Stack(LogLearn(), PCEN(trainable=True, per_band=True, n_mels=16), PowerLearn(per_band=True, n_mels=16))
    d = st.learned_parameters()
    json.dumps(d)
    assert set(d) == {"0.alpha", "0.beta", "1.s", "1.alpha", "1.delta", "1.r", "1.eps", "2.exponent"}
    assert len(d["1.s"]) == 16 and d["1.s"][0] == pytest.approx(0.025, rel=1e-5)
    assert d["1.eps"][0] == pytest.approx(1e-6, rel=1e-4)
    assert Decibel().learned_parameters() == {} and PCEN().learned_parameters() == {}


# ---------------------------------------------------------------------------- factory
@pytest.mark.parametrize("spec, cls, attrs", [
    ("db", Decibel, dict(ref=1.0, top_db=80.0)),
    ("db(ref='max', top_db=None, amin=1e-5)", Decibel, dict(ref="max", top_db=None, amin=1e-5)),
    ("logeps", LogEPS, dict(base=10)),
    ("log10000", Log10000, dict(alpha=10000.0)),
    ("loglearn(per_band=True)", LogLearn, dict(per_band=True, n_mels=16)),
    ("logfloor(floor=1e-4)", LogFloor, dict(floor=1e-4)),
    ("power(per_band=True, init_a=1.0)", PowerLearn, dict(per_band=True)),
    ("pcen", PCEN, dict(trainable=False, per_band=False, init="median")),
    ("pcen(trainable=True, per_band=True, init='loop')", PCEN, dict(trainable=True, per_band=True, init="loop")),
    ("PCEN(init='librosa')", PCEN, dict(init="librosa")),
    ("minmax", MinMax, {}),
])
def test_factory_builds_what_the_spec_says(spec, cls, attrs):
    f = frontend(spec, **COMMON)
    assert type(f) is cls
    for k, v in attrs.items():
        assert getattr(f, k) == v, k
    assert f.input_kind == "mel" and f.out_channels == 1


def test_factory_passes_common_settings_and_overrides():
    f = frontend("pcen(time_constant=0.4)", **COMMON)
    assert f.s.item() == pytest.approx(F.pcen_time_constant_to_s(0.4, 22050, 512), rel=1e-6)
    f = frontend("pcen(trainable=True, per_band=True)", **{**COMMON, "n_mels": 40})
    assert f.s.shape == (40,)
    f = frontend("pcen(trainable=True, per_band=True, n_mels=8)", **COMMON)
    assert f.s.shape == (8,)


def test_factory_composites():
    st = frontend("stack(db, pcen(init='loop'), power(per_band=True))", **COMMON)
    assert isinstance(st, Stack) and st.out_channels == 3
    assert [type(f) for f in st.frontends] == [Decibel, PCEN, PowerLearn] and st.frontends[1].init == "loop"
    for spec in ("chain(minmax, db)", "minmax + db"):
        ch = frontend(spec, **COMMON)
        assert isinstance(ch, Chain) and [type(f) for f in ch.frontends] == [MinMax, Decibel]


@pytest.mark.parametrize("spec, words", [
    ("nosuch", ["unknown frontend", "pcen", "loglearn"]),
    ("pcen(bogus=1)", ["bogus", "trainable", "per_band"]),
    ("db(1)", ["keyword"]),
    ("pcen(s=__import__('os').getcwd())", ["literal"]),
    ("pcen(s=", ["parse"]),
    ("stack()", ["at least one"]),
    ("stack(db, top_db=3)", ["specs only"]),
    ("pcen(init='middle')", ["init"]),
    ("loglearn(per_band=True)", ["n_mels"]),
    ("db[0]", ["parse"]),
    ("", ["non-empty"]),
])
def test_factory_errors_are_clear(spec, words):
    common = {} if spec == "loglearn(per_band=True)" else COMMON
    with pytest.raises(ValueError) as exc:
        frontend(spec, **common)
    for w in words:
        assert w in str(exc.value), (w, str(exc.value))


def test_registry_and_cli_listing(capsys):
    for name in ("db", "logeps", "log10000", "loglearn", "logfloor", "power", "pcen", "minmax", "stack", "chain",
                 "adaptive", "mst"):
        assert name in FRONTENDS and FRONTENDS[name].description
    from melfront.cli import main
    assert main(["frontends"]) == 0
    out = capsys.readouterr().out
    for name in FRONTENDS:
        assert name in out
    assert melfront.frontend is frontend and melfront.PCEN is PCEN


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="amin"):
        Decibel(amin=0)
    with pytest.raises(ValueError, match="top_db"):
        F.power_to_db(torch.ones(2, 2), top_db=-1)
    with pytest.raises(ValueError, match="ref"):
        Decibel(ref="min")
    with pytest.raises(ValueError, match="floor"):
        LogFloor(0)
    with pytest.raises(ValueError, match="base"):
        LogOffset(base=1)
    with pytest.raises(ValueError, match="exponent"):
        F.power_compress(torch.ones(2, 2), -1.0)


def test_show_draws_every_kind_of_frontend(tmp_path, wav_file):
    pytest.importorskip("matplotlib")
    from melfront.plotting import show_clips
    path = wav_file(make_field_clip(duration=0.5))
    specs = ["db", "pcen(init='loop')", "power", "loglearn", "minmax", "stack(db, pcen, power)", "stack(db, pcen)"]
    out = show_clips([path], tmp_path / "show.png", n_mels=32, frontends=specs)
    import matplotlib.image
    img = matplotlib.image.imread(out)
    assert img.shape[0] > 8 * 100 and img.std() > 0.05  # one tall figure with visible content
