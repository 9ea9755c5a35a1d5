"""Atomic file writes: a file either appears whole under its final name, or not at all."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "numbered_paths"]


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
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name ends with the real suffix (encoders choose their format from it). It is created
    # with mode 0o666 filtered by the umask, like any file the user writes (mkstemp would make it 0o600).
    ext = suffix if suffix is not None else final.suffix
    while True:
        tmp = final.parent / f".{final.name}.{secrets.token_hex(6)}.part{ext}"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically and return the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


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
