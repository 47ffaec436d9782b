"""How `melfront` reports failures: one line and exit status 2 for deliberate errors, 130 for Ctrl-C,
a short "internal error" line and exit status 3 for bugs (the traceback only with --debug)."""
import pytest

import melfront.cli as cli
from melfront.errors import DataError, DivergenceError, MetadataError, ParameterError


def _make_command_raise(monkeypatch, exc, name="frontends"):
    def run(args):
        raise exc
    monkeypatch.setattr(cli, "COMMANDS", [(n, add, run if n == name else r) for n, add, r in cli.COMMANDS])


@pytest.mark.parametrize("exc", [
    ParameterError("n_mels must be a positive integer, got 2.5"),
    DataError("no clips of class 'owl' in fold 3"),
    MetadataError("meta/esc50.csv", "missing column 'fold'", row=1),
    DivergenceError("the loss became nan at epoch 3, batch 7"),
    FloatingPointError("overflow encountered in exp"),
    FileNotFoundError("run/checkpoint.pt: no such file"),
    PermissionError(13, "Permission denied", "/root/x.wav"),
])
def test_deliberate_errors_are_one_line_and_exit_2(monkeypatch, capsys, exc):
    _make_command_raise(monkeypatch, exc)
    assert cli.main(["frontends"]) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.count("\n") == 1 and err.startswith("melfront frontends: error: ")
    if isinstance(exc, OSError) and exc.errno:  # an OS error: the path and the errno's meaning (PathError)
        assert f"{exc.filename}: permission denied (EACCES)" in err
    else:
        assert str(exc).splitlines()[0] in err
    assert "Traceback" not in err and captured.out == ""


def test_an_os_error_without_a_path_still_says_its_meaning(monkeypatch, capsys):
    import errno
    _make_command_raise(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
    assert cli.main(["frontends"]) == 2
    assert capsys.readouterr().err == "melfront frontends: error: no space left on device (ENOSPC)\n"


def test_a_multi_line_message_is_joined_into_one_line(monkeypatch, capsys):
    _make_command_raise(monkeypatch, ParameterError("bad settings:\n  epochs=0\n  lr=-1"))
    assert cli.main(["frontends"]) == 2
    assert capsys.readouterr().err == "melfront frontends: error: bad settings:; epochs=0; lr=-1\n"


def test_keyboard_interrupt_exits_130(monkeypatch, capsys):
    _make_command_raise(monkeypatch, KeyboardInterrupt())
    assert cli.main(["frontends"]) == 130
    assert capsys.readouterr().err == "melfront frontends: interrupted\n"


def test_an_unexpected_exception_is_a_short_bug_report_and_exits_3(monkeypatch, capsys):
    _make_command_raise(monkeypatch, ZeroDivisionError("division by zero"))
    assert cli.main(["frontends"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("melfront frontends: internal error: ZeroDivisionError: division by zero - this is a bug")
    assert "melfront --debug frontends" in err and "Traceback" not in err


def test_a_plain_value_error_is_a_bug_not_a_user_error(monkeypatch, capsys):
    # melfront raises ParameterError for bad arguments; a bare ValueError escaping is a bug
    _make_command_raise(monkeypatch, ValueError("math domain error"))
    assert cli.main(["frontends"]) == 3
    assert "internal error: ValueError: math domain error" in capsys.readouterr().err


def test_debug_prints_the_full_traceback(monkeypatch, capsys):
    _make_command_raise(monkeypatch, ZeroDivisionError("division by zero"))
    assert cli.main(["--debug", "frontends"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert "in run" in err and err.rstrip().endswith("ZeroDivisionError: division by zero")
    assert "this is a bug" not in err


def test_debug_also_shows_where_a_deliberate_error_came_from(monkeypatch, capsys):
    _make_command_raise(monkeypatch, ParameterError("lr must be > 0, got -1"))
    assert cli.main(["--debug", "frontends"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.endswith("melfront frontends: error: lr must be > 0, got -1\n")


def test_a_successful_command_exits_0_and_argparse_errors_exit_2(capsys):
    assert cli.main(["frontends"]) == 0
    assert "pcen" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        cli.main(["frontends", "--no-such-option"])
    assert info.value.code == 2


def test_real_commands_report_bad_input_in_one_line(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err == f"melfront report: error: {tmp_path / 'nothing'}: no such study (run melfront compare first)\n"
    assert cli.main(["compare", "-o", str(tmp_path / "s"), "--n", "1,two", "--quiet"]) == 2
    assert capsys.readouterr().err == "melfront compare: error: --n must be comma-separated integers, got '1,two'\n"
    assert cli.main(["train", "--dataset", "synth", "--test-fold", "1", "--set", "epochs"]) == 2
    assert capsys.readouterr().err == "melfront train: error: --set must look like KEY=VALUE, got 'epochs'\n"
    assert cli.main(["equivalence", "-o", str(tmp_path), "--short-window", "4096"]) == 2
    assert "--short-window < --long-window" in capsys.readouterr().err
