"""MusicGen: batched; each sample's codebook tokens are drawn from its own seed by aigc's sampler."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from aigc._backends.audio_transformers._family import (
    Cancelled,
    Family,
    to_waveform,
)
from aigc._runtime.events import EventEmitter
from aigc._types import AudioRequest
from aigc.errors import AigcError, InvalidRequest
from aigc.sampling import draws, generators, sampler_version
from aigc.sampling.processors import LogitsProcessor, Temperature, TopK, TopP
from aigc.sampling.sampler import inverse_cdf

if TYPE_CHECKING:
    from aigc._backends.audio_transformers import TransformersAudioGenerator


class _SamplerLast(list[Any]):
    """A logits-processor list whose ``append`` keeps aigc's sampler last (MusicGen appends its guidance
    processor to the list it is given; the sampler must see the guided scores)."""

    def append(self, item: Any) -> None:
        if self and isinstance(self[-1], _SeededSampler):
            self.insert(len(self) - 1, item)
        else:
            super().append(item)


class _SeededSampler:
    """The last logits processor: draws each row's token from its sample's seed and returns scores that are 0 for
    that token and -inf elsewhere, so that greedy decoding picks exactly it.

    Rows are sample-major: ``codebooks`` consecutive rows per sample (``scores``: (B * K, V)). The draw of
    codebook *c* at step *t* is the counter-based uniform (sample's seed, ``"tokens"``, t, c), turned into a
    token by inverse transform sampling on the device (:func:`aigc.sampling.sampler.inverse_cdf`); records from
    sampler version 1 replay with that version's per-sample CPU generators and ``torch.multinomial``.

    The uniforms of every step are computed at the first step in one call (:func:`draws.uniform_table`: the same
    numbers as a call a step, without the dozen small tensor operations a step that made up half the sampler's
    time); a step past ``total`` computes its own.
    """

    def __init__(self, seeds: list[int], codebooks: int, processors: list[LogitsProcessor], events: EventEmitter,
                 total: int, first: int) -> None:
        self.version = sampler_version()
        self.generators = generators(seeds) if self.version == 1 else []
        self.keys = draws.stream_keys(seeds, "tokens")
        self.table: torch.Tensor | None = None  # (total, B * K) uniforms, made at the first step
        self.samples = len(seeds)
        self.codebooks = codebooks
        self.processors = processors
        self.events = events
        self.total = total
        self.first = first
        self.step = 0

    def _uniforms(self, device: torch.device) -> torch.Tensor:
        """``(B * K,)``: this step's uniform of each row (sample-major; index = codebook)."""
        if self.table is None or self.table.device != device:
            self.keys = self.keys.to(device)
            steps = torch.arange(self.total, dtype=torch.long, device=device).expand(self.samples, self.total)
            table = draws.uniform_table(self.keys, steps, (self.codebooks,))  # (B, total, K)
            self.table = table.transpose(0, 1).reshape(self.total, -1)  # (total, B * K): a step's row contiguous
        if self.step < self.total:
            return self.table[self.step]
        step = torch.full((self.samples,), self.step, dtype=torch.long, device=device)
        return draws.uniform(self.keys, step, (self.codebooks,)).reshape(-1)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        k = self.codebooks
        if scores.shape[0] != self.samples * k:
            raise AigcError(f"MusicGen sampling: expected {self.samples * k} rows of scores, got "
                            f"{scores.shape[0]} (this transformers version orders its processors differently). Fix: "
                            "report it, and meanwhile pass deterministic=True or guidance=1")
        for p in self.processors:
            scores = p(input_ids, scores)
        if self.version == 1:
            probs = scores.float().softmax(dim=-1).cpu()  # (B * K, V)
            chosen = torch.cat([torch.multinomial(probs[i * k:(i + 1) * k], 1, generator=g)
                                for i, g in enumerate(self.generators)]).to(scores.device)  # (B * K, 1)
        else:
            chosen = inverse_cdf(scores, self._uniforms(scores.device))[:, None]
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(1, chosen, 0.0)
        self.step += 1
        self.events.emit("step", step=self.step, total=self.total, sample=self.first, advance=1)
        if self.events.cancelled:
            raise Cancelled
        return out


class Musicgen(Family):
    name = "musicgen"
    supported = frozenset({"duration_s", "guidance"})

    def __init__(self, gen: TransformersAudioGenerator) -> None:
        super().__init__(gen)
        config = gen.model.config
        audio = config.audio_encoder
        self.hop = int(np.prod(audio.upsampling_ratios))  # audio samples per frame
        channels = int(getattr(config.decoder, "audio_channels", 1) or 1)
        self.codebooks = int(config.decoder.num_codebooks)
        self.delay = self.codebooks // channels - 1  # frames lost to the codebook delay pattern
        self.max_positions = int(config.decoder.max_position_embeddings)

    @property
    def sample_rate(self) -> int:
        return int(self.gen.model.config.audio_encoder.sampling_rate)

    def check(self, request: AudioRequest) -> tuple[int, int | None]:
        """Returns (max_new_tokens, samples to keep or None)."""
        gen_config = self.gen.model.generation_config
        if request.duration_s is None:
            tokens = gen_config.max_new_tokens or (gen_config.max_length or 0) - 1
            if tokens < 1:  # no length in the generation config: about 5 s for a 32 kHz / 50 Hz model
                tokens = min(256, self.max_positions)
            return int(tokens), None
        frames = math.ceil(request.duration_s * self.sample_rate / self.hop)
        tokens = frames + self.delay
        if tokens > self.max_positions:
            longest = (self.max_positions - self.delay) * self.hop / self.sample_rate
            raise InvalidRequest("duration_s", request.duration_s, f"this MusicGen model makes at most {longest:.2f} s "
                                 f"({self.max_positions} decoder positions)", f"pass duration_s <= {longest:.2f}")
        return tokens, round(request.duration_s * self.sample_rate)

    def _processors(self) -> list[LogitsProcessor]:
        cfg = self.gen.model.generation_config
        procs: list[LogitsProcessor] = []
        if cfg.temperature is not None and cfg.temperature != 1.0:
            procs.append(Temperature(cfg.temperature))
        if cfg.top_k:
            procs.append(TopK(cfg.top_k))
        if cfg.top_p is not None and cfg.top_p < 1.0:
            procs.append(TopP(cfg.top_p))
        return procs

    def run(self, request: AudioRequest, prompts: list[str], seeds: list[int], checked: Any,
            events: EventEmitter) -> list[np.ndarray[Any, Any]]:
        import copy

        tokens, keep = checked
        model, tok = self.gen.model, self.gen.tokenizer
        base = copy.deepcopy(model.generation_config)
        sample = bool(base.do_sample)
        guidance = request.guidance if request.guidance is not None else base.guidance_scale
        base.do_sample, base.top_k, base.top_p, base.temperature = False, None, None, None
        base.guidance_scale = guidance
        base.max_new_tokens, base.max_length = tokens, None
        chunk = self.gen._chunk_size(request)
        events.set_total(tokens * -(-len(seeds) // chunk))
        events.emit("start", total=tokens)
        out: list[np.ndarray[Any, Any]] = []
        for start in range(0, len(seeds), chunk):
            part = seeds[start:start + chunk]
            enc = tok(prompts[start:start + len(part)], return_tensors="pt", padding=True)
            processors = _SamplerLast()
            if sample:
                processors.append(_SeededSampler(part, self.codebooks, self._processors(), events, tokens, start))
            try:
                with torch.inference_mode():
                    audio = model.generate(input_ids=enc["input_ids"].to(self.gen.device),
                                           attention_mask=enc["attention_mask"].to(self.gen.device),
                                           generation_config=copy.deepcopy(base), logits_processor=processors)
            except Cancelled:
                raise self.gen._cancelled(start, len(seeds), "samples") from None
            for row in audio:  # (channels, samples)
                out.append(to_waveform(row[:, :keep] if keep is not None else row))
        events.emit("end", total=tokens)
        return out


