"""Download (resume, verification) and safe extraction, against a local HTTP server on 127.0.0.1."""
import hashlib
import http.server
import io
import tarfile
import threading
import zipfile

import numpy as np
import pytest
import soundfile

from melfront.cli import main
from melfront.data import dataset
from melfront.data.download import (DownloadError, UnsafeArchiveError, download_dataset, download_file,
                                    safe_extract)


class _Server:
    """Serves ``files`` (name -> bytes) with Range support; can cut the next response short or ignore Range."""

    def __init__(self):
        self.files, self.requests = {}, []
        self.cut_next_after = None
        self.ignore_range = False
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                outer.requests.append((name, self.headers.get("Range")))
                data = outer.files.get(name)
                if data is None:
                    self.send_error(404)
                    return
                start, status = 0, 200
                rng = self.headers.get("Range")
                if rng and not outer.ignore_range:
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
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if outer.cut_next_after is not None:
                    body, outer.cut_next_after = body[:outer.cut_next_after], None
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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


def _wav_bytes(seed, sr=8000, seconds=0.05):
    buf = io.BytesIO()
    x = (0.1 * np.random.default_rng(seed).standard_normal(int(sr * seconds))).astype(np.float32)
    soundfile.write(buf, x, sr, format="WAV")
    return buf.getvalue()


def _esc_zip(top="ESC-50-master"):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(f"{top}/meta/esc50.csv", "filename,fold,target,category,esc10,src_file,take\n"
                                            "1-100032-A-0.wav,1,0,dog,True,100032,A\n"
                                            "2-100648-A-43.wav,2,43,car_horn,False,100648,A\n")
        z.writestr(f"{top}/audio/1-100032-A-0.wav", _wav_bytes(0))
        z.writestr(f"{top}/audio/2-100648-A-43.wav", _wav_bytes(1))
    return buf.getvalue()


def _source(server, name, data, **kw):
    server.files[name] = data
    return dict(url=f"{server.url}/{name}", filename=name, **kw)


# -- whole data set -------------------------------------------------------------------------------
def test_download_extract_and_load(server, tmp_path):
    data = _esc_zip()
    src = _source(server, "ESC-50-master.zip", data, md5=hashlib.md5(data).hexdigest(), size=len(data), strip=1)
    root = download_dataset("esc50", tmp_path / "esc", progress=False, sources=[src])
    clips = dataset("esc50", root)
    assert [c.class_name for c in clips] == ["dog", "car_horn"]
    assert (root / ".downloads" / "ESC-50-master.zip").read_bytes() == data
    n = len(server.requests)
    download_dataset("esc50", tmp_path / "esc", progress=False, sources=[src])  # verified archive: no transfer
    assert len(server.requests) == n


def test_cli_download_from_a_mirror(server, tmp_path, capsys):
    server.files["ESC-50-master.zip"] = _esc_zip()
    rc = main(["download", "esc50", "--root", str(tmp_path / "d"), "--mirror", server.url, "--quiet"])
    assert rc == 0
    assert len(dataset("esc50", tmp_path / "d")) == 2
    assert str(tmp_path / "d") in capsys.readouterr().out
    rc = main(["download", "fsdd", "--root", str(tmp_path / "e"), "--mirror", server.url, "--quiet"])
    assert rc == 1 and "404" in capsys.readouterr().err


# -- transfer -------------------------------------------------------------------------------------
def test_interrupted_download_resumes_with_range(server, tmp_path):
    data = np.random.default_rng(0).bytes(300_000)
    src = _source(server, "blob.bin", data)
    server.cut_next_after = 100_000
    dest = tmp_path / "blob.bin"
    with pytest.raises(DownloadError, match="interrupted"):
        download_file(src["url"], dest, sha256=hashlib.sha256(data).hexdigest(), progress=False, chunk_size=8192)
    part = tmp_path / "blob.bin.part"
    assert not dest.exists() and part.stat().st_size == 100_000
    download_file(src["url"], dest, sha256=hashlib.sha256(data).hexdigest(), progress=False)
    assert dest.read_bytes() == data and not part.exists()
    assert server.requests[-1] == ("blob.bin", "bytes=100000-")


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    data = np.random.default_rng(1).bytes(50_000)
    src = _source(server, "b.bin", data)
    (tmp_path / "b.bin.part").write_bytes(data[:1000] + b"garbage")
    server.ignore_range = True
    download_file(src["url"], tmp_path / "b.bin", md5=hashlib.md5(data).hexdigest(), progress=False)
    assert (tmp_path / "b.bin").read_bytes() == data


