"""Human evaluation (aigc eval human): matching outputs by their records, the statistics against hand-computed
values, the votes' durability when the server is killed, and a real browser (Debian's chromium, headless,
driven by Selenium through /usr/bin/chromedriver) voting through a comparison with the keyboard."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import aigc
from aigc.errors import InvalidRequest
from aigc.evaluate import human

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["a sneaker", "an ankle boot"]
XSS = '<img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script> & "quotes"'


# ------------------------------------------------------------------------------------------- outputs to compare

def _save_images(folder: Path, backend: str, **params: Any) -> None:
    gen = aigc.load("image", "default", backend=backend, device="cpu")
    folder.mkdir(parents=True)
    for i, prompt in enumerate(PROMPTS):
        gen.generate(prompt, seed=0, num_outputs=2, **params).save(folder / f"p{i}.png")


@pytest.fixture(scope="module")
def image_systems(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three systems with real outputs of the embedded models: the GAN, the GAN at truncation 0 (every seed gives
    the class's mean image) and the VAE; 2 prompts x 2 seeds each, so 4 items and 12 comparisons."""
    root = tmp_path_factory.mktemp("systems")
    _save_images(root / "gan", "gan")
    _save_images(root / "gan_mean", "gan", truncation=0.0)
    _save_images(root / "vae", "vae")
    return [root / "gan", root / "gan_mean", root / "vae"]


@pytest.fixture(scope="module")
def text_systems(tmp_path_factory: pytest.TempPathFactory, gpt2_dir: Path) -> list[Path]:
    """Two text systems (the tiny random GPT-2 at two temperatures) whose prompt is hostile HTML."""
    root = tmp_path_factory.mktemp("text-systems")
    gen = aigc.load("text", gpt2_dir, device="cpu")
    folders = []
    for temperature in (0.7, 1.0):
        folder = root / f"gpt2_t{temperature}"
        folder.mkdir()
        gen.generate(XSS, seed=5, max_new_tokens=6, num_outputs=2, temperature=temperature).save(folder / "out.txt")
        folders.append(folder)
    return folders


