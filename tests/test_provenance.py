"""Provenance that survives sharing: C2PA manifests read back by c2pa-python, the record store, ``aigc.verify`` on
stripped copies, the watermark policy through real generators, and safety flags instead of black images."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import c2pa  # a dev dependency: the tests read manifests back with the C2PA library itself
import numpy as np
import pytest
from PIL import Image

import aigc
from aigc._generator import Generator, LoadOptions
from aigc._runtime.events import EventEmitter
from aigc.errors import InvalidRequest, ProvenanceError
from aigc.provenance import Credentials, RecordStore, init_credentials, read_manifest
from aigc.provenance.c2pa import RECORD_LABEL, TRAINED_ALGORITHMIC_MEDIA
from aigc.testing import FakeImageGenerator, registered
from aigc.testing.watermark import jpeg, reencode_audio, resample_audio, shrink, speechlike


@pytest.fixture(scope="module")
def creds(tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    return init_credentials(tmp_path_factory.mktemp("creds") / "dev")


@pytest.fixture(scope="module")
def sd64(models_dir: Path) -> Path:
    from aigc.testing import tiny_stable_diffusion

    return tiny_stable_diffusion(models_dir / "sd64", sample_size=32)


class ToneAudio(Generator[aigc.AudioRequest, aigc.AudioResult]):
    """An audio backend for these tests: speech-like clips from each sample's seed (length = duration_s)."""

    modality = "audio"
    backend_name = "tone_test"
    request_type = aigc.AudioRequest
    supported_params: ClassVar[frozenset[str]] = frozenset({"duration_s"})

    @classmethod
    def load(cls, model: str, *, options: LoadOptions) -> ToneAudio:
        return cls(model=model, device=options.device, dtype=options.dtype)

    def _generate(self, request: aigc.AudioRequest, seeds: list[int], events: EventEmitter) -> aigc.AudioResult:
        seconds = request.duration_s or 2.0
        return aigc.AudioResult(waveforms=[speechlike(seconds, 16_000, seed=s) for s in seeds], seeds=seeds,
                                sample_rate=16_000)


class ShapesVideo(Generator[aigc.VideoRequest, aigc.VideoResult]):
    """A video backend for these tests: a textured frame drifting right, from each sample's seed."""

    modality = "video"
    backend_name = "shapes_test"
    request_type = aigc.VideoRequest
    supported_params: ClassVar[frozenset[str]] = frozenset({"width", "height", "num_frames"})

    @classmethod
    def load(cls, model: str, *, options: LoadOptions) -> ShapesVideo:
        return cls(model=model, device=options.device, dtype=options.dtype)

    def _generate(self, request: aigc.VideoRequest, seeds: list[int], events: EventEmitter) -> aigc.VideoResult:
        from aigc.testing.watermark import dead_leaves

        size = request.width or 64
        clips = []
        for s in seeds:
            frame = np.asarray(dead_leaves(size, seed=s))
            clips.append(np.stack([np.roll(frame, t, axis=1) for t in range(request.num_frames or 6)]))
        return aigc.VideoResult(videos=clips, seeds=seeds, fps=6.0)


