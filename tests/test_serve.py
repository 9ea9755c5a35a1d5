"""``aigc serve`` end to end: the real server on a loopback port, driven by the official ``openai`` client."""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
from PIL import Image

import aigc
from aigc.serve import ModelSpec, RunningServer, ServeConfig, ServeLimits, start
from aigc.testing import tiny_gpt2

KEY = "sk-test-0123456789"
CHAT = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Once upon a time"}]


@dataclass
class Reply:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


def http(method: str, url: str, *, body: bytes | None = None, json_body: Any = None,
         headers: dict[str, str] | None = None) -> Reply:
    """A plain HTTP call (urllib), for what the official client does not send."""
    headers = dict(headers or {})
    if json_body is not None:
        body = json.dumps(json_body).encode()
        headers.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return Reply(response.status, response.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, e.read())



@pytest.fixture(scope="module")
def long_gpt2_dir(models_dir: Path) -> Path:
    """A tiny GPT-2 with 1024 positions, so a request can decode long enough to be cancelled midway."""
    return tiny_gpt2(models_dir / "gpt2-long", positions=1024)


@pytest.fixture(scope="module")
def server(long_gpt2_dir: Path, t5_dir: Path) -> Iterator[RunningServer]:
    models = [ModelSpec(modality="text", model=str(long_gpt2_dir), id="gpt2", device="cpu"),
              ModelSpec(modality="text", model=str(t5_dir), id="t5", device="cpu"),
              ModelSpec(modality="text", device="cpu"),
              ModelSpec(modality="image", device="cpu"), ModelSpec(modality="audio", device="cpu"),
              ModelSpec(modality="video", device="cpu"),
              ModelSpec(modality="video", model="default", backend="cyclegan", id="shoes", device="cpu",
                        options={"temporal": False})]
    # a wide batching window, so that requests sent together are batched even on a busy machine
    with start(models, config=ServeConfig(port=0, api_key=KEY, batch_window_ms=400)) as running:
        yield running


@pytest.fixture
def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def gpt2_local(long_gpt2_dir: Path) -> aigc.Generator[aigc.TextRequest, aigc.TextResult]:
    return aigc.load("text", long_gpt2_dir, device="cpu", cache=False)


def _metric(server: RunningServer, name: str, **labels: str) -> float:
    text = http("GET", server.url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}(\{{.*\}})? (\S+)$", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            total += float(match.group(2))
    return total


def _replay_text(record: dict[str, Any], tmp_path: Path) -> aigc.TextResult:
    path = tmp_path / "served.json"
    path.write_text(json.dumps(record))
    result = aigc.replay(path)
    assert isinstance(result, aigc.TextResult)
    return result


