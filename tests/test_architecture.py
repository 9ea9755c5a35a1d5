"""The import rules docs/concepts/architecture.md states, checked on the source: a test keeps the page true.

Imports are read from the syntax tree, wherever they are (module level, functions, ``try``/``except``); imports
under ``if TYPE_CHECKING:`` are left out, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "aigc"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path) -> set[str]:
    """The aigc modules a file imports (``from aigc.x import y`` gives ``aigc.x`` and, if it is one, ``aigc.x.y``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node):
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("aigc"))
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("aigc"):
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names if _exists(f"{node.module}.{a.name}"))
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    visit([c for c in children if isinstance(c, ast.stmt)])
                    for handler in children:
                        if isinstance(handler, ast.ExceptHandler):
                            visit(handler.body)

    visit(tree.body)
    return found


def _exists(module: str) -> bool:
    base = SRC.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


FILES = sorted(PACKAGE.rglob("*.py"))


def _backend_of(module: str) -> str | None:
    """``aigc._backends.audio_transformers._musicgen`` -> ``audio_transformers``; shared modules (``_pixels``) and
    the package itself -> ``None``."""
    parts = module.split(".")
    if len(parts) < 3 or parts[:2] != ["aigc", "_backends"] or parts[2].startswith("_"):
        return None
    return parts[2]


def test_no_backend_imports_another_backend() -> None:
    bad = []
    for path in FILES:
        module = _module_name(path)
        if not module.startswith("aigc._backends."):
            continue
        own = _backend_of(module)
        for target in _imports(path):
            other = _backend_of(target)
            if other is not None and other != own:
                bad.append(f"{module} imports {target}")
    assert not bad, "backends import each other (move the shared piece to a _-prefixed module):\n" + "\n".join(bad)


def test_nothing_outside_the_backends_imports_them() -> None:
    """Backends are plugins like any other: the core finds them through entry points, never by import."""
    bad = [f"{_module_name(p)} imports {t}" for p in FILES if not _module_name(p).startswith("aigc._backends")
           for t in _imports(p) if t.startswith("aigc._backends")]
    assert not bad, "\n".join(bad)


# layer -> aigc packages it must not import (at all, not even inside functions)
LOWER_LAYERS = {
    "aigc.errors": ("aigc.",),
    "aigc._types": ("aigc._generator", "aigc._api", "aigc._runtime", "aigc.sampling", "aigc._media", "aigc.formats"),
    "aigc._inputs": ("aigc._generator", "aigc._api", "aigc._runtime", "aigc.sampling", "aigc._media", "aigc.formats"),
    "aigc._options": ("aigc._generator", "aigc._api", "aigc._runtime", "aigc.sampling", "aigc._media"),
    "aigc._runtime": ("aigc._generator", "aigc._api", "aigc._registry", "aigc.sampling", "aigc.formats",
                      "aigc.train", "aigc.evaluate", "aigc.serve", "aigc.ray"),
    "aigc.sampling": ("aigc._generator", "aigc._api", "aigc._registry", "aigc._media", "aigc.formats",
                      "aigc.train", "aigc.evaluate", "aigc.serve", "aigc.ray"),
    "aigc.formats": ("aigc._generator", "aigc._api", "aigc._registry", "aigc._media", "aigc.sampling",
                     "aigc.train", "aigc.evaluate", "aigc.serve", "aigc.ray"),
    "aigc._media": ("aigc._generator", "aigc._api", "aigc._registry", "aigc.sampling", "aigc.formats",
                    "aigc.train", "aigc.evaluate", "aigc.serve", "aigc.ray"),
    "aigc.models": ("aigc._generator", "aigc._api", "aigc._registry", "aigc._media", "aigc.formats",
                    "aigc.train", "aigc.evaluate", "aigc.serve", "aigc.ray"),
    "aigc._record": ("aigc._generator", "aigc._api", "aigc._registry", "aigc._runtime", "aigc.sampling",
                     "aigc.formats", "aigc.provenance", "aigc.watermark", "aigc.train", "aigc.evaluate", "aigc.serve",
                     "aigc.ray"),
    "aigc.watermark": ("aigc._generator", "aigc._api", "aigc._registry", "aigc._media", "aigc.formats",
                       "aigc.provenance", "aigc.train", "aigc.evaluate", "aigc.serve",
                     "aigc.ray"),
    "aigc.provenance": ("aigc._generator", "aigc._api", "aigc._registry", "aigc.formats", "aigc.train",
                        "aigc.evaluate", "aigc.serve",
                     "aigc.ray"),
}


@pytest.mark.parametrize("layer", sorted(LOWER_LAYERS))
def test_lower_layers_never_import_higher_ones(layer: str) -> None:
    forbidden = LOWER_LAYERS[layer]
    bad = []
    for path in FILES:
        module = _module_name(path)
        if module != layer and not module.startswith(layer + "."):
            continue
        for target in _imports(path):
            if target == layer or target.startswith(layer + "."):
                continue
            if any(target == f.rstrip(".") or target.startswith(f if f.endswith(".") else f + ".") or target == f
                   for f in forbidden):
                bad.append(f"{module} imports {target}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles() -> None:
    """No module imports, directly or through others, one that imports it -- counting imports inside functions too
    (a package and its own submodules excepted). The generator layer uses the model cache, never the reverse; the
    record reader sits above the savers, which sit above the sidecar module."""
    graph = {_module_name(p): {t for t in _imports(p) if _exists(t)} for p in FILES}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt == node or nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue  # a module itself, a package and its own submodules
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)