# -- C2PA --------------------------------------------------------------------------------------------
def _reader(path: Path) -> Any:
    return c2pa.Reader(None, open(path, "rb"))  # the reader keeps the stream


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_c2pa_manifest_is_read_back_by_c2pa_python(sd64: Path, tmp_path: Path, creds: Credentials,
                                                    suffix: str) -> None:
    res = aigc.load("image", sd64, device="cpu").generate("a cat", seed=1, steps=2)
    [path] = res.save(tmp_path / f"cat{suffix}", credentials=creds)
    reader = _reader(path)
    assert reader.get_validation_state() == "Valid"  # signature and hashes; the dev CA is on no trust list
    failures = [f["code"] for f in reader.get_validation_results()["activeManifest"]["failure"]]
    assert failures == ["signingCredential.untrusted"]
    active = reader.get_active_manifest()
    info = active["claim_generator_info"][0]
    assert info["name"] == "aigc" and info["version"] == aigc.__version__
    assert info["org.aigc.backend"] == "diffusers" and info["org.aigc.model"] == str(sd64)
    assert info["org.aigc.weights"] == res.record.weights  # type: ignore[union-attr]
    labels = {a["label"]: a["data"] for a in active["assertions"]}
    [action] = labels["c2pa.actions.v2"]["actions"]
    assert action["action"] == "c2pa.created" and action["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    embedded = aigc.Record.from_json(labels[RECORD_LABEL]["json"])
    assert embedded == aigc.Record.from_file(path) == res.record.for_sample(0)  # type: ignore[union-attr]
    manifest = read_manifest(path, trust=creds.trust_anchors)
    assert manifest is not None and manifest.trusted and manifest.valid and manifest.ai_generated


def test_c2pa_in_wav_and_mp4(tmp_path: Path, creds: Credentials) -> None:
    with registered(ToneAudio, ShapesVideo):
        audio = aigc.load("audio", "x", backend="tone_test").generate("hum", seed=3)
        video = aigc.load("video", "x", backend="shapes_test").generate("drift", seed=4)
    [wav] = audio.save(tmp_path / "a.wav", credentials=creds)
    [mp4] = video.save(tmp_path / "v.mp4", credentials=creds)
    for path, record in ((wav, audio.record), (mp4, video.record)):
        assert _reader(path).get_validation_state() == "Valid"
        manifest = read_manifest(path)
        assert manifest is not None and manifest.record is not None and manifest.ai_generated
        assert aigc.Record.from_json(manifest.record) == record.for_sample(0)  # type: ignore[union-attr]
    assert aigc.Record.from_file(wav).watermark() is not None  # a 2 s clip is watermarked by default


def test_replay_works_from_the_manifest_alone(sd64: Path, tmp_path: Path, creds: Credentials) -> None:
    """A file whose own metadata holds no record (rewritten by a tool that kept the content credentials)."""
    from aigc._media.image import save_image
    from aigc.provenance.c2pa import sign_file

    res = aigc.load("image", sd64, device="cpu").generate("a cat", seed=2, steps=2)
    record = res.record.for_sample(0).to_json()  # type: ignore[union-attr]
    save_image(res.images[0], tmp_path / "bare.png", None,
               finish=lambda tmp: sign_file(tmp, record=record, credentials=creds))
    with Image.open(tmp_path / "bare.png") as im:
        assert "aigc" not in im.info
    again = aigc.replay(tmp_path / "bare.png")
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(res.images[0]))  # type: ignore[attr-defined]
    data = bytearray((tmp_path / "bare.png").read_bytes())  # change a pixel byte: the manifest no longer validates
    data[-40] ^= 0xFF
    (tmp_path / "tampered.png").write_bytes(bytes(data))
    manifest = read_manifest(tmp_path / "tampered.png")
    assert manifest is not None and not manifest.valid and "assertion.dataHash.mismatch" in manifest.failures
    with pytest.raises(ProvenanceError):
        aigc.replay(tmp_path / "tampered.png")


def test_credentials_rules(tmp_path: Path, creds: Credentials) -> None:
    folder = tmp_path / "c"
    made = init_credentials(folder)
    assert stat.S_IMODE(os.stat(folder / "key.pem").st_mode) == 0o600
    assert Credentials.load(folder).chain == made.chain
    with pytest.raises(InvalidRequest, match="already holds credentials"):
        init_credentials(folder)
    init_credentials(folder, overwrite=True)
    with registered(FakeImageGenerator):
        res = aigc.load("image", "x", backend="fake").generate("a", seed=1)
    with pytest.raises(InvalidRequest, match="credentials"):
        res.save(tmp_path / "a.gif", credentials=creds)  # GIF is not signed here
    assert not (tmp_path / "a.gif").exists()
    with pytest.raises(InvalidRequest, match="credentials"):
        res.save(tmp_path / "a.png", credentials=42)
    with pytest.raises(InvalidRequest, match=r"chain\.pem"):
        res.save(tmp_path / "a.png", credentials=tmp_path / "nothing")
    aigc.provenance.set_default_credentials(folder)
    try:
        [signed] = res.save(tmp_path / "b.png")
        [plain] = res.save(tmp_path / "c.png", credentials=False)
        assert read_manifest(signed) is not None and read_manifest(plain) is None
    finally:
        aigc.provenance.set_default_credentials(None)


