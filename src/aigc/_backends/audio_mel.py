"""Audio backend ``mel``: aigc's own small speech model, which says one word per clip in one of several voices.

A model directory is what ``scripts/train_audio_default.py`` exports, in the format :mod:`aigc.formats.mel_speaker`
owns (``config.json`` with the words and voices, and ``model.safetensors``).

The built-in name ``"default"`` is the model shipped in the package (``aigc/assets/audio_default``): 20 words
(the digits zero..nine and yes, no, up, down, left, right, on, off, stop, go) in 8 voices, trained on espeak-ng
speech; see its MODEL_CARD.md.

Stages of one ``generate``:
    1. map every prompt to one word ("say seven", "seven", "7", "Say 7!"), and check the voice and
       ``duration_s`` -- before any work;
    2. from each sample's own seed draw the prosody code (pitch, rate) uniformly in [-1, 1] with a CPU generator;
    3. the decoder writes a log-mel spectrogram (n_mels, frames); the deterministic Griffin-Lim vocoder turns it
       into a waveform (no global RNG anywhere);
    4. peak-normalise to 0.9 (gain at most 30x, so a near-silent clip stays quiet) and pad with trailing
       silence to ``duration_s`` when asked.

Sample *i* of ``seed=s`` equals a single run with ``seed=s+i``, bit for bit (the decoder runs clip by clip).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aigc._generator import Generator, LoadOptions
from aigc._options import BatchOptions
from aigc._results import AudioResult
from aigc._runtime.assets import model_dir
from aigc._runtime.events import EventEmitter
from aigc._types import AudioRequest
from aigc.errors import InvalidRequest
from aigc.formats import mel_speaker
from aigc.limits import check_audio_samples
from aigc.sampling import uniform

__all__ = ["MelSpeechGenerator", "load_speech_model", "parse_word"]

CONFIG_FILE = "config.json"
BUILTIN = {"default": "audio_default"}
PEAK, MAX_GAIN = 0.9, 30.0
#: words a prompt may contain besides the one word to say
FILLER = frozenset({"say", "speak", "pronounce", "read", "the", "word", "number", "digit", "please", "a", "an", "out",
                    "loud", "aloud"})
_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def parse_word(prompt: str, words: list[str]) -> int | str:
    """The index of the one word ``prompt`` asks for, or a message saying what is wrong with it.

    Case and punctuation are ignored; a single digit stands for its English name; filler words such as "say",
    "the", "number", "please" may surround the word.

    Example:
        >>> parse_word("Say 7!", list(_DIGITS)), parse_word("seven", list(_DIGITS))
        (7, 7)
        >>> parse_word("say hello", list(_DIGITS))
        "'hello' is not a word this model says"
    """
    index = {w.lower(): i for i, w in enumerate(words)}
    found: set[int] = set()
    for token in re.findall(r"[^\W_]+", prompt.lower()):
        if token.isdigit() and len(token) == 1 and _DIGITS[int(token)] in index:
            found.add(index[_DIGITS[int(token)]])
        elif token in index:
            found.add(index[token])
        elif token not in FILLER:
            return f"{token!r} is not a word this model says"
    if not found:
        return "names no word this model says"
    if len(found) > 1:
        return f"names {len(found)} words ({', '.join(words[i] for i in sorted(found))}); a clip says one"
    return found.pop()


@dataclass(frozen=True, kw_only=True)
class MelOptions(BatchOptions):
    """Load option: ``max_batch_size``, clips per network call (default 32)."""

    max_batch_size: int = 32


def _model_dir(model: str) -> Path:
    return model_dir(model, BUILTIN, marker=CONFIG_FILE, what="audio model",
                     fix="pass a directory written by scripts/train_audio_default.py, or model='default'")


def load_speech_model(model: str, options: LoadOptions) -> mel_speaker.SpeakerFile:
    """Load a speech model directory (or the built-in ``"default"``) onto ``options.device``."""
    return mel_speaker.load(_model_dir(model), device=options.device, dtype=options.dtype)


class MelSpeechGenerator(Generator[AudioRequest, AudioResult]):
    """aigc's own conditional log-mel speech models; ``aigc.load("audio", "default", backend="mel")``.

    A prompt names one word ("say seven", "seven", "7"); ``voice`` picks a voice by name or index (see
    :attr:`voices`); the seed draws the pitch and speaking rate. Clips are 16 kHz mono and about one second
    long (:attr:`clip_seconds`); ``duration_s`` at least that long pads them with trailing silence. Load option:
    ``max_batch_size`` (clips per network call, default 32).

    Example:
        >>> gen = aigc.load("audio", "default", backend="mel")  # doctest: +SKIP
        >>> gen.voices[:2]  # doctest: +SKIP
        ['us-male', 'us-female']
        >>> gen.generate("say 7", voice="us-female", seed=0).save("seven.wav")  # doctest: +SKIP
    """

    modality = "audio"
    backend_name = "mel"
    request_type = AudioRequest
    supported_params = frozenset({"voice", "duration_s"})
    options_type = MelOptions
    builtin_models = frozenset(BUILTIN)

    def __init__(self, *, speech: mel_speaker.SpeakerFile, model_id: str, options: LoadOptions) -> None:
        from aigc.models.speech import GriffinLimVocoder

        super().__init__(model=model_id, device=options.device, dtype=options.dtype, weights=speech.weights,
                         options=options.extra)
        self.speech = speech
        self.vocoder: Any = GriffinLimVocoder(speech.net.cfg).to(options.device)  # float32, deterministic
        self.max_batch_size = MelOptions.of(options).max_batch_size

    @classmethod
    def detect(cls, path: Path) -> bool:
        return mel_speaker.detect(path)

    @classmethod
    def load(cls, model: str, *, options: LoadOptions) -> MelSpeechGenerator:
        if options.offload != "none":
            raise InvalidRequest("offload", options.offload, "the mel backend keeps its small model on one device",
                                 "pass offload='none'")
        MelOptions.of(options)  # checked before anything loads
        return cls(speech=load_speech_model(model, options), model_id=model, options=options)

    @property
    def words(self) -> list[str]:
        """The words this model says."""
        return list(self.speech.words)

    @property
    def voices(self) -> list[str]:
        """The voice names, in index order (``voice=`` takes a name or an index)."""
        return list(self.speech.voices)

    @property
    def clip_seconds(self) -> float:
        """The length of a clip without padding, in seconds."""
        return self.speech.clip_samples / self.speech.sample_rate

    def _modules(self) -> list[torch.nn.Module]:
        return [self.speech.net, self.vocoder]

    def _to(self, device: torch.device) -> None:
        self.speech.net.to(device)
        self.vocoder.to(device)

    def _close(self) -> None:
        self.speech.net = None
        self.vocoder = None

    # -- validation ------------------------------------------------------------------------------
    def _word_ids(self, request: AudioRequest) -> list[int]:
        ids = []
        for i, prompt in enumerate(request.prompts()):
            found = parse_word(prompt, self.speech.words)
            if isinstance(found, str):
                field = "prompt" if isinstance(request.prompt, str) else f"prompt[{i}]"
                raise InvalidRequest(field, prompt, found,
                                     f"name one of: {', '.join(self.speech.words)} (e.g. 'say seven' or '7')")
            ids.append(found)
        return ids

    def _voice_id(self, voice: str | int | None) -> int:
        voices = self.speech.voices
        listing = ", ".join(f"{i}={v}" for i, v in enumerate(voices))
        if voice is None:
            return self.speech.default_voice
        if isinstance(voice, int) and not isinstance(voice, bool):
            if 0 <= voice < len(voices):
                return voice
            raise InvalidRequest("voice", voice, f"this model has {len(voices)} voices",
                                 f"pass an index 0..{len(voices) - 1} or a name: {listing}")
        if isinstance(voice, str):
            names = {v.lower(): i for i, v in enumerate(voices)}
            if voice.strip().lower() in names:
                return names[voice.strip().lower()]
            raise InvalidRequest("voice", voice, "is not a voice of this model", f"use one of: {listing}")
        raise InvalidRequest("voice", voice, "must be a voice name or index", f"use one of: {listing}")

    def _length(self, duration_s: float | None) -> int:
        clip = self.speech.clip_samples
        if duration_s is None:
            return clip
        check_audio_samples(duration_s, self.speech.sample_rate)  # aigc.limits, before the padding exists
        samples = round(duration_s * self.speech.sample_rate)
        if samples < clip:
            raise InvalidRequest("duration_s", duration_s, f"is shorter than this model's clips "
                                 f"({self.clip_seconds:.3f} s; a word is never cut)",
                                 f"pass duration_s >= {self.clip_seconds:.3f} (padded with silence) or leave it out")
        return int(samples)

    # -- generation ------------------------------------------------------------------------------
    def _generate(self, request: AudioRequest, seeds: list[int], events: EventEmitter) -> AudioResult:
        # 1. Validate everything before any tensor work.
        word_ids = self._word_ids(request)
        voice = self._voice_id(request.voice)
        length = self._length(request.duration_s)
        speech = self.speech
        n = request.samples_per_prompt
        words = torch.tensor([w for w in word_ids for _ in range(n)], device=self.device)
        voices = torch.full((len(seeds),), voice, device=self.device)

        # 2. The prosody code of each sample from its own seed, uniform in [-1, 1].
        prosody = uniform((speech.net.cfg.prosody_dim,), seeds, device=self.device) * 2 - 1  # (B, P)

        # 3. Decoder and vocoder, ``chunk`` clips at a time (1 with deterministic=True).
        waves: list[np.ndarray[Any, Any]] = []
        with torch.inference_mode():
            for part in self._chunks(len(seeds), events, size=self._chunk_size(request)):
                # the decoder runs one clip at a time (cheap), so a clip never depends on its batch; the
                # vocoder's FFTs are per row anyway
                log_mel = torch.cat([speech.net.log_mel(words[j:j + 1], voices[j:j + 1],
                                                        prosody[j:j + 1].to(self.dtype)).float()
                                     for j in range(part.start, part.stop)])  # (b, n_mels, frames)
                wave = self.vocoder(log_mel)  # (b, samples)
                # 4. Peak-normalise (bounded gain) and pad with silence to the requested length.
                peak = wave.abs().amax(dim=1, keepdim=True).clamp(min=PEAK / MAX_GAIN)
                wave = (wave * (PEAK / peak)).clamp(-1.0, 1.0)
                for row in wave.cpu().numpy():
                    out = np.zeros((1, length), dtype=np.float32)
                    out[0, : row.shape[0]] = row
                    waves.append(out)
        return AudioResult(waveforms=waves, seeds=seeds, sample_rate=speech.sample_rate)
