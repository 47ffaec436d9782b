"""Classifier backbones: parameter counts, shapes, channels, gradients, build() and Classifier."""
import pytest
import torch
from torch import nn

from melfront import functional as F
from melfront import models
from melfront.errors import MelfrontError, ModelStateError, ParameterError
from melfront.models import Classifier, build

NAMES = ["sbcnn", "vgg", "timbre", "piczak", "protonet", "resnet"]
# Small-but-legal options so that shape/gradient tests stay fast.
FAST = {"piczak": {"hidden": 32}, "resnet": {"width": 8}, "protonet": {"width": 8}, "vgg": {}, "sbcnn": {},
        "timbre": {}}
# Small legal input sizes (n_mels, n_frames) for the tests that do not need the default 128 x 128.
SMALL = {"sbcnn": (40, 100), "vgg": (32, 32), "timbre": (108, 12), "piczak": (60, 41), "protonet": (32, 32),
         "resnet": (32, 32)}


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


def conv(cin, cout, kh, kw, bias=True):
    return cin * cout * kh * kw + (cout if bias else 0)


def dense(n_in, n_out):
    return n_in * n_out + n_out


def ready(m: nn.Module, name: str) -> nn.Module:
    """ProtoNet needs prototypes before forward(); give it some from random support patches."""
    if name == "protonet":
        with torch.no_grad():
            m.eval()
            support = torch.randn(m.n_classes, m.in_channels, m.n_mels, m.n_frames)
            m.set_prototypes(m.embed(support), torch.arange(m.n_classes))
            m.train()
    return m


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --------------------------------------------------------------------------------------------
# Parameter counts
# --------------------------------------------------------------------------------------------
class TestParameterCounts:
    def test_sbcnn_published_count(self):
        assert n_params(build("sbcnn", 10, n_mels=128, n_frames=128)) == 241_434  # Pons et al. 2019

    def test_sbcnn_input_bn_adds_scale_and_shift(self):
        assert n_params(build("sbcnn", 10, input_bn=True)) == 241_434 + 2

    def test_timbre_published_count(self):
        assert n_params(build("timbre", 10)) == 7_570  # Pons et al. 2019
        # and it scales as C filters of 108 x 7 (+ bias) per input channel
        assert n_params(build("timbre", 15, in_channels=2)) == 15 * (108 * 7 * 2 + 1)

    def test_vgg32_close_to_published_42_8k(self):
        n = n_params(build("vgg", 10))
        # input BN (2) + 5 x [3x3 conv + BN (2 x 32)] + dense from 32 x 4 x 4
        expected = 2 + conv(1, 32, 3, 3) + 4 * conv(32, 32, 3, 3) + 5 * 64 + dense(32 * 4 * 4, 10)
        assert n == expected == 42_764
        assert abs(n - 42_800) / 42_800 < 0.005

    def test_vgg128(self):
        expected = 2 + conv(1, 128, 3, 3) + 4 * conv(128, 128, 3, 3) + 5 * 256 + dense(128 * 4 * 4, 10)
        assert n_params(build("vgg", 10, width=128)) == expected

    def test_protonet_is_vgg128_to_10_dims(self):
        m = build("protonet", 50)  # the class count only sets the number of prototypes
        expected = 2 + conv(1, 128, 3, 3) + 4 * conv(128, 128, 3, 3) + 5 * 256 + dense(128 * 4 * 4, 10)
        assert n_params(m) == expected
        assert m.prototypes.shape == (50, 10)

    def test_piczak_short_two_channels(self):
        m = build("piczak", 10, in_channels=1, deltas=True)  # 60 x 41, Piczak's 2-channel setting
        # conv 80@57x6 -> 4 x 36; pool 4x3/1x3 -> 1 x 12; conv 1x3 -> 1 x 10; pool 1x3/1x3 -> 1 x 3
        expected = (conv(2, 80, 57, 6) + conv(80, 80, 1, 3) + dense(80 * 3, 5000) + dense(5000, 5000)
                    + dense(5000, 10))
        assert (m.n_mels, m.n_frames) == (60, 41)
        assert n_params(m) == expected

    def test_piczak_long_segments(self):
        # 101 frames: conv -> 96, pool -> 32, conv -> 30, pool -> 10
        m = build("piczak", 10, n_mels=60, n_frames=101, hidden=16)
        assert n_params(m) == conv(1, 80, 57, 6) + conv(80, 80, 1, 3) + dense(800, 16) + dense(16, 16) + dense(16, 10)

    def test_resnet18_published_count(self):
        # He et al. 2016 ResNet-18 on 3-channel images with 1000 classes: 11,689,512 parameters
        assert n_params(build("resnet", 1000, in_channels=3)) == 11_689_512
        # one input channel drops 64 x 7 x 7 x 2 stem weights; 10 classes drop 513 x 990
        assert n_params(build("resnet", 10, in_channels=1)) == 11_689_512 - 64 * 49 * 2 - 513 * 990


