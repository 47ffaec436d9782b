"""Downloading and safely extracting the public data sets.

``melfront download esc50|esc10|urbansound8k|tut2017|fsdd --root DIR`` fetches each archive listed in
:data:`SOURCES` (the data sets' canonical public addresses) with a tqdm progress bar into
``DIR/.downloads/``, resuming an interrupted transfer from its ``.part`` file with an HTTP ``Range``
request, verifies the size and checksum where they are known, and extracts it into ``DIR`` so that
``melfront.data.dataset(name, DIR)`` reads it.

Extraction is refused, before anything is written, for any archive member with an absolute path,
a path that escapes ``DIR`` through ``..``, a symbolic or hard link, or a device/FIFO file
(the "zip slip" and tar link attacks).

Only the standard library is used for the network (``urllib``).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

__all__ = ["SOURCES", "DownloadError", "UnsafeArchiveError", "download_file", "safe_extract", "download_dataset"]


class DownloadError(OSError):
    """A transfer that failed or whose size/checksum does not match."""


class UnsafeArchiveError(ValueError):
    """An archive member that would be written outside the target folder, or is a link or device file."""


def _zenodo(record: str, name: str, md5: str | None = None, size: int | None = None, strip: int = 0) -> dict:
    return dict(url=f"https://zenodo.org/record/{record}/files/{name}", filename=name, md5=md5, size=size, strip=strip)


_TUT_DEV = "TUT-acoustic-scenes-2017-development"
_TUT_EVAL = "TUT-acoustic-scenes-2017-evaluation"

#: Per data set: the archives to fetch. ``md5``/``sha256``/``size`` are checked when given; ``strip``
#: drops that many leading path components when extracting (GitHub archives have one top folder).
#: TUT 2017 sizes and MD5s are those published with the DCASE 2017 release (as listed by the DCASE
#: organisers' ``dcase_util`` package); GitHub branch archives change, so they carry no checksum.
SOURCES: dict[str, list[dict]] = {
    "esc50": [dict(url="https://github.com/karolpiczak/ESC-50/archive/master.zip", filename="ESC-50-master.zip",
                   md5=None, size=None, strip=1)],
    "urbansound8k": [_zenodo("1203745", "UrbanSound8K.tar.gz", strip=1)],
    "tut2017": (
        [_zenodo("400515", f"{_TUT_DEV}.meta.zip", "9007fd4772d816590c5db5f5e9568f5d", 104321)]
        + [_zenodo("400515", f"{_TUT_DEV}.audio.{i}.zip", md5, size) for i, (md5, size) in enumerate([
            ("251325a9afaaad0326ad1c57f57d514a", 1071445248), ("c26861e05147dc319b4250eb103d9d99", 1073453613),
            ("a4815775f8a5e629179726ee4cd4f55a", 1073077819), ("1732b03afe8c53ef8bba80ba14766e57", 1072822038),
            ("611be754a0c951185c6ae4b7643c19a0", 1072644652), ("165a201db800d3ea76fce5a9c2bd97d7", 1072667888),
            ("c7d79db84264401c0f8680dcc36013ad", 1073417661), ("35043f25123439392338c790494c7a19", 1072381222),
            ("0805dcf5d8e6871dc9610182b2efb93a", 1072087738), ("5df83a191295a04e290b125c634e13e7", 1046262120)], 1)]
        + [_zenodo("1040168", f"{_TUT_EVAL}.meta.zip", "e006cfec14a49dd79a6ab8f8d5b1c5e6", 4473)]
        + [_zenodo("1040168", f"{_TUT_EVAL}.audio.{i}.zip", md5, size) for i, (md5, size) in enumerate([
            ("5d97dea8461baec8027ae4a0c2b18d4b", 1071856687), ("4085ef5fa286f2169074993a4e405953", 1073362972),
            ("cac432579e7cf2dff0aec7aaed248956", 1071521152), ("664bf09c3d24bd26c6b587f1d709de36", 382756463)], 1)]
    ),
    "fsdd": [dict(url="https://github.com/Jakobovski/free-spoken-digit-dataset/archive/master.zip",
                  filename="free-spoken-digit-dataset-master.zip", md5=None, size=None, strip=1)],
}
SOURCES["esc10"] = SOURCES["esc50"]


# --------------------------------------------------------------------------------------------
# Transfer
# --------------------------------------------------------------------------------------------
def _hash_file(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _verify(path: Path, size=None, md5=None, sha256=None) -> None:
    actual = path.stat().st_size
    if size is not None and actual != size:
        raise DownloadError(f"{path}: size {actual} bytes, expected {size}")
    for algo, want in (("md5", md5), ("sha256", sha256)):
        if want:
            got = _hash_file(path, algo)
            if got.lower() != want.lower():
                raise DownloadError(f"{path}: {algo} checksum {got} does not match the expected {want}; "
                                    "the file was removed, run the command again to fetch it anew")


def download_file(url: str, dest, size: int | None = None, md5: str | None = None, sha256: str | None = None,
                  progress: bool = True, timeout: float = 60.0, chunk_size: int = 1 << 20) -> Path:
    """Fetch ``url`` to ``dest``, resuming from ``dest + ".part"`` if a previous transfer was interrupted.

    The bytes go to ``<dest>.part``; when the transfer ends they are checked (``size`` in bytes,
    ``md5``/``sha256`` hex digests; the server's ``Content-Length`` when no size is given) and the file
    is renamed to ``dest``. An existing ``dest`` that passes the checks is kept without any transfer.
    A partial file is resumed with ``Range: bytes=N-``; a server that answers 200 instead of 206
    restarts it from zero. A checksum mismatch removes the file and raises :class:`DownloadError`.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        try:
            _verify(dest, size, md5, sha256)
            return dest
        except DownloadError:
            dest.unlink()
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    request = urllib.request.Request(url, headers={"User-Agent": "melfront-download"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the .part is already whole
            response = None
        else:
            raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DownloadError(f"{url}: {exc.reason}") from None
    expected_total = size
    if response is not None:
        with response:
            status = response.status
            length = response.headers.get("Content-Length")
            if status == 206:
                mode = "ab"
                crange = response.headers.get("Content-Range", "")
                if crange.startswith("bytes ") and "/" in crange:
                    start = int(crange[6:].split("-")[0])
                    if start != have:
                        raise DownloadError(f"{url}: asked to resume at byte {have}, server sent from {start}")
                    total = crange.rsplit("/", 1)[1]
                    if total.isdigit() and expected_total is None:
                        expected_total = int(total)
            else:  # 200: the server ignored the range; start over
                mode, have = "wb", 0
                if length and length.isdigit() and expected_total is None:
                    expected_total = int(length)
            bar = None
            if progress:
                from tqdm import tqdm
                bar = tqdm(total=expected_total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                           desc=dest.name, file=sys.stderr)
            try:
                with open(part, mode) as f:
                    while True:
                        try:
                            block = response.read(chunk_size)
                        except Exception as exc:  # connection reset, IncompleteRead, timeout
                            raise DownloadError(f"{url}: transfer interrupted after {part.stat().st_size} bytes "
                                                f"({type(exc).__name__}); run again to resume") from None
                        if not block:
                            break
                        f.write(block)
                        if bar is not None:
                            bar.update(len(block))
            finally:
                if bar is not None:
                    bar.close()
    got = part.stat().st_size
    if expected_total is not None and got < expected_total:
        raise DownloadError(f"{url}: transfer interrupted at {got} of {expected_total} bytes; run again to resume")
    try:
        _verify(part, expected_total, md5, sha256)
    except DownloadError as exc:
        part.unlink()
        raise DownloadError(str(exc).replace(str(part), url)) from None
    os.replace(part, dest)
    return dest


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------
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


def _members(archive: Path, strip: int):
    """``[(relative_path, is_dir, opener)]`` for every member, after checking all of them."""
    out = []
    if zipfile.is_zipfile(archive):
        zf = zipfile.ZipFile(archive)
        for info in zf.infolist():
            ftype = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip carries no Unix file type
            if ftype == stat.S_IFLNK:
                raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a symbolic link; refusing to extract")
            if ftype not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a device or special file; "
                                         "refusing to extract")
            rel = _safe_name(info.filename, archive, strip)
            if rel is not None:
                out.append((rel, info.is_dir(), (lambda i=info: zf.open(i))))
        return out, zf
    try:
        tf = tarfile.open(archive)
    except tarfile.TarError:
        raise UnsafeArchiveError(f"{archive}: neither a zip nor a tar archive") from None
    for m in tf.getmembers():
        if m.issym() or m.islnk():
            kind = "symbolic" if m.issym() else "hard"
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a {kind} link (to {m.linkname!r}); "
                                     "refusing to extract")
        if not (m.isfile() or m.isdir()):
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a device, FIFO or special file; "
                                     "refusing to extract")
        rel = _safe_name(m.name, archive, strip)
        if rel is not None:
            out.append((rel, m.isdir(), (lambda mm=m: tf.extractfile(mm))))
    return out, tf


