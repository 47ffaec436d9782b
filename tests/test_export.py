"""Deployment: the plain PCEN path equals the fast one, every frontend exports to ONNX (checked in onnxruntime on
inputs of other lengths, and refused when a graph ignores its input), torch.export round trips, torch.compile
with no graph break, fixed settings travel with the weights, and ``melfront export`` end to end.

Speed: an ONNX export costs seconds, a check milliseconds. So the frontends that take the same input are
exported *together*, as one graph with one output each (:class:`Together`, module-scoped fixtures), and the
tests check each output: one export per kind of graph (mel input, waveform input, fixed-length waveform),
parametrized checks. Shapes are tiny (8 mels, 30-333 frames).

"Relative error" is ``max |got - expected| / max |expected|`` (:func:`melfront.export.relative_error`).
Exports go to pytest's temporary folders.
"""
import numpy as np
import pytest
import torch

from melfront import functional as F
from melfront.adaptive import adaptive_frontend
from melfront.errors import ParameterError
from melfront.export import (StreamingClassifier, check_onnx, export_onnx, export_program, held_out_inputs,
                             relative_error)
from melfront.frontends import (Chain, Decibel, Log10000, LogEPS, LogFloor, LogLearn, LogOffset, MelSpectrogram,
                                MinMax, PCEN, PowerLearn, Spectrogram, Stack, frontend)
from melfront.models import Classifier, build
from melfront.mst import MSTModel, mst_frontend, save_mst

from frontend_specs import covers, mel_names

N_MELS = 8


def _onnx():
    """onnxruntime, after the packages torch's ONNX exporter needs; else the test that asks is skipped (the
    tests of torch.export, torch.compile, the plain PCEN and the settings need none of them)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    return pytest.importorskip("onnxruntime")


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny convolutions: one intra-op thread (conftest)


def _mel():
    return MelSpectrogram(8000, n_fft=128, hop_length=32, n_mels=N_MELS)


def _trained_like(module):
    """Move every trainable parameter off its start value, so that a test sees learned values."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return module


def _spec(batch=2, frames=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, N_MELS, frames, generator=g) * 10 + 1e-3


def _wave(batch=2, samples=2000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, samples, generator=g) * 0.1


class Together(torch.nn.Module):
    """Several modules on one input, their outputs as a tuple: one export checks them all."""

    def __init__(self, parts: dict):
        super().__init__()
        self.names = list(parts)
        self.parts = torch.nn.ModuleList(parts.values())

    def forward(self, x):
        return tuple(p(x) for p in self.parts)


def _run(session, *inputs):
    return session.run(None, {a.name: x.numpy() for a, x in zip(session.get_inputs(), inputs)})


def _graph(module, example, path, **kw):
    """Export ``module`` (checked by export_onnx on held-out inputs), then run it on two new inputs."""
    module = module.eval()
    _onnx()
    export_onnx(module, example, path, **kw)
    return module, _onnx().InferenceSession(str(path))


# ------------------------------------------------------------------ item 1: the plain path equals the fast one
@pytest.mark.parametrize("init", F.PCEN_INITS)
@pytest.mark.parametrize("per_band", [False, True])
def test_plain_pcen_equals_the_fast_path_in_values_and_gradients(init, per_band):
    # values in float32 to 1e-5; gradients in float64 (a scalar parameter's gradient sums 2400 terms, and the two
    # paths sum them in different orders: float32 rounding alone reaches ~3e-5 relative)
    for dtype, gtol in ((torch.float32, None), (torch.float64, 1e-9)):
        x = (_spec(3, 300) * 10).to(dtype).requires_grad_()
        shape = (N_MELS,) if per_band else ()
        params = [torch.full(shape, v, dtype=dtype).requires_grad_() for v in (0.05, 0.9, 2.0, 0.4, 1e-3)]
        fast = F.pcen(x, *params, init=init)
        plain, state = F.pcen_plain(x, *params, init=init)
        assert relative_error(plain, fast) < 1e-5 and state.shape == (3, N_MELS)
        if gtol is None:
            continue
        g = torch.randn_like(fast)
        for a, b in zip(torch.autograd.grad(plain, [x, *params], g), torch.autograd.grad(fast, [x, *params], g)):
            assert relative_error(a, b) < gtol


