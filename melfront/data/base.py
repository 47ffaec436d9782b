"""The clip type every loader returns, and the single entry point :func:`dataset`.

A data set is a :class:`ClipList`: a plain ``list`` of :class:`Clip` records with the data set's
name, its class names in label order, the folds present and its root folder. Loaders read each
public release in its own layout and metadata and keep its official folds or splits, using whatever
clips and folds are present on disk.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

__all__ = ["Clip", "ClipList", "MetadataError", "dataset", "available_datasets", "AUDIO_EXTENSIONS"]

#: File extensions accepted as audio when a loader looks for a clip by stem.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3")


class MetadataError(ValueError):
    """Metadata that cannot be used: missing columns, unknown folds, labels that disagree with file names.

    The message names the metadata file and, where it applies, the row (1-based line number in the file).
    """

    def __init__(self, path, message: str, row: int | None = None):
        self.path, self.row = str(path), row
        where = f"{self.path}, line {row}" if row is not None else self.path
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Clip:
    """One labelled audio clip.

    Attributes
    ----------
    path : str
        Absolute path of the audio file.
    label : int
        Class index, ``0 .. n_classes - 1``, an index into :attr:`ClipList.classes`.
    class_name : str
        Name of the class.
    fold : int or str
        The official fold or split: ESC-50 1..5, UrbanSound8K 1..10, TUT 2017 development the fold in
        whose evaluate list the clip is (1..4), TUT evaluation set ``"evaluation"``, FSDD
        ``"train"``/``"test"``, folder trees 1 (or the sub-folder's fold).
    source_id : str
        The recording the clip was cut from (ESC-50 ``src_file``, UrbanSound8K ``fsID``, TUT location id,
        FSDD speaker), so that splits can keep the clips of one source together.
    """

    path: str
    label: int
    class_name: str
    fold: int | str
    source_id: str = ""


class ClipList(list):
    """A list of :class:`Clip` with the data set's ``name``, ``classes`` (label order), ``folds`` and ``root``."""

    def __init__(self, clips: Iterable[Clip] = (), name: str = "", classes=(), root=None):
        super().__init__(clips)
        self.name = name
        self.classes = list(classes)
        self.root = None if root is None else str(root)
        self.missing: list[str] = []  # metadata rows whose audio file is absent (set by the loaders)

    @property
    def folds(self) -> list:
        """Sorted unique folds present (ints before strings)."""
        present = {c.fold for c in self}
        return sorted(present, key=lambda f: (isinstance(f, str), f if isinstance(f, str) else int(f)))

    @property
    def labels(self) -> list[int]:
        return [c.label for c in self]

    def subset(self, clips) -> "ClipList":
        """A ClipList of ``clips`` (an iterable of Clip, or a boolean/ index predicate callable) with the same
        name, classes and root."""
        if callable(clips):
            clips = [c for c in self if clips(c)]
        return ClipList(clips, name=self.name, classes=self.classes, root=self.root)

    def by_fold(self, fold) -> "ClipList":
        """The clips of one fold."""
        return self.subset(c for c in self if c.fold == fold)

    def __getitem__(self, item):
        result = super().__getitem__(item)
        if isinstance(item, slice):
            return self.subset(result)
        return result

    def __repr__(self) -> str:
        return (f"ClipList(name={self.name!r}, clips={len(self)}, classes={len(self.classes)}, "
                f"folds={self.folds!r}, root={self.root!r})")


# --------------------------------------------------------------------------------------------
# Helpers shared by the loaders
# --------------------------------------------------------------------------------------------
def require_root(root, name: str, command: str, must_contain: Iterable[str] = ()) -> Path:
    """Check that a data set root exists (and holds the given relative paths); else FileNotFoundError
    that says which ``melfront download`` command fetches it."""
    if root is None:
        raise FileNotFoundError(f"{name}: no root folder given; fetch the data set with "
                                f"`melfront download {command} --root DIR` and pass root=DIR")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{name}: root folder {str(root)!r} does not exist; fetch it with "
                                f"`melfront download {command} --root {root}`")
    for rel in must_contain:
        if not (root / rel).exists():
            raise FileNotFoundError(f"{name}: {str(root / rel)!r} not found (is {str(root)!r} the data set's root?); "
                                    f"fetch it with `melfront download {command} --root {root}`")
    return root.resolve()


