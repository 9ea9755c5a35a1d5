"""Quiet by default: the libraries aigc drives (transformers, diffusers, huggingface_hub, accelerate) keep their
progress bars and warnings to themselves inside aigc's calls, unless ``aigc.set_verbosity("info")`` (the CLI's
``-v``) asks for them. aigc's own progress bar and log messages are unaffected.

Outside aigc's calls the libraries behave as their defaults and the user's settings say: :func:`quiet` sets their
log levels, progress bars and warning filters on entry and restores them on exit (the outermost call of nested or
concurrent ones restores). A library imported during the call was imported quiet (through its environment
variables, which it reads at import) and is set back to its default afterwards. No torch at import.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any, Literal

from aigc.errors import InvalidRequest

__all__ = ["LEVELS", "quiet", "set_verbosity", "verbosity"]

Level = Literal["debug", "info", "warning", "error"]
LEVELS: tuple[Level, ...] = ("debug", "info", "warning", "error")
_LIBRARIES = ("transformers", "diffusers", "huggingface_hub", "accelerate")
# Read by the libraries when they are imported: what a library first imported inside an aigc call sees.
_QUIET_ENV = {"TRANSFORMERS_VERBOSITY": "error", "DIFFUSERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
              "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
_WARNINGS_FROM = r"(transformers|diffusers|huggingface_hub|accelerate)(\..*)?$"

_level: Level = "warning"
_lock = threading.RLock()
_depth = 0
_saved: dict[str, Any] = {}


def set_verbosity(level: Level) -> None:
    """How much the libraries aigc drives may say inside aigc's calls.

    ``"warning"`` (the default) and ``"error"`` keep their progress bars and warnings quiet; ``"info"`` and
    ``"debug"`` let them through (and set aigc's own logger to that level). The CLI's ``-v`` is ``"info"``.

    Example:
        >>> import aigc
        >>> aigc.set_verbosity("info")
        >>> aigc.set_verbosity("warning")
    """
    global _level
    if level not in LEVELS:
        raise InvalidRequest("level", level, "unknown verbosity", f"pass one of {', '.join(LEVELS)}")
    _level = level
    logging.getLogger("aigc").setLevel(level.upper())


def verbosity() -> Level:
    """The level :func:`set_verbosity` set."""
    return _level


def _progress(name: str, module: Any, enable: bool | None = None) -> bool | None:
    """A library's progress-bar switch: read it (``enable=None``) or set it; ``None`` when it has none."""
    try:
        if name == "huggingface_hub":
            utils = module.utils
            state = not utils.are_progress_bars_disabled()
            if enable is not None:
                (utils.enable_progress_bars if enable else utils.disable_progress_bars)()
            return state
        if name in ("transformers", "diffusers"):
            lib_logging = module.utils.logging
            state = bool(lib_logging.is_progress_bar_enabled())
            if enable is not None:
                (lib_logging.enable_progress_bar if enable else lib_logging.disable_progress_bar)()
            return state
    except AttributeError:
        return None
    return None


def _enter() -> dict[str, Any]:
    saved: dict[str, Any] = {"env": {k: os.environ.get(k) for k in _QUIET_ENV}, "levels": {}, "progress": {},
                             "imported": {n for n in _LIBRARIES if n in sys.modules}}
    os.environ.update(_QUIET_ENV)
    for name in saved["imported"]:
        logger = logging.getLogger(name)
        saved["levels"][name] = logger.level
        logger.setLevel(logging.ERROR)
        saved["progress"][name] = _progress(name, sys.modules[name], enable=False)
    warnings.filterwarnings("ignore", category=UserWarning, module=_WARNINGS_FROM)
    warnings.filterwarnings("ignore", category=FutureWarning, module=_WARNINGS_FROM)
    saved["filters"] = warnings.filters[:2]
    return saved


def _exit(saved: dict[str, Any]) -> None:
    for key, value in saved["env"].items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    for name in _LIBRARIES:
        module = sys.modules.get(name)
        if module is None:
            continue
        logging.getLogger(name).setLevel(saved["levels"].get(name, logging.WARNING))  # new ones: their default
        before = saved["progress"].get(name, True)
        if before is not None:
            _progress(name, module, enable=before)
    filters: list[Any] = warnings.filters  # type: ignore[assignment]  # a list at run time
    for entry in saved["filters"]:
        with contextlib.suppress(ValueError):
            filters.remove(entry)
    warnings._filters_mutated()  # type: ignore[attr-defined]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Run the block with the libraries quiet (unless :func:`set_verbosity` asked for more).

    Example:
        >>> with quiet():
        ...     pass
    """
    global _depth, _saved
    if _level in ("debug", "info"):
        yield
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            _saved = _enter()
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _exit(_saved)
