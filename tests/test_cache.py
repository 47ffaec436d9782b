"""Feature cache: correct values, invalidation, corrupt entries, atomic writes, bad clips skipped."""
import io
import multiprocessing
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import soundfile
import torch

import melfront
from melfront.data import Clip, ClipList, FeatureCache, default_cache_dir, load_features
from melfront.fileio import TEMP_PREFIX

CFG = dict(sample_rate=8000, n_fft=256, hop_length=128, n_mels=20)


def _tone(path, freq=440.0, sr=8000, seconds=0.5, amp=0.3):
    t = np.arange(int(sr * seconds)) / sr
    soundfile.write(str(path), (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr, subtype="PCM_16")
    return str(path)


def _reference(path, cfg=CFG):
    wave, _ = melfront.load_audio(path, sample_rate=cfg["sample_rate"])
    return melfront.MelSpectrogram(**cfg)(wave)


# -- values and hits ------------------------------------------------------------------------------
def test_mel_equals_direct_computation_and_is_reused(tmp_path):
    wav = _tone(tmp_path / "a.wav")
    cache = FeatureCache(tmp_path / "c")
    first = cache.mel(wav, CFG)
    second = cache.mel(wav, CFG)
    ref = _reference(wav)
    assert first.shape == (20, 1 + 4000 // 128) and first.dtype == torch.float32
    torch.testing.assert_close(first, ref, rtol=0, atol=0)
    torch.testing.assert_close(second, ref, rtol=0, atol=0)
    assert (cache.misses, cache.hits) == (1, 1)


def test_resampling_happens_at_the_configured_rate(tmp_path):
    wav = _tone(tmp_path / "a.wav", sr=16000)
    cache = FeatureCache(tmp_path / "c")
    assert cache.waveform(wav, 8000).shape == (4000,)
    torch.testing.assert_close(cache.mel(wav, CFG), _reference(wav), rtol=0, atol=0)


def test_waveform_entries(tmp_path):
    wav = _tone(tmp_path / "a.wav")
    cache = FeatureCache(tmp_path / "c")
    w1, w2 = cache.waveform(wav, 8000), cache.waveform(wav, 8000)
    torch.testing.assert_close(w1, melfront.load_audio(wav)[0], rtol=0, atol=0)
    assert torch.equal(w1, w2) and cache.hits == 1


# -- invalidation ---------------------------------------------------------------------------------
@pytest.mark.parametrize("change", [dict(n_mels=16), dict(fmin=100.0), dict(hop_length=64), dict(power=1.0),
                                    dict(htk=True), dict(norm=None), dict(n_fft=512)])
def test_any_parameter_change_gives_a_new_entry(tmp_path, change):
    wav = _tone(tmp_path / "a.wav")
    cache = FeatureCache(tmp_path / "c")
    cache.mel(wav, CFG)
    cfg2 = {**CFG, **change}
    got = cache.mel(wav, cfg2)
    assert cache.misses == 2
    torch.testing.assert_close(got, _reference(wav, cfg2), rtol=0, atol=0)


def test_defaults_spelled_out_share_the_entry(tmp_path):
    wav = _tone(tmp_path / "a.wav")
    cache = FeatureCache(tmp_path / "c")
    cache.mel(wav, CFG)
    full = melfront.MelSpectrogram(**CFG).config()
    cache.mel(wav, full)
    assert (cache.misses, cache.hits) == (1, 1)


def test_file_change_invalidates(tmp_path):
    wav = _tone(tmp_path / "a.wav", freq=440)
    cache = FeatureCache(tmp_path / "c")
    old = cache.mel(wav, CFG)
    st = os.stat(wav)
    _tone(tmp_path / "a.wav", freq=1500)
    os.utime(wav, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # same size, later mtime
    new = cache.mel(wav, CFG)
    assert cache.misses == 2
    assert not torch.allclose(old, new)
    torch.testing.assert_close(new, _reference(wav), rtol=0, atol=0)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupted_entry_is_recomputed(tmp_path, damage):
    wav = _tone(tmp_path / "a.wav")
    cache = FeatureCache(tmp_path / "c")
    cache.mel(wav, CFG)
    (entry,) = list((tmp_path / "c").rglob("*.npy"))
    data = entry.read_bytes()
    entry.write_bytes({"truncate": data[: len(data) // 2], "garbage": os.urandom(len(data)), "empty": b""}[damage])
    again = cache.mel(wav, CFG)
    assert cache.misses == 2
    torch.testing.assert_close(again, _reference(wav), rtol=0, atol=0)
    assert entry.read_bytes() == data  # rewritten whole


# -- atomicity ------------------------------------------------------------------------------------
def test_exception_between_write_and_replace_leaves_no_entry(tmp_path, monkeypatch):
    wav = _tone(tmp_path / "a.wav")
    cache = FeatureCache(tmp_path / "c")

    def boom(src, dst):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr("melfront.data.cache._UNWRITABLE", {})
    monkeypatch.setattr("melfront.data.cache.os.replace", boom)
    # the clip is fine, the cache is not: the features are computed (and the failure said once, see
    # tests/test_scan_hostile.py), nothing is stored
    torch.testing.assert_close(cache.mel(wav, CFG), _reference(wav), rtol=0, atol=0)
    assert list((tmp_path / "c").rglob("*.npy")) == []  # neither an entry nor a temp file
    monkeypatch.undo()
    torch.testing.assert_close(cache.mel(wav, CFG), _reference(wav), rtol=0, atol=0)


def test_process_killed_mid_write_leaves_no_corrupt_entry(tmp_path):
    wav = _tone(tmp_path / "a.wav")
    root = tmp_path / "c"
    script = textwrap.dedent(f"""
        import os
        from melfront.data import cache as C
        def die(src, dst):
            os._exit(9)   # killed after the temp file is written, before the rename
        C.os.replace = die
        C.FeatureCache({str(root)!r}).mel({wav!r}, {CFG!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == 9, proc.stderr.decode()
    files = list(root.rglob("*.npy"))
    assert files and all(p.name.startswith("." + TEMP_PREFIX) for p in files)  # only the orphaned temp file
    cache = FeatureCache(root)
    torch.testing.assert_close(cache.mel(wav, CFG), _reference(wav), rtol=0, atol=0)
    assert cache.misses == 1
    assert cache.clean_temporary() == 1
    assert [p.name.startswith("." + TEMP_PREFIX) for p in root.rglob("*.npy")] == [False]


def _writer(root, entry, go, n):
    """Child process: rewrite one entry ``n`` times (delete, then store) as fast as it can."""
    try:
        cache = FeatureCache(root)
        x = np.arange(200_000, dtype=np.float32).reshape(200, 1000)
        go.wait(60)
        for _ in range(n):
            try:
                os.unlink(entry)
            except FileNotFoundError:
                pass
            cache._store(entry, torch.from_numpy(x))
    except BaseException:
        os._exit(1)
    os._exit(0)


def test_concurrent_writers_never_expose_a_partial_entry(tmp_path):
    # Forked writers (no interpreter start-up): they only run numpy I/O, never a parallel torch op.
    ctx = multiprocessing.get_context("fork")
    root = tmp_path / "c"
    entry = root / "ab" / "ab0000.npy"
    big = np.arange(200_000, dtype=np.float32).reshape(200, 1000)
    go = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(root, entry, go, 150)) for _ in range(2)]
    for p in procs:
        p.start()
    go.set()  # start both writers together
    seen = 0
    while any(p.is_alive() for p in procs):
        try:
            with open(entry, "rb") as f:  # whatever file is under the name when opened must be whole
                data = f.read()
        except FileNotFoundError:
            continue
        assert np.array_equal(np.load(io.BytesIO(data)), big)
        seen += 1
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert np.array_equal(FeatureCache(root)._load(entry).numpy(), big)
    assert seen > 0
    assert not [p for p in root.rglob(f".{TEMP_PREFIX}*")]


# -- load_features --------------------------------------------------------------------------------
def _clips(tmp_path):
    good = [_tone(tmp_path / f"g{i}.wav", freq=300 + 200 * i) for i in range(3)]
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    missing = str(tmp_path / "missing.wav")
    paths = [good[0], str(bad), good[1], missing, good[2]]
    clips = ClipList([Clip(p, i % 2, ["a", "b"][i % 2], 1) for i, p in enumerate(paths)], name="t",
                     classes=["a", "b"], root=tmp_path)
    return clips, good, str(bad), missing


def test_bad_clips_are_skipped_counted_and_listed(tmp_path, capsys):
    clips, good, bad, missing = _clips(tmp_path)
    feats, kept, skipped = load_features(clips, CFG, cache=tmp_path / "c", progress=True)
    assert [c.path for c in kept] == good
    assert isinstance(kept, ClipList) and kept.classes == ["a", "b"] and kept.name == "t"
    assert [p for p, _ in skipped] == [bad, missing]
    assert all(cause for _, cause in skipped)
    assert "not found" in skipped[1][1]
    for f, p in zip(feats, good):
        torch.testing.assert_close(f, _reference(p), rtol=0, atol=0)
    err = capsys.readouterr().err
    assert "skipped 2 of 5" in err and bad in err


def test_load_features_waveform_and_no_cache(tmp_path):
    clips, good, _, _ = _clips(tmp_path)
    feats, kept, skipped = load_features(clips, CFG, cache=False, kind="waveform", progress=False)
    assert len(feats) == 3 and len(skipped) == 2 and feats[0].shape == (4000,)
    feats2, _, _ = load_features(clips, CFG, cache=False, progress=False)
    torch.testing.assert_close(feats2[1], _reference(good[1]), rtol=0, atol=0)
    with pytest.raises(ValueError, match="kind"):
        load_features(clips, CFG, kind="stft")
    with pytest.raises(ValueError, match="mel_config"):
        load_features(clips, {"n_mels": 20}, cache=False)


def test_default_location_respects_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MELFRONT_CACHE", str(tmp_path / "m"))
    assert default_cache_dir() == tmp_path / "m"
    assert FeatureCache().root == tmp_path / "m" / "features"
    monkeypatch.delenv("MELFRONT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x" / "melfront"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert default_cache_dir() == tmp_path / "h" / ".cache" / "melfront"


def test_a_clean_clip_is_decoded_once_and_a_changed_one_again(tmp_path):
    from melfront.audio import audio_problem
    clip = tmp_path / "dog.wav"
    soundfile.write(clip, np.zeros(800, np.float32), 8000)
    calls = []

    def check(path):
        calls.append(path)
        return audio_problem(path)

    cache = FeatureCache(tmp_path / "cache")
    assert cache.audio_problem(clip, check) is None and FeatureCache(tmp_path / "cache").audio_problem(clip, check) is None
    assert len(calls) == 1  # the second cache (another process) found the clean verdict
    data = np.zeros(800, np.float32)
    data[3] = np.nan
    soundfile.write(clip, data, 8000, subtype="FLOAT")  # changed (size): decoded again, and its problem is said
    problem = cache.audio_problem(clip, check)
    assert len(calls) == 2 and problem is not None and "NaN" in problem
    assert cache.audio_problem(clip, check) == problem and len(calls) == 3  # problems are not remembered
