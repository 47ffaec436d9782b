r"""A start for the PCEN smoother that is robust to quiet openings: a per-band quantile of the first frames.

PCEN (Wang et al. 2017, "Trainable frontend for robust and far-field keyword spotting") divides each
frame by a smoothed energy :math:`M[t] = (1 - s) M[t-1] + s X[t]`, so its first second depends on the
start :math:`M[-1]`. Measured on the ESC-50 clips that open quietly or with a fade-in (issue 14 item 5,
``benchmarks/pcen_start_modes.py``): ``"zero"`` makes the first second bright (the quiet background is
amplified until :math:`M` has caught up, :math:`\ln(10)/s` frames to within 10 %), and ``"first"``
(:math:`M[-1] = X[0]`, one quiet frame, far below the level that follows) is bright in the same way;
``"librosa"`` (:math:`M[-1] = 1`) is dark for seconds when the mel power is far below 1 (melfront's
power of audio in [-1, 1]) and the same as ``"zero"`` when it is far above (audio scaled as integers);
``"loop"`` (the periodic steady state) borrows the clip's later, louder part for its start, so a quiet
opening comes out dark, and it needs the whole clip.

:func:`robust_initial_state` starts the smoother in the steady state of a robust level of the
opening: :math:`M[-1]_b = Q_q(X_b[0], \dots, X_b[n-1])`, the ``q``-quantile over the first
``n = min(frames, T)`` frames of each band ``b``. For a stationary opening that is the level the
smoother would have reached had the sound run before the clip; a quantile (not the mean) is not
pulled up by a loud event in the opening. In narrow low bands the power of noise is close to
exponentially distributed, whose median is :math:`\ln 2 \approx 0.69` times its mean: there the median
start is a little low and the first frames up to :math:`0.69^{-\alpha} \approx 1.4` times too bright,
decaying with the smoother's time constant. It needs only the first ``frames`` frames, so a stream
can use it after a delay of ``frames`` frames (the "loop" start needs the whole clip).

>>> import torch
>>> x = torch.tensor([[[1.0, 9.0, 2.0, 3.0]]])
>>> robust_initial_state(x, frames=3).tolist()     # median of 1, 9, 2
[[2.0]]
"""
from __future__ import annotations

import torch

from ..checks import positive_int, probability
from ..errors import ParameterError
from .params import check_spec

__all__ = ["ROBUST_START_FRAMES", "robust_initial_state", "opening_quantile"]

#: Default number of opening frames of :func:`robust_initial_state`: 40 = :math:`1/s`, the smoother's
#: time constant for the default ``s = 0.025`` (0.93 s at 22050 Hz with hop 512, 0.4 s at 16 kHz, hop 160).
ROBUST_START_FRAMES = 40


def robust_initial_state(x: torch.Tensor, frames: int = ROBUST_START_FRAMES, q: float = 0.5) -> torch.Tensor:
    r"""Smoother start :math:`M[-1]` ``(..., n_mels)``: per band, the ``q``-quantile of its first ``frames`` frames.

    .. math::

        M[-1]_b = Q_q\left(X_b[0], \dots, X_b[n-1]\right), \qquad n = \min(\text{frames}, T)

    with :math:`Q_q` the quantile with linear interpolation between order statistics (as
    ``torch.quantile`` and ``numpy.quantile``'s default): with :math:`X_{(0)} \le \dots \le X_{(n-1)}`
    sorted and :math:`p = q (n - 1)`, :math:`Q_q = \sum_k \max(0, 1 - |k - p|)\, X_{(k)}`. It is
    computed exactly so, as a weighted sum of the sorted frames (sort, arange, no Python branch on data),
    which ``torch.export``/ONNX can express for any number of frames; gradients flow to the frames
    that the quantile interpolates. Pass the result as ``initial_state`` to
    :func:`melfront.functional.pcen` or :func:`melfront.functional.pcen_smoother`. See the module
    docstring for why (Wang et al. 2017 for PCEN; the measured starts in issue 14 item 5).

    Parameters
    ----------
    x : tensor ``(..., n_mels, frames)``, non-negative (linear power mel spectrogram)
    frames : int >= 1
        Opening frames used (default 40 = :math:`1/s` for ``s = 0.025``); clips shorter use all theirs.
    q : float in [0, 1]
        Quantile: 0.5 (default) the median, 0 the minimum, 1 the maximum.

    Returns
    -------
    tensor ``(..., n_mels)``, dtype and device of ``x``.

    >>> x = torch.ones(2, 3, 100)
    >>> robust_initial_state(x).shape
    torch.Size([2, 3])
    >>> y = torch.arange(10.0).reshape(1, 10)   # one band, frames 0..9: only 0..4 are used
    >>> robust_initial_state(y, frames=5, q=0.5).tolist(), round(robust_initial_state(y, frames=5, q=0.9).item(), 4)
    ([2.0], 3.6)
    """
    check_spec(x, min_ndim=2)
    frames = positive_int("frames", frames)
    q = probability("q", q)
    if x.shape[-1] == 0:
        raise ParameterError("robust_initial_state needs at least one frame, got 0")
    return opening_quantile(x, frames, q)


def opening_quantile(x: torch.Tensor, frames: int, q: float) -> torch.Tensor:
    """The computation of :func:`robust_initial_state` without its argument checks (plain tensor ops).

    For code that must compile with ``torch.jit.script`` (which cannot call the checks) or that has
    checked ``x`` (floating point, at least one frame), ``frames >= 1`` and ``0 <= q <= 1`` already.

    >>> opening_quantile(torch.tensor([[4.0, 1.0, 3.0, 2.0]]), 4, 0.5).tolist()
    [2.5]
    """
    # Pad first, then cut exactly `frames` frames: the shapes never depend on how many frames the clip has
    # (no branch on min(frames, T), so torch.export and ONNX keep the number of frames dynamic).
    head = torch.nn.functional.pad(x, (0, frames), value=float("inf"))[..., :frames]
    ordered = torch.sort(head, dim=-1).values               # the clip's frames first, the padding (inf) last
    k = torch.arange(frames, device=x.device)
    n = (k < x.shape[-1]).sum()                             # min(frames, T), as a tensor
    pos = (n - 1).to(x.dtype) * q                           # q (n - 1)
    weights = torch.clamp(1.0 - torch.abs(k.to(x.dtype) - pos), min=0.0)  # linear interpolation around pos
    used = torch.where(weights > 0, ordered, torch.zeros_like(ordered))  # 0 * inf would be NaN
    return (used * weights).sum(-1)
