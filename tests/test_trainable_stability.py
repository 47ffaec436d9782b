"""Every trainable frontend parameterisation (loglearn, power, trainable PCEN; global and per band) keeps
finite parameters, outputs and gradients for 1,000 SGD steps at lr 0.1 on random mel powers with a
realistic dynamic range (1e-10 to 1e6, silent examples too), whichever way the loss pushes: a classifier
loss, and losses that drive every output up or down without limit (the worst case for a learned law).
Non-finite start values are refused at construction."""
import math

import pytest
import torch

from melfront import functional as F
from melfront.errors import ParameterError
from melfront.frontends import PCEN, LogLearn, PowerLearn, frontend

N_MELS = 4
# (spec, push): "up" / "down" drive every output up / down without limit; "split" pushes half the bands
# of a per-band module up and half down (its bands learn independently: both directions in one module).
RUNS = [("loglearn", "up"), ("loglearn", "down"), ("power", "up"), ("power", "down"),
        ("pcen(trainable=True)", "up"), ("pcen(trainable=True)", "down"), ("loglearn(per_band=True)", "split"),
        ("power(per_band=True)", "split"), ("pcen(trainable=True, per_band=True)", "split")]


def _batch(g: torch.Generator, step: int) -> torch.Tensor:
    """Mel powers ``(4, N_MELS, 8)``: each example at its own level in [1e-10, 1e6], one silent now and then."""
    scale = 10.0 ** (torch.rand(4, 1, 1, generator=g) * 16 - 10)
    x = torch.rand(4, N_MELS, 8, generator=g) * scale
    if step % 7 == 0:
        x[0] = 0.0
    return x


def _loss(out: torch.Tensor, push: str) -> torch.Tensor:
    if push == "up":
        return -out.mean()
    if push == "down":
        return out.mean()
    half = N_MELS // 2
    return out[..., half:, :].mean() - out[..., :half, :].mean()


def _train(modules, loss_of, seed: int, steps: int = 1000, extra=()) -> None:
    """``steps`` SGD steps at lr 0.1 (of the modules' and ``extra`` parameters) on the sum of
    ``loss_of(index, output, generator)`` over the modules; asserts the loss stayed finite."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD([p for m in modules for p in m.parameters()] + list(extra), lr=0.1)
    finite = torch.tensor(True)
    for step in range(steps):
        x = _batch(g, step)
        loss = sum(loss_of(k, m(x), g) for k, m in enumerate(modules))
        opt.zero_grad()
        loss.backward()
        opt.step()
        finite &= torch.isfinite(loss)
    assert finite, f"a loss became NaN or infinite (seed={seed})"


def _assert_finite(name: str, m, g: torch.Generator) -> None:
    """Finite parameters, and finite outputs and gradients on random levels, silence and the extremes."""
    for pname, p in m.named_parameters():
        assert torch.isfinite(p).all(), f"{name}: {pname} = {p.tolist()}"
    x = torch.cat([_batch(g, 0), torch.full((1, N_MELS, 8), 1e6), torch.full((1, N_MELS, 8), 1e-10)])
    m.zero_grad()
    out = m(x)
    assert torch.isfinite(out).all(), name
    (out.square().mean() - out.mean()).backward()
    for pname, p in m.named_parameters():
        assert torch.isfinite(p.grad).all(), f"{name}: gradient of {pname}"
    assert all(math.isfinite(v) for vs in m.learned_parameters().values() for v in vs), name


def test_every_parameterisation_stays_finite_for_1000_sgd_steps_at_lr_0_1_pushed_both_ways(one_thread):
    """Every parameterisation, global and per band, trained at once (one loss each, one SGD step)."""
    modules = [frontend(spec, n_mels=N_MELS) for spec, _ in RUNS]
    _train(modules, lambda k, out, g: _loss(out, RUNS[k][1]), seed=0)
    g = torch.Generator().manual_seed(100)
    for (spec, push), m in zip(RUNS, modules):
        _assert_finite(f"{spec} pushed {push}", m, g)
    assert modules[0].alpha.item() > 1e17 and modules[1].beta.item() < 1e-17  # both loglearn bounds reached


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_global_loglearn_under_a_classifier_loss_stays_finite(one_thread, seed):
    """The issue's case: global loglearn under a classifier, 1,000 steps at lr 0.1, several seeds."""
    torch.manual_seed(seed)
    f = frontend("loglearn", n_mels=N_MELS)
    head = torch.nn.Linear(N_MELS * 8, 3)
    start = head.weight.detach().clone()

    def loss_of(k, out, g):
        logits = head(out.flatten(1))
        return torch.nn.functional.cross_entropy(logits, torch.randint(0, 3, (out.shape[0],), generator=g))

    _train([f], loss_of, seed=seed, extra=head.parameters())
    _assert_finite(f"loglearn seed {seed}", f, torch.Generator().manual_seed(seed))
    assert not torch.equal(head.weight, start) and f.pre_alpha.item() != 7.0  # both were trained


