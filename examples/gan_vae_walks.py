"""The embedded GAN and VAE: truncation, style mixing, and a latent-walk video, all offline on a CPU.

    python examples/gan_vae_walks.py            # writes out/gan_vae/*.png and out/gan_vae/walk.gif (+ .mp4 with av)

Every file carries its provenance record: ``aigc replay out/gan_vae/walk.gif`` regenerates it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from PIL import Image

import aigc

out = Path("out/gan_vae")
out.mkdir(parents=True, exist_ok=True)

gan = aigc.load("image", "default", backend="gan")
vae = aigc.load("image", "default", backend="vae")

# 1. Truncation: psi = 0 is the class's average image; larger psi trades typicality for variety.
rows = []
for psi in (0.0, 0.5, 0.7, 1.0):
    res = gan.generate("a sneaker", seed=0, num_outputs=8, truncation=psi)
    rows.append(res.images)
grid = Image.new("RGB", (8 * 32, 4 * 32))
for r, images in enumerate(rows):
    for c, im in enumerate(images):
        grid.paste(im, (c * 32, r * 32))
grid.resize((8 * 96, 4 * 96), Image.Resampling.NEAREST).save(out / "truncation.png")

# 2. Style mixing: the coarse layers of seed 1, the finer ones from seed 9 (the crossover moves left to right).
mixes = [gan.generate("a handwritten 3", seed=1, truncation=0.8, mix_seed=9, mix_layer=k).images[0]
         for k in range(1, 8)]
strip = Image.new("RGB", (7 * 32, 32))
for i, im in enumerate(mixes):
    strip.paste(im, (i * 32, 0))
strip.resize((7 * 96, 96), Image.Resampling.NEAREST).save(out / "style_mixing.png")

# 3. The VAE draws the same classes; saved one file per sample, each with its record.
paths = vae.generate("a pair of trousers", seed=0, num_outputs=4, width=96, height=96).save(out / "vae.png")
print("VAE samples:", [p.name for p in paths])

# 4. A latent walk through four seeds of the GAN, as a GIF (and an MP4 when PyAV is installed).
walk = aigc.load("video", "default", backend="walk")
clip = walk.generate("an ankle boot", seed=0, keyframes=4, num_frames=48, fps=12, width=128, height=128)
print("walk:", clip.frames.shape, "at", clip.fps, "fps")
clip.save(out / "walk.gif")
if importlib.util.find_spec("av") is not None:
    clip.save(out / "walk.mp4")
again = aigc.replay(out / "walk.gif")
print("replay gives the same frames:", bool((again.frames == clip.frames).all()))  # type: ignore[attr-defined]
print("wrote", sorted(p.name for p in out.iterdir()))
