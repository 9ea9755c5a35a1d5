"""Find the saved outputs in each system's folder and match them across folders by prompt and seed.

A system is a folder of files saved by aigc (``result.save(...)``): each file's provenance record (embedded, or in
its ``.json`` sidecar) names the prompt and the seed of the sample it holds. Two systems' outputs with the same
prompt and seed are one comparison item; every pair of systems that both have an item gives one comparison task.

Stages of :func:`plan`:

1. check the folders (they exist, are folders, are not empty, have distinct names);
2. read the record of every file (sidecars and hidden files skipped; files with no record skipped with a warning);
3. key each output by ``(prompt, seed)``; a folder with no output another folder shares is an error;
4. one :class:`Task` per item and pair of systems that both have it, in a stable order.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from aigc.errors import InvalidRequest, ProvenanceError

__all__ = ["Output", "Task", "find_outputs", "plan"]

logger = logging.getLogger(__name__)

#: how a browser shows an output, by file suffix
_KINDS = {
    ".png": "image", ".jpg": "image", ".jpeg": "image", ".webp": "image", ".gif": "image",
    ".wav": "audio", ".flac": "audio", ".ogg": "audio",
    ".mp4": "video",
    ".txt": "text", ".json": "text",
}
#: longest text output sent to the page (characters); a longer one is cut with a note
MAX_TEXT_CHARS = 100_000


@dataclass(frozen=True)
class Output:
    """One saved sample of one system.

    Attributes:
        system: the system's name (its folder's name).
        path: the file, absolute.
        kind: how the page shows it: ``"text"``, ``"image"``, ``"audio"``, ``"video"``, or ``"frames"`` (a
            video saved as a folder of PNG frames with its ``record.json``; served as an animated GIF).
        prompt: the prompt of the sample (a chat prompt as JSON text).
        seed: the sample's seed.
    """

    system: str
    path: Path
    kind: str
    prompt: str
    seed: int


@dataclass(frozen=True)
class Task:
    """One comparison: two systems' outputs for the same prompt and seed (``system_a < system_b``).

    Attributes:
        prompt, seed: the item.
        a, b: the outputs of the two systems.
    """

    prompt: str
    seed: int
    a: Output
    b: Output

    @property
    def key(self) -> str:
        """A stable text naming the task (the position draw of each rater is seeded with it)."""
        return json.dumps([self.prompt, self.seed, self.a.system, self.b.system], ensure_ascii=False)


def _is_sidecar(path: Path) -> bool:
    return path.suffix == ".json" and path.with_name(path.name[: -len(".json")]).is_file()


def _prompt_and_seed(path: Path) -> tuple[str, int]:
    """The prompt and seed of the one sample a saved file holds, from its provenance record."""
    from aigc._record import Record

    record = Record.from_file(path)
    if record.sample_index is None:
        if len(record.seeds) != 1:
            raise ProvenanceError(f"{path}: its record describes {len(record.seeds)} samples and not which one "
                                  "this file holds")
        record = record.for_sample(0)
    request = record.to_request()
    prompt = request.prompt
    seed = request.seed
    if not isinstance(seed, int):
        raise ProvenanceError(f"{path}: its record names no single seed ({seed!r})")
    text = prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False, sort_keys=True,
                                                             default=str)
    return text, seed


def find_outputs(folder: str | os.PathLike[str], *, system: str | None = None, flag: str = "DIR") -> list[Output]:
    """The saved outputs in ``folder`` (not recursive) that carry an aigc record, sorted by file name.

    Args:
        folder: a folder of files saved by aigc.
        system: the system's name (default: the folder's name).
        flag: the argument name errors use.

    Raises:
        InvalidRequest: ``folder`` is not a folder, is empty, or holds no file with an aigc record.

    Example:
        >>> find_outputs("runs/gan")[0].prompt  # doctest: +SKIP
        'a sneaker'
    """
    root = Path(folder)
    if not root.is_dir():
        raise InvalidRequest(flag, os.fspath(folder), "not a folder", "pass a folder of outputs saved by aigc")
    name = system or root.resolve().name
    from aigc._media.video import is_saved_clip

    files = sorted(p for p in root.iterdir() if (p.is_file() or is_saved_clip(p)) and not p.name.startswith("."))
    if not files:
        raise InvalidRequest(flag, os.fspath(folder), "the folder is empty",
                             "save the system's outputs into it with result.save(...)")
    outputs = []
    skipped = []
    for path in files:
        kind = "frames" if path.is_dir() else _KINDS.get(path.suffix.lower())
        if kind is None or _is_sidecar(path):
            continue
        try:
            prompt, seed = _prompt_and_seed(path)
        except ProvenanceError as e:
            skipped.append(path.name)
            logger.warning("skipping %s: %s", path, e)
            continue
        outputs.append(Output(system=name, path=path.resolve(), kind=kind, prompt=prompt, seed=seed))
    if not outputs:
        extra = f" ({len(skipped)} files without a readable record)" if skipped else ""
        raise InvalidRequest(flag, os.fspath(folder), f"holds no output saved by aigc with its record{extra}",
                             "save outputs with result.save(...), which keeps the prompt and seed in each file")
    return outputs


def plan(folders: list[str | os.PathLike[str]], *, flag: str = "DIR") -> list[Task]:
    """The comparison tasks between the systems in ``folders``: every item (prompt, seed) that two systems both
    have, for every such pair of systems.

    Args:
        folders: two or more folders, one per system; a system is named after its folder.
        flag: the argument name errors use.

    Raises:
        InvalidRequest: fewer than two folders, two folders of the same name, a folder that is missing, empty or
            without records, or one that shares no prompt and seed with any other.

    Example:
        >>> tasks = plan(["runs/gan", "runs/vae"])  # doctest: +SKIP
        >>> tasks[0].a.system, tasks[0].b.system, tasks[0].prompt, tasks[0].seed  # doctest: +SKIP
        ('gan', 'vae', 'a sneaker', 0)
    """
    if len(folders) < 2:
        raise InvalidRequest(flag, [os.fspath(f) for f in folders], "a comparison needs at least two systems",
                             "pass two or more folders, one per system")
    names: dict[str, str] = {}
    by_system: dict[str, dict[tuple[str, int], Output]] = {}
    for folder in folders:
        name = Path(folder).resolve().name
        if name in names:
            raise InvalidRequest(flag, os.fspath(folder), f"has the same name as {names[name]} (systems are named "
                                 "after their folders)", "rename one of the folders")
        names[name] = os.fspath(folder)
        items: dict[tuple[str, int], Output] = {}
        for out in find_outputs(folder, system=name, flag=flag):
            key = (out.prompt, out.seed)
            if key in items:
                logger.warning("%s: %s has the same prompt and seed as %s; using the first", folder, out.path.name,
                               items[key].path.name)
                continue
            items[key] = out
        by_system[name] = items
    # 3. every folder must share at least one item with another one
    for name, items in by_system.items():
        others = set().union(*(set(v) for k, v in by_system.items() if k != name))
        if not set(items) & others:
            raise InvalidRequest(flag, names[name], f"none of its {len(items)} outputs has the prompt and seed of an "
                                 "output in the other folders",
                                 "generate every system's outputs with the same prompts and seeds")
    # 4. tasks, stable order: by system pair, then prompt and seed
    tasks = []
    for sa, sb in itertools.combinations(sorted(by_system), 2):
        for key in sorted(set(by_system[sa]) & set(by_system[sb])):
            tasks.append(Task(prompt=key[0], seed=key[1], a=by_system[sa][key], b=by_system[sb][key]))
    return tasks


def read_text_output(path: Path) -> str:
    """The text a ``.txt`` or ``.json`` text output holds (cut at :data:`MAX_TEXT_CHARS`)."""
    raw = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("text"), str):
            raw = data["text"]
    if len(raw) > MAX_TEXT_CHARS:
        raw = raw[:MAX_TEXT_CHARS] + f"\n[... cut at {MAX_TEXT_CHARS} characters]"
    return raw
