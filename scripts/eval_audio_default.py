"""Measure the embedded audio model: does an independent spoken-word classifier hear the word that was asked for?

1. The classifier (trained once, cached under ``--cache``): a small 2-D CNN on its own front end (32 log-mels,
   30 ms windows, 20 ms hop, per-clip normalisation) over 20 words -- the digits and the ten Speech Commands
   words -- trained on *real* espeak-ng speech only, never on the model's output nor on Griffin-Lim audio. Its
   data is broader than the model's: 8 English accents x 26 voice variants, pitch 15..85 and rate 120..200 drawn
   at random, random onset (0..150 ms), gain and a little noise. Voice variants ``m4``, ``f3``, ``klatt2`` and
   ``Annie`` are held out and give the classifier's own accuracy.
2. A ceiling: real held-out clips through the model's log-mel and its Griffin-Lim vocoder, then classified.
3. 200 generated digit clips (the headline figure): 20 per digit, voices cycling through the model's voices,
   seeds 1000..1199, through ``aigc.load("audio", MODEL, backend="mel")`` and ``generate("say <digit>", ...)``;
   then 10 clips per command word (seeds 5000+) where the model says them.
4. Prints the accuracies (a digit counts as recognised only if it beats all 19 other words) and writes JSON.

Usage:
    OMP_NUM_THREADS=1 python scripts/eval_audio_default.py                     # the shipped model
    OMP_NUM_THREADS=1 python scripts/eval_audio_default.py --model /tmp/audio_default/run/model
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from aigc.train.datasets import COMMAND_WORDS, DIGIT_WORDS, espeak

DIGITS, COMMANDS = DIGIT_WORDS, COMMAND_WORDS
WORDS = DIGITS + COMMANDS  # the classifier's vocabulary: a digit must beat 19 other words
ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-us-nyc", "en-gb-x-gbclan",
           "en-gb-x-gbcwmd"]
VARIANTS = ["m1", "m2", "m3", "m5", "m6", "m7", "m8", "f1", "f2", "f4", "f5", "klatt", "klatt3", "Andy", "belinda",
            "benjamin", "john", "linda", "max", "paul", "Alex", "adam", "edward", "iven", "grandpa", "anika"]
HELD_OUT = ["m4", "f3", "klatt2", "Annie"]
SR, LENGTH = 16000, 17600  # 1.1 s


def fit(wave: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """Trim leading silence, put the onset at 0..150 ms (random when ``rng``), gain, pad/cut to 1.1 s."""
    wave = wave / (np.abs(wave).max() + 1e-9)
    loud = np.flatnonzero(np.abs(wave) > 0.02)
    wave = wave[int(loud[0]):] if loud.size else wave
    at = int(rng.integers(0, 2400)) if rng is not None else 800
    out = np.zeros(LENGTH, dtype=np.float32)
    n = min(len(wave), LENGTH - at)
    out[at:at + n] = wave[:n]
    if rng is not None:
        out = out * rng.uniform(0.3, 1.0) + rng.normal(0, rng.uniform(0, 0.01), LENGTH).astype(np.float32)
    return out


def real_clips(variants: list[str], per_word: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    waves, labels = [], []
    for label, word in enumerate(WORDS):
        for _ in range(per_word):
            voice = f"{rng.choice(ACCENTS)}+{rng.choice(variants)}"
            raw = espeak(word, voice=voice, pitch=int(rng.integers(15, 86)), rate=int(rng.integers(120, 201)),
                         sample_rate=SR)
            waves.append(fit(raw, rng))
            labels.append(label)
    return np.stack(waves), np.array(labels)


class WordNet(nn.Module):
    """waveform (B, 17600) -> log-mel (B, 1, 32, 56) -> 4 x (conv 3x3, batch norm, GELU, max-pool 2) -> 20 logits."""

    def __init__(self) -> None:
        super().__init__()
        import torchaudio

        self.mel = torchaudio.transforms.MelSpectrogram(SR, n_fft=512, win_length=480, hop_length=320, n_mels=32)
        chans = [1, 16, 32, 64, 64]
        self.convs = nn.ModuleList([nn.Conv2d(a, b, 3, padding=1) for a, b in itertools.pairwise(chans)])
        self.norms = nn.ModuleList([nn.BatchNorm2d(b) for b in chans[1:]])
        self.head = nn.Linear(chans[-1], len(WORDS))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = (self.mel(wave) + 1e-6).log()[:, None]  # (B, 1, 40, T)
        x = (x - x.mean(dim=(2, 3), keepdim=True)) / (x.std(dim=(2, 3), keepdim=True) + 1e-5)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = F.max_pool2d(F.gelu(norm(conv(x))), 2)
        return self.head(x.mean(dim=(2, 3)))  # type: ignore[no-any-return]


def classifier(cache: Path, steps: int) -> tuple[WordNet, dict[str, float]]:
    """The cached classifier, or a new one trained on real espeak-ng speech."""
    from safetensors.torch import load_file, save_file

    net = WordNet()
    weights, info = cache / f"word_classifier_{len(WORDS)}.safetensors", cache / f"word_classifier_{len(WORDS)}.json"
    if weights.exists() and info.exists():
        net.load_state_dict(load_file(weights))
        return net.eval(), json.loads(info.read_text())
    cache.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    t0 = time.time()
    data = cache / f"real_clips_{len(WORDS)}.npz"
    if data.exists():
        x_tr, y_tr, x_te, y_te = (np.load(data)[k] for k in ("x_tr", "y_tr", "x_te", "y_te"))
    else:
        x_tr, y_tr = real_clips(VARIANTS, 200, seed=1)
        x_te, y_te = real_clips(HELD_OUT, 30, seed=2)
        np.savez(data, x_tr=x_tr, y_tr=y_tr, x_te=x_te, y_te=y_te)
    print(f"classifier data: {len(y_tr)} train, {len(y_te)} held-out-voice clips in {time.time() - t0:.0f} s")
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr).long()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(0)
    net.train()
    for step in range(steps):
        idx = torch.randint(len(yt), (32,), generator=gen)
        shift = int(torch.randint(-800, 800, (1,), generator=gen))
        loss = F.cross_entropy(net(torch.roll(xt[idx], shift, dims=1)), yt[idx], label_smoothing=0.05)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 200 == 0:
            print(f"classifier step {step + 1} loss {loss.item():.3f}")
    net.eval()
    acc = accuracy(net, x_te, y_te)
    result = {"held_out_voice_accuracy": acc, "train_clips": len(y_tr), "test_clips": len(y_te),
              "train_seconds": round(time.time() - t0)}
    save_file(net.state_dict(), str(weights))
    info.write_text(json.dumps(result, indent=2))
    return net, result


def predict(net: WordNet, waves: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([net(torch.from_numpy(w)).argmax(1).numpy() for w in np.array_split(waves, 8)])


def accuracy(net: WordNet, waves: np.ndarray, labels: np.ndarray) -> float:
    return float((predict(net, waves) == labels).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--cache", default="/tmp/audio_default/classifier")
    p.add_argument("--classifier-steps", type=int, default=1500)
    p.add_argument("--per-digit", type=int, default=20)
    p.add_argument("--per-command", type=int, default=10, help="clips per command word, where the model says them")
    p.add_argument("--json", default="/tmp/audio_default/eval.json")
    p.add_argument("--save-wavs", default=None, help="folder to write the generated clips to")
    args = p.parse_args()
    torch.set_num_threads(1)

    import aigc

    net, info = classifier(Path(args.cache), args.classifier_steps)
    print(f"classifier accuracy on held-out real voices: {info['held_out_voice_accuracy']:.3f}")
    gen = aigc.load("audio", args.model, backend="mel")
    voices = gen.voices  # type: ignore[attr-defined]
    # The vocoder's ceiling: real held-out clips -> the model's log-mel -> its Griffin-Lim -> the classifier.
    from aigc.models.speech import log_mel_spectrogram

    x_te, y_te = real_clips(HELD_OUT, 5, seed=3)
    speech = gen.speech  # type: ignore[attr-defined]
    with torch.no_grad():
        resynth = speech.vocoder(log_mel_spectrogram(torch.from_numpy(x_te), speech.net.cfg)).numpy()
    resynth = np.stack([fit(w, None) for w in resynth])
    ceiling = accuracy(net, resynth, y_te)
    print(f"classifier accuracy on real clips after the model's mel + Griffin-Lim round trip: {ceiling:.3f}")
    t0 = time.time()
    waves, labels, voice_of = [], [], []
    plan = [(w, args.per_digit, 1000 + args.per_digit * i) for i, w in enumerate(DIGITS)]
    plan += [(w, args.per_command, 5000 + args.per_command * i) for i, w in enumerate(COMMANDS)
             if w in gen.words]  # type: ignore[attr-defined]
    for word, count, first_seed in plan:
        label = WORDS.index(word)
        for j in range(count):
            voice = voices[(label + j) % len(voices)]
            res = gen.generate(f"say {word}", seed=first_seed + j, voice=voice)
            waves.append(fit(res.waveform[0], None))
            labels.append(label)
            voice_of.append(voice)
            if args.save_wavs:
                Path(args.save_wavs).mkdir(parents=True, exist_ok=True)
                res.save(Path(args.save_wavs) / f"{word}_{j:02d}_{voice}.wav")
    gen_s = time.time() - t0
    pred = predict(net, np.stack(waves))
    y = np.array(labels)
    digit = y < len(DIGITS)
    acc = float((pred == y)[digit].mean())
    per_word = {w: float((pred[y == i] == i).mean()) for i, w in enumerate(WORDS) if (y == i).any()}
    per_voice = {v: float(np.mean([pred[i] == y[i] for i in range(len(y)) if voice_of[i] == v and digit[i]]))
                 for v in voices}
    print(f"digit clips recognised as the digit asked for (out of {len(WORDS)} words): {acc:.3f} "
          f"({int((pred == y)[digit].sum())}/{int(digit.sum())}); generation of {len(y)} clips {gen_s:.1f} s")
    out: dict[str, object] = {"model": args.model, "digit_accuracy": acc, "digit_clips": int(digit.sum())}
    if (~digit).any():
        cmd = float((pred == y)[~digit].mean())
        print(f"command-word clips recognised: {cmd:.3f} ({int((pred == y)[~digit].sum())}/{int((~digit).sum())})")
        out.update({"command_accuracy": cmd, "command_clips": int((~digit).sum())})
    print("per word:", json.dumps(per_word))
    print("per voice (digits):", json.dumps(per_voice))
    confusions = sorted({(WORDS[a], WORDS[b]) for a, b in zip(y, pred, strict=True) if a != b})
    print("confusions (asked, heard):", confusions)
    out.update({"per_word": per_word, "per_voice": per_voice, "classifier": info, "confusions": confusions,
                "vocoder_round_trip_accuracy": ceiling, "generation_seconds": round(gen_s, 1),
                "seeds": {w: [s0, s0 + n - 1] for w, n, s0 in plan}})
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
