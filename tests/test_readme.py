"""The README's Python example runs as written (on a clip this test makes)."""
import re
from pathlib import Path

import soundfile as sf

from conftest import make_field_clip


def test_readme_python_example_runs(tmp_path, monkeypatch):
    text = (Path(__file__).parent.parent / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    sf.write(tmp_path / "clip.flac", make_field_clip(22050, 3.2), 22050, format="FLAC")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert tuple(namespace["logits"].shape) == (1, 10)
    assert set(namespace["pcen"].learned_parameters()) >= {"s", "alpha", "delta", "r"}
