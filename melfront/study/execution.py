"""Where a study's trials run: in this process, in a pool of worker processes that die with their parent, or on
Ray. Every trial ends as an *outcome*, ``("ok", result)`` or ``("failed", one-line cause)``, handed to the caller
the moment it is known, so that one failing trial never stops (or loses) the others."""
from __future__ import annotations

import ctypes
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from multiprocessing.connection import wait

from ..errors import DivergenceError, StudyError
from .store import error_line

__all__ = ["attempt", "check_result", "execute_local", "execute_ray", "connect_ray", "die_with_parent"]


def check_result(result) -> dict:
    """``result`` as a dict; DivergenceError when its accuracy (or a loss it reports) is not a finite number.

    >>> check_result({"accuracy": 0.5})
    {'accuracy': 0.5}
    >>> check_result({"accuracy": float("nan")})
    Traceback (most recent call last):
    ...
    melfront.errors.DivergenceError: the trial diverged: accuracy is nan
    """
    result = dict(result)
    for name in ("accuracy", "loss", "train_loss", "final_loss"):
        if name not in result and name != "accuracy":
            continue
        value = result.get(name)
        try:
            finite = math.isfinite(float(value))
        except (TypeError, ValueError):
            finite = False
        if not finite:
            raise DivergenceError(f"the trial diverged: {name} is {value!r}")
    return result


def attempt(run_one, cfg: dict, trial_dict: dict, trial_fn=None) -> tuple:
    """Run ``run_one(cfg, trial_dict, trial_fn)``: ``("ok", result)``, or ``("failed", "Type: message")`` for any
    exception (MemoryError and DivergenceError included) or a result that is not finite.

    >>> attempt(lambda c, t, f: {"accuracy": 0.5}, {}, {})
    ('ok', {'accuracy': 0.5})
    >>> attempt(lambda c, t, f: 1 / 0, {}, {})
    ('failed', 'ZeroDivisionError: division by zero')
    """
    try:
        return "ok", check_result(run_one(cfg, trial_dict, trial_fn))
    except Exception as exc:  # any failure of one trial is that trial's outcome; the study goes on
        return "failed", error_line(exc)