# --------------------------------------------------------------------------------------------
# Shapes and channels
# --------------------------------------------------------------------------------------------
class TestShapes:
    @pytest.mark.parametrize("name", NAMES)
    def test_default_input(self, name):
        m = ready(build(name, 7, **FAST[name]), name)
        x = torch.randn(3, 1, m.n_mels, m.n_frames)
        assert m(x).shape == (3, 7)

    @pytest.mark.parametrize("name", NAMES)
    def test_three_channels_and_other_sizes(self, name):
        n_mels, n_frames = {"piczak": (64, 101), "timbre": (120, 9), "sbcnn": (36, 104)}.get(name, (48, 40))
        m = ready(build(name, 4, n_mels=n_mels, n_frames=n_frames, in_channels=3, **FAST[name]), name)
        assert m(torch.randn(2, 3, n_mels, n_frames)).shape == (2, 4)

    @pytest.mark.parametrize("name", NAMES)
    def test_wrong_channel_count_is_refused(self, name):
        n_mels, n_frames = SMALL[name]
        m = ready(build(name, 4, n_mels=n_mels, n_frames=n_frames, in_channels=3, **FAST[name]), name)
        with pytest.raises(ParameterError, match="in_channels=3"):
            m(torch.randn(2, 1, n_mels, n_frames))

    def test_resnet_takes_any_size(self):
        m = build("resnet", 5, n_mels=16, n_frames=9, in_channels=2, width=4).eval()
        for shape in [(16, 9), (40, 70), (3, 3)]:
            assert m(torch.randn(1, 2, *shape)).shape == (1, 5)

    @pytest.mark.parametrize("name,n_mels,n_frames,axis,minimum", [
        ("timbre", 100, 128, "n_mels", 108),
        ("timbre", 128, 6, "n_frames", 7),
        ("sbcnn", 31, 128, "n_mels", 32),
        ("vgg", 128, 31, "n_frames", 32),
        ("protonet", 16, 128, "n_mels", 32),
        ("piczak", 59, 41, "n_mels", 60),
        ("piczak", 60, 19, "n_frames", 20),
    ])
    def test_too_small_input_is_a_clear_error(self, name, n_mels, n_frames, axis, minimum):
        with pytest.raises(ParameterError, match=rf"{axis} >= {minimum}, got"):
            build(name, 10, n_mels=n_mels, n_frames=n_frames)

    @pytest.mark.parametrize("name,n_mels,n_frames", [
        ("timbre", 108, 7), ("sbcnn", 32, 100), ("vgg", 32, 32), ("piczak", 60, 20)])
    def test_smallest_accepted_input_runs(self, name, n_mels, n_frames):
        m = build(name, 3, n_mels=n_mels, n_frames=n_frames, **FAST[name]).eval()
        assert m(torch.randn(2, 1, n_mels, n_frames)).shape == (2, 3)


# --------------------------------------------------------------------------------------------
# min_input: what each backbone says it needs, checked by building it
# --------------------------------------------------------------------------------------------
# Options that change the minimum, beside the defaults.
MIN_OPTIONS = [(name, {}) for name in NAMES] + [
    ("vgg", {"n_blocks": 3}), ("timbre", {"filter_mels": 34, "filter_frames": 5}),
    ("piczak", {"deltas": True, "delta_width": 25}), ("piczak", {"deltas": True}), ("resnet", {"layers": (1, 1, 1, 1)})]