# -- metadata, security -------------------------------------------------------------------------------------
def test_models_health_and_metrics(server: RunningServer, client: openai.OpenAI) -> None:
    models = {m.id: m for m in client.models.list().data}
    assert set(models) == {"gpt2", "t5", "text-default", "image-default", "audio-default", "video-default", "shoes"}
    assert models["gpt2"].model_extra["batching"] == "continuous"  # type: ignore[index]
    assert models["t5"].model_extra["batching"] == "sequential"  # type: ignore[index]
    assert "us-female" in models["audio-default"].model_extra["voices"]  # type: ignore[index]
    assert client.models.retrieve("gpt2").id == "gpt2"
    health = http("GET", server.url + "/health")  # open without a key: load balancers probe it
    assert health.status == 200 and health.json()["models"]["gpt2"]["queue"] == 0
    assert http("GET", server.url + "/metrics").status == 401
    assert "# TYPE aigc_queue_depth gauge" in http(
        "GET", server.url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text


def test_missing_or_wrong_key_is_refused_in_openai_shape(server: RunningServer) -> None:
    bad = openai.OpenAI(base_url=server.base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.models.list()
    assert e.value.code == "invalid_api_key"
    raw = http("POST", server.base_url + "/chat/completions", json_body={"model": "gpt2", "messages": CHAT})
    assert raw.status == 401
    assert set(raw.json()["error"]) == {"message", "type", "param", "code"}


# -- text -------------------------------------------------------------------------------------------------
def test_chat_streaming_and_not_give_the_local_result_and_replay(
        client: openai.OpenAI, gpt2_local: aigc.Generator[aigc.TextRequest, aigc.TextResult], tmp_path: Path) -> None:
    reply = client.chat.completions.create(model="gpt2", messages=CHAT, seed=11, max_tokens=24,  # type: ignore[arg-type]
                                           temperature=0.9)
    local = gpt2_local.generate(CHAT, seed=11, max_new_tokens=24, temperature=0.9)
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    assert reply.choices[0].message.content == local.text
    assert reply.choices[0].finish_reason == local.finish_reasons[0]
    assert reply.usage is not None and reply.usage.completion_tokens == len(local.token_ids[0])
    record = reply.model_extra["aigc_record"]  # type: ignore[index]
    assert record["seeds"] == [11] and record["model"].endswith("gpt2-long")
    assert _replay_text(record, tmp_path).text == local.text

    chunks = list(client.chat.completions.create(model="gpt2", messages=CHAT, seed=11, max_tokens=24,  # type: ignore
                                                 temperature=0.9, stream=True,
                                                 stream_options={"include_usage": True}))
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == local.text
    ends = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert ends == [local.finish_reasons[0]]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(local.token_ids[0])
    assert chunks[-1].model_extra["aigc_record"]["seeds"] == [11]  # type: ignore[index]


def test_completions_n3_with_seed_equal_single_requests(client: openai.OpenAI) -> None:
    batch = client.completions.create(model="gpt2", prompt="Shall I compare thee", n=3, seed=40, max_tokens=16)
    assert [c.index for c in batch.choices] == [0, 1, 2]
    assert batch.model_extra["aigc_record"]["seeds"] == [40, 41, 42]  # type: ignore[index]
    for i, choice in enumerate(batch.choices):
        single = client.completions.create(model="gpt2", prompt="Shall I compare thee", seed=40 + i, max_tokens=16)
        assert choice.text == single.choices[0].text
    assert len({c.text for c in batch.choices}) == 3
    # without a seed the server draws fresh ones and records them
    fresh = client.completions.create(model="gpt2", prompt="Hello", max_tokens=4)
    assert len(fresh.model_extra["aigc_record"]["seeds"]) == 1  # type: ignore[index]


def test_sixteen_concurrent_streams_give_the_sequential_outputs(server: RunningServer, client: openai.OpenAI) -> None:
    prompts = ["Once upon a time", "Hello world", "To be, or not to be", "今天天气真好，", "The quick brown fox",
               "Shall I compare thee", "床前明月光", "春眠不觉晓"]
    jobs = [(prompts[i % len(prompts)], 100 + i, 12 + 3 * (i % 5)) for i in range(16)]

    def ask(prompt: str, seed: int, max_tokens: int, chat: bool) -> str:
        own = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=120)
        if chat:
            stream = own.chat.completions.create(model="gpt2", messages=[{"role": "user", "content": prompt}],
                                                 seed=seed, max_tokens=max_tokens, stream=True)
            return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        return "".join(c.choices[0].text for c in own.completions.create(
            model="gpt2", prompt=prompt, seed=seed, max_tokens=max_tokens, stream=True) if c.choices)

    sequential = [ask(p, s, m, i % 2 == 0) for i, (p, s, m) in enumerate(jobs)]
    before = _metric(server, "aigc_batch_size_count", model="gpt2")
    singles = _metric(server, "aigc_batch_size_bucket", model="gpt2", le="1")
    concurrent: list[str | None] = [None] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def run(i: int) -> None:
        barrier.wait()
        concurrent[i] = ask(*jobs[i], i % 2 == 0)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert concurrent == sequential
    steps = _metric(server, "aigc_batch_size_count", model="gpt2") - before
    shared = steps - (_metric(server, "aigc_batch_size_bucket", model="gpt2", le="1") - singles)
    assert shared > 0.5 * steps, f"only {shared} of {steps} steps decoded more than one row"


def test_seq2seq_models_are_served_one_request_at_a_time(client: openai.OpenAI, t5_dir: Path) -> None:
    local = aigc.load("text", t5_dir, device="cpu", cache=False).generate("translate: hello", seed=3,
                                                                           max_new_tokens=10, num_outputs=2)
    served = client.completions.create(model="t5", prompt="translate: hello", seed=3, max_tokens=10, n=2)
    assert [c.text for c in served.choices] == local.texts
    stream = client.completions.create(model="t5", prompt="translate: hello", seed=3, max_tokens=10, stream=True)
    assert "".join(c.choices[0].text for c in stream if c.choices) == local.texts[0]


# -- images, speech, video -----------------------------------------------------------------------------------
def test_images_come_as_pngs_that_carry_their_record(client: openai.OpenAI, tmp_path: Path) -> None:
    reply = client.images.generate(model="image-default", prompt="an ankle boot", n=2, size="64x64",
                                   extra_body={"seed": 3, "steps": 2})
    assert len(reply.data or []) == 2 and reply.size == "64x64"
    assert reply.model_extra["aigc_record"]["seeds"] == [3, 4]  # type: ignore[index]
    for i, item in enumerate(reply.data or []):
        path = tmp_path / f"boot-{i}.png"
        path.write_bytes(base64.b64decode(item.b64_json or ""))
        record = aigc.Record.from_file(path)
        assert record.sample_index == i and record.seeds == [3, 4] and record.request["steps"] == 2
        again = aigc.replay(path)
        assert isinstance(again, aigc.ImageResult)
        served = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
        assert np.abs(np.asarray(again.images[0], dtype=np.int16) - served).max() <= 2
    url = client.images.generate(model="image-default", prompt="a sneaker", size="32x32", response_format="url",
                                 extra_body={"seed": 1, "steps": 2})
    head, _, b64 = (url.data or [])[0].url.partition(",")  # type: ignore[union-attr]
    assert head == "data:image/png;base64" and Image.open(io.BytesIO(base64.b64decode(b64))).size == (32, 32)


def test_image_requests_sent_together_share_one_call(server: RunningServer, client: openai.OpenAI) -> None:
    asks = [("an ankle boot", 21, 1), ("a sneaker", 30, 2), ("a handwritten 7", 40, 1)]
    calls = _metric(server, "aigc_batch_size_count", model="image-default")
    together: list[Any] = [None] * len(asks)
    barrier = threading.Barrier(len(asks))

    def ask(i: int) -> None:
        own = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=120)
        barrier.wait()
        prompt, seed, n = asks[i]
        together[i] = own.images.generate(model="image-default", prompt=prompt, n=n, size="32x32",
                                          extra_body={"seed": seed, "steps": 2})

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(asks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert _metric(server, "aigc_batch_size_count", model="image-default") - calls < len(asks), "no batching"
    for (prompt, seed, n), reply in zip(asks, together, strict=True):
        record = reply.model_extra["aigc_record"]
        assert record["request"]["prompt"] == prompt and record["seeds"] == list(range(seed, seed + n))
        alone = client.images.generate(model="image-default", prompt=prompt, n=n, size="32x32",
                                       extra_body={"seed": seed, "steps": 2})
        for a, b in zip(reply.data, alone.data, strict=True):
            pa, pb = (np.asarray(Image.open(io.BytesIO(base64.b64decode(x.b64_json))), dtype=np.int16) for x in (a, b))
            assert np.abs(pa - pb).max() <= 2  # batched vs alone: the backend's stated tolerance (2/255)


def test_image_edits_take_the_image_in_the_body(client: openai.OpenAI) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), "white").save(buf, format="PNG")
    with pytest.raises(openai.BadRequestError) as e:  # the embedded model does not do image-to-image
        client.images.edit(model="image-default", image=("in.png", buf.getvalue(), "image/png"), prompt="a bag")
    assert e.value.param == "image" and "not supported" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.images.edit(model="image-default", image=("in.png", b"not an image", "image/png"), prompt="a bag")
    assert e.value.param == "image"


