"""TorchScript: every frontend scripts with ``torch.jit.script`` (the plain-tensor path under
``torch.jit.is_scripting()``), its output equals eager, and the scripted module saves and loads; the adaptive
filterbank refuses with a ParameterError saying why (test_export.py)."""
import io
import tempfile
from pathlib import Path

import pytest
import torch

from melfront import functional as F
from melfront.frontends import (Chain, Decibel, LogFloor, LogOffset, MelSpectrogram, MinMax, PCEN, PowerLearn,
                                Spectrogram, Stack, StreamingPCEN, frontend)
from melfront.mst import MSTModel, mst_frontend, save_mst

from frontend_specs import registered_specs

N_MELS = 8


def _learned(module):
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return module


def _mst():
    """An untrained MSTModel (batch norm moved off identity) saved and loaded as the "mst" frontend."""
    model = _learned(MSTModel(n_mels=N_MELS, n_fft=128, hop_length=32, n_filters=4, n_hidden=4))
    with torch.no_grad():
        model.bn1.running_mean.add_(0.1)
        model.bn2.running_var.mul_(2.0)
    with tempfile.TemporaryDirectory() as folder:
        return mst_frontend(str(save_mst(Path(folder) / "mst.pt", model)))


FRONTENDS = {
    "mst": _mst,
    "mel": lambda: MelSpectrogram(8000, n_fft=256, hop_length=64, n_mels=N_MELS),
    "spectrogram_magnitude": lambda: Spectrogram(n_fft=128, hop_length=32, power=1.0),
    "spectrogram_power3": lambda: Spectrogram(n_fft=128, hop_length=32, power=3.0),
    "db_max": lambda: Decibel(ref="max", top_db=None),
    "db_ref": lambda: Decibel(ref=10.0, top_db=30.0),
    "logoffset_base2": lambda: LogOffset(alpha=3.0, beta=0.5, base=2),
    "logfloor_floor": lambda: LogFloor(floor=1e-2),
    "chain": lambda: Chain(MinMax(), Decibel()),
    "stack_nested": lambda: Stack(Decibel(), Stack(PCEN(), _learned(PowerLearn()))),
    "waveform_chain": lambda: Chain(MelSpectrogram(8000, n_fft=256, hop_length=64, n_mels=N_MELS), PCEN()),
}
for _init in F.PCEN_INITS:
    FRONTENDS[f"pcen_fixed_{_init}"] = lambda init=_init: PCEN(init=init, s=0.1)
    FRONTENDS[f"pcen_trained_band_{_init}"] = lambda init=_init: _learned(
        PCEN(trainable=True, per_band=True, n_mels=N_MELS, init=init))
FRONTENDS["pcen_trained_global"] = lambda: _learned(PCEN(trainable=True))
FRONTENDS["pcen_no_bias"] = lambda: PCEN(delta=0.0)
for _spec in registered_specs():  # every registered mel frontend, with each flag it takes (from the registry)
    FRONTENDS[_spec] = lambda spec=_spec: _learned(frontend(spec, n_mels=N_MELS))


@pytest.mark.parametrize("name", sorted(FRONTENDS))
def test_every_frontend_scripts_and_matches_eager(name):
    f = FRONTENDS[name]()
    g = torch.Generator().manual_seed(0)
    if getattr(f, "input_kind", "mel") == "waveform":
        x = torch.randn(2, 3000, generator=g) * 0.1
    else:
        x = torch.rand(2, N_MELS, 150, generator=g) * 10 + 1e-3
    scripted = torch.jit.script(f)
    want = f(x).detach()
    got = scripted(x)
    assert got.shape == want.shape
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    buf.seek(0)
    assert torch.equal(torch.jit.load(buf)(x), got)


def test_scripted_pcen_uses_its_input_and_runs_on_float64():
    scripted = torch.jit.script(_learned(PCEN(trainable=True, per_band=True, n_mels=N_MELS)))
    a = torch.rand(1, N_MELS, 70, dtype=torch.float64)
    assert scripted(a).dtype == torch.float64
    assert not torch.equal(scripted(a), scripted(a * 2))


def test_streaming_pcen_scripts():
    stream = StreamingPCEN(_learned(PCEN(trainable=True, per_band=True, n_mels=N_MELS)))
    scripted = torch.jit.script(stream)
    x = torch.rand(2, N_MELS, 40)
    state = stream.initial_state(first_frames=x)
    (y, s), (y2, s2) = scripted(x, state), stream(x, state)
    assert (y - y2).abs().max() <= 1e-5 * y2.abs().max() and (s - s2).abs().max() <= 1e-5 * s2.abs().max()
