"""Bad clips found before sampling (n means n readable clips), odd entries named like audio listed, and a feature
cache that cannot be written (read-only, full) falling back to computing, said once (issue 23)."""
import errno
import os

import numpy as np
import pytest
import soundfile as sf

import melfront.data.cache as cache_mod
import melfront.fileio as fileio
from melfront.data import dataset
from melfront.data.base import check_clips
from melfront.data.cache import load_features
from melfront.errors import DataError


def _folder(root, per_class=3, classes="ab"):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            sf.write(root / c / f"{i}.wav", (rng.random(800) * 0.1).astype("f4"), 8000)
    return root


def test_every_bad_clip_is_found_before_sampling_and_listed(tmp_path):
    root = _folder(tmp_path / "data")
    (root / "a" / "dir.wav").mkdir()
    os.mkfifo(root / "a" / "fifo.wav")
    (root / "b" / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    sf.write(root / "b" / "inf.wav", np.full(800, np.inf, np.float32), 8000, subtype="FLOAT")
    sf.write(root / "b" / "nan.wav", np.full(800, np.nan, np.float32), 8000, subtype="FLOAT")
    (root / "a" / "trunc.wav").write_bytes((root / "a" / "0.wav").read_bytes()[:500])
    (root / "a" / "header.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 4)
    readable, _ = check_clips(dataset("folder", root))
    assert sorted(os.path.basename(c.path) for c in readable) == sorted(["0.wav", "1.wav", "2.wav"] * 2)
    causes = {os.path.basename(p): cause for p, cause in readable.skipped}
    assert set(causes) == {"dir.wav", "fifo.wav", "gone.wav", "inf.wav", "nan.wav", "trunc.wav", "header.wav"}
    assert "directory" in causes["dir.wav"] and "FIFO" in causes["fifo.wav"]
    assert "broken symbolic link" in causes["gone.wav"] and "truncated" in causes["trunc.wav"]
    assert "NaN or infinite" in causes["inf.wav"] and "NaN or infinite" in causes["nan.wav"]


def test_a_class_with_no_readable_clip_is_refused_by_name(tmp_path):
    root = _folder(tmp_path / "data")
    (root / "c").mkdir()
    (root / "c" / "x.wav").write_bytes(b"not audio at all")
    sf.write(root / "c" / "y.wav", np.full(800, np.nan, np.float32), 8000, subtype="FLOAT")
    with pytest.raises(DataError, match=r"class 'c': all 2 of its clips are unreadable \(first: .*x\.wav"):
        check_clips(dataset("folder", root))


@pytest.mark.parametrize("failure", ["read-only", "full"])
def test_an_unwritable_cache_falls_back_to_computing_said_once(tmp_path, monkeypatch, capsys, failure):
    root = _folder(tmp_path / "data")
    monkeypatch.setattr(cache_mod, "_UNWRITABLE", {})
    if failure == "read-only":  # tests run as root: chmod would not stop the writes, so refuse them here
        def refuse(*a, **k):
            raise OSError(errno.EROFS, "Read-only file system")
        monkeypatch.setattr(fileio.tempfile, "mkstemp", refuse)
    else:
        def full(fd):
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(fileio.os, "fsync", full)
    clips = dataset("folder", root)
    mel = dict(sample_rate=8000, n_fft=256, hop_length=128, n_mels=16)
    feats, kept, skipped = load_features(clips, mel, cache=tmp_path / "cache", progress=False)
    assert len(feats) == len(kept) == 6 and skipped == []
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    cause = "read-only file system (EROFS)" if failure == "read-only" else "no space left on device (ENOSPC)"
    assert len(err) == 1 and cause in err[0] and str(tmp_path / "cache") in err[0], err
    assert "without the cache" in err[0]
    again, _, _ = load_features(clips, mel, cache=tmp_path / "cache", progress=False)  # not said again
    assert capsys.readouterr().err == "" and all(np.allclose(a, b) for a, b in zip(feats, again))
    assert not list((tmp_path / "cache").rglob(".melfront-tmp-*"))