class TestMinInput:
    @pytest.mark.parametrize("name,options", MIN_OPTIONS)
    def test_minimum_builds_and_runs_and_one_less_is_refused(self, name, options):
        n_mels, n_frames = models.min_input(name, **options)
        assert (n_mels, n_frames) == models.MODELS[name][0].min_input(**options)
        opts = {**FAST[name], **options}
        m = ready(build(name, 3, n_mels=n_mels, n_frames=n_frames, **opts).eval(), name)
        assert m(torch.randn(2, 1, n_mels, n_frames)).shape == (2, 3)
        for axis, smaller in (("n_mels", (n_mels - 1, n_frames)), ("n_frames", (n_mels, n_frames - 1))):
            if min(smaller) < 1:
                continue  # resnet takes 1 x 1: nothing smaller to refuse (0 is not a size)
            with pytest.raises(ParameterError, match=rf"needs {axis} >= {dict(n_mels=n_mels, n_frames=n_frames)[axis]}"):
                build(name, 3, n_mels=smaller[0], n_frames=smaller[1], **opts)

    def test_known_minima(self):
        assert {n: models.min_input(n) for n in NAMES} == {
            "sbcnn": (32, 100), "vgg": (32, 32), "timbre": (108, 7), "piczak": (60, 20), "protonet": (32, 32),
            "resnet": (1, 1)}
        assert models.min_input("piczak", deltas=True, delta_width=25) == (60, 25)

    def test_minimum_ignores_shape_and_allocates_nothing(self):
        # options that do not change the minimum are accepted; no network is built (a 5000 x 5000 layer would be)
        assert models.min_input("piczak", hidden=5000, dropout=0.1) == (60, 20)

    @pytest.mark.parametrize("name,options,match", [
        ("vgg", {"widht": 8}, "widht"), ("vgg", {"n_blocks": 0}, "n_blocks"),
        ("timbre", {"filter_mels": 2.5}, "filter_mels"), ("piczak", {"deltas": True, "delta_width": 4}, "delta_width"),
        ("alexnet", {}, "unknown model")])
    def test_bad_options_are_parameter_errors(self, name, options, match):
        with pytest.raises(ParameterError, match=match):
            models.min_input(name, **options)


# --------------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------------
def first_weight(m: nn.Module) -> torch.Tensor:
    return next(mod.weight for mod in m.modules() if isinstance(mod, (nn.Conv2d, nn.Linear)))


