"""aigc serve on Ray Serve (a real local Ray, the session's): the official ``openai`` client against
``aigc.ray.deployment``, a base model and a LoRA adapter multiplexed on it."""

from __future__ import annotations

import socket
from pathlib import Path

import openai
import peft
import pytest
import torch
import transformers

import aigc
from aigc.serve import ModelSpec

# the replica holds one CPU; Serve and a replica start in seconds on 2 CPUs: slow (in the default run and CI)
pytestmark = [pytest.mark.usefixtures("ray_local", "one_torch_thread"), pytest.mark.slow]

PROMPT = "Once upon a time"


def _adapter(base: Path, out: Path) -> Path:
    """A LoRA adapter with non-zero weights (B starts at zero; a few SGD steps move it)."""
    model = transformers.AutoModelForCausalLM.from_pretrained(base)
    lora = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=16, target_modules=["c_attn"],
                                                      task_type="CAUSAL_LM"))
    ids = transformers.AutoTokenizer.from_pretrained(base)("The quick brown fox.", return_tensors="pt")["input_ids"]
    opt = torch.optim.SGD([p for p in lora.parameters() if p.requires_grad], lr=0.5)
    for _ in range(5):
        lora(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    lora.save_pretrained(out)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_serve_deployment_answers_the_openai_client(gpt2_dir: Path, tmp_path: Path) -> None:
    from ray import serve

    adapter = _adapter(gpt2_dir, tmp_path / "poet")
    app = aigc.ray.deployment([ModelSpec(modality="text", model=str(gpt2_dir), id="gpt2", device="cpu")],
                              adapters={"poet": str(adapter)}, num_replicas=1, max_ongoing_requests=8,
                              ray_actor_options={"num_cpus": 1})
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(app, name="aigc-test", route_prefix="/")
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=120)
        models = {m.id: m for m in client.models.list().data}
        assert set(models) == {"gpt2", "poet"}
        assert models["poet"].model_extra["base"] == "gpt2"  # type: ignore[index]

        base = aigc.load("text", gpt2_dir, device="cpu", cache=False)
        tuned = aigc.load("text", gpt2_dir, device="cpu", adapter=adapter, cache=False)
        local = base.generate(PROMPT, seed=5, max_new_tokens=12, temperature=0.9)
        local_tuned = tuned.generate(PROMPT, seed=5, max_new_tokens=12, temperature=0.9)
        assert local.text != local_tuned.text  # the adapter matters

        reply = client.completions.create(model="gpt2", prompt=PROMPT, seed=5, max_tokens=12, temperature=0.9)
        assert reply.choices[0].text == local.text
        assert reply.model_extra["aigc_record"]["seeds"] == [5]  # type: ignore[index]
        stream = client.completions.create(model="gpt2", prompt=PROMPT, seed=5, max_tokens=12, temperature=0.9,
                                           stream=True)
        assert "".join(c.choices[0].text for c in stream if c.choices) == local.text  # streamed through Ray

        reply = client.completions.create(model="poet", prompt=PROMPT, seed=5, max_tokens=12, temperature=0.9)
        assert reply.choices[0].text == local_tuned.text
        record = reply.model_extra["aigc_record"]  # type: ignore[index]
        assert record["options"]["adapter"] == str(adapter)

        with pytest.raises(openai.NotFoundError):
            client.completions.create(model="nope", prompt=PROMPT, max_tokens=2)
    finally:
        serve.shutdown()
