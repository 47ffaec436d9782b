"""`melfront show`, `--help` and `--version` through the CLI entry point."""
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from melfront.cli import main, split_specs
from conftest import make_field_clip


def test_show_writes_png(tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.flac"
    sf.write(a, make_field_clip(16000, 1.0), 16000)
    sf.write(b, make_field_clip(22050, 0.7, seed=3), 22050, format="FLAC")
    out = tmp_path / "fig" / "show.png"
    assert main(["show", str(a), str(b), "-o", str(out), "--n-mels", "64", "--hop", "256"]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20000


def test_show_bad_file_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    assert main(["show", str(bad), "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "bad.wav" in err and "not a readable audio file" in err
    assert not (tmp_path / "x.png").exists()


def test_help_and_version():
    out = subprocess.run([sys.executable, "-m", "melfront.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "show" in out.stdout
    ver = subprocess.run([sys.executable, "-m", "melfront.cli", "--version"], capture_output=True, text=True)
    assert ver.returncode == 0 and ver.stdout.startswith("melfront ")


@pytest.mark.parametrize("text,expected", [
    ("db,pcen", ["db", "pcen"]),
    ("db, pcen(init='loop', s=0.02),power", ["db", "pcen(init='loop', s=0.02)", "power"]),
    ("stack(db, pcen)", ["stack(db, pcen)"]),
    ("", []),
])
def test_split_specs(text, expected):
    assert split_specs(text) == expected
