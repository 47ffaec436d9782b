"""ESC-50 and ESC-10 (Piczak 2015, "ESC: Dataset for Environmental Sound Classification", ACM MM).

Layout of the public release (github.com/karolpiczak/ESC-50)::

    ROOT/audio/{fold}-{src_file}-{take}-{target}.wav
    ROOT/meta/esc50.csv     columns filename, fold, target, category, esc10, src_file, take

2000 clips of 5 s, 50 classes x 40 clips, 5 official folds (clips cut from one recording share a fold).
ESC-10 is the subset of 10 classes flagged by the ``esc10`` column. Any audio extension is accepted
for a row's stem (a copy converted to FLAC keeps working), and only the clips present are used.
"""
from __future__ import annotations

import re
from pathlib import Path

from .base import (Clip, ClipList, MetadataError, compact_labels, find_audio, parse_int, read_csv,
                   require_root)

__all__ = ["load_esc50", "load_esc10", "ESC50_COLUMNS"]

ESC50_COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
_NAME = re.compile(r"^(\d+)-([^-]+)-([A-Za-z]+)-(\d+)$")


def _truthy(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes", "t")


def read_esc50_layout(root, name: str = "esc50", command: str = "esc50", esc10: bool = False,
                      valid_folds=range(1, 6), meta_name: str = "esc50.csv") -> ClipList:
    """Read an ESC-50-style layout (also used for the synthetic set).

    Rows whose audio file is absent are left out and listed in ``ClipList.missing``.
    """
    root = require_root(root, name, command, must_contain=("meta/" + meta_name, "audio"))
    meta = root / "meta" / meta_name
    audio_dir = root / "audio"
    valid_folds = set(valid_folds)
    clips, classes, missing = [], {}, []
    for line, row in read_csv(meta, ESC50_COLUMNS):
        if esc10 and not _truthy(row["esc10"]):
            continue
        filename = (row["filename"] or "").strip()
        if not filename:
            raise MetadataError(meta, "empty filename", row=line)
        fold = parse_int(row["fold"], meta, line, "fold")
        target = parse_int(row["target"], meta, line, "target")
        category = (row["category"] or "").strip()
        if fold not in valid_folds:
            raise MetadataError(meta, f"{filename}: unknown fold {fold} (expected one of {sorted(valid_folds)})", row=line)
        if target < 0:
            raise MetadataError(meta, f"{filename}: negative target {target}", row=line)
        m = _NAME.match(Path(filename).stem)
        if m:  # the release's names encode fold and target: they must agree with the columns
            if int(m.group(1)) != fold:
                raise MetadataError(meta, f"{filename}: the file name says fold {m.group(1)} but column 'fold' is {fold}", row=line)
            if int(m.group(4)) != target:
                raise MetadataError(meta, f"{filename}: the file name says target {m.group(4)} but column 'target' is {target}", row=line)
        if classes.setdefault(target, category) != category:
            raise MetadataError(meta, f"{filename}: target {target} is {category!r} here but {classes[target]!r} in an earlier row", row=line)
        path = find_audio(audio_dir, filename)
        if path is None:
            missing.append(str(audio_dir / filename))
            continue
        clips.append(Clip(str(path), target, category, fold, str(row["src_file"]).strip()))
    used = {c.label: c.class_name for c in clips}
    clips, class_names = compact_labels(clips, used)
    out = ClipList(clips, name=name, classes=class_names, root=root)
    out.missing = missing
    return out


def load_esc50(root=None, esc10: bool = False) -> ClipList:
    """ESC-50 (or ESC-10 with ``esc10=True``) from its public layout.

    Parameters
    ----------
    root : str or Path
        Folder holding ``audio/`` and ``meta/esc50.csv``.
    esc10 : bool
        Keep only the ESC-10 rows (10 classes, labels renumbered 0..9 in ESC-50 target order).

    Returns
    -------
    ClipList
        Labels ``0..K-1`` in the order of the ``target`` column among the classes present (for the
        full release, label == target); ``fold`` 1..5; ``source_id`` = ``src_file``.
    """
    name = "esc10" if esc10 else "esc50"
    return read_esc50_layout(root, name=name, command=name, esc10=esc10)


def load_esc10(root=None) -> ClipList:
    """ESC-10: :func:`load_esc50` with ``esc10=True``."""
    return load_esc50(root, esc10=True)
