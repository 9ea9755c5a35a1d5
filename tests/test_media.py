"""Media encoding: pixels, samples and frames round trip; provenance records survive every format."""

from __future__ import annotations

import base64
import io
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from aigc._media import audio, image, records, video
from aigc.errors import BackendUnavailable, InvalidRequest, ProvenanceError

RECORD = json.dumps(
    {"format": "aigc.record/1", "modality": "image", "request": {"prompt": "une botte, s'il vous plaît ☃"}},
    ensure_ascii=False,
    sort_keys=True,
)
ASCII_RECORD = json.dumps({"format": "aigc.record/1", "seeds": [1, 2]})
HUGE_RECORD = json.dumps({"format": "aigc.record/1", "prompt": "é" * 40_000}, ensure_ascii=False)

IMAGE_SUFFIXES = [".png", ".webp", ".jpg", ".jpeg"]
AUDIO_SUFFIXES = [".wav", ".flac", ".ogg"]
VIDEO_KINDS = [".mp4", ".gif", ".webp", ""]


def _needs_av(suffix: str) -> None:
    if suffix == ".mp4":
        pytest.importorskip("av")


def _rgba(size: int = 16) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (size, size, 4), dtype=np.uint8), "RGBA")


def _rgb(size: int = 16) -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB")


def _waveform(channels: int = 2, samples: int = 1600) -> np.ndarray[Any, Any]:
    t = np.arange(samples) / 8000
    rows = [0.5 * np.sin(2 * np.pi * 220 * (c + 1) * t) for c in range(channels)]
    return np.stack(rows).astype(np.float32)


def _clip(frames: int = 8, height: int = 16, width: int = 16) -> np.ndarray[Any, Any]:
    """A smooth moving gradient (friendly to H.264 and to a 256-colour GIF palette)."""
    yy, xx = np.mgrid[0:height, 0:width]
    out = [np.stack([xx * 8 + i * 8, yy * 8, np.full_like(xx, 128)], axis=-1) for i in range(frames)]
    result: np.ndarray[Any, Any] = np.clip(np.stack(out), 0, 255).astype(np.uint8)
    return result


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------------------------- images


@pytest.mark.parametrize("suffix", [".png", ".webp"])
@pytest.mark.parametrize("make", [_rgb, _rgba])
def test_lossless_image_pixels_round_trip(tmp_path: Path, suffix: str, make: Any) -> None:
    img = make()
    path = tmp_path / f"a{suffix}"
    assert image.save_image(img, path, RECORD) == [path]
    with Image.open(path) as back:
        assert back.mode == img.mode
        np.testing.assert_array_equal(np.asarray(back), np.asarray(img))


@pytest.mark.parametrize("suffix", IMAGE_SUFFIXES)
@pytest.mark.parametrize("record", [RECORD, ASCII_RECORD], ids=["unicode", "ascii"])
def test_image_record_round_trip(tmp_path: Path, suffix: str, record: str) -> None:
    path = tmp_path / f"a{suffix}"
    assert image.save_image(_rgba(), path, record) == [path]  # embedded: no sidecar
    assert image.read_image_record(path) == record
    assert records.read_record(str(path)) == record