def test_plain_pcen_handles_a_zero_bias_and_a_given_state():
    x = _spec(2, 100).double()
    zero = torch.tensor(0.0, dtype=torch.float64)
    p = [torch.tensor(v, dtype=torch.float64) for v in (0.1, 0.8, 0.0, 0.5, 1e-6)]
    assert relative_error(F.pcen_plain(x, *p)[0], F.pcen(x, *p)) < 1e-12
    state = torch.rand(2, N_MELS, dtype=torch.float64)
    y, last = F.pcen_plain(x, *p, initial_state=state)
    y2, last2 = F.pcen(x, *p, initial_state=state, return_state=True)
    assert relative_error(y, y2) < 1e-12 and relative_error(last, last2) < 1e-12
    assert not torch.equal(F.pcen_plain(x, *p, initial_state=state * 0 + zero)[0], y)


# ------------------------------------------------------------------ item 2: ONNX, every frontend
MEL_FRONTENDS = {
    "db": lambda: Decibel(),
    "db_max": lambda: Decibel(ref="max", top_db=None),
    "logoffset": lambda: LogOffset(alpha=3.0, beta=0.5, base=10),
    "logeps": lambda: LogEPS(),
    "log10000": lambda: Log10000(),
    "loglearn_band": lambda: _trained_like(LogLearn(per_band=True, n_mels=N_MELS)),
    "logfloor": lambda: LogFloor(),
    "power": lambda: _trained_like(PowerLearn(per_band=True, n_mels=N_MELS)),
    "minmax": lambda: MinMax(),
    # every start and both parametrisations, each PCEN graph costing seconds to convert: fixed median (the
    # default), librosa without bias, trained per band loop, trained global zero, "first" in the classifier
    "pcen_fixed_median": lambda: PCEN(),
    "pcen_fixed_librosa_nobias": lambda: PCEN(init="librosa", delta=0.0, s=0.1),
    "pcen_trained_band_loop": lambda: _trained_like(PCEN(trainable=True, per_band=True, n_mels=N_MELS, init="loop")),
    "pcen_trained_zero": lambda: _trained_like(PCEN(trainable=True, init="zero")),
    "stack": lambda: Stack(Decibel(), _trained_like(PowerLearn())),
    "chain": lambda: Chain(MinMax(), Decibel()),
    "classifier_pcen": lambda: Classifier(_trained_like(PCEN(trainable=True, per_band=True, n_mels=N_MELS,
                                                             init="first")),
                                          build("resnet", 3, n_mels=N_MELS, n_frames=32, width=4)),
}
for _name in mel_names():  # a registered mel frontend no part above covers joins the graph with its defaults
    if not covers(MEL_FRONTENDS, _name):
        MEL_FRONTENDS[_name] = lambda name=_name: _trained_like(frontend(name, n_mels=N_MELS))


@pytest.fixture(scope="module")
def mel_graph(tmp_path_factory):
    """Every mel-input frontend (and a classifier) in one ONNX graph; example 30 frames (fewer than the median
    start's 40), checked by export_onnx on 100 and 180 frames, here on 333."""
    path = tmp_path_factory.mktemp("onnx") / "mel.onnx"
    module, session = _graph(Together({n: make() for n, make in MEL_FRONTENDS.items()}), _spec(2, 30), path)
    x, other = _spec(3, 333, seed=5), _spec(3, 333, seed=6)
    return module, _run(session, x), _run(session, other), x, path


