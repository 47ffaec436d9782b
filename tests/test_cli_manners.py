"""CLI manners: `predict` and `show` handle each file on its own and exit 1 when any failed; `train` shows a
per-batch progress bar, writes a checkpoint on Ctrl-C (even in the first epoch) and exits 130, and `--resume`
continues exactly, counting every session's training time."""
import json

import numpy as np
import pytest
import soundfile as sf

from melfront.cli import main
from melfront.data import dataset
from melfront.train import load_checkpoint
from melfront.train.trainer import Trainer
from conftest import make_field_clip

SYNTH = dict(n_classes=3, clips_per_class=4, duration=1.0, sample_rate=8000, n_folds=2)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny convolutions: one intra-op thread (conftest)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    dataset("synth", root=root, **SYNTH)
    return root


def train_args(root, out, epochs=2, quiet=True):
    opts = [x for k, v in SYNTH.items() for x in ("--dataset-option", f"{k}={v}")]
    return ["train", "--dataset", "synth", "--root", str(root), *opts, "--frontend", "db", "--model", "vgg",
            "--test-fold", "2", "--epochs", str(epochs), "--batch-size", "2", "--lr", "0.01", "--patch-frames", "32",
            "--sample-rate", "8000", "--n-fft", "256", "--hop", "64", "--n-mels", "32",
            "--set", "model_options={'width': 4}", "--no-cache", "-o", str(out)] + (["--quiet"] if quiet else [])


@pytest.fixture(scope="module")
def trained_run(synth_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(train_args(synth_root, out, epochs=1)) == 0
    return out


def interrupt_at(monkeypatch, epoch, batch):
    """Make the trainer's step raise KeyboardInterrupt (Ctrl-C) at ``batch`` of ``epoch``."""
    real = Trainer._step

    def step(self, loss, e, b):
        if (e, b) == (epoch, batch):
            raise KeyboardInterrupt
        return real(self, loss, e, b)
    monkeypatch.setattr(Trainer, "_step", step)


def test_predict_handles_each_file_and_exits_1_if_any_failed(trained_run, tmp_path, capsys):
    good = tmp_path / "good.wav"
    sf.write(good, make_field_clip(8000, 0.8), 8000)
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    missing = tmp_path / "missing.wav"
    capsys.readouterr()
    assert main(["predict", str(trained_run), str(bad), str(good), str(missing), str(good), "--top-k", "1"]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [str(good), out.splitlines()[1], str(good), out.splitlines()[3]]
    lines = err.strip().splitlines()
    assert len(lines) == 3 and "bad.wav" in lines[0] and "missing.wav" in lines[1]
    assert lines[2] == "melfront predict: 2 of 4 file(s) failed"
    assert main(["predict", str(trained_run), str(good)]) == 0


def test_show_draws_the_readable_files_and_exits_1(tmp_path, capsys):
    good, bad = tmp_path / "good.wav", tmp_path / "bad.wav"
    sf.write(good, make_field_clip(8000, 0.5), 8000)
    bad.write_text("not audio")
    out = tmp_path / "show.png"
    assert main(["show", str(bad), str(good), "-o", str(out), "--sample-rate", "8000", "--n-fft", "256",
                 "--hop", "64", "--n-mels", "16"]) == 1
    captured = capsys.readouterr()
    assert out.read_bytes()[:4] == b"\x89PNG" and f"wrote {out}" in captured.out
    lines = captured.err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"melfront show: skipped {bad}: ") and "1 of 2" in lines[1]


def test_train_shows_a_progress_bar_per_batch(synth_root, tmp_path, capsys):
    assert main(train_args(synth_root, tmp_path / "run", epochs=1, quiet=False)) == 0
    err = capsys.readouterr().err
    # 2 training clips per class (fold 1) x 3 classes, 1 patch each, batches of 2: 3 batches in epoch 1
    assert "epoch 1:   0%| " in err and "0/3 [" in err and "batch/s" in err and "loss=" in err


def test_ctrl_c_in_the_first_epoch_writes_a_checkpoint_and_resume_continues_exactly(
        synth_root, tmp_path, capsys, monkeypatch):
    straight = tmp_path / "straight"
    assert main(train_args(synth_root, straight)) == 0
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        interrupt_at(m, epoch=1, batch=2)
        assert main(train_args(synth_root, run)) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"melfront train: interrupted; {run / 'checkpoint.pt'} written, resume with --resume"
    saved = load_checkpoint(run / "checkpoint.pt", "classifier")
    assert saved["epoch"] == 0 and saved["history"] == [] and not saved["finished"]
    assert main(train_args(synth_root, run) + ["--resume"]) == 0
    a = json.loads((straight / "metrics.json").read_text())
    b = json.loads((run / "metrics.json").read_text())
    assert b["epochs"] == 2 and [h["loss"] for h in b["history"]] == [h["loss"] for h in a["history"]]
    assert b["accuracy"] == a["accuracy"] and b["confusion"] == a["confusion"]


def test_resume_counts_every_epochs_time(synth_root, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        interrupt_at(m, epoch=2, batch=1)
        assert main(train_args(synth_root, run)) == 130
    first = load_checkpoint(run / "checkpoint.pt", "classifier")
    assert first["epoch"] == 1 and first["train_seconds"] >= first["history"][0]["seconds"] > 0
    assert main(train_args(synth_root, run) + ["--resume"]) == 0
    m = json.loads((run / "metrics.json").read_text())
    assert len(m["history"]) == 2 and m["train_seconds"] >= sum(h["seconds"] for h in m["history"])
    assert m["train_seconds"] > first["train_seconds"]
    assert "train_seconds" in load_checkpoint(run / "checkpoint.pt", "classifier")
    assert np.isclose(load_checkpoint(run / "checkpoint.pt", "classifier")["train_seconds"], m["train_seconds"])
