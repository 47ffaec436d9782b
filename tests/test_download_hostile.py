"""Downloads and extraction against misbehaving servers and hostile or damaged archives.

Servers run on 127.0.0.1 inside the tests, with small timeouts; archives are made in tmp_path.
"""
import hashlib
import http.server
import io
import json
import socket
import struct
import tarfile
import threading
import time
import zipfile

import numpy as np
import pytest

from melfront.data import download as D
from melfront.data import extract
from melfront.data.download import DownloadError, UnsafeArchiveError, download_dataset, download_file, safe_extract
from melfront.errors import ParameterError


class _Server:
    """Serves ``files`` with Range; per file an ETag/Last-Modified; can ignore Range, honour If-Range, cut
    the next body after N bytes, or stall the next body after N bytes for ``stall_s`` seconds."""

    def __init__(self):
        self.files, self.etags, self.modified, self.requests = {}, {}, {}, []
        self.ignore_range = self.honour_if_range = False
        self.cut_next_after = self.stall_next_after = None
        self.stall_s = 1.5
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                outer.requests.append((name, self.headers.get("Range"), self.headers.get("If-Range")))
                data = outer.files.get(name)
                if data is None:
                    self.send_error(404)
                    return
                start, status, rng = 0, 200, self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                stale = outer.honour_if_range and if_range not in (None, outer.etags.get(name),
                                                                   outer.modified.get(name))
                if rng and not outer.ignore_range and not stale:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    status = 206
                body = data[start:]
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                for header, table in (("ETag", outer.etags), ("Last-Modified", outer.modified)):
                    if name in table:
                        self.send_header(header, table[name])
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if outer.stall_next_after is not None:
                    n, outer.stall_next_after = outer.stall_next_after, None
                    self.wfile.write(body[:n])
                    self.wfile.flush()
                    time.sleep(outer.stall_s)
                    self.close_connection = True
                    return
                if outer.cut_next_after is not None:
                    body, outer.cut_next_after = body[:outer.cut_next_after], None
                    self.close_connection = True
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs=dict(poll_interval=0.02), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


def _blob(seed, n=200_000):
    return np.random.default_rng(seed).bytes(n)


def _interrupted(server, tmp_path, name, data, **headers):
    """Start a transfer of ``data`` that is cut after 100 kB, leaving ``<name>.part`` and its record."""
    server.files[name] = data
    for key, value in headers.items():
        getattr(server, key)[name] = value
    server.cut_next_after = 100_000
    with pytest.raises(DownloadError, match="interrupted"):
        download_file(f"{server.url}/{name}", tmp_path / name, progress=False, chunk_size=8192)
    assert (tmp_path / f"{name}.part").stat().st_size == 100_000
    return json.loads((tmp_path / f"{name}.part.json").read_text())


# -- resuming only the same file --------------------------------------------------------------------
def test_same_validators_resume_and_the_record_is_removed(server, tmp_path):
    data = _blob(0)
    meta = _interrupted(server, tmp_path, "f.bin", data, etags='"v1"', modified="Mon, 01 Jan 2024 00:00:00 GMT")
    assert meta["etag"] == '"v1"' and meta["total"] == len(data)
    download_file(f"{server.url}/f.bin", tmp_path / "f.bin", sha256=hashlib.sha256(data).hexdigest(), progress=False)
    assert (tmp_path / "f.bin").read_bytes() == data
    assert server.requests[-1] == ("f.bin", "bytes=100000-", '"v1"')
    assert not (tmp_path / "f.bin.part").exists() and not (tmp_path / "f.bin.part.json").exists()


