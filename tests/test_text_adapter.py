"""LoRA adapters on the text backend: load with adapter=, merge, record and replay."""

from __future__ import annotations

from pathlib import Path

import peft
import pytest
import torch
import transformers

import aigc
from aigc.errors import InvalidRequest, ModelNotFound


@pytest.fixture(scope="module")
def adapter_dir(gpt2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter with non-zero weights (B is initialised to zero; a few SGD steps move it)."""
    out = tmp_path_factory.mktemp("lora")
    model = transformers.AutoModelForCausalLM.from_pretrained(gpt2_dir)
    lora = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=16, target_modules=["c_attn"],
                                                      task_type="CAUSAL_LM"))
    tok = transformers.AutoTokenizer.from_pretrained(gpt2_dir)
    ids = tok("The quick brown fox jumps over the lazy dog.", return_tensors="pt")["input_ids"]
    opt = torch.optim.SGD([p for p in lora.parameters() if p.requires_grad], lr=0.5)
    for _ in range(5):
        loss = lora(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    lora.save_pretrained(out)
    return out


def test_adapter_changes_output_and_merging_keeps_it(gpt2_dir: Path, adapter_dir: Path) -> None:
    base = aigc.load("text", gpt2_dir, device="cpu")
    tuned = aigc.load("text", gpt2_dir, device="cpu", adapter=adapter_dir)
    merged = aigc.load("text", gpt2_dir, device="cpu", adapter=adapter_dir, merge_adapter=True)
    assert len({id(base), id(tuned), id(merged)}) == 3  # the options are part of the cache key
    a = base.generate("The quick", do_sample=False, max_new_tokens=12).token_ids
    b = tuned.generate("The quick", do_sample=False, max_new_tokens=12).token_ids
    c = merged.generate("The quick", do_sample=False, max_new_tokens=12).token_ids
    assert a != b
    assert b == c
    assert tuned.weights != base.weights  # the fingerprint covers the adapter's weights


def test_adapter_is_recorded_and_replayed(gpt2_dir: Path, adapter_dir: Path, tmp_path: Path) -> None:
    tuned = aigc.load("text", gpt2_dir, device="cpu", adapter=adapter_dir)
    res = tuned.generate("The quick", seed=3, max_new_tokens=10)
    assert res.record is not None and res.record.options["adapter"] == str(adapter_dir)
    path = res.save(tmp_path / "t.json")[0]
    aigc.cache.clear()
    assert aigc.replay(path).texts == res.texts


def test_adapter_errors(gpt2_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match=r"adapter_config\.json"):
        aigc.load("text", gpt2_dir, device="cpu", adapter=tmp_path)
    with pytest.raises(InvalidRequest, match="merge_adapter"):
        aigc.load("text", gpt2_dir, device="cpu", merge_adapter=True)
    with pytest.raises(InvalidRequest, match="merge_adapter"):
        aigc.load("text", gpt2_dir, device="cpu", adapter=tmp_path, merge_adapter="yes")
