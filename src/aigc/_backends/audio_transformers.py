"""Audio backend ``transformers``: text-to-speech and text-to-audio models that transformers loads.

Families, chosen by ``config.model_type``:

* ``vits`` -- VITS / MMS-TTS (``VitsModel``). ``voice`` is the speaker id of a multi-speaker model. The model
  draws its noise from torch's global RNG, so each sample runs on its own inside ``fork_rng`` seeded with the
  sample's seed: the caller's RNG is untouched and sample *i* of a batch equals a single run with its seed.
* ``speecht5`` -- ``SpeechT5ForTextToSpeech`` with a ``SpeechT5HifiGan`` vocoder (a ``vocoder/`` folder in the
  model directory, or the load option ``vocoder=``). ``voice`` is a speaker x-vector: a ``.npy`` /
  ``.safetensors`` file, or the name of one in the model's ``speakers/`` folder; without it, the model's
  ``speakers/default.*`` or else a zero vector. Its decoder pre-net keeps dropout on at inference, so samples
  run one by one with the global RNG isolated, as for VITS.
* ``musicgen`` -- ``MusicgenForConditionalGeneration``. ``duration_s`` sets the number of audio frames,
  ``guidance`` the classifier-free guidance scale. Token sampling is aigc's: a last logits processor draws
  each sample's codebook tokens from counter-based draws of that sample's seed on the model's device (the
  model's own top-k / temperature settings applied first by :mod:`aigc.sampling` processors), so batches run
  together and still match single runs.
* anything else ``AutoModelForTextToWaveform`` loads -- a generic path (forward ``waveform`` output or
  ``generate()``), one sample at a time with the global RNG isolated; the load option ``sample_rate=`` names
  the output rate when the config has none. Text-to-spectrogram models other than SpeechT5 are refused (aigc
  pairs no vocoder with them).

* ``bark`` -- ``BarkModel`` (text -> semantic tokens -> coarse / fine EnCodec codes -> waveform). Every stage
  samples from torch's global RNG, so samples run one by one with it isolated, as for VITS. The prompt is read
  as at most ``max_input_semantic_length`` tokens (256 for suno/bark; longer prompts are refused, not cut).
  ``voice`` is a voice preset: a name from the model's ``speaker_embeddings_path.json`` (BarkProcessor's
  layout, ``.npy`` files read with ``allow_pickle=False``) or a ``.npz`` file with ``semantic_prompt``,
  ``coarse_prompt`` and ``fine_prompt``. Bark decides its own length: ``duration_s`` is refused. The model's
  ``generation_config.json`` must hold Bark's nested stage settings (checked at load).

Stages of one ``generate``:
    1. check the request against the model family (fields it takes, voice, duration, prompt tokens);
    2. per sample (VITS, SpeechT5, generic) or per chunk (MusicGen): run with seeded randomness;
    3. collect float32 ``(channels, samples)`` waveforms at the model's sample rate.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from aigc._generator import Generator, LoadOptions
from aigc._results import AudioResult
from aigc._runtime.assets import read_json_object
from aigc._runtime.events import EventEmitter
from aigc._runtime.weights import fingerprint_files, weight_files
from aigc._types import AudioRequest
from aigc.errors import (
    AigcError,
    BackendUnavailable,
    GenerationCancelled,
    InvalidRequest,
    ModelNotFound,
    UnsafeModelFile,
)
from aigc.sampling import draws, generators, sampler_version
from aigc.sampling.processors import LogitsProcessor, Temperature, TopK, TopP
from aigc.sampling.sampler import inverse_cdf

__all__ = ["TransformersAudioGenerator"]

logger = logging.getLogger(__name__)

_REQUEST_FIELDS = ("duration_s", "voice", "negative_prompt", "steps", "guidance")


class _Cancelled(Exception):
    """Raised inside a sampling step to leave ``generate`` at once."""


@contextlib.contextmanager
def _isolated_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Run a block with torch's global RNG (CPU and ``device``) seeded with ``seed``, then restore the caller's
    state. For models that draw noise internally (``torch.randn``, dropout) and take no generator."""
    if device.type == "cpu":
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            yield
    elif device.type == "cuda":  # fork and seed only the model's GPU
        index = device.index if device.index is not None else torch.cuda.current_device()
        with torch.random.fork_rng(devices=[index], device_type="cuda"):
            torch.default_generator.manual_seed(seed)
            torch.cuda.default_generators[index].manual_seed(seed)
            yield
    else:  # mps and others: one device; fork all of that type
        with torch.random.fork_rng(device_type=device.type):
            torch.manual_seed(seed)
            yield


