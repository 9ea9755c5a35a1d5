"""A small conditional speech model: (word, voice, prosody) -> log-mel spectrogram -> waveform.

The decoder is a 1-D convolutional network over time with the mel bands as channels, conditioned (FiLM,
Perez et al. 2018) on a word embedding, a voice embedding and a short continuous *prosody* code. Shapes, for
``frames=64``, ``base_frames=8``, ``channels=128``, ``n_mels=80``, batch B::

    cond:    word (B,) -> (B, E_w); voice (B,) -> (B, E_v); prosody (B, P) -> (B, E_p)
             concat -> MLP -> c (B, H)
    decoder: c -- linear --> (B, 128, 8) -- FiLM conv block --> [up x2, FiLM conv block] x2 --> (B, 128, 32)
             -- conv 1x1 --> (B, 2 * 80, 32) -- two frames per step (sub-pixel) --> normalised log-mel (B, 80, 64)
    vocoder: log-mel -> mel magnitudes -> linear magnitudes (non-negative least squares on the mel filterbank)
             -> Griffin-Lim (Griffin & Lim 1984, with momentum, Perraudin et al. 2013) -> waveform (B, samples)

The prosody code (by default 2 numbers in [-1, 1]: pitch and speaking rate relative to the voice's own) is what
the seed draws at generation time; at training time it is the known pitch/rate the training clip was made with.
The vocoder has no randomness (Griffin-Lim starts from zero phase), so a waveform depends on the word, the voice
and the prosody code alone.

Example:
    >>> net = MelSpeechDecoder(MelSpeechConfig(num_words=3, num_voices=2, channels=16, n_mels=20, frames=16))
    >>> net.log_mel(torch.tensor([0, 2]), torch.tensor([1, 0]), torch.zeros(2, 2)).shape
    torch.Size([2, 20, 16])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from aigc._checks import check_int
from aigc.errors import InvalidRequest
from aigc.models._common import ConfigDict

__all__ = ["GriffinLimVocoder", "MelSpeechConfig", "MelSpeechDecoder", "log_mel_spectrogram"]

_INT_FIELDS = ("num_words", "num_voices", "prosody_dim", "n_mels", "frames", "sample_rate", "n_fft", "hop_length",
               "embed_dim", "hidden_dim", "channels", "base_frames", "griffin_lim_iters")


@dataclass(frozen=True, kw_only=True)
class MelSpeechConfig(ConfigDict):
    """Hyper-parameters of a :class:`MelSpeechDecoder` and its audio front end.

    Attributes:
        num_words: words the model can say (class ids ``0 .. num_words - 1``).
        num_voices: voices (speaker ids ``0 .. num_voices - 1``).
        prosody_dim: size of the continuous prosody code (drawn uniformly in [-1, 1] per sample).
        n_mels, frames: the log-mel spectrogram the decoder writes, (n_mels, frames).
        sample_rate, n_fft, hop_length, f_min, f_max: the STFT and mel filterbank (Hz, samples).
        log_floor: magnitudes are clamped to this before the log.
        mel_mean, mel_std: the log-mel normalisation the decoder's output is in (from the training data).
        embed_dim: size of the word embedding (voice and prosody embeddings are half of it).
        hidden_dim: size of the conditioning vector c.
        channels: feature channels of the decoder.
        base_frames: time steps before the decoder's upsampling; ``frames = base_frames * 2 ** k``, k >= 1.
        griffin_lim_iters: Griffin-Lim iterations of the vocoder.

    Example:
        >>> MelSpeechConfig().samples
        16128
    """

    num_words: int = 10
    num_voices: int = 8
    prosody_dim: int = 2  # pitch, rate
    n_mels: int = 80
    frames: int = 64  # 64 * 256 / 16 kHz ~ 1.02 s
    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 256
    f_min: float = 0.0
    f_max: float = 8000.0
    log_floor: float = 1e-5
    mel_mean: float = 0.0
    mel_std: float = 1.0
    embed_dim: int = 64
    hidden_dim: int = 256
    channels: int = 128
    base_frames: int = 8
    griffin_lim_iters: int = 48

    def __post_init__(self) -> None:
        for name in _INT_FIELDS:
            check_int(f"config.{name}", getattr(self, name), minimum=1, fix=f"pass {name}=1 or more")
        ratio = self.frames // self.base_frames
        if self.frames % self.base_frames or ratio & (ratio - 1) or ratio < 2:
            raise InvalidRequest("config.frames", self.frames, f"must be base_frames ({self.base_frames}) times a "
                                 "power of two >= 2", f"pass e.g. frames={self.base_frames * 8}")
        if self.hop_length > self.n_fft // 2:
            raise InvalidRequest("config.hop_length", self.hop_length, f"is more than half of n_fft ({self.n_fft}); "
                                 "the inverse STFT needs overlapping windows",
                                 f"pass e.g. hop_length={self.n_fft // 4}")
        if not 0.0 <= self.f_min < self.f_max <= self.sample_rate / 2:
            raise InvalidRequest("config.f_max", self.f_max, f"needs 0 <= f_min ({self.f_min}) < f_max <= "
                                 f"sample_rate / 2 ({self.sample_rate / 2})", f"pass f_max={self.sample_rate / 2}")
        if not (self.mel_std > 0 and self.log_floor > 0 and math.isfinite(self.mel_mean)):
            raise InvalidRequest("config.mel_std", self.mel_std, "mel_std and log_floor must be > 0",
                                 "use the statistics of the training data")

    @property
    def samples(self) -> int:
        """Waveform samples the vocoder writes for ``frames`` frames (a centred STFT)."""
        return (self.frames - 1) * self.hop_length


def _mel_filterbank(cfg: MelSpeechConfig) -> torch.Tensor:
    """The mel filterbank (n_freqs, n_mels), Slaney-normalised triangles on the HTK mel scale."""
    import torchaudio.functional as AF  # noqa: N812

    fb: torch.Tensor = AF.melscale_fbanks(cfg.n_fft // 2 + 1, cfg.f_min, cfg.f_max, cfg.n_mels, cfg.sample_rate,
                                          norm="slaney")
    return fb


def log_mel_spectrogram(wave: torch.Tensor, cfg: MelSpeechConfig) -> torch.Tensor:
    """The (un-normalised) log-mel magnitude spectrogram (B, n_mels, T) of waveforms (B, samples) in [-1, 1].

    Example:
        >>> log_mel_spectrogram(torch.zeros(1, 16128), MelSpeechConfig()).shape
        torch.Size([1, 80, 64])
    """
    window = torch.hann_window(cfg.n_fft, device=wave.device)
    spec = torch.stft(wave.float(), cfg.n_fft, cfg.hop_length, window=window, center=True, return_complex=True)
    mel = torch.einsum("bft,fm->bmt", spec.abs(), _mel_filterbank(cfg).to(wave.device))  # (B, n_mels, T)
    return mel.clamp(min=cfg.log_floor).log()


class _FiLMBlock(nn.Module):
    """Two 1-D convolutions with a residual connection; the conditioning vector scales and shifts the features."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, 5, padding=2)
        self.conv2 = nn.Conv1d(channels, channels, 5, padding=2)
        self.norm1 = nn.GroupNorm(8 if channels % 8 == 0 else 1, channels)
        self.norm2 = nn.GroupNorm(8 if channels % 8 == 0 else 1, channels)
        self.film = nn.Linear(hidden, 4 * channels)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        # x (B, C, T), c (B, H)
        s1, b1, s2, b2 = self.film(c)[:, :, None].chunk(4, dim=1)  # each (B, C, 1)
        h = F.gelu(self.norm1(x) * (1 + s1) + b1)
        h = self.conv1(h)
        h = F.gelu(self.norm2(h) * (1 + s2) + b2)
        return x + self.conv2(h)  # type: ignore[no-any-return]


