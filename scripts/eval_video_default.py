"""Measure the embedded default video model: is the right digit drawn, and does it move the right way?

1. An independent frame classifier: a small CNN trained only on real procedural frames (the renderer of
   ``scripts/train_video_default.py``) made from 70 of the 100 held-out digits per class -- digits the video
   model never saw -- with generic augmentation (random blur and contrast, as no generated frame is sharper
   than the data). Its accuracy on real frames of the other 30 held-out digits per class is reported.
2. ``--clips`` generated clips (default 100) through the public API, clip i with class ``i % 10``, direction
   ``(i // 10) % 4`` and seed ``i``:
     * content accuracy: the share of all frames the classifier labels as the prompted digit;
     * direction accuracy: the share of clips whose intensity centroid moves (mean of the last 3 frames minus
       mean of the first 3) mostly along the prompted axis, in the prompted sense.
   The same two measures on real clips of the 300 classifier-test digits are printed for reference.

Prints a summary and writes JSON (default: ``eval.json`` next to the model, which the model card cites).

Usage:
    OMP_NUM_THREADS=1 python scripts/eval_video_default.py                       # the installed default
    OMP_NUM_THREADS=1 python scripts/eval_video_default.py --model /tmp/video_run --out /tmp/video_run/eval.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from train_video_default import ASSET, DIRECTIONS, FRAMES, direction_of, draw_motion, render, split_digits  # noqa: E402

CLS_TRAIN_PER_CLASS = 70  # of the 100 held-out digits per class; the other 30 test the classifier


class FrameClassifier(nn.Module):
    """32x32 frame -> 10 digit logits; global max pooling makes it indifferent to where the digit is."""

    def __init__(self) -> None:
        super().__init__()

        def block(a: int, b: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(),
                                 nn.Conv2d(b, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU())

        self.features = nn.Sequential(block(1, 16), nn.MaxPool2d(2), block(16, 32), nn.MaxPool2d(2), block(32, 64))
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 1, 32, 32) in [0, 1] -> (N, 10)
        h = self.features(x * 2 - 1).amax(dim=(2, 3))
        return self.head(h)  # type: ignore[no-any-return]


def real_frames(sprites: torch.Tensor, labels: torch.Tensor, n: int, gen: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """n random frames (n, 1, 32, 32) in [0, 1] of real clips of these sprites, and their labels."""
    pick = torch.randint(0, len(sprites), (n,), generator=gen)
    direction = torch.randint(0, 4, (n,), generator=gen)
    pos = draw_motion(direction, gen)  # (n, T, 2)
    t = torch.randint(0, FRAMES, (n,), generator=gen)
    frames = render(sprites[pick], pos[torch.arange(n), t][:, None])[:, 0]  # (n, 1, 32, 32) in [-1, 1]
    return (frames + 1) / 2, labels[pick]


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random Gaussian blur (sigma 0-1.2 px) on half the frames, and contrast 0.6-1.0."""
    n = x.shape[0]
    sigma = torch.rand(n, generator=gen) * 1.2
    blur = torch.rand(n, generator=gen) < 0.5
    r = torch.arange(-2, 3, dtype=torch.float32)
    k1 = torch.exp(-(r[None] ** 2) / (2 * sigma[:, None].clamp_min(1e-3) ** 2))
    k1 = k1 / k1.sum(1, keepdim=True)  # (n, 5)
    k2 = (k1[:, :, None] * k1[:, None, :])[:, None]  # (n, 1, 5, 5)
    blurred = F.conv2d(x.reshape(1, n, 32, 32), k2, padding=2, groups=n).reshape(n, 1, 32, 32)
    x = torch.where(blur[:, None, None, None], blurred, x)
    return x * (0.6 + 0.4 * torch.rand(n, 1, 1, 1, generator=gen))