def test_png_record_is_an_itxt_chunk(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    image.save_image(_rgb(), path, RECORD)
    assert b"iTXtaigc" in path.read_bytes()


def test_jpeg_drops_alpha(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    image.save_image(_rgba(), path, None)
    with Image.open(path) as back:
        assert back.format == "JPEG"
        assert back.mode == "RGB"
        assert back.size == (16, 16)


def test_record_too_big_for_jpeg_goes_to_sidecar(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    written = image.save_image(_rgb(), path, HUGE_RECORD)
    assert written == [path, tmp_path / "a.jpg.json"]
    assert image.read_image_record(path) is None
    assert records.read_record(path) == HUGE_RECORD


def test_image_without_record(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    assert image.save_image(_rgb(), path, None) == [path]
    assert image.read_image_record(path) is None
    with pytest.raises(ProvenanceError, match="no aigc record"):
        records.read_record(path)


def test_stale_sidecar_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    image.save_image(_rgb(), path, HUGE_RECORD)
    image.save_image(_rgb(), path, ASCII_RECORD)
    assert _listing(tmp_path) == ["a.jpg"]
    assert records.read_record(path) == ASCII_RECORD


def test_unicode_user_comment_without_byte_order_mark() -> None:
    text = "boot ☃"
    assert image.decode_user_comment(b"UNICODE\0" + text.encode("utf-16-be")) == text
    assert image.decode_user_comment(b"UNICODE\0" + text.encode("utf-16-le")) == text
    assert image.decode_user_comment(b"ASCII\0\0\0abc\0") == "abc"
    assert image.decode_user_comment(b"\0" * 8) is None


@pytest.mark.parametrize("name", ["a.gif", "a.bmp", "a"])
def test_unsupported_image_format(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidRequest, match="unsupported image format") as info:
        image.save_image(_rgb(), tmp_path / name, None)
    assert info.value.field == "path"
    assert list(tmp_path.iterdir()) == []


def test_save_image_rejects_non_images(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="not a PIL image"):
        image.save_image(np.zeros((4, 4, 3)), tmp_path / "a.png", None)  # type: ignore[arg-type]


def test_grid_png_upscales_a_small_image() -> None:
    img = _rgb(32)
    with Image.open(io.BytesIO(image.grid_png([img]))) as grid:
        assert grid.size == (128, 128)
        big = np.asarray(grid.convert("RGB"))
    np.testing.assert_array_equal(big[::4, ::4], np.asarray(img))  # nearest neighbour: whole blocks


def test_grid_png_is_near_square() -> None:
    with Image.open(io.BytesIO(image.grid_png([_rgb(32)] * 5))) as grid:
        cols, rows = 3, 2
        assert grid.size == (cols * 128 + (cols - 1) * 4, rows * 128 + (rows - 1) * 4)
    large = Image.new("RGB", (200, 100))
    with Image.open(io.BytesIO(image.grid_png([large] * 4))) as grid:
        assert grid.size == (2 * 200 + 4, 2 * 100 + 4)


def test_grid_html() -> None:
    doc = image.grid_html([_rgb(), _rgba()], ["seed 1", "<b>seed 2</b>"], title="boots & <shoes>")
    sources = re.findall(r"<img src='data:image/png;base64,([^']+)'", doc)
    assert len(sources) == 2
    with Image.open(io.BytesIO(base64.b64decode(sources[0]))) as first:
        assert first.size == (16, 16)
    assert "boots &amp; &lt;shoes&gt;" in doc
    assert "<figcaption>seed 1</figcaption>" in doc
    assert "&lt;b&gt;seed 2&lt;/b&gt;" in doc
    assert "<shoes>" not in doc
    with pytest.raises(InvalidRequest, match="captions"):
        image.grid_html([_rgb()], [])
    with pytest.raises(InvalidRequest):
        image.grid_png([])


# -------------------------------------------------------------------------------------------- audio


@pytest.mark.parametrize(("suffix", "tolerance"), [(".wav", 0.0), (".flac", 1.01 / 32768), (".ogg", 0.1)])
def test_audio_round_trip(tmp_path: Path, suffix: str, tolerance: float) -> None:
    wav = _waveform(channels=2)
    path = tmp_path / f"a{suffix}"
    assert audio.save_audio(wav, 8000, path, RECORD) == [path]
    back, rate = audio.load_audio(path)
    assert rate == 8000
    assert back.dtype == np.float32
    assert back.shape == wav.shape
    assert np.abs(back - wav).max() <= tolerance
    if suffix == ".ogg":  # lossy: the waveform's shape survives, not its samples
        assert np.corrcoef(back[0], wav[0])[0, 1] > 0.99


@pytest.mark.parametrize("suffix", AUDIO_SUFFIXES)
@pytest.mark.parametrize("record", [RECORD, ASCII_RECORD], ids=["unicode", "ascii"])
def test_audio_record_round_trip(tmp_path: Path, suffix: str, record: str) -> None:
    path = tmp_path / f"a{suffix}"
    assert audio.save_audio(_waveform(1), 8000, path, record) == [path]
    assert audio.read_audio_record(path) == record
    assert records.read_record(path) == record


def test_long_record_leaves_wav_for_a_sidecar(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    assert audio.save_audio(_waveform(1), 8000, path, HUGE_RECORD) == [path, tmp_path / "a.wav.json"]
    assert audio.read_audio_record(path) is None
    assert records.read_record(path) == HUGE_RECORD
    flac = tmp_path / "a.flac"
    assert audio.save_audio(_waveform(1), 8000, flac, HUGE_RECORD) == [flac]
    assert audio.read_audio_record(flac) == HUGE_RECORD


def test_wav_is_float_and_keeps_out_of_range_samples(tmp_path: Path) -> None:
    wav = np.array([[0.25, -1.5, 1.5, 0.0]], dtype=np.float32)
    audio.save_audio(wav, 8000, tmp_path / "a.wav", None)
    assert sf.info(str(tmp_path / "a.wav")).subtype == "FLOAT"
    np.testing.assert_array_equal(audio.load_audio(tmp_path / "a.wav")[0], wav)
    audio.save_audio(wav, 8000, tmp_path / "a.flac", None)
    back = audio.load_audio(tmp_path / "a.flac")[0]
    assert back.max() <= 1.0
    assert back.min() >= -1.0
    np.testing.assert_allclose(back, np.clip(wav, -1, 1), atol=1.01 / 32768)


def test_mono_1d_waveform(tmp_path: Path) -> None:
    wav = _waveform(1)[0].astype(np.float64)
    audio.save_audio(wav, 16000, tmp_path / "a.wav", None)
    back, rate = audio.load_audio(tmp_path / "a.wav")
    assert (back.shape, rate) == ((1, wav.size), 16000)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"waveform": np.zeros((1, 10), np.int16)}, "waveform"),
        ({"waveform": np.zeros((1, 1, 10), np.float32)}, "waveform"),
        ({"waveform": np.zeros((1, 0), np.float32)}, "waveform"),
        ({"waveform": np.array([[0.0, np.nan]], np.float32)}, "waveform"),
        ({"waveform": np.zeros((800, 2), np.float32)}, "waveform"),
        ({"waveform": [0.0, 0.1]}, "waveform"),
        ({"sample_rate": 0}, "sample_rate"),
        ({"sample_rate": 8000.0}, "sample_rate"),
        ({"sample_rate": True}, "sample_rate"),
        ({"path": "a.mp3"}, "path"),
        ({"path": "a.flac", "waveform": np.zeros((9, 10), np.float32)}, "waveform"),
    ],
)
def test_bad_audio_inputs(tmp_path: Path, kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"waveform": _waveform(1), "sample_rate": 8000, "path": "a.wav", "record": None}
    args.update(kwargs)
    args["path"] = tmp_path / args["path"]
    with pytest.raises(InvalidRequest) as info:
        audio.save_audio(**args)
    assert info.value.field == field
    assert list(tmp_path.iterdir()) == []


def test_audio_html() -> None:
    doc = audio.audio_html(_waveform(2), 8000)
    match = re.fullmatch(r'<audio controls src="data:audio/wav;base64,([^"]+)"></audio>', doc)
    assert match is not None
    back, rate = sf.read(io.BytesIO(base64.b64decode(match.group(1))), always_2d=True)
    assert (back.shape, rate) == ((1600, 2), 8000)


# -------------------------------------------------------------------------------------------- video


def test_mp4_round_trip(tmp_path: Path) -> None:
    pytest.importorskip("av")
    clip = _clip()
    path = tmp_path / "a.mp4"
    assert video.save_video(clip, 12.5, path, RECORD) == [path]
    back, fps = video.load_video(path)
    assert back.shape == clip.shape
    assert back.dtype == np.uint8
    assert fps == 12.5
    assert np.abs(back.astype(int) - clip).mean() < 8  # lossy H.264, yuv420p


def test_mp4_pads_odd_sizes_by_repeating_edges(tmp_path: Path) -> None:
    pytest.importorskip("av")
    clip = _clip(frames=3, height=15, width=17)
    video.save_video(clip, 8, tmp_path / "a.mp4", None)
    back, _ = video.load_video(tmp_path / "a.mp4")
    assert back.shape == (3, 16, 18, 3)
    assert np.abs(back[:, :15, :17].astype(int) - clip).mean() < 8
    assert np.abs(back[:, 15].astype(int) - back[:, 14]).mean() < 8


def test_mp4_without_pyav(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(BackendUnavailable, match="PyAV") as info:
        video.save_video(_clip(), 8, tmp_path / "a.mp4", None)
    assert info.value.extra == "video"
    assert list(tmp_path.iterdir()) == []
    doc = video.video_html(_clip(), 8)  # falls back to an animated WebP
    assert doc.startswith("<img src='data:image/webp;base64,")


def test_gif_round_trip_keeps_repeated_frames(tmp_path: Path) -> None:
    clip = _clip()
    clip[3] = clip[2]  # the encoder folds repeats into one longer frame
    clip[4] = clip[2]
    path = tmp_path / "a.gif"
    assert video.save_video(clip, 10, path, RECORD) == [path]
    back, fps = video.load_video(path)
    assert back.shape == clip.shape
    assert fps == 10
    assert np.abs(back.astype(int) - clip).max() <= 8  # palette quantisation
    with Image.open(path) as gif:
        assert gif.info["loop"] == 0
        assert gif.info["duration"] == 100


def test_gif_keeps_the_exact_frame_rate_of_a_still_clip(tmp_path: Path) -> None:
    still = np.repeat(_clip(frames=1), 5, axis=0)
    path = tmp_path / "a.gif"
    video.save_video(still, 8, path, None)
    with Image.open(path) as gif:
        assert gif.n_frames == 1  # GIF timing is in 10 ms steps and repeats are folded
    back, fps = video.load_video(path)
    assert back.shape == still.shape
    assert fps == 8


def test_foreign_gif_frame_rate_comes_from_durations(tmp_path: Path) -> None:
    frames = [Image.fromarray(f) for f in _clip(frames=3)]
    path = tmp_path / "b.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=[50, 100, 50])
    back, fps = video.load_video(path)
    assert (back.shape[0], fps) == (4, 20)


def test_webp_round_trip_is_exact(tmp_path: Path) -> None:
    clip = _clip()
    clip[5] = clip[4]
    path = tmp_path / "a.webp"
    video.save_video(clip, 8, path, RECORD)
    back, fps = video.load_video(path)
    np.testing.assert_array_equal(back, clip)
    assert fps == 8
    still = np.repeat(clip[:1], 6, axis=0)  # a still clip folds to one frame; XMP restores the count
    video.save_video(still, 8, path, None)
    back, _ = video.load_video(path)
    np.testing.assert_array_equal(back, still)


def test_folder_round_trip(tmp_path: Path) -> None:
    clip = _clip(frames=4)
    folder = tmp_path / "clip"
    written = video.save_video(clip, 8, folder, RECORD)
    assert [p.name for p in written] == [*(f"frame-{i:05d}.png" for i in range(4)), "record.json"]
    back, fps = video.load_video(folder)
    np.testing.assert_array_equal(back, clip)
    assert fps == 8
    video.save_video(clip[:2], 8, folder, None)  # saving again replaces the clip, provenance included
    assert _listing(folder) == ["frame-00000.png", "frame-00001.png"]
    assert video.load_video(folder)[0].shape[0] == 2
    with pytest.raises(ProvenanceError, match=r"record\.json"):
        records.read_record(folder)


@pytest.mark.parametrize("suffix", VIDEO_KINDS)
def test_video_record_round_trip(tmp_path: Path, suffix: str) -> None:
    _needs_av(suffix)
    path = tmp_path / f"a{suffix}"
    video.save_video(_clip(frames=2), 8, path, RECORD)
    assert video.read_video_record(path) == RECORD
    assert records.read_record(path) == RECORD
    assert not (tmp_path / f"a{suffix}.json").exists()


@pytest.mark.parametrize("suffix", [".mp4", ".gif", ".webp"])
def test_huge_video_record_round_trips(tmp_path: Path, suffix: str) -> None:
    _needs_av(suffix)
    path = tmp_path / f"a{suffix}"
    video.save_video(_clip(frames=2), 8, path, HUGE_RECORD)
    assert records.read_record(path) == HUGE_RECORD


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"frames": _clip().astype(np.float32) / 255}, "frames"),
        ({"frames": _clip()[..., 0]}, "frames"),
        ({"frames": np.zeros((8, 16, 16, 4), np.uint8)}, "frames"),
        ({"frames": np.zeros((0, 16, 16, 3), np.uint8)}, "frames"),
        ({"frames": [np.zeros((16, 16, 3), np.uint8)]}, "frames"),
        ({"fps": 0}, "fps"),
        ({"fps": float("nan")}, "fps"),
        ({"fps": "8"}, "fps"),
        ({"path": "a.avi"}, "path"),
    ],
)
def test_bad_video_inputs(tmp_path: Path, kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"frames": _clip(), "fps": 8, "path": "a.gif", "record": None}
    args.update(kwargs)
    args["path"] = tmp_path / args["path"]
    with pytest.raises(InvalidRequest) as info:
        video.save_video(**args)
    assert info.value.field == field
    assert list(tmp_path.iterdir()) == []


