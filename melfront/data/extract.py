"""Safe extraction of downloaded archives (zip, tar, tar.gz/bz2/xz): nothing is written outside the target.

Extraction is refused, before anything is written, for any archive member with an absolute path,
a path that escapes the target through ``..``, a symbolic or hard link, or a device/FIFO file
("zip slip", tar links), and for archives expanding beyond :data:`MAX_EXTRACT_BYTES` or
:data:`MAX_EXTRACT_RATIO` times their size (zip bombs). A failed extraction removes what it wrote.
:mod:`melfront.data.download` fetches the archives and calls :func:`safe_extract`.
"""
from __future__ import annotations

import contextlib
import gzip
import lzma
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from ..checks import nonnegative_int, optional, positive_float, positive_int
from ..errors import DownloadError, UnsafeArchiveError
from ..fileio import atomic_write

__all__ = ["safe_extract", "MAX_EXTRACT_BYTES", "MAX_EXTRACT_RATIO", "RATIO_FREE_BYTES"]

#: Largest total size (bytes, members uncompressed) one archive may expand to; ``safe_extract(max_bytes=)``.
MAX_EXTRACT_BYTES = 64 * 2**30
#: Largest ratio of total uncompressed size to the archive's size; ``safe_extract(max_ratio=)``. Audio
#: archives expand about 1-3 times; a "zip bomb" hundreds to millions of times.
MAX_EXTRACT_RATIO = 100
#: Archives expanding to less than this many bytes are never refused for their ratio (harmless).
RATIO_FREE_BYTES = 1 << 20


#: Errors of a damaged or incomplete archive (an ``OSError`` without ``errno`` is a decompressor's).
_DAMAGE = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile,
           NotImplementedError)


def _safe_name(name: str, archive: Path, strip: int) -> PurePosixPath | None:
    """The member's relative path after stripping, or None if nothing is left; UnsafeArchiveError if unsafe."""
    raw = name.replace("\\", "/")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; refusing to extract")
    parts = [p for p in PurePosixPath(raw).parts if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains '..' and could escape the target folder; "
                                 "refusing to extract")
    parts = parts[strip:]
    return PurePosixPath(*parts) if parts else None


def _entries(handle):
    """``(name, kind, size, opener, link_target)`` per member; kind: file, dir, symbolic, hard or special."""
    if isinstance(handle, zipfile.ZipFile):
        for info in handle.infolist():
            ftype = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip carries no Unix file type
            kind = ("symbolic" if ftype == stat.S_IFLNK else "special" if ftype not in (0, stat.S_IFREG, stat.S_IFDIR)
                    else "dir" if info.is_dir() else "file")
            yield info.filename, kind, info.file_size, (lambda i=info: handle.open(i)), None
        return
    for m in handle.getmembers():
        kind = ("symbolic" if m.issym() else "hard" if m.islnk() else "file" if m.isfile() else "dir" if m.isdir()
                else "special")
        yield m.name, kind, m.size, (lambda mm=m: handle.extractfile(mm)), m.linkname


def _checked(archive: Path, handle, strip: int):
    """``([(relative_path, is_dir, size, opener)], handle)`` after checking every member."""
    out = []
    for name, kind, size, opener, link in _entries(handle):
        if kind in ("symbolic", "hard"):
            target = f" (to {link!r})" if link else ""
            raise UnsafeArchiveError(f"{archive}: member {name!r} is a {kind} link{target}; refusing to extract")
        if kind == "special":
            raise UnsafeArchiveError(f"{archive}: member {name!r} is a device, FIFO or special file; "
                                     "refusing to extract")
        rel = _safe_name(name, archive, strip)
        if rel is not None:
            out.append((rel, kind == "dir", size if kind == "file" else 0, opener))
    return out, handle


def _members(archive: Path, strip: int):
    """``[(relative_path, is_dir, size, opener)]`` for every member, after checking all of them."""
    with open(archive, "rb") as f:
        head = f.read(6)
    if zipfile.is_zipfile(archive):
        handle = zipfile.ZipFile(archive)
    elif head.startswith(b"PK\x03\x04"):
        raise DownloadError(f"{archive}: damaged or incomplete zip archive (no central directory); "
                            "delete it and download it again")
    else:
        try:
            handle = tarfile.open(archive)
        except tarfile.TarError:
            if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")):  # gzip, bzip2, xz
                raise DownloadError(f"{archive}: damaged or incomplete archive (its compressed data cannot "
                                    "be read); delete it and download it again") from None
            raise UnsafeArchiveError(f"{archive}: neither a zip nor a tar archive") from None
    try:
        return _checked(archive, handle, strip)
    except BaseException:
        handle.close()
        raise