def test_complete_part_file_is_finished_without_body(server, tmp_path):
    data = b"x" * 5000
    src = _source(server, "c.bin", data)
    (tmp_path / "c.bin.part").write_bytes(data)  # no record of its digest: resumed because md5 judges the result
    download_file(src["url"], tmp_path / "c.bin", size=5000, md5=hashlib.md5(data).hexdigest(), progress=False)
    assert (tmp_path / "c.bin").read_bytes() == data and server.requests[-1][1] == "bytes=5000-"


@pytest.mark.parametrize("check", [dict(md5="0" * 32), dict(sha256="f" * 64), dict(size=123)])
def test_bad_checksum_or_size_is_refused(server, tmp_path, check):
    src = _source(server, "d.bin", b"payload" * 100)
    with pytest.raises(DownloadError, match="checksum|size"):
        download_file(src["url"], tmp_path / "d.bin", progress=False, **check)
    assert not (tmp_path / "d.bin").exists()
    assert not (tmp_path / "d.bin.part").exists() or "size" in check


def test_http_error_is_reported(server, tmp_path):
    with pytest.raises(DownloadError, match="404"):
        download_file(f"{server.url}/none.zip", tmp_path / "none.zip", progress=False)


# -- extraction -----------------------------------------------------------------------------------
def _zip(tmp_path, members):
    p = tmp_path / "a.zip"
    with zipfile.ZipFile(p, "w") as z:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            z.writestr(info, data)
    return p


def _tar(tmp_path, members, suffix="tar.gz"):
    p = tmp_path / f"a.{suffix}"
    with tarfile.open(p, "w:gz" if suffix.endswith("gz") else "w") as t:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
                continue
            info.type = {"sym": tarfile.SYMTYPE, "link": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE,
                         "fifo": tarfile.FIFOTYPE}[kind]
            info.linkname = data
            t.addfile(info)
    return p


def test_safe_extract_tar_with_strip(tmp_path):
    arc = _tar(tmp_path, [("UrbanSound8K/metadata/x.csv", "file", b"a,b\n"),
                          ("UrbanSound8K/audio/fold1/1-2-3-4.wav", "file", b"RIFF")])
    written = safe_extract(arc, tmp_path / "out", strip=1)
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == [
        "audio/fold1/1-2-3-4.wav", "metadata/x.csv"]
    assert (tmp_path / "out" / "metadata" / "x.csv").read_bytes() == b"a,b\n"


@pytest.mark.parametrize("members, pattern", [
    ([("ok.txt", b"fine", None), ("../evil.txt", b"x", None)], r"'\.\./evil\.txt'.*\.\."),
    ([("ok.txt", b"fine", None), ("/tmp/evil_abs.txt", b"x", None)], "absolute path"),
    ([("ok.txt", b"fine", None), ("d/../../evil.txt", b"x", None)], r"\.\."),
    ([("ok.txt", b"fine", None), ("link", b"/etc/passwd", 0o120777)], "symbolic link"),
    ([("ok.txt", b"fine", None), ("dev", b"", 0o020644)], "device"),
])
def test_malicious_zip_is_refused_before_writing(tmp_path, members, pattern):
    out = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match=pattern):
        safe_extract(_zip(tmp_path, members), out)
    assert not out.exists() or not any(out.rglob("*"))
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("members, pattern", [
    ([("ok.txt", "file", b"fine"), ("../evil.txt", "file", b"x")], r"\.\."),
    ([("ok.txt", "file", b"fine"), ("/abs/evil.txt", "file", b"x")], "absolute path"),
    ([("ok.txt", "file", b"fine"), ("s", "sym", "../../etc/passwd")], "symbolic link"),
    ([("ok.txt", "file", b"fine"), ("h", "link", "ok.txt")], "hard link"),
    ([("ok.txt", "file", b"fine"), ("c", "chr", "")], "device"),
    ([("ok.txt", "file", b"fine"), ("f", "fifo", "")], "device, FIFO"),
])
def test_malicious_tar_is_refused_before_writing(tmp_path, members, pattern):
    out = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match=pattern):
        safe_extract(_tar(tmp_path, members), out)
    assert not out.exists() or not any(out.rglob("*"))
    assert not (tmp_path / "evil.txt").exists()


def test_malicious_archive_via_the_command_line(server, tmp_path, capsys):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("free-spoken-digit-dataset-master/../../escaped.txt", b"x")
    server.files["free-spoken-digit-dataset-master.zip"] = buf.getvalue()
    rc = main(["download", "fsdd", "--root", str(tmp_path / "r"), "--mirror", server.url, "--quiet"])
    assert rc == 2
    assert "refusing to extract" in capsys.readouterr().err
    assert not (tmp_path / "escaped.txt").exists()


def test_not_an_archive(tmp_path):
    p = tmp_path / "x.zip"
    p.write_bytes(b"hello")
    with pytest.raises(UnsafeArchiveError, match="neither a zip nor a tar"):
        safe_extract(p, tmp_path / "out")
