"""The clip type every loader returns, and the helpers the loaders share.

A data set is a :class:`ClipList`: a plain ``list`` of :class:`Clip` records with the data set's
name, its class names in label order, the folds present and its root folder. Loaders read each
public release in its own layout and metadata and keep its official folds or splits, using whatever
clips and folds are present on disk. The entry point :func:`melfront.data.dataset` lives in
:mod:`melfront.data.registry`.

>>> clips = ClipList([Clip("/d/a.wav", 0, "owl", 1), Clip("/d/b.wav", 1, "frog", 2)], name="toy",
...                  classes=["owl", "frog"], root="/d")
>>> clips
ClipList(name='toy', clips=2, classes=2, folds=[1, 2], root='/d')
"""
from __future__ import annotations

import csv
import dataclasses
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, audio_info, audio_problem
from ..errors import AudioError, DataError, DataNotFoundError, MetadataError
from ..safe_regex import search_all

__all__ = ["Clip", "ClipList", "MetadataError", "AUDIO_EXTENSIONS", "require_root", "read_csv", "parse_int",
           "find_audio", "label_map", "compact_labels", "group_of", "with_groups", "check_clips", "class_counts"]

#: File extensions accepted as audio when a loader looks for a clip by stem.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3")


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
        The clip's group: the recording it was cut from or who/where it was recorded (ESC-50 ``src_file``,
        UrbanSound8K ``fsID``, TUT location id, FSDD speaker; for folders what ``--group-by REGEX`` takes
        from the file name, see :func:`with_groups`), so that no group is on both sides of a split.
        Empty: the clip is its own group (see :func:`group_of`).

    >>> Clip("/data/dog.wav", 0, "dog", 1, "100032").fold
    1
    """

    path: str
    label: int
    class_name: str
    fold: int | str
    source_id: str = ""


class ClipList(list):
    """A list of :class:`Clip` with the data set's ``name``, ``classes`` (label order), ``folds`` and ``root``.

    Slices and :meth:`subset` keep the metadata.

    >>> clips = ClipList([Clip("a.wav", 0, "owl", 2), Clip("b.wav", 1, "frog", 1), Clip("c.wav", 0, "owl", "test")],
    ...                  name="toy", classes=["owl", "frog"])
    >>> clips.folds, clips.labels, len(clips.by_fold(2)), clips[:1].classes
    ([1, 2, 'test'], [0, 1, 0], 1, ['owl', 'frog'])
    """

    def __init__(self, clips: Iterable[Clip] = (), name: str = "", classes=(), root=None):
        super().__init__(clips)
        self.name = name
        self.classes = list(classes)
        self.root = None if root is None else str(root)
        self.missing: list[str] = []  # metadata rows whose audio file is absent (set by the loaders)
        self.skipped: list[list[str]] = []  # [path, cause] of unreadable clips left out (set by check_clips)

    @property
    def folds(self) -> list:
        """Sorted unique folds present (ints before strings)."""
        present = {c.fold for c in self}
        return sorted(present, key=lambda f: (isinstance(f, str), f if isinstance(f, str) else int(f)))

    @property
    def labels(self) -> list[int]:
        """The label of every clip, in order."""
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
    """Check that a data set root exists (and holds the given relative paths); else
    :class:`~melfront.errors.DataNotFoundError` (a ``FileNotFoundError`` too) that says which
    ``melfront download`` command fetches it.

    >>> require_root("/no/such/folder", "esc50", "esc50")
    Traceback (most recent call last):
    ...
    melfront.errors.DataNotFoundError: esc50: root folder '/no/such/folder' does not exist; fetch it with `melfront download esc50 --root /no/such/folder`
    """
    if root is None:
        raise DataNotFoundError(f"{name}: no root folder given; fetch the data set with "
                                f"`melfront download {command} --root DIR` and pass root=DIR")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataNotFoundError(f"{name}: root folder {str(root)!r} does not exist; fetch it with "
                                f"`melfront download {command} --root {root}`")
    for rel in must_contain:
        if not (root / rel).exists():
            raise DataNotFoundError(f"{name}: {str(root / rel)!r} not found (is {str(root)!r} the data set's root?); "
                                    f"fetch it with `melfront download {command} --root {root}`")
    return root.resolve()


def read_csv(path: Path, required: Iterable[str], delimiter: str = ",") -> list[tuple[int, dict]]:
    """Rows of a CSV with a header as ``(line_number, dict)``; MetadataError if a required column is missing.

    >>> import tempfile, pathlib
    >>> meta = pathlib.Path(tempfile.mkdtemp()) / "meta.csv"
    >>> _ = meta.write_text("filename,fold\\na.wav,1\\n\\nb.wav,2\\n")
    >>> [(line, row["filename"]) for line, row in read_csv(meta, ["filename", "fold"])]
    [(2, 'a.wav'), (4, 'b.wav')]
    """
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
    """``value`` as an int; MetadataError naming the file, row and column otherwise.

    >>> parse_int(" 3 ", "meta.csv", 2, "fold")
    3
    >>> parse_int("one", "meta.csv", 2, "fold")
    Traceback (most recent call last):
    ...
    melfront.errors.MetadataError: meta.csv, line 2: column 'fold' should be an integer, got 'one'
    """
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        raise MetadataError(meta, f"column {column!r} should be an integer, got {value!r}", row=row) from None


def find_audio(directory: Path, filename: str) -> Path | None:
    """``directory / filename`` if it exists, else a file with the same stem and any audio extension.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "dog.flac").write_bytes(b"")
    >>> find_audio(d, "dog.wav").name, find_audio(d, "cat.wav")
    ('dog.flac', None)
    """
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
    """Class names in label order from (label, name) pairs; MetadataError if one label has two names.

    >>> label_map([(1, "pig"), (0, "dog"), (1, "pig")], "meta.csv")
    ['dog', 'pig']
    """
    names: dict[int, str] = {}
    for label, name in pairs:
        if names.setdefault(label, name) != name:
            raise MetadataError(meta, f"label {label} is used for two classes: {names[label]!r} and {name!r}")
    return [names[k] for k in sorted(names)]


def compact_labels(clips: list[Clip], classes_by_old: dict[int, str]) -> tuple[list[Clip], list[str]]:
    """Renumber labels 0..K-1 in the order of the original label ids (used after selecting a subset of classes).

    >>> clips, names = compact_labels([Clip("a.wav", 40, "saw", 1), Clip("b.wav", 2, "pig", 1)], {40: "saw", 2: "pig"})
    >>> [c.label for c in clips], names
    ([1, 0], ['pig', 'saw'])
    """
    order = sorted(classes_by_old)
    new = {old: i for i, old in enumerate(order)}
    out = [Clip(c.path, new[c.label], c.class_name, c.fold, c.source_id) for c in clips]
    return out, [classes_by_old[o] for o in order]


# --------------------------------------------------------------------------------------------
# Groups, readability, class counts
# --------------------------------------------------------------------------------------------
def group_of(clip) -> str:
    """The group a clip belongs to: its ``source_id``, or its path when it has none (then it is its own group).

    >>> group_of(Clip("/d/a.wav", 0, "owl", 1, "rec7")), group_of(Clip("/d/b.wav", 0, "owl", 1))
    ('rec7', '/d/b.wav')
    """
    return getattr(clip, "source_id", "") or str(getattr(clip, "path", clip))


def with_groups(clips: ClipList, pattern: str | None) -> ClipList:
    """``clips`` with each ``source_id`` set from a regular expression searched in the file name.

    The group is the first capture group of ``pattern`` (or the whole match when it has none), e.g.
    ``^([^_]+)_nohash_`` takes the speaker of ``0a7c2a8d_nohash_1.wav``. None leaves ``clips`` as they
    are. A bad pattern, or one that takes too long (the searches run with a deadline, see
    :mod:`melfront.safe_regex`), is a ParameterError; file names it does not match are a DataError naming the count
    and the first of them (a clip with no group could leak across a split).

    >>> clips = ClipList([Clip("/d/yes/ann_nohash_0.wav", 0, "yes", 1), Clip("/d/no/bob_nohash_1.wav", 1, "no", 1)],
    ...                  classes=["yes", "no"])
    >>> [c.source_id for c in with_groups(clips, r"^([^_]+)_nohash_")]
    ['ann', 'bob']
    >>> with_groups(clips, r"^x")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    melfront.errors.DataError: --group-by '^x' matches 0 of 2 file names (first not matched: ann_nohash_0.wav)...
    """
    if pattern is None:
        return clips
    names = [Path(c.path).name for c in clips]
    groups = search_all("--group-by", pattern, names)  # compile check, bounded in time (melfront.safe_regex)
    out, unmatched = [], []
    for c, name, group in zip(clips, names, groups):
        if not group:
            unmatched.append(name)
            continue
        out.append(dataclasses.replace(c, source_id=group))
    if unmatched:
        raise DataError(f"--group-by {pattern!r} matches {len(clips) - len(unmatched)} of {len(clips)} file names "
                        f"(first not matched: {unmatched[0]}); every clip needs a group, fix the pattern")
    result = clips.subset(out)
    result.missing, result.skipped = list(clips.missing), list(clips.skipped)
    return result


def _header_problem(path) -> str | None:
    try:
        info = audio_info(path)
    except AudioError as exc:
        return exc.cause
    if not MIN_SAMPLE_RATE <= info.samplerate <= MAX_SAMPLE_RATE:
        return f"header declares a sample rate of {info.samplerate} Hz: the header is corrupt"
    if info.channels < 1:
        return f"header declares {info.channels} channels"
    if info.frames <= 0:
        return "contains no samples (zero-length audio)"
    return None


def check_clips(clips: ClipList, decode=audio_problem) -> tuple[ClipList, list[list[str]]]:
    """``(readable clips, [[path, cause], ...])``: every clip checked, unreadable ones out.

    Each clip's header is read, then its samples are decoded once at the file's own rate
    (:func:`melfront.audio.audio_problem`: block by block, nothing kept, no resampling): missing, empty, special
    and non-audio files, corrupt headers, implausible rates, zero-length audio, truncated data and NaN or
    infinite samples are all found here, before any few-shot sampling, so that ``n`` clips per class means
    ``n`` readable clips (``decode``: that check; a study passes one that remembers clean files,
    :meth:`melfront.data.cache.FeatureCache.audio_problem`). The returned list also becomes ``readable.skipped`` (after the loader's own
    ``clips.skipped``, e.g. directories or FIFOs named like audio). A class that had clips and has no
    readable one left is a DataError naming it and the first cause (it would stay in the study untrainable).

    >>> import tempfile, pathlib, numpy as np, soundfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> soundfile.write(d / "good.wav", np.zeros(800, np.float32), 8000)
    >>> _ = (d / "bad.wav").write_bytes(b"not audio")
    >>> clips = ClipList([Clip(str(d / "good.wav"), 0, "a", 1), Clip(str(d / "bad.wav"), 0, "a", 1)], classes=["a"])
    >>> readable, skipped = check_clips(clips)
    >>> len(readable), [pathlib.Path(p).name for p, _ in skipped], "not a readable audio file" in skipped[0][1]
    (1, ['bad.wav'], True)
    """
    kept, skipped, first_bad = [], [], {}
    for c in clips:
        problem = _header_problem(c.path) or decode(c.path)
        if problem is None:
            kept.append(c)
        else:
            skipped.append([str(c.path), problem])
            first_bad.setdefault(c.class_name, skipped[-1])
    had, left = Counter(c.class_name for c in clips), Counter(c.class_name for c in kept)
    for name in sorted(set(had) - set(left), key=str):
        first = first_bad[name]
        raise DataError(f"class {name!r}: all {had[name]} of its clips are unreadable (first: {first[0]}: "
                        f"{first[1]}); fix or remove them, or remove the class")
    readable = clips.subset(kept) if isinstance(clips, ClipList) else ClipList(kept)
    readable.missing = list(getattr(clips, "missing", []))
    readable.skipped = list(getattr(clips, "skipped", [])) + skipped
    return readable, skipped


def class_counts(clips, n_classes: int) -> list[int]:
    """Clips per class label ``0 .. n_classes - 1``.

    >>> class_counts([Clip("a.wav", 1, "b", 1), Clip("b.wav", 1, "b", 1)], 3)
    [0, 2, 0]
    """
    counts = Counter(int(c.label) for c in clips)
    return [counts.get(k, 0) for k in range(n_classes)]
