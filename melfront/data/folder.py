"""Any folder-per-class tree.

Accepted layouts (hidden entries ignored, audio found recursively under each class folder)::

    ROOT/{class}/.../*.wav                   fold 1
    ROOT/fold{N}/{class}/.../*.wav           fold N (an int)
    ROOT/{train,test,...}/{class}/.../*.wav  fold "train", "test", ... (the split's name)

Classes are the class-folder names sorted alphabetically (label = position); a class folder with no
audio is left out. A folder tree has no group metadata: every clip is its own group (``source_id`` "")
unless the clips' groups are taken from their file names with a regular expression
(:func:`melfront.data.base.with_groups`; ``--group-by REGEX`` of ``compare`` and ``train``). A flat tree
(fold 1 only) is split by a stratified, grouped holdout (:func:`melfront.data.sampling.grouped_holdout`).
:func:`group_hint` notices file names that share an id with repeats and suggests the ``--group-by`` pattern.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import DataNotFoundError, MetadataError
from .base import AUDIO_EXTENSIONS, Clip, ClipList, require_root
from .registry import register_dataset

__all__ = ["load_folder", "group_hint", "GROUP_PATTERNS"]

_SPLITS = {"train", "training", "test", "testing", "val", "valid", "validation", "dev", "development",
           "eval", "evaluation"}
_FOLD = re.compile(r"^fold[_-]?(\d+)$", re.IGNORECASE)


#: ``(pattern, what it takes)`` that :func:`group_hint` tries on file names (plain, linear-time expressions).
GROUP_PATTERNS = (
    (r"^([^_]+)_", "the id before the first underscore, <id>_<rest>"),
    (r"^([^-]+)-", "the id before the first hyphen, <id>-<rest>"),
    (r"^(.+)-[^-]*$", "the recording before the last hyphen, <recording>-<slice>"),
)


def group_hint(clips) -> str | None:
    """A sentence when the clips have no groups but their file names share an id with repeats, suggesting the
    ``--group-by`` pattern (never applied: the user decides); None otherwise.

    Of :data:`GROUP_PATTERNS`, those matching every file name, giving two ids or more, some id on two clips
    or more, and not just the class again (every id in one class and no more ids than classes) qualify; the
    one giving the fewest ids (the coarsest grouping) is suggested.

    >>> from melfront.data.base import Clip
    >>> clips = [Clip(f"/d/{c}/{spk}_{c}_{i}.wav", k, c, 1) for k, c in enumerate("ab") for spk in ("ann", "bob")
    ...          for i in range(3)]
    >>> print(group_hint(clips))
    file names share ids with repeats (2 ids over 12 clips, e.g. 'ann' on 6): clips of one id can fall on both sides of the split; not applied: to keep each id on one side, add --group-by '^([^_]+)_' (the id before the first underscore, <id>_<rest>)
    >>> group_hint([Clip(f"/d/a/{i}.wav", 0, "a", 1) for i in range(4)]) is None
    True
    """
    clips = list(clips)
    if len(clips) < 2 or any(getattr(c, "source_id", "") for c in clips):
        return None
    names = [Path(c.path).name for c in clips]
    found = []
    for pattern, what in GROUP_PATTERNS:
        rx = re.compile(pattern)
        ids = [m.group(1) if m else None for m in map(rx.search, names)]
        if None in ids:
            continue
        counts = {}
        classes = {}
        for i, c in zip(ids, clips):
            counts[i] = counts.get(i, 0) + 1
            classes.setdefault(i, set()).add(c.label)
        n_classes = len({c.label for c in clips})
        is_label = all(len(v) == 1 for v in classes.values()) and len(counts) <= n_classes
        if len(counts) >= 2 and max(counts.values()) >= 2 and not is_label:
            found.append((len(counts), pattern, what, counts))
    if not found:
        return None
    n_ids, pattern, what, counts = min(found, key=lambda f: f[0])
    top = max(counts, key=counts.get)
    return (f"file names share ids with repeats ({n_ids} ids over {len(clips)} clips, e.g. {top!r} on {counts[top]}): "
            f"clips of one id can fall on both sides of the split; not applied: to keep each id on one side, add "
            f"--group-by '{pattern}' ({what})")


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _audio_files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
                  and not any(part.startswith(".") for part in p.relative_to(path).parts))


def _not_files(path: Path, exts) -> list[list[str]]:
    """``[path, cause]`` of every entry named like audio that is not a regular file (a directory, FIFO, socket,
    device, broken or looping link): listed as skipped, never dropped unsaid.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / "dir.wav").mkdir(); (d / "gone.wav").symlink_to(d / "nowhere")
    >>> [(pathlib.Path(p).name, cause[:20]) for p, cause in _not_files(d, (".wav",))]
    [('dir.wav', 'is a directory, not '), ('gone.wav', 'broken symbolic link')]
    """
    from ..audio import audio_problem
    out = []
    for p in sorted(path.rglob("*")):
        if p.suffix.lower() in exts and not p.is_file() \
                and not any(part.startswith(".") for part in p.relative_to(path).parts):
            out.append([str(p), audio_problem(p) or "not a regular file"])
    return out


@register_dataset("folder", description="any folder-per-class tree (optionally split into fold{N}/ or train/, test/)")
def load_folder(root=None, extensions=None) -> ClipList:
    """A folder-per-class tree (optionally split into ``fold{N}/`` or ``train/``/``test/`` first).

    Parameters
    ----------
    root : str or Path
    extensions : iterable of str or None
        Audio file extensions to accept (default: wav, flac, ogg, aiff, aif, mp3).

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for rel in ("owl/1.wav", "owl/2.wav", "frog/1.flac"):
    ...     (root / rel).parent.mkdir(exist_ok=True)
    ...     _ = (root / rel).write_bytes(b"")
    >>> clips = load_folder(root)
    >>> clips.classes, clips.labels, clips.folds
    (['frog', 'owl'], [0, 1, 1], [1])
    """
    if root is None:
        raise DataNotFoundError("folder: pass root=DIR, a folder with one sub-folder of audio per class")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataNotFoundError(f"folder: root {str(root)!r} does not exist or is not a folder")
    root = require_root(root, "folder", "folder")
    exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in (extensions or AUDIO_EXTENSIONS))
    top = _subdirs(root)
    names = [p.name for p in top]
    if top and all(_FOLD.match(n) for n in names):
        groups = [(int(_FOLD.match(p.name).group(1)), p) for p in top]
    elif top and all(n.lower() in _SPLITS for n in names):
        groups = [(p.name, p) for p in top]
    else:
        groups = [(1, root)]
    per_fold, not_files = [], []
    for fold, base in groups:
        for cdir in _subdirs(base):
            files = [p for p in _audio_files(cdir) if p.suffix.lower() in exts]
            not_files += _not_files(cdir, exts)
            if files:
                per_fold.append((fold, cdir.name, files))
    if not per_fold:
        raise MetadataError(root, "no audio found: expected ROOT/{class}/*.wav (or ROOT/fold{N}/{class}/..., "
                                  "ROOT/train/{class}/...)")
    classes = sorted({c for _, c, _ in per_fold})
    index = {c: i for i, c in enumerate(classes)}
    clips = [Clip(str(p.resolve()), index[c], c, fold, "") for fold, c, files in per_fold for p in files]
    out = ClipList(clips, name="folder", classes=classes, root=root)
    out.skipped = list(getattr(out, "skipped", None) or []) + not_files  # kept by check_clips, shown in reports
    return out
