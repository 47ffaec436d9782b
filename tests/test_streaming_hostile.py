"""Streaming frontends refuse states and chunks they cannot continue from, with clear errors (issue 23); loglearn
stays finite on the largest float32 inputs."""
import pytest
import torch

import melfront
from melfront.errors import ParameterError
from melfront.frontends import PCEN, MelSpectrogram, StreamingMelSpectrogram, StreamingPCEN


@pytest.mark.parametrize("bad, fragment", [
    (float("nan"), "NaN or infinite"), (float("inf"), "NaN or infinite"), (-1.0, "negative values"),
])
def test_streaming_pcen_refuses_a_state_it_cannot_continue_from(bad, fragment):
    stream = StreamingPCEN(PCEN())
    x = torch.rand(1, 4, 10)
    state = stream.initial_state(first_frames=x)
    state[0, 2] = bad
    with pytest.raises(ParameterError, match=fragment):
        stream(x, state)
    y, new = stream(x, stream.initial_state(first_frames=x))  # a sound state still streams
    assert torch.isfinite(y).all() and torch.isfinite(new).all()


@pytest.mark.parametrize("state", [torch.zeros(1, 5), torch.zeros(4), torch.zeros(2, 4), "zeros"])
def test_streaming_pcen_refuses_a_wrong_state_shape(state):
    with pytest.raises(ParameterError, match=r"state must have shape \(1, 4\)"):
        StreamingPCEN(PCEN())(torch.rand(1, 4, 10), state)


def test_streaming_mel_refuses_empty_chunks_and_wrong_buffers():
    stream = StreamingMelSpectrogram(MelSpectrogram(8000, n_fft=256, hop_length=64, n_mels=8))
    buf = stream.initial_buffer(1)
    with pytest.raises(ParameterError, match="positive multiple of hop_length=64 samples, got 0"):
        stream(torch.zeros(1, 0), buf)
    with pytest.raises(ParameterError, match="positive multiple of hop_length=64 samples, got 100"):
        stream(torch.zeros(1, 100), buf)
    for wrong in (torch.zeros(1, 191), torch.zeros(2, 192), torch.zeros(192)):
        with pytest.raises(ParameterError, match=r"buffer must have shape \(1, 192\)"):
            stream(torch.zeros(1, 128), wrong)
    mel, new = stream(torch.zeros(1, 128), buf)
    assert mel.shape == (1, 8, 2) and new.shape == (1, 192)


def test_loglearn_is_finite_on_the_largest_float32_inputs():
    x = torch.full((1, 4, 3), 3e38)
    for spec in ("loglearn", "loglearn(per_band=True, n_mels=4)", "logeps", "log10000"):
        assert torch.isfinite(melfront.frontend(spec)(x)).all(), spec