def _extract_limit(archive: Path, members, max_bytes: int | None, max_ratio: float | None) -> int:
    """Refuse an archive whose members add up to too much; return the byte budget for writing."""
    total = sum(size for _, _, size, _ in members)
    packed = max(archive.stat().st_size, 1)
    by_ratio = None if max_ratio is None else max(int(max_ratio * packed), RATIO_FREE_BYTES)
    budget = min((b for b in (max_bytes, by_ratio) if b is not None), default=-1)  # -1: no limit
    if 0 <= budget < total:
        raise UnsafeArchiveError(
            f"{archive}: expands to {total} bytes, {total / packed:.0f} times its {packed} bytes, over the "
            f"limit of {budget} bytes (max_bytes={max_bytes}, max_ratio={max_ratio}); refusing to extract "
            "(pass larger max_bytes=/max_ratio= to safe_extract, or set "
            "melfront.data.extract.MAX_EXTRACT_BYTES/MAX_EXTRACT_RATIO)")
    return budget


def _mkdirs(folder: Path, created: list[Path]) -> None:
    """``folder.mkdir(parents=True)``, recording every folder it creates."""
    missing = [d for d in (folder, *folder.parents) if not d.exists()]
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
        created.append(d)


def _write_members(archive: Path, base: Path, members, budget: int, created: list[Path]) -> list[Path]:
    written, used = [], 0
    for rel, is_dir, _, opener in members:
        target = base / rel
        if is_dir:
            _mkdirs(target, created)
            continue
        _mkdirs(target.parent, created)
        existed = target.exists()
        with opener() as src, atomic_write(target, "wb") as out:
            for block in iter(lambda: src.read(1 << 20), b""):
                used += len(block)
                if 0 <= budget < used:
                    raise UnsafeArchiveError(f"{archive}: expands beyond its limit of {budget} bytes while "
                                             f"extracting {str(rel)!r}; refusing to extract")
                out.write(block)
        if not existed:
            created.append(target)
        written.append(target)
    return written


def _remove_created(created: list[Path]) -> None:
    for p in reversed(created):  # files before the folders that hold them
        with contextlib.suppress(OSError):
            p.rmdir() if p.is_dir() else p.unlink()


def safe_extract(archive, dest, strip: int = 0, max_bytes: int | None = None,
                 max_ratio: float | None = None) -> list[Path]:
    """Extract a zip or tar (gz/bz2/xz) archive into ``dest``, refusing unsafe members.

    Every member is checked before anything is written: absolute paths, ``..`` components (or any
    path resolving outside ``dest``), symbolic and hard links, and device/FIFO members raise
    :class:`UnsafeArchiveError`, and so does an archive whose members add up to more than
    ``max_bytes`` (default :data:`MAX_EXTRACT_BYTES`) or ``max_ratio`` times the archive's size (default
    :data:`MAX_EXTRACT_RATIO`; archives expanding to less than 1 MiB are exempt). The bytes actually
    written are counted against the same limit. ``strip`` drops leading path components (like
    ``tar --strip-components``). A damaged archive raises :class:`DownloadError`; on any failure the files
    and folders written so far are removed. Returns the files written.

    >>> import tempfile, pathlib, zipfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with zipfile.ZipFile(d / "a.zip", "w") as z:
    ...     z.writestr("top/x.txt", "hello")
    >>> [p.relative_to(d / "out").as_posix() for p in safe_extract(d / "a.zip", d / "out", strip=1)]
    ['x.txt']
    """
    archive, dest = Path(archive), Path(dest)
    strip = nonnegative_int("strip", strip)
    max_bytes = optional(positive_int, "max_bytes", MAX_EXTRACT_BYTES if max_bytes is None else max_bytes)
    max_ratio = optional(positive_float, "max_ratio", MAX_EXTRACT_RATIO if max_ratio is None else max_ratio)
    created: list[Path] = []
    try:
        members, handle = _members(archive, strip)
        with handle:
            budget = _extract_limit(archive, members, max_bytes, max_ratio)
            _mkdirs(dest, created)
            base = dest.resolve()
            for rel, _, _, _ in members:
                target = (base / rel).resolve()
                if target != base and base not in target.parents:
                    raise UnsafeArchiveError(f"{archive}: member {str(rel)!r} would be written outside {dest}; "
                                             "refusing to extract")
            return _write_members(archive, base, members, budget, created)
    except BaseException as exc:
        _remove_created(created)
        if isinstance(exc, _DAMAGE) or (type(exc) is OSError and exc.errno is None):
            raise DownloadError(f"{archive}: damaged or incomplete archive ({type(exc).__name__}: {exc}); "
                                "delete it and download it again") from None
        raise
