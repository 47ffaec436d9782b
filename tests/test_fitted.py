"""Settings fitted to the data (melfront.train.fitted) and the common settings on the command line."""
import json

import numpy as np
import pytest
import soundfile as sf

from melfront.cli import main
from melfront.cli.study import _add_compare, study_setup
from melfront.data import dataset
from melfront.errors import ParameterError
from melfront.study import ResultStore
from melfront.train import build_classifier, fit_settings, survey
from melfront.train.fitted import backbone_minimum, check_backbones


def write_folder(root, rate, seconds, per_class=3, folds=(1,), classes=("a", "b")):
    """ROOT/fold{N}/{class}/*.wav: tones, a different pitch per class."""
    t = np.arange(int(rate * seconds)) / rate
    for fold in folds:
        for k, name in enumerate(classes):
            d = root / f"fold{fold}" / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                tone = 0.3 * np.sin(2 * np.pi * (300 + 400 * k + 20 * i) * t)
                sf.write(d / f"{name}{i}.wav", tone.astype(np.float32), rate)
    return root


@pytest.mark.parametrize("rate, seconds, mel, frames, sbcnn_frames", [
    (16000, 1.0, dict(sample_rate=16000, n_fft=512, hop_length=160, n_mels=64), 100, None),
    (8000, 0.5, dict(sample_rate=8000, n_fft=256, hop_length=80, n_mels=40), 52, 100),
    (44100, 10.0, dict(sample_rate=22050, n_fft=1024, hop_length=221, n_mels=128), 300, None),
])
def test_settings_fitted_to_synthetic_folders(tmp_path, rate, seconds, mel, frames, sbcnn_frames):
    root = write_folder(tmp_path, rate, seconds)
    clips = dataset("folder", root)
    fitted = fit_settings(clips, models=["sbcnn", "vgg"], frontends=["db", "pcen(trainable=True)"])
    assert fitted.mel == mel
    assert fitted.train["patch_frames"] == frames
    assert fitted.train_for("sbcnn")["patch_frames"] == (sbcnn_frames or frames)
    assert fitted.train_for("vgg")["patch_frames"] == frames
    assert fitted.train["optimizer"] == "adam" and fitted.train["lr"] == 1e-3
    assert fitted.train["model_options"] == {"input_norm": "batch"}
    assert 20 <= fitted.train["epochs"] <= 100 and fitted.train["batch_size"] == 16
    line = fitted.summary()
    assert line.startswith("derived from the data: ") and f"sample rate {mel['sample_rate']} Hz" in line
    assert f"all 6 clips are {rate} Hz" in line and f"{mel['n_mels']} mel bands" in line
    assert fitted.as_dict()["data"]["sample_rates"] == {str(rate): 6}
    # what was derived fits: every backbone builds and runs on a derived patch
    for model in ("sbcnn", "vgg"):
        train = fitted.train_for(model)
        clf, shape = build_classifier("db", model, 2, fitted.mel, train["patch_frames"], train["model_options"])
        assert shape["n_mels"] == mel["n_mels"] and clf.eval()(
            __import__("torch").rand(2, mel["n_mels"], train["patch_frames"]) + 1e-3).shape == (2, 2)


def test_mixed_rates_take_the_most_common_and_never_go_above_22050(tmp_path):
    write_folder(tmp_path / "x", 16000, 0.3, folds=(1,))
    write_folder(tmp_path / "x", 8000, 0.3, folds=(2,), per_class=1)
    s = survey(dataset("folder", tmp_path / "x"))
    assert s.rates == {16000: 6, 8000: 2} and s.common_rate == 16000
    fitted = fit_settings(s, models=["vgg"])
    assert fitted.mel["sample_rate"] == 16000
    assert "6 of 8 clips are 16000 Hz; 2 clips below it are upsampled" in fitted.summary()


def test_given_settings_win_and_the_rest_follows_them(tmp_path):
    clips = dataset("folder", write_folder(tmp_path, 8000, 0.5))
    given = dict(sample_rate=16000, epochs=3, optimizer="sgd", lr=0.05, model_options={"width": 8}, fmin=50.0)
    fitted = fit_settings(clips, models=["vgg"], given=given)
    # n_fft, hop and bands follow the given rate, not the clips'
    assert fitted.mel == dict(sample_rate=16000, n_fft=512, hop_length=160, n_mels=64, fmin=50.0)
    t = fitted.train_for("vgg")
    assert (t["epochs"], t["optimizer"], t["lr"]) == (3, "sgd", 0.05)
    assert t["model_options"] == {"input_norm": "batch", "width": 8}  # merged: the recipe's norm stays
    assert "sample rate 16000 Hz (given)" in fitted.summary() and "3 epochs (given)" in fitted.summary()
    assert fitted.given == sorted(given)


def test_a_backbone_that_cannot_take_the_input_says_which_setting_to_change(tmp_path):
    clips = dataset("folder", write_folder(tmp_path, 8000, 0.5))
    with pytest.raises(ParameterError, match=r"sbcnn needs at least 100 frames \(patches of 48 frames give 48\): "
                                             r"--patch-frames 100"):
        fit_settings(clips, models=["sbcnn"], given=dict(patch_frames=48))
    with pytest.raises(ParameterError, match=r"sbcnn needs at least 32 mel bands \(20 given\): --n-mels 32"):
        fit_settings(clips, models=["sbcnn"], given=dict(n_mels=20))
    mel = dict(sample_rate=8000, n_fft=256, hop_length=80, n_mels=40)
    with pytest.raises(ParameterError, match=r"piczak needs at least \d+ mel bands"):
        check_backbones(["db"], ["piczak"], mel, 41)
    # derived (not given) values are raised to what the backbones need instead
    fitted = fit_settings(clips, models=["piczak", "timbre"])
    assert fitted.mel["n_mels"] == backbone_minimum("piczak", dict(n_mels=40, n_frames=41))[0]
    assert "piczak need it" in fitted.summary()
    assert fitted.train_for("timbre")["model_options"]["filter_mels"] < fitted.mel["n_mels"]


