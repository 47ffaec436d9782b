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

from .errors import (AudioError, CheckpointError, DataError, DataNotFoundError, DivergenceError, MelfrontError,
                     ParameterError, StudyError, TrainingError)

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

__all__ = ["AudioError", "CheckpointError", "DataError", "DataNotFoundError", "DivergenceError", "MelfrontError",
           "ParameterError", "StudyError", "TrainingError", *_LAZY, "data", "models", "mst", "plotting"]


def __getattr__(name: str):
    """A public name of :data:`_LAZY`, or a submodule (``melfront.data.dataset(name, root)``,
    ``melfront.models.build(...)``, ``melfront.mst`` (MSTModel, Tax et al. 2017), ``melfront.plotting``, ...)."""
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    if name == "__version__":  # importlib.metadata takes 0.1 s to import: not for --help
        globals()[name] = _installed_version()
        return globals()[name]
    if not name.startswith("_"):
        try:
            return import_module(f".{name}", __name__)  # the import sets the attribute too
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":  # a submodule that exists but fails to import: say so
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))



def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("melfront")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "0.0.0+local"