def read_csv(path: Path, required: Iterable[str], delimiter: str = ",") -> list[tuple[int, dict]]:
    """Rows of a CSV with a header as ``(line_number, dict)``; MetadataError if a required column is missing."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise MetadataError(path, f"missing column(s) {missing}; the header has {header}", row=1)
        rows = []
        for row in reader:
            if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                continue  # blank line
            rows.append((reader.line_num, row))
    return rows


def parse_int(value, meta: Path, row: int, column: str) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        raise MetadataError(meta, f"column {column!r} should be an integer, got {value!r}", row=row) from None


def find_audio(directory: Path, filename: str) -> Path | None:
    """``directory / filename`` if it exists, else a file with the same stem and any audio extension."""
    path = directory / filename
    if path.is_file():
        return path
    stem = Path(filename).stem
    for ext in AUDIO_EXTENSIONS:
        candidate = directory / (stem + ext)
        if candidate.is_file():
            return candidate
    return None


def label_map(pairs: Iterable[tuple[int, str]], meta: Path) -> list[str]:
    """Class names in label order from (label, name) pairs; MetadataError if one label has two names."""
    names: dict[int, str] = {}
    for label, name in pairs:
        if names.setdefault(label, name) != name:
            raise MetadataError(meta, f"label {label} is used for two classes: {names[label]!r} and {name!r}")
    return [names[k] for k in sorted(names)]


def compact_labels(clips: list[Clip], classes_by_old: dict[int, str]) -> tuple[list[Clip], list[str]]:
    """Renumber labels 0..K-1 in the order of the original label ids (used after selecting a subset of classes)."""
    order = sorted(classes_by_old)
    new = {old: i for i, old in enumerate(order)}
    out = [Clip(c.path, new[c.label], c.class_name, c.fold, c.source_id) for c in clips]
    return out, [classes_by_old[o] for o in order]


# --------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------
_LOADERS: dict[str, Callable[..., ClipList]] = {}


def _registry() -> dict[str, Callable[..., ClipList]]:
    if not _LOADERS:
        from . import esc50, folder, fsdd, synth, tut, urbansound8k
        _LOADERS.update({
            "esc50": esc50.load_esc50,
            "esc10": esc50.load_esc10,
            "urbansound8k": urbansound8k.load_urbansound8k,
            "tut2017": tut.load_tut2017,
            "fsdd": fsdd.load_fsdd,
            "folder": folder.load_folder,
            "synth": synth.load_synth,
        })
    return _LOADERS


def available_datasets() -> list[str]:
    """Names accepted by :func:`dataset`."""
    return list(_registry())


def dataset(name: str, root=None, **options) -> ClipList:
    """Load a data set by name.

    Parameters
    ----------
    name : str
        ``"esc50"`` (option ``esc10=True`` selects ESC-10), ``"esc10"``, ``"urbansound8k"``,
        ``"tut2017"`` (option ``split="development"|"evaluation"|"all"``), ``"fsdd"``, ``"folder"``
        (a folder-per-class tree) or ``"synth"`` (the synthetic field-recording set; generated and
        cached when ``root`` is None; options ``n_classes, clips_per_class, duration, sample_rate, seed, n_folds``).
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
    FileNotFoundError
        The root is missing; the message says which ``melfront download`` command fetches it.
    MetadataError
        Metadata with missing columns, unknown folds or labels that disagree with file names.
    """
    key = str(name).lower().replace("-", "").replace("_", "")
    aliases = {"us8k": "urbansound8k", "tut": "tut2017", "tut17": "tut2017", "synthetic": "synth"}
    key = aliases.get(key, key)
    loaders = _registry()
    if key not in loaders:
        raise ValueError(f"name must be one of {sorted(loaders)}, got {name!r}")
    return loaders[key](root, **options)


def _env_path(var: str) -> Path | None:
    value = os.environ.get(var)
    return Path(value).expanduser() if value else None
