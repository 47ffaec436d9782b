"""The results store of a study: one SQLite file, one row per finished trial (ok or failed), safe against a kill
at any moment, plus a ``meta`` table of JSON blobs (skipped clips, derived settings, cell shortfalls)."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sqlite3
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: studies are not locked
    fcntl = None

from ..errors import StudyError
from .config import StudyConfig, Trial

__all__ = ["ResultStore", "StudyLock", "error_line"]

_RESULT_COLUMNS = ("key", "dataset", "fold", "n", "run", "model", "frontend", "seed", "accuracy", "map",
                   "train_seconds", "metrics", "learned", "config", "finished", "status", "error")


def error_line(exc: BaseException, limit: int = 300) -> str:
    """One line naming an exception's type and message (what a failed trial's row stores as its cause).

    >>> error_line(MemoryError("out of memory\\nwhile training"))
    'MemoryError: out of memory while training'
    >>> error_line(KeyError())
    'KeyError'
    """
    message = " ".join(str(exc).split())
    line = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return line if len(line) <= limit else line[:limit - 3] + "..."


class ResultStore:
    """One SQLite file per study: a ``study`` table (the config), a ``results`` table (one row per finished
    trial, ``status`` 'ok' or 'failed' with its ``error``) and a ``meta`` table (named JSON values).

    Every write is a single transaction, so a process killed at any moment leaves either the whole
    row or nothing. A trial is never stored twice: an ok row is final, a failed row is replaced when
    the trial later succeeds (``--retry-failed``). :meth:`rows` gives the ok rows, :meth:`failures` the failed.

    >>> import tempfile, pathlib
    >>> store = ResultStore(pathlib.Path(tempfile.mkdtemp()) / "study.db")
    >>> config, trial = StudyConfig(), Trial(1, 2, 0, "sbcnn", "db")
    >>> store.save_config(config); store.config() == config
    True
    >>> store.add(trial.key(config), trial, config, dict(accuracy=0.5)), store.add(trial.key(config), trial, config, dict(accuracy=0.5))
    (True, False)
    >>> [(r["frontend"], r["accuracy"]) for r in store.rows()], store.finished_keys() == {trial.key(config)}
    ([('db', 0.5)], True)
    """

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS study (id INTEGER PRIMARY KEY CHECK (id = 1), config TEXT NOT NULL, created REAL);
    CREATE TABLE IF NOT EXISTS results (
        key TEXT PRIMARY KEY, dataset TEXT, fold TEXT, n INTEGER, run INTEGER, model TEXT, frontend TEXT,
        seed INTEGER, accuracy REAL, map REAL, train_seconds REAL, metrics TEXT, learned TEXT, config TEXT,
        finished REAL, status TEXT NOT NULL DEFAULT 'ok', error TEXT);
    CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL, updated REAL);
    """

    def __init__(self, path, *, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        if readonly:
            self._check_readonly()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._connect() as db:
                db.executescript(self.SCHEMA)
                columns = {r[1] for r in db.execute("PRAGMA table_info(results)")}
                if "status" not in columns:  # a store written before failed trials were kept
                    db.execute("ALTER TABLE results ADD COLUMN status TEXT NOT NULL DEFAULT 'ok'")
                if "error" not in columns:
                    db.execute("ALTER TABLE results ADD COLUMN error TEXT")
        except sqlite3.OperationalError as exc:  # the folder or disk, not the file's content
            raise StudyError(f"{self.path}: cannot open the results store for writing ({exc}): is the folder "
                             f"writable and the disk not full?") from None
        except sqlite3.DatabaseError as exc:
            raise StudyError(f"{self.path}: not a melfront results store ({exc})") from None

    @classmethod
    def open_readonly(cls, path) -> "ResultStore":
        """Open an existing store for reading only (sqlite ``mode=ro``): no table is created and the journal
        mode is left alone; a missing file, a file that is not a melfront store, or a corrupt one is a
        :class:`~melfront.errors.StudyError` naming the file. Writing through it is a StudyError too.

        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = ResultStore(folder / "study.db")
        >>> ResultStore.open_readonly(folder / "study.db").rows()
        []
        >>> _ = (folder / "other.db").write_bytes(b"not sqlite" * 200)
        >>> ResultStore.open_readonly(folder / "other.db")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        melfront.errors.StudyError: .../other.db: not a melfront results store (file is not a database)
        """
        return cls(path, readonly=True)

    def _check_readonly(self):
        if not self.path.is_file():
            raise StudyError(f"{self.path}: no such study store (run melfront compare first)")
        try:
            with self._connect() as db:
                tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if not {"study", "results"} <= tables:
                    raise StudyError(f"{self.path}: not a melfront results store (no study/results tables)")
                columns = {r[1] for r in db.execute("PRAGMA table_info(results)")}
                missing = {"key", "accuracy", "model", "frontend", "n", "run", "fold"} - columns
                if missing:
                    raise StudyError(f"{self.path}: not a melfront results store (results lacks {sorted(missing)})")
                db.execute("PRAGMA quick_check(1)").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StudyError(f"{self.path}: not a melfront results store ({exc})") from None
        self._columns = columns
        self._tables = tables

    def _connect(self):
        if self.readonly:
            return _Closing(sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True, timeout=60))
        db = sqlite3.connect(self.path, timeout=60)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return _Closing(db)

    def _read(self, sql: str, args=()) -> list:
        try:
            with self._connect() as db:
                db.row_factory = sqlite3.Row
                return [dict(r) for r in db.execute(sql, args)]
        except sqlite3.DatabaseError as exc:
            raise StudyError(f"{self.path}: unreadable results store ({exc})") from None

    def _write(self, sql: str, args=()) -> int:
        if self.readonly:
            raise StudyError(f"{self.path}: opened read-only")
        try:
            with self._connect() as db:
                return db.execute(sql, args).rowcount
        except sqlite3.OperationalError as exc:  # read-only folder, full disk, locked beyond the timeout
            raise StudyError(f"{self.path}: cannot write the results store ({exc})") from None

    # ---- the study's config ------------------------------------------------------------------
    def save_config(self, config: StudyConfig):
        """Store the study's config (replacing the one there)."""
        self._write("INSERT OR REPLACE INTO study (id, config, created) VALUES (1, ?, ?)",
                    (json.dumps(config.to_dict(), sort_keys=True), time.time()))

    def config(self) -> StudyConfig | None:
        """The stored config, or None for a new store; StudyError if it is not a config of this version."""
        rows = self._read("SELECT config FROM study WHERE id = 1")
        if not rows:
            return None
        try:
            return StudyConfig.from_dict(json.loads(rows[0]["config"]))
        except (ValueError, TypeError) as exc:
            raise StudyError(f"{self.path}: the stored study config is unusable: {exc}") from None

    # ---- trials ------------------------------------------------------------------------------
    def _has_status(self) -> bool:
        return not self.readonly or "status" in self._columns

    def finished_keys(self) -> set:
        """Keys of the trials stored as finished (ok); failed ones are in :meth:`failed_keys`."""
        where = " WHERE status = 'ok'" if self._has_status() else ""
        return {r["key"] for r in self._read("SELECT key FROM results" + where)}

    def failed_keys(self) -> set:
        """Keys of the trials stored as failed (a rerun skips them unless asked to retry them).

        >>> import tempfile, pathlib
        >>> store = ResultStore(pathlib.Path(tempfile.mkdtemp()) / "study.db")
        >>> store.add_failure("k1", Trial(1, 2, 0, "sbcnn", "db"), StudyConfig(), ValueError("boom"))
        True
        >>> store.failed_keys(), store.finished_keys()
        ({'k1'}, set())
        """
        if not self._has_status():
            return set()
        return {r["key"] for r in self._read("SELECT key FROM results WHERE status = 'failed'")}

    def add(self, key: str, trial: Trial, config: StudyConfig, result: dict) -> bool:
        """Store one finished trial; returns False when it was already there (a failed row is replaced)."""
        metrics = {k: v for k, v in result.items() if k != "learned"}
        values = (key, config.dataset, str(trial.fold), trial.n, trial.run, trial.model, trial.frontend, config.seed,
                  float(result["accuracy"]), float(result.get("map", float("nan"))),
                  float(result.get("train_seconds", 0.0)), json.dumps(metrics), json.dumps(result.get("learned", {})),
                  json.dumps(dataclasses.asdict(trial), default=str), time.time(), "ok", None)
        names = ", ".join(_RESULT_COLUMNS)
        update = ", ".join(f"{c} = excluded.{c}" for c in _RESULT_COLUMNS[1:])
        return self._write(f"INSERT INTO results ({names}) VALUES ({', '.join('?' * len(values))}) "
                           f"ON CONFLICT(key) DO UPDATE SET {update} WHERE results.status != 'ok'", values) == 1

    def add_failure(self, key: str, trial: Trial, config: StudyConfig, error) -> bool:
        """Store one failed trial with its cause (an exception, or a one-line string); returns False when the
        trial is already stored as ok (an ok row is never overwritten). A later failure replaces an earlier one.

        >>> import tempfile, pathlib
        >>> store = ResultStore(pathlib.Path(tempfile.mkdtemp()) / "study.db")
        >>> config, trial = StudyConfig(), Trial(1, 2, 0, "sbcnn", "db")
        >>> store.add_failure("k", trial, config, MemoryError("no room")), store.rows()
        (True, [])
        >>> [(f["frontend"], f["error"]) for f in store.failures()]
        [('db', 'MemoryError: no room')]
        >>> store.add("k", trial, config, dict(accuracy=0.5)), store.failures(), len(store.rows())
        (True, [], 1)
        """
        cause = error_line(error) if isinstance(error, BaseException) else " ".join(str(error).split())
        values = (key, config.dataset, str(trial.fold), trial.n, trial.run, trial.model, trial.frontend, config.seed,
                  None, None, None, json.dumps({}), json.dumps({}), json.dumps(dataclasses.asdict(trial), default=str),
                  time.time(), "failed", cause)
        names = ", ".join(_RESULT_COLUMNS)
        update = ", ".join(f"{c} = excluded.{c}" for c in _RESULT_COLUMNS[1:])
        return self._write(f"INSERT INTO results ({names}) VALUES ({', '.join('?' * len(values))}) "
                           f"ON CONFLICT(key) DO UPDATE SET {update} WHERE results.status != 'ok'", values) == 1

    def rows(self) -> list[dict]:
        """All finished (ok) trials as dicts (metrics and learned parameters decoded).

        Every row is checked to be one this store writes (:meth:`add`): text model and frontend, integer n and
        run, a finite accuracy in [0, 1], a MAP that is empty or in [0, 1], JSON objects in ``metrics`` and
        ``learned``, one row per trial (model, frontend, n, fold, run). Anything else was written by someone
        else and is never averaged in: a StudyError names the file, the row and the cause.

        >>> import tempfile, pathlib, sqlite3
        >>> store = ResultStore(pathlib.Path(tempfile.mkdtemp()) / "study.db")
        >>> store.add("k", Trial(1, 2, 0, "sbcnn", "db"), StudyConfig(), dict(accuracy=0.5))
        True
        >>> with sqlite3.connect(store.path) as db:
        ...     _ = db.execute("UPDATE results SET accuracy = 'high'")
        >>> store.rows()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        melfront.errors.StudyError: .../study.db, results row 1 (key 'k'): accuracy 'high' is not a number; melfront did not...
        """
        where = " WHERE status = 'ok'" if self._has_status() else ""
        out = self._read(f"SELECT rowid AS _rowid, * FROM results{where} ORDER BY fold, n, run, model, frontend")
        cells = {}
        for d in out:
            rowid = d.pop("_rowid")
            where = f"{self.path}, results row {rowid} (key {d.get('key')!r})"
            _check_row(d, where)
            cell = (d["model"], d["frontend"], d["n"], d["fold"], d["run"])
            if cell in cells:
                raise StudyError(f"{where}: the same trial (model {cell[0]!r}, frontend {cell[1]!r}, n {cell[2]}, "
                                 f"fold {cell[3]}, run {cell[4]}) is also stored under key {cells[cell]!r}: melfront "
                                 f"stores one row per trial; this store was edited (remove the foreign row)")
            cells[cell] = d.get("key")
            d.setdefault("status", "ok")
            d.setdefault("error", None)
        return out

    def failures(self) -> list[dict]:
        """The failed trials: dicts of key, model, frontend, n, fold, run, error (type and message), finished."""
        if not self._has_status():
            return []
        return self._read("SELECT key, model, frontend, n, fold, run, error, finished FROM results "
                          "WHERE status = 'failed' ORDER BY fold, n, run, model, frontend")

    # ---- named JSON values ---------------------------------------------------------------------
    def set_meta(self, name: str, value):
        """Store a JSON-able ``value`` under ``name`` (replacing the one there). Names in use:
        ``skipped_clips`` (list of [path, cause]), ``derived_settings`` (dict), ``cell_shortfalls`` (list of dicts).

        >>> import tempfile, pathlib
        >>> store = ResultStore(pathlib.Path(tempfile.mkdtemp()) / "study.db")
        >>> store.set_meta("skipped_clips", [["a.wav", "AudioError: empty"]])
        >>> store.meta("skipped_clips"), store.meta("derived_settings", default={})
        ([['a.wav', 'AudioError: empty']], {})
        """
        text = json.dumps(value, sort_keys=True, allow_nan=False, default=_jsonable)
        self._write("INSERT OR REPLACE INTO meta (name, value, updated) VALUES (?, ?, ?)", (str(name), text, time.time()))

    def meta(self, name: str, default=None):
        """The value stored under ``name``, or ``default`` when there is none."""
        if self.readonly and "meta" not in self._tables:
            return default
        rows = self._read("SELECT value FROM meta WHERE name = ?", (str(name),))
        if not rows:
            return default
        try:
            return json.loads(rows[0]["value"])
        except (ValueError, TypeError, RecursionError):
            raise StudyError(f"{self.path}, meta {name!r}: not JSON; melfront did not write this value") from None


