"""The data set registry: loaders join it with :func:`register_dataset`; :func:`dataset` looks them up.

Each loader module (``esc50.py``, ``urbansound8k.py``, ...) decorates its loader function, and
``melfront.data`` imports every loader module, so that importing any part of ``melfront.data`` fills
the registry. Nothing here imports a loader: lower modules never depend on the data sets.

>>> from melfront.data.registry import available_datasets, dataset_description
>>> "esc50" in available_datasets() and "synth" in available_datasets()
True
>>> dataset_description("fsdd")
'Free Spoken Digit Dataset (Jakobovski et al.): 10 digits, published train/test split'
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

from ..errors import ParameterError
from .base import ClipList

__all__ = ["register_dataset", "dataset", "available_datasets", "dataset_description", "DatasetEntry",
           "ALIASES"]

#: Other spellings accepted by :func:`dataset` (after lower-casing and removing ``-`` and ``_``).
ALIASES = {"us8k": "urbansound8k", "tut": "tut2017", "tut17": "tut2017", "synthetic": "synth"}


@dataclass(frozen=True)
class DatasetEntry:
    """A registered loader: ``loader(root, **options) -> ClipList`` and a one-line description.

    >>> entry = DatasetEntry("toy", lambda root=None: ClipList(name="toy"), "a toy")
    >>> entry.loader().name, entry.options
    ('toy', [])
    """

    name: str
    loader: Callable[..., ClipList]
    description: str = ""

    @property
    def options(self) -> list[str]:
        """Keyword options the loader accepts besides ``root``."""
        params = list(inspect.signature(self.loader).parameters.values())[1:]
        return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]

    def accepts_any_option(self) -> bool:
        """Whether the loader takes ``**options``."""
        return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(self.loader).parameters.values())


_REGISTRY: dict[str, DatasetEntry] = {}


def register_dataset(name: str, description: str = ""):
    """Decorator: register ``loader(root=None, **options) -> ClipList`` under ``name``.

    >>> @register_dataset("doctest-toy", description="an empty set")
    ... def load_toy(root=None):
    ...     return ClipList(name="toy")
    >>> dataset("doctest-toy").name
    'toy'
    >>> _ = _REGISTRY.pop("doctesttoy")
    """
    key = _normalise(name)

    def decorate(loader: Callable[..., ClipList]) -> Callable[..., ClipList]:
        if key in _REGISTRY and _REGISTRY[key].loader is not loader:
            raise ParameterError(f"a data set named {name!r} is already registered")
        _REGISTRY[key] = DatasetEntry(name, loader, description)
        return loader

    return decorate


def _normalise(name) -> str:
    return str(name).lower().replace("-", "").replace("_", "")


def _entry(name) -> DatasetEntry:
    if not isinstance(name, str):
        raise ParameterError(f"name must be a data set name (a string), got {name!r}")
    key = _normalise(name)
    key = ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise ParameterError(f"name must be one of {sorted(_REGISTRY)}, got {name!r}")
    return _REGISTRY[key]


def available_datasets() -> list[str]:
    """Names accepted by :func:`dataset`, in registration order.

    >>> available_datasets()[:2]
    ['esc50', 'esc10']
    """
    return list(_REGISTRY)


def dataset_description(name: str) -> str:
    """The one-line description a loader registered with (aliases accepted).

    >>> dataset_description("us8k")
    'UrbanSound8K (Salamon et al. 2014): 10 urban sound classes, 10 official folds'
    """
    return _entry(name).description


def dataset(name: str, root=None, **options) -> ClipList:
    """Load a data set by name.

    Parameters
    ----------
    name : str
        ``"esc50"`` (option ``esc10=True`` selects ESC-10), ``"esc10"``, ``"urbansound8k"``,
        ``"tut2017"`` (option ``split="development"|"evaluation"|"all"``), ``"fsdd"``, ``"folder"``
        (a folder-per-class tree) or ``"synth"`` (the synthetic field-recording set; generated and
        cached when ``root`` is None; options ``n_classes, clips_per_class, duration, sample_rate, seed, n_folds``).
        Case, ``-`` and ``_`` are ignored; ``us8k``, ``tut`` and ``synthetic`` are aliases.
    root : str or Path or None
        The data set's root folder (as written by ``melfront download NAME --root DIR``).
    **options
        Passed to the loader.

    Returns
    -------
    ClipList
        The clips, with ``.name``, ``.classes``, ``.folds`` and ``.root``.

    Raises
    ------
    ParameterError
        An unknown name, or an option the loader does not take (the message lists the ones it does).
    DataNotFoundError
        The root is missing (a ``FileNotFoundError`` too); the message says which ``melfront download`` command fetches it.
    MetadataError
        Metadata with missing columns, unknown folds or labels that disagree with file names.

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> clips = dataset("synth", root, n_classes=2, clips_per_class=2, duration=0.25, sample_rate=4000, n_folds=2)
    >>> len(clips), clips.classes, clips.folds
    (4, ['up_chirp', 'down_chirp'], [1, 2])
    >>> dataset("synth", root, colour="red")
    Traceback (most recent call last):
    ...
    melfront.errors.ParameterError: data set 'synth' has no option 'colour'; its options are: n_classes, clips_per_class, duration, sample_rate, seed, n_folds, progress, snr_db, gain_db
    """
    entry = _entry(name)
    if not entry.accepts_any_option():
        unknown = [k for k in options if k not in entry.options]
        if unknown:
            known = ", ".join(entry.options) or "none"
            raise ParameterError(f"data set {entry.name!r} has no option{'s' if len(unknown) > 1 else ''} "
                                 f"{', '.join(map(repr, unknown))}; its options are: {known}")
    return entry.loader(root, **options)