# --------------------------------------------------------------------------------------------
# Local worker processes
# --------------------------------------------------------------------------------------------
def die_with_parent(parent_pid: int, poll_seconds: float = 0.5):
    """Make this process exit when ``parent_pid`` dies, however it dies (SIGKILL included): on Linux the kernel
    sends SIGKILL (``prctl(PR_SET_PDEATHSIG)``); everywhere a daemon thread polls :func:`os.getppid`.

    >>> die_with_parent(os.getppid())  # the parent is alive: nothing happens
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the above was in place
        os._exit(1)

    def watch():
        while True:
            time.sleep(poll_seconds)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="melfront-parent-watch", daemon=True).start()


def _worker_main(conn, parent_pid: int, run_one, trial_fn):
    """A worker: trials in from ``conn``, outcomes out, until told to stop or the parent is gone."""
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops the workers
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        cfg, trial_dict = message
        conn.send(attempt(run_one, cfg, trial_dict, trial_fn))


def _died(process) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"WorkerDied: the worker process was killed by {name}{hint}"
    return f"WorkerDied: the worker process exited with status {code}"


def execute_local(pending, run_one, cfg: dict, trial_fn, jobs: int, on_outcome):
    """Run ``pending`` ``(key, trial)`` pairs: in this process for ``jobs`` 1, else in ``jobs`` spawned worker
    processes (one trial at a time each; a worker that dies fails only its own trial and is replaced).
    ``on_outcome(key, trial, outcome)`` is called as each trial ends.

    >>> seen = []
    >>> execute_local([("k", {"n": 1})], lambda c, t, f: {"accuracy": t["n"] / 2}, {}, None, 1,
    ...               lambda key, trial, outcome: seen.append((key, outcome)))
    >>> seen
    [('k', ('ok', {'accuracy': 0.5}))]
    """
    if jobs <= 1 or len(pending) <= 1:
        for key, trial in pending:
            on_outcome(key, trial, attempt(run_one, cfg, _trial_dict(trial), trial_fn))
        return
    _run_pool(pending, run_one, cfg, trial_fn, jobs, on_outcome)


def _run_pool(pending, run_one, cfg: dict, trial_fn, jobs: int, on_outcome):
    as_dict = _trial_dict
    ctx = multiprocessing.get_context("spawn")
    queue = deque(pending)
    workers = {}  # connection -> [process, (key, trial) or None]

    def start():
        parent_end, child_end = ctx.Pipe()
        process = ctx.Process(target=_worker_main, args=(child_end, os.getpid(), run_one, trial_fn), daemon=True,
                              name="melfront-trial")
        process.start()
        child_end.close()
        workers[parent_end] = [process, None]
        return parent_end

    def give(conn):
        if queue:
            key, trial = workers[conn][1] = queue.popleft()
            conn.send((cfg, as_dict(trial)))
        else:
            workers[conn][1] = None

    clean = False
    try:
        for _ in range(min(jobs, len(queue))):
            give(start())
        while any(job is not None for _, job in workers.values()):
            busy = {c: w for c, w in workers.items() if w[1] is not None}
            ready = set(wait(list(busy) + [w[0].sentinel for w in busy.values()]))
            for conn, (process, (key, trial)) in busy.items():
                died = conn not in ready
                if conn in ready:
                    try:
                        outcome = conn.recv()
                    except (EOFError, OSError):
                        died = True
                elif process.sentinel not in ready:
                    continue
                if died:  # fails this trial only; a fresh worker takes the next one
                    process.join(5)
                    outcome = ("failed", _died(process))
                    del workers[conn]
                    conn.close()
                    conn = start() if queue else None
                on_outcome(key, trial, outcome)
                if conn is not None:
                    give(conn)
        clean = True
    finally:
        _stop_workers(workers, clean)


def _stop_workers(workers: dict, clean: bool):
    for conn, (process, _) in workers.items():
        if clean:
            try:
                conn.send(None)
            except (OSError, ValueError):
                pass
        else:
            process.kill()
    for conn, (process, _) in workers.items():
        process.join(10 if clean else 5)
        if process.is_alive():
            process.kill()
            process.join(5)
        conn.close()


def _trial_dict(trial) -> dict:
    return trial if isinstance(trial, dict) else {f: getattr(trial, f) for f in trial.__dataclass_fields__}


# --------------------------------------------------------------------------------------------
# Ray
# --------------------------------------------------------------------------------------------
def connect_ray(address: str | None, say=print, num_cpus: int | None = None) -> str:
    """Connect to Ray and return a line saying how: ``"auto"`` attaches to a running cluster (``RAY_ADDRESS``
    or the one ``ray start --head`` left on this machine) or, when none runs, starts a local instance;
    ``"local"`` (or None) starts a local instance; anything else is a cluster address (``HOST:6379`` or
    ``ray://HOST:10001``) that must answer. Already connected: nothing changes.
    """
    try:
        import ray  # optional heavy dependency
    except ImportError:
        raise StudyError("running on Ray needs Ray: pip install 'melfront[ray]'") from None
    options = dict(ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
    if ray.is_initialized():
        line = "ray: using the Ray instance this process is connected to"
    elif address in (None, "local"):
        ray.init(num_cpus=num_cpus, **options)
        line = f"ray: started a local Ray instance ({_ray_cpus(ray)} CPUs)"
    elif address == "auto":
        try:
            ray.init(address="auto", **options)
            line = f"ray: attached to the running Ray cluster ({_ray_cpus(ray)} CPUs)"
        except ConnectionError:
            ray.init(num_cpus=num_cpus, **options)
            line = (f"ray: no running Ray cluster found, started a local Ray instance ({_ray_cpus(ray)} CPUs); "
                    f"for a cluster run `ray start --head` first")
    else:
        try:
            ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise StudyError(f"--ray {address}: no Ray cluster answers there ({error_line(exc)})") from None
        line = f"ray: attached to the Ray cluster at {address} ({_ray_cpus(ray)} CPUs)"
    say(line)
    return line


def _ray_cpus(ray) -> int:
    return int(ray.cluster_resources().get("CPU", 0))


def execute_ray(pending, run_one, cfg: dict, trial_fn, on_outcome, *, address="auto", num_cpus: float = 1,
                num_gpus: float = 0, max_retries: int = 3, say=print):
    """Run ``pending`` as Ray tasks (``num_cpus`` / ``num_gpus`` each; a task whose worker dies is retried
    ``max_retries`` times, then fails); ``on_outcome`` is called as each trial ends, in completion order."""
    connect_ray(address, say)
    import ray  # optional heavy dependency (present: connect_ray checked)

    remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries,
                        retry_exceptions=False)(attempt)
    refs = {remote.remote(run_one, cfg, _trial_dict(t), trial_fn): (k, t) for k, t in pending}
    while refs:
        done, _ = ray.wait(list(refs), num_returns=1)
        for ref in done:
            key, trial = refs.pop(ref)
            try:
                outcome = ray.get(ref)
            except Exception as exc:  # the task itself failed (worker crashed past its retries, ...)
                outcome = ("failed", error_line(getattr(exc, "cause", None) or exc))
            on_outcome(key, trial, outcome)
