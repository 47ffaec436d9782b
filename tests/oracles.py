"""Slow, obviously-correct reference implementations the tests compare melfront against.

Test code, not API: import as ``from oracles import pcen_reference`` (pytest puts tests/ on
``sys.path`` through its rootdir ``conftest.py``; benchmarks insert tests/ themselves).
"""
import numpy as np
import torch

from melfront.functional import PCEN_INITS


def pcen_reference(x, s=0.025, alpha=0.98, delta=2.0, r=0.5, eps=1e-6, initial_state=None,
                   init: str = "first", return_state: bool = False, dtype=torch.float64):
    """PCEN by a frame-by-frame Python loop, in float64 by default: the oracle for :func:`melfront.functional.pcen`.

    Same arguments and results as :func:`melfront.functional.pcen`; slow on purpose (one step per
    frame, the textbook recursion; the compression in its cancellation-free form).
    ``dtype=torch.float32`` gives the loop implementation the benchmarks time.
    """
    x = x.to(dtype) if torch.is_tensor(x) else torch.as_tensor(np.asarray(x, dtype=np.float64)).to(dtype)
    T = x.shape[-1]
    p = [v.to(dtype) if torch.is_tensor(v) else torch.tensor(float(v), dtype=dtype) for v in (s, alpha, delta, r, eps)]
    s_, alpha_, delta_, r_, eps_ = [v.unsqueeze(-1) if v.ndim == 1 else v for v in p]
    s_vec = s_.squeeze(-1) if s_.ndim == 2 else s_
    a = 1 - s_vec
    if initial_state is not None:
        st = initial_state.to(dtype) if torch.is_tensor(initial_state) else torch.as_tensor(initial_state, dtype=dtype)
        state = torch.broadcast_to(st, x.shape[:-1]).clone()
    elif init == "zero":
        state = torch.zeros(x.shape[:-1], dtype=dtype)
    elif init == "first":
        state = x[..., 0].clone()
    elif init == "librosa":
        state = torch.ones(x.shape[:-1], dtype=dtype)
    elif init == "loop":
        m0 = torch.zeros(x.shape[:-1], dtype=dtype)
        for t in range(T):
            m0 = a * m0 + s_vec * x[..., t]
        state = m0 / (1 - a ** T)
    else:
        raise ValueError(f"init must be one of {', '.join(PCEN_INITS)}, got {init!r}")
    cols = []
    for t in range(T):
        state = a * state + s_vec * x[..., t]
        cols.append(state)
    M = torch.stack(cols, dim=-1)
    G = x / (eps_ + M) ** alpha_
    # (G + delta)^r - delta^r, written so that it does not cancel when G << delta (even float64
    # would lose ~8 digits at G / delta = 1e-8); delta == 0 gives G^r.
    safe = torch.where(delta_ > 0, delta_, torch.ones_like(delta_))
    out = torch.where(delta_ > 0, safe ** r_ * torch.expm1(r_ * torch.log1p(G / safe)), G ** r_)
    if return_state:
        return out, state
    return out