def test_video_html() -> None:
    pytest.importorskip("av")
    doc = video.video_html(_clip(height=15, width=17), 8)
    assert doc.startswith("<video controls autoplay loop muted playsinline ")
    assert "width='144' height='128'" in doc  # padded to 18x16, enlarged 8x for display
    data = re.search(r"src='data:video/mp4;base64,([^']+)'", doc)
    assert data is not None
    assert base64.b64decode(data.group(1))[4:8] == b"ftyp"


# ------------------------------------------------------------------------------------ atomic writes


def _fail_image_save(self: Image.Image, fp: Any, *args: Any, **kwargs: Any) -> None:
    if hasattr(fp, "write"):
        fp.write(b"half an image")
    else:
        Path(fp).write_bytes(b"half an image")
    raise OSError("disk on fire")


def _fail_audio_write(self: sf.SoundFile, data: Any) -> None:
    raise OSError("disk on fire")


@pytest.mark.parametrize(
    ("name", "save"),
    [
        ("a.png", lambda p: image.save_image(_rgb(), p, RECORD)),
        ("a.wav", lambda p: audio.save_audio(_waveform(), 8000, p, RECORD)),
        ("a.webp", lambda p: video.save_video(_clip(), 8, p, RECORD)),
        ("a.gif", lambda p: video.save_video(_clip(), 8, p, RECORD)),
    ],
)
@pytest.mark.parametrize("existing", [False, True])
def test_failed_encode_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, save: Any, existing: bool
) -> None:
    path = tmp_path / name
    if existing:
        path.write_bytes(b"the previous file")
    monkeypatch.setattr(Image.Image, "save", _fail_image_save)
    monkeypatch.setattr(sf.SoundFile, "write", _fail_audio_write)
    with pytest.raises(OSError, match="disk on fire"):
        save(path)
    assert _listing(tmp_path) == ([name] if existing else [])
    if existing:
        assert path.read_bytes() == b"the previous file"


