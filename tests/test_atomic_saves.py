"""All-or-nothing multi-file saves: frame folders swapped in one step, a file and its sidecar bound by content,
abandoned temporaries swept -- and a real ``kill -9`` loop over all of them."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import aigc
from aigc._media import atomic, provenance
from aigc._media import video as media_video
from aigc.errors import InvalidRequest, ProvenanceError
from aigc.testing.crash import kill_during_saves


def _record(i: int, modality: str = "text") -> aigc.Record:
    return aigc.Record(modality=modality, backend="b", model="m", request={"prompt": "p"},  # type: ignore[arg-type]
                       seeds=[i], device="cpu", dtype="float32")


def _text(i: int) -> aigc.TextResult:
    return aigc.TextResult(texts=[f"sample {i}"], seeds=[i], record=_record(i))


@pytest.mark.slow
def test_kill_9_during_saves_leaves_whole_saves_only(tmp_path: Path) -> None:
    report = kill_during_saves(tmp_path, kills=6, seed=11)
    assert report.kills == 6 and report.checked >= 3
    assert report.generations >= 1  # the children got into their save loops (on an idle machine, ~5 per kill)
    assert report.inconsistent == []
    assert report.parts_after_sweep == 0


def test_text_and_sidecar_stay_paired_when_the_save_stops_after_step_1(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.txt"
    _text(1).save(path)

    def killed(tmp: Path, final: Path) -> None:
        raise KeyboardInterrupt  # the process dies between writing the sidecar and replacing the file

    monkeypatch.setattr(provenance, "commit", killed)
    with pytest.raises(KeyboardInterrupt):
        _text(2).save(path)
    monkeypatch.undo()
    assert path.read_text() == "sample 1" and aigc.Record.from_file(path).seeds == [1]  # the old pair
    assert len(json.loads((tmp_path / "s.txt.json").read_text())["records"]) == 2
    _text(3).save(path)
    assert path.read_text() == "sample 3" and aigc.Record.from_file(path).seeds == [3]
    assert len(json.loads((tmp_path / "s.txt.json").read_text())["records"]) == 1  # the old record is gone


def test_text_and_sidecar_stay_paired_when_the_save_stops_before_step_3(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.txt"
    _text(1).save(path)
    real = provenance._write_sidecar
    calls: list[int] = []

    def second_write_dies(sidecar: Path, entries: list[dict[str, str]]) -> None:
        calls.append(len(entries))
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(sidecar, entries)

    monkeypatch.setattr(provenance, "_write_sidecar", second_write_dies)
    with pytest.raises(KeyboardInterrupt):
        _text(2).save(path)
    assert calls == [2, 1]
    assert path.read_text() == "sample 2" and aigc.Record.from_file(path).seeds == [2]  # the new pair


def test_a_text_edited_after_saving_has_no_record(tmp_path: Path) -> None:
    path = _text(1).save(tmp_path / "s.txt")[0]
    path.write_text("edited by hand")
    with pytest.raises(ProvenanceError, match="changed after aigc saved it"):
        aigc.Record.from_file(path)
    with pytest.raises(ProvenanceError, match="changed after"):
        aigc.Record.from_file(tmp_path / "s.txt.json")  # the sidecar read directly is checked the same way


def test_a_bare_record_sidecar_from_before_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "old.txt"
    path.write_text("sample 4")
    (tmp_path / "old.txt.json").write_text(_record(4).to_json())
    assert aigc.Record.from_file(path).seeds == [4]
    _text(5).save(path)  # and saving over it keeps the pair readable
    assert aigc.Record.from_file(path).seeds == [5]


def _clip(shade: int, frames: int) -> aigc.VideoResult:
    return aigc.VideoResult(videos=[np.full((frames, 8, 8, 3), shade, np.uint8)], fps=8.0, seeds=[shade],
                            record=_record(shade, "video"))


@pytest.mark.parametrize("exchange", [True, False])
def test_a_frame_folder_is_swapped_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool) -> None:
    if not exchange:  # a system or file system without RENAME_EXCHANGE: the two-rename fallback
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    folder = tmp_path / "clip"
    _clip(10, 5).save(folder)
    os.chmod(folder, 0o750)
    written = _clip(20, 2).save(folder)
    assert written == [folder] and written.sidecars == []  # the folder is the sample
    assert sorted(p.name for p in folder.iterdir()) == ["frame-00000.png", "frame-00001.png", "record.json"]
    frames, _ = media_video.load_video(folder)
    assert frames.shape[0] == 2 and (frames == 20).all() and aigc.Record.from_file(folder).seeds == [20]
    assert oct(folder.stat().st_mode & 0o777) == oct(0o750)  # the folder keeps its permissions
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip"]  # no temporary left beside it


def test_a_failed_frame_folder_save_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "clip"
    _clip(10, 3).save(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def full_disk(self: Any, *args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(OSError, match="No space"):
        _clip(20, 2).save(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip"]


def test_a_folder_with_other_files_is_not_replaced(tmp_path: Path) -> None:
    folder = tmp_path / "holiday"
    folder.mkdir()
    (folder / "notes.md").write_text("mine")
    with pytest.raises(InvalidRequest, match=r"not part of a saved clip \(notes\.md\)"):
        _clip(1, 2).save(folder)
    assert (folder / "notes.md").read_text() == "mine"
    (folder / "notes.md").unlink()
    _clip(1, 2).save(folder)  # an empty folder is fine


def test_stale_temporaries_are_swept_by_the_next_save(tmp_path: Path) -> None:
    old = [tmp_path / ".a.png.0123456789ab.part.png", tmp_path / ".clip.abcdef012345.part"]
    old[0].write_bytes(b"half a png")
    old[1].mkdir()
    (old[1] / "frame-00000.png").write_bytes(b"half a frame")
    fresh = tmp_path / ".b.txt.0123456789ab.part.txt"  # may be a save running right now in another process
    fresh.write_bytes(b"in progress")
    mine = tmp_path / ".not-ours.part"  # not aigc's pattern
    mine.write_bytes(b"keep")
    long_ago = time.time() - atomic.STALE_AFTER_S - 1
    for p in (*old, mine):
        os.utime(p, (long_ago, long_ago))
    _text(1).save(tmp_path / "s.txt")
    assert not any(p.exists() for p in old)
    assert fresh.exists() and mine.exists()


def test_two_sample_saves_each_carry_their_own_record(tmp_path: Path) -> None:
    res = aigc.TextResult(texts=["a", "b"], seeds=[1, 2], record=_record(1))
    paths = res.save(tmp_path / "t.txt")
    assert [p.name for p in paths] == ["t-0.txt", "t-1.txt"]  # paths[i] is sample i
    assert [p.name for p in paths.sidecars] == ["t-0.txt.json", "t-1.txt.json"]
    assert [aigc.Record.from_file(p).sample_index for p in paths] == [0, 1]
