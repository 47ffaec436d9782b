"""What the model and frontend docs promise: Piczak's shapes and its deltas option (model docstring and
`melfront train --help`), each backbone's stated minimum input, and PowerLearn's sign convention against the
Merlin blog's form."""
import math
import re

import pytest
import torch

from melfront.cli import build_parser
from melfront.cli.options import settings_from_args, split_settings
from melfront.errors import ParameterError
from melfront.frontends import PowerLearn
from melfront.models import MODELS, PiczakCNN, min_input
from melfront.train import build_classifier, resolve_settings

MEL = dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=60)
DELTAS_SET = 'model_options={"deltas": true}'


def _train_help() -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return " ".join(sub.choices["train"].format_help().split())


def _train_args(*extra):
    return build_parser().parse_args(["train", "--dataset", "synth", *extra])


@pytest.mark.parametrize("frames, last_map", [(41, (80, 1, 3)), (101, (80, 1, 10))])
def test_piczak_shapes_are_the_documented_ones(frames, last_map):
    net = PiczakCNN(10, n_frames=frames, hidden=8)
    z = net.features(torch.rand(2, 1, 60, frames))
    assert tuple(z.shape[1:]) == last_map
    assert net.head[1].in_features == math.prod(last_map)
    doc = " ".join(PiczakCNN.__doc__.split())
    assert f"80 x 1 x {last_map[-1]} ({math.prod(last_map)} values" in doc
    assert "80 x 1 x 9" not in doc
    assert ">>> " in PiczakCNN.__doc__  # the shapes are a doctest, run by pytest --doctest-modules


def test_train_help_names_the_piczak_deltas_option_as_it_works():
    text = _train_help()
    assert "deltas" in text and "Piczak 2015" in text
    assert f"--set '{DELTAS_SET}'" in text
    assert "support=fixed" in text


def test_the_documented_set_turns_the_deltas_channel_on():
    for doc in (_train_help(), " ".join(PiczakCNN.__doc__.split())):
        assert DELTAS_SET in doc
    given = settings_from_args(_train_args("--set", DELTAS_SET))
    _, train = split_settings(given)
    assert train == {"model_options": {"deltas": True}}
    opts = resolve_settings("piczak", train)["model_options"]
    channels = {}
    for options in ({"hidden": 8}, {**opts, "hidden": 8}):
        clf, _ = build_classifier("db", "piczak", 3, MEL, 41, options)
        conv = clf.backbone.features[0] if hasattr(clf.backbone, "features") else clf.backbone.net.features[0]
        channels[bool(options.get("deltas"))] = conv.in_channels
        assert clf(torch.rand(2, 60, 41) + 1e-3).shape == (2, 3)
    assert channels == {False: 1, True: 2}


def test_a_dotted_set_key_is_refused_not_ignored():
    with pytest.raises(ParameterError, match="model_options.deltas"):
        settings_from_args(_train_args("--set", "model_options.deltas=true"))


def test_powerlearn_sign_convention_against_the_blog_form():
    x = torch.tensor([[0.25, 4.0, 9.0]])
    for a in (-1.5, 0.0, 2.0):
        melfront_out = PowerLearn(init_a=a)(x)
        blog_a = -a  # the blog writes S^(1 / (1 + e^a))
        blog_out = x ** (1.0 / (1.0 + math.exp(blog_a)))
        torch.testing.assert_close(melfront_out, blog_out)
    torch.testing.assert_close(PowerLearn(init_a=0.0)(x), x.sqrt())  # init 0: the square root in both
    doc = " ".join(PowerLearn.__doc__.split())
    assert "1 / (1 + e^{-a})" in doc and "S^{1 / (1 + e^{a})}" in doc and "init_a=-a_blog" in doc


@pytest.mark.parametrize("name", sorted(MODELS))
def test_each_backbone_states_its_minimum_input_as_min_input_gives_it(name):
    """The "at least A mels x B frames" (or "A x B") of each backbone's docstring is what min_input says."""
    cls = MODELS[name][0]
    doc = " ".join(cls.__doc__.split())
    stated = re.findall(r"[Aa]t least (\d+) (?:mels )?x (\d+)", doc)
    expected = min_input(name)
    if name in ("vgg", "timbre"):  # stated as formulas of their options: 2 ** n_blocks, filter_mels x filter_frames
        assert expected == ((2 ** 5, 2 ** 5) if name == "vgg" else (108, 7))
    else:
        assert stated and {(int(a), int(b)) for a, b in stated} == {expected}, (name, stated, expected)
    assert f"{cls.__name__}.min_input()" in cls.__doc__  # and its example shows it
