"""Row keys, row seeds and output file names: the pure part of batch generation (no Ray, no torch).

A row's seed is a function of the run's seed and the row's key, never of where the row sits in a batch or a block:
Ray Data splits a dataset into blocks and batches as it sees fit, runs them on any actor in any order, and does not
keep row order unless asked (ray-project/ray#50890). Ray's own batch-inference examples seed
``range(len(batch))`` in every batch, which gives every batch the same seeds.

- an integer key ``k >= 0`` (an id column of integers, or the row's index in the input file) gives ``seed + k``:
  row ``k`` of a file is what ``aigc.generate(prompt_k, seed=seed + k)`` makes, and what sample ``k`` of
  ``aigc.generate(all_prompts, seed=seed, deterministic=True)`` is;
- a string key gives 63 bits of ``sha256("aigc.ray/1:<seed>:<key>")``;
- a row's own ``seed`` column, where set, wins.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from aigc.errors import InvalidRequest

__all__ = ["FORMATS", "MAX_SEED", "check_format", "file_name", "row_seed"]

MAX_SEED = 2**63 - 1  # aigc's seeds are integers in [0, 2**63 - 1]

#: Output formats per modality (file suffixes without the dot); the first is the default.
FORMATS: Mapping[str, tuple[str, ...]] = {
    "text": ("json", "txt"),
    "image": ("png", "webp", "jpg", "jpeg"),
    "audio": ("wav", "flac", "ogg"),
    "video": ("mp4", "gif", "webp"),
}

# A key that can name a file as it is: no separators, no leading dot, no spaces, at most 200 characters.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_key(key: object, column: str) -> int | str:
    """A row key as it may be used: an integer >= 0 or a non-empty string.

    Raises:
        InvalidRequest: ``None``, a negative or non-integer number, an empty string, anything else.
    """
    if _is_int(key) and key >= 0:  # type: ignore[operator]
        return int(key)  # type: ignore[call-overload, no-any-return]
    if isinstance(key, str) and key:
        return key
    raise InvalidRequest(column, key, "a row key must be an integer >= 0 or a non-empty string",
                         f"give every row a unique {column!r}")


def row_seed(seed: int, key: int | str) -> int:
    """The seed of the row with ``key`` in a run with ``seed``.

    Raises:
        InvalidRequest: ``seed + key`` is above 2**63 - 1.

    Example:
        >>> row_seed(7, 3)
        10
        >>> row_seed(0, "sku-0042") == row_seed(0, "sku-0042") != row_seed(1, "sku-0042")
        True
    """
    if _is_int(key):
        value = seed + int(key)
        if value > MAX_SEED:
            raise InvalidRequest("seed", value, f"seed {seed} + row key {key} is above 2**63 - 1",
                                 "pass a smaller seed")
        return value
    digest = hashlib.sha256(f"aigc.ray/1:{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # 63 bits


def explicit_seed(value: Any) -> int | None:
    """A row's own ``seed`` column value, checked (``None``: not set)."""
    if value is None:
        return None
    if not _is_int(value) or not 0 <= value <= MAX_SEED:
        raise InvalidRequest("seed", value, "a seed must be an integer in [0, 2**63 - 1]",
                             "fix the row's seed, or leave it empty to derive it from the row's key")
    return int(value)


def file_name(key: int | str, fmt: str, column: str) -> str:
    """``<key>.<fmt>``: the row's output file in the output folder.

    Raises:
        InvalidRequest: a string key that cannot name a file as it is.

    Example:
        >>> file_name(12, "png", "id")
        '12.png'
    """
    name = str(key)
    if not _SAFE_NAME.fullmatch(name):
        raise InvalidRequest(column, key, "names the row's output file, which allows letters, digits, '.', '_' and "
                             "'-' (200 at most, not starting with '.')", f"use such {column!r} values")
    return f"{name}.{fmt}"


def check_format(modality: str, fmt: str | None) -> str:
    """The output format (a suffix without the dot), the modality's default when ``None``.

    Raises:
        InvalidRequest: a format the modality's results cannot be saved as.
        BackendUnavailable: ``mp4`` without PyAV installed.
    """
    choices = FORMATS[modality]
    if fmt is None:
        fmt = choices[0]
    if not isinstance(fmt, str) or fmt.lower().lstrip(".") not in choices:
        raise InvalidRequest("format", fmt, f"{modality} results are saved as {', '.join(choices)}",
                             f"pass format={choices[0]!r}")
    fmt = fmt.lower().lstrip(".")
    if fmt == "mp4":
        import importlib.util

        from aigc.errors import BackendUnavailable

        if importlib.util.find_spec("av") is None:
            raise BackendUnavailable("writing MP4 needs PyAV (or pass format='gif')", extra="video")
    return fmt