@pytest.mark.parametrize("name", NAMES)
def test_gradient_reaches_first_layer_and_input(name):
    n_mels, n_frames = SMALL[name]
    m = ready(build(name, 5, n_mels=n_mels, n_frames=n_frames, in_channels=2, **FAST[name]), name)
    x = torch.randn(4, 2, n_mels, n_frames, requires_grad=True)
    loss = nn.functional.cross_entropy(m(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    g = first_weight(m).grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    assert x.grad is not None and x.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------------
# Model-specific behaviour
# --------------------------------------------------------------------------------------------
class TestTimbre:
    def test_logits_are_global_max_of_filter_responses(self):
        m = build("timbre", 3, n_mels=110, n_frames=20).eval()
        x = torch.randn(2, 1, 110, 20)
        z = nn.functional.conv2d(m.input_bn(x), m.conv.weight, m.conv.bias)
        assert torch.allclose(m(x), z.flatten(2).max(-1).values)

    def test_time_shift_of_an_event_does_not_change_logits(self):
        m = build("timbre", 4, n_mels=108, n_frames=40).eval()
        event = torch.randn(1, 1, 108, 7)
        a, b = torch.zeros(1, 1, 108, 40), torch.zeros(1, 1, 108, 40)
        a[..., 3:10], b[..., 25:32] = event, event
        assert torch.allclose(m(a), m(b), atol=1e-6)


class TestPiczakDeltas:
    def test_deltas_option_stacks_deltas_as_second_channel(self):
        with_d = build("piczak", 6, deltas=True, hidden=16).eval()
        plain = build("piczak", 6, in_channels=2, hidden=16).eval()
        plain.load_state_dict(with_d.state_dict())
        x = torch.randn(3, 1, 60, 41)
        stacked = torch.cat([x, F.deltas(x, width=9)], dim=1)
        assert torch.allclose(with_d(x), plain(stacked), atol=1e-5)

    def test_deltas_need_enough_frames(self):
        with pytest.raises(ParameterError, match="delta_width"):
            build("piczak", 6, n_frames=41, deltas=True, delta_width=4)


class TestProtoNet:
    def test_forward_without_prototypes_is_refused(self):
        m = build("protonet", 3, n_mels=32, n_frames=32, width=4)
        with pytest.raises(ModelStateError, match="set_prototypes") as err:
            m(torch.randn(1, 1, 32, 32))
        assert isinstance(err.value, RuntimeError) and isinstance(err.value, MelfrontError)  # both catch it

    def test_logits_are_minus_mean_squared_distance_to_class_means(self):
        m = build("protonet", 3, n_mels=32, n_frames=32, width=4).eval()
        support, labels = torch.randn(7, 1, 32, 32), torch.tensor([0, 0, 1, 2, 2, 2, 1])
        query = torch.randn(4, 1, 32, 32)
        es, eq = m.embed(support), m.embed(query)
        protos = torch.stack([es[labels == k].mean(0) for k in range(3)])
        expected = -((eq[:, None, :] - protos[None]) ** 2).mean(-1)
        assert torch.allclose(m.logits(query, support, labels), expected, atol=1e-5)
        m.set_prototypes(es, labels)
        assert torch.allclose(m(query), expected, atol=1e-5)

    def test_query_nearest_to_a_prototype_gets_that_class(self):
        m = build("protonet", 3, n_mels=32, n_frames=32, width=4).eval()
        support = torch.randn(3, 1, 32, 32)
        m.set_prototypes(m.embed(support), torch.tensor([2, 0, 1]))
        assert m(support).argmax(1).tolist() == [2, 0, 1]

    def test_episode_gradient_flows_through_support_and_query(self):
        m = build("protonet", 2, n_mels=32, n_frames=32, width=4)
        s = torch.randn(4, 1, 32, 32, requires_grad=True)
        q = torch.randn(4, 1, 32, 32, requires_grad=True)
        loss = nn.functional.cross_entropy(m.logits(q, s, torch.tensor([0, 1, 0, 1])), torch.tensor([0, 1, 1, 0]))
        loss.backward()
        assert s.grad.abs().sum() > 0 and q.grad.abs().sum() > 0

    def test_prototypes_travel_in_state_dict(self):
        a = build("protonet", 3, n_mels=32, n_frames=32, width=4).eval()
        a.set_prototypes(torch.randn(3, 10), torch.tensor([0, 1, 2]))
        b = build("protonet", 3, n_mels=32, n_frames=32, width=4).eval()
        b.load_state_dict(a.state_dict())
        x = torch.randn(2, 1, 32, 32)
        assert torch.equal(a(x), b(x))

    @pytest.mark.parametrize("labels,match", [
        ([0, 0, 1], "none for class"), ([0, 1, 3], r"\[0, 2\]"), ([0.0, 1.0, 2.0], "integer")])
    def test_bad_support_labels(self, labels, match):
        m = build("protonet", 3, n_mels=32, n_frames=32, width=4)
        with pytest.raises(ParameterError, match=match):
            m.set_prototypes(torch.randn(3, 10), torch.tensor(labels))


# --------------------------------------------------------------------------------------------
# Classifier
# --------------------------------------------------------------------------------------------
class MelIdentity(nn.Identity):
    input_kind = "mel"


class LogMel(nn.Module):
    """A tiny learnable frontend: log(alpha * x + 1)."""
    input_kind = "mel"

    def __init__(self):
        super().__init__()
        self.log_alpha = nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        return torch.log1p(self.log_alpha.exp() * x)


class FakeWaveformFrontend(nn.Module):
    input_kind = "waveform"
    out_channels = 2

    def forward(self, wav):  # (batch, time) -> (batch, 2, 40, time // 100)
        frames = wav.unfold(-1, 100, 100).pow(2).mean(-1)  # (batch, frames)
        return frames[:, None, None, :].expand(-1, 2, 40, -1)


class TestClassifier:
    def test_mel_frontend_adds_channel_axis(self):
        clf = Classifier(MelIdentity(), build("sbcnn", 10))
        assert clf.input_kind == "mel" and clf.n_classes == 10
        x = torch.rand(2, 128, 128)
        assert clf.features(x).shape == (2, 1, 128, 128)
        assert clf(x).shape == (2, 10)
        clf.eval()
        assert torch.equal(clf(x), clf.backbone(x.unsqueeze(1)))

    def test_learnable_frontend_gets_gradient(self):
        clf = Classifier(LogMel(), build("timbre", 3, n_mels=108, n_frames=16))
        loss = nn.functional.cross_entropy(clf(torch.rand(4, 108, 16)), torch.tensor([0, 1, 2, 0]))
        loss.backward()
        assert clf.frontend.log_alpha.grad is not None and clf.frontend.log_alpha.grad != 0

    def test_waveform_frontend_with_stacked_channels(self):
        clf = Classifier(FakeWaveformFrontend(), build("vgg", 4, n_mels=40, n_frames=32, in_channels=2))
        assert clf.input_kind == "waveform"
        assert clf(torch.randn(3, 3200)).shape == (3, 4)

    def test_channel_mismatch_is_refused(self):
        with pytest.raises(ParameterError, match="2 channel"):
            Classifier(FakeWaveformFrontend(), build("vgg", 4, n_mels=40, n_frames=32, in_channels=1))

    def test_frontend_without_input_kind_is_refused(self):
        with pytest.raises(ParameterError, match="input_kind"):
            Classifier(nn.Identity(), build("sbcnn", 10))


# --------------------------------------------------------------------------------------------
# build() and MODELS
# --------------------------------------------------------------------------------------------
class TestBuild:
    def test_unknown_name_lists_the_models(self):
        with pytest.raises(ParameterError) as err:
            build("alexnet", 10)
        for name in NAMES:
            assert name in str(err.value)

    def test_unknown_option_names_it(self):
        with pytest.raises(ParameterError, match="widht"):
            build("vgg", 10, widht=128)

    @pytest.mark.parametrize("kwargs,match", [
        ({"n_classes": 0}, "n_classes"), ({"n_classes": 2.5}, "n_classes"),
        ({"n_classes": 3, "in_channels": 0}, "in_channels"), ({"n_classes": 3, "n_mels": -1}, "n_mels")])
    def test_bad_shape_arguments(self, kwargs, match):
        with pytest.raises(ParameterError, match=match):
            build("sbcnn", **kwargs)

    def test_registry_has_every_model_with_settings(self):
        assert sorted(models.MODELS) == sorted(NAMES)
        keys = {"optimizer", "lr", "momentum", "nesterov", "weight_decay", "batch_size", "epochs",
                "patch_frames", "n_mels", "clip_norm", "sampling", "source"}
        for name, (builder, description, settings) in models.MODELS.items():
            assert callable(builder) and description
            assert keys <= set(settings), name
            assert settings["optimizer"] in ("sgd", "adam")
            # the paper's patch size is what build() uses by default, and it builds
            m = build(name, 3, **FAST[name])
            assert (m.n_mels, m.n_frames) == (settings["n_mels"], settings["patch_frames"])

    def test_default_settings_is_a_copy(self):
        s = models.default_settings("vgg")
        s["lr"] = 123.0
        assert models.MODELS["vgg"][2]["lr"] != 123.0

    def test_kernel_weights(self):
        m = build("sbcnn", 10, input_bn=True)
        dense = models.kernel_weights(m, "dense")
        everything = models.kernel_weights(m)
        assert [w.shape for w in dense] == [(64, 2400), (10, 64)]
        assert len(everything) == 5 and all(w.ndim in (2, 4) for w in everything)  # no biases, no BN


def test_input_conv_gradients_equal_conv2d():
    """InputConv2d's faster input gradient gives autograd's values (float64 gradcheck and a float32 comparison)."""
    from melfront.models.classifier import InputConv2d, _InputConv2dFunction
    torch.manual_seed(0)
    for kw in (dict(), dict(stride=2, padding=3), dict(padding=1, dilation=2)):
        conv = InputConv2d(2, 3, 3, **kw).double()
        x = torch.randn(2, 2, 9, 11, dtype=torch.float64, requires_grad=True)
        fn = lambda a, w, b: _InputConv2dFunction.apply(a, w, b, conv.stride, conv.padding, conv.dilation, conv.groups)
        assert torch.autograd.gradcheck(fn, (x, conv.weight, conv.bias))
        ref = torch.nn.Conv2d(2, 3, 3, **kw)
        fast = InputConv2d(2, 3, 3, **kw)
        fast.load_state_dict(ref.state_dict())
        x32 = torch.randn(4, 2, 17, 13, requires_grad=True)
        g = torch.randn_like(ref(x32))
        a = torch.autograd.grad(ref(x32), (x32, ref.weight, ref.bias), g)
        b = torch.autograd.grad(fast(x32), (x32, fast.weight, fast.bias), g)
        for p, q in zip(a, b):
            torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5)
