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

from ..errors import MetadataError
from .base import Clip, ClipList, compact_labels, find_audio, parse_int, read_csv, require_root
from .registry import register_dataset

__all__ = ["load_esc50", "load_esc10", "read_esc50_layout", "ESC50_COLUMNS"]

ESC50_COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
_NAME = re.compile(r"^(\d+)-([^-]+)-([A-Za-z]+)-(\d+)$")


def _truthy(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes", "t")


def read_esc50_layout(root, name: str = "esc50", command: str = "esc50", esc10: bool = False,
                      valid_folds=range(1, 6), meta_name: str = "esc50.csv") -> ClipList:
    """Read an ESC-50-style layout (also used for the synthetic set).

    Rows whose audio file is absent are left out and listed in ``ClipList.missing``.

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "audio").mkdir(); (root / "meta").mkdir()
    >>> _ = (root / "audio" / "1-100032-A-0.wav").write_bytes(b"")
    >>> _ = (root / "meta" / "esc50.csv").write_text("filename,fold,target,category,esc10,src_file,take\\n"
    ...     "1-100032-A-0.wav,1,0,dog,True,100032,A\\n2-100038-A-14.wav,2,14,chirping_birds,False,100038,A\\n")
    >>> clips = read_esc50_layout(root)
    >>> clips.classes, clips.folds, [pathlib.Path(m).name for m in clips.missing]
    (['dog'], [1], ['2-100038-A-14.wav'])
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


@register_dataset("esc50", description="ESC-50 (Piczak 2015): 50 environmental sound classes, 5 official folds")
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

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "audio").mkdir(); (root / "meta").mkdir()
    >>> for name in ("1-100032-A-0.wav", "3-104958-A-0.wav", "2-100648-A-43.wav"):
    ...     _ = (root / "audio" / name).write_bytes(b"")
    >>> _ = (root / "meta" / "esc50.csv").write_text("filename,fold,target,category,esc10,src_file,take\\n"
    ...     "1-100032-A-0.wav,1,0,dog,True,100032,A\\n3-104958-A-0.wav,3,0,dog,True,104958,A\\n"
    ...     "2-100648-A-43.wav,2,43,car_horn,False,100648,A\\n")
    >>> clips = load_esc50(root)
    >>> clips.classes, clips.folds, clips[0].source_id
    (['dog', 'car_horn'], [1, 2, 3], '100032')
    >>> len(load_esc50(root, esc10=True))
    2
    """
    name = "esc10" if esc10 else "esc50"
    return read_esc50_layout(root, name=name, command=name, esc10=esc10)


@register_dataset("esc10", description="ESC-10: the 10-class subset of ESC-50 flagged by its esc10 column")
def load_esc10(root=None) -> ClipList:
    """ESC-10: :func:`load_esc50` with ``esc10=True``.

    >>> load_esc10("/no/such/folder")
    Traceback (most recent call last):
    ...
    melfront.errors.DataNotFoundError: esc10: root folder '/no/such/folder' does not exist; fetch it with `melfront download esc10 --root /no/such/folder`
    """
    return load_esc50(root, esc10=True)
