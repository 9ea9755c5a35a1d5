"""The server's pieces without a server: request parsing and limits, settings, the CLI, metrics, import cost."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aigc.errors import InvalidRequest
from aigc.serve import ModelSpec, ServeConfig, ServeLimits, load_config, parse_model_spec
from aigc.serve._errors import APIError
from aigc.serve._metrics import Metrics
from aigc.serve._protocol import Body, parse_chat, parse_completion, parse_image, parse_speech, parse_video
from aigc.serve.cli import add_serve_parser, serve_settings

LIMITS = ServeLimits()


def _param(call: Any) -> str | None:
    with pytest.raises(APIError) as e:
        call()
    assert e.value.status == 400 and e.value.body()["error"]["param"] == e.value.param
    return e.value.param


def test_completion_fields_become_request_fields() -> None:
    call = parse_completion({"model": "m", "prompt": ["a", "b"], "n": 2, "seed": 7, "max_tokens": 9,
                             "temperature": 0.5, "top_p": 0.9, "stop": "\n", "top_k": -1, "min_p": 0.1,
                             "repetition_penalty": 1.2, "min_tokens": 2, "user": "u1", "logprobs": None,
                             "presence_penalty": 0, "stream": True, "stream_options": {"include_usage": True}},
                            LIMITS)
    assert call.prompt == ["a", "b"] and call.stream and call.include_usage and not call.chat
    assert call.params == {"num_outputs": 2, "seed": 7, "max_new_tokens": 9, "min_new_tokens": 2,
                           "temperature": 0.5, "do_sample": True, "top_p": 0.9, "top_k": None, "min_p": 0.1,
                           "repetition_penalty": 1.2, "stop": ["\n"]}
    greedy = parse_completion({"prompt": "x", "temperature": 0}, LIMITS)
    assert greedy.params == {"do_sample": False}


def test_chat_messages_and_the_fields_it_refuses() -> None:
    call = parse_chat({"model": "m", "messages": [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
        {"role": "assistant", "content": None}], "max_completion_tokens": 5, "tool_choice": "none"}, LIMITS)
    assert call.prompt == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
                           {"role": "assistant", "content": ""}]
    assert call.params == {"max_new_tokens": 5} and call.rename["max_new_tokens"] == "max_completion_tokens"
    user = [{"role": "user", "content": "x"}]
    assert _param(lambda: parse_chat({"messages": user, "tools": [{"type": "function"}]}, LIMITS)) == "tools"
    assert _param(lambda: parse_chat({"messages": [{"role": "tool", "content": "x"}]}, LIMITS)) == "messages[0].role"
    assert _param(lambda: parse_chat({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}]}, LIMITS)) == "messages[0].content[0]"
    assert _param(lambda: parse_chat({"messages": user, "frequency_penalty": 0.5}, LIMITS)) == "frequency_penalty"
    assert _param(lambda: parse_chat({"messages": user, "response_format": {"type": "json_schema"}}, LIMITS)) \
        == "response_format"
    assert _param(lambda: parse_chat({"messages": user, "stream_options": {"include_usage": True}}, LIMITS)) \
        == "stream_options"
    assert _param(lambda: parse_chat({"messages": user, "max_tokens": 3, "max_completion_tokens": 3}, LIMITS)) \
        == "max_tokens"


# (body, the field the 400 names); one test, not one per case: each test costs a collection in the teardown
BAD_COMPLETIONS: list[tuple[dict[str, Any], str]] = [
    ({"prompt": "x" * 101}, "prompt"),
    ({"prompt": "x", "n": 5}, "n"),
    ({"prompt": ["a", "b", "c"], "n": 2}, "n"),
    ({"prompt": "x", "max_tokens": 65}, "max_tokens"),
    ({"prompt": "x", "stop": ["a", "b", "c"]}, "stop"),
    ({"prompt": "x", "stop": ["x" * 9]}, "stop"),
    ({"prompt": [1, 2, 3]}, "prompt"),
    ({"prompt": "x", "seed": -1}, "seed"),
    ({"prompt": "x", "seed": True}, "seed"),
    ({"prompt": "x", "temperature": "hot"}, "temperature"),
    ({"prompt": "x", "top_p": 0}, "top_p"),
    ({"prompt": "x", "echo": True}, "echo"),
    ({"prompt": "x", "best_of": 3}, "best_of"),
    ({"prompt": "x", "suffix": "end"}, "suffix"),
    ({"prompt": "x", "frobnicate": 1}, "frobnicate"),
]


def test_limits_and_bad_values_name_the_field() -> None:
    small = ServeLimits(max_prompt_chars=100, max_n=4, max_tokens=64, max_stop=2, max_stop_chars=8)
    named = [_param(lambda body=body: parse_completion(body, small)) for body, _ in BAD_COMPLETIONS]
    assert named == [param for _, param in BAD_COMPLETIONS]


def test_media_requests_and_their_limits() -> None:
    image = parse_image(Body({"prompt": "a cat", "size": "64x32", "n": 2, "seed": 1, "steps": 3, "guidance": 2.0,
                              "response_format": "url", "quality": "auto", "backend": "diffusion"}), LIMITS)
    assert image.params == {"width": 64, "height": 32, "num_outputs": 2, "seed": 1, "steps": 3, "guidance": 2.0}
    assert image.response_format == "url" and image.backend == "diffusion"
    assert _param(lambda: parse_image(Body({"prompt": "a", "size": "99999x2"}), LIMITS)) == "size"
    assert _param(lambda: parse_image(Body({"prompt": "a", "steps": 10_000}), LIMITS)) == "steps"
    assert _param(lambda: parse_image(Body({"prompt": "a", "quality": "hd"}), LIMITS)) == "quality"
    assert _param(lambda: parse_image(Body({"prompt": "a", "init_image": "/etc/passwd"}), LIMITS)) == "init_image"
    form = Body({"prompt": "a", "n": "2", "strength": "0.5"}, form=True, files={"image": [b"junk"]})
    assert _param(lambda: parse_image(form, LIMITS, edit=True)) == "image"
    speech = parse_speech(Body({"input": "say 7", "voice": {"id": "us-male"}, "duration": 1.5, "seed": 2}), LIMITS)
    assert speech.prompt == "say 7" and speech.params == {"voice": "us-male", "duration_s": 1.5, "seed": 2}
    assert _param(lambda: parse_speech(Body({"input": "x", "response_format": "mp3"}), LIMITS)) == "response_format"
    assert _param(lambda: parse_speech(Body({"input": "x", "speed": 2.0}), LIMITS)) == "speed"
    assert _param(lambda: parse_speech(Body({"input": "x" * 5000}), LIMITS)) == "input"
    video = parse_video(Body({"prompt": "a 3", "seconds": "4", "fps": "4", "seed": "9"}, form=True), LIMITS)
    assert video.params == {"seed": 9, "fps": 4.0, "num_frames": 16} and video.seconds == 4.0
    assert _param(lambda: parse_video(Body({"prompt": "a 3", "seconds": "4"}), LIMITS)) == "seconds"
    assert _param(lambda: parse_video(Body({"prompt": "a", "input_reference": "http://x/y.png"}), LIMITS)) \
        == "input_reference"


def test_model_specs_from_the_command_line(tmp_path: Path) -> None:
    spec = parse_model_spec("text=default,id=poet,device=cpu,max_batch_size=8,adapter=lora")
    assert spec == ModelSpec(modality="text", model="default", id="poet", device="cpu",
                             options={"max_batch_size": 8, "adapter": "lora"})
    assert parse_model_spec("image=default").served_id == "image-default"
    assert parse_model_spec(f"text={tmp_path}").served_id == tmp_path.name
    with pytest.raises(InvalidRequest, match="unknown modality"):
        parse_model_spec("sound=x")
    with pytest.raises(InvalidRequest, match="MODALITY=MODEL"):
        parse_model_spec(str(tmp_path))  # an empty directory: no modality to find


def test_config_file_then_flags_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "serve.toml"
    path.write_text('[server]\nport = 9000\nmax_queue = 3\n\n[limits]\nmax_tokens = 100\n\n'
                    '[[models]]\nmodality = "text"\nmodel = "default"\nid = "poet"\noptions = { max_batch_size = 4 }\n')
    config, models = load_config(path)
    assert config.port == 9000 and config.max_queue == 3 and config.limits.max_tokens == 100
    assert models == [ModelSpec(modality="text", model="default", id="poet", options={"max_batch_size": 4})]
    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers(dest="command"))
    monkeypatch.setenv("AIGC_API_KEY", "from-env")
    args = parser.parse_args(["serve", "--config", str(path), "--port", "0", "--max-n", "2", "--cors-origin",
                              "http://localhost:3000"])
    config, models = serve_settings(args)
    assert (config.port, config.max_queue, config.api_key) == (0, 3, "from-env")
    assert config.limits.max_n == 2 and config.limits.max_tokens == 100
    every_limit = ["serve", "--max-video-frames", "8", "--max-audio-s", "2.5", "--max-input-pixels", "1024"]
    limits = serve_settings(parser.parse_args(every_limit))[0].limits  # every limit is a flag, typed as its field
    assert (limits.max_video_frames, limits.max_audio_s, limits.max_input_pixels) == (8, 2.5, 1024)
    assert isinstance(limits.max_video_frames, int) and limits.max_n == ServeLimits().max_n
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--max-video-frames", "2.5"])
    assert config.cors_origins == ("http://localhost:3000",) and config.host == "127.0.0.1"
    assert [m.id for m in models] == ["poet"]
    args = parser.parse_args(["serve", "--api-key", "flag", "--device", "cpu"])
    config, models = serve_settings(args)
    assert config.api_key == "flag" and [m.modality for m in models] == ["text", "image", "audio", "video"]
    assert {m.device for m in models} == {"cpu"}
    path.write_text("[server]\nprot = 1\n")
    with pytest.raises(InvalidRequest, match=r"server\.prot"):
        load_config(path)
    with pytest.raises(InvalidRequest, match="max_queue"):
        ServeConfig(max_queue=-1)
    with pytest.raises(InvalidRequest, match="max_tokens"):
        ServeLimits(max_tokens=0)


def test_bad_serve_arguments_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    from aigc._cli import main

    assert main(["serve", "--model", "sound=x"]) == 1
    assert "aigc: error: --model='sound=x': unknown modality 'sound'" in capsys.readouterr().err
    assert main(["serve", "--max-queue", "-3", "--model", "text=default"]) == 1
    assert "max_queue=-3" in capsys.readouterr().err


def test_metrics_render_in_the_prometheus_text_format() -> None:
    m = Metrics()
    m.inc("aigc_tokens_generated_total", 5, model="a")
    m.inc("aigc_tokens_generated_total", 2, model="a")
    m.set("aigc_queue_depth", 3, model='we"ird')
    for v in (0.02, 0.3, 7.0):
        m.observe("aigc_time_to_first_token_seconds", v, model="a")
    m.rate_add("aigc_tokens_per_second", 50, model="a")
    text = m.render()
    assert 'aigc_tokens_generated_total{model="a"} 7' in text
    assert 'aigc_queue_depth{model="we\\"ird"} 3' in text
    assert 'aigc_time_to_first_token_seconds_bucket{model="a",le="0.025"} 1' in text
    assert 'aigc_time_to_first_token_seconds_bucket{model="a",le="+Inf"} 3' in text
    assert 'aigc_time_to_first_token_seconds_count{model="a"} 3' in text
    assert 'aigc_tokens_per_second{model="a"} 5' in text
    with pytest.raises(KeyError):
        m.inc("no_such_metric")


def test_importing_the_serve_package_stays_light() -> None:
    code = ("import sys, aigc, aigc.serve, aigc._cli; aigc._cli._parser();"
            "print([m for m in ('torch', 'starlette', 'uvicorn', 'openai') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["[]"]
