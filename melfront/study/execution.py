"""Where a study's trials run: in this process, in a pool of worker processes that die with their parent, or on
Ray. Every trial ends as an *outcome*, ``("ok", result)`` or ``("failed", one-line cause)``, handed to the caller
the moment it is known, so that one failing trial never stops (or loses) the others.

The engine schedules *units*. A unit is a list of ``(key, trial)`` pairs that run together in one process (a cell
of runs trained as one batch, the model and arms of one Tax et al. fold, or a single trial). Its function

    ``run_unit(cfg, trial_dicts, trial_fn) -> iterable of outcomes``

returns or yields one outcome per trial, in order (a generator yields each the moment it is known; the worker
pool passes it on at once, so a killed run keeps every trial stored before the kill). :func:`unit_outcomes`
makes that contract hold whatever the function does: an ok result is checked (:func:`check_result`), a unit that
raises fails each of its trials that had no outcome yet with the cause, one that gives too few fails the rest.

- :func:`execute_units` (this process, or ``jobs`` worker processes: one unit at a time each; a worker that dies
  fails only its unit's unreported trials and is replaced) and :func:`execute_ray_units` (a Ray task = a unit)
  take units and call ``on_outcome(key, trial, outcome)`` once per trial;
- :func:`execute_local` / :func:`execute_ray` take ``(key, trial)`` pairs and a per-trial ``run_one(cfg,
  trial_dict, trial_fn) -> result``: each trial is its own unit (:class:`OneByOne`), which is today's behaviour.

Everything shipped to a worker (``run_unit``, ``cfg``, the trial dicts, ``trial_fn``) must pickle: module-level
functions and plain data.
"""
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

from ..errors import DivergenceError
from .ray_connect import RAY_TIMEOUT, connect_ray, probe_ray  # noqa: F401 (re-exported)
from .store import error_line

__all__ = ["attempt", "check_result", "OneByOne", "unit_outcomes", "attempt_unit", "execute_units", "execute_local",
           "execute_ray_units", "execute_ray", "connect_ray", "die_with_parent"]


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


class OneByOne:
    """The unit function of single-trial units: ``OneByOne(run_one)(cfg, [trial], trial_fn)`` yields
    :func:`attempt`'s outcome of that trial (picklable when ``run_one`` is a module-level function).

    >>> list(OneByOne(lambda c, t, f: {"accuracy": t["n"] / 4})({}, [{"n": 1}, {"n": 2}], None))
    [('ok', {'accuracy': 0.25}), ('ok', {'accuracy': 0.5})]
    """

    def __init__(self, run_one):
        self.run_one = run_one

    def __call__(self, cfg: dict, trial_dicts: list, trial_fn=None):
        for trial_dict in trial_dicts:
            yield attempt(self.run_one, cfg, trial_dict, trial_fn)


def unit_outcomes(run_unit, cfg: dict, trial_dicts: list, trial_fn=None):
    """Exactly one outcome per trial of a unit, in order, each yielded the moment ``run_unit`` gives it.

    ``run_unit(cfg, trial_dicts, trial_fn)`` returns or yields one ``("ok", result)`` / ``("failed", cause)`` per
    trial, in order. An ok result is checked (:func:`check_result`: a non-finite one fails). When ``run_unit``
    raises, every trial it has not yet given an outcome for fails with that cause; when it gives too few, the
    missing ones fail (``UnitError``); outcomes past the last trial are dropped.

    >>> def unit(cfg, trials, fn):
    ...     yield "ok", {"accuracy": 0.5}
    ...     raise MemoryError("out of memory")
    >>> list(unit_outcomes(unit, {}, [{}, {}, {}]))
    [('ok', {'accuracy': 0.5}), ('failed', 'MemoryError: out of memory'), ('failed', 'MemoryError: out of memory')]
    """
    n, given = len(trial_dicts), 0
    try:
        for status, value in run_unit(cfg, trial_dicts, trial_fn):
            if given >= n:
                break
            outcome = ("failed", str(value))
            if status == "ok":
                try:
                    outcome = ("ok", check_result(value))
                except Exception as exc:  # a diverged trial fails alone
                    outcome = ("failed", error_line(exc))
            given += 1
            yield outcome
    except Exception as exc:  # the unit broke: its remaining trials fail with the cause, the study goes on
        cause = error_line(exc)
    else:
        cause = f"UnitError: the unit gave {given} outcome(s) for {n} trial(s)"
    for _ in range(n - given):
        yield "failed", cause


def attempt_unit(run_unit, cfg: dict, trial_dicts: list, trial_fn=None) -> list:
    """:func:`unit_outcomes` as a list (what a Ray task returns).

    >>> attempt_unit(OneByOne(lambda c, t, f: 1 / 0), {}, [{}])
    [('failed', 'ZeroDivisionError: division by zero')]
    """
    return list(unit_outcomes(run_unit, cfg, trial_dicts, trial_fn))


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


def _worker_main(conn, parent_pid: int, run_unit, trial_fn):
    """A worker: units in from ``conn``, one outcome out per trial as it ends, until told to stop or the parent
    is gone."""
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops the workers
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        cfg, trial_dicts = message
        for outcome in unit_outcomes(run_unit, cfg, trial_dicts, trial_fn):
            conn.send(outcome)


def _died(process) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"WorkerDied: the worker process was killed by {name}{hint}"
    return f"WorkerDied: the worker process exited with status {code}"


