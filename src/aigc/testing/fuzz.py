"""A seeded fuzzer of aigc's public API: malformed and borderline calls to ``generate``, ``stream``, ``load``,
``replay``, ``Result.save``, ``Record.from_json`` and ``Generator.to``, across all four modalities.

The promise it checks: whatever the arguments, a call returns, or raises an :class:`~aigc.errors.AigcError` --
never another exception (except ``TypeError`` when a path argument is not a ``str`` / ``os.PathLike``), never a
hang, never a crash of the process. Each call is a JSON-able *case*, so a failure can be kept in a corpus file
and replayed as a regression test (:func:`run_case`).

Calls run under small :mod:`aigc.limits` (a few samples, steps, tokens and pixels), so that a valid call is
cheap and a call above the bounds exercises them; models are the embedded ones and a tiny random GPT-2 and
Stable Diffusion; hub lookups are switched off (``HF_HUB_OFFLINE``) while the fuzzer runs.

Example:
    >>> from aigc.testing.fuzz import FuzzEnv, fuzz
    >>> report = fuzz(FuzzEnv.create(tmp_path), calls=300, seed=0)  # doctest: +SKIP
    >>> report.failures  # doctest: +SKIP
    []
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import math
import os
import random
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aigc
from aigc.errors import AigcError, AigcWarning

__all__ = ["FUZZ_LIMITS", "FuzzEnv", "FuzzReport", "Outcome", "fuzz", "random_case", "run_case"]

#: The bounds calls run under: small enough that every valid call takes a fraction of a second.
FUZZ_LIMITS: dict[str, Any] = {"max_samples": 4, "max_steps": 3, "max_new_tokens": 12, "max_pixels": 96 * 96,
                               "max_frames": 16, "max_keyframes": 4, "max_audio_s": 2.0, "max_audio_samples": 48_000,
                               "max_prompt_chars": 2000}

Case = dict[str, Any]

# -- values ------------------------------------------------------------------------------------------------------
# Non-JSON values are written as {"$": kind} in a case, so that every case can be stored in a corpus file.
_SPECIAL: dict[str, Callable[[], Any]] = {
    "nan": lambda: math.nan, "inf": lambda: math.inf, "-inf": lambda: -math.inf, "bytes": lambda: b"x.png",
    "object": object, "tuple": lambda: (1, 2), "set": lambda: {1}, "path": lambda: Path("p"),
}
NASTY: list[Any] = [
    None, True, False, 0, -1, 1, 2, 3, 2**31, 2**63, -(2**63), 10**30, 0.0, -0.0, 1e-300, 1e-38, 0.5, 1.5, 1e300,
    {"$": "nan"}, {"$": "inf"}, {"$": "-inf"}, "", " ", "x", "\n", "\x00", "é☃", "a" * 300, "cpu\n", "../x", [],
    [1], [1, 2], [[]], [None], ["a", 3], {}, {"role": "user"}, {"role": "user", "content": "hi"},
    {"$": "bytes"}, {"$": "object"}, {"$": "tuple"}, {"$": "set"}, {"$": "path"},
]
# Plausible values per request field: most calls should get deep into the code before something is wrong.
GOOD: dict[str, list[Any]] = {
    "prompt": ["an ankle boot", "a 3 moving left", "say seven", "Hi", ["a boot", "a bag"], "今天天气真[MASK]。",
               ["[MASK][MASK] boot", "a [MASK]"], "a2b", "a sneaker", ["b2a", "an ankle boot"],
               [{"role": "user", "content": "hi"}], "a photo of a " + "very " * 50 + "nice ankle boot"],
    "seed": [0, 1, 42, [1, 2], 2**63 - 2], "num_outputs": [None, 1, 2, 4, 5], "deterministic": [False, True],
    "max_new_tokens": [1, 4, 12, 13], "min_new_tokens": [0, 2, 50], "do_sample": [True, False],
    "temperature": [0.5, 1.0, 0.01, 5.0], "top_k": [None, 0, 5], "top_p": [0.9, 1.0, 0.01], "min_p": [0.0, 0.1, 1.0],
    "repetition_penalty": [1.0, 1.3, 100.0, 0.01], "stop": [[], ["\n"], ["e"], "a"], "num_fills": [None, 1, 3, 200],
    "width": [None, 32, 64, 96, 33, 128], "height": [None, 32, 64, 96], "steps": [None, 1, 2, 3, 4],
    "guidance": [None, 0.0, 1.0, 3.0], "scheduler": [None, "ddim", "euler", "dpm", "bogus"],
    "negative_prompt": [None, "a bag"], "strength": [0.0, 0.5, 1.0], "init_image": [None, "@png"], "mask": [None],
    "truncation": [None, 0.0, 0.5, 2.0], "mix_seed": [None, 1], "mix_layer": [None, 1, 2, 50],
    "duration_s": [None, 0.5, 1.0, 1.5, 0.01], "voice": [None, 0, 1, "bogus", 99],
    "num_frames": [None, 2, 4, 8, 16, 17], "fps": [None, 8, 0.01, 240], "keyframes": [None, 2, 3, 4, 5],
    "interpolation": [None, "z", "w", "q"], "init_video": [None, "@gif", "@folder", "@png"],
}
_FIELDS = {
    "text": ["max_new_tokens", "min_new_tokens", "do_sample", "temperature", "top_k", "top_p", "min_p",
             "repetition_penalty", "stop", "num_fills"],
    "image": ["negative_prompt", "width", "height", "steps", "guidance", "scheduler", "init_image", "strength",
              "mask", "truncation", "mix_seed", "mix_layer"],
    "audio": ["duration_s", "voice", "negative_prompt", "steps", "guidance"],
    "video": ["negative_prompt", "width", "height", "steps", "guidance", "scheduler", "num_frames", "fps",
              "init_image", "init_video", "keyframes", "interpolation", "truncation"],
}
_TYPOS = ["temprature", "bogus", "num_output", "__class__", "prompt ", "Seed", "steps\n"]
_DEVICES = ["auto", "cpu", "cpu:0", "cuda", "cuda:01", "cuda:128", "mps", "meta", "cpu\n", "gpu", " cpu", "cpu:1",
            {"$": "object"}]
_DTYPES = ["auto", "float32", "bfloat16", "fp16", "int8", "float64", "", {"$": "object"}]
_BACKENDS = {"text": ["transformers"], "image": ["diffusion", "gan", "vae", "diffusers", "cyclegan"],
             "audio": ["mel"], "video": ["sprites", "walk", "cyclegan"]}
_OPTIONS = ["max_batch_size", "upscale", "adapter", "merge_adapter", "lora", "attention_slicing", "bogus",
            "trust_remote_code", "device", "cache", "offload", "allow_pickle", "vocoder", "temporal"]
_SAVE_NAMES = ["", ".", "..", "x", "x.png", "x.txt", "x.json", "x.wav", "x.flac", "x.ogg", "x.gif", "x.webp",
               "x.mp4", "x.jpg", "x.unknown", "sub/dir/x.png", "a" * 300 + ".png", "x.PNG", "clip", "\x00.png",
               "x.txt.json", "/", "sub", "x.png/y.png"]


def decode(value: Any) -> Any:
    """A case value as the Python object it stands for: ``{"$": "nan"}`` -> ``math.nan``, ...; big values are
    written short: ``{"$": "repeat", "v": "word ", "n": 3200}`` (a string repeated), ``{"$": "range", "n": 5}``."""
    if isinstance(value, dict):
        if set(value) == {"$"} and value["$"] in _SPECIAL:
            return _SPECIAL[value["$"]]()
        if value.get("$") == "repeat" and set(value) == {"$", "v", "n"}:
            return str(value["v"]) * int(value["n"])
        if value.get("$") == "range" and set(value) == {"$", "n"}:
            return list(range(int(value["n"])))
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


# -- the environment ---------------------------------------------------------------------------------------------
@dataclass
class FuzzEnv:
    """Models and genuine saved outputs the fuzzer starts from, in ``root``.

    Attributes:
        root: the working folder; every file a call writes goes under it.
        models: name -> model directory (``"gpt2"``, ``"sd"``, ``"bert"``: tiny random models).
        files: genuine saved outputs by kind (``"json"``, ``"txt"``, ``"png"``, ``"wav"``, ``"gif"``, ``"folder"``).
    """

    root: Path
    models: dict[str, Path] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, root: str | os.PathLike[str]) -> FuzzEnv:
        """Build the tiny models and save one genuine output per modality (a few seconds on a CPU)."""
        from aigc.testing import tiny_bert, tiny_gpt2, tiny_stable_diffusion

        env = cls(Path(root))
        env.root.mkdir(parents=True, exist_ok=True)
        env.models = {"gpt2": tiny_gpt2(env.root / "gpt2"), "sd": tiny_stable_diffusion(env.root / "sd"),
                      "bert": tiny_bert(env.root / "bert")}
        with aigc.limits.override(**FUZZ_LIMITS):
            text = aigc.load("text", env.models["gpt2"], device="cpu").generate("Hi", max_new_tokens=4, seed=1)
            image = aigc.generate("image", "an ankle boot", steps=2, seed=1, device="cpu")
            audio = aigc.generate("audio", "say seven", seed=1, device="cpu")
            video = aigc.generate("video", "a 3 moving left", seed=1, device="cpu")
        env.results = {"text": text, "image": image, "audio": audio, "video": video}
        out = env.root / "genuine"
        env.files = {"json": text.save(out / "t.json")[0], "txt": text.save(out / "t.txt")[0],
                     "png": image.save(out / "i.png")[0], "wav": audio.save(out / "a.wav")[0],
                     "gif": video.save(out / "v.gif")[0], "folder": video.save(out / "frames")[0].parent}
        return env

    def value(self, value: Any) -> Any:
        """Decode a case value, with ``"@png"``, ``"@gif"`` and ``"@folder"`` standing for the genuine PNG, GIF
        and frame folder."""
        if isinstance(value, str) and value[:1] == "@" and value[1:] in ("png", "gif", "folder"):
            return str(self.files[value[1:]])
        return decode(value)


# -- cases -------------------------------------------------------------------------------------------------------
def _pick(rng: random.Random, good: list[Any], nasty: float = 0.25) -> Any:
    return rng.choice(NASTY) if rng.random() < nasty else rng.choice(good)


def _params(rng: random.Random, modality: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    names = _FIELDS[modality] + ["seed", "num_outputs", "deterministic"]
    for name in rng.sample(names, rng.randint(0, min(4, len(names)))):
        params[name] = _pick(rng, GOOD.get(name, [None]), nasty=0.12)
    if rng.random() < 0.1:
        params[rng.choice(_TYPOS)] = _pick(rng, [1])
    if rng.random() < 0.1:  # a field of another modality
        other = rng.choice([m for m in _FIELDS if m != modality])
        params[rng.choice(_FIELDS[other])] = _pick(rng, [1, 2])
    return params


def _model(rng: random.Random, modality: str) -> tuple[Any, Any]:
    """(model, backend) for a generate/load call: mostly the embedded ones and the tiny models."""
    choices: dict[str, list[tuple[Any, Any]]] = {
        "text": [(None, None), ("@gpt2", None), ("default", None), ("@bert", None)],
        "image": [(None, None), ("default", "gan"), ("default", "vae"), ("@sd", None), ("default", "cyclegan")],
        "audio": [(None, None)],
        "video": [(None, None), ("default", "walk"), ("gan", "walk"), ("default", "cyclegan")],
    }
    return rng.choice(choices[modality])


def random_case(rng: random.Random) -> Case:
    """One random call, as a JSON-able case."""
    kind = rng.choices(["generate", "stream", "load", "replay", "save", "record", "to", "result"],
                       weights=[34, 5, 14, 22, 15, 6, 4, 6])[0]
    modality = rng.choice(["text", "image", "audio", "video"])
    if kind in ("generate", "stream"):
        if kind == "stream":
            modality = "text"
        model, backend = _model(rng, modality)
        prompt = _pick(rng, GOOD["prompt"], nasty=0.15)
        params = _params(rng, modality)
        if backend == "cyclegan" and rng.random() < 0.8:  # a translation needs its input: mostly give one
            name = "init_image" if modality == "image" else "init_video"
            params.setdefault(name, rng.choice(GOOD[name][1:]))
        return {"call": kind, "modality": modality, "model": model, "backend": backend, "prompt": prompt,
                "params": params}
    if kind == "load":
        model, backend = _model(rng, modality)
        case: Case = {"call": "load", "modality": modality if rng.random() > 0.05 else rng.choice(NASTY),
                      "model": _pick(rng, [model, model, "/no/such/dir", "@png", "", "./rel/missing"], 0.1),
                      "backend": _pick(rng, [backend, None, *_BACKENDS.get(modality, [])], 0.1),
                      "kwargs": {}}
        pools: list[tuple[str, list[Any]]] = [
            ("device", _DEVICES), ("dtype", _DTYPES), ("offload", ["none", "model", "x"]), ("allow_pickle", [False]),
            ("trust_remote_code", [False]), ("cache", [True, False])]
        for name, pool in pools:
            if rng.random() < 0.3:
                case["kwargs"][name] = _pick(rng, pool, 0.2)
        if rng.random() < 0.2:
            case["kwargs"][rng.choice(_OPTIONS)] = _pick(rng, [1, 2, "bicubic", True], 0.4)
        if rng.random() < 0.02:
            case["model"] = "someone/some-model"  # a hub id, offline
        return case
    if kind == "replay":
        return {"call": "replay", "source": rng.choice(["json", "txt", "png", "wav", "gif", "folder"]),
                "form": rng.choice(["same", "json", "png", "wav", "garbage"]), "mutations": _mutations(rng),
                "kwargs": _replay_kwargs(rng)}
    if kind == "save":
        path = _pick(rng, _SAVE_NAMES, nasty=0.1)
        return {"call": "save", "result": modality, "path": path}
    if kind == "result":  # a result built by hand (as a user or a plugin might), then saved or post-processed
        return {"call": "result", "modality": modality, "samples": _pick(rng, ["@same", "@same", "@two"], 0.4),
                "seeds": _pick(rng, [[1], [1, 2], []], 0.3), "rate": _pick(rng, [16000, 8000], 0.3),
                "fps": _pick(rng, [8, 0.5], 0.3), "then": rng.choice(["save", "save", "resample", "normalize"]),
                "arg": _pick(rng, [16000, 44100, -23.0, -16.0], 0.4)}
    if kind == "record":
        return {"call": "record", "source": rng.choice(["json", "png", "wav"]), "mutations": _mutations(rng),
                "text": rng.choice(["record", "truncate", "deep", "garbage"])}
    return {"call": "to", "modality": rng.choice(["text", "image"]), "device": _pick(rng, _DEVICES, 0.3)}


def _mutations(rng: random.Random) -> list[list[Any]]:
    """Changes to a genuine record: [field, value] or ["request", name, value] or ["options", name, value]."""
    fields = ["modality", "backend", "model", "request", "seeds", "device", "dtype", "revision", "weights",
              "options", "sample_index", "postprocess", "format", "versions", "duration_s"]
    out: list[list[Any]] = []
    for _ in range(rng.randint(0, 3)):
        r = rng.random()
        if r < 0.35:
            name = rng.choice([*_FIELDS["text"], *_FIELDS["image"], "prompt", "seed", "num_outputs", "bogus"])
            out.append(["request", name, _pick(rng, GOOD.get(name, [1]), 0.4)])
        elif r < 0.55:
            out.append(["options", rng.choice(_OPTIONS), _pick(rng, [True, 1, "bicubic", "model"], 0.3)])
        else:
            special: dict[str, list[Any]] = {"model": ["org/name", "/no/such/dir", "@gpt2", "default", ""],
                       "device": ["cuda:0", "meta", "cpu\n", "cpu"], "sample_index": [-1, 5, 10**9, 0],
                       "postprocess": [[{"op": "resample", "sample_rate": 16000}], [{"op": "x"}], [],
                                       [{"op": "normalize", "lufs": -23.0, "max_peak_db": -1.0}]],
                       "seeds": [[], [-1], list(range(100)), [2**63], [True]],
                       "backend": ["nope", "fake", "gan"], "modality": ["text", "image", "smell"],
                       "weights": [None, "sha256:00"]}
            name = rng.choice(fields)
            out.append([name, _pick(rng, special.get(name, [None]), 0.5)])
    return out


def _replay_kwargs(rng: random.Random) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    pools: dict[str, list[Any]] = {"device": ["cpu", "auto", "meta", "cuda:0"], "strict": [True, False],
                                   "model": ["@gpt2", "org/name"], "trust_remote_code": [False, True],
                                   "allow_pickle": [False], "dtype": ["float32", "int8"],
                                   "max_batch_size": [1, 0, "x"], "upscale": ["nearest", "bogus"]}
    for name, pool in pools.items():
        if rng.random() < 0.12:
            kwargs[name] = _pick(rng, pool, 0.2)
    return kwargs


# -- running a case ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """What one call did: ``"ok"``, ``"aigc"`` (an AigcError), ``"typeerror"`` (allowed: a path of the wrong type),
    ``"fail"`` (any other exception) or ``"timeout"``; the exception's type name and message."""

    status: str
    error: str = ""
    message: str = ""


