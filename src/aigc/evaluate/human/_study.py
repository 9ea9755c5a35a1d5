"""A study: the comparison tasks of some system folders, each rater's order and layout, and the votes.

The order in which a rater sees the tasks and which output of a pair is on the left are drawn from
``random.Random`` generators seeded with the study's seed, the rater's name and (for the layout) the task, never
from the global RNG: the same rater gets the same order and layout whenever the server (re)starts, which makes
resumption exact, and the layout of every vote is stored with it.
"""

from __future__ import annotations

import json
import os
import random
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from aigc.errors import InvalidRequest
from aigc.evaluate.human._items import Task, plan
from aigc.evaluate.human._store import CHOICES, VoteStore

__all__ = ["DEFAULT_QUESTION", "MAX_RATER_CHARS", "Study", "check_rater", "open_study"]

DEFAULT_QUESTION = "Which output is better?"
MAX_RATER_CHARS = 64
MAX_QUESTION_CHARS = 500


def check_rater(name: object) -> str:
    """A rater's name, stripped; refused when empty, too long, or holding control characters.

    Example:
        >>> check_rater("  alice ")
        'alice'
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest("rater", name, "a rater needs a name", "type your name (any text, no account)")
    name = name.strip()
    if len(name) > MAX_RATER_CHARS or any(unicodedata.category(c).startswith("C") for c in name):
        raise InvalidRequest("rater", name, f"up to {MAX_RATER_CHARS} printable characters",
                             "use a shorter name without control characters")
    return name


def check_question(question: object) -> str:
    if not isinstance(question, str) or not question.strip() or len(question) > MAX_QUESTION_CHARS:
        raise InvalidRequest("--question", question, f"needs 1 to {MAX_QUESTION_CHARS} characters",
                             'pass e.g. --question "Which follows the prompt better?"')
    return question.strip()


@dataclass(frozen=True)
class Shown:
    """A task as one rater sees it: which system is on which side."""

    task_id: int
    task: Task
    swapped: bool  # True: system_b is on the left

    @property
    def left(self) -> str:
        return self.task.b.system if self.swapped else self.task.a.system

    @property
    def right(self) -> str:
        return self.task.a.system if self.swapped else self.task.b.system

    def output(self, side: str) -> Path:
        first = self.task.b if self.swapped else self.task.a
        second = self.task.a if self.swapped else self.task.b
        return (first if side == "left" else second).path

    def kind(self, side: str) -> str:
        first = self.task.b if self.swapped else self.task.a
        second = self.task.a if self.swapped else self.task.b
        return (first if side == "left" else second).kind


class Study:
    """The tasks of a comparison and its vote store (see :func:`open_study`)."""

    def __init__(self, store: VoteStore, tasks: dict[int, Task], *, question: str, seed: int,
                 roots: dict[str, Path]) -> None:
        self.store = store
        self.tasks = tasks
        self.question = question
        self.seed = seed
        self.roots = roots

    @property
    def systems(self) -> list[str]:
        return sorted(self.roots)

    def order(self, rater: str) -> list[int]:
        """The task ids in the order ``rater`` sees them (a shuffle seeded by the study's seed and the name)."""
        ids = sorted(self.tasks, key=lambda i: self.tasks[i].key)
        random.Random(json.dumps(["order", self.seed, rater], ensure_ascii=False)).shuffle(ids)
        return ids

    def shown(self, rater: str, task_id: int) -> Shown:
        """Task ``task_id`` as ``rater`` sees it; the side is a coin seeded by the seed, the name and the task."""
        task = self.tasks.get(task_id)
        if task is None:
            raise InvalidRequest("task", task_id, "no such comparison in this study", "reload the page")
        coin = random.Random(json.dumps(["side", self.seed, rater, task.key], ensure_ascii=False)).random()
        return Shown(task_id, task, swapped=coin < 0.5)

    def progress(self, rater: str) -> tuple[int | None, int, int]:
        """(the next task id or ``None`` when done, tasks done, tasks in all) for ``rater``."""
        voted = self.store.voted_tasks(rater, self.question)
        order = self.order(rater)
        done = sum(1 for i in order if i in voted)
        nxt = next((i for i in order if i not in voted), None)
        return nxt, done, len(order)

    def vote(self, rater: str, task_id: int, choice: str, elapsed_ms: int | None = None) -> int:
        """Record ``rater``'s ``choice`` on ``task_id`` with the layout they saw; durable when it returns."""
        if choice not in CHOICES:
            raise InvalidRequest("choice", choice, f"not one of {', '.join(CHOICES)}", "pass one of them")
        shown = self.shown(rater, task_id)
        return self.store.record_vote(task_id=task_id, rater=rater, question=self.question, left_system=shown.left,
                                      right_system=shown.right, choice=choice, elapsed_ms=elapsed_ms)

    def undo(self, rater: str) -> int:
        """Take back ``rater``'s newest vote; return its task id, which is then the rater's next comparison.

        Raises:
            InvalidRequest: the rater has no vote to take back.
        """
        task_id = self.store.undo_last(rater, self.question)
        if task_id is None:
            raise InvalidRequest("undo", rater, "this rater has no vote to take back", "vote first")
        return task_id

    def media(self, rater: str, task_id: int, side: str) -> Path:
        """The file (or frame folder) shown on ``side`` of ``task_id`` to ``rater``; refused unless it lies inside
        its system's folder (the database could have been edited: a file is served only from the folders given on
        the command line)."""
        if side not in ("left", "right"):
            raise InvalidRequest("side", side, "not left or right", "ask for left or right")
        shown = self.shown(rater, task_id)
        path = shown.output(side).resolve()
        system = shown.left if side == "left" else shown.right
        root = self.roots[system]
        usable = path.is_dir() if shown.kind(side) == "frames" else path.is_file()
        if os.path.commonpath([root, path]) != os.fspath(root) or not usable:
            raise InvalidRequest("task", task_id, "its file is not inside the system's folder", "reload the page")
        return path


def open_study(folders: list[str | os.PathLike[str]], *, db: str | os.PathLike[str],
               question: str = DEFAULT_QUESTION, seed: int = 0) -> Study:
    """Match the outputs in ``folders`` (one per system) by prompt and seed and open (or resume) the study's
    database.

    Args:
        folders: two or more folders of outputs saved by aigc, one per system (named after the folder).
        db: the SQLite file the votes go to (created if missing; an existing one is resumed).
        question: what the raters answer.
        seed: seeds each rater's order and the left/right layout.

    Raises:
        InvalidRequest: see :func:`aigc.evaluate.human.plan`; a bad question or database.

    Example:
        >>> study = open_study(["runs/gan", "runs/vae"], db="study.sqlite")  # doctest: +SKIP
        >>> study.progress("alice")  # doctest: +SKIP
        (3, 0, 8)
    """
    question = check_question(question)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidRequest("--seed", seed, "not an integer", "pass an integer seed, e.g. 0")
    tasks = plan(folders)
    store = VoteStore(db)
    ids = store.add_tasks(tasks)
    store.set_meta("seed", str(seed))
    store.set_meta("question", question)
    roots = {Path(f).resolve().name: Path(f).resolve() for f in folders}
    return Study(store, dict(zip(ids, tasks, strict=True)), question=question, seed=seed, roots=roots)
