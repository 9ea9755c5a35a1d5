"""The report of a study: win rates with Wilson intervals, Bradley-Terry scores with bootstrap intervals (three or
more systems), rater agreement (Cohen's kappa for two raters, Fleiss' kappa for more), and the CSV export.

Win rates count decisive votes only: a system's win rate is ``wins / (wins + losses)``; ties and "both bad" are
reported beside it. Bradley-Terry is fitted on the decisive votes too. Agreement compares the layout-independent
outcome of each comparison (system a won, system b won, tie, both bad) over the comparisons two or more raters
judged.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from aigc.evaluate.human._stats import (
    bradley_terry,
    bradley_terry_bootstrap,
    cohen_kappa,
    fleiss_kappa,
    wilson_interval,
)
from aigc.evaluate.human._store import Vote, VoteStore

__all__ = ["Report", "SystemScore", "export_csv", "report"]

_OUTCOMES = ("a", "b", "tie", "both_bad")


@dataclass(frozen=True)
class SystemScore:
    """One system's results.

    Attributes:
        system: its name.
        wins, losses, ties, both_bad: counts over the votes on its comparisons.
        win_rate: ``wins / (wins + losses)`` (``nan`` without decisive votes).
        ci: the 95% Wilson interval of ``win_rate``.
        bt: Bradley-Terry log-strength (mean 0 over the systems), or ``None`` with fewer than three systems.
        bt_ci: its 95% percentile bootstrap interval, or ``None``.
    """

    system: str
    wins: int
    losses: int
    ties: int
    both_bad: int
    win_rate: float
    ci: tuple[float, float]
    bt: float | None = None
    bt_ci: tuple[float, float] | None = None


@dataclass(frozen=True)
class Report:
    """The results of one question of a study (see :func:`report`).

    Attributes:
        question: the question the raters answered.
        votes: how many votes; raters: their names; comparisons: distinct comparisons voted on.
        systems: one :class:`SystemScore` per system, best win rate first.
        pairwise: per pair of systems ``(a, b)``: a's wins, b's wins, ties, both bad.
        agreement: ``{"method": "cohen"|"fleiss", "kappa": ..., "comparisons": n}`` or ``None`` when no
            comparison has two raters.
        bt_regularised: the Bradley-Terry fit needed its prior (a system never lost, or never won).
        bootstrap: resamples and seed of the Bradley-Terry intervals.
    """

    question: str
    votes: int
    raters: list[str]
    comparisons: int
    systems: list[SystemScore]
    pairwise: dict[str, dict[str, int]] = field(default_factory=dict)
    agreement: dict[str, Any] | None = None
    bt_regularised: bool = False
    bootstrap: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (for JSON)."""
        data = asdict(self)
        for s in data["systems"]:
            for k, v in list(s.items()):
                if isinstance(v, float) and math.isnan(v):
                    s[k] = None
        return data

    def __str__(self) -> str:
        lines = [f"question: {self.question}",
                 f"votes: {self.votes} by {len(self.raters)} rater(s) ({', '.join(self.raters)}) on "
                 f"{self.comparisons} comparisons of {len(self.systems)} systems", "",
                 "win rate = wins / (wins + losses); 95% Wilson interval"]
        width = max(6, *(len(s.system) for s in self.systems))
        lines.append(f"{'system':<{width}}  wins  losses  ties  both bad  win rate  95% interval")
        for s in self.systems:
            rate = "   -" if math.isnan(s.win_rate) else f"{s.win_rate:.3f}"
            lines.append(f"{s.system:<{width}}  {s.wins:>4}  {s.losses:>6}  {s.ties:>4}  {s.both_bad:>8}  "
                         f"{rate:>8}  [{s.ci[0]:.3f}, {s.ci[1]:.3f}]")
        lines += ["", "pairwise (a vs b): a wins / b wins / ties / both bad"]
        for name, c in self.pairwise.items():
            lines.append(f"  {name}: {c['a_wins']} / {c['b_wins']} / {c['ties']} / {c['both_bad']}")
        if any(s.bt is not None for s in self.systems):
            note = " (regularised: a prior of 0.5 wins each way, as a system never lost or never won)" \
                if self.bt_regularised else ""
            lines += ["", f"Bradley-Terry log-strength (mean 0), 95% bootstrap interval over "
                          f"{self.bootstrap['resamples']} resamples (seed {self.bootstrap['seed']}){note}"]
            for s in sorted(self.systems, key=lambda s: -(s.bt or 0.0)):
                if s.bt is not None and s.bt_ci is not None:
                    lines.append(f"{s.system:<{width}}  {s.bt:+.3f}  [{s.bt_ci[0]:+.3f}, {s.bt_ci[1]:+.3f}]")
        lines.append("")
        if self.agreement is None:
            lines.append("rater agreement: no comparison was judged by two or more raters")
        else:
            name = "Cohen's" if self.agreement["method"] == "cohen" else "Fleiss'"
            kappa = self.agreement["kappa"]
            value = "undefined (every judgement was the same)" if kappa is None else f"{kappa:.3f}"
            lines.append(f"rater agreement: {name} kappa {value} over {self.agreement['comparisons']} comparisons "
                         "judged by " + ("both raters" if self.agreement["method"] == "cohen" else "2+ raters"))
        return "\n".join(lines)