def train_classifier(data: dict[str, Any], steps: int, seed: int) -> tuple[FrameClassifier, float, int]:
    sprites, labels = data["cls_train"]
    torch.manual_seed(seed)
    clf = FrameClassifier()
    opt = torch.optim.AdamW(clf.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(seed + 1)
    clf.train()
    for step in range(steps):
        x, y = real_frames(sprites, labels, 128, gen)
        loss = F.cross_entropy(clf(augment(x, gen)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 200 == 0:
            print(f"classifier step {step + 1}/{steps} loss {loss.item():.3f}", flush=True)
    clf.eval()
    test_sprites, test_labels = data["cls_test"]
    x, y = real_frames(test_sprites, test_labels, 3000, torch.Generator().manual_seed(seed + 2))
    with torch.no_grad():
        acc = float((clf(x).argmax(1) == y).float().mean())
    return clf, acc, len(sprites)


def split(seed: int) -> dict[str, Any]:
    data = split_digits(seed=0)  # the same split as training: 100 held-out digits per class
    sprites, labels = data["held_out"]
    rng = np.random.RandomState(seed)
    tr, te = [], []
    for c in range(10):
        idx = np.flatnonzero(labels.numpy() == c)
        rng.shuffle(idx)
        tr.append(idx[:CLS_TRAIN_PER_CLASS])
        te.append(idx[CLS_TRAIN_PER_CLASS:])
    a, b = torch.from_numpy(np.concatenate(tr)), torch.from_numpy(np.concatenate(te))
    return {"cls_train": (sprites[a], labels[a]), "cls_test": (sprites[b], labels[b])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="model directory, or the built-in 'default'")
    p.add_argument("--out", default=None, help="JSON file (default: eval.json next to the model)")
    p.add_argument("--clips", type=int, default=100)
    p.add_argument("--truncation", type=float, default=None, help="default: the model's")
    p.add_argument("--sweep", default="0.8,1.0", help="also measure these truncations (comma-separated; '' for none)")
    p.add_argument("--classifier-steps", type=int, default=800)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    import aigc

    # 1. The independent classifier, trained on real frames of held-out digits only.
    data = split(args.seed)
    clf, clf_acc, n_digits = train_classifier(data, args.classifier_steps, args.seed)
    print(f"classifier: {clf_acc:.1%} on real frames of {len(data['cls_test'][0])} other held-out digits", flush=True)

    # 2. Generated clips through the public API.
    gen = aigc.load("video", args.model, backend="sprites", device="cpu")
    names = {0: "left", 1: "right", 2: "up", 3: "down"}
    classes = [i % 10 for i in range(args.clips)]
    dirs = [(i // 10) % 4 for i in range(args.clips)]
    c_t, d_t = torch.tensor(classes), torch.tensor(dirs)

    def generated(params: dict[str, Any]) -> torch.Tensor:
        videos = [gen.generate(f"a {c} moving {names[d]}", seed=i, **params).frames
                  for i, (c, d) in enumerate(zip(classes, dirs, strict=True))]
        return torch.from_numpy(np.stack(videos)[..., 0].astype(np.float32) / 255.0)  # (N, T, 32, 32) in [0, 1]

    truncation = args.truncation if args.truncation is not None else gen.sprite.default_truncation  # type: ignore[attr-defined]
    clips = generated({"truncation": truncation})
    measures = measure(clf, clips, c_t, d_t)
    sweep = {}
    for value in [float(v) for v in args.sweep.split(",") if v.strip()]:
        m = measure(clf, generated({"truncation": value}), c_t, d_t)
        sweep[str(value)] = {"content_accuracy": m["content_accuracy"], "direction_accuracy": m["direction_accuracy"]}

    # 3. The same on real clips of the classifier's test digits (what a perfect generator would score).
    ts, tl = data["cls_test"]
    g = torch.Generator().manual_seed(args.seed + 3)
    rd = torch.randint(0, 4, (len(ts),), generator=g)
    real = (render(ts, draw_motion(rd, g))[:, :, 0] + 1) / 2
    real_measures = measure(clf, real, tl, rd)

    result = {
        "model": args.model, "seed": args.seed, "clips": args.clips, "frames": int(clips.shape[0] * clips.shape[1]),
        "truncation": truncation,
        "classifier": {"real_accuracy": clf_acc, "train_digits": n_digits, "steps": args.classifier_steps},
        **measures,
        "truncation_sweep": sweep,
        "real_content_accuracy": real_measures["content_accuracy"],
        "real_direction_accuracy": real_measures["direction_accuracy"],
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result, indent=2))
    out = Path(args.out) if args.out else (ASSET if args.model == "default" else Path(args.model)) / "eval.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    ok = result["content_accuracy"] >= 0.8 and result["direction_accuracy"] >= 0.8
    print("targets (>= 80% each):", "met" if ok else "NOT met")


def measure(clf: FrameClassifier, clips: torch.Tensor, classes: torch.Tensor, dirs: torch.Tensor) -> dict[str, Any]:
    """Content accuracy over all frames, direction accuracy over clips, per-class content, mean travel."""
    n, t = clips.shape[:2]
    with torch.no_grad():
        pred = clf(clips.reshape(n * t, 1, *clips.shape[-2:])).argmax(1).reshape(n, t)
    correct = pred == classes[:, None]
    moved = direction_of(clips)
    from train_video_default import centroids

    cen = centroids(clips)
    disp = cen[:, -3:].mean(1) - cen[:, :3].mean(1)  # (N, 2)
    sign = torch.tensor([-1.0, 1.0, -1.0, 1.0])[dirs]
    along = torch.where(dirs <= 1, disp[:, 0], disp[:, 1]) * sign
    return {
        "content_accuracy": float(correct.float().mean()),
        "content_by_class": {str(c): float(correct[classes == c].float().mean()) for c in range(10)
                             if (classes == c).any()},
        "direction_accuracy": float((moved == dirs).float().mean()),
        "direction_by_direction": {DIRECTIONS[d]: float((moved == dirs)[dirs == d].float().mean()) for d in range(4)
                                   if (dirs == d).any()},
        "mean_travel_px": float(along.mean()),
    }


if __name__ == "__main__":
    main()