def test_pushed_loglearn_stops_at_its_bounds_and_stays_finite():
    """Unbounded, global loglearn's alpha overflowed to inf (NaN outputs) within a few hundred steps
    of a loss that pushes outputs up; bounded, it stops at exp(40) and the gradient there is 0."""
    f = LogLearn()
    opt = torch.optim.SGD(f.parameters(), lr=10.0)
    x = torch.rand(2, 4, 8) * 1e4
    for _ in range(200):
        opt.zero_grad()
        (-f(x).mean()).backward()
        opt.step()
    assert f.alpha.item() == pytest.approx(math.exp(40.0), rel=1e-5)
    assert torch.isfinite(f(x)).all() and f.pre_alpha.grad.item() == 0.0
    f = LogLearn()
    opt = torch.optim.SGD(f.parameters(), lr=10.0)
    for _ in range(200):  # pushed down: alpha and beta stop above 0, silence stays finite
        opt.zero_grad()
        f(torch.cat([x, torch.zeros(1, 4, 8)])).mean().backward()
        opt.step()
    assert f.beta.item() > 0 and torch.isfinite(f(torch.zeros(1, 4, 8))).all()


@pytest.mark.parametrize("cls, kwargs", [(LogLearn, dict(init_alpha=7.0, init_beta=1.0)),
                                         (LogLearn, dict(init_alpha=88.0, init_beta=80.0)),
                                         (LogLearn, dict(init_alpha=-100.0, init_beta=-100.0)),
                                         (PowerLearn, dict(init_a=0.0)), (PowerLearn, dict(init_a=-80.0))])
def test_bounds_do_not_change_the_initial_output(cls, kwargs):
    f = cls(**kwargs)
    x = torch.rand(2, 3, 5) + 1e-3
    raw = {name: p.detach() for name, p in f.named_parameters()}
    if cls is LogLearn:  # the unbounded transforms of the raw parameters
        expected = F.log_offset(x, torch.exp(raw["pre_alpha"]), torch.nn.functional.softplus(raw["pre_beta"]))
    else:
        expected = F.power_compress(x, torch.sigmoid(raw["a"]))
    assert torch.equal(f(x), expected)


@pytest.mark.parametrize("build", [
    lambda: LogLearn(init_alpha=math.inf), lambda: LogLearn(init_alpha=math.nan),
    lambda: LogLearn(init_beta=math.inf), lambda: LogLearn(init_beta=-math.inf),
    lambda: PowerLearn(init_a=math.nan), lambda: PowerLearn(init_a=-math.inf),
    lambda: PCEN(trainable=True, alpha=math.inf), lambda: PCEN(trainable=True, s=math.nan),
    lambda: PCEN(trainable=True, delta=math.inf), lambda: PCEN(trainable=True, r=math.nan),
    lambda: PCEN(trainable=True, eps=math.inf, per_band=True, n_mels=4),
    lambda: frontend("loglearn(init_alpha=1e400)"), lambda: frontend("pcen(trainable=True, alpha=1e400)"),
])
def test_non_finite_start_values_are_refused(build):
    with pytest.raises(ParameterError):
        build()