class MelSpeechDecoder(nn.Module):
    """(word id, voice id, prosody code) -> normalised log-mel spectrogram (B, n_mels, frames)."""

    def __init__(self, cfg: MelSpeechConfig) -> None:
        super().__init__()
        self.cfg = cfg
        e = cfg.embed_dim
        self.word = nn.Embedding(cfg.num_words, e)
        self.voice = nn.Embedding(cfg.num_voices, e // 2)
        self.prosody = nn.Linear(cfg.prosody_dim, e // 2)
        self.cond = nn.Sequential(nn.Linear(2 * e, cfg.hidden_dim), nn.GELU(),
                                  nn.Linear(cfg.hidden_dim, cfg.hidden_dim), nn.GELU())
        self.stem = nn.Linear(cfg.hidden_dim, cfg.channels * cfg.base_frames)
        # A learned position signal for every resolution, added after each upsampling.
        n_up = int(math.log2(cfg.frames // cfg.base_frames)) - 1  # the output layer doubles the frames once more
        self.pos = nn.Parameter(torch.zeros(1, cfg.channels, cfg.frames // 2))
        self.blocks = nn.ModuleList([_FiLMBlock(cfg.channels, cfg.hidden_dim) for _ in range(n_up + 1)])
        self.out = nn.Conv1d(cfg.channels, 2 * cfg.n_mels, 1)

    def forward(self, words: torch.Tensor, voices: torch.Tensor, prosody: torch.Tensor) -> torch.Tensor:
        """Normalised log-mel (B, n_mels, frames) for words (B,), voices (B,) and prosody codes (B, prosody_dim)."""
        cfg = self.cfg
        c = self.cond(torch.cat([self.word(words), self.voice(voices), self.prosody(prosody)], dim=1))  # (B, H)
        x = self.stem(c).view(-1, cfg.channels, cfg.base_frames)  # (B, C, base_frames)
        x = self.blocks[0](x + F.adaptive_avg_pool1d(self.pos, cfg.base_frames), c)
        for block in self.blocks[1:]:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")  # (B, C, 2T)
            x = block(x + F.adaptive_avg_pool1d(self.pos, x.shape[-1]), c)
        y = self.out(F.gelu(x))  # (B, 2 * n_mels, frames / 2)
        y = y.view(-1, 2, cfg.n_mels, y.shape[-1]).permute(0, 2, 3, 1)  # (B, n_mels, frames / 2, 2)
        return y.reshape(-1, cfg.n_mels, cfg.frames)  # type: ignore[no-any-return]  # frame 2t + k is y[..., t, k]

    def log_mel(self, words: torch.Tensor, voices: torch.Tensor, prosody: torch.Tensor) -> torch.Tensor:
        """The decoder's output in log-mel units (B, n_mels, frames), ready for :class:`GriffinLimVocoder`."""
        return self(words, voices, prosody) * self.cfg.mel_std + self.cfg.mel_mean  # type: ignore[no-any-return]


class GriffinLimVocoder(nn.Module):
    """Log-mel (B, n_mels, T) -> waveform (B, (T - 1) * hop_length), deterministic.

    1. mel magnitudes M = exp(log-mel);
    2. linear magnitudes S >= 0 with fb^T S ~ M: the pseudo-inverse, then ``nnls_iters`` multiplicative
       non-negative least-squares updates (Lee & Seung 2001) -- no per-call solver;
    3. Griffin-Lim with momentum from zero phase (torchaudio's ``rand_init=True`` would draw from the global RNG).

    Example:
        >>> voc = GriffinLimVocoder(MelSpeechConfig(griffin_lim_iters=2))
        >>> voc(torch.full((1, 80, 64), -5.0)).shape
        torch.Size([1, 16128])
    """

    fb: torch.Tensor
    pinv: torch.Tensor
    window: torch.Tensor

    def __init__(self, cfg: MelSpeechConfig, *, nnls_iters: int = 20) -> None:
        super().__init__()
        self.cfg = cfg
        self.nnls_iters = nnls_iters
        fb = _mel_filterbank(cfg)  # (n_freqs, n_mels)
        self.register_buffer("fb", fb, persistent=False)
        self.register_buffer("pinv", torch.linalg.pinv(fb.T.double()).float(), persistent=False)  # (F, M)
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)

    def magnitudes(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Linear STFT magnitudes (B, n_freqs, T) for log-mel (B, n_mels, T)."""
        mel = log_mel.float().exp()  # (B, M, T)
        fb, pinv = self.fb, self.pinv
        spec = torch.einsum("fm,bmt->bft", pinv, mel).clamp(min=self.cfg.log_floor)  # (B, F, T)
        for _ in range(self.nnls_iters):  # S <- S * (fb M) / (fb fb^T S)
            approx = torch.einsum("fm,bft->bmt", fb, spec)
            spec = spec * torch.einsum("fm,bmt->bft", fb, mel) / (torch.einsum("fm,bmt->bft", fb, approx) + 1e-8)
        return spec

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        spec = self.magnitudes(log_mel)  # (B, F, T)
        length = (spec.shape[-1] - 1) * cfg.hop_length
        momentum = 0.99
        angles = torch.ones_like(spec, dtype=torch.complex64)  # zero phase
        tprev = torch.zeros_like(angles)
        wave = torch.zeros(spec.shape[0], length, device=spec.device)
        for _ in range(cfg.griffin_lim_iters):
            wave = torch.istft(spec * angles, cfg.n_fft, cfg.hop_length, window=self.window, length=length)
            rebuilt = torch.stft(wave, cfg.n_fft, cfg.hop_length, window=self.window, return_complex=True)
            angles = rebuilt - tprev * (momentum / (1 + momentum))
            angles = angles / (angles.abs() + 1e-16)
            tprev = rebuilt
        return torch.istft(spec * angles, cfg.n_fft, cfg.hop_length, window=self.window, length=length)