def _model_value(env: FuzzEnv, value: Any) -> Any:
    if isinstance(value, str) and value.startswith("@") and value[1:] in env.models:
        return str(env.models[value[1:]])
    return env.value(value)


def _mutated_record(env: FuzzEnv, case: Case) -> str:
    from aigc._media.records import read_record

    data = json.loads(read_record(env.files[case["source"]]))
    for mutation in case["mutations"]:
        if mutation[0] in ("request", "options") and len(mutation) == 3:
            if isinstance(data.get(mutation[0]), dict):
                data[mutation[0]][mutation[1]] = _model_value(env, mutation[2])
        else:
            data[mutation[0]] = _model_value(env, mutation[1])
    try:
        return json.dumps(data)
    except (TypeError, ValueError):  # a value JSON cannot hold: its repr, as a careless writer might store it
        return json.dumps(data, default=repr)


def _call(env: FuzzEnv, case: Case) -> Any:
    call = case["call"]
    if call in ("generate", "stream"):
        model, backend = _model_value(env, case["model"]), case["backend"]
        gen = aigc.load(case["modality"], model, backend=backend, device="cpu")
        params = {k: env.value(v) for k, v in case["params"].items()}
        if call == "stream":
            return "".join(gen.stream(env.value(case["prompt"]), **params))
        return gen.generate(env.value(case["prompt"]), **params)
    if call == "load":
        kwargs = {k: env.value(v) for k, v in case["kwargs"].items()}
        return aigc.load(env.value(case["modality"]), _model_value(env, case["model"]), backend=case["backend"],
                         **kwargs)
    if call == "replay":
        path = _replay_file(env, case)
        kwargs = {k: _model_value(env, v) for k, v in case["kwargs"].items()}
        return aigc.replay(path, **kwargs)
    if call == "save":
        result = env.results[case["result"]]
        if "fps" in case:  # a clip with another frame rate
            result = dataclasses.replace(result, fps=env.value(case["fps"]))
        if case.get("samples", 1) > 1:  # several samples: numbered file names
            n = case["samples"]
            key = {"text": "texts", "image": "images", "audio": "waveforms", "video": "videos"}[result.modality]
            result = dataclasses.replace(result, **{key: getattr(result, key) * n}, seeds=list(range(n)))
        target: Any = env.value(case["path"])
        if isinstance(target, os.PathLike):
            target = os.fspath(target)
        if isinstance(target, str) and target not in ("", "/"):  # every file lands under the working folder
            target = env.root / "saves" / target.lstrip("/")
        return result.save(target)
    if call == "result":
        return _hand_made_result(env, case)
    if call == "record":
        text = _mutated_record(env, case)
        if case["text"] == "truncate":
            text = text[: len(text) // 2]
        elif case["text"] == "deep":
            text = "[" * 100_000 + "]" * 100_000
        elif case["text"] == "garbage":
            text = text.encode("utf-8")[::7].decode("utf-8", errors="replace")
        return aigc.Record.from_json(text)
    if call == "to":
        gen = aigc.load(case["modality"], str(env.models["gpt2"]) if case["modality"] == "text" else None,
                        device="cpu")
        try:
            return gen.to(env.value(case["device"]))
        finally:
            gen.to("cpu")
    raise ValueError(f"unknown call {call!r}")


_SUFFIX = {"text": ".txt", "image": ".png", "audio": ".wav", "video": ".gif"}


def _hand_made_result(env: FuzzEnv, case: Case) -> Any:
    base = env.results[case["modality"]]
    field_name = base.samples_field
    known = {"@same": getattr(base, field_name), "@two": getattr(base, field_name) * 2}
    samples = known.get(case["samples"]) if isinstance(case["samples"], str) else None
    kwargs: dict[str, Any] = {field_name: samples if samples is not None else env.value(case["samples"]),
                              "seeds": env.value(case["seeds"])}
    if case["modality"] == "audio":
        kwargs["sample_rate"] = env.value(case["rate"])
    if case["modality"] == "video":
        kwargs["fps"] = env.value(case["fps"])
    result = type(base)(**kwargs)
    if case["then"] == "save" or case["modality"] != "audio":
        return result.save(env.root / "results" / f"r{_SUFFIX[case['modality']]}")
    if case["then"] == "resample":
        return result.resample(env.value(case["arg"]))
    return result.normalize(env.value(case["arg"]))


def _replay_file(env: FuzzEnv, case: Case) -> Path:
    from PIL import Image

    from aigc._media import audio as media_audio
    from aigc._media import image as media_image

    form, source = case["form"], env.files[case["source"]]
    folder = env.root / "replays"
    folder.mkdir(exist_ok=True)
    if form == "same" and not case["mutations"]:
        return source
    text = _mutated_record(env, case)
    if form == "png":
        return media_image.save_image(Image.new("RGB", (4, 4)), folder / "r.png", text)[0]
    if form == "wav":
        import numpy as np

        return media_audio.save_audio(np.zeros((1, 80), np.float32), 8000, folder / "r.wav", text)[0]
    if form == "garbage":
        (folder / "r.png").write_bytes(b"\x89PNG\r\n\x1a\n" + text.encode()[:50])
        return folder / "r.png"
    path = folder / "r.json"
    path.write_text(json.dumps({"text": "x", "aigc": json.loads(text)}))
    return path


def _path_type_error(case: Case) -> bool:
    """Whether the case passes a path argument that is not a str / os.PathLike (a TypeError is then fine)."""
    if case["call"] == "save":
        return not isinstance(decode(case["path"]), (str, os.PathLike))
    if case["call"] == "load":
        model = decode(case["model"])
        return model is not None and not isinstance(model, (str, os.PathLike))
    return False


def run_case(env: FuzzEnv, case: Case, *, timeout_s: float = 30.0) -> Outcome:
    """Run one case in a worker thread (under :data:`FUZZ_LIMITS`, updated by the case's own ``"limits"``) and
    classify what happened. A case may set its own ``"timeout_s"`` (e.g. a regression that used to be slow)."""
    box: list[Outcome] = []
    context = contextvars.copy_context()
    limits = {**FUZZ_LIMITS, **case.get("limits", {})}
    timeout_s = float(case.get("timeout_s", timeout_s))

    def target() -> None:
        try:
            # aigc's warnings (a prompt word the model ignores, ...) are answers, not failures: recorded, not raised
            with aigc.limits.override(**limits), warnings.catch_warnings(record=True):
                warnings.simplefilter("always", AigcWarning)
                _call(env, case)
            box.append(Outcome("ok"))
        except AigcError as e:
            box.append(Outcome("aigc", type(e).__name__, str(e)[:300]))
        except TypeError as e:
            status = "typeerror" if _path_type_error(case) else "fail"
            box.append(Outcome(status, "TypeError", str(e)[:300]))
        except Exception as e:
            box.append(Outcome("fail", type(e).__name__, str(e)[:300]))

    worker = threading.Thread(target=context.run, args=(target,), daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        return Outcome("timeout", "", f"no answer after {timeout_s:g} s")
    return box[0]


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """No model hub while fuzzing (a hub id fails at once instead of after network retries)."""
    saved = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants: Any = None
    with contextlib.suppress(ImportError):
        import huggingface_hub.constants as constants
    old = getattr(constants, "HF_HUB_OFFLINE", None)
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if constants is not None:
            constants.HF_HUB_OFFLINE = old
        if saved is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved


@dataclass
class FuzzReport:
    """Counts of what the calls did, and every failing case with its outcome."""

    calls: int = 0
    seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    calls_by_kind: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[Case, Outcome]] = field(default_factory=list)


def fuzz(env: FuzzEnv, *, calls: int, seed: int = 0, timeout_s: float = 30.0,
         cases: list[Case] | None = None) -> FuzzReport:
    """Run ``calls`` random cases (or the given ``cases``) and count the outcomes.

    Failures are ``"fail"`` and ``"timeout"`` outcomes; ``report.failures`` holds each with its case, ready to be
    stored in a corpus file.
    """
    rng = random.Random(seed)
    todo = cases if cases is not None else [random_case(rng) for _ in range(calls)]
    report = FuzzReport()
    started = time.perf_counter()
    with _offline():
        for case in todo:
            outcome = run_case(env, case, timeout_s=timeout_s)
            report.calls += 1
            report.calls_by_kind[case["call"]] += 1
            report.outcomes[outcome.status] += 1
            if outcome.error:
                report.errors[outcome.error] += 1
            if outcome.status in ("fail", "timeout"):
                report.failures.append((case, outcome))
    report.seconds = time.perf_counter() - started
    return report
