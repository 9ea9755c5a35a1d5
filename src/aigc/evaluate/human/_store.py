"""The judgements database: one SQLite file in WAL mode, one transaction per vote.

Tables::

    meta(key, value)                       the study's settings (seed, question), for the record
    tasks(id, prompt, seed, system_a, system_b, path_a, path_b, kind_a, kind_b)
                                           one row per comparison (system_a < system_b); paths are updated when a
                                           study is resumed from moved folders
    votes(id, task_id, rater, question, left_system, right_system, choice, winner, created, elapsed_ms)
                                           one row per rater and task: a rater who votes again on a task replaces
                                           their vote; ``choice`` is what the rater pressed (left, right, tie,
                                           both_bad), ``winner`` the system that won (NULL for tie and both_bad)

``synchronous=FULL`` with WAL: a vote is on disk when its ``COMMIT`` returns, before the page hears back, so
killing the server (even ``kill -9``) loses no vote the page showed as recorded.
"""

from __future__ import annotations

import datetime as _dt
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aigc.errors import InvalidRequest
from aigc.evaluate.human._items import Output, Task

__all__ = ["CHOICES", "Vote", "VoteStore"]

CHOICES = ("left", "right", "tie", "both_bad")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY,
    prompt TEXT NOT NULL, seed INTEGER NOT NULL, system_a TEXT NOT NULL, system_b TEXT NOT NULL,
    path_a TEXT NOT NULL, path_b TEXT NOT NULL, kind_a TEXT NOT NULL, kind_b TEXT NOT NULL,
    UNIQUE (prompt, seed, system_a, system_b)
);
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY,
    task_id INTEGER NOT NULL REFERENCES tasks(id),
    rater TEXT NOT NULL,
    question TEXT NOT NULL,
    left_system TEXT NOT NULL, right_system TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('left', 'right', 'tie', 'both_bad')),
    winner TEXT,
    created TEXT NOT NULL,
    elapsed_ms INTEGER,
    UNIQUE (task_id, rater, question)
);
"""


@dataclass(frozen=True)
class Vote:
    """One judgement, as stored.

    Attributes:
        task_id, prompt, seed, system_a, system_b: the comparison (``system_a < system_b``).
        rater: the rater's name.
        question: the question the rater answered.
        left_system, right_system: the systems as they were shown.
        choice: ``"left"``, ``"right"``, ``"tie"`` or ``"both_bad"``.
        winner: the system chosen, or ``None`` for a tie or "both bad".
        created: UTC time of the vote (ISO 8601).
        elapsed_ms: time from showing the pair to the vote, as the page measured it.
        path_a, path_b: the two files.
    """

    id: int
    task_id: int
    prompt: str
    seed: int
    system_a: str
    system_b: str
    rater: str
    question: str
    left_system: str
    right_system: str
    choice: str
    winner: str | None
    created: str
    elapsed_ms: int | None
    path_a: str
    path_b: str

    @property
    def outcome(self) -> str:
        """The judgement independent of the layout: ``"a"`` or ``"b"`` (the system that won), ``"tie"`` or
        ``"both_bad"`` -- what rater agreement compares."""
        if self.winner is None:
            return self.choice
        return "a" if self.winner == self.system_a else "b"


class VoteStore:
    """The SQLite database of a study (see the module docstring); safe to share between threads.

    Example:
        >>> store = VoteStore("study.sqlite")  # doctest: +SKIP
        >>> store.votes()  # doctest: +SKIP
        []
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True, flag: str = "--db") -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise InvalidRequest(flag, os.fspath(path), "no such database",
                                 "pass the file that `aigc eval human ... --db FILE` wrote")
        if create and not self.path.parent.is_dir():
            raise InvalidRequest(flag, os.fspath(path), "its folder does not exist",
                                 "create the folder first, or pass a path in an existing folder")
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=10000")
            if create:
                self._db.executescript(_SCHEMA)
            else:
                tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if not {"meta", "tasks", "votes"} <= tables:
                    raise InvalidRequest(flag, os.fspath(path), "not a database written by aigc eval human",
                                         "pass the file that `aigc eval human ... --db FILE` wrote")
        except sqlite3.DatabaseError as e:
            raise InvalidRequest(flag, os.fspath(path), f"cannot open it as SQLite ({e})",
                                 "pass the file that `aigc eval human ... --db FILE` wrote") from None
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the connection (pending WAL pages are checkpointed into the main file)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> VoteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
                             "value = excluded.value", (key, value))

    def meta(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def add_tasks(self, tasks: list[Task]) -> list[int]:
        """Insert the tasks (or update the paths of those already there) in one transaction; return their ids."""
        ids = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for t in tasks:
                    self._db.execute(
                        "INSERT INTO tasks (prompt, seed, system_a, system_b, path_a, path_b, kind_a, kind_b) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (prompt, seed, system_a, system_b) DO UPDATE "
                        "SET path_a = excluded.path_a, path_b = excluded.path_b, kind_a = excluded.kind_a, "
                        "kind_b = excluded.kind_b",
                        (t.prompt, t.seed, t.a.system, t.b.system, os.fspath(t.a.path), os.fspath(t.b.path),
                         t.a.kind, t.b.kind))
                    row = self._db.execute("SELECT id FROM tasks WHERE prompt = ? AND seed = ? AND system_a = ? "
                                           "AND system_b = ?", (t.prompt, t.seed, t.a.system, t.b.system)).fetchone()
                    ids.append(int(row[0]))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return ids

    def task(self, task_id: int) -> Task | None:
        """The task with this id, or ``None``."""
        with self._lock:
            row = self._db.execute("SELECT prompt, seed, system_a, system_b, path_a, path_b, kind_a, kind_b FROM "
                                   "tasks WHERE id = ?", (task_id,)).fetchone()
        if row is None:
            return None
        prompt, seed, sa, sb, pa, pb, ka, kb = row
        return Task(prompt=prompt, seed=seed, a=Output(sa, Path(pa), ka, prompt, seed),
                    b=Output(sb, Path(pb), kb, prompt, seed))

    def voted_tasks(self, rater: str, question: str) -> set[int]:
        """The ids of the tasks ``rater`` has voted on for ``question``."""
        with self._lock:
            rows = self._db.execute("SELECT task_id FROM votes WHERE rater = ? AND question = ?",
                                    (rater, question)).fetchall()
        return {int(r[0]) for r in rows}

    def record_vote(self, *, task_id: int, rater: str, question: str, left_system: str, right_system: str,
                    choice: str, elapsed_ms: int | None = None) -> int:
        """Store one vote in its own transaction (a later vote of the same rater on the same task and question
        replaces it); return its row id. Returns only once the vote is durable on disk."""
        if choice not in CHOICES:
            raise InvalidRequest("choice", choice, f"not one of {', '.join(CHOICES)}", "pass one of them")
        winner = {"left": left_system, "right": right_system}.get(choice)
        created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM votes WHERE task_id = ? AND rater = ? AND question = ?",
                                 (task_id, rater, question))
                cur = self._db.execute(
                    "INSERT INTO votes (task_id, rater, question, left_system, right_system, choice, winner, created, "
                    "elapsed_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (task_id, rater, question, left_system, right_system, choice, winner, created, elapsed_ms))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return int(cur.lastrowid or 0)

    def undo_last(self, rater: str, question: str) -> int | None:
        """Delete ``rater``'s newest vote on ``question`` in its own transaction; return its task id (``None``
        when the rater has no vote). Durable when it returns, like :meth:`record_vote`."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT id, task_id FROM votes WHERE rater = ? AND question = ? "
                                       "ORDER BY id DESC LIMIT 1", (rater, question)).fetchone()
                if row is not None:
                    self._db.execute("DELETE FROM votes WHERE id = ?", (row[0],))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return None if row is None else int(row[1])

    def votes(self, *, question: str | None = None) -> list[Vote]:
        """Every vote (of one question, if given), oldest first."""
        sql = ("SELECT v.id, v.task_id, t.prompt, t.seed, t.system_a, t.system_b, v.rater, v.question, "
               "v.left_system, v.right_system, v.choice, v.winner, v.created, v.elapsed_ms, t.path_a, t.path_b "
               "FROM votes v JOIN tasks t ON t.id = v.task_id")
        params: tuple[str, ...] = ()
        if question is not None:
            sql += " WHERE v.question = ?"
            params = (question,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY v.id", params).fetchall()
        return [Vote(*row) for row in rows]

    def questions(self) -> list[str]:
        """The questions votes were cast on, in the order they were first used."""
        with self._lock:
            rows = self._db.execute("SELECT question FROM votes GROUP BY question ORDER BY MIN(id)").fetchall()
        return [r[0] for r in rows]

    def __iter__(self) -> Iterator[Vote]:
        return iter(self.votes())