def _check_row(d: dict, where: str) -> None:
    """StudyError (``where``: file and row) for a results row :meth:`ResultStore.add` would not have written;
    decodes ``metrics`` and ``learned`` in place."""
    def refuse(cause):
        raise StudyError(f"{where}: {cause}; melfront did not write this row (restore the store, or remove the row)")

    for name in ("key", "model", "frontend", "fold"):
        if not isinstance(d.get(name), str) or not d[name]:
            refuse(f"{name} {d.get(name)!r} is not a non-empty text")
    for name, low in (("n", 1), ("run", 0)):
        if not isinstance(d.get(name), int) or d[name] < low:
            refuse(f"{name} {d.get(name)!r} is not an integer >= {low}")
    for name, required in (("accuracy", True), ("map", False), ("train_seconds", False)):
        value = d.get(name)
        if value is None and not required:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            refuse(f"{name} {value!r} is not a number")
        high = math.inf if name == "train_seconds" else 1.0
        if not (math.isfinite(value) and 0.0 <= value <= high):
            refuse(f"{name} {value!r} is not a finite number in [0, {high:g}]")
    for name in ("metrics", "learned"):
        try:
            value = json.loads(d.get(name) or "{}")
        except (ValueError, TypeError, RecursionError):
            refuse(f"{name} is not JSON ({str(d.get(name))[:40]!r})")
        if not isinstance(value, dict):
            refuse(f"{name} is not a JSON object (got {type(value).__name__})")
        d[name] = value


