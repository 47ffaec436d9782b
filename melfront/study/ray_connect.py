"""Connecting to Ray, bounded: ``--ray auto|local|ADDRESS`` ends in a connection or, within ``--ray-timeout``
seconds, in one :class:`~melfront.errors.StudyError` naming the address and the cause.

Ray's own ``ray.init(address=...)`` retries a dead address for minutes, and a crash of its C++ core (a token
mismatch, another driver's instance it cannot map) kills the calling process. So the attempt is made first in a
child process with a deadline (:func:`probe_ray`), after a plain TCP connect that fails at once on a refused
port; only a cluster that answered there is attached to in this process. Ray >= 2.59 turns token
authentication on for clusters it starts: a cluster that refuses this machine's token is named as such (see
the README's multi-machine steps: ``ray get-auth-token``, ``RAY_AUTH_TOKEN``, ``RAY_AUTH_MODE=token``).
"""
from __future__ import annotations

import os
import signal
import sys
import time

from ..checks import positive_float
from ..errors import StudyError
from .store import error_line

__all__ = ["RAY_TIMEOUT", "connect_ray", "probe_ray"]


#: Seconds a connection to a Ray cluster may take before it is given up (``--ray-timeout``).
RAY_TIMEOUT = 30.0
_CONNECTED: dict = {}  # the line that said how this process connected, repeated when it is reused


def connect_ray(address: str | None, say=print, num_cpus: int | None = None, timeout: float = RAY_TIMEOUT) -> str:
    """Connect to Ray and return a line saying how: ``"auto"`` attaches to the cluster ``RAY_ADDRESS`` names or
    the one ``ray start --head`` left on this machine, and starts a local instance when there is none;
    ``"local"`` (or None) starts a local instance (``RAY_ADDRESS`` and other drivers' instances untouched);
    anything else is a cluster address (``HOST:6379`` or ``ray://HOST:10001``) that must answer. Already
    connected: nothing changes.

    Connecting is bounded by ``timeout`` seconds and ends, when it fails, in one :class:`StudyError` naming the
    address and the cause: nothing listens there (a plain TCP connect, refused at once), no Ray cluster answers
    in time, the cluster refused this machine's authentication token, or its Ray or Python version differs.
    The attempt itself runs in a child process first (:func:`probe_ray`), so that Ray's reconnect loop or a
    crash of its C++ core never hangs or kills this one.

    >>> connect_ray("127.0.0.1:1", say=lambda line: None, timeout=5)
    Traceback (most recent call last):
    ...
    melfront.errors.StudyError: --ray 127.0.0.1:1: no Ray cluster answers there (nothing listens on 127.0.0.1:1: connection refused)
    """
    try:
        import ray  # optional heavy dependency
    except ImportError:
        raise StudyError("running on Ray needs Ray: pip install 'melfront[ray]'") from None
    timeout = positive_float("--ray-timeout", timeout)
    options = dict(ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
    if ray.is_initialized():
        line = _CONNECTED.get("line") or "ray: using the Ray instance this process is connected to"
    elif address in (None, "local"):
        line = _start_local(ray, num_cpus, options, "ray: started a local Ray instance")
    elif address == "auto":
        target, source = _auto_target()
        if target is None:
            line = _start_local(ray, num_cpus, options, "ray: no Ray cluster to attach to (no RAY_ADDRESS, no `ray "
                                "start --head` on this machine; instances other programs started are left alone), "
                                "started a local Ray instance")
        else:
            try:
                probe_ray(target, timeout, f"--ray auto ({source})")
            except StudyError as exc:
                if source.startswith("RAY_ADDRESS"):
                    raise StudyError(f"{exc}; unset RAY_ADDRESS (or give --ray local) for a local instance") from None
                line = _start_local(ray, num_cpus, options, f"ray: the cluster {source} does not answer ({exc}); "
                                    f"started a local Ray instance instead (`ray stop` clears the stale record)")
            else:
                ray.init(address=target, **options)
                line = f"ray: attached to the Ray cluster at {target} ({source}; {_ray_cpus(ray)} CPUs)"
    else:
        probe_ray(address, timeout, f"--ray {address}")
        try:
            ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise StudyError(f"--ray {address}: no Ray cluster answers there ({error_line(exc)})") from None
        line = f"ray: attached to the Ray cluster at {address} ({_ray_cpus(ray)} CPUs)"
    _CONNECTED["line"] = line
    say(line)
    return line


def _start_local(ray, num_cpus, options: dict, line: str) -> str:
    ray.init(address="local", num_cpus=num_cpus, **options)  # "local": never RAY_ADDRESS, never another driver's
    return f"{line} ({_ray_cpus(ray)} CPUs)"


def _auto_target() -> tuple:
    """``(address, where it came from)`` of the cluster ``--ray auto`` attaches to, or ``(None, "")``:
    ``RAY_ADDRESS``, else the address ``ray start --head`` recorded on this machine (Ray's
    ``ray_current_cluster`` file). Instances other drivers started with ``ray.init()`` are not attached to."""
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if env and env not in ("auto", "local"):
        return env, f"RAY_ADDRESS={env}"
    if env == "local":
        return None, ""
    try:
        from ray._private.utils import get_ray_address_file  # where `ray start` records its address
        path = get_ray_address_file(None)
        with open(path, encoding="utf-8") as f:
            recorded = f.read().strip()
    except (ImportError, AttributeError, OSError, TypeError):
        return None, ""
    return (recorded, f"recorded by `ray start` in {path}") if recorded else (None, "")


def _host_port(address: str) -> tuple:
    """``(host, port)`` of ``HOST:PORT``, ``ray://HOST:PORT``, ``[v6]:PORT`` (default port 6379, ray:// 10001).

    >>> _host_port("ray://head:10001"), _host_port("10.0.0.2"), _host_port("[::1]:6380")
    (('head', 10001), ('10.0.0.2', 6379), ('::1', 6380))
    """
    rest = address.split("://", 1)[1] if "://" in address else address
    default = 10001 if address.startswith("ray://") else 6379
    rest = rest.split("/", 1)[0]
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = tail.lstrip(":")
    else:
        host, _, port = rest.rpartition(":") if rest.count(":") == 1 else (rest, "", "")
    try:
        return host, int(port) if port else default
    except ValueError:
        raise StudyError(f"{address}: not a Ray address (HOST:PORT or ray://HOST:PORT)") from None


_PROBE = """
import json, sys
import ray
ray.init(address=sys.argv[1], log_to_driver=False, include_dashboard=False, logging_level="ERROR")
print("MELFRONT-RAY " + json.dumps(dict(cpus=ray.cluster_resources().get("CPU", 0))), flush=True)
ray.shutdown()
"""


def probe_ray(address: str, timeout: float = RAY_TIMEOUT, what: str | None = None) -> None:
    """Check within ``timeout`` seconds that a Ray cluster answers at ``address`` and accepts this machine; a
    :class:`StudyError` starting with ``what`` (default ``address``) names the cause otherwise.

    First a plain TCP connect (a refused or unreachable port fails at once), then ``ray.init(address)`` in a child
    process that is killed at the deadline: its reconnect loop, an authentication or version refusal, or an abort
    of Ray's C++ core end there, read from its output, never in this process.

    >>> probe_ray("127.0.0.1:1", 5)
    Traceback (most recent call last):
    ...
    melfront.errors.StudyError: 127.0.0.1:1: no Ray cluster answers there (nothing listens on 127.0.0.1:1: connection refused)
    """
    import socket
    import subprocess
    what = what or address
    deadline = time.monotonic() + timeout
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=min(timeout, 5.0)):
            pass
    except OSError as exc:
        cause = os.strerror(exc.errno).lower() if getattr(exc, "errno", None) else (str(exc) or "timed out")
        raise StudyError(f"{what}: no Ray cluster answers there (nothing listens on {host}:{port}: {cause})") from None
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE, address], capture_output=True, text=True,
                              timeout=max(1.0, deadline - time.monotonic()), start_new_session=True)
    except subprocess.TimeoutExpired:
        raise StudyError(f"{what}: no Ray cluster answered within {timeout:g} s ({host}:{port} accepts connections "
                         f"but Ray did not reply: another service, a cluster still starting, or a firewall on the "
                         f"other ports); --ray-timeout S waits longer") from None
    if done.returncode == 0 and "MELFRONT-RAY" in done.stdout:
        return
    raise StudyError(f"{what}: {_refusal(done.returncode, done.stderr + done.stdout)}")


