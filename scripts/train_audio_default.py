"""Train aigc's embedded audio model: a small conditional log-mel speech model that says one of 20 words.

Words: the digits zero..nine and the ten command words of Speech Commands (yes, no, up, down, left, right, on,
off, stop, go).

Data (made at training time only, never shipped): Debian's ``espeak-ng`` (GPL-3.0-or-later; its output audio
is not covered by the GPL) says each word in 8 named voices, each clip with its own pitch and speaking rate
drawn uniformly around the voice's own (pitch +-12 on espeak's 0..99 scale, rate 160 +- 25 words/min). Clips are
resampled 22.05 -> 16 kHz, peak-normalised to 0.9, their leading silence trimmed to 2 frames, and padded or cut
to 64 frames (1.008 s). The model (``aigc.models.MelSpeechDecoder``) learns (word, voice, [pitch, rate]) ->
log-mel with an L1 loss; at generation time the seed draws [pitch, rate] uniformly in [-1, 1].

Usage (one CPU thread: 5 min to synthesize the data, 5-13 min to train on a shared 2-core machine):
    OMP_NUM_THREADS=1 python scripts/train_audio_default.py --out /tmp/audio_default/run --steps 5000
    python scripts/train_audio_default.py install --out /tmp/audio_default/run   # copy into src/aigc/assets

Logs go to ``<out>/train.log``; the export (float16 safetensors + config.json, written by
:mod:`aigc.formats.mel_speaker`) to ``<out>/model``; ``install`` copies it to ``src/aigc/assets/audio_default``
(whose ``MODEL_CARD.md`` records the run and its evaluation). Speech comes from
:func:`aigc.train.datasets.espeak`, shared with ``scripts/eval_audio_default.py``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aigc.train.datasets import COMMAND_WORDS, DIGIT_WORDS, espeak

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "src" / "aigc" / "assets" / "audio_default"
LOG = logging.getLogger("train_audio_default")

WORDS = DIGIT_WORDS + COMMAND_WORDS  # the digits, then Speech Commands' ten core words
# name -> (espeak-ng voice, base pitch on espeak's 0..99 scale)
VOICES: dict[str, tuple[str, int]] = {
    "us-male": ("en-us+m3", 45),
    "us-female": ("en-us+f2", 62),
    "uk-male": ("en-gb+m1", 42),
    "uk-female": ("en-gb+f4", 58),
    "scottish-male": ("en-gb-scotland+m5", 50),
    "caribbean-male": ("en-029+m7", 48),
    "rp-female": ("en-gb-x-rp+f1", 56),
    "deep-male": ("en-us+m6", 28),
}
PITCH_RANGE, RATE_BASE, RATE_RANGE = 12, 160, 25
SR = 16000
LEAD_FRAMES = 2


def place(wave: np.ndarray, samples: int, lead: int, offset_jitter: int = 0) -> np.ndarray:
    """Peak-normalise to 0.9, trim leading silence to ``lead`` samples, pad or cut to ``samples``."""
    wave = wave / (np.abs(wave).max() + 1e-9) * 0.9
    loud = np.flatnonzero(np.abs(wave) > 0.02)
    start = int(loud[0]) if loud.size else 0
    wave = wave[start:]
    out = np.zeros(samples, dtype=np.float32)
    at = lead + offset_jitter
    n = min(len(wave), samples - at)
    out[at:at + n] = wave[:n]
    return out


def synthesize(per_pair: int, seed: int, samples: int) -> dict[str, Any]:
    """``per_pair`` clips for every (word, voice); pitch and rate uniform around the voice's own."""
    rng = np.random.default_rng(seed)
    waves, words, voices, prosody, lengths = [], [], [], [], []
    for vi, (espeak_voice, base_pitch) in enumerate(VOICES.values()):
        for wi, word in enumerate(WORDS):
            for _ in range(per_pair):
                p, r = rng.uniform(-1, 1, size=2)
                pitch = round(base_pitch + p * PITCH_RANGE)
                rate = round(RATE_BASE + r * RATE_RANGE)
                raw = espeak(word, voice=espeak_voice, pitch=pitch, rate=rate, sample_rate=SR)
                lengths.append(len(raw))
                waves.append(place(raw, samples, LEAD_FRAMES * 256))
                words.append(wi)
                voices.append(vi)
                # the code the model sees: the *rounded* settings, back on the [-1, 1] scale
                prosody.append([(pitch - base_pitch) / PITCH_RANGE, (rate - RATE_BASE) / RATE_RANGE])
    return {"waves": np.stack(waves), "words": np.array(words), "voices": np.array(voices),
            "prosody": np.array(prosody, dtype=np.float32), "raw_lengths": np.array(lengths)}


