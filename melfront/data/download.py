"""Downloading and safely extracting the public data sets (the network through ``urllib`` only).

``melfront download esc50|esc10|urbansound8k|tut2017|fsdd --root DIR`` fetches each archive listed in
:data:`SOURCES` (the data sets' canonical public addresses) with a tqdm progress bar into
``DIR/.downloads/``, resuming an interrupted transfer from its ``.part`` file with an HTTP ``Range``
request (only if the server's length, ``ETag`` and ``Last-Modified`` match those recorded in
``<name>.part.json``, and the ``.part``'s bytes still match the length and SHA-256 recorded there),
retrying stalled connections, verifies the size and checksum where they are known, and extracts it into
``DIR`` so that ``melfront.data.dataset(name, DIR)`` reads it.

Extraction (:mod:`melfront.data.extract`, re-exported here) is refused, before anything is written, for any
archive member with an absolute path, a path that escapes ``DIR`` through ``..``, a symbolic or hard link, or
a device/FIFO file ("zip slip", tar links), and for archives expanding beyond :data:`MAX_EXTRACT_BYTES` or
:data:`MAX_EXTRACT_RATIO` times their size (zip bombs). A failed extraction removes what it wrote.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from ..checks import nonnegative_int, positive_float, positive_int
from ..errors import DownloadError, ParameterError, UnsafeArchiveError
from ..fileio import write_json
from .extract import MAX_EXTRACT_BYTES, MAX_EXTRACT_RATIO, safe_extract

__all__ = ["SOURCES", "DownloadError", "UnsafeArchiveError", "MAX_EXTRACT_BYTES", "MAX_EXTRACT_RATIO",
           "download_file", "safe_extract", "download_dataset"]



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
class _Stalled(Exception):
    """The server sent nothing for ``timeout`` seconds (retried by :func:`download_file`)."""


def _verify(path: Path, size=None, md5=None, sha256=None) -> None:
    actual = path.stat().st_size
    if size is not None and actual != size:
        raise DownloadError(f"{path}: size {actual} bytes, expected {size}")
    for algo, want in (("md5", md5), ("sha256", sha256)):
        if want:
            with open(path, "rb") as f:
                got = hashlib.file_digest(f, algo).hexdigest()
            if got.lower() != want.lower():
                raise DownloadError(f"{path}: {algo} checksum {got} does not match the expected {want}; "
                                    "the file was removed, run the command again to fetch it anew")


def _meta_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _read_meta(part: Path) -> dict | None:
    """The server's length and validators recorded when the ``.part`` was started (None if unknown)."""
    try:
        meta = json.loads(_meta_path(part).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _discard(part: Path) -> None:
    for p in (part, _meta_path(part)):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _validators(headers) -> dict:
    return {"etag": headers.get("ETag"), "last_modified": headers.get("Last-Modified")}


def _range_total(headers) -> tuple[int | None, int | None]:
    """``(start, total)`` from ``Content-Range: bytes a-b/N`` or ``bytes */N`` (None where absent)."""
    crange = headers.get("Content-Range", "") or ""
    if not crange.startswith("bytes ") or "/" not in crange:
        return None, None
    span, total = crange[6:].rsplit("/", 1)
    start = span.split("-")[0].strip()
    return (int(start) if start.isdigit() else None), (int(total) if total.isdigit() else None)


def _agrees(meta: dict | None, headers, total: int | None) -> bool:
    """Whether the server's file is the one the ``.part`` was started from (True when nothing was recorded)."""
    if meta is None:
        return True
    now = _validators(headers)
    for key in ("etag", "last_modified"):
        if meta.get(key) is not None and meta.get(key) != now[key]:
            return False
    return meta.get("total") is None or total is None or meta["total"] == total


def _request(url: str, have: int, meta: dict | None, timeout: float):
    """One GET (ranged from ``have`` when > 0); returns the response, or the HTTPError for a 416."""
    request = urllib.request.Request(url, headers={"User-Agent": "melfront-download"})
    if have:
        request.add_header("Range", f"bytes={have}-")
        validator = (meta or {}).get("etag") or (meta or {}).get("last_modified")
        if validator and not validator.startswith("W/"):
            request.add_header("If-Range", validator)  # a compliant server answers 200 if the file changed
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            return exc
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise _Stalled() from None
        raise DownloadError(f"{url}: {exc.reason}") from None
    except TimeoutError:
        raise _Stalled() from None
    except OSError as exc:  # connection reset or refused while reading the status line
        raise DownloadError(f"{url}: {exc}") from None


#: Bytes written between two records of the ``.part``'s length and SHA-256 in ``<dest>.part.json``.
CHECKPOINT_BYTES = 8 << 20


def _kept_prefix(part: Path, meta: dict | None, checksum_known: bool):
    """``(bytes of the .part to resume from, sha256 object over them)``.

    The record (``part_bytes``, ``part_sha256``, written every :data:`CHECKPOINT_BYTES` and when a transfer
    stops) decides: a prefix whose digest matches is kept (bytes after it, written after the last record, are
    cut); a prefix whose digest differs is a damaged ``.part``: start over (0). Without a record, the ``.part``
    is resumed only when a checksum will judge the whole file at the end; else it starts over.
    """
    h = hashlib.sha256()
    have = part.stat().st_size
    n, digest = (meta or {}).get("part_bytes"), (meta or {}).get("part_sha256")
    if isinstance(n, int) and not isinstance(n, bool) and isinstance(digest, str):
        if not 0 < n <= have:
            return 0, h
        with open(part, "rb") as f:
            left = n
            while left:
                block = f.read(min(1 << 20, left))
                if not block:
                    return 0, hashlib.sha256()
                h.update(block)
                left -= len(block)
        if h.hexdigest() != digest:
            return 0, hashlib.sha256()  # changed since it was written: never resumed blindly
        if n < have:
            os.truncate(part, n)
        return n, h
    if not checksum_known:
        return 0, h
    with open(part, "rb") as f:
        return have, hashlib.file_digest(f, "sha256")


def _record(part: Path, meta: dict, n: int, hasher) -> None:
    write_json(_meta_path(part), {**meta, "part_bytes": int(n), "part_sha256": hasher.hexdigest()})


def _open_transfer(url: str, part: Path, size: int | None, timeout: float, checksum_known: bool = False):
    """``(response or None, offset to write from, total length or None, sha256 of the bytes kept)``, restarting
    when resuming is unsafe (another file on the server, or a ``.part`` that does not match its record).

    ``response`` is None when the ``.part`` is already whole (the server answered 416 for its length).
    """
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        have = 0
    response = None
    hasher = hashlib.sha256()
    if have:
        meta = _read_meta(part)
        have, hasher = _kept_prefix(part, meta, checksum_known)
    if have:
        response = _request(url, have, meta, timeout)
        status = getattr(response, "status", None) or response.code
        start, total = _range_total(response.headers)
        if status == 206 and start is not None and start != have:
            response.close()
            raise DownloadError(f"{url}: asked to resume at byte {have}, server sent from {start}")
        resumable = _agrees(meta, response.headers, total) and (total is None or have <= total)
        if status == 206 and resumable:
            return response, have, total, hasher
        if status in (206, 416):  # 200: the server sends the whole file anew
            response.close()
            if status == 416 and resumable and total == have:
                return None, have, total, hasher  # the .part is already whole
            response = None  # a changed or shorter file: start over
    _discard(part)
    response = response or _request(url, 0, None, timeout)
    length = response.headers.get("Content-Length")
    return response, 0, (int(length) if length and length.isdigit() else None), hashlib.sha256()


def _receive(url: str, response, part: Path, offset: int, total: int | None, progress: bool,
             chunk_size: int, hasher=None) -> None:
    """Copy the body into ``part`` from ``offset`` (recording the server's validators on a fresh start, and the
    ``.part``'s length and SHA-256 every :data:`CHECKPOINT_BYTES` and when the transfer stops)."""
    hasher = hasher if hasher is not None else hashlib.sha256()
    if offset == 0:
        write_json(_meta_path(part), dict(url=url, total=total, **_validators(response.headers)))
    meta = _read_meta(part) or dict(url=url, total=total)
    since = 0
    try:
        with tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=part.name[:-5],
                  file=sys.stderr, disable=not progress) as bar, open(part, "ab" if offset else "wb") as f:
            while True:
                try:
                    block = response.read(chunk_size)
                except TimeoutError:
                    raise _Stalled() from None
                except Exception as exc:  # connection reset, IncompleteRead
                    raise DownloadError(f"{url}: transfer interrupted after {f.tell()} bytes "
                                        f"({type(exc).__name__}); run again to resume") from None
                if not block:
                    break
                f.write(block)
                hasher.update(block)
                since += len(block)
                if since >= CHECKPOINT_BYTES:
                    f.flush()
                    _record(part, meta, f.tell(), hasher)
                    since = 0
                bar.update(len(block))
    finally:
        with contextlib.suppress(OSError):
            _record(part, meta, part.stat().st_size, hasher)


