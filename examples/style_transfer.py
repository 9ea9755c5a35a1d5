"""Style transfer with the embedded CycleGAN (sandals <-> ankle boots), on images and on a video, offline on a CPU.

    python examples/style_transfer.py     # writes out/style_transfer/*.png and *.gif

1. sandals from the embedded GAN, saved as files, translated into ankle boots and back (a grid: inputs, boots,
   cycled back), and one of them replayed from its provenance record;
2. a latent-walk video of sandals translated into boots, frame by frame, with and without shared normalisation
   statistics across the frames (``temporal``), and the mean change between consecutive frames of each (which
   mixes the walk's own motion with flicker; ``docs/style_transfer.md`` measures flicker alone).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

import aigc

out = Path("out/style_transfer")
out.mkdir(parents=True, exist_ok=True)

# 1. Images: inputs from files, so the records can be replayed.
sandals = aigc.generate("image", "a sandal", backend="gan", seed=10, num_outputs=8)
paths = []
for i, img in enumerate(sandals.images):
    paths.append(out / f"sandal-{i}.png")
    img.save(paths[-1])
cyclegan = aigc.load("image", "default", backend="cyclegan")
boots = [cyclegan.generate("an ankle boot", init_image=p) for p in paths]
back = [cyclegan.generate("a sandal", init_image=b.images[0]).images[0] for b in boots]
grid = Image.new("RGB", (8 * 32, 3 * 32))
for c in range(8):
    for r, img in enumerate((sandals.images[c], boots[c].images[0], back[c])):
        grid.paste(img, (c * 32, r * 32))
grid.resize((8 * 64, 3 * 64), Image.Resampling.NEAREST).save(out / "sandals_to_boots.png")
boots[0].save(out / "boot.png")
again = aigc.replay(out / "boot.png")
assert np.array_equal(np.asarray(again.images[0]), np.asarray(boots[0].images[0]))
print(f"wrote {out / 'sandals_to_boots.png'} (rows: sandals, boots, back to sandals); replay matches")

# 2. Video: a walk through sandals, translated frame by frame.
walk = aigc.generate("video", "a sandal", backend="walk", seed=0, num_frames=24, fps=12)
walk.save(out / "sandals.gif")
for temporal in (True, False):
    gen = aigc.load("video", "default", backend="cyclegan", temporal=temporal)
    clip = gen.generate("an ankle boot", init_video=out / "sandals.gif")
    name = "boots_temporal.gif" if temporal else "boots_per_frame.gif"
    clip.save(out / name)
    frames = clip.videos[0].astype(np.float32)
    flicker = float(np.abs(np.diff(frames, axis=0)).mean())
    print(f"wrote {out / name}: {len(frames)} frames at {clip.fps:g} fps, mean change between frames {flicker:.2f}")
