"""Streaming: chunked PCEN and mel spectrogram equal one call on the whole clip (the "median" start from the first
40 frames); "loop" refuses to stream; StreamingPCEN exports to ONNX with its state as input and output and runs
frame by frame in onnxruntime."""
import pytest
import torch

from melfront import StreamingMelSpectrogram, StreamingPCEN
from melfront.errors import ParameterError
from melfront.frontends import MelSpectrogram, PCEN

N_MELS = 6


def _learned(module):
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return module


def _chunks(T, seed=0):
    g = torch.Generator().manual_seed(seed)
    cuts, t = [], 0
    while t < T:
        n = int(torch.randint(1, 90, (1,), generator=g))
        cuts.append((t, min(T, t + n)))
        t += n
    return cuts


@pytest.mark.parametrize("init", ["median", "first", "zero", "librosa"])
@pytest.mark.parametrize("trainable", [False, True])
def test_chunked_pcen_equals_one_call(init, trainable):
    pcen = _learned(PCEN(trainable=True, per_band=True, n_mels=N_MELS, init=init)) if trainable else PCEN(init=init)
    stream = StreamingPCEN(pcen)
    x = torch.rand(2, N_MELS, 500, dtype=torch.float64) * 5
    x[..., 7] *= 100                                  # the median start differs from the first frame's and the mean's
    whole = pcen(x).detach()
    state, outs = stream.initial_state(first_frames=x[..., :40]), []
    for a, b in _chunks(500):
        y, state = stream(x[..., a:b], state)
        outs.append(y.detach())
    assert torch.allclose(torch.cat(outs, -1), whole, rtol=1e-10, atol=1e-12)
    if init == "first":                               # a single frame, positional, is the first frame
        assert torch.equal(stream.initial_state(x[..., 0]), state * 0 + x[..., 0])


def test_median_start_of_a_stream_uses_the_frames_it_is_given():
    stream = StreamingPCEN(PCEN())
    x = torch.rand(1, N_MELS, 100, dtype=torch.float64) * 5
    assert torch.equal(stream.initial_state(first_frames=x), stream.initial_state(first_frames=x[..., :40]))
    assert torch.equal(stream.initial_state(first_frames=x[..., :40]), x[..., :40].quantile(0.5, dim=-1))
    # fewer frames: the median of those (one frame: the "first" start); a whole clip shorter than 40 frames: exact
    assert torch.equal(stream.initial_state(first_frames=x[..., :1]), x[..., 0])
    short = x[..., :25]
    y, _ = stream(short, stream.initial_state(first_frames=short))
    assert torch.allclose(y, PCEN()(short), rtol=1e-12, atol=0)
    with pytest.raises(ParameterError, match="one of them"):
        stream.initial_state(x[..., 0], first_frames=x)
    with pytest.raises(ParameterError, match="at least one frame"):
        stream.initial_state(first_frames=x[..., :0])


def test_loop_start_refuses_to_stream():
    with pytest.raises(ParameterError, match="loop"):
        StreamingPCEN(PCEN(init="loop"))
    with pytest.raises(ParameterError, match="PCEN"):
        StreamingPCEN(MelSpectrogram())


def test_streaming_mel_equals_the_whole_recording_causal_framing():
    mel = MelSpectrogram(8000, n_fft=256, hop_length=64, n_mels=N_MELS)
    stream = StreamingMelSpectrogram(mel)
    audio = torch.randn(2, 64 * 40, dtype=torch.float64)
    buf, outs = stream.initial_buffer(2, dtype=torch.float64), []
    for k in (1, 5, 2, 12, 20):
        a = sum(o.shape[-1] for o in outs) * 64
        y, buf = stream(audio[:, a:a + 64 * k], buf)
        assert y.shape[-1] == k
        outs.append(y)
    assert torch.allclose(torch.cat(outs, -1), stream.whole(audio), rtol=1e-9, atol=1e-9)
    # frame t of the stream is the center=False frame ending at sample (t + 1) * hop of the zero-padded audio
    padded = torch.cat([torch.zeros(2, 192, dtype=torch.float64), audio], -1)
    ref = MelSpectrogram(8000, n_fft=256, hop_length=64, n_mels=N_MELS, center=False).double()(padded)
    assert torch.allclose(stream.whole(audio), ref, rtol=1e-9, atol=1e-9)
    with pytest.raises(ParameterError, match="multiple of hop_length"):
        stream(audio[:, :100], buf)


def test_streaming_pcen_onnx_frame_by_frame_equals_whole_clip(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from melfront.export import export_onnx, relative_error
    pcen = _learned(PCEN(trainable=True, per_band=True, n_mels=N_MELS))       # the default "median" start
    stream = StreamingPCEN(pcen)
    x = torch.rand(1, N_MELS, 60) * 5
    path = export_onnx(stream, (x[..., :20], stream.initial_state(x[..., 0])), tmp_path / "stream.onnx",
                       input_names=["mel", "state"], output_names=["pcen", "state_out"])
    session = ort.InferenceSession(str(path))
    assert [i.name for i in session.get_inputs()] == ["mel", "state"]
    # the device buffers the first 40 frames for the start, then runs frame by frame
    state, outs = stream.initial_state(first_frames=x[..., :40]).numpy(), []
    for t in range(x.shape[-1]):  # one frame at a time, as a device would
        y, state = session.run(None, {"mel": x[..., t:t + 1].numpy(), "state": state})
        outs.append(torch.from_numpy(y))
    assert relative_error(torch.cat(outs, -1), pcen(x).detach()) < 1e-5