# -- the record store and verify -----------------------------------------------------------------------
def test_record_store(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "s")
    record = aigc.Record(modality="image", backend="fake", model="x", request={"prompt": "a"}, seeds=[1],
                         device="cpu", dtype="float32")
    first = store.add("0badc0de", record)
    assert store.add("0badc0de", record) == first  # idempotent
    assert [e.record for e in store.find("0badc0de")] == [record]
    assert store.keys() == ["0badc0de"] and store.find("ffffffff") == [] and store.find("../x") == []
    with pytest.raises(ValueError, match="not a watermark key"):
        store.add("../../etc", record)
    (first.parent / "junk.json").write_text("{")
    assert len(store.find("0badc0de")) == 1  # unreadable entries are skipped


def test_verify_finds_the_record_of_a_stripped_image(sd64: Path, tmp_path: Path, creds: Credentials) -> None:
    """The issue's "done when": a file saved by aigc and stripped of metadata (re-encoded by Pillow) is still
    identified by aigc.verify."""
    res = aigc.load("image", sd64, device="cpu").generate("a cat", seed=[5, 6], steps=2)
    paths = res.save(tmp_path / "cat.png", credentials=creds)
    full = aigc.verify(paths[1])
    assert full.metadata == res.record.for_sample(1)  # type: ignore[union-attr]
    assert full.c2pa is not None and full.c2pa.valid and full.watermark is not None and full.watermark.present
    assert full.record_source == "metadata" and full.ai_generated
    with Image.open(paths[1]) as im:
        jpeg(shrink(im.convert("RGB")), quality=75).save(tmp_path / "shared.jpg")  # no metadata, no manifest
    report = aigc.verify(tmp_path / "shared.jpg")
    assert report.metadata is None and report.c2pa is None
    assert report.watermark is not None and report.watermark.present
    assert report.watermark.key == res.record.watermark(1)["key"]  # type: ignore[union-attr,index]
    assert report.record_source == "store" and report.record == res.record.for_sample(1)  # type: ignore[union-attr]
    assert "record (store)" in str(report) and json.loads(json.dumps(report.to_dict()))["record_source"] == "store"
    again = aigc.verify(tmp_path / "shared.jpg", store=False)
    assert again.watermark is not None and again.watermark.present and again.record is None


def _reencode_mp4(src: Path, dst: Path, *, scale: float, crf: int) -> None:
    """What a platform does to a shared clip: decode, resize, encode again with ffmpeg's H.264 (through PyAV) at
    another quality, keeping no metadata."""
    import av

    with av.open(str(src)) as inp:
        frames = [f.to_image() for f in inp.decode(video=0)]
    width, height = (round(frames[0].width * scale) // 2 * 2, round(frames[0].height * scale) // 2 * 2)
    with av.open(str(dst), "w") as out:
        stream = out.add_stream("libx264", rate=6)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf)}
        for im in frames:
            frame = av.VideoFrame.from_image(im.resize((width, height), Image.Resampling.BICUBIC))
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def test_verify_finds_the_record_of_a_reencoded_video(tmp_path: Path, creds: Credentials) -> None:
    """The same for a clip: saved as MP4 with a manifest, then decoded, shrunk to 3/4 and encoded again with H.264 at
    a low quality (CRF 28; ffmpeg's default is 23)."""
    with registered(ShapesVideo):
        clip = aigc.load("video", "x", backend="shapes_test").generate("drift", seed=31, width=96, num_frames=8)
    [mp4] = clip.save(tmp_path / "clip.mp4", credentials=creds)
    _reencode_mp4(mp4, tmp_path / "shared.mp4", scale=0.75, crf=28)
    report = aigc.verify(tmp_path / "shared.mp4")
    assert report.metadata is None and report.c2pa is None
    assert report.watermark is not None and report.watermark.present
    assert report.watermark.key == clip.record.watermark()["key"]  # type: ignore[union-attr,index]
    assert report.record_source == "store" and report.record == clip.record.for_sample(0)  # type: ignore[union-attr]


