"""Free Spoken Digit Dataset (Jakobovski et al., github.com/Jakobovski/free-spoken-digit-dataset).

Layout: ``ROOT/recordings/{digit}_{speaker}_{index}.wav`` (8 kHz mono). The published split puts
takes (indices) 0-4 of every speaker and digit in the test set and the rest in the train set.
"""
from __future__ import annotations

import re

from ..errors import MetadataError
from .base import AUDIO_EXTENSIONS, Clip, ClipList, require_root
from .registry import register_dataset

__all__ = ["load_fsdd"]

_NAME = re.compile(r"^(\d)_([A-Za-z0-9-]+)_(\d+)$")


@register_dataset("fsdd", description="Free Spoken Digit Dataset (Jakobovski et al.): 10 digits, published train/test split")
def load_fsdd(root=None) -> ClipList:
    """FSDD from its public layout.

    Returns
    -------
    ClipList
        Classes ``"0".."9"`` (label == digit), ``fold`` ``"test"`` for takes 0-4 else ``"train"``,
        ``source_id`` = the speaker. A file in ``recordings/`` whose name does not follow
        ``{digit}_{speaker}_{index}`` raises :class:`MetadataError` naming it.

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "recordings").mkdir()
    >>> for name in ("0_george_3.wav", "7_jackson_12.wav"):
    ...     _ = (root / "recordings" / name).write_bytes(b"")
    >>> [(c.label, c.source_id, c.fold) for c in load_fsdd(root)]
    [(0, 'george', 'test'), (7, 'jackson', 'train')]
    """
    root = require_root(root, "fsdd", "fsdd", must_contain=("recordings",))
    clips = []
    for path in sorted((root / "recordings").iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in AUDIO_EXTENSIONS:
            continue
        m = _NAME.match(path.stem)
        if not m:
            raise MetadataError(path, "file name does not follow FSDD's {digit}_{speaker}_{index}.wav")
        digit, speaker, index = int(m.group(1)), m.group(2), int(m.group(3))
        clips.append(Clip(str(path), digit, str(digit), "test" if index < 5 else "train", speaker))
    return ClipList(clips, name="fsdd", classes=[str(d) for d in range(10)], root=root)