@pytest.mark.parametrize("name", sorted(MEL_FRONTENDS))
def test_every_mel_frontend_exports_to_onnx_with_dynamic_frames(name, mel_graph):
    module, got, got_other, x, _ = mel_graph
    i = module.names.index(name)
    with torch.no_grad():
        want = module.parts[i](x)
    assert relative_error(got[i], want) < 1e-5
    assert not np.array_equal(got[i], got_other[i])          # the graph uses its input


def test_a_graph_that_differs_from_eager_is_refused(mel_graph):
    module, path = mel_graph[0], mel_graph[-1]
    assert check_onnx(path, module, _spec(2, 90)) < 1e-5
    parts = dict(zip(module.names, module.parts), logfloor=LogFloor(floor=5.0))   # one part computes otherwise
    with pytest.raises(ParameterError, match="differs from eager"):
        check_onnx(path, Together(parts), _spec(2, 90))


def _mst(folder):
    model = _trained_like(MSTModel(n_mels=N_MELS, n_fft=128, hop_length=32, n_filters=4, n_hidden=4))
    model.eval()
    return mst_frontend(str(save_mst(folder / "mst.pt", model)))


def _waveform_parts(folder):
    return {
        "mel": _mel(),
        "spec_magnitude": Spectrogram(n_fft=128, hop_length=32, power=1.0),
        "mel_pcen_median": Chain(_mel(), PCEN()),
        "mst": _mst(folder),
        "classifier_waveform_stack": Classifier(Chain(_mel(), Stack(Decibel(), _trained_like(PCEN(trainable=True)))),
                                                build("resnet", 3, n_mels=N_MELS, n_frames=32, in_channels=2,
                                                      width=4)),
    }


@pytest.fixture(scope="module")
def waveform_graph(tmp_path_factory):
    """The waveform frontends (mel, spectrogram, MST) and a classifier in one ONNX graph with dynamic samples."""
    folder = tmp_path_factory.mktemp("wave")
    module, session = _graph(Together(_waveform_parts(folder)), _wave(2, 2000), folder / "wave.onnx")
    x, other = _wave(3, 9999, seed=5), _wave(3, 9999, seed=6)
    return module, _run(session, x), _run(session, other), x


@pytest.mark.parametrize("name", ["mel", "spec_magnitude", "mel_pcen_median", "mst", "classifier_waveform_stack"])
def test_waveform_frontends_export_with_dynamic_samples(name, waveform_graph):
    module, got, got_other, x = waveform_graph
    i = module.names.index(name)
    with torch.no_grad():
        want = module.parts[i](x)
    assert relative_error(got[i], want) < 1e-5
    assert not np.array_equal(got[i], got_other[i])


@pytest.fixture(scope="module")
def adaptive():
    return _trained_like(adaptive_frontend(8000, n_fft=128, hop_length=32, n_mels=N_MELS, trainable=True,
                                           pad_mode="reflect")).eval()


def test_adaptive_filterbank_exports_to_onnx_with_a_fixed_number_of_samples(adaptive, tmp_path):
    # its FFT length is a 2-3-5-smooth function of the length: a fixed number of samples, any batch
    _onnx()
    path = export_onnx(adaptive, _wave(2, 2000), tmp_path / "adaptive.onnx", time_axis=False)
    assert check_onnx(path, adaptive, _wave(3, 2000, seed=4)) < 1e-5
    with pytest.raises(ParameterError, match="fixed number of samples"):
        export_program(adaptive, _wave(2, 2000))                    # a dynamic number of samples: refused


def test_adaptive_filterbank_torch_export_round_trip_and_no_script(adaptive, tmp_path):
    export_program(adaptive, _wave(2, 2000), tmp_path / "a.pt2", time_axis=False)
    loaded = torch.export.load(tmp_path / "a.pt2").module()
    x = _wave(2, 2000, seed=7)
    assert relative_error(loaded(x), adaptive(x).detach()) < 1e-5
    with pytest.raises(ParameterError, match="cannot be scripted"):
        torch.jit.script(Chain(adaptive, Decibel()))