def test_verify_audio_and_unmarked_files(tmp_path: Path) -> None:
    with registered(ToneAudio):
        res = aigc.load("audio", "x", backend="tone_test").generate("hum", seed=8, duration_s=2.5)
    [wav] = res.save(tmp_path / "hum.wav")
    wave, rate = reencode_audio(resample_audio(res.waveform, 16_000, 16_000), 16_000, fmt="OGG")
    import soundfile as sf

    sf.write(tmp_path / "shared.ogg", wave.T, rate)
    report = aigc.verify(tmp_path / "shared.ogg")
    assert report.watermark is not None and report.watermark.present and report.record_source == "store"
    assert report.record == aigc.Record.from_file(wav)
    Image.fromarray(np.full((80, 80, 3), 120, np.uint8)).save(tmp_path / "plain.png")
    plain = aigc.verify(tmp_path / "plain.png")
    assert plain.metadata is None and plain.c2pa is None and plain.record is None and not plain.ai_generated
    assert plain.watermark is not None and not plain.watermark.present
    with pytest.raises(ProvenanceError, match="no such file"):
        aigc.verify(tmp_path / "missing.png")


def test_verify_text(tmp_path: Path) -> None:
    """The embedded character-level model: a pasted copy tokenizes back to the tokens that were generated."""
    gen = aigc.load("text", device="cpu")
    res = gen.generate("ROMEO:", seed=[21, 22], max_new_tokens=120, min_new_tokens=120)
    res.save(tmp_path / "story.txt")
    own = aigc.verify(tmp_path / "story-1.txt")
    assert own.watermark is not None and own.watermark.present and own.record_source == "metadata"
    (tmp_path / "pasted.txt").write_text(res.texts[1], encoding="utf-8")
    pasted = aigc.verify(tmp_path / "pasted.txt")
    assert pasted.watermark is not None and pasted.watermark.present and pasted.record_source == "store"
    assert pasted.record is not None and pasted.record.sample_index == 1 and pasted.record.seeds == [21, 22]
    (tmp_path / "human.txt").write_text("A text nobody generated, long enough to be scored. " * 5)
    human = aigc.verify(tmp_path / "human.txt")
    assert human.watermark is None or not human.watermark.present


