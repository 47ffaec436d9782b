"""Every trainable frontend parameterisation (loglearn, power, trainable PCEN; global and per band) keeps
finite parameters, outputs and gradients for 1,000 SGD steps at lr 0.1 on random mel powers with a
realistic dynamic range (1e-10 to 1e6, silent examples too), whichever way the loss pushes: a classifier
loss, and losses that drive every output up or down without limit (the worst case for a learned law).
Non-finite start values are refused at construction."""
import math

import pytest
import torch

from melfront.errors import ParameterError
from melfront.frontends import PCEN, LogLearn, PowerLearn, frontend

N_MELS = 3
SPECS = ["loglearn", "loglearn(per_band=True)", "power", "power(per_band=True)", "pcen(trainable=True)",
         "pcen(trainable=True, per_band=True)"]


@pytest.fixture
def one_thread():
    """Many tiny steps: intra-op threads only add synchronisation on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _batch(g: torch.Generator, step: int) -> torch.Tensor:
    """Mel powers ``(4, N_MELS, 8)``: each example at its own level in [1e-10, 1e6], one silent now and then."""
    scale = 10.0 ** (torch.rand(4, 1, 1, generator=g) * 16 - 10)
    x = torch.rand(4, N_MELS, 8, generator=g) * scale
    if step % 7 == 0:
        x[0] = 0.0
    return x


def _loss(out: torch.Tensor, push: str, head, g: torch.Generator) -> torch.Tensor:
    if push == "up":
        return -out.mean()
    if push == "down":
        return out.mean()
    logits = head(out.mean(-1))
    return torch.nn.functional.cross_entropy(logits, torch.randint(0, 3, (out.shape[0],), generator=g))


@pytest.mark.parametrize("push, seed", [("classify", 0), ("up", 1), ("down", 2), ("up", 3)])
def test_finite_after_1000_sgd_steps_at_lr_0_1(one_thread, push, seed):
    """Every parameterisation trained at once (one loss per module, one step): 1,000 steps each."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    modules = [frontend(spec, n_mels=N_MELS) for spec in SPECS]
    heads = [torch.nn.Linear(N_MELS, 3) for _ in SPECS]
    params = [p for m in modules + heads for p in m.parameters()]
    opt = torch.optim.SGD(params, lr=0.1)
    finite = torch.tensor(True)
    for step in range(1000):
        loss = sum(_loss(m(_batch(g, step)), push, h, g) for m, h in zip(modules, heads))
        opt.zero_grad()
        loss.backward()
        opt.step()
        finite &= torch.isfinite(loss)
    assert finite, f"a loss became NaN or infinite (push={push}, seed={seed})"
    x = torch.cat([_batch(g, 0), torch.full((1, N_MELS, 8), 1e6), torch.full((1, N_MELS, 8), 1e-10)])
    for spec, m in zip(SPECS, modules):
        for name, p in m.named_parameters():
            assert torch.isfinite(p).all(), f"{spec}: {name} = {p.tolist()}"
        m.zero_grad()
        out = m(x)
        assert torch.isfinite(out).all(), spec
        (out.square().mean() - out.mean()).backward()
        for name, p in m.named_parameters():
            assert torch.isfinite(p.grad).all(), f"{spec}: gradient of {name}"
        assert all(math.isfinite(v) for vs in m.learned_parameters().values() for v in vs), spec


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
                                         (PowerLearn, dict(init=0.0)), (PowerLearn, dict(init=-100.0))])
def test_bounds_do_not_change_the_initial_output(cls, kwargs):
    f = cls(**kwargs)
    x = torch.rand(2, 3, 5) + 1e-3
    raw = {name: p.detach() for name, p in f.named_parameters()}
    if cls is LogLearn:
        expected = torch.log(torch.exp(raw["pre_alpha"]) * x + torch.nn.functional.softplus(raw["pre_beta"]))
    else:
        expected = x ** torch.sigmoid(raw["a"])
    assert torch.equal(f(x), expected)


@pytest.mark.parametrize("build", [
    lambda: LogLearn(init_alpha=math.inf), lambda: LogLearn(init_alpha=math.nan),
    lambda: LogLearn(init_beta=math.inf), lambda: LogLearn(init_beta=-math.inf),
    lambda: PowerLearn(init=math.nan), lambda: PowerLearn(init=-math.inf),
    lambda: PCEN(trainable=True, alpha=math.inf), lambda: PCEN(trainable=True, s=math.nan),
    lambda: PCEN(trainable=True, delta=math.inf), lambda: PCEN(trainable=True, r=math.nan),
    lambda: PCEN(trainable=True, eps=math.inf, per_band=True, n_mels=4),
    lambda: frontend("loglearn(init_alpha=1e400)"), lambda: frontend("pcen(trainable=True, alpha=1e400)"),
])
def test_non_finite_start_values_are_refused(build):
    with pytest.raises(ParameterError):
        build()