def test_a_graph_that_ignores_its_input_is_refused(tmp_path):
    class Constant(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(3))

        def forward(self, x):
            return self.w * 2 + 0 * x.shape[-1]

    _onnx()
    with pytest.raises(ParameterError, match="ignores its input"):
        export_onnx(Constant(), _spec(), tmp_path / "c.onnx")
    assert not (tmp_path / "c.onnx").exists()


def test_the_torchscript_onnx_exporter_is_refused_not_frozen(tmp_path):
    with pytest.raises(ParameterError, match="dynamo=True"):
        torch.onnx.export(PCEN(trainable=True), (_spec(),), str(tmp_path / "legacy.onnx"), dynamo=False)


# ------------------------------------------------------------------ item 2: torch.export and torch.compile
def test_torch_export_save_load_round_trip_with_dynamic_frames(tmp_path):
    f = Together({"pcen": Chain(_mel(), _trained_like(PCEN(trainable=True, per_band=True, n_mels=N_MELS,
                                                                init="loop"))),
                  "pcen_median": Chain(_mel(), PCEN()), "mst": _mst(tmp_path)}).eval()
    export_program(f, _wave(2, 3000), tmp_path / "f.pt2")
    loaded = torch.export.load(tmp_path / "f.pt2").module()
    for n in (1000, 12345):
        x = _wave(2, n, seed=n)
        with torch.no_grad():
            for got, want in zip(loaded(x), f(x)):
                assert relative_error(got, want) < 1e-5


def test_torch_compile_fullgraph_matches_eager(adaptive, tmp_path):
    torch._dynamo.reset()
    f = Together({"pcen": Chain(_mel(), _trained_like(PCEN(trainable=True, per_band=True, n_mels=N_MELS)),
                                Decibel()),
                  "mst": _mst(tmp_path), "adaptive": adaptive}).eval()
    # fullgraph: any graph break is an error; the eager backend skips inductor's code generation (minutes on 2 cores)
    compiled = torch.compile(f, fullgraph=True, dynamic=True, backend="eager")
    for n in (3000, 5000):
        x = _wave(2, n, seed=n)
        with torch.no_grad():
            for got, want in zip(compiled(x), f(x)):
                assert relative_error(got, want) < 1e-5
    explanation = torch._dynamo.explain(Together({"loop": PCEN(init="loop"), "median": PCEN()}))(_spec())
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1


# ------------------------------------------------------------------ item 4: settings travel with the weights
@pytest.mark.parametrize("saved, fresh, named", [
    (lambda: PCEN(s=0.5), PCEN, "s=0.5"),
    (lambda: PCEN(init="loop"), PCEN, "init"),
    (lambda: PCEN(init="first"), PCEN, "init"),
    (lambda: PCEN(trainable=True, init="zero"), lambda: PCEN(trainable=True), "init"),
    (lambda: Decibel(top_db=40.0), Decibel, "top_db=40"),
    (lambda: Decibel(ref="max"), Decibel, "ref"),
    (lambda: LogOffset(alpha=2.0), LogOffset, "alpha=2"),
    (lambda: LogFloor(floor=1e-3), LogFloor, "floor=0.001"),
    (lambda: MelSpectrogram(8000, n_fft=256, n_mels=N_MELS, fmin=50.0),
     lambda: MelSpectrogram(8000, n_fft=256, n_mels=N_MELS), "fmin=50"),
])
def test_loading_a_differently_configured_state_is_an_error(saved, fresh, named):
    with pytest.raises(ParameterError, match=named):
        fresh().load_state_dict(saved().state_dict())


def test_same_settings_load_and_fixed_values_survive_dtype_changes():
    a = PCEN(s=0.5, init="loop").double()
    b = PCEN(s=0.5, init="loop")
    b.load_state_dict(a.state_dict())
    x = _spec().double()
    assert torch.equal(a(x), b(x))
    clf = Classifier(Stack(Decibel(), PCEN(s=0.5)), build("resnet", 2, n_mels=N_MELS, n_frames=32, in_channels=2, width=4))
    clf2 = Classifier(Stack(Decibel(), PCEN()), build("resnet", 2, n_mels=N_MELS, n_frames=32, in_channels=2, width=4))
    with pytest.raises(ParameterError, match="s=0.5"):
        clf2.load_state_dict(clf.state_dict())


