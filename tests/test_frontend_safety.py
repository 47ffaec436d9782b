"""Every trainable frontend: float64 gradcheck through the module, float32 output under
torch.autocast (bf16, fp16), and no NaN/inf for silence, full scale, a single frame, or after
1000 SGD steps at lr 0.1 on random data. The specs come from the registry (frontend_specs.py): a newly
registered frontend is covered by default, and test_every_registered_frontend_is_covered says where not."""
import math

import pytest
import torch

from melfront.errors import ParameterError
from melfront.frontends import FRONTENDS, Chain, Decibel, MelSpectrogram, Stack, frontend, register_frontend

from frontend_specs import WAVEFORM_SUITES, all_specs, covers, mel_names, trainable_specs

COMMON = dict(n_mels=6, sample_rate=22050, hop_length=512, n_fft=1024)
TRAINABLE = trainable_specs(**COMMON)
ALL = all_specs()


def _perturb(f, seed=0):
    """Move every parameter off its initial value, so that per-band vectors differ between bands."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in f.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return f


@pytest.mark.parametrize("spec", TRAINABLE)
def test_gradcheck_float64(spec):
    f = _perturb(frontend(spec, **COMMON)).double()
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(2, 6, 7, generator=g, dtype=torch.float64) + 0.05).requires_grad_()
    params = list(f.parameters())
    assert params, "a trainable frontend has parameters"

    # gradcheck perturbs the inputs it is given: route parameter values through torch.func
    from torch.func import functional_call
    names = [n for n, _ in f.named_parameters()]

    def call(x, *ps):
        return functional_call(f, dict(zip(names, ps)), (x,))

    inputs = (x, *[p.detach().clone().requires_grad_() for p in params])
    assert torch.autograd.gradcheck(call, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.fixture(scope="module")
def full_scale_mel():
    t = torch.arange(22050) / 22050
    square = torch.sign(torch.sin(2 * math.pi * 441 * t))  # a full-scale square wave, all harmonics
    return MelSpectrogram(22050, n_fft=1024, hop_length=512, n_mels=6)(square.unsqueeze(0))


CASES = {
    "silence": lambda full: torch.zeros(2, 6, 20),
    "full_scale": lambda full: full,
    "single_frame": lambda full: full[..., :1],
    "single_silent_frame": lambda full: torch.zeros(1, 6, 1),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("spec", ALL)
def test_finite_forward_and_backward(spec, case, full_scale_mel):
    f = frontend(spec, **COMMON)
    x = CASES[case](full_scale_mel).clone().requires_grad_()
    y = f(x)
    assert torch.isfinite(y).all(), f"{spec} on {case}: {y}"
    y.square().mean().backward()
    for p in f.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), (spec, case)
    if case != "silence" and case != "single_silent_frame":  # d/dX of log / power laws is infinite at exactly 0
        assert torch.isfinite(x.grad).all(), (spec, case)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("spec", TRAINABLE + ["db(ref='max')", "pcen"])
def test_float32_inside_autocast(spec, dtype, full_scale_mel):
    f = frontend(spec, **COMMON)
    x = torch.cat([full_scale_mel, 1e-6 * full_scale_mel])
    want = f(x)
    try:
        with torch.autocast("cpu", dtype=dtype):
            got = f(x)
            got_half_in = f(x.to(dtype))
    except RuntimeError as exc:  # pragma: no cover - a CPU build without fp16 autocast
        pytest.skip(f"autocast {dtype} on CPU unavailable: {exc}")
    assert got.dtype == torch.float32 and got_half_in.dtype == torch.float32
    torch.testing.assert_close(got, want)
    assert torch.isfinite(got_half_in).all()
    x = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=dtype):
        loss = f(x).float().square().mean()
    loss.backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in f.parameters())


def test_finite_after_1000_sgd_steps_at_lr_0_1(one_thread):
    """All learned laws at once (a 3-channel stack, per band), trained on random levels and silence."""
    torch.manual_seed(0)
    f = frontend("stack(loglearn(per_band=True), power(per_band=True), "
                 "pcen(trainable=True, per_band=True, init='loop'))", n_mels=4)
    head = torch.nn.Linear(3 * 4, 3)
    opt = torch.optim.SGD(list(f.parameters()) + list(head.parameters()), lr=0.1)
    start = {k: v.clone() for k, v in f.state_dict().items()}
    for step in range(1000):
        scale = 10.0 ** torch.empty(4, 1, 1).uniform_(-8, 4)  # each example at its own level
        x = torch.rand(4, 4, 8) * scale
        if step % 7 == 0:
            x[0] = 0.0  # silent examples too
        logits = head(f(x).mean(-1).flatten(1))
        loss = torch.nn.functional.cross_entropy(logits, torch.randint(0, 3, (4,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss), f"step {step}"
    for name, p in f.named_parameters():
        assert torch.isfinite(p).all(), name
        assert not torch.equal(start[name], p), f"{name} was not trained"
    values = f.learned_parameters()
    assert len(values) == 8 and all(math.isfinite(v) for vs in values.values() for v in vs)
    pcen = f.frontends[2]
    assert torch.all((pcen.s > 0) & (pcen.s < 1)) and torch.all(pcen.eps > 0) and torch.all(pcen.delta > 0)
    assert torch.isfinite(f(torch.rand(2, 4, 8))).all() and torch.isfinite(f(torch.zeros(2, 4, 8))).all()


# ---------------------------------------------------------------------------- spec and argument checks
@pytest.mark.parametrize("spec", [
    "db+" * 1200 + "db",                               # a very long chain: refused by length
    "stack(" * 25 + "db" + ")" * 25,                   # frontends nested too deeply
    "stack(" * 300 + "db" + ")" * 300,                 # deeper than the parser goes
    "(" * 600 + "db" + ")" * 600,
    "pcen(s=" + "-" * 1900 + "1)",                     # a deep argument value
    "pcen(s=" + "+".join(["1"] * 600) + ")",
    "db" + "[0]" * 600,
    "db\x00",
])
def test_long_or_deep_specs_are_parameter_errors(spec):
    with pytest.raises(ParameterError):
        frontend(spec, **COMMON)


def test_long_flat_specs_within_the_limits_still_build():
    assert len(frontend("+".join(["db"] * 600), **COMMON).frontends) == 600
    assert frontend("stack(" * 19 + "db" + ")" * 19, **COMMON).out_channels == 1


def test_unknown_name_lists_the_registered_ones():
    with pytest.raises(ParameterError) as exc:
        frontend("nosuch", **COMMON)
    for name in FRONTENDS:
        assert name in str(exc.value)


@pytest.mark.parametrize("build, word", [
    (lambda: MelSpectrogram(22050, n_fft=1024, n_mels=8.5), "n_mels"),
    (lambda: MelSpectrogram(22050, n_fft=1024.0), "n_fft"),
    (lambda: MelSpectrogram(22050, n_fft=1024, htk="yes"), "htk"),
    (lambda: frontend("pcen(per_band=True, n_mels=8.5)"), "n_mels"),
    (lambda: frontend("loglearn(per_band=True)", n_mels=8.5), "n_mels"),
    (lambda: frontend("power(per_band='yes')", **COMMON), "per_band"),
    (lambda: frontend("pcen(trainable='yes')", **COMMON), "trainable"),
    (lambda: frontend("pcen(s=True)", **COMMON), "s"),
    (lambda: frontend("pcen(alpha=1e400)", **COMMON), "alpha"),
    (lambda: frontend("pcen(delta=float('nan'))", **COMMON), "literal"),
    (lambda: frontend("pcen(trainable=True, delta=1e300)", **COMMON), "delta"),
    (lambda: frontend("pcen(trainable=True, s=1e-300)", **COMMON), "s"),
    (lambda: frontend("pcen(chunk=1)", **COMMON), "chunk"),
    (lambda: frontend("logoffset(alpha=1e400)", **COMMON), "alpha"),
    (lambda: frontend("logoffset(beta=0)", **COMMON), "beta"),
    (lambda: frontend("loglearn(init_alpha=1e6)", **COMMON), "init_alpha"),
    (lambda: frontend("loglearn(init_alpha=-200.0)", **COMMON), "init_alpha"),
    (lambda: frontend("loglearn(init_beta=-1e6)", **COMMON), "init_beta"),
    (lambda: frontend("loglearn(init_beta=1e39)", **COMMON), "init_beta"),
    (lambda: frontend("power(init_a=-1e6)", **COMMON), "init_a"),
    (lambda: frontend("power(init=-1e6)", **COMMON), "init"),           # the old name of init_a, still checked
    (lambda: frontend("power(init=1.0, init_a=2.0)", **COMMON), "init_a only"),
    (lambda: frontend("logfloor(floor=1e400)", **COMMON), "floor"),
    (lambda: Stack(Decibel(), "db"), "frontend"),
    (lambda: Chain(), "at least one"),
])
def test_bad_arguments_are_parameter_errors(build, word):
    with pytest.raises(ParameterError, match=word):
        build()


@pytest.mark.parametrize("init_alpha, init_beta", [(88.0, 80.0), (-100.0, -100.0)])
def test_loglearn_accepts_every_start_value_float32_can_represent(init_alpha, init_beta):
    f = frontend(f"loglearn(init_alpha={init_alpha}, init_beta={init_beta})")
    assert torch.isfinite(f.alpha) and f.alpha > 0 and torch.isfinite(f.beta) and f.beta > 0
    assert torch.isfinite(f(torch.rand(2, 3, 4))).all()


@pytest.mark.parametrize("spec", ["db", "db(ref='max')", "db(top_db=None)", "minmax", "chain(minmax, db)"])
def test_decibel_and_minmax_on_zero_frames_give_an_empty_output(spec):
    f = frontend(spec, **COMMON)
    for shape in [(2, 6, 0), (6, 0), (3, 2, 6, 0)]:
        x = torch.zeros(shape, requires_grad=True)
        y = f(x)
        assert y.shape == shape and y.dtype == torch.float32
        y.sum().backward()
        assert x.grad.shape == shape


def test_register_frontend_refuses_clashes_and_bad_names():
    with pytest.raises(ParameterError, match="already registered"):
        register_frontend("db", "another decibel")(lambda: None)
    with pytest.raises(ParameterError, match="lower-case identifier"):
        register_frontend("Bad Name", "x")
    assert FRONTENDS["db"].builder is Decibel


def test_registered_entries_say_their_input_kind():
    assert FRONTENDS["pcen"].input_kind == "mel" and not FRONTENDS["pcen"].combines
    assert FRONTENDS["stack"].combines and FRONTENDS["stack"].input_kind is None
    for name in ("adaptive", "mst"):
        if name in FRONTENDS:  # registered by melfront.adaptive / melfront.mst
            assert FRONTENDS[name].input_kind == "waveform"


def test_every_registered_frontend_is_covered():
    """Every registered frontend is in the safety and batch-independence suites (mel input), in the TorchScript and
    ONNX suites, or, taking audio, named in frontend_specs.WAVEFORM_SUITES with the tests that cover it."""
    from test_compression import MEL_SPECS
    from test_export import MEL_FRONTENDS
    from test_scripting import FRONTENDS as SCRIPTED
    for name, entry in FRONTENDS.items():
        if entry.combines:
            assert covers(ALL, name) and covers(MEL_SPECS, name) and covers(SCRIPTED, name), name
        elif entry.input_kind == "mel":
            assert name in mel_names() and covers(ALL, name), name
            for suite, keys in (("batch independence", MEL_SPECS), ("TorchScript", SCRIPTED), ("ONNX", MEL_FRONTENDS)):
                assert covers(keys, name), f"{name} is not in the {suite} suite"
        else:
            assert name in WAVEFORM_SUITES, f"registered frontend {name!r} takes {entry.input_kind}: say where it is tested"


def test_the_old_argument_names_still_work_with_a_warning():
    from melfront.frontends import LogLearn, MelSpectrogram as Mel, PowerLearn
    with pytest.warns(DeprecationWarning, match="init_a"):
        old = frontend("power(init=2.0)")
    torch.testing.assert_close(old.exponent, PowerLearn(init_a=2.0).exponent)
    with pytest.warns(DeprecationWarning, match="n_mels, per_band"):
        f = LogLearn(True, 4)                                     # the order before: (per_band, n_mels)
    assert f.per_band and f.n_mels == 4 and f.alpha.shape == (4,)
    assert PowerLearn(4, True).exponent.shape == (4,)            # the order now: (n_mels, per_band), as PCEN
    mel = Mel(16000, n_fft=512, n_mels=10)
    with pytest.warns(DeprecationWarning, match="centre_hz"):
        np_old = mel.mel_center_frequencies()
    assert (np_old == mel.centre_hz).all() and mel.centre_hz.shape == (10,)
