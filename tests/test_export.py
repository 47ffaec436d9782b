"""Deployment: the plain PCEN path equals the fast one, every frontend exports to ONNX (checked in onnxruntime on
inputs of other lengths, and refused when a graph ignores its input), torch.export round trips, torch.compile
with no graph break, fixed settings travel with the weights, and ``melfront export`` end to end.

"Relative error" is ``max |got - expected| / max |expected|`` (:func:`melfront.export.relative_error`).
Exports go to pytest's temporary folders.
"""
import numpy as np
import pytest
import torch

from melfront import functional as F
from melfront.errors import ParameterError
from melfront.export import (StreamingClassifier, check_onnx, export_onnx, export_program, held_out_inputs,
                             relative_error)
from melfront.frontends import (Chain, Decibel, Log10000, LogEPS, LogFloor, LogLearn, LogOffset, MelSpectrogram,
                                MinMax, PCEN, PowerLearn, Spectrogram, Stack)
from melfront.models import Classifier, build

pytest.importorskip("onnxruntime")

N_MELS = 8


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _mel():
    return MelSpectrogram(8000, n_fft=256, hop_length=64, n_mels=N_MELS)


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


# ------------------------------------------------------------------ item 1: the plain path equals the fast one
@pytest.mark.parametrize("init", F.PCEN_INITS)
@pytest.mark.parametrize("per_band", [False, True])
def test_plain_pcen_equals_the_fast_path_in_values_and_gradients(init, per_band):
    x = (_spec(3, 300) * 10).double().float().requires_grad_()
    shape = (N_MELS,) if per_band else ()
    params = [torch.full(shape, v).requires_grad_() for v in (0.05, 0.9, 2.0, 0.4, 1e-3)]
    fast = F.pcen(x, *params, init=init)
    plain, state = F.pcen_plain(x, *params, init=init)
    assert relative_error(plain, fast) < 1e-5 and state.shape == (3, N_MELS)
    g = torch.randn_like(fast)
    for a, b in zip(torch.autograd.grad(plain, [x, *params], g), torch.autograd.grad(fast, [x, *params], g)):
        assert relative_error(a, b) < 1e-5


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
    "pcen_fixed_first": lambda: PCEN(),
    "pcen_fixed_librosa_nobias": lambda: PCEN(init="librosa", delta=0.0, s=0.1),
    "pcen_trained_band_loop": lambda: _trained_like(PCEN(trainable=True, per_band=True, n_mels=N_MELS, init="loop")),
    "pcen_trained_zero": lambda: _trained_like(PCEN(trainable=True, init="zero")),
    "stack": lambda: Stack(Decibel(), _trained_like(PowerLearn())),
    "chain": lambda: Chain(MinMax(), Decibel()),
}


@pytest.mark.parametrize("name", sorted(MEL_FRONTENDS))
def test_every_mel_frontend_exports_to_onnx_with_dynamic_frames(name, tmp_path):
    f = MEL_FRONTENDS[name]()
    # export_onnx checks onnxruntime == eager to 1e-5 on inputs 70 and 150 frames longer, and that the graph
    # uses its input; check once more here on a different batch and length, by hand
    path = export_onnx(f, _spec(2, 30), tmp_path / f"{name}.onnx")
    assert check_onnx(path, f, _spec(2, 333, seed=5)) < 1e-5


@pytest.mark.parametrize("name", ["mel", "spec_magnitude"])
def test_waveform_frontends_export_with_dynamic_samples(name, tmp_path):
    f = {"mel": _mel, "spec_magnitude": lambda: Spectrogram(n_fft=128, hop_length=32, power=1.0)}[name]()
    path = export_onnx(f, torch.randn(2, 4000) * 0.1, tmp_path / "w.onnx")
    assert check_onnx(path, f, torch.randn(2, 9999) * 0.1) < 1e-5


@pytest.mark.parametrize("frontend", ["pcen", "waveform_stack"])
def test_classifiers_export_with_their_frontend(frontend, tmp_path):
    f = {"pcen": lambda: _trained_like(PCEN(trainable=True, per_band=True, n_mels=N_MELS, init="loop")),
         "waveform_stack": lambda: Chain(_mel(), Stack(Decibel(), _trained_like(PCEN(trainable=True))))}[frontend]()
    clf = Classifier(f, build("resnet", 3, n_mels=N_MELS, n_frames=32, in_channels=f.out_channels, width=4)).eval()
    waveform = frontend.startswith("waveform")
    example = torch.randn(2, 4000) * 0.1 if waveform else _spec(2, 32)
    path = export_onnx(clf, example, tmp_path / "clf.onnx")
    other = torch.randn(2, 7000) * 0.1 if waveform else _spec(2, 100, seed=3)
    assert check_onnx(path, clf, other) < 1e-5


