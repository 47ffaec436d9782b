"""Atomic file writes: a reader never sees half a file, a killed writer leaves the old file (or none).

Every file melfront writes that another process may read (checkpoints, JSON run records, cache
entries, metadata) goes through :func:`atomic_write`: the bytes go to a temporary file in the same
folder, are flushed to disk, and replace the target with :func:`os.replace`, atomic on POSIX and Windows.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> with atomic_write(d / "a.txt", "w") as f:
...     _ = f.write("hello")
>>> (d / "a.txt").read_text()
'hello'
>>> write_json(d / "b.json", {"n": 1}); (d / "b.json").read_text()
'{\\n  "n": 1\\n}'
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path

from .errors import PathError

__all__ = ["atomic_write", "write_json", "write_text", "torch_save", "save_figure", "TEMP_PREFIX"]

#: Prefix of temporary files; anything named ``.<TEMP_PREFIX>*`` in a folder is a dead writer's leftover.
TEMP_PREFIX = "melfront-tmp-"


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb"):
    """Open a temporary file beside ``path``; on success it replaces ``path``, on error it is removed.

    An operating-system error of the write itself (a read-only or missing folder, a full disk, ``path`` a
    directory) is a :class:`~melfront.errors.PathError` naming ``path`` (never the temporary file) and the
    errno's meaning; the old ``path``, if any, is left as it was.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_write(d, "w") as f:  # doctest: +ELLIPSIS
    ...     _ = f.write("x")
    Traceback (most recent call last):
    ...
    melfront.errors.PathError: /...: cannot write: is a directory (EISDIR)
    """
    path = Path(path)
    try:
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + TEMP_PREFIX, suffix=path.suffix)
    except OSError as exc:
        raise PathError.from_os_error(exc, path, "cannot write") from None
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            try:
                yield f
                f.flush()
                os.fsync(f.fileno())
            except OSError as exc:
                if exc.filename is not None or isinstance(exc, PathError):  # another file's error: as it is
                    raise
                raise PathError.from_os_error(exc, path, "cannot write") from None
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise PathError.from_os_error(exc, path, "cannot write") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path, obj, indent: int = 2) -> None:
    """Write ``obj`` as JSON, atomically."""
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=indent)


def write_text(path, text: str) -> None:
    """Write ``text`` (UTF-8), atomically.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.md"
    >>> write_text(p, "# report"); p.read_text()
    '# report'
    """
    with atomic_write(path, "w") as f:
        f.write(text)


def save_figure(fig, path, **kwargs) -> Path:
    """``fig.savefig`` to ``path``, atomically; returns the path written.

    The format is the suffix's (``.png``, ``.pdf``, ``.svg``, ...); a path without one gets ``.png``
    added, as ``savefig`` itself does. ``kwargs`` go to ``savefig`` (``dpi``, ...).

    >>> import tempfile, pathlib
    >>> from matplotlib.figure import Figure
    >>> out = save_figure(Figure(figsize=(1, 1)), pathlib.Path(tempfile.mkdtemp()) / "fig", dpi=20)
    >>> out.name, out.read_bytes()[:4]
    ('fig.png', b'\\x89PNG')
    """
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".png")
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format=path.suffix[1:].lower(), **kwargs)
    return path


def torch_save(obj, path) -> None:
    """``torch.save`` to ``path``, atomically."""
    import torch
    with atomic_write(path, "wb") as f:
        torch.save(obj, f)