def _refusal(code: int, text: str) -> str:
    """The cause of a failed Ray connection, from the probe's exit status and output.

    >>> _refusal(1, "RuntimeError: Version mismatch: The cluster was started with:\\n Ray: 2.59.0")
    'the cluster runs another Ray or Python version (Version mismatch: The cluster was started with:); install the same versions here'
    >>> _refusal(1, "ray.exceptions.AuthenticationError: Token authentication failed: invalid token")[:45]
    "the cluster refused this machine's authentica"
    """
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    low = text.lower()
    if "version mismatch" in low:
        first = next((ln for ln in lines if "version mismatch" in ln.lower()), "version mismatch")
        return (f"the cluster runs another Ray or Python version ({first.split(': ', 1)[-1]}); install the same "
                f"versions here")
    if any(k in low for k in ("authentication", "unauthenticated", "auth token", "auth_token", "invalid token")):
        return ("the cluster refused this machine's authentication token (Ray token authentication: give this "
                "machine the cluster's token, `ray get-auth-token` on the head node, as RAY_AUTH_TOKEN or in "
                "~/.ray/auth_token, with RAY_AUTH_MODE=token)")
    last = next((ln for ln in reversed(lines) if not ln.startswith(("File ", "^", "Traceback"))), "no output")
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        return f"Ray aborted while connecting ({name}: {last[:200]})"
    return f"Ray could not connect ({last[:200]})"


def _ray_cpus(ray) -> int:
    return int(ray.cluster_resources().get("CPU", 0))