# ------------------------------------------------------------------ item 3: melfront export end to end
@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    _onnx()  # the runs are for the ONNX export: skip before training them
    from melfront.cli import main
    from melfront.data import dataset
    root = tmp_path_factory.mktemp("synth")
    synth = dict(n_classes=3, clips_per_class=2, duration=1.0, sample_rate=8000, n_folds=2)
    dataset("synth", root=root, **synth)
    opts = [x for k, v in synth.items() for x in ("--dataset-option", f"{k}={v}")]
    runs = {}
    for frontend, model, options, n_mels in (("pcen(trainable=True, per_band=True)", "resnet", "{'width': 4}", "16"),
                                              ("db", "vgg", "{'width': 8}", "32")):
        out = tmp_path_factory.mktemp("run")
        rc = main(["train", "--dataset", "synth", "--root", str(root), *opts, "--frontend", frontend, "--model", model,
                   "--test-fold", "2", "--epochs", "1", "--batch-size", "4", "--patch-frames", "32",
                   "--sample-rate", "8000", "--n-fft", "256", "--hop", "64", "--n-mels", n_mels,
                   "--set", f"model_options={options}", "--no-cache", "--quiet", "-o", str(out)])
        assert rc == 0
        runs[model] = out
    return runs


def test_cli_export_writes_a_checked_onnx_model(run_dirs, tmp_path, capsys):
    from melfront import load_classifier
    from melfront.cli import main
    out = tmp_path / "model.onnx"
    assert main(["export", str(run_dirs["resnet"]), "-o", str(out)]) == 0
    assert "dynamic number of frames" in capsys.readouterr().out
    clf, _ = load_classifier(run_dirs["resnet"])
    session = _onnx().InferenceSession(str(out))
    x = torch.rand(3, 16, 77) + 1e-3
    got = session.run(None, {"mel": x.numpy()})[0]
    assert relative_error(got, clf(x).detach()) < 1e-5
    # a backbone with a dense layer over all frames fixes the patch length, and says so
    assert main(["export", str(run_dirs["vgg"]), "-o", str(tmp_path / "vgg.onnx")]) == 0
    assert "exactly 32 frames" in capsys.readouterr().out


def test_cli_export_streaming_runs_patch_by_patch_like_the_whole_stream(run_dirs, tmp_path, capsys):
    from melfront import load_classifier
    from melfront.cli import main
    out = tmp_path / "stream.onnx"
    assert main(["export", str(run_dirs["resnet"]), "-o", str(out), "--streaming"]) == 0
    clf, _ = load_classifier(run_dirs["resnet"])
    session = _onnx().InferenceSession(str(out))
    stream = torch.rand(1, 16, 96) + 1e-3
    whole = clf.frontend(stream).detach()
    sc = StreamingClassifier(clf)
    state = sc.stream.initial_state(first_frames=stream[..., :40]).numpy()   # the start of the PCEN's init
    for i in range(0, 96, 32):
        logits, state = session.run(None, {"mel": stream[..., i:i + 32].numpy(), "pcen_state": state})
        want = clf.backbone(whole[..., i:i + 32].unsqueeze(1)).detach()
        assert relative_error(logits, want) < 1e-4
    assert main(["export", str(run_dirs["vgg"]), "-o", str(tmp_path / "no.onnx"), "--streaming"]) == 2
    assert "PCEN" in capsys.readouterr().err


def test_held_out_inputs_differ_from_the_example():
    x = _spec()
    for (h,) in held_out_inputs(x):
        assert h.shape[-1] > x.shape[-1] and h.shape[:-1] == x.shape[:-1]
    assert not np.array_equal(held_out_inputs(x, time_axis=False)[0][0].numpy(), x.numpy())
