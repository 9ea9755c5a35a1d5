"""The backend registry: a mapping from (modality, name) to a Generator class, filled from entry points.

Backends are declared under the entry-point group ``aigc.backends`` with the name ``"<modality>.<name>"``
and the value ``"package.module:GeneratorClass"``. aigc's own backends are declared there exactly the way a
plugin declares its own. Nothing is imported until a backend is used; a plugin that fails to import raises
:class:`~aigc.errors.PluginError` naming it when it is used, and never breaks the others.
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from aigc._types import MODALITIES, Modality, check_modality
from aigc.errors import BackendNotFound, PluginError

if TYPE_CHECKING:
    from aigc._generator import Generator

__all__ = ["ENTRY_POINT_GROUP", "BackendInfo", "backends", "get_backend", "register_backend"]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "aigc.backends"

#: The backend used for a hub id (a model that is not a local directory) when none is named.
DEFAULT_BACKENDS: dict[Modality, str] = {
    "text": "transformers",
    "image": "diffusers",
    "audio": "transformers",
    "video": "diffusers",
}

Status = Literal["available", "loaded", "error"]


@dataclass(frozen=True)
class BackendInfo:
    """One registered backend, as ``aigc.backends()`` lists it.

    Attributes:
        modality, name: what users pass to ``aigc.load(modality, ..., backend=name)``.
        target: ``"module:Class"`` the backend is imported from.
        source: the distribution that declared it (``"aigc"`` for built-ins), or ``"runtime"``.
        status: ``"available"`` (not imported yet), ``"loaded"``, or ``"error"`` (see ``error``).
        error: why the backend cannot be used, when ``status == "error"``.
    """

    modality: str
    name: str
    target: str
    source: str
    status: Status
    error: str | None = None

    @property
    def builtin(self) -> bool:
        return self.source == "aigc"


class _Entry:
    def __init__(self, modality: str, name: str, target: str, source: str, loader: Any) -> None:
        self.modality = modality
        self.name = name
        self.target = target
        self.source = source
        self.loader = loader  # an EntryPoint, or None once cls is set
        self.cls: type[Generator[Any, Any]] | None = None
        self.error: PluginError | None = None

    @property
    def key(self) -> str:
        return f"{self.modality}.{self.name}"

    def info(self) -> BackendInfo:
        status: Status = "error" if self.error else ("loaded" if self.cls is not None else "available")
        return BackendInfo(self.modality, self.name, self.target, self.source, status,
                           str(self.error) if self.error else None)


class _Registry:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._runtime: dict[tuple[str, str], _Entry] = {}
        self._scanned = False

    # -- discovery ---------------------------------------------------------------------------
    def scan(self) -> None:
        """(Re)read the entry points; runtime registrations are kept."""
        found: dict[tuple[str, str], _Entry] = {}
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else "unknown"
            modality, _, name = ep.name.partition(".")
            entry = _Entry(modality, name, ep.value, dist, ep)
            key = (modality, name)
            if modality not in MODALITIES or not name:
                entry.error = PluginError(f"{ep.name} ({dist})", f"entry-point name must be '<modality>.<name>' "
                                          f"with a modality in {MODALITIES}")
                key = (modality, name or ep.name)
            if key in found and found[key].target != ep.value:
                other = found[key]
                if other.source == "aigc" or entry.source == "aigc":
                    # A plugin may not shadow a built-in backend.
                    plugin = entry if other.source == "aigc" else other
                    logger.warning("ignoring plugin %s (%s): the name is aigc's own", plugin.key, plugin.source)
                    if plugin is other:
                        found[key] = entry
                    continue
                entry.error = PluginError(f"{ep.name}", f"declared twice, by {other.source} ({other.target}) and "
                                          f"{dist} ({ep.value}); uninstall one of them")
            elif key in found:
                continue  # the same distribution seen twice on sys.path
            found[key] = entry
        with self._lock:
            old = self._entries
            for key, entry in found.items():  # keep classes already imported
                if key in old and old[key].target == entry.target and old[key].cls is not None:
                    found[key] = old[key]
            self._entries = found
            self._scanned = True

    def _all(self) -> dict[tuple[str, str], _Entry]:
        with self._lock:
            if not self._scanned:
                self.scan()
            return {**self._entries, **self._runtime}

    def infos(self, modality: str | None) -> list[BackendInfo]:
        entries = self._all().values()
        return sorted((e.info() for e in entries if modality is None or e.modality == modality),
                      key=lambda i: (i.modality, i.source != "aigc", i.name))

    # -- registration ------------------------------------------------------------------------
    def register(self, cls: type[Generator[Any, Any]]) -> None:
        from aigc._generator import Generator

        if not (isinstance(cls, type) and issubclass(cls, Generator)):
            raise PluginError(repr(cls), "a backend must be a subclass of aigc.Generator")
        modality = check_modality(getattr(cls, "modality", None))
        name = getattr(cls, "backend_name", None)
        if not isinstance(name, str) or not name.isidentifier():
            raise PluginError(cls.__qualname__, "set backend_name to an identifier, e.g. backend_name = 'markov'")
        key = (modality, name)
        with self._lock:
            existing = self._all().get(key)
            if existing is not None:
                raise PluginError(f"{modality}.{name}", f"already registered by {existing.source} "
                                  f"({existing.target}); choose another backend_name")
            entry = _Entry(modality, name, f"{cls.__module__}:{cls.__qualname__}", "runtime", None)
            entry.cls = cls
            self._runtime[key] = entry

    def unregister(self, modality: str, name: str) -> None:
        with self._lock:
            if self._runtime.pop((modality, name), None) is None:
                raise BackendNotFound(f"no runtime-registered backend {modality}.{name}")

    # -- lookup ------------------------------------------------------------------------------
    def get(self, modality: str, name: str) -> type[Generator[Any, Any]]:
        entry = self._all().get((modality, name))
        if entry is None:  # a plugin installed since the last scan (e.g. %pip install in a notebook)
            self.scan()
            entry = self._all().get((modality, name))
        if entry is None:
            names = sorted(n for (m, n) in self._all() if m == modality)
            raise BackendNotFound(
                f"no {modality} backend named {name!r}. Fix: use one of {names or 'none installed'}, or install "
                f"the plugin that provides it (aigc.backends() lists what is registered)"
            )
        return self._import(entry)

    def _import(self, entry: _Entry) -> type[Generator[Any, Any]]:
        with self._lock:
            if entry.error is not None:
                raise entry.error
            if entry.cls is not None:
                return entry.cls
            try:
                obj = entry.loader.load()
            except ImportError as e:
                missing = getattr(e, "name", None)
                hint = f" (missing module {missing!r})" if missing else ""
                entry.error = PluginError(f"{entry.key} ({entry.source})",
                                          f"failed to import {entry.target}{hint}: {e}")
            except Exception as e:  # a plugin's import-time crash must not escape as something else
                entry.error = PluginError(f"{entry.key} ({entry.source})",
                                          f"failed to import {entry.target}: {type(e).__name__}: {e}")
            else:
                entry.error = self._check_class(entry, obj)
                if entry.error is None:
                    entry.cls = obj
            if entry.error is not None:
                raise entry.error
            assert entry.cls is not None
            return entry.cls

    @staticmethod
    def _check_class(entry: _Entry, obj: Any) -> PluginError | None:
        from aigc._generator import Generator

        where = f"{entry.key} ({entry.source})"
        if not (isinstance(obj, type) and issubclass(obj, Generator)):
            return PluginError(where, f"{entry.target} is not a subclass of aigc.Generator")
        if getattr(obj, "modality", None) != entry.modality or getattr(obj, "backend_name", None) != entry.name:
            return PluginError(where, f"{entry.target} declares {getattr(obj, 'modality', None)}."
                               f"{getattr(obj, 'backend_name', None)}, but its entry point is named {entry.key}")
        return None

    def detect(self, modality: str, path: Path) -> type[Generator[Any, Any]] | None:
        """The first backend of ``modality`` whose ``detect(path)`` is true; built-ins are asked first."""
        for info in self.infos(modality):
            if info.status == "error":
                continue
            try:
                cls = self.get(modality, info.name)
                if cls.detect(path):
                    return cls
            except PluginError as e:
                logger.warning("skipping backend %s.%s while detecting %s: %s", modality, info.name, path, e)
        return None


_registry = _Registry()


def backends(modality: Modality | None = None) -> list[BackendInfo]:
    """List the registered backends, built-in and plugins, without importing them.

    Args:
        modality: only this modality's backends.

    Example:
        >>> import aigc
        >>> [(b.modality, b.name) for b in aigc.backends("text")][:1]
        [('text', 'transformers')]
    """
    if modality is not None:
        check_modality(modality)
    return _registry.infos(modality)


def register_backend(cls: type[Generator[Any, Any]]) -> type[Generator[Any, Any]]:
    """Register a Generator subclass as a backend at run time (usable as a class decorator).

    Plugins normally declare an entry point instead (see the plugins guide); this is for code that
    defines a backend inline. Registering a ``(modality, backend_name)`` that exists raises
    :class:`~aigc.errors.PluginError`.

    Example:
        >>> @aigc.register_backend  # doctest: +SKIP
        ... class Echo(aigc.Generator[aigc.TextRequest, aigc.TextResult]):
        ...     modality = "text"
        ...     backend_name = "echo"
        ...     ...
    """
    _registry.register(cls)
    return cls


def get_backend(modality: Modality, name: str) -> type[Generator[Any, Any]]:
    """Import and return a backend's Generator class."""
    return _registry.get(check_modality(modality), name)
