"""The embedded audio and video models: words in several voices, loudness, and a moving digit, offline on a CPU.

    python examples/audio_video.py      # writes out/audio_video/*.flac and out/audio_video/*.gif

Every file carries its provenance record: ``aigc replay out/audio_video/seven-us-male.flac`` regenerates it,
resampling and loudness normalisation included.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import aigc

out = Path("out/audio_video")
out.mkdir(parents=True, exist_ok=True)

# 1. Speech: one word in three voices, resampled to 44.1 kHz and normalised to -23 LUFS (EBU R 128).
speaker = aigc.load("audio")  # the embedded word speaker (backend "mel")
print("words:", ", ".join(speaker.words))  # type: ignore[attr-defined]
for voice in ("us-male", "uk-female", "deep-male"):
    res = speaker.generate("say seven", voice=voice, seed=0).resample(44100).normalize(-23.0)
    (path,) = res.save(out / f"seven-{voice}.flac")
    print(f"{path.name}: {res.durations_s[0]:.2f} s at {res.sample_rate} Hz, {res.loudness()[0]:.1f} LUFS")

again = aigc.replay(out / "seven-us-male.flac")
assert isinstance(again, aigc.AudioResult)
print("replayed at", again.sample_rate, "Hz,", f"{again.loudness()[0]:.1f} LUFS")

# 2. Video: a digit moving in each direction; the centroid of the ink shows the motion.
mover = aigc.load("video")  # the embedded sprite model (backend "sprites")
for direction in ("left", "right", "up", "down"):
    clip = mover.generate(f"a 3 moving {direction}", seed=0)
    ink = clip.frames[..., 0].astype(np.float64)  # (T, H, W)
    ys, xs = np.mgrid[: ink.shape[1], : ink.shape[2]]
    cx = (ink * xs).sum((1, 2)) / ink.sum((1, 2))
    cy = (ink * ys).sum((1, 2)) / ink.sum((1, 2))
    clip.save(out / f"three-{direction}.gif")
    print(f"moving {direction}: centroid moved dx={cx[-1] - cx[0]:+.1f} px, dy={cy[-1] - cy[0]:+.1f} px "
          f"over {len(clip.frames)} frames")
