"""Argument checks shared by the training recipes: each raises :class:`~aigc.errors.InvalidRequest` naming the
argument, its value and the fix, before anything is read, loaded or trained."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aigc.errors import InvalidRequest

if TYPE_CHECKING:
    import torch

__all__ = ["MAX_SEED", "check_bool", "check_choice", "check_export_dtype", "check_float", "check_int", "check_out",
           "check_seed", "export_torch_dtype", "is_nonempty_dir", "jsonl_rows"]

MAX_SEED = 2**63 - 1


def check_int(field: str, value: Any, *, minimum: int, fix: str, allow_none: bool = False) -> None:
    """``value`` is an int (not a bool) >= ``minimum`` (or None when ``allow_none``).

    Example:
        >>> check_int("steps", 0, minimum=1, fix="pass steps=100")
        Traceback (most recent call last):
        aigc.errors.InvalidRequest: steps=0: must be >= 1. Fix: pass steps=100
    """
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRequest(field, value, "must be an int", fix)
    if value < minimum:
        raise InvalidRequest(field, value, f"must be >= {minimum}", fix)


def check_float(field: str, value: Any, *, low: float, high: float = math.inf, low_open: bool = False,
                fix: str, allow_none: bool = False) -> None:
    """``value`` is a real number in ``[low, high]`` (``(low, high]`` when ``low_open``)."""
    if value is None and allow_none:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise InvalidRequest(field, value, "must be a finite number", fix)
    if value < low or (low_open and value == low) or value > high:
        lo = f"> {low}" if low_open else f">= {low}"
        hi = "" if high == math.inf else f" and <= {high}"
        raise InvalidRequest(field, value, f"must be {lo}{hi}", fix)


def check_bool(field: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise InvalidRequest(field, value, "must be True or False", f"pass {field}=True or {field}=False")


def check_export_dtype(value: Any) -> None:
    """The recipes' ``export_dtype``: ``"float32"`` or ``"float16"``."""
    if value not in ("float32", "float16"):
        raise InvalidRequest("export_dtype", value, "unknown dtype", "pass 'float32' or 'float16'")


def export_torch_dtype(value: str) -> torch.dtype:
    """The torch dtype of a checked ``export_dtype``."""
    import torch

    return torch.float16 if value == "float16" else torch.float32


def check_choice(field: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        names = ", ".join(repr(c) for c in choices)
        raise InvalidRequest(field, value, f"unknown {field}", f"pass one of {names}")


def check_seed(seed: Any) -> int:
    """A seed for the run: the int given, or a fresh one from the OS for ``None`` (never the global RNG)."""
    if seed is None:
        from aigc._seeds import fresh_seed

        return fresh_seed()
    check_int("seed", seed, minimum=0, fix="pass seed=0 (any int in [0, 2**63))")
    if seed > MAX_SEED:
        raise InvalidRequest("seed", seed, "must be < 2**63", "pass a smaller seed")
    return int(seed)


def is_nonempty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def check_out(out: Any, *, resume: Any, overwrite: Any) -> Path:
    """The output directory, checked against ``resume`` and ``overwrite`` (nothing is written yet)."""
    if not isinstance(out, (str, os.PathLike)) or not os.fspath(out):
        raise InvalidRequest("out", out, "must be a directory path", "pass out='runs/my-model'")
    check_bool("overwrite", overwrite)
    if not isinstance(resume, (bool, str, os.PathLike)):
        raise InvalidRequest("resume", resume, "must be False, True or a checkpoint directory",
                             "pass resume=True to continue the run in out")
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(out))))
    if path.exists() and not path.is_dir():
        raise InvalidRequest("out", os.fspath(out), "exists and is a file", "pass a directory path")
    if resume is not False and overwrite:
        raise InvalidRequest("overwrite", overwrite, "resume continues the run in out; overwrite starts it again",
                             "pass resume or overwrite=True, not both")
    if resume is False and not overwrite and is_nonempty_dir(path):
        raise InvalidRequest("out", os.fspath(out), "the directory exists and is not empty",
                             "pass a new directory, resume=True to continue the run written there, "
                             "or overwrite=True to start again")
    return path


def jsonl_rows(path: Path, fix: str) -> Iterator[tuple[int, str, Any]]:
    """``(line number, where, value)`` for each non-blank line of the JSON Lines file ``path``, ``where`` being
    ``"NAME:LINE"`` for messages; a line that is not JSON raises InvalidRequest naming it, with ``fix``."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path.name}:{lineno}"
            try:
                value = json.loads(line)
            except ValueError as e:
                raise InvalidRequest("data", where, f"line {lineno} is not valid JSON ({e})", fix) from None
            yield lineno, where, value