def _jsonable(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON-able: {type(value).__name__}")


class StudyLock:
    """An exclusive lock on a study folder (``fcntl.flock`` on ``FOLDER/.lock``, non-blocking), so that one study
    runs per folder: a second holder is refused at once with a StudyError naming the folder and the pid that
    holds it. Re-entrant within a process; released when the ``with`` block ends or the process dies.

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with StudyLock(folder), StudyLock(folder):
    ...     StudyLock.held(folder)
    True
    >>> StudyLock.held(folder)
    False
    """

    _held: dict = {}  # lock file path -> [fd, depth]

    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = str((self.folder / ".lock").resolve())

    @classmethod
    def held(cls, folder) -> bool:
        """Whether this process holds the lock on ``folder``."""
        return str((Path(folder) / ".lock").resolve()) in cls._held

    def __enter__(self):
        if self.path in self._held:
            self._held[self.path][1] += 1
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StudyError(f"{self.folder}: another melfront compare (pid {holder}) is running on this study "
                             f"folder; wait for it to end, or use another --output folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._held[self.path] = [fd, 1]
        return self

    def __exit__(self, *exc):
        entry = self._held[self.path]
        entry[1] -= 1
        if entry[1] == 0:
            del self._held[self.path]
            os.close(entry[0])  # closing the descriptor releases the lock


class _Closing:
    """A connection used as ``with``: commits (or rolls back) like sqlite3's, then closes (no leaked handles)."""

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        return self.db

    def __exit__(self, *exc):
        try:
            self.db.__exit__(*exc)
        finally:
            self.db.close()