def test_failed_folder_save_leaves_no_temporary_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "clip"
    video.save_video(_clip(frames=3), 8, folder, RECORD)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    monkeypatch.setattr(Image.Image, "save", _fail_image_save)
    with pytest.raises(OSError, match="disk on fire"):
        video.save_video(_clip(frames=2), 8, folder, None)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_failed_mp4_encode_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    av = pytest.importorskip("av")
    path = tmp_path / "a.mp4"
    path.write_bytes(b"the previous file")
    calls = []
    real = av.VideoFrame.from_ndarray

    def fail_on_third_frame(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(av.VideoFrame, "from_ndarray", fail_on_third_frame)
    with pytest.raises(OSError, match="disk on fire"):
        video.save_video(_clip(), 8, path, RECORD)
    assert _listing(tmp_path) == ["a.mp4"]
    assert path.read_bytes() == b"the previous file"


# ------------------------------------------------------------------------------------- read_record


def test_read_record_of_text_results(tmp_path: Path) -> None:
    doc = tmp_path / "a.json"
    doc.write_text(json.dumps({"text": "hi", "aigc": json.loads(RECORD)}), encoding="utf-8")
    assert records.read_record(doc) == RECORD
    doc.write_text(json.dumps({"text": "hi", "aigc": None}), encoding="utf-8")
    with pytest.raises(ProvenanceError):
        records.read_record(doc)
    plain = tmp_path / "record.json"
    plain.write_text(RECORD, encoding="utf-8")
    assert records.read_record(plain) == RECORD
    txt = tmp_path / "a.txt"
    txt.write_text("hi", encoding="utf-8")
    with pytest.raises(ProvenanceError, match=r"a\.txt\.json"):
        records.read_record(txt)
    (tmp_path / "a.txt.json").write_text(RECORD, encoding="utf-8")
    assert records.read_record(txt) == RECORD


def test_read_record_errors(tmp_path: Path) -> None:
    with pytest.raises(ProvenanceError, match="no such file"):
        records.read_record(tmp_path / "missing.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ProvenanceError, match="could not be read"):
        records.read_record(broken)
    (tmp_path / "broken.png.json").write_text(RECORD, encoding="utf-8")
    assert records.read_record(broken) == RECORD


def test_saved_files_follow_the_umask(tmp_path: Path) -> None:
    import os

    from aigc._media.atomic import atomic_write_text

    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "hello")
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