def train(args: argparse.Namespace) -> None:
    from aigc.formats import mel_speaker
    from aigc.models.speech import MelSpeechConfig, MelSpeechDecoder, log_mel_spectrogram

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        handlers=[logging.FileHandler(out / "train.log"), logging.StreamHandler()])
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    base = MelSpeechConfig(num_words=len(WORDS), num_voices=len(VOICES), channels=args.channels)
    data_file = out / f"data_{len(WORDS)}w_{args.per_pair}_{args.seed}.npz"
    if data_file.exists():
        data = dict(np.load(data_file))
    else:
        data = synthesize(args.per_pair, args.seed, base.samples)
        np.savez(data_file, **data)
    LOG.info("data: %d clips in %.0f s; raw length max %.2f s, mean %.2f s", len(data["words"]), time.time() - t0,
             data["raw_lengths"].max() / SR, data["raw_lengths"].mean() / SR)
    with torch.no_grad():
        mels = torch.cat([log_mel_spectrogram(torch.from_numpy(w), base)
                          for w in np.array_split(data["waves"], 32)])  # (N, n_mels, frames)
    mean, std = float(mels.mean()), float(mels.std())
    cfg = MelSpeechConfig(**{**base.to_dict(), "mel_mean": round(mean, 4), "mel_std": round(std, 4)})
    target = (mels - cfg.mel_mean) / cfg.mel_std
    words = torch.from_numpy(data["words"]).long()
    voices = torch.from_numpy(data["voices"]).long()
    prosody = torch.from_numpy(data["prosody"]).float()
    # hold out 5% to watch over-fitting
    gen = torch.Generator().manual_seed(args.seed)
    perm = torch.randperm(len(words), generator=gen)
    n_val = max(1, len(words) // 20)
    val, tr = perm[:n_val], perm[n_val:]
    net = MelSpeechDecoder(cfg)
    n_params = sum(p.numel() for p in net.parameters())
    LOG.info("model: %d parameters; mel mean %.3f std %.3f", n_params, mean, std)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)
    t1 = time.time()
    for step in range(1, args.steps + 1):
        idx = tr[torch.randint(len(tr), (args.batch,), generator=gen)]
        pred = net(words[idx], voices[idx], prosody[idx])
        loss = (pred - target[idx]).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 200 == 0 or step == args.steps:
            with torch.no_grad():
                vloss = (net(words[val], voices[val], prosody[val]) - target[val]).abs().mean()
            LOG.info("step %d loss %.4f val %.4f (%.0f s)", step, loss.item(), vloss.item(), time.time() - t1)
    train_s = time.time() - t1
    export = out / "model"
    training = {"seed": args.seed, "steps": args.steps, "batch": args.batch, "lr": args.lr, "clips": len(words),
                "per_word_voice": args.per_pair, "train_seconds": round(train_s), "data_seconds": round(t1 - t0),
                "parameters": n_params, "final_val_l1": float(vloss),
                "command": "OMP_NUM_THREADS=1 python scripts/train_audio_default.py "
                           f"--out RUN --steps {args.steps} --seed {args.seed}"}
    mel_speaker.save(export, net, words=WORDS, default_voice="us-male", training=training, dtype=torch.float16,
                     voices=[{"name": n, "espeak_voice": v, "base_pitch": p} for n, (v, p) in VOICES.items()])
    LOG.info("exported %s (%.0f s training)", export, train_s)


def install(args: argparse.Namespace) -> None:
    """Copy ``<out>/model`` (config.json, model.safetensors) into the package assets.

    The model card, ``MODEL_CARD.md`` next to them, is kept in the repository and edited by hand with the
    figures of the run and of ``scripts/eval_audio_default.py``.
    """
    src = Path(args.out) / "model"
    ASSETS.mkdir(parents=True, exist_ok=True)
    for f in ("config.json", "model.safetensors"):
        shutil.copy2(src / f, ASSETS / f)
        (ASSETS / f).chmod(0o644)  # safetensors writes 0600; the wheel's files must be readable by all
    print(f"installed {ASSETS}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", nargs="?", default="train", choices=["train", "install"])
    p.add_argument("--out", default="/tmp/audio_default/run")
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--channels", type=int, default=128)
    p.add_argument("--per-pair", type=int, default=48, help="clips per (word, voice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--install", action="store_true", help="install into src/aigc/assets after training")
    args = p.parse_args()
    if args.action == "install":
        install(args)
        return
    train(args)
    if args.install:
        install(args)


if __name__ == "__main__":
    main()
