"""Deploying frontends and classifiers: ONNX (checked in onnxruntime), ``torch.export``, streaming classifiers.

Every melfront frontend runs in plain tensor ops under the exporters (:func:`melfront.functional.plain_mode`),
so ``torch.onnx.export(..., dynamo=True)``, ``torch.export.export``, ``torch.jit.script`` and
``torch.compile(fullgraph=True)`` all see one graph with a dynamic number of frames (or samples).
:func:`export_onnx` exports, runs the graph in onnxruntime on held-out inputs of other lengths and refuses
(:class:`~melfront.errors.ParameterError`) a graph that differs from eager or ignores its input, before
anything is written. "Relative error" here is ``max |onnx - eager| / max |eager|`` over the whole output
(:func:`relative_error`).

>>> import torch
>>> relative_error(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.5]))
0.2
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .errors import ParameterError
from .fileio import atomic_write
from .frontends import PCEN, StreamingPCEN

__all__ = ["relative_error", "dynamic_shapes", "export_onnx", "check_onnx", "export_program", "StreamingClassifier",
           "ONNX_RTOL", "held_out_inputs"]

#: Largest relative error (:func:`relative_error`) :func:`export_onnx` accepts between onnxruntime and eager.
ONNX_RTOL = 1e-5


def relative_error(actual, expected) -> float:
    """``max |actual - expected| / max |expected|`` (numpy arrays or tensors; 0 when both are all zeros).

    >>> relative_error(np.zeros(3), np.zeros(3))
    0.0
    """
    a = np.asarray(actual.detach().cpu() if torch.is_tensor(actual) else actual, dtype=np.float64)
    e = np.asarray(expected.detach().cpu() if torch.is_tensor(expected) else expected, dtype=np.float64)
    if a.shape != e.shape:
        raise ParameterError(f"outputs of different shapes: {a.shape} vs {e.shape}")
    diff = float(np.max(np.abs(a - e))) if a.size else 0.0
    scale = float(np.max(np.abs(e))) if e.size else 0.0
    return diff / scale if scale > 0 else diff


def dynamic_shapes(inputs: Sequence[torch.Tensor], time_axis: bool = True):
    """``dynamic_shapes`` for the exporters: the last (time/frames) axis of the first input must stay dynamic
    (``Dim.DYNAMIC``: an export that would fix it fails), the batch axis of every input may
    (``Dim.AUTO``: a batch of 1 in the example fixes it to 1).

    >>> [sorted(axes) for axes in dynamic_shapes([torch.zeros(2, 4, 10), torch.zeros(2, 4)])]
    [[0, 2], [0]]
    """
    shapes = []
    for i, x in enumerate(inputs):
        axes = {0: torch.export.Dim.AUTO} if x.ndim >= 2 else {}
        if i == 0 and time_axis:
            axes[x.ndim - 1] = torch.export.Dim.DYNAMIC
        shapes.append(axes)
    return tuple(shapes)


def _as_tuple(inputs) -> tuple:
    return tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)


def _examples(inputs) -> tuple:
    """Contiguous example inputs (a strided view would put its strides into the exported graph)."""
    return tuple(x.contiguous() if torch.is_tensor(x) else x for x in _as_tuple(inputs))


def _eager(module: nn.Module, inputs: tuple) -> list[torch.Tensor]:
    with torch.no_grad():
        out = module(*inputs)
    return [o.detach() for o in _as_tuple(out)]


def check_onnx(path, module: nn.Module, inputs, rtol: float = ONNX_RTOL) -> float:
    """Run the ONNX graph at ``path`` in onnxruntime on ``inputs`` and compare with ``module`` (eager).

    Returns the largest relative error over the outputs; :class:`~melfront.errors.ParameterError`
    when it exceeds ``rtol``.

    >>> import tempfile, pathlib
    >>> from melfront.frontends import LogFloor
    >>> p = export_onnx(LogFloor(), torch.rand(1, 2, 5), pathlib.Path(tempfile.mkdtemp()) / "f.onnx")
    >>> check_onnx(p, LogFloor(), torch.rand(3, 2, 9)) < 1e-6
    True
    """
    import onnxruntime as ort  # optional: the "dev"/"deploy" extra
    inputs = _as_tuple(inputs)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {arg.name: x.detach().cpu().numpy() for arg, x in zip(session.get_inputs(), inputs)}
    try:
        got = session.run(None, feed)
    except Exception as exc:  # onnxruntime's own error types
        msg = " ".join(str(exc).split())[:400]
        raise ParameterError(f"{path}: the ONNX graph fails on an input of shape "
                             f"{[tuple(x.shape) for x in inputs]}: {msg}") from None
    want = _eager(module, inputs)
    if len(got) != len(want):
        raise ParameterError(f"{path}: the ONNX graph has {len(got)} outputs, the module {len(want)}")
    worst = max(relative_error(g, w) for g, w in zip(got, want))
    if not worst <= rtol:
        raise ParameterError(f"{path}: the ONNX graph differs from eager {type(module).__name__} by {worst:.3g} "
                             f"(relative, max |onnx - eager| / max |eager|), more than {rtol:g}")
    return worst


def held_out_inputs(example, time_axis: bool = True, seed: int = 0) -> list[tuple]:
    """Two held-out inputs like ``example`` (a tensor or a tuple): other random values in its range and,
    with ``time_axis``, a longer time axis (+70 and +150 frames, or 64 times that in samples for a waveform).

    >>> [x[0].shape for x in held_out_inputs(torch.rand(2, 4, 10))]
    [torch.Size([2, 4, 80]), torch.Size([2, 4, 160])]
    """
    example = _as_tuple(example)
    g = torch.Generator().manual_seed(seed)
    out = []
    for extra in (70, 150):
        ins = []
        for i, x in enumerate(example):
            shape = list(x.shape)
            if i == 0 and time_axis:
                shape[-1] += extra * (64 if x.shape[-1] >= 512 else 1)  # frames, or samples of a waveform
            lo, hi = float(x.min()), float(x.max())
            ins.append((torch.rand(shape, generator=g, dtype=x.dtype) * (hi - lo) + lo) if hi > lo else
                       torch.rand(shape, generator=g, dtype=x.dtype))
        out.append(tuple(ins))
    return out


def export_onnx(module: nn.Module, example, path, check_inputs=None, rtol: float = ONNX_RTOL,
                input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None,
                time_axis: bool = True):
    """Export ``module`` to ONNX at ``path`` (dynamo exporter, dynamic batch and time axes), checked before writing.

    ``example``: an input tensor (or a tuple of them) to trace with. The graph is run in onnxruntime on
    ``check_inputs`` (a list of input tuples; default: two random inputs with a longer time axis and a
    larger batch than ``example``) and must equal eager to ``rtol`` (:func:`relative_error`); two
    different inputs must give different outputs (a graph that ignores its input is a defect). Either
    failure, or an exporter error, raises :class:`~melfront.errors.ParameterError` and writes nothing.
    Returns ``path``.

    >>> import tempfile, pathlib
    >>> from melfront.frontends import PCEN
    >>> p = export_onnx(PCEN(), torch.rand(1, 4, 20), pathlib.Path(tempfile.mkdtemp()) / "pcen.onnx")
    >>> p.name
    'pcen.onnx'
    """
    import onnx  # optional: the "dev"/"deploy" extra
    from pathlib import Path
    example = _examples(example)
    module = module.eval()
    try:
        with torch.no_grad():
            program = torch.onnx.export(module, example, dynamo=True, verbose=False,
                                        dynamic_shapes=dynamic_shapes(example, time_axis),
                                        input_names=list(input_names) if input_names else None,
                                        output_names=list(output_names) if output_names else None)
    except ParameterError:
        raise
    except Exception as exc:  # the exporter's many error types: report as one clear error
        msg = " ".join(str(exc).split())[:600]
        raise ParameterError(f"{type(module).__name__} cannot be exported to ONNX: {type(exc).__name__}: {msg}") from None
    data = program.model_proto.SerializeToString()
    onnx.checker.check_model(onnx.load_from_string(data))
    path = Path(path)
    checks = list(check_inputs) if check_inputs is not None else held_out_inputs(example, time_axis)
    with _temporary(path, data) as tmp:
        for inputs in checks:
            check_onnx(tmp, module, inputs, rtol)
        _check_uses_input(tmp, module, [_as_tuple(c) for c in checks])
        with atomic_write(path, "wb") as f:
            f.write(data)
    return path


class _temporary:
    """A temporary copy of ``data`` next to ``path`` (removed on exit), for checking before writing."""

    def __init__(self, path, data: bytes):
        import tempfile
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = tempfile.NamedTemporaryFile(suffix=".onnx", dir=path.parent, delete=False)
        self._f.write(data)
        self._f.close()

    def __enter__(self):
        return self._f.name

    def __exit__(self, *exc):
        import os
        os.unlink(self._f.name)


def _check_uses_input(path, module, checks: list[tuple]) -> None:
    """ParameterError unless two different first inputs of the same shape give different outputs."""
    import onnxruntime as ort
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [a.name for a in session.get_inputs()]
    base = checks[0]
    other = (base[0] * 0.5 + 0.25 * base[0].flip(-1),) + tuple(base[1:])
    outs = [session.run(None, {n: x.detach().cpu().numpy() for n, x in zip(names, ins)})[0] for ins in (base, other)]
    if np.array_equal(outs[0], outs[1]):
        raise ParameterError(f"{path}: the exported {type(module).__name__} gives the same output for two different "
                             f"inputs: the graph ignores its input")


def export_program(module: nn.Module, example, path=None, time_axis: bool = True):
    """``torch.export.export`` with dynamic batch and time axes; saved with ``torch.export.save`` when ``path`` is given.

    Returns the ``ExportedProgram`` (``torch.export.load(path).module()`` runs it).

    >>> from melfront.frontends import PCEN
    >>> ep = export_program(PCEN(), torch.rand(2, 3, 20))
    >>> ep.module()(torch.rand(2, 3, 70)).shape
    torch.Size([2, 3, 70])
    """
    example = _examples(example)
    try:
        with torch.no_grad():
            program = torch.export.export(module.eval(), example, dynamic_shapes=dynamic_shapes(example, time_axis))
    except ParameterError:
        raise
    except Exception as exc:
        msg = " ".join(str(exc).split())[:600]
        raise ParameterError(f"{type(module).__name__} cannot be exported: {type(exc).__name__}: {msg}") from None
    if path is not None:
        with atomic_write(path, "wb") as f:
            torch.export.save(program, f)
    return program


class StreamingClassifier(nn.Module):
    """A classifier with a PCEN frontend run on consecutive patches of a stream: ``(patch, state) -> (logits, state)``.

    ``patch`` ``(batch, n_mels, frames)`` is the next stretch of a linear mel spectrogram stream;
    ``state`` ``(batch, n_mels)`` the PCEN smoother's state before it (:meth:`initial_state` from the
    stream's first frame). The PCEN output of each patch equals that of the whole stream (see
    :class:`~melfront.frontends.StreamingPCEN`), so the backbone sees what it would on the whole clip.

    >>> from melfront.models import Classifier, build
    >>> clf = Classifier(PCEN(), build("resnet", 3, n_mels=16, n_frames=16, width=4))
    >>> sc = StreamingClassifier(clf)
    >>> x = torch.rand(2, 16, 16)
    >>> logits, state = sc(x, sc.initial_state(first_frames=x))
    >>> logits.shape, state.shape
    (torch.Size([2, 3]), torch.Size([2, 16]))
    """

    def __init__(self, classifier: nn.Module):
        super().__init__()
        frontend = getattr(classifier, "frontend", None)
        if not isinstance(frontend, PCEN):
            raise ParameterError(f"streaming export needs a classifier whose frontend is a PCEN (the one stateful "
                                 f"frontend), got {type(frontend).__name__}; export it without streaming")
        self.stream = StreamingPCEN(frontend)
        self.backbone = classifier.backbone

    def initial_state(self, first_frame: torch.Tensor | None = None, *,
                      first_frames: torch.Tensor | None = None) -> torch.Tensor:
        """The PCEN state before the first patch: from the stream's first frames ``(batch, n_mels, frames)``
        (the PCEN's start, e.g. the median of the first 40 frames), or from its first frame ``(batch, n_mels)``
        (the "first" start); see :meth:`melfront.frontends.StreamingPCEN.initial_state`."""
        return self.stream.initial_state(first_frame, first_frames=first_frames)

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        z, state = self.stream(x, state)
        return self.backbone(z.unsqueeze(1)), state
