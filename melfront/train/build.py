"""Building a ``frontend -> backbone`` classifier from a frontend spec and a model name.

:data:`DEFAULT_MEL` are the mel parameters of the reference works; :func:`build_classifier` reads the
backbone's input shape from a dummy pass through the frontend (:func:`dummy_input`), so any frontend
fits; :func:`learned_parameters` reports what a trainable frontend learned.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import models
from ..checks import one_of, positive_int
from ..data.patches import samples_for_frames
from ..errors import ParameterError
from ..frontends import frontend as make_frontend

__all__ = ["DEFAULT_MEL", "MEL_KEYS", "frontend_common", "dummy_input", "build_classifier", "learned_parameters"]

#: Mel parameters of Pons et al. (2019) and Salamon & Bello (2017) at 22.05 kHz: 128 bands, hop 512,
#: so a 128-frame patch is 2.97 s (their 3 s patches at 44.1 kHz with hop 1024).
DEFAULT_MEL = dict(sample_rate=22050, n_fft=1024, hop_length=512, n_mels=128)

#: The mel parameters every frontend takes as common options.
MEL_KEYS = ("sample_rate", "n_fft", "hop_length", "n_mels")


def frontend_common(mel: dict) -> dict:
    """The common frontend options (``sample_rate``, ``n_fft``, ``hop_length``, ``n_mels``) of a mel config.

    Other mel parameters (``fmin``, ``power``, ...) are the feature cache's business, not the frontend's.

    >>> frontend_common(dict(DEFAULT_MEL, fmin=0.0))
    {'sample_rate': 22050, 'n_fft': 1024, 'hop_length': 512, 'n_mels': 128}
    """
    return {k: mel[k] for k in MEL_KEYS if k in mel}


def dummy_input(kind: str, mel: dict, n_frames: int, batch: int = 2) -> torch.Tensor:
    """A fixed random batch a frontend of ``input_kind`` ``kind`` accepts, ``n_frames`` frames long.

    ``"mel"``: linear power mel spectrograms ``(batch, n_mels, n_frames)`` (positive);
    ``"waveform"``: audio ``(batch, time)`` with ``time`` samples giving ``n_frames`` frames at ``hop_length``.

    >>> dummy_input("mel", DEFAULT_MEL, 10).shape
    torch.Size([2, 128, 10])
    >>> dummy_input("waveform", DEFAULT_MEL, 10, batch=1).shape
    torch.Size([1, 4608])
    """
    one_of("kind", kind, ("mel", "waveform"))
    n_frames = positive_int("n_frames", n_frames)
    g = torch.Generator().manual_seed(0)
    if kind == "mel":
        return torch.rand(batch, mel["n_mels"], n_frames, generator=g) + 1e-3
    return torch.randn(batch, samples_for_frames(n_frames, mel["hop_length"]), generator=g) * 0.1


def build_classifier(frontend: str, model: str, n_classes: int, mel: dict, patch_frames: int,
                     model_options: dict | None = None):
    """``Classifier(melfront.frontend(frontend, **mel), models.build(model, ...))`` for ``patch_frames`` patches.

    The backbone's input shape (bands, frames, channels) is read from a dummy pass through the frontend,
    so that any frontend fits (a waveform frontend with its own number of bands, a stack of three).
    Returns ``(classifier, shape)`` with ``shape = dict(n_mels=, n_frames=, in_channels=)``.

    >>> clf, shape = build_classifier("db", "vgg", 3, dict(DEFAULT_MEL, n_mels=32), 32, {"width": 8})
    >>> shape
    {'n_mels': 32, 'n_frames': 32, 'in_channels': 1}
    >>> clf(torch.rand(2, 32, 32)).shape
    torch.Size([2, 3])
    """
    fe = make_frontend(frontend, **frontend_common(mel))
    kind = getattr(fe, "input_kind", None)
    if kind not in ("mel", "waveform"):
        raise ParameterError(f"frontend {frontend!r} has input_kind {kind!r}, expected 'mel' or 'waveform'")
    was_training = fe.training
    fe.eval()
    with torch.no_grad():
        z = fe(dummy_input(kind, mel, patch_frames))
    fe.train(was_training)
    if z.ndim == 3:
        z = z.unsqueeze(1)
    if z.ndim != 4:
        raise ParameterError(f"frontend {frontend!r} yields shape {tuple(z.shape)}, "
                             "expected (batch, [channels,] n_mels, frames)")
    shape = dict(n_mels=int(z.shape[2]), n_frames=int(z.shape[3]), in_channels=int(z.shape[1]))
    backbone = models.build(model, n_classes, **shape, **(model_options or {}))
    return models.Classifier(fe, backbone), shape


def learned_parameters(classifier) -> dict:
    """``frontend.learned_parameters()`` as a JSON-able dict of float lists (``{}`` for a frontend without it).

    >>> clf, _ = build_classifier("db", "vgg", 2, dict(DEFAULT_MEL, n_mels=32), 32, {"width": 8})
    >>> learned_parameters(clf)
    {}
    """
    fe = getattr(classifier, "frontend", classifier)
    fn = getattr(fe, "learned_parameters", None)
    if not callable(fn):
        return {}
    out = {}
    for k, v in (fn() or {}).items():
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu().reshape(-1).tolist()
        elif isinstance(v, (int, float)):
            v = [float(v)]
        out[str(k)] = [float(x) for x in np.asarray(v, dtype=float).reshape(-1)]
    return out