def test_image_edits_run_image_to_image(sd_dir: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(buf, format="PNG")
    with start([ModelSpec(modality="image", model=str(sd_dir), id="sd", device="cpu")],
               config=ServeConfig(port=0)) as sd:
        client = openai.OpenAI(base_url=sd.base_url, api_key="unused", max_retries=0, timeout=120)
        reply = client.images.edit(model="sd", image=("red.png", buf.getvalue(), "image/png"), prompt="a dog",
                                   n=2, extra_body={"seed": 5, "steps": 2, "strength": 0.5})
        images = [Image.open(io.BytesIO(base64.b64decode(d.b64_json or ""))) for d in reply.data or []]
        assert [im.size for im in images] == [(32, 32), (32, 32)]
        record = reply.model_extra["aigc_record"]  # type: ignore[index]
        assert record["request"]["strength"] == 0.5 and record["seeds"] == [5, 6]
        assert record["request"]["init_image"] == {"in-memory image": "RGB 32x32"}  # pixels are not in a record
        with pytest.raises(openai.BadRequestError) as e:
            client.images.edit(model="sd", image=("red.png", buf.getvalue(), "image/png"), prompt="a dog",
                               extra_body={"strength": 2})
        assert e.value.param == "strength"


def test_speech_is_a_wav_that_replays(client: openai.OpenAI, tmp_path: Path) -> None:
    speech = client.audio.speech.create(model="audio-default", voice="us-female", input="say seven",
                                        response_format="wav", extra_body={"seed": 5})
    path = tmp_path / "seven.wav"
    speech.write_to_file(path)
    assert speech.response.headers["content-type"] == "audio/wav"
    record = aigc.Record.from_file(path)
    assert record.seeds == [5] and record.request["voice"] == "us-female"
    again = aigc.replay(path)
    assert isinstance(again, aigc.AudioResult)
    import soundfile as sf

    served, rate = sf.read(path, dtype="float32", always_2d=True)
    assert rate == again.sample_rate and np.abs(served.T - again.waveforms[0]).max() < 1e-6
    with pytest.raises(openai.BadRequestError) as e:
        client.audio.speech.create(model="audio-default", voice="alloy", input="say seven")
    assert e.value.param == "voice"


def test_videos_are_created_polled_and_downloaded(client: openai.OpenAI, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the client marks the videos API deprecated
        video = client.videos.create(model="video-default", prompt="a 3 moving left", extra_body={"seed": 2})
        assert video.status in ("queued", "in_progress", "completed") and video.id.startswith("video_")
        video = client.videos.poll(video.id, poll_interval_ms=50)
        assert video.status == "completed" and video.size == "32x32" and video.seconds == "2"
        content = client.videos.download_content(video.id)
        path = tmp_path / "three.mp4"
        content.write_to_file(path)
        assert aigc.Record.from_file(path).seeds == [2]
        again = aigc.replay(path)
        assert isinstance(again, aigc.VideoResult) and again.videos[0].shape == (16, 32, 32, 3)
        assert client.videos.delete(video.id).deleted
        with pytest.raises(openai.NotFoundError):
            client.videos.retrieve(video.id)


def test_videos_transform_an_uploaded_clip(server: RunningServer, client: openai.OpenAI, tmp_path: Path) -> None:
    """``input_video`` (aigc's extra, multipart): the CycleGAN translates the uploaded clip frame by frame, at the
    clip's own frame rate; bad uploads are refused naming the field."""
    grid = Image.open(Path(__file__).parent / "data" / "sandals_boots.png").convert("L")
    frames = [grid.crop((32 * c, 0, 32 * c + 32, 32)) for c in range(4)]  # four sandals
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=250, loop=0)
    headers = {"Authorization": f"Bearer {KEY}"}

    def post(name: str, data: bytes, mime: str) -> Reply:  # multipart form data, as a browser or curl sends it
        boundary = "aigc-test-boundary"
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                 for k, v in (("model", "shoes"), ("prompt", "an ankle boot"))]
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="input_video"; filename="{name}"\r\n'
                     f"Content-Type: {mime}\r\n\r\n".encode() + data + b"\r\n")
        return http("POST", server.base_url + "/videos", body=b"".join(parts) + f"--{boundary}--\r\n".encode(),
                    headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"})

    created = post("sandals.gif", buf.getvalue(), "image/gif")
    assert created.status == 200, created.text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        video = client.videos.poll(created.json()["id"], poll_interval_ms=50)
        assert video.status == "completed" and video.size == "32x32" and video.seconds == "1"  # 4 frames at 4 fps
        path = tmp_path / "boots.mp4"
        client.videos.download_content(video.id).write_to_file(path)
    from aigc._media.video import load_video

    got, fps = load_video(path)
    assert got.shape[0] == 4 and fps == pytest.approx(4.0)
    gen = aigc.load("image", "default", backend="cyclegan", device="cpu")
    for frame, shoe in zip(got, frames, strict=True):  # each frame as the image backend translates it (MP4-lossy)
        boot = np.asarray(gen.generate("an ankle boot", init_image=shoe).images[0].convert("L"), dtype=float)
        seen = frame.astype(float).mean(-1)
        assert np.abs(seen - boot).mean() < 0.5 * np.abs(seen - np.asarray(shoe, dtype=float)).mean()
    png = io.BytesIO()
    frames[0].save(png, format="PNG")
    long_clip = io.BytesIO()  # more frames than the server's max_video_frames (512); alternating, so none merge
    tiny = [Image.new("L", (2, 2), 255 * (i % 2)) for i in range(513)]
    tiny[0].save(long_clip, format="GIF", save_all=True, append_images=tiny[1:], duration=40)
    for data, mime, words in ((png.getvalue(), "image/png", "unsupported video format"),
                              (b"GIF89a not really", "image/gif", "not a readable"),
                              (long_clip.getvalue(), "image/gif", "more than this server's 512 frames")):
        bad = post("x", data, mime)
        assert bad.status == 400 and bad.json()["error"]["param"] == "input_video", bad.text
        assert words in bad.json()["error"]["message"]


# -- errors ---------------------------------------------------------------------------------------------------
def test_errors_are_openai_shaped_and_name_the_field(server: RunningServer, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.images.generate(model="image-default", prompt="an ankle boot", size="64 by 64")
    assert bad.value.param == "size"
    with pytest.raises(openai.BadRequestError) as bad:
        client.images.generate(model="image-default", prompt="an ankle boot", size="4096x4096")
    assert bad.value.param == "size" and "2048" in bad.value.message
    with pytest.raises(openai.BadRequestError) as bad:  # a size the model cannot draw, found by the backend
        client.images.generate(model="image-default", prompt="an ankle boot", size="40x40", extra_body={"steps": 1})
    assert bad.value.param == "size"
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4o", messages=CHAT)  # type: ignore[arg-type]
    assert missing.value.code == "model_not_found" and missing.value.param == "model"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="image-default", messages=CHAT)  # type: ignore[arg-type]
    assert bad.value.param == "model"
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model="gpt2", prompt="x", extra_body={"temprature": 0.5})
    assert bad.value.param == "temprature"
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model="gpt2", prompt="x", n=99)
    assert bad.value.param == "n"
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model="gpt2", prompt="x", logprobs=2)
    assert bad.value.param == "logprobs"
    with pytest.raises(openai.BadRequestError) as bad:  # the model's context, found while tokenizing
        client.completions.create(model="gpt2", prompt="word " * 300, max_tokens=1000)
    assert bad.value.param == "max_tokens"
    with pytest.raises(openai.BadRequestError) as bad:  # streaming: still a plain 400 before the first token
        client.chat.completions.create(model="gpt2", messages=[{"role": "user", "content": "x " * 600}],
                                       max_tokens=1000, stream=True)
    assert bad.value.param == "max_tokens"
    raw = http("POST", server.base_url + "/completions", body=b"{not json", headers={
        "Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert raw.status == 400 and raw.json()["error"]["code"] == "invalid_json"


# -- back-pressure and cancellation ---------------------------------------------------------------------------
def test_a_full_queue_answers_429_with_retry_after(gpt2_local: aigc.Generator[aigc.TextRequest, aigc.TextResult],
                                                   ) -> None:
    config = ServeConfig(port=0, max_queue=1, max_concurrent=1, limits=ServeLimits(max_body_bytes=4096))
    with start({"gpt2": gpt2_local}, config=config) as small:
        client = openai.OpenAI(base_url=small.base_url, api_key="unused", max_retries=0, timeout=120)
        running = client.completions.create(model="gpt2", prompt="Once upon a time", seed=1, max_tokens=900,
                                            stream=True)
        next(iter(running))  # the first request is decoding: it holds the one running place
        waiting: list[Any] = []
        thread = threading.Thread(target=lambda: waiting.append(client.completions.create(
            model="gpt2", prompt="Hello", seed=2, max_tokens=5)))
        thread.start()
        deadline = time.monotonic() + 30
        while http("GET", small.url + "/health").json()["models"]["gpt2"]["queue"] < 1:
            assert time.monotonic() < deadline, "the second request never queued"
            time.sleep(0.01)
        with pytest.raises(openai.RateLimitError) as full:
            client.completions.create(model="gpt2", prompt="Hi", max_tokens=5)
        assert full.value.code == "queue_full"
        assert int(full.value.response.headers["retry-after"]) >= 1
        running.close()  # leaving frees the place: the waiting request runs
        thread.join(60)
        assert waiting and waiting[0].choices[0].finish_reason in ("stop", "length")
        big = http("POST", small.base_url + "/completions", json_body={"model": "gpt2", "prompt": "x" * 5000})
        assert big.status == 413 and big.json()["error"]["code"] == "request_too_large"


def _settled_steps(server: RunningServer, cancelled_before: float) -> float:
    deadline = time.monotonic() + 30
    while _metric(server, "aigc_cancelled_total", model="gpt2") <= cancelled_before:
        assert time.monotonic() < deadline, "the server never noticed the client left"
        time.sleep(0.02)
    return _metric(server, "aigc_decode_steps_total", model="gpt2")


def test_a_client_that_leaves_a_stream_stops_decoding(server: RunningServer, client: openai.OpenAI) -> None:
    steps_before = _metric(server, "aigc_decode_steps_total", model="gpt2")
    cancelled = _metric(server, "aigc_cancelled_total", model="gpt2")
    stream = client.completions.create(model="gpt2", prompt="Once upon a time", seed=1, max_tokens=1000,
                                       stream=True, extra_body={"min_tokens": 1000})
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    steps = _settled_steps(server, cancelled)
    time.sleep(0.3)
    assert _metric(server, "aigc_decode_steps_total", model="gpt2") == steps, "decoding went on"
    assert steps - steps_before < 1000


def test_a_client_that_times_out_stops_decoding(server: RunningServer) -> None:
    impatient = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=0.5)
    steps_before = _metric(server, "aigc_decode_steps_total", model="gpt2")
    cancelled = _metric(server, "aigc_cancelled_total", model="gpt2")
    with pytest.raises(openai.APITimeoutError):
        impatient.completions.create(model="gpt2", prompt="Hello", seed=2, max_tokens=1000,
                                     extra_body={"min_tokens": 1000})
    steps = _settled_steps(server, cancelled)
    time.sleep(0.3)
    assert _metric(server, "aigc_decode_steps_total", model="gpt2") == steps
    assert steps - steps_before < 1000


def test_requests_over_the_time_limit_are_cancelled(gpt2_local: aigc.Generator[aigc.TextRequest, aigc.TextResult],
                                                    ) -> None:
    with start({"gpt2": gpt2_local}, config=ServeConfig(port=0, timeout_s=0.3)) as strict:
        client = openai.OpenAI(base_url=strict.base_url, api_key="unused", max_retries=0)
        with pytest.raises(openai.InternalServerError) as late:
            client.completions.create(model="gpt2", prompt="Hello", max_tokens=1000, extra_body={"min_tokens": 1000})
        assert late.value.status_code == 504 and late.value.code == "timeout"


@pytest.mark.slow
def test_the_client_example_runs(server: RunningServer, tmp_path: Path) -> None:
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "examples" / "serve_client.py"
    done = subprocess.run([sys.executable, str(script), "--base-url", server.base_url, "--api-key", KEY,
                           "--chat-model", "gpt2", "--steps", "2"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "replayed locally, same text: True" in done.stdout
    assert sorted(p.name for p in (tmp_path / "out" / "serve_client").iterdir()) == [
        "boot-0.png", "boot-1.png", "reply.json", "seven.wav"]


def test_cors_is_off_unless_origins_are_given(server: RunningServer,
                                              gpt2_local: aigc.Generator[aigc.TextRequest, aigc.TextResult]) -> None:
    origin = "http://localhost:3000"
    auth = {"Authorization": f"Bearer {KEY}", "Origin": origin}
    plain = urllib.request.urlopen(urllib.request.Request(server.base_url + "/models", headers=auth))
    assert plain.headers.get("access-control-allow-origin") is None
    config = ServeConfig(port=0, api_key=KEY, cors_origins=(origin,))
    with start({"gpt2": gpt2_local}, config=config) as open_to_app:
        preflight = urllib.request.Request(open_to_app.base_url + "/chat/completions", method="OPTIONS", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})
        with urllib.request.urlopen(preflight) as answer:  # no key needed to ask
            assert answer.status == 200 and answer.headers["access-control-allow-origin"] == origin
        with urllib.request.urlopen(urllib.request.Request(open_to_app.base_url + "/models", headers=auth)) as r:
            assert r.headers["access-control-allow-origin"] == origin
        assert http("GET", open_to_app.base_url + "/models", headers={"Origin": origin}).status == 401


@pytest.mark.slow
def test_the_command_line_serves_until_interrupted(long_gpt2_dir: Path, tmp_path: Path) -> None:
    import signal
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "aigc", "serve", f"text={long_gpt2_dir},id=gpt2,device=cpu",
                             "--port", str(port), "--threads", "1", "--max-queue", "4"],
                            env={**__import__("os").environ, "AIGC_API_KEY": "from-env"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if http("GET", f"http://127.0.0.1:{port}/health").status == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="from-env", max_retries=0)
        assert client.completions.create(model="gpt2", prompt="Hi", seed=1, max_tokens=3).usage.completion_tokens == 3
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-2000:]
    assert re.search(r'"POST /v1/completions" 200 .* model=gpt2 .* tokens=3', out), out[-2000:]
