"""UrbanSound8K (Salamon, Jacoby & Bello 2014, "A dataset and taxonomy for urban sound research", ACM MM).

Layout of the public release::

    ROOT/audio/fold{1..10}/{fsID}-{classID}-{occurrenceID}-{sliceID}.wav
    ROOT/metadata/UrbanSound8K.csv   columns slice_file_name, fsID, start, end, salience, fold, classID, class

8732 excerpts of at most 4 s, 10 classes, 10 official folds (use them as given: slices of one
Freesound recording share a fold). Only the clips present on disk are used.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import MetadataError
from .base import Clip, ClipList, compact_labels, find_audio, parse_int, read_csv, require_root
from .registry import register_dataset

__all__ = ["load_urbansound8k", "US8K_COLUMNS"]

US8K_COLUMNS = ("slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class")
_NAME = re.compile(r"^(\d+)-(\d+)-(\d+)-(\d+)$")


@register_dataset("urbansound8k", description="UrbanSound8K (Salamon et al. 2014): 10 urban sound classes, 10 official folds")
def load_urbansound8k(root=None) -> ClipList:
    """UrbanSound8K from its public layout.

    Returns
    -------
    ClipList
        Labels ``0..K-1`` in ``classID`` order among the classes present (label == classID for the
        full release); ``fold`` 1..10; ``source_id`` = ``fsID``. Rows whose file is absent are listed
        in ``.missing``.

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "audio" / "fold5").mkdir(parents=True); (root / "metadata").mkdir()
    >>> _ = (root / "audio" / "fold5" / "100032-3-0-0.wav").write_bytes(b"")
    >>> _ = (root / "metadata" / "UrbanSound8K.csv").write_text(
    ...     "slice_file_name,fsID,start,end,salience,fold,classID,class\\n100032-3-0-0.wav,100032,0,0.3,1,5,3,dog_bark\\n")
    >>> clips = load_urbansound8k(root)
    >>> clips.classes, clips.folds, clips[0].source_id
    (['dog_bark'], [5], '100032')
    """
    root = require_root(root, "urbansound8k", "urbansound8k", must_contain=("metadata/UrbanSound8K.csv", "audio"))
    meta = root / "metadata" / "UrbanSound8K.csv"
    clips, classes, missing = [], {}, []
    for line, row in read_csv(meta, US8K_COLUMNS):
        name = (row["slice_file_name"] or "").strip()
        if not name:
            raise MetadataError(meta, "empty slice_file_name", row=line)
        fold = parse_int(row["fold"], meta, line, "fold")
        class_id = parse_int(row["classID"], meta, line, "classID")
        fs_id = str(row["fsID"]).strip()
        class_name = (row["class"] or "").strip()
        if not 1 <= fold <= 10:
            raise MetadataError(meta, f"{name}: unknown fold {fold} (UrbanSound8K has folds 1..10)", row=line)
        m = _NAME.match(Path(name).stem)
        if m:
            if int(m.group(2)) != class_id:
                raise MetadataError(meta, f"{name}: the file name says classID {m.group(2)} but column 'classID' is {class_id}", row=line)
            if m.group(1) != fs_id:
                raise MetadataError(meta, f"{name}: the file name says fsID {m.group(1)} but column 'fsID' is {fs_id}", row=line)
        if classes.setdefault(class_id, class_name) != class_name:
            raise MetadataError(meta, f"{name}: classID {class_id} is {class_name!r} here but {classes[class_id]!r} in an earlier row", row=line)
        path = find_audio(root / "audio" / f"fold{fold}", name)
        if path is None:
            missing.append(str(root / "audio" / f"fold{fold}" / name))
            continue
        clips.append(Clip(str(path), class_id, class_name, fold, fs_id))
    clips, names = compact_labels(clips, {c.label: c.class_name for c in clips})
    out = ClipList(clips, name="urbansound8k", classes=names, root=root)
    out.missing = missing
    return out