@pytest.mark.parametrize("change", ["etags", "modified", "length"])
def test_changed_file_on_a_server_ignoring_if_range_restarts_from_zero(server, tmp_path, change):
    old = _blob(1)
    headers = {"etags": dict(etags='"v1"'), "modified": dict(modified="Mon, 01 Jan 2024 00:00:00 GMT"),
               "length": {}}[change]
    _interrupted(server, tmp_path, "g.bin", old, **headers)
    new = _blob(2, len(old) + (5000 if change == "length" else 0))
    server.files["g.bin"] = new
    if change == "etags":
        server.etags["g.bin"] = '"v2"'
    if change == "modified":
        server.modified["g.bin"] = "Tue, 02 Jan 2024 00:00:00 GMT"
    download_file(f"{server.url}/g.bin", tmp_path / "g.bin", progress=False)  # no checksum: only validators
    assert (tmp_path / "g.bin").read_bytes() == new
    assert [r[1] for r in server.requests[-2:]] == ["bytes=100000-", None]  # resume refused, then from zero


def test_a_server_honouring_if_range_sends_the_new_file_at_once(server, tmp_path):
    _interrupted(server, tmp_path, "h.bin", _blob(3), etags='"v1"')
    server.honour_if_range = True
    new = _blob(4)
    server.files["h.bin"], server.etags["h.bin"] = new, '"v2"'
    n = len(server.requests)
    download_file(f"{server.url}/h.bin", tmp_path / "h.bin", progress=False)
    assert (tmp_path / "h.bin").read_bytes() == new
    assert server.requests[n:] == [("h.bin", "bytes=100000-", '"v1"')]  # one request, answered 200


def test_part_longer_than_the_server_file_restarts(server, tmp_path):
    data = _blob(5, 5000)
    server.files["p.bin"] = data
    (tmp_path / "p.bin.part").write_bytes(_blob(6, 6000))  # an older, longer file, no record
    download_file(f"{server.url}/p.bin", tmp_path / "p.bin", progress=False)
    assert (tmp_path / "p.bin").read_bytes() == data
    assert [r[1] for r in server.requests] == [None]  # no record, no checksum: never resumed blindly


@pytest.mark.parametrize("damage", ["start", "end"])
def test_a_corrupt_part_is_not_resumed_without_a_checksum(server, tmp_path, damage):
    data = _blob(9)
    meta = _interrupted(server, tmp_path, "k.bin", data, etags='"v1"')
    assert meta["part_bytes"] == 100_000 and meta["part_sha256"] == hashlib.sha256(data[:100_000]).hexdigest()
    part = tmp_path / "k.bin.part"
    raw = bytearray(part.read_bytes())
    where = slice(0, 1000) if damage == "start" else slice(99_000, 100_000)
    raw[where] = bytes(1000)  # the first (or last) 1000 bytes changed on disk
    part.write_bytes(bytes(raw))
    download_file(f"{server.url}/k.bin", tmp_path / "k.bin", progress=False)  # no checksum known
    assert (tmp_path / "k.bin").read_bytes() == data
    assert server.requests[-1][1] is None  # started over, not resumed at byte 100000


def test_bytes_after_the_last_record_are_cut_and_resumed(server, tmp_path):
    data = _blob(10)
    _interrupted(server, tmp_path, "m.bin", data)
    part = tmp_path / "m.bin.part"
    with open(part, "ab") as f:  # a writer killed after writing past its last record: bytes nobody vouches for
        f.write(b"\xff" * 5000)
    download_file(f"{server.url}/m.bin", tmp_path / "m.bin", progress=False)
    assert (tmp_path / "m.bin").read_bytes() == data
    assert server.requests[-1][1] == "bytes=100000-"


def test_server_ignoring_range_restarts_and_records_anew(server, tmp_path):
    meta = _interrupted(server, tmp_path, "r.bin", _blob(7), etags='"a"')
    assert meta["etag"] == '"a"'
    server.ignore_range = True
    new = _blob(8, 150_000)
    server.files["r.bin"], server.etags["r.bin"] = new, '"b"'
    server.stall_next_after, server.stall_s = 30_000, 1.0  # stalls; the retry must not trust the old record
    download_file(f"{server.url}/r.bin", tmp_path / "r.bin", progress=False, timeout=0.3, backoff=0.01)
    assert (tmp_path / "r.bin").read_bytes() == new


