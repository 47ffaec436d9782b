"""TUT Acoustic Scenes 2017 (Mesaros et al. 2017, "DCASE 2017 challenge setup: tasks, datasets and baseline system").

Layout of the public releases (10 s clips, 15 scene classes)::

    TUT-acoustic-scenes-2017-development/
        meta.txt                              audio/a001_0_10.wav<TAB>residential_area<TAB>a001
        audio/*.wav
        evaluation_setup/fold{1..4}_train.txt     audio/...wav<TAB>scene
        evaluation_setup/fold{1..4}_evaluate.txt  audio/...wav<TAB>scene
    TUT-acoustic-scenes-2017-evaluation/
        meta.txt                              audio/1.wav<TAB>scene[<TAB>location]
        audio/*.wav                           (or, without meta.txt, evaluation_setup/evaluate.txt)

``root`` may be either release's folder, or a folder holding both (as ``melfront download tut2017``
writes it). A development clip's fold is the fold in whose evaluate list it is (1..4; the official
cross-validation keeps recording locations apart); evaluation-set clips have fold ``"evaluation"``.
Labels are the scene names in alphabetical order.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..checks import one_of
from ..errors import DataNotFoundError, MetadataError
from .base import Clip, ClipList, find_audio, require_root
from .registry import register_dataset

__all__ = ["load_tut2017", "DEV_FOLDER", "EVAL_FOLDER"]

DEV_FOLDER = "TUT-acoustic-scenes-2017-development"
EVAL_FOLDER = "TUT-acoustic-scenes-2017-evaluation"
_FOLD_FILE = re.compile(r"^fold(\d+)_evaluate\.txt$")
_LOCATION = re.compile(r"^([a-z]\d+)_")


def _read_tab(path: Path, min_cols: int, what: str) -> list[tuple[int, list[str]]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            cols = [c.strip() for c in line.split("\t")]
            if len(cols) < min_cols:
                raise MetadataError(path, f"expected {what} separated by tabs, got {line!r}", row=line_no)
            rows.append((line_no, cols))
    return rows


def _resolve(base: Path, rel: str) -> Path | None:
    p = find_audio((base / rel).parent, Path(rel).name)
    return p


def _development(root: Path):
    meta = root / "meta.txt"
    entries = {}
    for line, cols in _read_tab(meta, 2, "filename, scene[, location]"):
        name, scene = cols[0], cols[1]
        location = cols[2] if len(cols) > 2 else ""
        m = _LOCATION.match(Path(name).name)
        if m and location and m.group(1) != location:
            raise MetadataError(meta, f"{name}: the file name says location {m.group(1)} but the location column is {location}", row=line)
        if name in entries:
            raise MetadataError(meta, f"{name}: listed twice", row=line)
        entries[name] = (scene, location)
    setup = root / "evaluation_setup"
    fold_files = sorted(setup.glob("fold*_evaluate.txt")) if setup.is_dir() else []
    if not fold_files:
        raise MetadataError(setup, "no fold{N}_evaluate.txt: cannot assign the official folds")
    fold_of = {}
    for ff in fold_files:
        fold = int(_FOLD_FILE.match(ff.name).group(1))
        if not 1 <= fold <= 4:
            raise MetadataError(ff, f"unknown fold {fold} (TUT 2017 development has folds 1..4)")
        for line, cols in _read_tab(ff, 1, "filename[, scene]"):
            name = cols[0]
            if name not in entries:
                raise MetadataError(ff, f"{name}: not listed in {meta}", row=line)
            if len(cols) > 1 and cols[1] and cols[1] != entries[name][0]:
                raise MetadataError(ff, f"{name}: scene {cols[1]!r} here but {entries[name][0]!r} in meta.txt", row=line)
            if name in fold_of and fold_of[name] != fold:
                raise MetadataError(ff, f"{name}: in the evaluate lists of folds {fold_of[name]} and {fold}", row=line)
            fold_of[name] = fold
    out, missing = [], []
    for name, (scene, location) in entries.items():
        if name not in fold_of:
            missing.append(str(root / name))
            continue
        path = _resolve(root, name)
        if path is None:
            missing.append(str(root / name))
            continue
        m = _LOCATION.match(Path(name).name)
        out.append((str(path), scene, fold_of[name], location or (m.group(1) if m else "")))
    return out, missing


def _evaluation(root: Path):
    meta = root / "meta.txt"
    if not meta.is_file():  # the first evaluation release had only evaluation_setup/evaluate.txt
        meta = root / "evaluation_setup" / "evaluate.txt"
    out, missing = [], []
    for line, cols in _read_tab(meta, 2, "filename, scene[, location]"):
        name, scene = cols[0], cols[1]
        path = _resolve(root, name)
        if path is None:
            missing.append(str(root / name))
            continue
        out.append((str(path), scene, "evaluation", cols[2] if len(cols) > 2 else ""))
    return out, missing


@register_dataset("tut2017", description="TUT Acoustic Scenes 2017 (Mesaros et al. 2017): 15 scenes, 4 official folds")
def load_tut2017(root=None, split: str = "development") -> ClipList:
    """TUT Acoustic Scenes 2017.

    Parameters
    ----------
    root : str or Path
        A release folder (``meta.txt`` inside) or the folder holding both releases.
    split : ``"development"`` (default), ``"evaluation"`` or ``"all"``

    Returns
    -------
    ClipList
        Development clips with ``fold`` 1..4, evaluation clips with ``fold`` ``"evaluation"``;
        ``source_id`` is the recording location (``a001``...) where known.

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "audio").mkdir(); (root / "evaluation_setup").mkdir()
    >>> for name in ("a001_0_10.wav", "b020_0_10.wav"):
    ...     _ = (root / "audio" / name).write_bytes(b"")
    >>> _ = (root / "meta.txt").write_text("audio/a001_0_10.wav\\tbeach\\ta001\\naudio/b020_0_10.wav\\tbus\\tb020\\n")
    >>> _ = (root / "evaluation_setup" / "fold1_evaluate.txt").write_text("audio/a001_0_10.wav\\tbeach\\n")
    >>> _ = (root / "evaluation_setup" / "fold2_evaluate.txt").write_text("audio/b020_0_10.wav\\tbus\\n")
    >>> clips = load_tut2017(root)
    >>> clips.classes, clips.folds, [c.source_id for c in clips]
    (['beach', 'bus'], [1, 2], ['a001', 'b020'])
    """
    one_of("split", split, ("development", "evaluation", "all"))
    base = require_root(root, "tut2017", "tut2017")
    wanted = ["development", "evaluation"] if split == "all" else [split]
    rows, missing = [], []
    for part in wanted:
        sub = base / (DEV_FOLDER if part == "development" else EVAL_FOLDER)
        if not sub.is_dir():
            if split == "all" or not (base / "meta.txt").is_file():
                raise DataNotFoundError(f"tut2017: {str(sub)!r} not found; fetch it with "
                                        f"`melfront download tut2017 --root {base}`")
            sub = base
        if not (sub / "meta.txt").is_file() and not (part == "evaluation" and
                                                     (sub / "evaluation_setup" / "evaluate.txt").is_file()):
            raise DataNotFoundError(f"tut2017: {str(sub / 'meta.txt')!r} not found; fetch the data set with "
                                    f"`melfront download tut2017 --root {base}`")
        r, m = (_development if part == "development" else _evaluation)(sub)
        rows += r
        missing += m
    classes = sorted({scene for _, scene, _, _ in rows})
    index = {c: i for i, c in enumerate(classes)}
    clips = [Clip(p, index[s], s, f, loc) for p, s, f, loc in rows]
    out = ClipList(clips, name="tut2017", classes=classes, root=base)
    out.missing = missing
    return out
