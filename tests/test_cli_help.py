"""``melfront --help`` and ``melfront COMMAND --help`` import neither torch nor numpy (nor the layers that do): the
parser is built from argument declarations only, the command implementations are imported when a command runs.
Speed itself (about 0.4 s, mostly the interpreter's start) is measured, not asserted (BENCHMARKS.md)."""
import json
import subprocess
import sys

from melfront.cli import COMMANDS

HEAVY = ("torch", "numpy", "scipy", "matplotlib", "soundfile", "soxr")

PROBE = r"""
import json, sys
from melfront.cli import COMMANDS, build_parser
parser = build_parser()
helps = {}
for argv in [["--help"]] + [[name, "--help"] for name, _, _ in COMMANDS]:
    import contextlib, io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            parser.parse_args(argv)
        except SystemExit:
            pass
    helps[" ".join(argv[:-1]) or "melfront"] = out.getvalue()
print(json.dumps({"helps": helps, "modules": sorted(sys.modules)}))
"""


def _probe():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout)


def test_every_help_is_printed_without_importing_torch():
    result = _probe()
    loaded = {m.split(".")[0] for m in result["modules"]}
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    helps = result["helps"]
    for name, _, _ in COMMANDS:
        assert f"usage: melfront {name}" in helps[name] and "--help" in helps[name], name
        assert name in helps["melfront"]                        # the overview lists every command
    assert "--frontends" in helps["compare"] and "--set KEY=VALUE" in helps["train"]


def test_the_melfront_command_help_imports_no_torch():
    """The real entry point (``python -m melfront.cli``), as ``-X importtime`` reports every module it imports."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "melfront.cli", "train", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "usage: melfront train" in done.stdout
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in done.stderr.splitlines() if "|" in line}
    assert "melfront" in imported and not imported & set(HEAVY), sorted(imported & set(HEAVY))


def test_a_command_still_runs_after_the_lazy_parser():
    done = subprocess.run([sys.executable, "-m", "melfront.cli", "frontends"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0
    for name in ("db", "pcen", "adaptive", "mst"):   # adaptive and mst: registered from above melfront.frontends
        assert name in done.stdout, name


def test_import_melfront_is_light_and_its_names_load_on_use():
    code = ("import sys, melfront; light = 'torch' not in sys.modules; "
            "from melfront import PCEN, MelSpectrogram; import melfront.frontends as f; "
            "print(json.dumps([light, PCEN.__name__, melfront.models.build.__name__, 'mst' in f.FRONTENDS]))")
    done = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert json.loads(done.stdout) == [True, "PCEN", "build", True]