# -- stalled connections ----------------------------------------------------------------------------
def test_silent_server_times_out_with_retries_and_backoff(tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    accepted, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])  # accept, then say nothing
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/x.zip"
    t0 = time.monotonic()
    try:
        with pytest.raises(DownloadError, match=r"x.zip: the server sent nothing for 0.2 s, 3 time\(s\)"):
            download_file(url, tmp_path / "x.zip", progress=False, timeout=0.2, retries=2, backoff=0.05)
        elapsed = time.monotonic() - t0
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        listener.close()
    assert len(accepted) == 3
    assert 0.6 + 0.15 <= elapsed < 10  # three timeouts plus 0.05 + 0.1 s of backoff


def test_stall_mid_body_is_resumed_by_the_retry(server, tmp_path):
    data = _blob(9)
    server.files["s.bin"] = data
    server.stall_next_after = 50_000
    download_file(f"{server.url}/s.bin", tmp_path / "s.bin", progress=False, timeout=0.3, backoff=0.01,
                  chunk_size=4096)
    assert (tmp_path / "s.bin").read_bytes() == data
    resumed_at = int(server.requests[-1][1][6:-1])
    assert 40_000 <= resumed_at <= 50_000  # what had arrived in whole blocks before the stall


def test_bad_transfer_arguments(tmp_path):
    for kw, name in [(dict(timeout=0), "timeout"), (dict(retries=-1), "retries"), (dict(chunk_size=0), "chunk_size")]:
        with pytest.raises(ParameterError, match=name):
            download_file("http://127.0.0.1:9/a", tmp_path / "a", progress=False, **kw)
    with pytest.raises(ParameterError, match="name must be one of"):
        download_dataset("nope", tmp_path)


# -- extraction limits ------------------------------------------------------------------------------
def _zeros_zip(path, n):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("ok.txt", b"fine")
        z.writestr("zeros.bin", bytes(n))
    return path


def test_compression_ratio_bomb_is_refused_before_writing(tmp_path):
    arc = _zeros_zip(tmp_path / "bomb.zip", 8 << 20)  # 8 MiB of zeros in ~8 kB
    out = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match=r"bomb.zip: expands to \d+ bytes, \d+ times its"):
        safe_extract(arc, out)
    assert not out.exists()
    written = safe_extract(arc, out, max_ratio=100_000)  # the limit can be raised
    assert (out / "zeros.bin").stat().st_size == 8 << 20 and len(written) == 2


