"""Streaming frontends: PCEN and the mel spectrogram chunk by chunk, with the state as an explicit tensor.

Each ``forward(chunk, state) -> (output, new_state)`` takes and returns its state, so that an exported
graph (ONNX, ``torch.export``, TorchScript) has the state as an input and an output and a device can run
it frame by frame. Concatenating the outputs over the chunks equals one call on the whole recording.

>>> import torch
>>> from melfront.frontends import PCEN, StreamingPCEN
>>> stream, x = StreamingPCEN(PCEN()), torch.rand(1, 4, 100, dtype=torch.float64)
>>> state = stream.initial_state(first_frames=x[..., :40])   # the default start: median of 40 frames
>>> a, state = stream(x[..., :3], state)
>>> b, state = stream(x[..., 3:], state)
>>> torch.allclose(torch.cat([a, b], -1), PCEN()(x))
True
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from .. import functional as F
from ..errors import ParameterError
from .pcen import PCEN
from .spectrogram import MelSpectrogram

__all__ = ["StreamingPCEN", "StreamingMelSpectrogram"]


class StreamingPCEN(nn.Module):
    """A :class:`~melfront.frontends.PCEN` run on spectrogram chunks ``(..., n_mels, frames_chunk)`` of any length.

    ``forward(x, state) -> (y, new_state)``: ``state`` is the smoother's :math:`M[-1]` ``(..., n_mels)``
    before the chunk, ``new_state`` its last value :math:`M[T-1]`, to pass with the next chunk. The
    module shares the wrapped PCEN's parameters (a trained PCEN streams as it was trained).

    Starts: :meth:`initial_state` gives the first chunk's state for the PCEN's ``init``: ``"median"``
    (per band, the median of the first :data:`~melfront.functional.pcen_start.ROBUST_START_FRAMES` = 40 frames:
    a look-ahead of 40 frames, which the device buffers before its first output), ``"first"`` (the
    first frame, so :math:`M[0] = X[0]`), ``"zero"`` (0) and ``"librosa"`` (1); the chunked result
    then equals one call on the whole clip (to float rounding). ``"loop"`` is refused: its start is the
    periodic steady state of the *whole* clip (:math:`M[-1] = M_0[T-1] / (1 - (1-s)^T)`), which
    depends on the clip's end and does not exist for a stream; stream a ``"median"`` or ``"first"``
    PCEN instead (a loop-trained PCEN's parameters can be copied into one).

    >>> stream = StreamingPCEN(PCEN(n_mels=3, per_band=True, trainable=True, init="zero"))
    >>> y, state = stream(torch.rand(2, 3, 5), stream.initial_state(torch.rand(2, 3)))
    >>> y.shape, state.shape
    (torch.Size([2, 3, 5]), torch.Size([2, 3]))
    """

    input_kind = "mel"

    def __init__(self, pcen: PCEN | None = None):
        super().__init__()
        pcen = PCEN() if pcen is None else pcen
        if not isinstance(pcen, PCEN):
            raise ParameterError(f"StreamingPCEN wraps a melfront PCEN, got {type(pcen).__name__}")
        if pcen.init == "loop":
            raise ParameterError("a PCEN with init='loop' cannot stream: its start is the steady state of the whole "
                                 "clip played in a loop, which needs the clip's end; use init='median', 'first' or "
                                 "'zero'")
        self.pcen = pcen
        self.init = pcen.init

    def initial_state(self, first_frame: torch.Tensor | None = None, *,
                      first_frames: torch.Tensor | None = None) -> torch.Tensor:
        """The state before the first chunk, ``(..., n_mels)``: from the stream's opening frames.

        ``first_frames`` ``(..., n_mels, frames)``: the stream's first frames. ``"median"`` uses the
        first :data:`~melfront.functional.pcen_start.ROBUST_START_FRAMES` = 40 of them: given at least 40 (or the
        whole of a shorter clip), the chunked stream equals one call on the whole clip; given fewer
        of a longer clip, the start is the median of those (a shorter look-ahead, not the whole-clip
        result; one frame gives the ``"first"`` start). ``"first"`` uses frame 0, ``"zero"`` and
        ``"librosa"`` only the shape. ``first_frame`` ``(..., n_mels)``, positional: the first frame
        alone, the same as ``first_frames=first_frame[..., None]``.

        >>> StreamingPCEN(PCEN(init="zero")).initial_state(torch.ones(2, 3)).tolist()
        [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
        >>> x = torch.tensor([[[1.0, 5.0, 2.0], [0.0, 0.0, 3.0]]])      # (1, 2 bands, 3 frames)
        >>> StreamingPCEN(PCEN()).initial_state(first_frames=x).tolist()  # median per band
        [[2.0, 0.0]]
        """
        if (first_frame is None) == (first_frames is None):
            raise ParameterError("initial_state takes the first frame (..., n_mels) or first_frames=(..., n_mels, "
                                 "frames), one of them")
        frames = first_frame.unsqueeze(-1) if first_frame is not None else first_frames
        if not torch.is_tensor(frames) or frames.ndim < 2 or frames.shape[-1] == 0:
            raise ParameterError("first_frames must be a tensor (..., n_mels, frames) with at least one frame")
        m = frames.shape[-2]
        state, _ = F.start_state(frames.reshape(-1, m, frames.shape[-1]), self.init)
        if state is None:
            return torch.zeros_like(frames[..., 0])
        return state.reshape(frames.shape[:-1])

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if x.dtype == torch.float16 or x.dtype == torch.bfloat16:
            x = x.float()
        if not torch.jit.is_scripting():
            if not (torch.compiler.is_compiling() or torch.jit.is_tracing()):
                _check_pcen_state(x, state)
        if torch.jit.is_scripting():
            v = self.pcen.plain_values(x)
            return F.pcen_plain(x, v[0], v[1], v[2], v[3], v[4], self.init, state)
        return self.pcen.stream(x, state)


def _check_pcen_state(x, state) -> None:
    """ParameterError for a PCEN chunk or state the stream cannot continue from: a state must be a finite,
    non-negative tensor ``(..., n_mels)`` matching the chunk ``(..., n_mels, frames)`` (eager mode only)."""
    if not torch.is_tensor(x) or x.ndim < 2 or not x.is_floating_point():
        raise ParameterError("x must be a floating-point tensor (..., n_mels, frames)")
    if torch.is_tensor(state) and not state.is_floating_point():
        raise ParameterError(f"state must be a floating-point tensor, got {state.dtype}")
    if not torch.is_tensor(state) or tuple(state.shape) != tuple(x.shape[:-1]):
        got = tuple(state.shape) if torch.is_tensor(state) else type(state).__name__
        raise ParameterError(f"state must have shape {tuple(x.shape[:-1])} (the chunk's shape without its frames "
                             f"axis; see initial_state), got {got}")
    if not bool(torch.isfinite(state).all()):
        raise ParameterError("state holds NaN or infinite values: a smoother's state is a finite energy; start again "
                             "from initial_state")
    if bool((state < 0).any()):
        raise ParameterError(f"state holds negative values (min {float(state.min()):g}): a smoother's state is an "
                             f"energy >= 0; start again from initial_state")


class StreamingMelSpectrogram(nn.Module):
    """A :class:`~melfront.frontends.MelSpectrogram` on audio chunks, emitting the frames each chunk completes.

    ``forward(chunk, buffer) -> (mel, new_buffer)``: ``chunk`` ``(..., k * hop_length)`` samples (a
    multiple of the hop), ``buffer`` the last ``n_fft - hop_length`` samples seen ``(..., n_fft - hop_length)``
    (:meth:`initial_buffer`: zeros). Each chunk emits exactly ``k`` frames ``(..., n_mels, k)``.
    Equivalence: the concatenated frames equal ``center=False`` frames of the whole recording with
    ``n_fft - hop_length`` zeros in front, i.e. frame ``t`` ends at sample ``(t + 1) * hop_length``
    (a causal framing: no look-ahead, unlike ``center=True``, whose frame ``t`` is centred on sample
    ``t * hop_length``).

    >>> mel = MelSpectrogram(8000, n_fft=256, hop_length=64, n_mels=8)
    >>> stream, audio = StreamingMelSpectrogram(mel), torch.randn(1, 640)
    >>> a, buf = stream(audio[:, :128], stream.initial_buffer(1))
    >>> b, buf = stream(audio[:, 128:], buf)
    >>> whole = stream.whole(audio)
    >>> torch.allclose(torch.cat([a, b], -1), whole, atol=1e-5), whole.shape
    (True, torch.Size([1, 8, 10]))
    """

    input_kind = "waveform"

    def __init__(self, mel: MelSpectrogram):
        super().__init__()
        if not isinstance(mel, MelSpectrogram):
            raise ParameterError(f"StreamingMelSpectrogram wraps a melfront MelSpectrogram, got {type(mel).__name__}")
        if mel.hop_length > mel.n_fft:
            raise ParameterError(f"streaming needs hop_length <= n_fft, got {mel.hop_length} > {mel.n_fft}")
        self.mel = mel
        self.n_fft, self.hop_length = int(mel.n_fft), int(mel.hop_length)
        self.keep = self.n_fft - self.hop_length

    def initial_buffer(self, *batch: int, dtype=torch.float32) -> torch.Tensor:
        """Zeros ``(*batch, n_fft - hop_length)``: the buffer before the first chunk.

        >>> StreamingMelSpectrogram(MelSpectrogram(8000, n_fft=256, hop_length=64)).initial_buffer(2).shape
        torch.Size([2, 192])
        """
        return torch.zeros(*batch, self.keep, dtype=dtype)

    def _frames(self, audio: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(audio.reshape(-1, audio.shape[-1]), self.n_fft, self.hop_length, self.n_fft,
                          self.mel.window.to(audio.dtype), False, "constant", False, True, True)
        power = spec.abs().pow(float(self.mel.power)) if float(self.mel.power) != 2.0 else \
            spec.real.square() + spec.imag.square()
        out = torch.matmul(self.mel.mel_basis.to(power.dtype), power)
        return out.reshape(audio.shape[:-1] + out.shape[-2:])

    def forward(self, chunk: torch.Tensor, buffer: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if not torch.jit.is_scripting():
            if not (torch.compiler.is_compiling() or torch.jit.is_tracing()):
                self._check(chunk, buffer)
        audio = torch.cat([buffer.to(chunk.dtype), chunk], dim=-1)
        return self._frames(audio), audio[..., audio.shape[-1] - self.keep:]

    def _check(self, chunk, buffer) -> None:
        """ParameterError for a chunk or buffer the stream cannot take (eager mode only)."""
        if not torch.is_tensor(chunk) or chunk.ndim < 1 or not chunk.is_floating_point():
            raise ParameterError(f"chunk must be a floating-point tensor (..., samples), got "
                                 f"{type(chunk).__name__ if not torch.is_tensor(chunk) else chunk.dtype}")
        if chunk.shape[-1] == 0 or chunk.shape[-1] % self.hop_length:
            raise ParameterError(f"chunks must hold a positive multiple of hop_length={self.hop_length} samples, "
                                 f"got {chunk.shape[-1]}")
        if not torch.is_tensor(buffer) or tuple(buffer.shape) != tuple(chunk.shape[:-1]) + (self.keep,):
            got = tuple(buffer.shape) if torch.is_tensor(buffer) else type(buffer).__name__
            raise ParameterError(f"buffer must have shape {tuple(chunk.shape[:-1]) + (self.keep,)} (the chunk's "
                                 f"leading axes, then n_fft - hop_length = {self.keep} samples; see initial_buffer), "
                                 f"got {got}")

    def whole(self, audio: torch.Tensor) -> torch.Tensor:
        """The frames of a whole recording ``(..., time)`` as the stream emits them (time a multiple of the hop).

        >>> StreamingMelSpectrogram(MelSpectrogram(8000, n_fft=256, hop_length=64)).whole(torch.zeros(640)).shape
        torch.Size([128, 10])
        """
        pad = torch.zeros(audio.shape[:-1] + (self.keep,), dtype=audio.dtype, device=audio.device)
        return self._frames(torch.cat([pad, audio], dim=-1))
