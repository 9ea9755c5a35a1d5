"""Crash-consistency checks for saved results: kill a process with ``SIGKILL`` while it saves, then check that
every output is a whole save -- its data and its record from the same save, never a mix of two.

:func:`kill_during_saves` starts a child process running :func:`save_forever` (which saves, over and over into
the same names, a frame folder, a ``.txt`` with its provenance sidecar, and a JPEG whose record is too big for
its EXIF and goes to a sidecar), kills it at a random moment, checks every output, and repeats. A save killed
midway leaves a temporary ``.part`` sibling; those are counted, and the next save after they have aged past
:data:`aigc._media.atomic.STALE_AFTER_S` must sweep them.

Example:
    >>> from aigc.testing.crash import kill_during_saves
    >>> report = kill_during_saves(tmp_path, kills=10)  # doctest: +SKIP
    >>> report.inconsistent  # doctest: +SKIP
    []
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aigc._media.atomic import STALE_AFTER_S
from aigc._results import ImageResult, Record, TextResult, VideoResult

__all__ = ["KillReport", "kill_during_saves", "save_forever"]

_CLIP, _TEXT, _IMAGE = "clip", "story.txt", "boot.jpg"
_BIG = 70_000  # characters in the image record's prompt: more than a JPEG's EXIF segment holds


def _record(i: int, modality: str, prompt: str = "crash test") -> Record:
    return Record(modality=modality, backend="crash", model="m", request={"prompt": prompt}, seeds=[i],  # type: ignore[arg-type]
                  device="cpu", dtype="float32")


def _shade(i: int) -> int:
    return (i * 37) % 256


def save_forever(folder: str | os.PathLike[str], start: int = 0) -> None:
    """Save generation ``start``, ``start + 1``, ... of three outputs into ``folder`` until killed.

    Generation *i*: a clip of ``3 + i % 3`` frames of shade :func:`_shade(i)`; ``"sample i"`` in a ``.txt``; a
    JPEG of that shade with a record too big for EXIF. Each carries a record whose seed is *i*.
    """
    from PIL import Image

    out = Path(folder)
    i = start
    while True:
        frames = np.full((3 + i % 3, 48, 48, 3), _shade(i), np.uint8)
        VideoResult(videos=[frames], fps=8.0, seeds=[i], record=_record(i, "video")).save(out / _CLIP)
        TextResult(texts=[f"sample {i}"], seeds=[i], record=_record(i, "text")).save(out / _TEXT)
        image = Image.new("RGB", (48, 48), (_shade(i),) * 3)
        ImageResult(images=[image], seeds=[i], record=_record(i, "image", "x" * _BIG)).save(out / _IMAGE)
        i += 1


@dataclass
class KillReport:
    """What :func:`kill_during_saves` saw.

    Attributes:
        kills: child processes killed with ``SIGKILL``.
        checked: outputs checked after the kills (a missing output, before its first save, is not counted).
        inconsistent: descriptions of outputs whose data and record came from different saves (should be empty).
        mid_save: kills that left a new temporary ``.part`` file or folder behind (a save was interrupted).
        parts_left: temporary ``.part`` entries found after the last kill.
        parts_after_sweep: those still there after they aged and one more save ran (should be 0).
        generations: the highest save generation reached.
    """

    kills: int = 0
    checked: int = 0
    inconsistent: list[str] = field(default_factory=list)
    mid_save: int = 0
    parts_left: int = 0
    parts_after_sweep: int = 0
    generations: int = 0


def _parts(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if ".part" in p.name]


def _check(folder: Path, report: KillReport) -> int:
    """Check the three outputs; return the highest generation seen."""
    from PIL import Image

    from aigc._media.video import load_video

    seen = -1
    clip = folder / _CLIP
    if clip.exists():
        i = Record.from_file(clip).seeds[0]
        frames, _ = load_video(clip)
        report.checked += 1
        if frames.shape[0] != 3 + i % 3 or not (frames == _shade(i)).all():
            report.inconsistent.append(f"clip: record of save {i}, {frames.shape[0]} frames of shades "
                                       f"{sorted(set(frames.reshape(-1).tolist()))[:4]}")
        seen = max(seen, i)
    text = folder / _TEXT
    if text.exists():
        i = Record.from_file(text).seeds[0]
        report.checked += 1
        if text.read_text(encoding="utf-8") != f"sample {i}":
            report.inconsistent.append(f"text: record of save {i}, text {text.read_text(encoding='utf-8')!r}")
        seen = max(seen, i)
    image = folder / _IMAGE
    if image.exists():
        i = Record.from_file(image).seeds[0]
        report.checked += 1
        with Image.open(image) as im:
            shade = int(np.asarray(im.convert("L")).mean().round())
        if abs(shade - _shade(i)) > 2:  # JPEG is lossy, but a flat image stays within a level or two
            report.inconsistent.append(f"image: record of save {i}, shade {shade}")
        seen = max(seen, i)
    return seen


def kill_during_saves(folder: str | os.PathLike[str], *, kills: int, seed: int = 0,
                      window_s: tuple[float, float] = (0.3, 0.9)) -> KillReport:
    """Kill a saving child process ``kills`` times at random moments and check the outputs after each kill.

    Args:
        folder: an empty folder to save into.
        kills: how many child processes to start and kill.
        seed: seeds the kill times.
        window_s: each child is killed this many seconds (uniform) after it starts; Python and the imports
            take about 0.3 s, so the default window lands mostly inside the save loop.

    Returns:
        A :class:`KillReport`; ``inconsistent`` lists every output whose data and record disagree.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    report = KillReport()
    generation = 0
    parts_before: set[Path] = set()
    for _ in range(kills):
        child = subprocess.Popen([sys.executable, "-c", f"from aigc.testing.crash import save_forever; "
                                  f"save_forever({str(out)!r}, {generation})"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(*window_s))
        if child.poll() is not None:  # it died on its own: that is a failure of the saver, not a kill
            raise RuntimeError(f"the saving process exited: {child.stderr.read().decode() if child.stderr else ''}")
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        if child.stderr is not None:
            child.stderr.close()
        report.kills += 1
        parts_now = set(_parts(out))
        report.mid_save += bool(parts_now - parts_before)
        parts_before = parts_now
        generation = max(generation, _check(out, report) + 1)
    report.generations = generation
    parts = _parts(out)
    report.parts_left = len(parts)
    old = time.time() - STALE_AFTER_S - 60
    for p in parts:
        os.utime(p, (old, old))
    TextResult(texts=["after"], seeds=[0]).save(out / "after.txt")  # the next save into the folder sweeps them
    report.parts_after_sweep = len(_parts(out))
    return report