def download_file(url: str, dest, size: int | None = None, md5: str | None = None, sha256: str | None = None,
                  progress: bool = True, timeout: float = 60.0, chunk_size: int = 1 << 20, retries: int = 3,
                  backoff: float = 1.0) -> Path:
    """Fetch ``url`` to ``dest``, resuming from ``dest + ".part"`` if a previous transfer was interrupted.

    The bytes go to ``<dest>.part``; when the transfer ends they are checked (``size`` in bytes,
    ``md5``/``sha256`` hex digests; the server's ``Content-Length`` when no size is given) and the file
    is renamed to ``dest``. An existing ``dest`` that passes the checks is kept without any transfer.
    A partial file is resumed with ``Range: bytes=N-`` only if its bytes still match the length and SHA-256
    recorded beside it (``<dest>.part.json``, every :data:`CHECKPOINT_BYTES` and when a transfer stops; a
    ``.part`` without a record is resumed only when ``md5``/``sha256`` will check the result) and the server's
    length, ``ETag`` and ``Last-Modified`` match those recorded when it was started; otherwise
    (and when the server answers 200 instead of 206) it restarts from zero. A checksum mismatch
    removes the file and raises :class:`DownloadError`. ``timeout`` (seconds) bounds every wait for the
    server; a stalled transfer is retried ``retries`` times, resuming, after ``backoff``, ``2 * backoff``,
    ... seconds, then :class:`DownloadError`.

    >>> download_file("http://127.0.0.1:9/x.zip", "/tmp/x.zip", progress=False, retries=0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    melfront.errors.DownloadError: http://127.0.0.1:9/x.zip: ...Connection refused
    """
    timeout, backoff = positive_float("timeout", timeout), positive_float("backoff", backoff)
    retries, chunk_size = nonnegative_int("retries", retries), positive_int("chunk_size", chunk_size)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        try:
            _verify(dest, size, md5, sha256)
            return dest
        except DownloadError:
            dest.unlink()
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            response, offset, total, hasher = _open_transfer(url, part, size, timeout, bool(md5 or sha256))
            if response is not None:
                with response:
                    _receive(url, response, part, offset, total, progress, chunk_size, hasher)
            break
        except _Stalled:
            if attempt < retries:
                time.sleep(backoff * 2**attempt)
    else:
        got = part.stat().st_size if part.exists() else 0
        raise DownloadError(f"{url}: the server sent nothing for {timeout:g} s, {retries + 1} time(s) "
                            f"({got} bytes received); check the connection and run again to resume")
    return _finish(url, part, dest, size if size is not None else total, md5, sha256)


