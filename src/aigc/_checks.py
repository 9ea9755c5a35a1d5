"""Value checks shared by requests, load options and recipes: each raises :class:`~aigc.errors.InvalidRequest`
naming the field, the value and the fix. No torch at import."""

from __future__ import annotations

import math

from aigc.errors import InvalidRequest

__all__ = ["check_int", "check_ndarray", "check_number", "check_optional_int", "is_int", "is_number"]


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_int(name: str, value: object, *, minimum: int, fix: str | None = None) -> None:
    if not is_int(value) or value < minimum:  # type: ignore[operator]
        raise InvalidRequest(name, value, f"must be an integer >= {minimum}", fix or f"pass {name}={minimum} or more")


def check_ndarray(name: str, value: object, *, fix: str) -> None:
    """Check that ``value`` is a numpy array (numpy is imported only when this runs)."""
    import numpy as np

    if not isinstance(value, np.ndarray):
        raise InvalidRequest(name, type(value).__name__, "not a numpy array", fix)


def check_optional_int(name: str, value: object, *, minimum: int) -> None:
    if value is not None:
        check_int(name, value, minimum=minimum)


def check_number(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    fix: str,
) -> None:
    """Check that ``value`` is a finite number in [low, high] (or (low, high] when ``low_open``)."""
    ok = is_number(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low  # type: ignore[operator]
    if ok and high is not None:
        ok = value <= high  # type: ignore[operator]
    if not ok:
        if low is not None and high is not None:
            where = f"in {'(' if low_open else '['}{low:g}, {high:g}]"
        elif low is not None:
            where = f"{'>' if low_open else '>='} {low:g}"
        else:
            where = f"<= {high:g}"
        raise InvalidRequest(name, value, f"must be a finite number {where}", fix)


