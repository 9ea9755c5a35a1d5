"""Train aigc's embedded CycleGAN (sandal <-> ankle boot) with the library's recipe, :func:`aigc.train.train_cyclegan`.

Data: Fashion-MNIST's training split (Debian ``dataset-fashion-mnist``, MIT), read by
:func:`aigc.train.datasets.fashion_mnist` and padded 28 -> 32: domain A is the 6,000 sandals (label 5), domain B
the 6,000 ankle boots (label 9). The two sets are drawn independently, so no sandal is paired with a boot.

Why this pair: the translation is a visible change of shape -- an open, strappy, low shoe is closed up and gains a
shaft above the ankle, or a boot is opened into straps and loses its shaft -- while the sole, the heel, the toe,
the side the shoe faces and the shoe's length can stay, so one can see both that the domain changed and that the
input's identity was kept. The model card says which other pairs were tried and how they measured.

Architecture and settings (the recipe's defaults unless given): 32x32 grey, ResNet generators of width 16 with
two downsamplings and 4 residual blocks (no input skip), 70x70-style PatchGAN discriminators cut to 32x32 (2
stride-2 layers, width 32), least-squares GAN, cycle weight 14 (``--lambda-cycle``), identity weight 5,
self-regularisation weight 3.25 on 4x4 average-pooled images (``--lambda-self``, ``--self-reg-pool``: the
translation keeps the input's coarse layout and brightness, texture inside each 4x4 cell may change), image pools
of 50, Adam (0.5, 0.999) at lr 2e-4 decaying linearly to 0, batch 8 per domain, 1,500 steps, generator EMA
0.999, exported in float16.

Checkpoints go to ``--out/checkpoints`` every ``--checkpoint-every`` steps; run the same command with ``--resume``
after an interruption. At the end the export is copied to ``src/aigc/assets/cyclegan_default`` unless
``--no-install``.

Usage:
    OMP_NUM_THREADS=1 python scripts/train_cyclegan_default.py --out /tmp/cyclegan_run        # the shipped model
    OMP_NUM_THREADS=1 python scripts/eval_cyclegan_default.py                                 # its figures
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

import torch

from aigc.train.datasets import FASHION_CLASSES, fashion_mnist, pad32

REPO = Path(__file__).resolve().parents[1]
TARGET = REPO / "src" / "aigc" / "assets" / "cyclegan_default"
SANDAL, BOOT = 5, 9  # Fashion-MNIST labels of domain A and domain B
LAMBDA_SELF, LAMBDA_CYCLE = 3.25, 14.0


def install(run: Path) -> None:
    """Copy config.json + model.safetensors + training.json (losses thinned to every 10th) into the assets."""
    TARGET.mkdir(parents=True, exist_ok=True)
    for f in ("config.json", "model.safetensors", "training.json"):
        shutil.copy2(run / f, TARGET / f)
    data = json.loads((TARGET / "training.json").read_text())
    result = data["result"]
    result["checkpoints"] = []  # local paths of the training machine mean nothing in the wheel
    result["output"] = "aigc/assets/cyclegan_default"
    result["train_losses"] = result["train_losses"][::10] + result["train_losses"][-1:]
    result["losses"] = {k: v[::10] + v[-1:] for k, v in result.get("losses", {}).items()}
    (TARGET / "training.json").write_text(json.dumps(data, indent=2, ensure_ascii=False))
    print(f"installed {TARGET}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="run directory (checkpoints, export)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lambda-self", type=float, default=LAMBDA_SELF, help="self-regularisation weight (the recipe's)")
    p.add_argument("--lambda-cycle", type=float, default=LAMBDA_CYCLE, help="cycle-loss weight")
    p.add_argument("--self-reg-pool", type=int, default=4, help="pooling side of the self-regularisation (1: pixels)")
    p.add_argument("--input-skip", action="store_true", help="generators with the input skip (CycleGANConfig)")
    p.add_argument("--no-install", action="store_true", help="leave src/aigc/assets alone")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from aigc.models import CycleGANConfig
    from aigc.train import train_cyclegan

    images, labels = fashion_mnist("train")
    images = pad32(images)
    phrases = dict(FASHION_CLASSES)
    res = train_cyclegan(
        images[labels == SANDAL], images[labels == BOOT], args.out, names=("sandal", "ankle boot"),
        phrases={"sandal": list(phrases["sandal"]), "ankle boot": list(phrases["ankle boot"])},
        config=CycleGANConfig(resolution=32, channels=1, ngf=16, n_blocks=4, ndf=32, input_skip=args.input_skip),
        lambda_cycle=args.lambda_cycle, lambda_self=args.lambda_self, self_reg_pool=args.self_reg_pool,
        steps=args.steps,
        batch_size=args.batch_size, seed=args.seed, checkpoint_every=args.checkpoint_every, resume=args.resume,
        export_dtype="float16", progress=True)
    print(res)
    if not args.no_install:
        install(Path(args.out))


if __name__ == "__main__":
    main()
