"""Human evaluation: blind pairwise comparison of generated outputs in the browser, and its statistics.

``aigc eval human A_DIR B_DIR [C_DIR ...]`` serves a local page (127.0.0.1) where raters compare two systems'
outputs for the same prompt and seed -- text, images side by side, audio or video players -- answering a question
(left, right, tie, both bad) with the keyboard; votes go to a SQLite database, one durable transaction each.
``aigc eval human --report DB`` prints win rates with Wilson intervals, Bradley-Terry scores with bootstrap
intervals and rater agreement (Cohen's / Fleiss' kappa). See ``docs/human_eval.md``.

Importing this package imports neither Starlette nor numpy; serving and the bootstrap do.

Example:
    >>> from aigc.evaluate import human
    >>> [round(x, 3) for x in human.wilson_interval(8, 10)]
    [0.49, 0.943]
    >>> round(human.cohen_kappa(["a", "a", "b", "tie"], ["a", "b", "b", "tie"]), 3)
    0.636
"""

from __future__ import annotations

from aigc.evaluate.human._app import bind, build_app, serve_forever
from aigc.evaluate.human._items import Output, Task, find_outputs, plan
from aigc.evaluate.human._report import Report, SystemScore, export_csv, report
from aigc.evaluate.human._stats import (
    bradley_terry,
    bradley_terry_bootstrap,
    cohen_kappa,
    fleiss_kappa,
    wilson_interval,
)
from aigc.evaluate.human._store import CHOICES, Vote, VoteStore
from aigc.evaluate.human._study import DEFAULT_QUESTION, Study, open_study

__all__ = [
    "CHOICES",
    "DEFAULT_QUESTION",
    "Output",
    "Report",
    "Study",
    "SystemScore",
    "Task",
    "Vote",
    "VoteStore",
    "bind",
    "bradley_terry",
    "bradley_terry_bootstrap",
    "build_app",
    "cohen_kappa",
    "export_csv",
    "find_outputs",
    "fleiss_kappa",
    "open_study",
    "plan",
    "report",
    "serve_forever",
    "wilson_interval",
]