def test_one_megabyte_zip_declaring_a_gibibyte_is_refused(tmp_path):
    arc = tmp_path / "liar.zip"
    with zipfile.ZipFile(arc, "w", zipfile.ZIP_STORED) as z:
        z.writestr("big.bin", np.random.default_rng(0).bytes(1 << 20))
    data = bytearray(arc.read_bytes())
    cd = data.index(b"PK\x01\x02")
    data[cd + 24:cd + 28] = struct.pack("<I", 1 << 30)  # central directory: uncompressed size 1 GiB
    arc.write_bytes(bytes(data))
    assert zipfile.ZipFile(arc).infolist()[0].file_size == 1 << 30
    with pytest.raises(UnsafeArchiveError, match="expands to 1073741824 bytes"):
        safe_extract(arc, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_total_size_limit_for_tar(tmp_path, monkeypatch):
    arc = tmp_path / "a.tar.gz"
    with tarfile.open(arc, "w:gz") as t:
        for i in range(3):
            payload = np.random.default_rng(i).bytes(4000)
            info = tarfile.TarInfo(f"top/f{i}.bin")
            info.size = len(payload)
            t.addfile(info, io.BytesIO(payload))
    with pytest.raises(UnsafeArchiveError, match="limit of 10000 bytes"):
        safe_extract(arc, tmp_path / "out", max_bytes=10_000)
    monkeypatch.setattr(extract, "MAX_EXTRACT_BYTES", 11_000)  # the module safe_extract reads it from
    with pytest.raises(UnsafeArchiveError, match="expands to 12000 bytes"):
        safe_extract(arc, tmp_path / "out")
    assert len(safe_extract(arc, tmp_path / "out", strip=1, max_bytes=12_000)) == 3


def test_tar_gz_bomb_is_refused(tmp_path):
    arc = tmp_path / "bomb.tar.gz"
    with tarfile.open(arc, "w:gz") as t:
        info = tarfile.TarInfo("zeros.bin")
        info.size = 8 << 20
        t.addfile(info, io.BytesIO(bytes(info.size)))
    with pytest.raises(UnsafeArchiveError, match="times its"):
        safe_extract(arc, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# -- damaged archives -------------------------------------------------------------------------------
def _two_member_zip(path, damage_second=False):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("top/a/first.bin", b"A" * 5000)
        z.writestr("top/b/second.bin", b"B" * 5000)
    if damage_second:
        data = bytearray(path.read_bytes())
        i = data.index(b"B" * 100)
        data[i:i + 100] = b"X" * 100  # CRC no longer matches
        path.write_bytes(bytes(data))
    return path


def test_damaged_zip_removes_partial_output_and_names_the_file(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("from an earlier archive")
    arc = _two_member_zip(tmp_path / "dmg.zip", damage_second=True)
    with pytest.raises(DownloadError, match=r"dmg.zip: damaged or incomplete archive \(BadZipFile"):
        safe_extract(arc, out, strip=1)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["keep.txt"]
    written = safe_extract(_two_member_zip(tmp_path / "good.zip"), out, strip=1)  # a rerun starts clean
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "a/first.bin", "b/second.bin", "keep.txt"]
    assert len(written) == 2 and not list(out.rglob(".melfront-tmp-*"))


def test_truncated_zip_is_called_damaged_not_unknown(tmp_path):
    arc = _two_member_zip(tmp_path / "cut.zip")
    arc.write_bytes(arc.read_bytes()[:7000])
    with pytest.raises(DownloadError, match="cut.zip: damaged or incomplete zip archive"):
        safe_extract(arc, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("mode", ["gz", "bz2", "xz"])
def test_truncated_compressed_tar_removes_what_it_wrote(tmp_path, mode):
    arc = tmp_path / f"cut.tar.{mode}"
    with tarfile.open(arc, f"w:{mode}") as t:
        for i in range(4):
            payload = np.random.default_rng(i).bytes(50_000)
            info = tarfile.TarInfo(f"d{i}/f.bin")
            info.size = len(payload)
            t.addfile(info, io.BytesIO(payload))
    data = arc.read_bytes()
    arc.write_bytes(data[: int(len(data) * 0.7)])
    out = tmp_path / "out"
    with pytest.raises(DownloadError, match=f"cut.tar.{mode}: damaged or incomplete archive"):
        safe_extract(arc, out)
    assert not out.exists()


def test_download_dataset_removes_a_damaged_archive(server, tmp_path):
    bad = _two_member_zip(tmp_path / "x.zip", damage_second=True).read_bytes()
    server.files["x.zip"] = bad
    src = dict(url=f"{server.url}/x.zip", filename="x.zip", strip=1)
    with pytest.raises(DownloadError, match="archive was removed"):
        download_dataset("custom", tmp_path / "root", progress=False, sources=[src])
    assert not (tmp_path / "root" / ".downloads" / "x.zip").exists()
    assert not (tmp_path / "root" / "a").exists()
    server.files["x.zip"] = _two_member_zip(tmp_path / "y.zip").read_bytes()
    root = download_dataset("custom", tmp_path / "root", progress=False, sources=[src])
    assert (root / "b" / "second.bin").read_bytes() == b"B" * 5000
