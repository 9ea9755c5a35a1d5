"""Atomic writes: a file (or a folder) either appears whole under its final name, or not at all.

A file is written to a temporary sibling ``.NAME.<hex>.part.EXT`` and moved over ``NAME`` in one
``os.replace``; a folder is built as ``.NAME.<hex>.part`` and swapped with the old folder in one
``renameat2(RENAME_EXCHANGE)`` (Linux; ``renamex_np(RENAME_SWAP)`` on macOS). A reader sees the old version or
the new one, never a mix, even if the writing process is killed. Temporary siblings left by a killed process are
removed by the next save into the same folder once they are :data:`STALE_AFTER_S` old (younger ones may belong to
a save still running in another process).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import re
import secrets
import shutil
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "STALE_AFTER_S",
    "atomic_directory",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_save_path",
    "commit",
    "numbered_paths",
    "sweep_stale_parts",
    "temporary_sibling",
]

logger = logging.getLogger(__name__)

#: Age (seconds since last modification) after which a temporary ``.part`` sibling counts as abandoned.
STALE_AFTER_S = 600.0
_SWEEP_EVERY_S = 60.0  # a folder is scanned at most this often per process (saving 1,000 samples scans once)
_PART_RE = re.compile(r"\..+\.[0-9a-f]{12}\.part(\.[^./\\]*)?")
_swept: dict[str, float] = {}
_swept_lock = threading.Lock()


_NAME_MAX = 255  # bytes in one file name, on every file system aigc writes to


def _part_name(final: Path, ext: str) -> Path:
    """``.NAME.<hex>.part.EXT``, with NAME shortened so that the whole name fits :data:`_NAME_MAX` bytes."""
    room = _NAME_MAX - len(os.fsencode(f"..{'0' * 12}.part{ext}"))
    name = os.fsencode(final.name)[:room].decode("utf-8", errors="ignore")
    return final.parent / f".{name}.{secrets.token_hex(6)}.part{ext}"


def check_save_path(path: str | os.PathLike[str], *, folder: bool = False) -> Path:
    """Check, before anything is written, that ``path`` can name a new file (or, with ``folder``, a folder).

    Raises:
        TypeError: ``path`` is not a ``str`` or ``os.PathLike``.
        InvalidRequest: it names no file (``""``, ``"."``, ``".."``), holds a NUL byte, has a component longer
            than 255 bytes, is an existing folder (where a file is wanted), or lies below an existing file.
    """
    from aigc.errors import InvalidRequest

    name = os.fspath(path)  # TypeError for what is not a path
    if not isinstance(name, str):
        raise InvalidRequest("path", name, "must be a str or pathlib.Path", "pass a file name such as 'out.png'")
    p = Path(name)
    if p.name in ("", ".", ".."):
        raise InvalidRequest("path", name, "names no file", "pass a file name such as 'out.png'")
    if "\0" in name:
        raise InvalidRequest("path", name, "holds a NUL character", "pass a file name without it")
    for part in p.parts:
        if len(os.fsencode(part)) > _NAME_MAX:
            raise InvalidRequest("path", name, f"a file or folder name is at most {_NAME_MAX} bytes",
                                 "pass a shorter name")
    if p.is_dir() and not folder:
        raise InvalidRequest("path", name, "is a folder", "pass a file name inside it, e.g. 'folder/out.png'")
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise InvalidRequest("path", name, f"{parent} is a file, not a folder", "pass a path inside a folder")
    return p


def sweep_stale_parts(folder: Path, *, force: bool = False) -> list[Path]:
    """Remove temporary ``.NAME.<hex>.part[.EXT]`` files and folders in ``folder`` older than
    :data:`STALE_AFTER_S`; return what was removed. Without ``force``, a folder is scanned at most once a minute.

    Example:
        >>> sweep_stale_parts(Path("out"))  # doctest: +SKIP
        [PosixPath('out/.boots.png.0a1b2c3d4e5f.part.png')]
    """
    key = os.path.abspath(folder)
    now = time.monotonic()
    with _swept_lock:
        if not force and now - _swept.get(key, -_SWEEP_EVERY_S) < _SWEEP_EVERY_S:
            return []
        if len(_swept) >= 4096:  # a process saving into many folders: forget them rather than grow
            _swept.clear()
        _swept[key] = now
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    cutoff = time.time() - STALE_AFTER_S
    for entry in entries:
        if not _PART_RE.fullmatch(entry.name):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime > cutoff:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError as e:  # another process swept it first, or it is not ours to remove
            logger.debug("could not remove %s: %s", entry.path, e)
            continue
        logger.info("removed the abandoned temporary %s", entry.path)
        removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def temporary_sibling(path: str | os.PathLike[str], *, suffix: str | None = None) -> Iterator[Path]:
    """Yield an empty temporary file beside ``path`` (keeping its suffix, or ``suffix``); remove it on exit
    unless it was moved away (:func:`commit`). Abandoned temporaries in the folder are swept first.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_parts(final.parent)
    # The temporary name ends with the real suffix (encoders choose their format from it). It is created
    # with mode 0o666 filtered by the umask, like any file the user writes (mkstemp would make it 0o600).
    ext = suffix if suffix is not None else final.suffix
    while True:
        tmp = _part_name(final, ext)
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _fsync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def commit(tmp: Path, final: Path) -> None:
    """Flush ``tmp`` to disk and move it over ``final`` in one step."""
    _fsync(tmp)
    os.replace(tmp, final)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it over ``path`` in one step.

    The temporary file keeps ``path``'s suffix (or ``suffix``), so encoders that pick a format
    from the file name still work. If the block raises, the temporary file is removed and
    ``path`` is left as it was (absent, or its previous content).

    Example:
        >>> with atomic_path("out.png") as tmp:  # doctest: +SKIP
        ...     image.save(tmp)
    """
    with temporary_sibling(path, suffix=suffix) as tmp:
        yield tmp
        commit(tmp, Path(path))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically and return the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


# ------------------------------------------------------------------------------------------------- folders
def _libc_swap() -> tuple[object, int, bool] | None:
    """(function, flag, takes dirfds) for an atomic exchange of two paths, or ``None`` where there is none."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    if sys.platform.startswith("linux") and hasattr(libc, "renameat2"):
        fn = libc.renameat2
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        return fn, 2, True  # RENAME_EXCHANGE
    if sys.platform == "darwin" and hasattr(libc, "renamex_np"):
        fn = libc.renamex_np
        fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
        return fn, 2, False  # RENAME_SWAP
    return None