def test_unreadable_clips_are_counted_not_fatal(tmp_path):
    root = write_folder(tmp_path, 8000, 0.5)
    (root / "fold1" / "a" / "broken.wav").write_bytes(b"RIFF0000WAVEjunk")
    s = survey(dataset("folder", root))
    assert s.n_read == 6 and len(s.unreadable) == 1 and "broken.wav" in s.unreadable[0][0]


def _compare_args(*extra):
    import argparse
    parser = argparse.ArgumentParser()
    _add_compare(parser.add_subparsers())
    return parser.parse_args(["compare", *extra])


def test_compare_options_and_set_reach_the_config(tmp_path):
    root = write_folder(tmp_path, 16000, 1.0, folds=(1, 2))
    config, fitted = study_setup(_compare_args("--dataset", "folder", "--root", str(root), "--models", "vgg,sbcnn",
                                               "--n", "1", "--hop", "128", "--lr", "0.01", "--set", "patience=7",
                                               "--set", "fmin=20"))
    assert fitted is not None and config.mel["hop_length"] == 128 and config.mel["fmin"] == 20
    assert config.mel["sample_rate"] == 16000 and config.mel["n_fft"] == 512
    assert config.train["lr"] == 0.01 and config.train["patience"] == 7 and config.train["optimizer"] == "adam"
    # options win over the per-model settings of a profile too
    config, fitted = study_setup(_compare_args("--patch-frames", "40", "--optimizer", "sgd"))
    assert fitted is None and config.train["patch_frames"] == 40 and config.train["optimizer"] == "sgd"
    assert all("patch_frames" not in t for t in config.train.get("models", {}).values())
    config, _ = study_setup(_compare_args("--profile", "paper"))
    assert config.train == {} and config.mel["hop_length"] == 512
    with pytest.raises(ParameterError, match="--set: unknown setting 'colour'; known: .*batch_size.*"):
        study_setup(_compare_args("--set", "colour=red"))


def test_compare_end_to_end_stores_the_derived_settings(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MELFRONT_CACHE", str(tmp_path / "cache"))
    root = write_folder(tmp_path / "data", 8000, 0.5, folds=(1, 2), per_class=2)
    out = tmp_path / "study"
    rc = main(["compare", "--dataset", "folder", "--root", str(root), "--frontends", "db", "--models", "vgg",
               "--n", "1", "--runs", "1", "--test-folds", "1", "--epochs", "1", "--set", 'model_options={"width": 4}',
               "--jobs", "1", "--quiet", "-o", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "derived from the data: sample rate 8000 Hz (all 8 clips are 8000 Hz)" in printed
    store = ResultStore(out / "study.db")
    derived = store.meta("derived_settings")
    assert derived["mel"]["sample_rate"] == 8000 and derived["given"] == ["epochs", "model_options"]
    assert derived["summary"] in printed
    saved = json.loads((out / "config.json").read_text())
    assert saved["mel"] == derived["mel"] and saved["train"]["model_options"] == {"input_norm": "batch", "width": 4}
    assert saved["train"]["epochs"] == 1 and len(store.rows()) == 1


def test_train_fits_its_settings_and_saves_them_with_the_run(tmp_path, capsys):
    root = write_folder(tmp_path / "data", 8000, 0.5, folds=(1, 2), per_class=2)
    out = tmp_path / "run"
    rc = main(["train", "--dataset", "folder", "--root", str(root), "--model", "vgg", "--test-fold", "2",
               "--epochs", "1", "--set", "model_options={'width': 4}", "--no-cache", "--quiet", "-o", str(out)])
    assert rc == 0
    assert "derived from the data: sample rate 8000 Hz" in capsys.readouterr().out
    derived = json.loads((out / "derived_settings.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert config["mel"]["sample_rate"] == 8000 and config["mel"]["hop_length"] == 80
    assert config["train"]["optimizer"] == "adam" and config["patch_frames"] == derived["train"]["patch_frames"]
    assert type(__import__("melfront").load_classifier(out)[0].backbone).__name__ == "NormalizedBackbone"
    # --profile paper: the model's settings, nothing derived
    out2 = tmp_path / "paper"
    rc = main(["train", "--dataset", "folder", "--root", str(root), "--model", "vgg", "--test-fold", "2",
               "--profile", "paper", "--epochs", "1", "--batch-size", "2", "--patch-frames", "32", "--n-mels", "32",
               "--set", "model_options={'width': 4}", "--no-cache", "--quiet", "-o", str(out2)])
    assert rc == 0 and not (out2 / "derived_settings.json").exists()
    assert json.loads((out2 / "config.json").read_text())["train"]["optimizer"] == "sgd"
    assert main(["train", "--dataset", "folder", "--root", str(root), "--test-fold", "2", "--set", "epoch=1"]) == 2
    assert "--set: unknown setting 'epoch'; known: " in capsys.readouterr().err