def test_a_graph_that_ignores_its_input_is_refused(tmp_path):
    class Constant(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(3))

        def forward(self, x):
            return self.w * 2 + 0 * x.shape[-1]

    with pytest.raises(ParameterError, match="ignores its input"):
        export_onnx(Constant(), _spec(), tmp_path / "c.onnx")
    assert not (tmp_path / "c.onnx").exists()


def test_a_graph_that_differs_from_eager_is_refused_before_writing(tmp_path):
    path = export_onnx(LogFloor(), _spec(), tmp_path / "p.onnx")
    with pytest.raises(ParameterError, match="differs from eager"):
        check_onnx(path, LogFloor(floor=5.0), _spec(2, 90))


def test_the_torchscript_onnx_exporter_is_refused_not_frozen(tmp_path):
    with pytest.raises(ParameterError, match="dynamo=True"):
        torch.onnx.export(PCEN(trainable=True), (_spec(),), str(tmp_path / "legacy.onnx"), dynamo=False)


# ------------------------------------------------------------------ item 2: torch.export and torch.compile
def test_torch_export_save_load_round_trip_with_dynamic_frames(tmp_path):
    f = Chain(_mel(), _trained_like(PCEN(trainable=True, per_band=True, n_mels=N_MELS, init="loop")))
    export_program(f, torch.randn(2, 3000) * 0.1, tmp_path / "f.pt2")
    loaded = torch.export.load(tmp_path / "f.pt2").module()
    for n in (4000, 12345):
        x = torch.randn(2, n) * 0.1
        assert relative_error(loaded(x), f(x).detach()) < 1e-5


def test_torch_compile_fullgraph_matches_eager():
    torch._dynamo.reset()
    f = Chain(_mel(), _trained_like(PCEN(trainable=True, per_band=True, n_mels=N_MELS)), Decibel())
    # fullgraph: any graph break is an error; the eager backend skips inductor's code generation (minutes on 2 cores)
    compiled = torch.compile(f, fullgraph=True, dynamic=True, backend="eager")
    for n in (3000, 5000):
        x = torch.randn(2, n) * 0.1
        assert relative_error(compiled(x), f(x)) < 1e-5
    explanation = torch._dynamo.explain(PCEN(init="loop"))(_spec())
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1


# ------------------------------------------------------------------ item 4: settings travel with the weights
@pytest.mark.parametrize("saved, fresh, named", [
    (lambda: PCEN(s=0.5), PCEN, "s=0.5"),
    (lambda: PCEN(init="loop"), PCEN, "init"),
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
    import onnxruntime as ort
    from melfront import load_classifier
    from melfront.cli import main
    out = tmp_path / "model.onnx"
    assert main(["export", str(run_dirs["resnet"]), "-o", str(out)]) == 0
    assert "dynamic number of frames" in capsys.readouterr().out
    clf, _ = load_classifier(run_dirs["resnet"])
    session = ort.InferenceSession(str(out))
    x = torch.rand(3, 16, 77) + 1e-3
    got = session.run(None, {"mel": x.numpy()})[0]
    assert relative_error(got, clf(x).detach()) < 1e-5
    # a backbone with a dense layer over all frames fixes the patch length, and says so
    assert main(["export", str(run_dirs["vgg"]), "-o", str(tmp_path / "vgg.onnx")]) == 0
    assert "exactly 32 frames" in capsys.readouterr().out


def test_cli_export_streaming_runs_patch_by_patch_like_the_whole_stream(run_dirs, tmp_path, capsys):
    import onnxruntime as ort
    from melfront import load_classifier
    from melfront.cli import main
    out = tmp_path / "stream.onnx"
    assert main(["export", str(run_dirs["resnet"]), "-o", str(out), "--streaming"]) == 0
    clf, _ = load_classifier(run_dirs["resnet"])
    session = ort.InferenceSession(str(out))
    stream = torch.rand(1, 16, 96) + 1e-3
    whole = clf.frontend(stream).detach()
    sc = StreamingClassifier(clf)
    state = sc.initial_state(stream[..., 0]).numpy()
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
