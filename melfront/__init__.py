"""melfront: differentiable mel-spectrogram frontends and few-data experiments for audio classifiers.

The public names below are imported on first use (PEP 562), so that ``import melfront`` (and the
``melfront`` command's ``--help``) does not import torch; ``melfront.X`` and ``from melfront import X``
work as if they were imported here. Submodules (``melfront.data``, ``melfront.models``, ``melfront.mst``,
``melfront.plotting``, ...) load on first access too.

>>> import melfront
>>> melfront.PCEN.__name__, melfront.models.build.__name__
('PCEN', 'build')
"""
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version as _version

from .errors import (AudioError, CheckpointError, DataError, DivergenceError, MelfrontError, ParameterError,
                     StudyError, TrainingError)

#: public name -> the submodule that defines it (imported by :func:`__getattr__` on first use)
_LAZY = {
    "load_audio": "audio", "resample": "audio",
    "deltas": "functional", "mel_filterbank": "functional",
    **{name: "frontends" for name in (
        "MelSpectrogram", "Spectrogram", "FRONTENDS", "Chain", "Decibel", "Frontend", "Log10000", "LogEPS",
        "LogFloor", "LogLearn", "LogOffset", "MinMax", "PCEN", "PowerLearn", "Stack", "frontend",
        "StreamingMelSpectrogram", "StreamingPCEN")},       # chunked PCEN / mel with explicit state
    "AdaptiveFilterbank": "adaptive",                       # melfront.adaptive registers the "adaptive" frontend
    "load_classifier": "train",  # rebuild a trained classifier from a checkpoint: (classifier, config)
}

__all__ = ["AudioError", "CheckpointError", "DataError", "DivergenceError", "MelfrontError", "ParameterError",
           "StudyError", "TrainingError", *_LAZY, "data", "models", "mst", "plotting"]


def __getattr__(name: str):
    """A public name of :data:`_LAZY`, or a submodule (``melfront.data.dataset(name, root)``,
    ``melfront.models.build(...)``, ``melfront.mst`` (MSTModel, Tax et al. 2017), ``melfront.plotting``, ...)."""
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    if not name.startswith("_"):
        try:
            return import_module(f".{name}", __name__)  # the import sets the attribute too
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":  # a submodule that exists but fails to import: say so
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


try:
    __version__ = _version("melfront")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+local"
