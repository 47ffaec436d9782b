"""Evaluation patches scored in one pass per clip: exact dense evaluation, and batched patches otherwise.

A clip is scored (:meth:`melfront.train.Trainer.predict`) by the mean of its patches' predictions, every
``patch_frames`` patch ``eval_hop`` frames apart. At hop 1 a frame is recomputed by up to ``patch_frames``
patches. For a backbone made of **unpadded** (valid) convolutions along time, max-poolings without padding,
pointwise layers (ReLU, ELU, dropout and batch norm in eval mode) and a dense head on the flattened map
(SB-CNN, PiczakCNN without deltas) or a global max (TIMBRE), the whole clip can instead run once:

- a stride-1 layer is shift-equivariant, so running it on the clip computes it for every patch at once;
- a pooling of stride ``k`` along time splits the map into its ``k`` phases (the clip shifted by
  ``0 .. k-1`` positions, each pooled): the *shift-and-stitch* of Long, Shelhamer & Darrell (2015),
  equivalently the filter rarefaction of Sermanet et al.'s OverFeat (ICLR 2014). After pools of total
  stride ``S`` a patch starting at frame ``s`` is position ``s // S`` of phase ``s mod S``; each layer
  costs about one pass over the clip (the phases of a map together are as long as the map);
- the dense layer on the flattened ``(C, h, w)`` map is a ``h x w`` convolution over the final maps,
  the layers after it act per position; a global max is a running max of the patch's width.

The logits equal the patch-by-patch loop's to float rounding (tested at 1e-5 relative, float32) at any
hop, because every patch's computation is a sub-computation of the dense one. Long clips are cut into
chunks of ``chunk_frames`` patch starts (a multiple of ``S``) plus the ``patch_frames - 1`` frames the last
patch needs, so an hour-long clip needs memory for one chunk, not the clip.

The frontend runs on the whole chunk, which equals running it per patch only when it is **frame-local**
(each output frame a function of the same input frame): the fixed and learned logarithms (logeps, log10000,
logoffset, loglearn, logfloor), the learned power, ``db`` with a numeric ``ref`` and ``top_db=None``, and
stacks or chains of these (:func:`frame_local`). ``db`` with ``top_db`` (the default, 80) clips each patch
``top_db`` below the patch's own maximum: the unclipped decibels run on the chunk, and the patches the clip
would change (a value more than ``top_db`` under the patch's peak) are found and scored patch by patch, so the
logits stay exact. ``db`` with ``ref="max"``, ``minmax`` and PCEN (a recursive smoother over time, started anew
in each patch) depend on the patch they see, so these
classifiers, the padded backbones (VGG, the protonet's VGG, ResNet: zero padding at a patch's edges is not
the clip's neighbouring frames, so no patch is a sub-computation of the clip's pass), PiczakCNN with deltas
(the delta filter pads at the patch's edges) and waveform frontends are scored patch by patch, in large
batches cut from each clip with ``unfold`` (:func:`patch_logits`). :func:`dense_reason` says which path a
classifier takes and why.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..checks import positive_int
from ..data.patches import repeat_pad
from ..errors import ParameterError
from ..frontends import Chain, Decibel, LogFloor, LogLearn, LogOffset, PowerLearn, Stack
from ..models import PiczakCNN, SBCNN, Timbre
from .build import NormalizedBackbone

__all__ = ["frame_local", "dense_plan", "dense_reason", "dense_logits", "patch_logits", "clip_patch_logits",
           "dense_pays", "DENSE_COST"]

_POINTWISE = (nn.ReLU, nn.ELU, nn.Identity, nn.Dropout, nn.BatchNorm2d, nn.LeakyReLU)
_LOCAL_FRONTENDS = (LogOffset, LogLearn, LogFloor, PowerLearn)  # LogEPS and Log10000 derive from LogOffset


def frame_local(frontend: nn.Module) -> bool:
    """Whether each output frame of ``frontend`` depends on the same input frame only.

    >>> from melfront import frontend
    >>> [frame_local(frontend(s)) for s in ("logeps", "loglearn", "db", "db(top_db=None)", "pcen", "stack(logeps, power)")]
    [True, True, False, True, False, True]
    """
    if isinstance(frontend, (Stack, Chain)):
        return all(frame_local(f) for f in frontend.frontends)
    if isinstance(frontend, Decibel):
        return not frontend._ref_max and frontend.top_db is None
    return isinstance(frontend, _LOCAL_FRONTENDS)


def _dense_frontend(frontend: nn.Module):
    """``(frontend to run on whole chunks, top_db)``, or None when no exact dense scheme exists.

    A frame-local frontend runs as it is (``top_db`` None). ``db`` with a numeric ``ref`` and ``top_db``
    clips each patch at ``top_db`` below the patch's own maximum; where a patch's values all lie within
    ``top_db`` of its maximum, the clip is a no-op and the patch equals the unclipped decibels. So the
    unclipped law runs on the chunk and each patch is checked; patches where the clip bites are scored
    patch by patch.
    """
    if frame_local(frontend):
        return frontend, None
    if isinstance(frontend, Decibel) and not frontend._ref_max and frontend.top_db is not None:
        return Decibel(ref=frontend.ref, amin=frontend.amin, top_db=None), float(frontend.top_db)
    return None


def dense_plan(backbone: nn.Module):
    """``(trunk, head)`` of a backbone that dense evaluation computes exactly, else None.

    ``trunk``: the layers before the head, each a valid stride-1 convolution along time, an unpadded
    max-pooling, or a pointwise layer (the input norm of :class:`~melfront.train.build.NormalizedBackbone` in
    ``"batch"`` or ``"none"`` mode included; ``"example"`` standardises each patch by its own statistics); ``head``: ``("dense", layers)`` (flatten, a linear layer, then layers
    acting per position) or ``("max", ())`` (global max over the map).

    >>> from melfront import models
    >>> dense_plan(models.build("sbcnn", 10))[1][0], dense_plan(models.build("vgg", 10)) is None
    ('dense', True)
    >>> [dense_plan(NormalizedBackbone(models.build("timbre", 10), m)) is None for m in ("batch", "example")]
    [False, True]
    """
    if isinstance(backbone, NormalizedBackbone):  # the fitted settings' input norm in front
        inner = dense_plan(backbone.net)
        norm = backbone.norm
        if inner is None or norm.mode == "example":  # per-example statistics: each patch its own
            return None
        return ([norm.bn] if norm.bn is not None else []) + inner[0], inner[1]
    if isinstance(backbone, SBCNN):
        trunk, head = [backbone.input_bn, *backbone.features], ("dense", tuple(backbone.head))
    elif isinstance(backbone, PiczakCNN) and not backbone.deltas:
        trunk, head = list(backbone.features), ("dense", tuple(backbone.head))
    elif isinstance(backbone, Timbre):
        trunk, head = [backbone.input_bn, backbone.conv], ("max", ())
    else:
        return None
    if not all(_valid_layer(m) for m in trunk):
        return None
    if head[0] == "dense" and not (isinstance(head[1][0], nn.Flatten) and _head_ok(head[1][1:])):
        return None
    return trunk, head


def _valid_layer(m: nn.Module) -> bool:
    if isinstance(m, nn.Conv2d):
        return (m.stride[1] == 1 and m.padding in ((0, 0), "valid") and m.dilation[1] == 1
                and m.padding_mode == "zeros")
    if isinstance(m, nn.MaxPool2d):
        return _pair(m.padding) == (0, 0) and _pair(m.dilation) == (1, 1) and not m.ceil_mode
    return isinstance(m, _POINTWISE)


def _head_ok(layers) -> bool:
    linear = [m for m in layers if isinstance(m, nn.Linear)]
    return bool(linear) and isinstance(layers[0], (nn.Linear, nn.Dropout)) and \
        all(isinstance(m, (nn.Linear, nn.ReLU, nn.ELU, nn.Dropout, nn.Identity)) for m in layers)


def dense_reason(model: nn.Module, kind: str = "mel") -> str | None:
    """None when :func:`dense_logits` is exact for ``model`` (a Classifier) in its current mode; else why not.

    >>> from melfront.train import build_classifier
    >>> mel = dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=64)
    >>> dense_reason(build_classifier("logeps", "sbcnn", 2, mel, 100)[0].eval()) is None
    True
    >>> dense_reason(build_classifier("pcen", "sbcnn", 2, mel, 100)[0].eval())
    'the frontend PCEN is not frame-local'
    """
    if kind != "mel":
        return "waveform features"
    if model.training:
        return "the model is in training mode"
    if _dense_frontend(model.frontend) is None:
        return f"the frontend {type(model.frontend).__name__} is not frame-local"
    if dense_plan(model.backbone) is None:
        return f"the backbone {type(model.backbone).__name__} has padding or layers that differ per patch"
    return None


def _pool_phases(x: torch.Tensor, pool: nn.MaxPool2d, offsets: list[int], stride_so_far: int):
    """Pool every time phase of ``x`` ``(K*B, C, M, W)``: ``(st*K*B, C, M, n)`` and the new phase offsets.

    A max-pooling with stride 1 along time computes every window once; phase ``r`` is its columns
    ``r, r + st, r + 2 st, ...`` (windows starting there). Columns past the end (the last phases are one
    shorter) are zeros that no patch reaches.
    """
    (km, kt), (sm, st) = _pair(pool.kernel_size), _pair(pool.stride if pool.stride else pool.kernel_size)
    if st == 1:
        return pool(x), offsets
    if km > 1 or sm > 1:  # along mel as the pooling does (the patch sees the same mel axis)
        x = x.unfold(-2, km, sm).amax(-1)
    width = x.shape[-1] - kt + 1  # stride 1 along time, as running maxima (measured faster than max_pool2d here)
    y = x[..., :width]
    for j in range(1, kt):
        y = torch.maximum(y, x[..., j:j + width])
    n = -(-y.shape[-1] // st)
    if n * st > y.shape[-1]:
        y = nn.functional.pad(y, (0, n * st - y.shape[-1]))
    lead = y.shape[:-1]
    y = y.reshape(*lead, n, st).movedim(-1, 0).reshape(st * lead[0], *lead[1:], n)
    return y, [o + r * stride_so_far for r in range(st) for o in offsets]


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


def _trunk(x: torch.Tensor, trunk):
    """Run the trunk densely: ``(maps (K*B, C, h, W), offsets of the K phases, total time stride)``."""
    offsets, stride = [0], 1
    for m in trunk:
        if isinstance(m, nn.MaxPool2d):
            x, offsets = _pool_phases(x, m, offsets, stride)
            stride *= _pair(m.stride if m.stride else m.kernel_size)[1]
        else:
            x = m(x)
    return x, offsets, stride


def _head(maps: torch.Tensor, head, patch_shape) -> torch.Tensor:
    """Logits at every final position: ``(N, positions, n_classes)``; ``patch_shape`` = (h, w) of one patch."""
    h, w = patch_shape
    kind, layers = head
    if kind == "max":
        z = maps.amax(dim=-2)
        return nn.functional.max_pool1d(z, w, stride=1).transpose(1, 2)
    layers = layers[1:]  # after Flatten
    first = next(i for i, m in enumerate(layers) if isinstance(m, nn.Linear))
    lin = layers[first]
    weight = lin.weight.reshape(lin.out_features, maps.shape[1], h, w)
    z = nn.functional.conv2d(maps, weight, lin.bias).squeeze(2).transpose(1, 2)  # (N, positions, out)
    for m in layers[first + 1:]:
        z = m(z)
    return z


def dense_logits(model: nn.Module, features: Sequence[torch.Tensor], index: Sequence[tuple[int, int]],
                 patch_frames: int, chunk_frames: int = 2048, batch_frames: int = 16384,
                 device=None) -> torch.Tensor:
    """Logits ``(len(index), n_classes)`` of the patches ``index`` (``(clip, start frame)`` pairs), exactly.

    Equal to ``model(patch)`` for each patch ``features[clip][..., start:start + patch_frames]`` (clips
    shorter than a patch repeat-padded, as :func:`melfront.data.patches.crop`), computed densely as the
    module docstring explains (:class:`~melfront.errors.ParameterError` where :func:`dense_reason` is not
    None). ``chunk_frames`` bounds the patch starts scored per pass of a clip (rounded up to a multiple of the
    backbone's time stride); ``batch_frames`` the frames of the chunks batched together. Mel features ``(n_mels, frames)`` or ``(channels, n_mels, frames)``.

    >>> from melfront.train import build_classifier
    >>> from melfront.data.patches import PatchDataset
    >>> mel = dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=52)
    >>> clf = build_classifier("logeps", "sbcnn", 3, mel, 100)[0].eval()
    >>> feats = [torch.rand(52, 130), torch.rand(52, 90)]
    >>> ds = PatchDataset(feats, [0, 0], n_frames=100, mode="all", hop=7)
    >>> with torch.no_grad():
    ...     loop = clf(torch.stack([ds[i][0] for i in range(len(ds))]))
    ...     dense = dense_logits(clf, feats, ds.index, 100)
    >>> dense.shape, bool(torch.allclose(dense, loop, rtol=1e-5, atol=1e-5))
    (torch.Size([7, 3]), True)
    """
    patch_frames = positive_int("patch_frames", patch_frames)
    reason = dense_reason(model)
    if reason is not None:
        raise ParameterError(f"dense evaluation is not exact for this classifier: {reason}")
    trunk, head = dense_plan(model.backbone)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    stride = 1
    for m in trunk:
        if isinstance(m, nn.MaxPool2d):
            stride *= _pair(m.stride if m.stride else m.kernel_size)[1]
    chunk = -(-positive_int("chunk_frames", chunk_frames) // stride) * stride
    # chunks: (clip, base frame, starts in the chunk as (item, start))
    groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for item, (clip, start) in enumerate(index):
        groups.setdefault((clip, start // chunk * chunk), []).append((item, start))
    chunks, padded = [], {}
    for (clip, base), items in groups.items():
        if clip not in padded:
            padded[clip] = repeat_pad(features[clip], patch_frames)
        end = min(padded[clip].shape[-1], max(s for _, s in items) + patch_frames)
        chunks.append((end - base, clip, base, items))
    # Chunks of similar length batched together, zero-padded on the right to the longest: a position whose
    # receptive field reaches the padding belongs to no patch (every patch lies inside its clip), and a
    # frame-local frontend maps the zeros to finite values, so the padding changes no gathered logit.
    chunks.sort(key=lambda c: c[0])
    parts, part = [], []
    for c in chunks:
        if part and (len(part) + 1) * c[0] > batch_frames:
            parts.append(part)
            part = []
        part.append(c)
    if part:
        parts.append(part)
    front, top_db = _dense_frontend(model.frontend)
    front = front.to(device)
    out = patch_shape = None
    clipped = []  # db with top_db: items whose patch the clip changes, scored patch by patch
    for part in parts:
        length = part[-1][0]
        x = torch.zeros((len(part),) + tuple(padded[part[0][1]].shape[:-1]) + (length,), dtype=torch.float32)
        for j, (n, c, base, _) in enumerate(part):
            x[j, ..., :n] = padded[c][..., base:base + n]
        z = front(x.to(device))
        if z.ndim == 3:  # as Classifier.features: a channel axis
            z = z.unsqueeze(1)
        if top_db is not None:
            window = lambda v: nn.functional.max_pool1d(v.unsqueeze(1), patch_frames, stride=1).squeeze(1)  # noqa: E731
            peak, low = window(z.amax(dim=(1, 2))), -window(-z.amin(dim=(1, 2)))  # per patch start
            bites = (low < peak - top_db).cpu()
        if patch_shape is None:
            patch_shape = _trunk(z[:1, ..., :patch_frames], trunk)[0].shape[-2:]
        maps, offsets, _ = _trunk(z, trunk)
        logits = _head(maps, head, patch_shape)  # (K*B, positions, n_classes)
        if out is None:
            out = torch.empty(len(index), logits.shape[-1], dtype=logits.dtype, device=logits.device)
        rows, cols, items = [], [], []
        for j, (_, _, base, its) in enumerate(part):
            for item, start in its:
                rel = start - base
                if top_db is not None and bool(bites[j, rel]):
                    clipped.append(item)
                    continue
                rows.append(offsets.index(rel % stride) * len(part) + j)
                cols.append(rel // stride)
                items.append(item)
        out[items] = logits[rows, cols]
    if clipped:
        out[clipped] = patch_logits(model, features, [index[i] for i in clipped], patch_frames,
                                    max(1, batch_frames // patch_frames), device=device).to(out.dtype)
    if out is None:
        return torch.zeros(0, 0)
    return out


def patch_logits(model: nn.Module, features: Sequence[torch.Tensor], index: Sequence[tuple[int, int]],
                 patch_frames: int, batch_size: int = 64, device=None) -> torch.Tensor:
    """Logits ``(len(index), n_classes)`` of the mel patches ``index``, patch by patch in batches.

    The patches of a clip are cut at once (``Tensor.unfold``, a view) and gathered into batches of
    ``batch_size``: the path for classifiers :func:`dense_logits` cannot compute exactly.

    >>> from melfront.train import build_classifier
    >>> mel = dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=32)
    >>> clf = build_classifier("pcen", "vgg", 2, mel, 32, {"width": 4})[0].eval()
    >>> feats = [torch.rand(32, 50)]
    >>> with torch.no_grad():
    ...     z = patch_logits(clf, feats, [(0, 0), (0, 18)], 32)
    ...     ref = clf(torch.stack([feats[0][:, :32], feats[0][:, 18:]]))
    >>> bool(torch.equal(z, ref))
    True
    """
    patch_frames = positive_int("patch_frames", patch_frames)
    batch_size = positive_int("batch_size", batch_size)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    views: dict[int, torch.Tensor] = {}
    outs = []
    for b in range(0, len(index), batch_size):
        part = index[b:b + batch_size]
        rows = []
        for clip, start in part:
            if clip not in views:
                views[clip] = repeat_pad(features[clip], patch_frames).unfold(-1, patch_frames, 1)
            rows.append(views[clip][..., start, :])
        outs.append(model(torch.stack(rows).to(device, torch.float32)))
    return torch.cat(outs) if outs else torch.zeros(0, 0)


def clip_patch_logits(model: nn.Module, features, index, patch_frames: int, batch_size: int, kind: str = "mel",
                      device=None) -> torch.Tensor:
    """:func:`dense_logits` where exact (:func:`dense_reason` None) and faster (:func:`dense_pays`: small hops),
    else :func:`patch_logits` (mel features).

    Waveform features are not handled here (the caller's patch loop scores them).

    >>> from melfront.train import build_classifier
    >>> mel = dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=108)
    >>> clf = build_classifier("loglearn", "timbre", 2, mel, 16)[0].eval()
    >>> feats = [torch.rand(108, 40)]
    >>> with torch.no_grad():
    ...     z = clip_patch_logits(clf, feats, [(0, 0), (0, 5), (0, 24)], 16, 64)
    ...     ref = torch.cat([clf(feats[0][None, :, s:s + 16]) for s in (0, 5, 24)])
    >>> bool(torch.allclose(z, ref, rtol=1e-5, atol=1e-6))
    True
    """
    if dense_reason(model, kind) is None and dense_pays(model, features, index, patch_frames):
        return dense_logits(model, features, index, patch_frames, batch_frames=batch_size * patch_frames,
                            device=device)
    return patch_logits(model, features, index, patch_frames, batch_size, device=device)


#: Cost of the dense pass per ``patch_frames`` frames of clip, in patch forwards (one thread, CPU, measured on
#: 4-s and 46-s clips: SB-CNN 2.7, TIMBRE 0.6; PiczakCNN taken as SB-CNN). The dense pass computes every
#: phase whatever the hop, so at large hops scoring the few patches directly is cheaper.
DENSE_COST = {"SBCNN": 3.0, "Timbre": 0.7, "PiczakCNN": 3.0}


def dense_pays(model: nn.Module, features, index, patch_frames: int) -> bool:
    """Whether the patches ``index`` outnumber what the dense pass over their clips costs (:data:`DENSE_COST`):
    at SB-CNN's cost, a mean hop under about a third of a patch (hop 1 to ~42 of 128).

    >>> from melfront.train import build_classifier
    >>> mel = dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=52)
    >>> clf = build_classifier("logeps", "sbcnn", 2, mel, 100)[0]
    >>> feats = [torch.rand(52, 400)]
    >>> dense_pays(clf, feats, [(0, s) for s in range(0, 301, 1)], 100), dense_pays(clf, feats, [(0, 0), (0, 300)], 100)
    (True, False)
    """
    backbone = getattr(model.backbone, "net", model.backbone)
    frames = sum(max(features[c].shape[-1], patch_frames) for c in {c for c, _ in index})
    return len(index) >= DENSE_COST.get(type(backbone).__name__, 3.0) * frames / patch_frames