def execute_local(pending, run_one, cfg: dict, trial_fn, jobs: int, on_outcome):
    """Run ``pending`` ``(key, trial)`` pairs, each its own unit (:func:`execute_units`).

    >>> seen = []
    >>> execute_local([("k", {"n": 1})], lambda c, t, f: {"accuracy": t["n"] / 2}, {}, None, 1,
    ...               lambda key, trial, outcome: seen.append((key, outcome)))
    >>> seen
    [('k', ('ok', {'accuracy': 0.5}))]
    """
    execute_units([[p] for p in pending], OneByOne(run_one), cfg, trial_fn, jobs, on_outcome)


def execute_units(units, run_unit, cfg: dict, trial_fn, jobs: int, on_outcome):
    """Run ``units`` (each a list of ``(key, trial)``): in this process for ``jobs`` 1, else in ``jobs`` spawned
    worker processes (one unit at a time each; a worker that dies fails only its unit's trials that had no
    outcome yet, and is replaced). ``on_outcome(key, trial, outcome)`` is called as each trial ends.

    >>> def unit(cfg, trials, fn):
    ...     return [("ok", {"accuracy": t["n"] / 4}) for t in trials]
    >>> seen = []
    >>> execute_units([[("a", {"n": 1}), ("b", {"n": 2})]], unit, {}, None, 1, lambda k, t, o: seen.append((k, o)))
    >>> seen
    [('a', ('ok', {'accuracy': 0.25})), ('b', ('ok', {'accuracy': 0.5}))]
    """
    units = [list(u) for u in units if u]
    if jobs <= 1 or len(units) <= 1:
        for unit in units:
            outcomes = unit_outcomes(run_unit, cfg, [_trial_dict(t) for _, t in unit], trial_fn)
            for (key, trial), outcome in zip(unit, outcomes):
                on_outcome(key, trial, outcome)
        return
    _run_pool(units, run_unit, cfg, trial_fn, jobs, on_outcome)


def _run_pool(units, run_unit, cfg: dict, trial_fn, jobs: int, on_outcome):
    ctx = multiprocessing.get_context("spawn")
    queue = deque(units)
    workers = {}  # connection -> [process, the rest of its unit's (key, trial) pairs, or None]

    def start():
        parent_end, child_end = ctx.Pipe()
        process = ctx.Process(target=_worker_main, args=(child_end, os.getpid(), run_unit, trial_fn), daemon=True,
                              name="melfront-trial")
        process.start()
        child_end.close()
        workers[parent_end] = [process, None]
        return parent_end

    def give(conn):
        if queue:
            unit = workers[conn][1] = deque(queue.popleft())
            conn.send((cfg, [_trial_dict(t) for _, t in unit]))
        else:
            workers[conn][1] = None

    clean = False
    try:
        for _ in range(min(jobs, len(queue))):
            give(start())
        while any(rest is not None for _, rest in workers.values()):
            busy = {c: w for c, w in workers.items() if w[1] is not None}
            ready = set(wait(list(busy) + [w[0].sentinel for w in busy.values()]))
            for conn, (process, rest) in busy.items():
                died = conn not in ready
                if conn in ready:
                    try:
                        outcome = conn.recv()
                    except (EOFError, OSError):
                        died = True
                elif process.sentinel not in ready:
                    continue
                if died:  # fails the rest of this unit only; a fresh worker takes the next unit
                    process.join(5)
                    cause = _died(process)
                    del workers[conn]
                    conn.close()
                    while rest:
                        key, trial = rest.popleft()
                        on_outcome(key, trial, ("failed", cause))
                    if queue:
                        give(start())
                    continue
                key, trial = rest.popleft()
                on_outcome(key, trial, outcome)
                if not rest:
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
def execute_ray(pending, run_one, cfg: dict, trial_fn, on_outcome, *, address="auto", num_cpus: float = 1,
                num_gpus: float = 0, max_retries: int = 3, say=print):
    """Run ``pending`` ``(key, trial)`` pairs on Ray, each its own unit (:func:`execute_ray_units`)."""
    execute_ray_units([[p] for p in pending], OneByOne(run_one), cfg, trial_fn, on_outcome, address=address,
                      num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries, say=say)


def execute_ray_units(units, run_unit, cfg: dict, trial_fn, on_outcome, *, address="auto", num_cpus: float = 1,
                      num_gpus: float = 0, max_retries: int = 3, say=print):
    """Run ``units`` as Ray tasks, one task per unit (``num_cpus`` / ``num_gpus`` each; a task whose worker dies is
    retried ``max_retries`` times, then its trials fail); a task returns its unit's outcomes together, and
    ``on_outcome`` is called for each of its trials as the task ends, in completion order."""
    connect_ray(address, say)
    import ray  # optional heavy dependency (present: connect_ray checked)

    remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries,
                        retry_exceptions=False)(attempt_unit)
    refs = {remote.remote(run_unit, cfg, [_trial_dict(t) for _, t in u], trial_fn): u for u in units if u}
    while refs:
        done, _ = ray.wait(list(refs), num_returns=1)
        for ref in done:
            unit = refs.pop(ref)
            try:
                outcomes = ray.get(ref)
            except Exception as exc:  # the task itself failed (worker crashed past its retries, ...)
                outcomes = [("failed", error_line(getattr(exc, "cause", None) or exc))] * len(unit)
            for (key, trial), outcome in zip(unit, outcomes):
                on_outcome(key, trial, outcome)
