"""Use ``aigc serve`` from the official ``openai`` client: chat streaming, images and speech.

    python examples/serve_client.py         # starts a server itself: the embedded text, image and audio models,
                                            # and a tiny random GPT-2 with a chat template as "chat" (gibberish)
    aigc serve --model text=path/to/chat-model,id=chat --model text=default --model image=default \
        --model audio=default --api-key secret &                                     # or run one yourself ...
    python examples/serve_client.py --base-url http://127.0.0.1:8000/v1 --api-key secret   # ... and use it

Needs ``pip install 'aigc[serve]' openai``. Outputs go to ``out/serve_client/``; each file carries its provenance
record, so ``aigc replay out/serve_client/boot-0.png`` regenerates it locally.
"""

from __future__ import annotations

import argparse
import base64
import json
import tempfile
from pathlib import Path

import openai

import aigc

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--base-url", help="a running server's URL ending in /v1 (default: start one here)")
parser.add_argument("--api-key", default="unused", help="the server's API key, if it has one")
parser.add_argument("--chat-model", default="chat", help="the served model to chat with (default: chat)")
parser.add_argument("--steps", type=int, default=None, help="denoising steps for the image (default: the model's)")
parser.add_argument("--out", default="out/serve_client", help="where to write the outputs")
args = parser.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

server = None
if args.base_url is None:  # serve the embedded text, image and audio models on a free loopback port
    from aigc.testing import tiny_gpt2

    chat_model = tiny_gpt2(tempfile.mkdtemp(prefix="aigc-example-"))  # random weights, but a chat template
    specs = [aigc.serve.ModelSpec(modality="text", model=str(chat_model), id="chat")]
    specs += [aigc.serve.ModelSpec(modality=m) for m in ("text", "image", "audio")]
    server = aigc.serve.start(specs, config=aigc.serve.ServeConfig(port=0))
    args.base_url = server.base_url
client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key)
print("models:", [m.id for m in client.models.list().data])

# 1. Chat, streamed (the model needs a chat template). The last chunk carries the provenance record.
messages = [{"role": "user", "content": "Tell me a story"}]
stream = client.chat.completions.create(model=args.chat_model, messages=messages, max_tokens=20, seed=42,  # type: ignore
                                        stream=True)
pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
print("chat:", repr("".join(pieces)))  # repr(): random weights produce control characters too

# 2. A completion from the embedded text model, streamed; the record replays it locally.
stream = client.completions.create(model="text-default", prompt="To be, or not to be", max_tokens=60, seed=42,
                                   stream=True)
pieces, record = [], None
for chunk in stream:
    if chunk.choices and chunk.choices[0].text:
        pieces.append(chunk.choices[0].text)
        print(chunk.choices[0].text, end="", flush=True)
    record = (chunk.model_extra or {}).get("aigc_record", record)
print()
(out / "reply.json").write_text(json.dumps(record))  # aigc.replay("out/serve_client/reply.json") gives it again
replayed = aigc.replay(out / "reply.json")
print("replayed locally, same text:", replayed.texts[0] == "".join(pieces))  # type: ignore[attr-defined]

# 3. Images, as base64 PNGs; aigc's extras (seed, steps, ...) go in extra_body.
extra = {"seed": 7} | ({"steps": args.steps} if args.steps else {})
images = client.images.generate(model="image-default", prompt="an ankle boot", n=2, size="64x64", extra_body=extra)
for i, item in enumerate(images.data or []):
    path = out / f"boot-{i}.png"
    path.write_bytes(base64.b64decode(item.b64_json or ""))
    print("wrote", path, "seed", aigc.Record.from_file(path).seeds[i])

# 4. Speech: a WAV with the record in its comment field. `voice` names one of the model's voices.
voices = next(m for m in client.models.list().data if m.id == "audio-default").model_extra["voices"]  # type: ignore
speech = client.audio.speech.create(model="audio-default", voice=voices[1], input="say seven",
                                    response_format="wav", extra_body={"seed": 3})
speech.write_to_file(out / "seven.wav")
print("wrote", out / "seven.wav", "voice", voices[1])

if server is not None:
    server.stop()