def _agreement(votes: list[Vote], raters: list[str]) -> dict[str, Any] | None:
    by_task: dict[int, dict[str, str]] = defaultdict(dict)
    for v in votes:
        by_task[v.task_id][v.rater] = v.outcome
    if len(raters) == 2:
        first, second = raters
        shared = [t for t, r in by_task.items() if first in r and second in r]
        if not shared:
            return None
        kappa = cohen_kappa([by_task[t][first] for t in shared], [by_task[t][second] for t in shared])
        return {"method": "cohen", "kappa": None if math.isnan(kappa) else kappa, "comparisons": len(shared),
                "raters": [first, second]}
    rows = [[Counter(r.values())[o] for o in _OUTCOMES] for r in by_task.values() if len(r) >= 2]
    if len(raters) < 2 or not rows:
        return None
    kappa = fleiss_kappa(rows)
    return {"method": "fleiss", "kappa": None if math.isnan(kappa) else kappa, "comparisons": len(rows),
            "raters": raters}


def _report(question: str, votes: list[Vote], systems: list[str], *, resamples: int, seed: int) -> Report:
    counts = {s: Counter[str]() for s in systems}
    pairwise: dict[str, dict[str, int]] = {}
    decisive: list[tuple[int, int]] = []
    index = {s: i for i, s in enumerate(systems)}
    for v in votes:
        pair = pairwise.setdefault(f"{v.system_a} vs {v.system_b}", {"a_wins": 0, "b_wins": 0, "ties": 0,
                                                                      "both_bad": 0})
        if v.winner is None:
            key = "ties" if v.choice == "tie" else "both_bad"
            pair[key] += 1
            counts[v.system_a][key] += 1
            counts[v.system_b][key] += 1
            continue
        loser = v.system_b if v.winner == v.system_a else v.system_a
        pair["a_wins" if v.winner == v.system_a else "b_wins"] += 1
        counts[v.winner]["wins"] += 1
        counts[loser]["losses"] += 1
        decisive.append((index[v.winner], index[loser]))
    bt: list[float] | None = None
    bt_ci: list[tuple[float, float]] | None = None
    regularised = False
    if len(systems) >= 3 and decisive:
        wins = [[0] * len(systems) for _ in systems]
        for i_won, i_lost in decisive:
            wins[i_won][i_lost] += 1
        try:
            bt, regularised = bradley_terry(wins)
            bt_ci = bradley_terry_bootstrap(decisive, len(systems), resamples=resamples, seed=seed)
        except ValueError:  # some systems never compared with the others: no common scale
            bt, bt_ci = None, None
    scores = []
    for s in systems:
        c = counts[s]
        n = c["wins"] + c["losses"]
        scores.append(SystemScore(
            system=s, wins=c["wins"], losses=c["losses"], ties=c["ties"], both_bad=c["both_bad"],
            win_rate=c["wins"] / n if n else math.nan, ci=wilson_interval(c["wins"], n),
            bt=None if bt is None else bt[index[s]], bt_ci=None if bt_ci is None else bt_ci[index[s]]))
    scores.sort(key=lambda s: (-(s.win_rate if not math.isnan(s.win_rate) else -1.0), s.system))
    raters = sorted({v.rater for v in votes})
    return Report(question=question, votes=len(votes), raters=raters, comparisons=len({v.task_id for v in votes}),
                  systems=scores, pairwise=dict(sorted(pairwise.items())), agreement=_agreement(votes, raters),
                  bt_regularised=regularised, bootstrap={"resamples": resamples, "seed": seed})


def report(db: str | os.PathLike[str], *, question: str | None = None, resamples: int = 1000,
           seed: int = 0) -> list[Report]:
    """The results of a study's database: one :class:`Report` per question (or only ``question``'s).

    Args:
        db: the SQLite file written by ``aigc eval human``.
        question: report this question only (default: every question asked, in order).
        resamples: bootstrap resamples of the Bradley-Terry intervals.
        seed: seed of the bootstrap (a ``numpy.random.Generator``).

    Raises:
        InvalidRequest: no such database, or not one written by ``aigc eval human``.

    Example:
        >>> print(report("study.sqlite")[0])  # doctest: +SKIP
        question: Which follows the prompt better?
        ...
    """
    from aigc.errors import InvalidRequest

    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise InvalidRequest("resamples", resamples, "needs a positive integer", "pass e.g. 1000")
    with VoteStore(db, create=False) as store:
        votes = store.votes()
        questions = store.questions() if question is None else [question]
    reports = []
    for q in questions:
        mine = [v for v in votes if v.question == q]
        systems = sorted({v.system_a for v in mine} | {v.system_b for v in mine})
        reports.append(_report(q, mine, systems, resamples=resamples, seed=seed))
    return reports


_CSV_COLUMNS = ("vote_id", "created", "rater", "question", "prompt", "seed", "system_a", "system_b", "left_system",
                "right_system", "choice", "winner", "elapsed_ms", "file_a", "file_b")


def _cell(value: object) -> str:
    """A CSV cell; text a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, CR first) gets a
    leading ``'`` (prompts are untrusted text)."""
    text = "" if value is None else str(value)
    if text and text[0] in "=+-@\t\r" and not isinstance(value, (int, float)):
        return "'" + text
    return text


def export_csv(db: str | os.PathLike[str]) -> str:
    """Every vote of the study as CSV text (one row per vote, a header row first).

    Example:
        >>> print(export_csv("study.sqlite").splitlines()[0])  # doctest: +SKIP
        vote_id,created,rater,question,prompt,seed,system_a,system_b,left_system,right_system,choice,...
    """
    with VoteStore(db, create=False) as store:
        votes = store.votes()
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(_CSV_COLUMNS)
    for v in votes:
        writer.writerow([_cell(x) for x in (v.id, v.created, v.rater, v.question, v.prompt, v.seed, v.system_a,
                                            v.system_b, v.left_system, v.right_system, v.choice, v.winner,
                                            v.elapsed_ms, v.path_a, v.path_b)])
    return buf.getvalue()


