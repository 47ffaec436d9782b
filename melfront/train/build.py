"""Building a ``frontend -> backbone`` classifier from a frontend spec and a model name.

:data:`DEFAULT_MEL` are the mel parameters of the reference works; :func:`build_classifier` reads the
backbone's input shape from a dummy pass through the frontend (:func:`backbone_input_shape`), so any
frontend fits; :func:`learned_parameters` reports what a trainable frontend learned.

Input normalisation (``model_options["input_norm"]``, see :class:`InputNorm`): ``"batch"`` puts a
``BatchNorm2d`` between every frontend and its backbone, so that every frontend's output reaches the
backbone on the same scale (Pons et al. 2019's "BN input"); ``"example"`` standardises each example;
``"none"`` (the default) leaves the backbone as the paper built it.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import models
from ..checks import one_of, positive_int
from ..data.patches import samples_for_frames
from ..errors import ParameterError
from ..frontends import frontend as make_frontend

__all__ = ["DEFAULT_MEL", "MEL_KEYS", "INPUT_NORMS", "frontend_common", "dummy_input", "backbone_input_shape",
           "InputNorm", "NormalizedBackbone", "build_classifier", "learned_parameters", "check_patch",
           "backbone_parameters", "MAX_PATCH_SECONDS", "MAX_PARAMETERS"]

#: Mel parameters of Pons et al. (2019) and Salamon & Bello (2017) at 22.05 kHz: 128 bands, hop 512,
#: so a 128-frame patch is 2.97 s (their 3 s patches at 44.1 kHz with hop 1024).
DEFAULT_MEL = dict(sample_rate=22050, n_fft=1024, hop_length=512, n_mels=128)

#: The mel parameters every frontend takes as common options.
MEL_KEYS = ("sample_rate", "n_fft", "hop_length", "n_mels")

#: Values of ``model_options["input_norm"]``: what normalises the backbone's input (see :class:`InputNorm`).
INPUT_NORMS = ("none", "batch", "example")


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


def backbone_input_shape(frontend: str, mel: dict, patch_frames: int) -> dict:
    """What the backbone reads from ``frontend`` on ``patch_frames`` patches: ``dict(n_mels=, n_frames=, in_channels=)``.

    Read from a dummy pass, so that any frontend fits (a waveform frontend with its own number of
    bands, a stack of three).

    >>> backbone_input_shape("stack(db, pcen)", dict(DEFAULT_MEL, n_mels=40), 48)
    {'n_mels': 40, 'n_frames': 48, 'in_channels': 2}
    """
    return _frontend_and_shape(frontend, mel, patch_frames)[1]


#: The longest patch a classifier is built for, in seconds (``patch_frames`` x ``hop_length`` / ``sample_rate``).
MAX_PATCH_SECONDS = 600
#: The most backbone parameters a classifier is built with (2 GiB of float32 weights, before gradients and
#: the optimiser's state); counted on PyTorch's ``meta`` device before anything is allocated.
MAX_PARAMETERS = 500_000_000


def check_patch(mel: dict, patch_frames: int) -> None:
    """ParameterError for a patch longer than :data:`MAX_PATCH_SECONDS` (before a dummy pass allocates it).

    >>> check_patch(dict(DEFAULT_MEL), 10 ** 8)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    melfront.errors.ParameterError: patch_frames=100000000 frames of hop 512 at 22050 Hz is a patch of 2,321,995 s; ...
    """
    seconds = patch_frames * mel["hop_length"] / mel["sample_rate"]
    if seconds > MAX_PATCH_SECONDS:
        raise ParameterError(f"patch_frames={patch_frames} frames of hop {mel['hop_length']} at {mel['sample_rate']} "
                             f"Hz is a patch of {seconds:,.0f} s; at most {MAX_PATCH_SECONDS} s")


def backbone_parameters(model: str, n_classes: int, shape: dict, options: dict) -> int:
    """Parameters of ``models.build(model, n_classes, **shape, **options)``, counted on the ``meta`` device
    (nothing allocated: an absurd ``width`` is counted, not attempted).

    >>> backbone_parameters("vgg", 2, dict(n_mels=32, n_frames=32, in_channels=1), {"width": 4})
    684
    """
    with torch.device("meta"):
        backbone = models.build(model, n_classes, **shape, **options)
    return int(sum(p.numel() for p in backbone.parameters()))


def _frontend_and_shape(frontend: str, mel: dict, patch_frames: int):
    check_patch(mel, patch_frames)
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
    return fe, dict(n_mels=int(z.shape[2]), n_frames=int(z.shape[3]), in_channels=int(z.shape[1]))


class InputNorm(nn.Module):
    """Normalisation of a backbone's input ``(batch, channels, n_mels, frames)``, the same for every frontend.

    ``"batch"``: ``BatchNorm2d(channels)``: batch statistics in training, running ones in evaluation,
    a learned scale and shift per channel (Pons et al. 2019's "BN input"; VGG's first layer).
    ``"example"``: each example and channel standardised over its bands and frames,
    :math:`(z - \\mu) / (\\sigma + 10^{-5})`, no parameters, the same in training and evaluation
    (it removes each example's level, so a frontend's gain handling no longer matters).
    ``"none"``: the identity.

    >>> z = torch.rand(4, 2, 8, 10) * 100
    >>> y = InputNorm("example", 2)(z)
    >>> [abs(round(float(v), 3)) for v in (y[0, 1].mean(), y[0, 1].std(unbiased=False))]
    [0.0, 1.0]
    >>> InputNorm("batch", 2).eval()(z).shape
    torch.Size([4, 2, 8, 10])
    """

    def __init__(self, mode: str, channels: int):
        super().__init__()
        self.mode = one_of("input_norm", mode, INPUT_NORMS)
        self.bn = nn.BatchNorm2d(positive_int("channels", channels)) if self.mode == "batch" else None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.bn is not None:
            return self.bn(z)
        if self.mode == "example":
            mean = z.mean(dim=(-2, -1), keepdim=True)
            std = z.std(dim=(-2, -1), keepdim=True, unbiased=False)
            return (z - mean) / (std + 1e-5)
        return z

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


class NormalizedBackbone(nn.Module):
    """A backbone with an :class:`InputNorm` in front: ``backbone(norm(z))``.

    Everything else is the backbone's: its attributes (``n_classes``, ``in_channels``, ...) and, for a
    prototypical network, ``embed`` and ``logits`` (support and query normalised in one pass, so that
    batch norm sees the whole episode, as the network's own batch norms do) and ``set_prototypes``.

    >>> net = NormalizedBackbone(models.build("vgg", 3, n_mels=32, n_frames=32, width=4), "batch")
    >>> net(torch.rand(2, 1, 32, 32)).shape, net.n_classes, net.in_channels
    (torch.Size([2, 3]), 3, 1)
    """

    def __init__(self, backbone: nn.Module, mode: str):
        super().__init__()
        self.norm = InputNorm(mode, getattr(backbone, "in_channels", 1))
        self.net = backbone

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)  # parameters, buffers and sub-modules
        except AttributeError:
            return getattr(self._modules["net"], name)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.norm(z))

    def embed(self, z: torch.Tensor) -> torch.Tensor:
        """The prototypical network's embedding of normalised input."""
        return self.net.embed(self.norm(z))

    def logits(self, query: torch.Tensor, support: torch.Tensor, support_labels: torch.Tensor) -> torch.Tensor:
        """The prototypical network's episode logits, support and query normalised together."""
        z = self.norm(torch.cat([support, query], dim=0))
        return self.net.logits(z[support.shape[0]:], z[: support.shape[0]], support_labels)


def build_classifier(frontend: str, model: str, n_classes: int, mel: dict, patch_frames: int,
                     model_options: dict | None = None):
    """``Classifier(melfront.frontend(frontend, **mel), models.build(model, ...))`` for ``patch_frames`` patches.

    The backbone's input shape (bands, frames, channels) is read from a dummy pass through the frontend
    (:func:`backbone_input_shape`). ``model_options`` are the backbone's architecture options, plus
    ``input_norm`` (:data:`INPUT_NORMS`; not ``"none"``: the backbone is a :class:`NormalizedBackbone`).
    Returns ``(classifier, shape)`` with ``shape = dict(n_mels=, n_frames=, in_channels=)``.

    >>> clf, shape = build_classifier("db", "vgg", 3, dict(DEFAULT_MEL, n_mels=32), 32, {"width": 8})
    >>> shape
    {'n_mels': 32, 'n_frames': 32, 'in_channels': 1}
    >>> clf(torch.rand(2, 32, 32)).shape
    torch.Size([2, 3])
    >>> clf, _ = build_classifier("db", "sbcnn", 3, dict(DEFAULT_MEL, n_mels=32), 100, {"input_norm": "batch"})
    >>> type(clf.backbone).__name__, clf(torch.rand(2, 32, 100)).shape
    ('NormalizedBackbone', torch.Size([2, 3]))
    """
    options = dict(model_options or {})
    norm = options.pop("input_norm", "none")
    norm = one_of("model_options['input_norm']", norm, INPUT_NORMS)
    fe, shape = _frontend_and_shape(frontend, mel, patch_frames)
    n = backbone_parameters(model, n_classes, shape, options)
    if n > MAX_PARAMETERS:
        raise ParameterError(f"model {model!r} with model_options {options} on {shape['n_mels']} x {shape['n_frames']} "
                             f"inputs would have {n:,} parameters, more than {MAX_PARAMETERS:,} "
                             f"({4 * n / 2 ** 30:.1f} GiB of float32 weights alone)")
    backbone = models.build(model, n_classes, **shape, **options)
    if norm != "none":
        backbone = NormalizedBackbone(backbone, norm)
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
