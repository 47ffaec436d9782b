"""Connecting to Ray is bounded and ends in one clear StudyError (127.0.0.1 only; no Ray cluster is started)."""
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from melfront.errors import StudyError

ray = pytest.importorskip("ray")
from melfront.study import ray_connect  # noqa: E402  (after the skip: Ray is an optional dependency)
from melfront.study.ray_connect import _auto_target, _refusal, connect_ray, probe_ray  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_ray_env(monkeypatch):
    for name in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert not ray.is_initialized()


def _dead_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_refused_port_is_a_study_error_at_once(no_ray_env):
    t0 = time.monotonic()
    with pytest.raises(StudyError, match=r"--ray 127\.0\.0\.1:1: no Ray cluster answers there .*connection refused"):
        connect_ray("127.0.0.1:1", say=lambda line: None)
    assert time.monotonic() - t0 < 10


def test_stale_ray_address_with_auto_is_an_error_naming_it(no_ray_env, monkeypatch):
    port = _dead_port()
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    t0 = time.monotonic()
    with pytest.raises(StudyError) as info:
        connect_ray("auto", say=lambda line: None)
    assert time.monotonic() - t0 < 10
    message = str(info.value)
    assert f"RAY_ADDRESS=127.0.0.1:{port}" in message and "unset RAY_ADDRESS" in message
    assert "\n" not in message


def test_silent_listener_times_out_within_the_bound(no_ray_env):
    """A port that accepts connections but never speaks Ray: the child's attempt is killed at the deadline."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    address = f"127.0.0.1:{server.getsockname()[1]}"
    try:
        t0 = time.monotonic()
        with pytest.raises(StudyError, match=r"no Ray cluster answered within 3 s .*--ray-timeout"):
            probe_ray(address, timeout=3, what=f"--ray {address}")
        assert time.monotonic() - t0 < 15
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()


def test_ray_timeout_must_be_positive(no_ray_env):
    with pytest.raises(StudyError.__mro__[1], match="--ray-timeout"):  # a ParameterError, a MelfrontError
        connect_ray("127.0.0.1:1", say=lambda line: None, timeout=0)


@pytest.mark.parametrize("code, text, expected", [
    (1, "RuntimeError: Version mismatch: The cluster was started with:\n    Ray: 2.59.0\n", "another Ray or Python"),
    (1, "ray.exceptions.AuthenticationError: Token authentication failed", "authentication token"),
    (1, "grpc status UNAUTHENTICATED: invalid token", "RAY_AUTH_TOKEN"),
    (-6, "F1207 core_worker.cc:12] mmap failed\n*** SIGABRT received", "Ray aborted while connecting (SIGABRT"),
    (1, "ConnectionError: something else", "Ray could not connect (ConnectionError: something else)"),
])
def test_refusal_causes_are_named(code, text, expected):
    assert expected in _refusal(code, text)


def test_auto_reads_ray_address_then_the_ray_start_record(no_ray_env, monkeypatch, tmp_path):
    monkeypatch.setenv("RAY_ADDRESS", "10.1.2.3:6379")
    assert _auto_target() == ("10.1.2.3:6379", "RAY_ADDRESS=10.1.2.3:6379")
    monkeypatch.delenv("RAY_ADDRESS")
    record = tmp_path / "ray_current_cluster"
    monkeypatch.setattr("ray._private.utils.get_ray_address_file", lambda temp_dir: str(record))
    assert _auto_target() == (None, "")
    record.write_text(f"127.0.0.1:{_dead_port()}\n")
    address, source = _auto_target()
    assert address == record.read_text().strip() and str(record) in source


def test_auto_with_a_stale_ray_start_record_says_so_and_starts_locally(no_ray_env, monkeypatch, tmp_path):
    record = tmp_path / "ray_current_cluster"
    record.write_text(f"127.0.0.1:{_dead_port()}")
    monkeypatch.setattr("ray._private.utils.get_ray_address_file", lambda temp_dir: str(record))
    started = []
    monkeypatch.setattr(ray_connect, "_start_local",
                        lambda ray, num_cpus, options, line: started.append(line) or line + " (2 CPUs)")
    said = []
    line = connect_ray("auto", say=said.append)
    assert started and said == [line]
    assert "does not answer" in line and "connection refused" in line and "`ray stop`" in line
    assert "local Ray instance instead" in line


def _cli(args, timeout=60):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "melfront.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)
    return done, time.monotonic() - t0


def test_cli_ends_in_one_line_and_exit_2_within_60_s(tmp_path):
    """A separate process, as a user runs it: nothing of Ray's keeps it alive after the error."""
    done, seconds = _cli(["compare", "--ray", "127.0.0.1:1", "--ray-timeout", "20", "-o", str(tmp_path / "study"),
                          "--quiet", "--dataset", "synth", "--root", str(tmp_path / "synth")])
    assert done.returncode == 2, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--ray 127.0.0.1:1" in lines[0] and "connection refused" in lines[0], done.stderr
    assert "Traceback" not in done.stderr and seconds < 60
    assert not (tmp_path / "study" / "study.db").exists()  # nothing ran


def test_cli_auto_with_a_dead_ray_address_is_one_line(no_ray_env, tmp_path, monkeypatch, capsys):
    from melfront.cli import main
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    t0 = time.monotonic()
    assert main(["compare", "--ray", "auto", "-o", str(tmp_path / "study"), "--quiet", "--dataset", "synth",
                 "--root", str(tmp_path / "synth")]) == 2
    assert time.monotonic() - t0 < 60
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RAY_ADDRESS=127.0.0.1:1" in err and "connection refused" in err
    assert not (tmp_path / "study" / "study.db").exists()