def _finish(url: str, part: Path, dest: Path, expected: int | None, md5, sha256) -> Path:
    got = part.stat().st_size
    if expected is not None and got < expected:
        raise DownloadError(f"{url}: transfer interrupted at {got} of {expected} bytes; run again to resume")
    try:
        _verify(part, expected, md5, sha256)
    except DownloadError as exc:
        _discard(part)
        raise DownloadError(str(exc).replace(str(part), url)) from None
    os.replace(part, dest)
    _discard(part)
    return dest


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

    An archive found damaged when extracting is removed (with its output), so the next run fetches it anew.

    >>> download_dataset("esc51", "/tmp/nowhere")
    Traceback (most recent call last):
    ...
    melfront.errors.ParameterError: name must be one of 'esc10', 'esc50', 'fsdd', 'tut2017', 'urbansound8k'; got 'esc51'
    """
    key = name.lower() if isinstance(name, str) else name
    if sources is None:
        if key not in SOURCES:
            raise ParameterError(f"name must be one of {', '.join(map(repr, sorted(SOURCES)))}; got {name!r}")
        sources = SOURCES[key]
    root = Path(root).expanduser()
    downloads = root / ".downloads"
    for src in sources:
        url = src["url"] if mirror is None else mirror.rstrip("/") + "/" + src["filename"]
        archive = download_file(url, downloads / src["filename"], size=src.get("size"), md5=src.get("md5"),
                                sha256=src.get("sha256"), progress=progress)
        if progress:
            print(f"extracting {archive.name} into {root}", file=sys.stderr)
        try:
            safe_extract(archive, root, strip=src.get("strip", 0))
        except DownloadError as exc:  # damaged although it passed the checks we had: fetch it again next time
            archive.unlink(missing_ok=True)
            raise DownloadError(f"{exc}; the archive was removed, run again to fetch it anew") from None
        if not keep_archives:
            archive.unlink()
    return root