@pytest.fixture(scope="module")
def media_systems(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Audio and video: two tiny mel-speech models (WAV) and the procedural sprite video at two frame rates (MP4),
    one folder per system holding both modalities."""
    from aigc.testing import tiny_mel_speech

    root = tmp_path_factory.mktemp("media-systems")
    video = aigc.load("video", "default", backend="sprites", device="cpu")
    folders = []
    for i, fps in enumerate((8, 12)):
        folder = root / f"system{i}"
        speech = aigc.load("audio", tiny_mel_speech(root / f"mel{i}", seed=i), device="cpu")
        speech.generate("say seven", seed=0).save(folder / "seven.wav")
        video.generate("a 3 moving left", seed=0, fps=fps).save(folder / "three.mp4")
        folders.append(folder)
    return folders


# ------------------------------------------------------------------------------------------------- the statistics

def test_wilson_interval_by_hand() -> None:
    # k = 8, n = 10, z = 1.96: centre (0.8 + 1.9208/10) / 1.38416 = 0.71676; half = 1.96/1.38416 *
    # sqrt(0.016 + 0.0096040) = 0.22656 -> [0.4902, 0.9433]
    lo, hi = human.wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4)
    assert hi == pytest.approx(0.9433, abs=1e-4)
    lo, hi = human.wilson_interval(0, 4)  # no successes: [0, z^2/(n+z^2)] = [0, 3.8415/7.8415]
    assert lo == 0.0
    assert hi == pytest.approx(3.8415 / 7.8415, abs=1e-4)
    assert human.wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(InvalidRequest):
        human.wilson_interval(5, 3)


def test_bradley_terry_by_hand() -> None:
    # two systems: the MLE is theta_0 - theta_1 = log(wins_0 / wins_1)
    scores, reg = human.bradley_terry([[0, 3], [1, 0]])
    assert not reg
    assert scores[0] - scores[1] == pytest.approx(math.log(3), abs=1e-8)
    assert sum(scores) == pytest.approx(0, abs=1e-12)
    # a cycle A>B 2:1, B>C 2:1, C>A 2:1: by symmetry every strength is equal
    scores, _ = human.bradley_terry([[0, 2, 1], [1, 0, 2], [2, 1, 0]])
    assert scores == pytest.approx([0, 0, 0], abs=1e-8)
    # A beats B 2:1, B beats C 2:1, A and C never met. With p_B = 1: p_A / (p_A + 1) = 2/3 gives p_A = 2, and
    # p_C = 1/2 the same way, so theta = log(2, 1, 1/2) - mean = (+log 2, 0, -log 2)
    scores, _ = human.bradley_terry([[0, 2, 0], [1, 0, 2], [0, 1, 0]])
    assert scores == pytest.approx([math.log(2), 0, -math.log(2)], abs=1e-7)
    # the likelihood equations hold on a random-looking matrix: wins_i = sum_j n_ij p_i / (p_i + p_j)
    wins = [[0, 5, 3, 2], [2, 0, 4, 1], [4, 3, 0, 2], [1, 2, 3, 0]]
    scores, _ = human.bradley_terry(wins)
    p = [math.exp(s) for s in scores]
    for i in range(4):
        expected = sum((wins[i][j] + wins[j][i]) * p[i] / (p[i] + p[j]) for j in range(4) if j != i)
        assert sum(wins[i]) == pytest.approx(expected, abs=1e-6)


def test_bradley_terry_regularises_a_system_that_never_lost() -> None:
    scores, reg = human.bradley_terry([[0, 3, 2], [0, 0, 1], [0, 1, 0]])
    assert reg and all(math.isfinite(s) for s in scores) and scores[0] == max(scores)
    with pytest.raises(InvalidRequest, match="never compared"):
        human.bradley_terry([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]])


def test_bradley_terry_bootstrap_is_seeded_and_covers_the_fit() -> None:
    pairs = [(0, 1)] * 6 + [(1, 0)] * 2 + [(1, 2)] * 5 + [(2, 1)] * 3 + [(0, 2)] * 4 + [(2, 0)] * 1
    a = human.bradley_terry_bootstrap(pairs, 3, resamples=300, seed=1)
    b = human.bradley_terry_bootstrap(pairs, 3, resamples=300, seed=1)
    c = human.bradley_terry_bootstrap(pairs, 3, resamples=300, seed=2)
    assert a == b and a != c
    wins = [[0, 6, 4], [2, 0, 5], [1, 3, 0]]
    fit, _ = human.bradley_terry(wins)
    for (lo, hi), s in zip(a, fit, strict=True):
        assert lo < s < hi


def test_cohen_kappa_by_hand() -> None:
    # the textbook table: yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> p_o = 0.7, p_e = 0.5*0.6 + 0.5*0.4 = 0.5,
    # kappa = 0.2 / 0.5 = 0.4
    first = ["y"] * 25 + ["n"] * 25
    second = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert human.cohen_kappa(first, second) == pytest.approx(0.4)
    assert human.cohen_kappa(["a", "b", "tie"], ["a", "b", "tie"]) == pytest.approx(1.0)
    assert math.isnan(human.cohen_kappa(["a", "a"], ["a", "a"]))


def test_fleiss_kappa_by_hand() -> None:
    # Fleiss (1971) as worked on Wikipedia: 10 items, 14 raters, 5 categories -> P = 0.378, P_e = 0.213, 0.210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert human.fleiss_kappa(table) == pytest.approx(0.20993, abs=1e-4)
    # items [3,0], [0,3], [2,1]: P_i = 1, 1, 1/3 -> 7/9; p = (5/9, 4/9) -> P_e = 41/81; kappa = 22/40
    assert human.fleiss_kappa([[3, 0], [0, 3], [2, 1]]) == pytest.approx(0.55)
    # two raters: Fleiss' formula differs from Cohen's only in pooling the marginals
    with pytest.raises(InvalidRequest):
        human.fleiss_kappa([[1, 0]])


# ------------------------------------------------------------------------------------------- matching and errors

def test_items_are_matched_by_prompt_and_seed(image_systems: list[Path]) -> None:
    tasks = human.plan(image_systems)
    assert len(tasks) == 3 * 4
    for t in tasks:
        assert t.a.system < t.b.system
        assert aigc.Record.from_file(t.a.path).for_sample(0) is not None
        ra, rb = aigc.Record.from_file(t.a.path), aigc.Record.from_file(t.b.path)
        assert ra.to_request().prompt == rb.to_request().prompt == t.prompt
        assert ra.to_request().seed == rb.to_request().seed == t.seed
    assert {(t.prompt, t.seed) for t in tasks} == {(p, s) for p in PROMPTS for s in (0, 1)}


def test_bad_folders_get_typed_errors(image_systems: list[Path], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidRequest, match="empty") as e:
        human.plan([image_systems[0], empty])
    assert e.value.field == "DIR" and e.value.value == str(empty)
    with pytest.raises(InvalidRequest, match="not a folder"):
        human.plan([image_systems[0], tmp_path / "missing"])
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("no record here")
    with pytest.raises(InvalidRequest, match="no output saved by aigc"):
        human.plan([image_systems[0], plain])
    other = tmp_path / "other"
    other.mkdir()
    aigc.load("image", "default", backend="gan").generate("a bag", seed=9).save(other / "bag.png")
    with pytest.raises(InvalidRequest, match="prompt and seed") as e:
        human.plan([*image_systems, other])
    assert e.value.value == str(other)  # the folder that matches none of the others
    twin = tmp_path / "x" / "gan"
    shutil.copytree(image_systems[0], twin)
    with pytest.raises(InvalidRequest, match="same name"):
        human.plan([image_systems[0], twin])
    with pytest.raises(InvalidRequest, match="two systems"):
        human.plan([image_systems[0]])


def test_cli_errors_name_the_argument(image_systems: list[Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from aigc._cli import main

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        code = main(["eval", "human", *map(str, image_systems[:2]), "--port", str(port), "--db",
                     str(tmp_path / "v.sqlite")])
    finally:
        taken.close()
    assert code == 1
    err = capsys.readouterr().err
    assert f"--port={port}" in err and "another --port" in err
    assert main(["eval", "human", str(image_systems[0])]) == 1
    assert "DIR=" in capsys.readouterr().err
    assert main(["eval", "human", "--report", str(tmp_path / "nope.sqlite")]) == 1
    assert "no such database" in capsys.readouterr().err
    assert main(["eval", "human", *map(str, image_systems[:2]), "--question", " "]) == 1
    assert "--question=" in capsys.readouterr().err


# -------------------------------------------------------------------------------- the app, through Starlette

def test_layout_is_seeded_recorded_and_blind(image_systems: list[Path], tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    study = human.open_study(image_systems, db=tmp_path / "v.sqlite", question="Which is the better shoe?", seed=3)
    again = human.open_study(image_systems, db=tmp_path / "v.sqlite", question="Which is the better shoe?", seed=3)
    assert study.order("alice") == again.order("alice") != study.order("bob")
    sides = [study.shown("alice", t).swapped for t in study.tasks]
    assert sides == [again.shown("alice", t).swapped for t in study.tasks]
    assert 0 < sum(sides) < len(sides)  # both layouts occur
    client = TestClient(human.build_app(study), base_url="http://127.0.0.1:8600")
    page = client.get("/api/next", params={"rater": "alice"}).json()
    assert page["total"] == 12 and page["done"] == 0
    text = json.dumps(page)
    for system in ("gan", "vae", "gan_mean"):
        assert f'"{system}"' not in text and f"/{system}/" not in text  # the page never learns which is which
    shown = study.shown("alice", page["task"])
    r = client.post("/api/vote", json={"rater": "alice", "task": page["task"], "choice": "left", "elapsed_ms": 900})
    assert r.status_code == 200 and r.json()["done"] == 1
    (vote,) = study.store.votes()
    assert (vote.left_system, vote.right_system, vote.winner) == (shown.left, shown.right, shown.left)
    # the image served on the left is the left system's file
    img = client.get(page["left"]["url"])
    assert img.status_code == 200 and img.content == shown.output("left").read_bytes()
    assert img.headers["content-type"] == "image/png"


def test_app_refuses_bad_requests(image_systems: list[Path], tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    study = human.open_study(image_systems, db=tmp_path / "v.sqlite")
    client = TestClient(human.build_app(study), base_url="http://127.0.0.1:8600")
    task = client.get("/api/next", params={"rater": "al"}).json()["task"]
    assert client.get("/api/next", params={"rater": " "}).status_code == 400
    assert client.post("/api/vote", json={"rater": "al", "task": task, "choice": "maybe"}).status_code == 400
    assert client.post("/api/vote", json={"rater": "al", "task": 99999, "choice": "left"}).status_code == 400
    # a cross-site form post (no JSON content type) is refused
    assert client.post("/api/vote", content=json.dumps({"rater": "al", "task": task, "choice": "left"}),
                       headers={"content-type": "text/plain"}).status_code == 415
    # no path traversal: only the tasks' own files, by task id and side
    for url in ("/media/1/../../etc/passwd", "/media/1/%2e%2e%2fetc%2fpasswd", "/static/..%2f_app.py",
                "/media/1/up?rater=al", "/static/index.html"):
        assert client.get(url).status_code == 404, url
    # a file moved out of its folder (a doctored database) is not served
    with sqlite3.connect(tmp_path / "v.sqlite") as db:
        db.execute("UPDATE tasks SET path_a = ?, path_b = ?", ("/etc/passwd", "/etc/passwd"))
    with human.VoteStore(tmp_path / "v.sqlite") as store:
        tasks = {i: store.task(i) for i in study.tasks}
    assert all(t is not None and t.a.path.as_posix() == "/etc/passwd" for t in tasks.values())
    doctored = human.Study(study.store, tasks, question=study.question, seed=study.seed,  # type: ignore[arg-type]
                           roots=study.roots)
    client = TestClient(human.build_app(doctored), base_url="http://127.0.0.1:8600")
    assert client.get(f"/media/{task}/left", params={"rater": "al"}).status_code == 404
    # DNS rebinding: a foreign Host header is refused
    assert TestClient(human.build_app(study), base_url="http://evil.example").get("/").status_code == 400
    assert study.store.votes() == []


def test_text_outputs_are_sent_as_data(text_systems: list[Path], tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    study = human.open_study(text_systems, db=tmp_path / "v.sqlite")
    client = TestClient(human.build_app(study), base_url="http://127.0.0.1:8600")
    page = client.get("/api/next", params={"rater": "x"}).json()
    assert page["prompt"] == XSS and page["left"]["kind"] == "text"
    shown = study.shown("x", page["task"])
    for side in ("left", "right"):
        assert page[side]["text"] == shown.output(side).read_text(encoding="utf-8")
    index = client.get("/")
    assert "Content-Security-Policy" in index.headers and "script-src 'self'" in index.headers[
        "Content-Security-Policy"]


def test_audio_and_video_are_served_for_players(media_systems: list[Path], tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    study = human.open_study(media_systems, db=tmp_path / "v.sqlite")
    assert sorted(t.a.kind for t in study.tasks.values()) == ["audio", "video"]
    client = TestClient(human.build_app(study), base_url="http://127.0.0.1:8600")
    seen = set()
    for _ in range(2):
        page = client.get("/api/next", params={"rater": "r"}).json()
        kind = page["left"]["kind"]
        seen.add(kind)
        r = client.get(page["right"]["url"], headers={"Range": "bytes=0-99"})  # players seek with ranges
        assert r.status_code == 206 and len(r.content) == 100
        assert r.headers["content-type"] == {"audio": "audio/wav", "video": "video/mp4"}[kind]
        client.post("/api/vote", json={"rater": "r", "task": page["task"], "choice": "tie"})
    assert seen == {"audio", "video"}


def test_undo_takes_back_the_newest_vote(image_systems: list[Path], tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    study = human.open_study(image_systems, db=tmp_path / "u.sqlite")
    client = TestClient(human.build_app(study), base_url="http://127.0.0.1:8600")
    nothing = client.post("/api/undo", json={"rater": "r"})
    assert nothing.status_code == 400 and nothing.json()["field"] == "undo"
    first = client.get("/api/next", params={"rater": "r"}).json()
    second = client.post("/api/vote", json={"rater": "r", "task": first["task"], "choice": "left"}).json()
    third = client.post("/api/vote", json={"rater": "r", "task": second["task"], "choice": "tie"}).json()
    assert third["done"] == 2
    back = client.post("/api/undo", json={"rater": "r"}).json()
    assert back["undone"] == second["task"] and back["task"] == second["task"] and back["done"] == 1
    assert back["left"] == second["left"] and back["right"] == second["right"]  # the same layout as before
    assert [(v.task_id, v.choice) for v in study.store.votes()] == [(first["task"], "left")]
    assert client.post("/api/vote", json={"rater": "r", "task": second["task"], "choice": "right"}).json()["done"] == 2
    assert [(v.task_id, v.choice) for v in study.store.votes()] == [(first["task"], "left"), (second["task"], "right")]
    other = client.post("/api/undo", json={"rater": "someone else"})  # only one's own votes
    assert other.status_code == 400 and len(study.store.votes()) == 2
    assert client.post("/api/undo", content=b"rater=r").status_code == 415


def test_frame_folders_are_shown_as_animated_gifs(tmp_path: Path) -> None:
    """A video saved as a folder of PNG frames (``result.save("clip")``) is an item too, sent as a GIF."""
    from PIL import Image
    from starlette.testclient import TestClient

    video = aigc.load("video", "default", backend="sprites", device="cpu")
    folders = []
    for fps in (5, 10):  # GIF durations are whole centiseconds: 200 and 100 ms
        folder = tmp_path / f"fps{fps}"
        video.generate("a 3 moving left", seed=0, fps=fps).save(folder / "three")
        folders.append(folder)
    study = human.open_study(folders, db=tmp_path / "f.sqlite")
    (task,) = study.tasks.values()
    assert task.a.kind == task.b.kind == "frames" and task.a.path.is_dir()
    client = TestClient(human.build_app(study), base_url="http://127.0.0.1:8600")
    page = client.get("/api/next", params={"rater": "r"}).json()
    assert page["left"]["kind"] == page["right"]["kind"] == "image"
    durations = set()
    for side in ("left", "right"):
        r = client.get(page[side]["url"])
        assert r.status_code == 200 and r.headers["content-type"] == "image/gif"
        with Image.open(io.BytesIO(r.content)) as gif:
            assert gif.n_frames == 16 and gif.size == (32, 32)
            durations.add(gif.info["duration"])
    assert durations == {200, 100}  # each at the frame rate saved with its frames


def test_report_and_csv(tmp_path: Path, image_systems: list[Path]) -> None:
    study = human.open_study(image_systems, db=tmp_path / "v.sqlite", question="Q?")
    # two raters, every comparison: both prefer the VAE, then the GAN (not the systems' alphabetical order, so
    # the outcomes "a" and "b" both occur); bob says "tie" on every fourth
    rank = {"vae": 0, "gan": 1, "gan_mean": 2}
    for rater in ("alice", "bob"):
        for n, task_id in enumerate(study.order(rater)):
            shown = study.shown(rater, task_id)
            best = min(shown.left, shown.right, key=rank.__getitem__)
            choice = "tie" if rater == "bob" and n % 4 == 0 else ("left" if best == shown.left else "right")
            study.vote(rater, task_id, choice)
    (rep,) = human.report(tmp_path / "v.sqlite", resamples=200)
    by = {s.system: s for s in rep.systems}
    assert by["vae"].losses == 0 and by["gan_mean"].wins == 0
    assert by["vae"].wins + by["vae"].ties == 16  # 8 comparisons x 2 raters
    assert by["vae"].ci == human.wilson_interval(by["vae"].wins, by["vae"].wins)
    assert rep.systems[0].system == "vae"
    assert rep.bt_regularised and by["vae"].bt > by["gan"].bt > by["gan_mean"].bt  # type: ignore[operator]
    assert rep.agreement is not None and rep.agreement["method"] == "cohen"
    votes = study.store.votes()
    alice = {v.task_id: v.outcome for v in votes if v.rater == "alice"}
    bob = {v.task_id: v.outcome for v in votes if v.rater == "bob"}
    expected = human.cohen_kappa([alice[t] for t in sorted(alice)], [bob[t] for t in sorted(alice)])
    assert rep.agreement["kappa"] == pytest.approx(expected) and 0 < expected < 1
    text = str(rep)
    assert "Bradley-Terry" in text and "Cohen's kappa" in text and "Q?" in text
    csv_text = human.export_csv(tmp_path / "v.sqlite")
    lines = csv_text.splitlines()
    assert lines[0].startswith("vote_id,created,rater,question,prompt,seed") and len(lines) == 1 + 24
    # a third rater makes it Fleiss
    study.vote("carol", study.order("carol")[0], "both_bad")
    (rep,) = human.report(tmp_path / "v.sqlite", resamples=50)
    assert rep.agreement is not None and rep.agreement["method"] == "fleiss"


def test_csv_defuses_formulas(tmp_path: Path, image_systems: list[Path]) -> None:
    from aigc.evaluate.human._report import _cell

    assert _cell("=HYPERLINK(\"http://x\")") == "'=HYPERLINK(\"http://x\")"
    assert _cell("a sneaker") == "a sneaker" and _cell(-3) == "-3"


# ------------------------------------------------------------------------------------- a killed server loses none

def _start_cli(args: list[str], cwd: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "aigc", "eval", "human", *args, "--port", "0"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "http://" not in line:
        proc.kill()
        raise AssertionError(f"the server did not start: {line}{proc.stderr.read() if proc.stderr else ''}")
    url = next(w for w in line.split() if w.startswith("http://"))
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).read()
            return proc, url
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def test_kill_9_loses_no_recorded_vote(image_systems: list[Path], tmp_path: Path) -> None:
    db = tmp_path / "votes.sqlite"
    proc, url = _start_cli([*map(str, image_systems), "--db", str(db)], tmp_path)
    recorded = []
    try:
        page = json.loads(urllib.request.urlopen(url + "api/next?rater=k", timeout=30).read())
        for choice in ("left", "right", "tie", "both_bad", "left", "right", "left"):
            task = page["task"]
            page = _post(url + "api/vote", {"rater": "k", "task": task, "choice": choice})
            recorded.append((task, choice))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT task_id, choice FROM votes WHERE rater = 'k' ORDER BY id").fetchall()
    assert rows == recorded
    # and the rater resumes where they stopped, from a new server on the same database
    proc, url = _start_cli([*map(str, image_systems), "--db", str(db)], tmp_path)
    try:
        page = json.loads(urllib.request.urlopen(url + "api/next?rater=k", timeout=30).read())
        assert page["done"] == 7 and page["task"] not in {t for t, _ in recorded}
    finally:
        proc.terminate()
        proc.wait(30)


# ---------------------------------------------------------------------------------------------- a real browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _install_chromium() -> None:
    """On a fresh Debian machine as root (CI, a container), install the browser the way ``.ci/run`` does, so
    that the README's test command works there on its own; elsewhere the fixture fails with the fix."""
    if not (hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")):
        return
    print("installing Debian's chromium and chromium-driver for the browser tests (apt-get)", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium", "chromium-driver"]):
        subprocess.run(cmd, env=env, check=False, stdout=subprocess.DEVNULL, timeout=900)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium from Debian's chromium package, driven by Selenium through its chromedriver (given
    explicitly, so Selenium Manager never downloads a browser)."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        _install_chromium()
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail("the browser test needs Debian's chromium and chromedriver. Fix: apt-get install -y chromium "
                    "chromium-driver (.ci/run does this where they are missing)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,900", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _wait(driver: Any, condition: Any, timeout: float = 15) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def _log_in(driver: Any, url: str, name: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.get(url)
    field = driver.find_element(By.ID, "rater")
    field.clear()
    field.send_keys(name, Keys.ENTER)
    _wait(driver, lambda d: d.find_element(By.ID, "main").is_displayed())


def _press(driver: Any, key: str, expect_done: int) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(key).perform()
    _wait(driver, lambda d: d.execute_script("return document.body.dataset.done") == str(expect_done))


@pytest.mark.slow
def test_browser_votes_with_the_keyboard(browser: Any, image_systems: list[Path], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    db = tmp_path / "votes.sqlite"
    question = "Which looks more like the prompt?"
    proc, url = _start_cli([*map(str, image_systems), "--db", str(db), "--question", question, "--seed", "7"],
                           tmp_path)
    keys = {"left": Keys.ARROW_LEFT, "right": Keys.ARROW_RIGHT, "tie": "t", "both_bad": "b"}
    try:
        _log_in(browser, url, "alice")
        assert browser.find_element(By.ID, "question").text == question
        assert browser.find_element(By.ID, "progress-text").text == "0 / 12 done"
        images = browser.find_elements(By.CSS_SELECTOR, "#pair img")
        assert len(images) == 2
        _wait(browser, lambda d: all(d.execute_script("return arguments[0].complete && arguments[0].naturalWidth",
                                                      im) for im in images))
        if os.environ.get("AIGC_HUMAN_EVAL_SCREENSHOT"):  # docs/human_eval.png is made this way
            browser.save_screenshot(os.environ["AIGC_HUMAN_EVAL_SCREENSHOT"])
        # alice: the GAN over everything, gan_mean over the VAE -- read from the page's prompt and the server's
        # layout for her (the page itself never says which system is where)
        study = human.open_study(image_systems, db=tmp_path / "scratch.sqlite", seed=7)
        rank = {"gan": 0, "gan_mean": 1, "vae": 2}
        pressed = []
        for n in range(6):
            task = study.order("alice")[n]
            shown = study.shown("alice", task)
            assert browser.find_element(By.ID, "prompt").text == shown.task.prompt
            best = min(shown.left, shown.right, key=rank.__getitem__)
            choice = "left" if best == shown.left else "right"
            _press(browser, keys[choice], n + 1)
            if n == 5:  # she takes her 6th vote back with U: the same comparison comes back, and she votes again
                _press(browser, "u", n)
                assert browser.find_element(By.ID, "prompt").text == shown.task.prompt
                with sqlite3.connect(db) as conn:
                    assert conn.execute("SELECT COUNT(*) FROM votes").fetchone()[0] == n
                _press(browser, keys[choice], n + 1)
            pressed.append((task, choice))
        # she leaves and comes back: the page resumes at her 7th comparison
        _log_in(browser, url, "alice")
        assert browser.find_element(By.ID, "progress-text").text == "6 / 12 done"
        for n in range(6, 12):
            task = study.order("alice")[n]
            shown = study.shown("alice", task)
            best = min(shown.left, shown.right, key=rank.__getitem__)
            choice = "tie" if n == 11 else ("left" if best == shown.left else "right")
            _press(browser, keys[choice], n + 1)
            pressed.append((task, choice))
        _wait(browser, lambda d: d.find_element(By.ID, "finished").is_displayed())
        # bob votes too: "both bad" on everything the VAE is in, the GAN otherwise
        _log_in(browser, url, "bob")
        for n in range(12):
            shown = study.shown("bob", study.order("bob")[n])
            gan_side = "left" if shown.left == "gan" else "right"
            choice = "both_bad" if "vae" in (shown.left, shown.right) else gan_side
            _press(browser, keys[choice], n + 1)
            pressed.append((study.order("bob")[n], choice))
        assert browser.execute_script("return document.title") == "aigc human evaluation"
    finally:
        proc.terminate()
        proc.wait(30)
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT task_id, choice FROM votes ORDER BY id").fetchall()
    assert rows == pressed
    out = subprocess.run([sys.executable, "-m", "aigc", "eval", "human", "--report", str(db), "--json"],
                         capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    (rep,) = json.loads(out)
    by = {s["system"]: s for s in rep["systems"]}
    # the expected tallies, from the keys pressed and the layout each rater saw
    tally = {name: {"wins": 0, "losses": 0, "ties": 0, "both_bad": 0} for name in rank}
    outcomes: dict[str, dict[int, str]] = {"alice": {}, "bob": {}}
    for n, (task, choice) in enumerate(pressed):
        rater = "alice" if n < 12 else "bob"
        shown = study.shown(rater, task)
        if choice in ("tie", "both_bad"):
            for name in (shown.left, shown.right):
                tally[name]["ties" if choice == "tie" else "both_bad"] += 1
            outcomes[rater][task] = choice
        else:
            winner, loser = (shown.left, shown.right) if choice == "left" else (shown.right, shown.left)
            tally[winner]["wins"] += 1
            tally[loser]["losses"] += 1
            outcomes[rater][task] = "a" if winner == shown.task.a.system else "b"
    assert rep["votes"] == 24 and rep["raters"] == ["alice", "bob"] and rep["question"] == question
    for name, counts in tally.items():
        assert {k: by[name][k] for k in counts} == counts, name
        n = counts["wins"] + counts["losses"]
        assert by[name]["win_rate"] == pytest.approx(counts["wins"] / n)
        assert by[name]["ci"] == pytest.approx(list(human.wilson_interval(counts["wins"], n)))
    assert tally["vae"]["both_bad"] == 8 and tally["gan"]["losses"] == 0  # as the raters meant it
    tasks = sorted(outcomes["alice"])
    assert rep["agreement"] == {"method": "cohen", "comparisons": 12, "raters": ["alice", "bob"],
                                "kappa": pytest.approx(human.cohen_kappa([outcomes["alice"][t] for t in tasks],
                                                                         [outcomes["bob"][t] for t in tasks]))}
    assert by["gan"]["bt"] > by["gan_mean"]["bt"] > by["vae"]["bt"]
    text = subprocess.run([sys.executable, "-m", "aigc", "eval", "human", "--report", str(db)], capture_output=True,
                          text=True, check=True, cwd=tmp_path).stdout
    assert "Wilson" in text and "Bradley-Terry" in text and "Cohen's kappa" in text
    csv_path = tmp_path / "votes.csv"
    subprocess.run([sys.executable, "-m", "aigc", "eval", "human", "--report", str(db), "--export", "csv", "-o",
                    str(csv_path)], check=True, cwd=tmp_path)
    assert len(csv_path.read_text().splitlines()) == 25


@pytest.mark.slow
def test_browser_shows_hostile_prompts_as_text(browser: Any, text_systems: list[Path], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    proc, url = _start_cli([*map(str, text_systems), "--db", str(tmp_path / "t.sqlite"), "--question", XSS],
                           tmp_path)
    try:
        _log_in(browser, url, '<b>mallory</b>')
        assert browser.find_element(By.ID, "prompt").text == XSS
        assert browser.find_element(By.ID, "question").text == XSS.strip()
        assert browser.find_element(By.ID, "rater-name").text == "<b>mallory</b>"
        assert browser.execute_script("return document.querySelectorAll('#prompt *, #question *, #rater-name *, "
                                      "#pair pre *').length") == 0
        texts = browser.execute_script("return [...document.querySelectorAll('#pair pre')].map(e => e.textContent)")
        files = {p.read_text(encoding="utf-8") for folder in text_systems for p in folder.glob("out-*.txt")}
        assert len(texts) == 2 and set(texts) <= files
        _press(browser, "2", 1)
        assert browser.execute_script("return document.title") == "aigc human evaluation"
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.slow
def test_browser_plays_audio_and_video(browser: Any, media_systems: list[Path], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    proc, url = _start_cli([*map(str, media_systems), "--db", str(tmp_path / "m.sqlite")], tmp_path)
    try:
        _log_in(browser, url, "listener")
        for n in range(2):
            players = browser.find_elements(By.CSS_SELECTOR, "#pair audio, #pair video")
            assert len(players) == 2 and players[0].tag_name == players[1].tag_name
            # the browser loaded and decoded the media's header: it knows the duration
            _wait(browser, lambda d, players=players: all(d.execute_script(
                "return arguments[0].readyState >= 1 && arguments[0].duration > 0", p) for p in players))
            _press(browser, "3", n + 1)
    finally:
        proc.terminate()
        proc.wait(30)