def test_cli_verify_and_credentials(sd64: Path, tmp_path: Path) -> None:
    env = dict(os.environ)
    run = [sys.executable, "-m", "aigc"]
    out = subprocess.run([*run, "credentials", "init", str(tmp_path / "cli-creds")], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0 and "untrusted" in out.stdout
    res = aigc.load("image", sd64, device="cpu").generate("a dog", seed=3, steps=2)
    [path] = res.save(tmp_path / "dog.png", credentials=tmp_path / "cli-creds")
    out = subprocess.run([*run, "verify", str(path), "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["c2pa"]["valid"] and report["watermark"]["present"] and report["record_source"] == "metadata"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "plain.png")
    out = subprocess.run([*run, "verify", str(tmp_path / "plain.png")], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 3 and "record:          not found" in out.stdout


# -- the policy through generators -----------------------------------------------------------------------
def test_watermark_policy_for_images(sd64: Path, tmp_path: Path) -> None:
    gen = aigc.load("image", sd64, device="cpu")
    batch = gen.generate(["a cat", "a dog"], seed=10, steps=2, deterministic=True)
    assert all(m is not None for m in batch.record.watermarks)  # type: ignore[union-attr]
    single = gen.generate("a dog", seed=11, steps=2)
    assert single.record.watermarks == [batch.record.watermarks[1]]  # type: ignore[union-attr]
    assert np.array_equal(np.asarray(single.images[0]), np.asarray(batch.images[1]))  # batch == single, marked
    off = gen.generate("a dog", seed=11, steps=2, watermark=False)
    assert off.record.watermarks == [] and not np.array_equal(np.asarray(off.images[0]),  # type: ignore[union-attr]
                                                              np.asarray(single.images[0]))
    [path] = single.save(tmp_path / "dog.png")
    again = aigc.replay(path)
    with Image.open(path) as im:
        assert np.array_equal(np.asarray(again.images[0]), np.asarray(im.convert("RGB")))  # type: ignore[attr-defined]
    small = aigc.generate("image", "an ankle boot", seed=1)  # the embedded 32x32 model: left as it is
    assert small.record.watermarks == []  # type: ignore[union-attr]
    marked = aigc.generate("image", "an ankle boot", seed=1, watermark=True)  # 32 px fits when asked for
    assert marked.record.watermarks[0] is not None  # type: ignore[union-attr]
    with registered(FakeImageGenerator):
        fake = aigc.load("image", "x", backend="fake")
        with pytest.raises(InvalidRequest, match="watermark"):
            fake.generate("a", seed=1, width=24, height=24, watermark=True)
        assert fake.generate("a", seed=1, width=24, height=24).record.watermarks == []  # type: ignore[union-attr]


def test_watermark_policy_for_audio_and_video(tmp_path: Path) -> None:
    with registered(ToneAudio, ShapesVideo):
        audio = aigc.load("audio", "x", backend="tone_test")
        assert audio.generate("a", seed=1, duration_s=1.2).record.watermarks == []  # type: ignore[union-attr]
        assert audio.generate("a", seed=1, duration_s=1.2, watermark=True).record.watermarks[0]  # type: ignore[union-attr]
        with pytest.raises(InvalidRequest, match="watermark"):
            audio.generate("a", seed=1, duration_s=0.5, watermark=True)
        video = aigc.load("video", "x", backend="shapes_test")
        clip = video.generate("a", seed=2, num_frames=4)
        assert clip.record.watermarks[0] is not None  # type: ignore[union-attr]
        from aigc.watermark import image

        assert image.detect_frames(clip.frames).key == clip.record.watermark()["key"]  # type: ignore[union-attr,index]
        assert video.generate("a", seed=2, width=48, num_frames=4).record.watermarks == []  # type: ignore[union-attr]


# -- safety flags ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sd_checked(models_dir: Path) -> Path:
    from aigc.testing import tiny_stable_diffusion

    return tiny_stable_diffusion(models_dir / "sd-checked", safety_checker=True)


def test_safety_flag_keeps_the_image(sd_checked: Path, models_dir: Path, tmp_path: Path) -> None:
    gen = aigc.load("image", sd_checked, device="cpu")
    flagged = gen.generate("a cat", seed=[1, 2], steps=2)
    unchecked = gen.generate("a cat", seed=[1, 2], steps=2, safety="off")
    blank = gen.generate("a cat", seed=[1, 2], steps=2, safety="blank")
    assert flagged.flags == [["nsfw"], ["nsfw"]] and flagged.record.flags == flagged.flags  # type: ignore[union-attr]
    assert unchecked.flags == [] and unchecked.record.flags == []  # type: ignore[union-attr]
    for a, b, c in zip(flagged.images, unchecked.images, blank.images, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b)) and np.asarray(a).std() > 0
        assert c.getextrema() == ((0, 0), (0, 0), (0, 0))
    path = flagged.save(tmp_path / "kept.png", remember=False)[0]
    assert aigc.Record.from_file(path).flags == [["nsfw"], ["nsfw"]]
    assert aigc.replay(path).flags == [["nsfw"]]
    from aigc.testing import tiny_stable_diffusion

    clean = aigc.load("image", tiny_stable_diffusion(models_dir / "sd-clean", safety_checker=False), device="cpu")
    assert clean.generate("a cat", seed=1, steps=2).flags == [[]]
    with pytest.raises(InvalidRequest, match="safety"):
        gen.generate("a cat", seed=1, steps=2, safety="maybe")


def test_old_diffusers_records_replay_with_blanking() -> None:
    """Before safety flags, diffusers blanked flagged images: an old record replays the same way."""
    record = aigc.Record(modality="image", backend="diffusers", model="m", request={"prompt": "a", "steps": 2},
                         seeds=[1], device="cpu", dtype="float32")
    assert record.to_request().safety == "blank"  # type: ignore[attr-defined]
    new = aigc.Record(modality="image", backend="diffusers", model="m", seeds=[1], device="cpu", dtype="float32",
                      request={"prompt": "a", "steps": 2, "safety": "flag"})
    assert new.to_request().safety == "flag"  # type: ignore[attr-defined]
