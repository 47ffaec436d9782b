"""Frontend specs for the suites that must cover every registered frontend, derived from the registry.

``registered_specs()`` gives, for each registered mel frontend (``melfront.frontends.FRONTENDS``, its providers
included), its default spec and one spec per flag its builder takes (``per_band=True``, ``trainable=True``, both):
a newly registered frontend is in every suite that uses these lists without editing a test. ``EXTRA`` adds the
hand-picked settings that matter beyond the flags (PCEN's starts, decibels against the maximum) and the
combinations. Waveform frontends take audio, not mel spectrograms: :data:`WAVEFORM_SUITES` says where each is
tested, and ``test_frontend_safety.py::test_every_registered_frontend_is_covered`` fails for one that is not.
"""
import inspect

from melfront.frontends import FRONTENDS, frontend

#: settings beyond the flags, and combinations of frontends (``stack``, ``chain``, ``+``)
EXTRA = ["db(ref='max')", "pcen(trainable=True, per_band=True, init='loop')",
         "pcen(trainable=True, per_band=True, init='zero')",
         "stack(loglearn, pcen(trainable=True, per_band=True), power(per_band=True))", "chain(minmax, db)", "db+minmax"]

#: registered waveform frontends -> the tests that cover them (they need audio, a checkpoint, ...)
WAVEFORM_SUITES = {
    "adaptive": "test_filterbanks.py, test_export.py (ONNX, torch.export, torch.compile), test_scripting.py (refused)",
    "mst": "test_mst.py, test_export.py and test_scripting.py (from a saved checkpoint)",
}

_FLAGS = ("per_band", "trainable")


def _arguments(builder) -> set:
    try:
        return set(inspect.signature(builder).parameters)
    except (TypeError, ValueError):
        return set()


def mel_names() -> list:
    """The registered frontends that take a mel spectrogram and are not combinations, sorted."""
    return sorted(name for name, entry in FRONTENDS.items() if entry.input_kind == "mel" and not entry.combines)


def registered_specs() -> list:
    """Every registered mel frontend with its default settings, and with each flag its builder takes."""
    specs = []
    for name in mel_names():
        flags = [f for f in _FLAGS if f in _arguments(FRONTENDS[name].builder)]
        specs.append(name)
        specs += [f"{name}({flag}=True)" for flag in flags]
        if len(flags) == 2:
            specs.append(f"{name}(per_band=True, trainable=True)")
    return specs


def all_specs() -> list:
    """:func:`registered_specs` and :data:`EXTRA`."""
    return registered_specs() + EXTRA


def trainable_specs(**common) -> list:
    """The specs of :func:`all_specs` whose frontend has trainable parameters (built with ``common``)."""
    return [s for s in all_specs() if any(p.requires_grad for p in frontend(s, **common).parameters())]


def covers(keys, name: str) -> bool:
    """Whether a suite's keys or specs (``"pcen_trained_global"``, ``"pcen(init='loop')"``) include frontend ``name``."""
    return any(k == name or k.startswith((name + "_", name + "(")) for k in keys)
