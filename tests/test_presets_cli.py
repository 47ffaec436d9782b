"""`melfront presets`, `melfront presets --show NAME` and `melfront compare --preset NAME [--dry-run]`, in-process."""
import pytest

from melfront.cli import main
from melfront.presets import PRESETS, get_preset

from test_presets import tut, us8k


def test_presets_lists_every_preset(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name, preset in PRESETS.items():
        assert name in out and preset.citation in out


def test_presets_show_prints_every_setting(capsys):
    assert main(["presets", "--show", "pons2019-tut"]) == 0
    out = capsys.readouterr().out
    for s in get_preset("pons2019-tut").settings:
        assert s.key in out and s.status in out
    assert "src/sl_evaluate.py" in out


def test_presets_show_unknown_is_one_line(capsys):
    assert main(["presets", "--show", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown preset 'nope'" in err and "pons2019-us8k" in err


def test_compare_preset_dry_run_declares_overrides(tmp_path, capsys):
    root = us8k(tmp_path)
    status = main(["compare", "--preset", "pons2019-us8k", "--root", str(root), "--dry-run", "--no-estimate",
                   "--runs", "2", "--epochs", "3", "--models", "sbcnn,vgg", "-o", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert status == 0
    assert "override: runs:" in out and "override: train.epochs: 199" in out and "override: models:" in out
    assert "reduced: n: [20, 50, 100] dropped" in out
    assert "total: 320 trials" in out  # 10 folds x 4 n x 2 runs x 2 models x 2 frontends
    assert "test folds ['1', '2', '3', '4', '5', '6', '7', '8', '9', '10']" in out  # numeric order
    assert not (tmp_path / "out").exists()  # a dry run writes nothing


@pytest.mark.parametrize("extra", [["--profile", "paper"], ["--config", "study.yaml"]])
def test_compare_preset_with_profile_or_config_is_refused(extra, capsys):
    assert main(["compare", "--preset", "merlin", *extra, "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--preset cannot be combined with --config or --profile" in err


def test_compare_preset_refusal_is_one_line(tmp_path, capsys):
    status = main(["compare", "--preset", "pons2019-tut", "--root", str(tut(tmp_path, with_evaluation=False)),
                   "--dry-run"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "TUT-acoustic-scenes-2017-evaluation" in err


def test_compare_help_points_to_the_preset(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "melfront's earlier approximation" in out and "--preset pons2019-us8k" in out


def test_compare_preset_set_takes_the_presets_own_settings(tmp_path, capsys):
    from test_tax2017 import _esc50
    root = tmp_path / "ESC-50"
    _esc50(root)
    status = main(["compare", "--preset", "tax2017", "--root", str(root), "--dry-run", "--no-estimate",
                   "--set", "mst_patience=7", "--epochs", "6"])
    out = capsys.readouterr().out
    assert status == 0
    assert "override: mst_patience: 50 -> 7" in out and "override: epochs: 200 -> 6" in out
    assert main(["compare", "--preset", "merlin", "--root", str(root), "--dry-run", "--no-estimate",
                 "--set", "mst_patience=7"]) == 2  # another preset's setting is refused
    assert "unknown setting 'mst_patience'" in capsys.readouterr().err
