"""Measure the embedded default video model: is the right digit drawn, and does it move the right way?

1. An independent frame classifier: a small CNN (``aigc.train.sprites.FrameClassifier``) trained only on real
   procedural frames (``aigc.train.sprites``) made from 70 of the 100 held-out digits per class -- digits the video
   model never saw -- with generic augmentation (random blur and contrast, as no generated frame is sharper
   than the data). Its accuracy on real frames of the other 30 held-out digits per class is reported.
2. ``--clips`` generated clips (default 100) through the public API, clip i with class ``i % 10``, direction
   ``(i // 10) % 4`` and seed ``i``:
     * content accuracy: the share of all frames the classifier labels as the prompted digit;
     * clip accuracy: the share of clips whose majority-vote frame label (ties: the smallest label) is the
       prompted digit;
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
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aigc.train.sprites import (
    DIRECTIONS,
    FrameClassifier,
    centroids,
    digit_split,
    direction_of,
    draw_motion,
    real_frames,
    render,
    train_frame_classifier,
)

ASSET = Path(__file__).resolve().parents[1] / "src" / "aigc" / "assets" / "video_default"
CLS_TRAIN_PER_CLASS = 70  # of the 100 held-out digits per class; the other 30 test the classifier


def train_classifier(data: dict[str, Any], steps: int, seed: int) -> tuple[FrameClassifier, float, int]:
    """The independent classifier (trained on held-out digits only) and its accuracy on other held-out digits."""
    sprites, labels = data["cls_train"]
    clf = train_frame_classifier(sprites, labels, steps=steps, seed=seed, log=lambda m: print(m, flush=True))
    test_sprites, test_labels = data["cls_test"]
    x, y = real_frames(test_sprites, test_labels, 3000, torch.Generator().manual_seed(seed + 2))
    with torch.no_grad():
        acc = float((clf(x).argmax(1) == y).float().mean())
    return clf, acc, len(sprites)


def split(seed: int) -> dict[str, Any]:
    data = digit_split(download=True, seed=0)  # the same split as training: 100 held-out digits per class
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
        sweep[str(value)] = {"content_accuracy": m["content_accuracy"], "clip_accuracy": m["clip_accuracy"],
                             "direction_accuracy": m["direction_accuracy"]}

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
        "real_clip_accuracy": real_measures["clip_accuracy"],
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
    cen = centroids(clips)
    disp = cen[:, -3:].mean(1) - cen[:, :3].mean(1)  # (N, 2)
    sign = torch.tensor([-1.0, 1.0, -1.0, 1.0])[dirs]
    along = torch.where(dirs <= 1, disp[:, 0], disp[:, 1]) * sign
    votes = torch.nn.functional.one_hot(pred, 10).sum(1).argmax(1)  # (N,) majority label (ties: smallest)
    clip_ok = votes == classes
    return {
        "content_accuracy": float(correct.float().mean()),
        "clip_accuracy": float(clip_ok.float().mean()),
        "clip_by_class": {str(c): float(clip_ok[classes == c].float().mean()) for c in range(10)
                          if (classes == c).any()},
        "content_by_class": {str(c): float(correct[classes == c].float().mean()) for c in range(10)
                             if (classes == c).any()},
        "direction_accuracy": float((moved == dirs).float().mean()),
        "direction_by_direction": {DIRECTIONS[d]: float((moved == dirs)[dirs == d].float().mean()) for d in range(4)
                                   if (dirs == d).any()},
        "mean_travel_px": float(along.mean()),
    }


if __name__ == "__main__":
    main()
