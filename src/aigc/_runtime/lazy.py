"""Lazy public names for a package (PEP 562): ``import aigc.train`` stays light, and a name's submodule (which
may import torch) is imported the first time the name is used.

Example:
    >>> __getattr__, __dir__ = lazy_attributes(__name__, {"train_gan": "gan"}, ["train_gan"])  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, exports: Mapping[str, str], names: Sequence[str],
                    ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``: ``exports`` maps each public name to the submodule that
    defines it; a name is imported on first access, then kept in the package's namespace; ``dir()`` lists
    ``names`` (the package's ``__all__``)."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:  # noqa: N807 (the module hook's own name)
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted(names)

    return __getattr__, __dir__