_SWAP = _libc_swap()
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step; ``False`` when this system or file system cannot."""
    if _SWAP is None:
        return False
    fn, flag, at = _SWAP
    args = (_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), flag) if at else (os.fsencode(a), os.fsencode(b),
                                                                                       flag)
    if fn(*args) == 0:  # type: ignore[operator]
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), os.fspath(b))


def _new_directory(final: Path) -> Path:
    while True:
        tmp = _part_name(final, "")
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:
            continue


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it replaces ``path`` (a folder or nothing) in
    one step, and the old folder's contents are deleted. If the block raises, ``path`` is left as it was.

    Where the system cannot exchange two folders atomically (not Linux or macOS, or a file system without
    ``RENAME_EXCHANGE``), the old folder is moved aside first, so a reader may briefly find no folder at all --
    but never a mix of old and new files.

    Example:
        >>> with atomic_directory("clip") as tmp:  # doctest: +SKIP
        ...     (tmp / "frame-00000.png").write_bytes(png)
    """
    final = Path(path)
    if final.is_symlink():
        final = final.resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_parts(final.parent)
    tmp = _new_directory(final)
    try:
        yield tmp
        for entry in os.scandir(tmp):  # the new files reach the disk before the folder changes hands
            if entry.is_file(follow_symlinks=False):
                _fsync(Path(entry.path))
        if final.is_dir():
            os.chmod(tmp, stat.S_IMODE(final.stat().st_mode))
            if not _exchange(tmp, final):
                aside = _part_name(final, "")
                os.rename(final, aside)
                try:
                    os.rename(tmp, final)
                except OSError:
                    os.rename(aside, final)
                    raise
                tmp = aside
        else:
            os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the failed new folder, or the old one after the swap
    with contextlib.suppress(OSError):  # make the rename durable where the system allows it
        fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def numbered_paths(path: str | os.PathLike[str], count: int) -> list[Path]:
    """The file names for ``count`` samples: ``path`` itself for one, ``stem-0.ext ...`` for more.

    Example:
        >>> [p.name for p in numbered_paths("boots.png", 2)]
        ['boots-0.png', 'boots-1.png']
    """
    p = Path(path)
    if count == 1:
        return [p]
    return [p.with_name(f"{p.stem}-{i}{p.suffix}") for i in range(count)]