def safe_extract(archive, dest, strip: int = 0) -> list[Path]:
    """Extract a zip or tar (gz/bz2/xz) archive into ``dest``, refusing unsafe members.

    Every member is checked before anything is written: absolute paths, ``..`` components (or any
    path resolving outside ``dest``), symbolic and hard links, and device/FIFO members raise
    :class:`UnsafeArchiveError`. ``strip`` drops leading path components (like ``tar --strip-components``).
    Returns the files written.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    base = dest.resolve()
    members, handle = _members(archive, strip)
    with handle:
        for rel, _, _ in members:
            target = (base / rel).resolve()
            if target != base and base not in target.parents:
                raise UnsafeArchiveError(f"{archive}: member {str(rel)!r} would be written outside {dest}; "
                                         "refusing to extract")
        written = []
        for rel, is_dir, opener in members:
            target = base / rel
            if is_dir:
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".extracting")
            with opener() as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            os.replace(tmp, target)
            written.append(target)
    return written


# --------------------------------------------------------------------------------------------
# Whole data sets
# --------------------------------------------------------------------------------------------
def download_dataset(name: str, root, progress: bool = True, keep_archives: bool = True,
                     mirror: str | None = None, sources: list[dict] | None = None) -> Path:
    """Download and extract data set ``name`` into ``root``.

    Parameters
    ----------
    name : ``"esc50"``, ``"esc10"``, ``"urbansound8k"``, ``"tut2017"`` or ``"fsdd"``
    root : folder to create/fill; then ``melfront.data.dataset(name, root)`` reads it.
    keep_archives : keep the archives in ``root/.downloads`` (an interrupted or repeated run then skips
        finished transfers); False deletes each archive once extracted.
    mirror : base URL replacing each archive's folder (``mirror + "/" + filename``), for a local copy.
    sources : overrides :data:`SOURCES[name]` (list of dicts: url, filename, md5, sha256, size, strip).
    """
    key = name.lower()
    if sources is None:
        if key not in SOURCES:
            raise ValueError(f"name must be one of {sorted(SOURCES)}, got {name!r}")
        sources = SOURCES[key]
    root = Path(root).expanduser()
    downloads = root / ".downloads"
    for src in sources:
        url = src["url"] if mirror is None else mirror.rstrip("/") + "/" + src["filename"]
        archive = download_file(url, downloads / src["filename"], size=src.get("size"), md5=src.get("md5"),
                                sha256=src.get("sha256"), progress=progress)
        if progress:
            print(f"extracting {archive.name} into {root}", file=sys.stderr)
        safe_extract(archive, root, strip=src.get("strip", 0))
        if not keep_archives:
            archive.unlink()
    return root
