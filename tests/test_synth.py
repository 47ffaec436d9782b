"""The synthetic field-recording set: determinism, layout, level statistics, loader round trip."""
import csv
import hashlib

import numpy as np
import pytest
import soundfile

from melfront.cli import main
from melfront.data import dataset, generate_synth, synth_classes, synth_clip, write_synth
from melfront.data.esc50 import ESC50_COLUMNS

TINY = dict(n_classes=3, clips_per_class=4, duration=1.0, sample_rate=8000, n_folds=2)


def _digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# -- determinism ----------------------------------------------------------------------------------
def test_same_seed_gives_identical_bytes(tmp_path):
    a, b = write_synth(tmp_path / "a", seed=3, **TINY), write_synth(tmp_path / "b", seed=3, **TINY)
    da, db = _digest(a), _digest(b)
    assert len(da) == 3 * 4 + 2
    assert da == db


def test_different_seed_gives_different_audio(tmp_path):
    a, b = write_synth(tmp_path / "a", seed=0, **TINY), write_synth(tmp_path / "b", seed=1, **TINY)
    wa = sorted(p.read_bytes() for p in (a / "audio").glob("*.wav"))
    wb = sorted(p.read_bytes() for p in (b / "audio").glob("*.wav"))
    assert not set(wa) & set(wb)


def test_a_clip_regenerates_alone_identically():
    waves, labels, folds, classes = generate_synth(seed=5, **TINY)
    k, i = 2, 3
    row = int(np.flatnonzero(labels == k)[i])
    alone = synth_clip(k, i, n_classes=3, duration=1.0, sample_rate=8000, seed=5)
    np.testing.assert_array_equal(waves[row], alone)
    assert classes == synth_classes(3)
    assert sorted(set(folds.tolist())) == [1, 2]


# -- layout ---------------------------------------------------------------------------------------
def test_layout_is_esc50_like_and_readable_by_the_esc50_loader(tmp_path):
    root = write_synth(tmp_path / "s", seed=0, **TINY)
    with open(root / "meta" / "esc50.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0].keys()) == ESC50_COLUMNS
    assert len(rows) == 12 and len(list((root / "audio").glob("*.wav"))) == 12
    for r in rows:
        info = soundfile.info(str(root / "audio" / r["filename"]))
        assert info.samplerate == 8000 and info.frames == 8000 and info.channels == 1
        fold, _src, _take, target = r["filename"][:-4].split("-")
        assert fold == r["fold"] and target == r["target"]
    esc = dataset("esc50", root)
    syn = dataset("synth", root, seed=0, **TINY)
    assert [c.path for c in esc] == [c.path for c in syn]
    assert syn.classes == synth_classes(3) and syn.folds == [1, 2]
    # folds balanced within each class
    for k in range(3):
        per = [c.fold for c in syn if c.label == k]
        assert per.count(1) == per.count(2) == 2


def test_default_root_is_generated_once_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("MELFRONT_CACHE", str(tmp_path / "cache"))
    first = dataset("synth", seed=1, **TINY)
    assert str(tmp_path / "cache") in first.root
    stamp = {c.path: __import__("os").stat(c.path).st_mtime_ns for c in first}
    second = dataset("synth", seed=1, **TINY)
    assert [c.path for c in second] == list(stamp)
    assert all(__import__("os").stat(p).st_mtime_ns == t for p, t in stamp.items())
    other = dataset("synth", seed=2, **TINY)
    assert other.root != first.root
    harder = dataset("synth", seed=1, snr_db=(-20.0, 0.0), **TINY)
    assert harder.root not in (first.root, other.root)
    assert __import__("json").loads((tmp_path / "cache" / "synth" / harder.root.rsplit("/", 1)[1] / "meta" / "synth.json")
                                    .read_text())["snr_db"] == [-20.0, 0.0]


def test_existing_root_with_other_parameters_is_refused(tmp_path):
    write_synth(tmp_path / "s", seed=0, **TINY)
    with pytest.raises(ValueError, match="seed"):
        dataset("synth", tmp_path / "s", seed=9, **TINY)


# -- what makes it field-recording-like -----------------------------------------------------------
def test_levels_and_snr_vary_over_wide_ranges():
    infos = [synth_clip(k, i, n_classes=4, duration=1.0, sample_rate=8000, seed=0, return_info=True)
             for k in range(4) for i in range(10)]
    rms_db = [20 * np.log10(np.sqrt(np.mean(x.astype(np.float64) ** 2))) for x, _ in infos]
    snrs = [info["snr_db"] for _, info in infos]
    gains = [info["gain_db"] for _, info in infos]
    assert max(rms_db) - min(rms_db) > 20  # +-20 dB gain: frontends without normalisation see this
    assert min(snrs) < 0 < max(snrs) and all(-10 <= s <= 20 for s in snrs)
    assert all(-20 <= g <= 20 for g in gains)
    assert all(np.abs(x).max() <= 0.99 + 1e-6 and np.isfinite(x).all() for x, _ in infos)


def test_classes_are_learnable_from_gain_normalised_spectra():
    # Nearest class-centroid on mean log spectra (gain removed) must beat chance by a wide margin.
    waves, labels, _, _ = generate_synth(n_classes=4, clips_per_class=8, duration=1.0, sample_rate=8000,
                                         seed=0, n_folds=2, snr_db=(5.0, 20.0))
    spec = np.abs(np.fft.rfft(waves[:, :7936].reshape(len(waves), -1, 256), axis=-1)) ** 2
    feat = np.log(spec.max(axis=1) + 1e-12)  # per-bin max over frames: where the events are
    feat -= feat.mean(axis=1, keepdims=True)
    correct = 0
    for j in range(len(feat)):
        others = np.arange(len(feat)) != j
        cents = np.stack([feat[others & (labels == k)].mean(0) for k in range(4)])
        correct += int(np.argmin(((cents - feat[j]) ** 2).sum(1)) == labels[j])
    assert correct / len(feat) > 0.6


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="n_classes"):
        synth_clip(0, 0, n_classes=0)
    with pytest.raises(ValueError, match="label"):
        synth_clip(5, 0, n_classes=3)
    with pytest.raises(ValueError, match="n_folds"):
        generate_synth(n_classes=2, clips_per_class=2, n_folds=3, duration=0.5, sample_rate=8000)


def test_cli_synth_writes_the_layout(tmp_path, capsys):
    rc = main(["synth", "--root", str(tmp_path / "s"), "--n-classes", "2", "--clips-per-class", "2",
               "--duration", "0.5", "--sample-rate", "8000", "--n-folds", "2", "--snr-db", "0", "10"])
    assert rc == 0
    assert len(list((tmp_path / "s" / "audio").glob("*.wav"))) == 4
    assert "wrote 4 clips" in capsys.readouterr().out
    assert __import__("json").loads((tmp_path / "s" / "meta" / "synth.json").read_text())["snr_db"] == [0.0, 10.0]
