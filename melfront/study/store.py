"""The results store of a study: one SQLite file, one row per finished trial, safe against a kill at any moment."""
from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from pathlib import Path

from ..errors import StudyError
from .config import StudyConfig, Trial

__all__ = ["ResultStore"]


class ResultStore:
    """One SQLite file per study: a ``study`` table (the config) and a ``results`` table (one row per finished trial).

    Every write is a single transaction, so a process killed at any moment leaves either the whole
    row or nothing; ``INSERT OR IGNORE`` on the trial key means a trial is never stored twice.

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
        finished REAL);
    """

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._connect() as db:
                db.executescript(self.SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StudyError(f"{self.path}: not a melfront results store ({exc})") from None

    def _connect(self):
        db = sqlite3.connect(self.path, timeout=60)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    def save_config(self, config: StudyConfig):
        """Store the study's config (replacing the one there)."""
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO study (id, config, created) VALUES (1, ?, ?)",
                       (json.dumps(config.to_dict(), sort_keys=True), time.time()))

    def config(self) -> StudyConfig | None:
        """The stored config, or None for a new store; StudyError if it is not a config of this version."""
        with self._connect() as db:
            row = db.execute("SELECT config FROM study WHERE id = 1").fetchone()
        if row is None:
            return None
        try:
            return StudyConfig.from_dict(json.loads(row[0]))
        except (ValueError, TypeError) as exc:
            raise StudyError(f"{self.path}: the stored study config is unusable: {exc}") from None

    def finished_keys(self) -> set:
        """Keys of the trials already stored."""
        with self._connect() as db:
            return {r[0] for r in db.execute("SELECT key FROM results")}

    def add(self, key: str, trial: Trial, config: StudyConfig, result: dict) -> bool:
        """Store one finished trial; returns False when it was already there."""
        metrics = {k: v for k, v in result.items() if k != "learned"}
        with self._connect() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (key, config.dataset, str(trial.fold), trial.n, trial.run, trial.model, trial.frontend, config.seed,
                 float(result["accuracy"]), float(result.get("map", float("nan"))),
                 float(result.get("train_seconds", 0.0)), json.dumps(metrics), json.dumps(result.get("learned", {})),
                 json.dumps(dataclasses.asdict(trial), default=str), time.time()))
            return cur.rowcount == 1

    def rows(self) -> list[dict]:
        """All finished trials as dicts (metrics and learned parameters decoded)."""
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            out = []
            for r in db.execute("SELECT * FROM results ORDER BY fold, n, run, model, frontend"):
                d = dict(r)
                d["metrics"] = json.loads(d["metrics"])
                d["learned"] = json.loads(d["learned"])
                out.append(d)
        return out