def _to_waveform(x: torch.Tensor) -> np.ndarray[Any, Any]:
    """A (samples,) or (channels, samples) tensor as float32 numpy (channels, samples)."""
    arr = x.detach().float().cpu().numpy()
    return np.ascontiguousarray(arr[None, :] if arr.ndim == 1 else arr, dtype=np.float32)


def _positive(name: str, value: Any, fix: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InvalidRequest(name, value, "must be a number > 0", fix)
    return float(value)


# -- the families ------------------------------------------------------------------------------------------


class _Family:
    """One way to run a kind of model. ``supported`` lists the request fields it honours."""

    name: ClassVar[str]
    supported: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, gen: TransformersAudioGenerator) -> None:
        self.gen = gen

    @property
    def sample_rate(self) -> int:
        raise NotImplementedError

    def check(self, request: AudioRequest) -> Any:
        """Everything about the request this family can check before running; returns what ``run`` needs."""
        return None

    def run(self, request: AudioRequest, prompts: list[str], seeds: list[int], checked: Any,
            events: EventEmitter) -> list[np.ndarray[Any, Any]]:
        raise NotImplementedError

    # shared helpers
    def encode(self, prompt: str, index: int) -> dict[str, torch.Tensor]:
        tok = self.gen.tokenizer
        enc = tok(prompt, return_tensors="pt")
        special = set(getattr(tok, "all_special_ids", []) or [])
        known = [t for t in enc["input_ids"].reshape(-1).tolist() if t not in special]  # unknown/pad/eos don't count
        if not known or not prompt.strip():
            raise InvalidRequest(f"prompt[{index}]", prompt, "gives no tokens this model knows",
                                 "pass some text in the model's language and script")
        return {k: v.to(self.gen.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    def per_sample(self, prompts: list[str], seeds: list[int], events: EventEmitter,
                   one: Any) -> list[np.ndarray[Any, Any]]:
        """Run ``one(inputs)`` per sample with the global RNG seeded with the sample's seed and isolated."""
        encoded: dict[str, dict[str, torch.Tensor]] = {}
        for i, p in enumerate(prompts):
            if p not in encoded:
                encoded[p] = self.encode(p, i)  # already checked in _generate; this only tokenizes
        total = len(seeds)
        events.set_total(total)
        events.emit("start", total=total)
        out: list[np.ndarray[Any, Any]] = []
        for i, (prompt, seed) in enumerate(zip(prompts, seeds, strict=True)):
            with _isolated_rng(seed, self.gen.device), torch.inference_mode():
                out.append(one(encoded[prompt]))
            events.emit("step", step=i + 1, total=total, sample=i, advance=1)
            if events.cancelled and i + 1 < total:
                raise GenerationCancelled(f"cancelled by the event callback after sample {i}; the generator is "
                                          "still usable")
        events.emit("end", total=total)
        return out


class _Vits(_Family):
    name = "vits"
    supported = frozenset({"voice"})

    @property
    def sample_rate(self) -> int:
        return int(self.gen.model.config.sampling_rate)

    def check(self, request: AudioRequest) -> int | None:
        speakers = int(getattr(self.gen.model.config, "num_speakers", 1) or 1)
        voice = request.voice
        if voice is None:
            return None
        if speakers <= 1:
            raise InvalidRequest("voice", voice, "this VITS model has a single speaker", "leave voice out")
        if isinstance(voice, str) and voice.strip().isdigit():
            voice = int(voice)
        if isinstance(voice, bool) or not isinstance(voice, int) or not 0 <= voice < speakers:
            raise InvalidRequest("voice", request.voice, f"this VITS model has speakers 0 .. {speakers - 1}",
                                 f"pass voice=0 .. {speakers - 1}")
        return voice

    def run(self, request: AudioRequest, prompts: list[str], seeds: list[int], checked: Any,
            events: EventEmitter) -> list[np.ndarray[Any, Any]]:
        model = self.gen.model

        def one(inputs: dict[str, torch.Tensor]) -> np.ndarray[Any, Any]:
            out = model(**inputs, speaker_id=checked)
            length = int(out.sequence_lengths[0])
            return _to_waveform(out.waveform[0, :length])  # (1, samples)

        return self.per_sample(prompts, seeds, events, one)


class _SpeechT5(_Family):
    name = "speecht5"
    supported = frozenset({"voice"})

    @property
    def sample_rate(self) -> int:
        return int(self.gen.vocoder.config.sampling_rate)

    def _speaker_file(self, voice: str) -> Path | None:
        path = Path(os.path.expanduser(voice))
        if path.suffix in (".npy", ".safetensors") and path.is_file():
            return path
        folder = self.gen.model_dir / "speakers" if self.gen.model_dir is not None else None
        if folder is not None:
            for suffix in (".npy", ".safetensors"):
                if (folder / f"{voice}{suffix}").is_file():
                    return folder / f"{voice}{suffix}"
        return None

    def voices(self) -> list[str]:
        folder = self.gen.model_dir / "speakers" if self.gen.model_dir is not None else None
        if folder is None or not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.iterdir() if p.suffix in (".npy", ".safetensors"))

    def check(self, request: AudioRequest) -> torch.Tensor:
        dim = int(self.gen.model.config.speaker_embedding_dim)
        voice = request.voice
        if voice is None:
            default = self._speaker_file("default")
            if default is None:
                return torch.zeros((1, dim))
            voice = str(default)
        if not isinstance(voice, str):
            raise InvalidRequest("voice", voice, "SpeechT5 takes a speaker x-vector file, not a number",
                                 "pass voice='path/to/xvector.npy'" + self._known())
        path = self._speaker_file(voice)
        if path is None:
            raise InvalidRequest("voice", voice, "no such speaker embedding (.npy or .safetensors file, or name in "
                                 "the model's speakers/ folder)", "pass a path to an x-vector file" + self._known())
        try:
            if path.suffix == ".npy":
                vec = torch.from_numpy(np.load(path, allow_pickle=False))
            else:
                from safetensors.torch import load_file

                tensors = load_file(os.fspath(path))
                found = tensors.get("speaker_embeddings", next(iter(tensors.values())) if len(tensors) == 1 else None)
                if found is None:
                    raise ValueError(f"expected one tensor or 'speaker_embeddings', found {sorted(tensors)}")
                vec = found
        except (OSError, ValueError) as e:
            raise InvalidRequest("voice", voice, f"cannot read the speaker embedding: {e}",
                                 "pass a .npy file holding one float vector") from None
        vec = vec.float().reshape(-1)
        if vec.numel() != dim:
            raise InvalidRequest("voice", voice, f"a speaker embedding of {vec.numel()} values; this model takes "
                                 f"{dim}", f"pass an x-vector of size {dim}")
        return vec[None, :]  # (1, dim)

    def _known(self) -> str:
        names = self.voices()
        return f", or one of {', '.join(names)}" if names else ""

    def run(self, request: AudioRequest, prompts: list[str], seeds: list[int], checked: Any,
            events: EventEmitter) -> list[np.ndarray[Any, Any]]:
        model, vocoder, opts = self.gen.model, self.gen.vocoder, self.gen.speech_options
        speaker = checked.to(self.gen.device, self.gen.dtype)

        def one(inputs: dict[str, torch.Tensor]) -> np.ndarray[Any, Any]:
            wave = model.generate_speech(inputs["input_ids"], speaker, attention_mask=inputs.get("attention_mask"),
                                         vocoder=vocoder, **opts)
            return _to_waveform(wave)  # (1, samples)

        return self.per_sample(prompts, seeds, events, one)


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
    """

    def __init__(self, seeds: list[int], codebooks: int, processors: list[LogitsProcessor], events: EventEmitter,
                 total: int, first: int) -> None:
        self.version = sampler_version()
        self.generators = generators(seeds) if self.version == 1 else []
        self.keys = draws.stream_keys(seeds, "tokens")
        self.samples = len(seeds)
        self.codebooks = codebooks
        self.processors = processors
        self.events = events
        self.total = total
        self.first = first
        self.step = 0

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
            self.keys = self.keys.to(scores.device)
            step = torch.full((self.samples,), self.step, dtype=torch.long, device=scores.device)
            u = draws.uniform(self.keys, step, (k,)).reshape(-1)  # (B * K,): index = codebook
            chosen = inverse_cdf(scores, u)[:, None]
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(1, chosen, 0.0)
        self.step += 1
        self.events.emit("step", step=self.step, total=self.total, sample=self.first, advance=1)
        if self.events.cancelled:
            raise _Cancelled
        return out


class _Musicgen(_Family):
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
        chunk = 1 if request.deterministic else self.gen.max_batch_size
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
            except _Cancelled:
                raise GenerationCancelled(f"cancelled by the event callback after sample {start}; the generator "
                                          "is still usable") from None
            for row in audio:  # (channels, samples)
                out.append(_to_waveform(row[:, :keep] if keep is not None else row))
        events.emit("end", total=tokens)
        return out


class _Bark(_Family):
    """Bark (``BarkModel``): text -> semantic tokens -> coarse codes -> fine codes -> EnCodec, all sampled from the
    global RNG, so samples run one by one with it isolated. ``voice`` is a voice preset (speaker prompt)."""

    name = "bark"
    supported = frozenset({"voice"})
    _STAGES = ("semantic_config", "coarse_acoustics_config", "fine_acoustics_config")

    def __init__(self, gen: TransformersAudioGenerator) -> None:
        super().__init__(gen)
        gen_config = gen.model.generation_config
        stages: dict[str, Any] = {k: getattr(gen_config, k, None) for k in self._STAGES}
        missing = [k for k, v in stages.items() if not isinstance(v, dict)]
        if missing or not isinstance(getattr(gen_config, "codebook_size", None), int):
            raise ModelNotFound(f"model={gen.model_id!r}: its generation_config.json lacks Bark's settings "
                                f"({', '.join(missing) or 'codebook_size'}). Fix: use a Bark checkpoint whose "
                                "generation_config.json holds semantic_config, coarse_acoustics_config, "
                                "fine_acoustics_config and codebook_size (as suno/bark does)")
        self.semantic: dict[str, Any] = stages["semantic_config"]
        self.coarse: dict[str, Any] = stages["coarse_acoustics_config"]
        self.fine: dict[str, Any] = stages["fine_acoustics_config"]
        self.codebook_size = int(gen_config.codebook_size)
        self.max_tokens = int(self.semantic.get("max_input_semantic_length", 256))
        self.semantic_vocab = int(self.semantic.get("semantic_vocab_size", 10_000))
        self.n_coarse = int(self.coarse.get("n_coarse_codebooks", 2))
        self.n_fine = int(self.fine.get("n_fine_codebooks", 8))

    @property
    def sample_rate(self) -> int:
        return int(self.gen.model.config.codec_config.sampling_rate)

    def encode(self, prompt: str, index: int) -> dict[str, torch.Tensor]:
        """Bark reads exactly ``max_input_semantic_length`` text tokens (no special tokens), padded on the right
        and masked; longer prompts are refused rather than cut."""
        tok = self.gen.tokenizer
        ids: list[int] = tok(prompt, add_special_tokens=False)["input_ids"]
        special = set(getattr(tok, "all_special_ids", []) or [])
        if not prompt.strip() or not [t for t in ids if t not in special]:
            raise InvalidRequest(f"prompt[{index}]", prompt, "gives no tokens this model knows",
                                 "pass some text in the model's language and script")
        if len(ids) > self.max_tokens:
            raise InvalidRequest(f"prompt[{index}]", prompt, f"is {len(ids)} tokens; this Bark model reads at most "
                                 f"{self.max_tokens}", "shorten the text, or split it and generate each part")
        pad = int(tok.pad_token_id or 0)
        input_ids = torch.tensor([ids + [pad] * (self.max_tokens - len(ids))])  # (1, max_tokens)
        mask = torch.zeros_like(input_ids)
        mask[0, :len(ids)] = 1
        return {"input_ids": input_ids.to(self.gen.device), "attention_mask": mask.to(self.gen.device)}

    # -- voice presets -------------------------------------------------------------------------
    def _presets(self) -> dict[str, Any]:
        """The model's voice presets: ``speaker_embeddings_path.json`` (BarkProcessor's layout), name -> paths."""
        folder = self.gen.model_dir
        index = folder / "speaker_embeddings_path.json" if folder is not None else None
        if index is None or not index.is_file():
            return {}
        try:
            data = json.loads(index.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}

    def voices(self) -> list[str]:
        return sorted(self._presets())

    def _read_preset(self, voice: str) -> dict[str, np.ndarray[Any, Any]]:
        presets = self._presets()
        keys = ("semantic_prompt", "coarse_prompt", "fine_prompt")
        arrays: dict[str, np.ndarray[Any, Any]] = {}
        if voice in presets and self.gen.model_dir is not None:  # presets come only from a local directory
            root = self.gen.model_dir.resolve()
            for key in keys:
                rel = presets[voice].get(key)
                path = (root / str(rel)).resolve() if isinstance(rel, str) else None
                if path is None or root not in path.parents or path.suffix != ".npy":
                    raise InvalidRequest("voice", voice, f"the model's preset has no usable {key} (.npy inside the "
                                         "model directory)", "pick another voice" + self._known())
                arrays[key] = np.load(path, allow_pickle=False)
            return arrays
        path = Path(os.path.expanduser(voice))
        if path.suffix != ".npz" or not path.is_file():
            raise InvalidRequest("voice", voice, "no such voice preset (a name the model lists, or a .npz file with "
                                 "semantic_prompt, coarse_prompt and fine_prompt)",
                                 "pass a preset name or a .npz path" + self._known())
        with np.load(path, allow_pickle=False) as npz:
            for key in keys:
                if key not in npz.files:
                    raise ValueError(f"no {key!r} array (found {sorted(npz.files)})")
                arrays[key] = npz[key]
        return arrays

    def _known(self) -> str:
        names = self.voices()
        return f"; this model has {', '.join(names)}" if names else "; this model ships no presets"

    def check(self, request: AudioRequest) -> dict[str, torch.Tensor] | None:
        voice = request.voice
        if voice is None:
            return None
        if not isinstance(voice, str):
            raise InvalidRequest("voice", voice, "Bark takes a voice preset name or .npz file, not a number",
                                 "pass voice='<preset>'" + self._known())
        try:
            arrays = self._read_preset(voice)
        except InvalidRequest:
            raise
        except (OSError, ValueError) as e:  # unreadable, or an object (pickled) array
            raise InvalidRequest("voice", voice, f"cannot read the voice preset: {e}",
                                 "pass a .npz / .npy preset of integer arrays" + self._known()) from None
        shapes = {"semantic_prompt": (1, None, self.semantic_vocab), "coarse_prompt": (2, self.n_coarse,
                  self.codebook_size), "fine_prompt": (2, self.n_fine, self.codebook_size)}
        out: dict[str, torch.Tensor] = {}
        for key, (ndim, rows, limit) in shapes.items():
            arr = arrays[key]
            ok = arr.ndim == ndim and (rows is None or arr.shape[0] == rows) and arr.shape[-1] > 0
            ok = ok and np.issubdtype(arr.dtype, np.integer) and int(arr.min()) >= 0 and int(arr.max()) < limit
            if not ok:
                want = f"({rows}, frames)" if rows is not None else "(tokens,)"
                raise InvalidRequest("voice", voice, f"{key} is {arr.dtype} {arr.shape}; this model takes integers "
                                     f"in [0, {limit}) of shape {want}", "pass a preset made for this model")
            out[key] = torch.from_numpy(arr.astype(np.int64)).to(self.gen.device)
        return out

    def run(self, request: AudioRequest, prompts: list[str], seeds: list[int], checked: Any,
            events: EventEmitter) -> list[np.ndarray[Any, Any]]:
        model = self.gen.model

        def one(inputs: dict[str, torch.Tensor]) -> np.ndarray[Any, Any]:
            history = {k: v.clone() for k, v in checked.items()} if checked is not None else None
            try:
                audio = model.generate(**inputs, history_prompt=history)  # (1, samples)
            except torch.OutOfMemoryError:
                raise
            except RuntimeError as e:  # EnCodec cannot decode a few frames (an early end of speech)
                raise AigcError(f"Bark made too little audio to decode for this prompt and seed ({e}). Fix: use "
                                "a longer prompt or another seed") from None
            return _to_waveform(audio[0])  # (1, samples)

        return self.per_sample(prompts, seeds, events, one)


class _Generic(_Family):
    """Other text-to-waveform / text-to-spectrogram models: a waveform from ``forward`` or ``generate``."""

    name = "generic"

    @property
    def sample_rate(self) -> int:
        if "sample_rate" in self.gen.options:
            return int(self.gen.options["sample_rate"])
        config = self.gen.model.config
        owners = (config, *(getattr(config, k, None) for k in ("vocoder_config", "audio_encoder", "codec_config")))
        for owner in owners:
            for key in ("sampling_rate", "sample_rate"):
                value = getattr(owner, key, None)
                if isinstance(value, int) and value > 0:
                    return value
        raise ModelNotFound(f"model={self.gen.model_id!r}: its config names no sampling rate. Fix: pass the load "
                            "option sample_rate= (e.g. 22050), as the model card gives it")

    def run(self, request: AudioRequest, prompts: list[str], seeds: list[int], checked: Any,
            events: EventEmitter) -> list[np.ndarray[Any, Any]]:
        model = self.gen.model

        def one(inputs: dict[str, torch.Tensor]) -> np.ndarray[Any, Any]:
            try:
                out: Any = model(**inputs) if "generate" not in type(model).__dict__ else None
                if getattr(out, "waveform", None) is None:
                    out = model.generate(**inputs)
            except (TypeError, ValueError, AttributeError) as e:
                raise AigcError(f"{type(model).__name__} did not run from a text prompt alone ({e}). Fix: use a "
                                "model family this backend supports (vits, speecht5, musicgen)") from None
            for key in ("waveform", "audio_values", "sequences"):
                if isinstance(getattr(out, key, None), torch.Tensor):
                    out = getattr(out, key)
                    break
            if not isinstance(out, torch.Tensor) or out.ndim not in (2, 3) or not out.is_floating_point():
                raise AigcError(f"{type(model).__name__} gave no waveform the generic path understands. Fix: use a "
                                "model family this backend supports (vits, speecht5, musicgen)")
            return _to_waveform(out[0])

        return self.per_sample(prompts, seeds, events, one)


_FAMILIES: dict[str, type[_Family]] = {"vits": _Vits, "speecht5": _SpeechT5, "musicgen": _Musicgen, "bark": _Bark}
_UNSUPPORTED = {"musicgen_melody": "MusicGen Melody is not supported yet; use a plain MusicGen model"}


def _audio_model_types() -> tuple[set[str], set[str]]:
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_TEXT_TO_SPECTROGRAM_MAPPING_NAMES,
        MODEL_FOR_TEXT_TO_WAVEFORM_MAPPING_NAMES,
    )

    return set(MODEL_FOR_TEXT_TO_WAVEFORM_MAPPING_NAMES), set(MODEL_FOR_TEXT_TO_SPECTROGRAM_MAPPING_NAMES)


def _check_extra(extra: Any) -> None:
    for name in ("speaking_rate", "noise_scale", "noise_scale_duration", "maxlenratio", "threshold"):
        if name in extra:
            _positive(name, extra[name], f"pass {name}=1.0")
    if "minlenratio" in extra:
        v = extra["minlenratio"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise InvalidRequest("minlenratio", v, "must be a number >= 0", "pass minlenratio=0.0")
    rate = extra.get("sample_rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0):
        raise InvalidRequest("sample_rate", rate, "must be a positive int (samples per second)",
                             "pass sample_rate=22050")
    mbs = extra.get("max_batch_size", 8)
    if not isinstance(mbs, int) or isinstance(mbs, bool) or mbs < 1:
        raise InvalidRequest("max_batch_size", mbs, "must be an int >= 1", "pass max_batch_size=4")
    vocoder = extra.get("vocoder")
    if vocoder is not None and not isinstance(vocoder, (str, os.PathLike)):
        raise InvalidRequest("vocoder", vocoder, "must be a directory or a hub id",
                             "pass vocoder='microsoft/speecht5_hifigan'")


class TransformersAudioGenerator(Generator[AudioRequest, AudioResult]):
    """Text-to-speech and text-to-audio models through ``transformers``: VITS / MMS-TTS, SpeechT5 (+ HiFi-GAN),
    MusicGen, Bark, and others the text-to-waveform / text-to-spectrogram auto classes load.

    Loads a local directory or hub id, safetensors only unless ``allow_pickle=True``, ``trust_remote_code=False``
    unless given. Request fields a model family does not take are rejected by name: VITS and SpeechT5 take
    ``voice``; MusicGen takes ``duration_s`` and ``guidance``; Bark takes ``voice`` (a voice preset).

    Load options: ``vocoder`` (SpeechT5: a vocoder directory or hub id; default: the model's ``vocoder/``
    folder), ``speaking_rate``, ``noise_scale``, ``noise_scale_duration`` (VITS), ``threshold``,
    ``minlenratio``, ``maxlenratio`` (SpeechT5's stop rule and length limits, relative to the input tokens),
    ``max_batch_size`` (MusicGen samples per decoding batch, default 8), ``sample_rate`` (generic path only: the
    output rate of a model whose config names none, e.g. FastSpeech2's HiFi-GAN at 22050).

    Example:
        >>> gen = aigc.load("audio", "facebook/mms-tts-eng")  # doctest: +SKIP
        >>> res = gen.generate("hello world", seed=[1, 2])  # doctest: +SKIP
        >>> res.waveforms[0].shape, res.sample_rate  # doctest: +SKIP
        ((1, 21504), 16000)
    """

    modality = "audio"
    backend_name = "transformers"
    request_type = AudioRequest
    supported_params = frozenset({"duration_s", "voice", "guidance"})
    load_options = frozenset({"vocoder", "speaking_rate", "noise_scale", "noise_scale_duration", "threshold",
                              "minlenratio", "maxlenratio", "max_batch_size", "sample_rate"})
    # the vocoder may be a hub id (a download); the others set how long the audio gets, without bound
    unsafe_load_options = frozenset({"vocoder", "speaking_rate", "noise_scale_duration", "minlenratio",
                                     "maxlenratio", "threshold", "max_batch_size"})

    def __init__(self, *, model: Any, tokenizer: Any, vocoder: Any, family: str, model_id: str,
                 model_dir: Path | None, options: LoadOptions, weights: str | None, revision: str | None) -> None:
        super().__init__(model=model_id, device=options.device, dtype=options.dtype, revision=revision,
                         weights=weights, options=options.extra)
        self.model = model
        self.tokenizer = tokenizer
        self.vocoder = vocoder
        self.model_dir = model_dir
        self.max_batch_size = int(options.extra.get("max_batch_size", 8))
        self.speech_options = {k: float(options.extra[k]) for k in ("threshold", "minlenratio", "maxlenratio")
                               if k in options.extra}
        self.family: _Family = _FAMILIES.get(family, _Generic)(self)
        self.sample_rate = self.family.sample_rate  # fails here, at load, when the model names none

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def detect(cls, path: Path) -> bool:
        data = read_json_object(path / "config.json")
        if data is None or (path / "model_index.json").exists():
            return False
        model_type = data.get("model_type")
        wave, spectrogram = _audio_model_types()
        if model_type == "speecht5":
            archs = data.get("architectures") or ["SpeechT5ForTextToSpeech"]
            return "SpeechT5ForTextToSpeech" in archs
        return model_type in wave or model_type in spectrogram

    @classmethod
    def load(cls, model: str, *, options: LoadOptions) -> TransformersAudioGenerator:
        if options.offload != "none":
            raise InvalidRequest("offload", options.offload, "the transformers audio backend keeps the model on one "
                                 "device", "pass offload='none'")
        extra = options.extra
        _check_extra(extra)
        local = os.path.isdir(model)
        model_dir = Path(os.path.abspath(model)) if local else None
        vocoder_src = extra.get("vocoder")
        if vocoder_src is not None and os.path.isdir(vocoder_src):  # record the absolute path, for replay
            vocoder_src = os.path.abspath(os.fspath(vocoder_src))
            options = dataclasses.replace(options, extra={**extra, "vocoder": vocoder_src})
        elif vocoder_src is not None:
            vocoder_src = os.fspath(vocoder_src)
        weights = None
        files: list[Path] = []
        if model_dir is not None:
            files = weight_files(model_dir, allow_pickle=options.allow_pickle)
        import transformers

        common: dict[str, Any] = {"revision": options.revision, "trust_remote_code": options.trust_remote_code}
        try:
            config = transformers.AutoConfig.from_pretrained(model, **common)
        except (OSError, ValueError) as e:
            where = "local directory" if local else "local directory, and the hub could not provide it"
            raise ModelNotFound(f"model={model!r}: no usable {where}: {e}") from None
        model_type = str(getattr(config, "model_type", ""))
        if model_type in _UNSUPPORTED:
            raise ModelNotFound(f"model={model!r}: {_UNSUPPORTED[model_type]}. Fix: use a VITS, SpeechT5, MusicGen or "
                                "Bark model, or a diffusers audio pipeline")
        wave, spectrogram = _audio_model_types()
        if model_type not in wave and model_type not in spectrogram:
            raise ModelNotFound(f"model={model!r} (model_type {model_type!r}) is not a text-to-speech or "
                                "text-to-audio model. Fix: pass a VITS, SpeechT5, MusicGen or Bark model")
        if model_type in spectrogram and model_type not in _FAMILIES:
            raise ModelNotFound(f"model={model!r} ({model_type}) makes spectrograms, and aigc pairs only SpeechT5 "
                                "with a vocoder. Fix: use the model's with-vocoder checkpoint (e.g. "
                                "fastspeech2_conformer_with_hifigan)")
        if "sample_rate" in extra and model_type in _FAMILIES:
            raise InvalidRequest("sample_rate", extra["sample_rate"], f"{model_type} models name their own sample rate",
                                 "leave sample_rate out (it is for models whose config has none)")
        auto = (transformers.AutoModelForTextToWaveform if model_type in wave
                else transformers.AutoModelForTextToSpectrogram)
        if model_type == "speecht5":
            if vocoder_src is None and model_dir is not None and (model_dir / "vocoder").is_dir():
                vocoder_src = os.fspath(model_dir / "vocoder")
            if vocoder_src is None:
                raise ModelNotFound(f"model={model!r}: SpeechT5 makes spectrograms and needs a HiFi-GAN vocoder. Fix: "
                                    "pass vocoder='microsoft/speecht5_hifigan' (or a directory), or put one in the "
                                    "model's vocoder/ folder")
            if os.path.isdir(vocoder_src):
                files += weight_files(Path(vocoder_src), allow_pickle=options.allow_pickle)
        if files:
            weights = fingerprint_files(files)
        safe = None if options.allow_pickle else True
        try:
            net: Any = auto.from_pretrained(model, config=config, dtype=options.dtype, use_safetensors=safe, **common)
            tokenizer = transformers.AutoTokenizer.from_pretrained(model, **common)
            vocoder: Any = None
            if model_type == "speecht5":
                vocoder = transformers.SpeechT5HifiGan.from_pretrained(
                    vocoder_src, dtype=options.dtype, use_safetensors=safe, trust_remote_code=options.trust_remote_code)
        except OSError as e:
            if "safetensors" in str(e).lower() and not options.allow_pickle:
                raise UnsafeModelFile(f"model={model!r} has no safetensors weights: {e}. Fix: pass allow_pickle=True "
                                      "if you trust the source") from None
            raise ModelNotFound(f"model={model!r}: {e}") from None
        except ImportError as e:  # e.g. a sentencepiece tokenizer without the package
            raise BackendUnavailable(f"model={model!r} needs a package that is not installed: {e}") from None
        if getattr(tokenizer, "phonemize", False):
            import importlib.util

            if importlib.util.find_spec("phonemizer") is None:
                raise BackendUnavailable(f"model={model!r}: its VITS tokenizer phonemizes text, which needs the "
                                         "phonemizer package and espeak (pip install phonemizer)")
        if model_type == "vits":
            for key in ("speaking_rate", "noise_scale", "noise_scale_duration"):
                if key in extra:
                    setattr(net, key, float(extra[key]))
        net.to(options.device)
        net.eval()
        if vocoder is not None:
            vocoder.to(options.device)
            vocoder.eval()
        revision = options.revision or getattr(config, "_commit_hash", None)
        return cls(model=net, tokenizer=tokenizer, vocoder=vocoder, family=model_type, model_id=model,
                   model_dir=model_dir, options=options, weights=weights, revision=revision)

    # -- Generator hooks -------------------------------------------------------------------------
    def _modules(self) -> list[torch.nn.Module]:
        return [m for m in (self.model, self.vocoder) if m is not None]

    def _to(self, device: torch.device) -> None:
        for m in self._modules():
            m.to(device)

    def _close(self) -> None:
        self.model = self.vocoder = self.tokenizer = None

    def _check_supported(self, req: Any) -> None:
        super()._check_supported(req)
        allowed = self.family.supported
        for name in _REQUEST_FIELDS:
            value = getattr(req, name)
            if value is not None and name not in allowed:
                takes = ", ".join(sorted(allowed)) or "no audio-specific fields"
                raise InvalidRequest(name, value, f"{self.family.name} models ({self.model_id!r}) do not take it",
                                     f"leave it out; this model takes {takes}")

    # -- generation ------------------------------------------------------------------------------
    def _generate(self, request: AudioRequest, seeds: list[int], events: EventEmitter) -> AudioResult:
        for i, p in enumerate(request.prompts()):
            if not isinstance(p, str):
                raise InvalidRequest(f"prompt[{i}]", p, "must be a string", "pass the text to speak or describe")
            self.family.encode(p, i)  # prompts that give no known tokens fail here, before any work
        checked = self.family.check(request)
        prompts = [p for p in request.prompts() for _ in range(request.samples_per_prompt)]
        waves = self.family.run(request, prompts, seeds, checked, events)
        return AudioResult(waveforms=waves, sample_rate=self.sample_rate, seeds=seeds)
