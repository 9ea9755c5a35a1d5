"""Measure the embedded CycleGAN (sandal <-> ankle boot): does the domain change, and is the input's identity kept?

Inputs are Fashion-MNIST's *test* split (Debian ``dataset-fashion-mnist``): its 1,000 sandals and 1,000 ankle
boots, which neither the CycleGAN nor the classifier below saw. They go through the public API
(``aigc.load("image", model, backend="cyclegan")`` and ``generate(prompt, init_image=...)``), as a user's would.

The judge is an independent classifier trained on real images only: aigc's default image feature extractor
(``aigc/assets/fid_classifier``, a 20-class small CNN trained on Fashion-MNIST's training images and MNIST digits;
it never saw a generated image). Measures, per direction:

1. **target accuracy** -- the share of translated images the classifier labels (argmax over its 20 classes) as
   the target domain. Gate: >= 85% in each direction.
2. **cycle error** -- the mean absolute pixel error of ``a -> b -> a`` (and ``b -> a -> b``) on the 0-255 scale,
   against the same error between each input and a random other input of its domain (how different two images
   of one domain are). Gate: <= 12.75 grey levels (5% of the range) in each direction.
3. **identity** -- on the classifier's features, for each translated image, the share of the *other* inputs that
   lie farther from it (Euclidean) than its own input (1.0: its own input is the nearest of all). Gate: the
   translated image is closer to its own input than to another input for >= 80% of (image, other input) pairs,
   in each direction, on the classifier's **last convolutional features** (the 128 x 4 x 4 output of its conv
   body, before the class-specific layers: content features, as Johnson et al. 2016 compare content on a
   classifier's conv features). The same measure on the 128-d penultimate features is reported as well: those
   are trained to tell classes apart and hold little within-class detail, so across two classes their distances
   rank the inputs mostly by their own feature norm (an input with weak features is "near" every translation).
   Top-1 retrieval (the own input the nearest of all inputs) is reported for both.

4. **video flicker** (no gate) -- 20 test sandals, each held still for 8 frames while a 3x3 white dot crosses the
   background, translated as a video with ``temporal=True`` and ``temporal=False``: the mean change of the shoe's
   own pixels between consecutive frames (0-255).

Also writes a figure (``figure.png``: test inputs, their translations and cycles) next to the model. Prints the
figures and writes JSON (default: ``eval.json`` next to the model, which the model card cites); exits 1 when a
gate fails.

Usage:
    OMP_NUM_THREADS=1 python scripts/eval_cyclegan_default.py                    # the installed default
    OMP_NUM_THREADS=1 python scripts/eval_cyclegan_default.py --model /tmp/cyclegan_run
    OMP_NUM_THREADS=1 python scripts/eval_cyclegan_default.py --checkpoint /tmp/cyclegan_run/checkpoints/step-001000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TARGET = REPO / "src" / "aigc" / "assets" / "cyclegan_default"
SANDAL, BOOT = 5, 9  # Fashion-MNIST labels of domain A and domain B
GATES = {"target_accuracy": 0.85, "cycle_mae_255": 12.75, "identity_pairwise": 0.80}


def model_from_checkpoint(checkpoint: Path, out: Path) -> Path:
    """The generator average of a train_cyclegan checkpoint as a loadable model folder (to look at a run early)."""
    from aigc.formats import cyclegan as cyclegan_format
    from aigc.models import CycleGANConfig, CycleGANGenerators
    from aigc.train import checkpoint_state

    config = json.loads((checkpoint / "state.json").read_text())["config"]
    net = CycleGANGenerators(CycleGANConfig.from_dict(config["model"]))
    net.load_state_dict(checkpoint_state(checkpoint, "G_ema"))
    cyclegan_format.save(out, net, domains=config["domains"], dtype=torch.float16)
    return out


def translate(gen: Any, prompt: str, images: np.ndarray) -> np.ndarray:
    """(N, 32, 32) uint8 -> translated (N, 32, 32) uint8, one public-API call per image."""
    out = []
    for img in images:
        res = gen.generate(prompt, init_image=Image.fromarray(img), seed=0)
        out.append(np.asarray(res.images[0].convert("L")))
    return np.stack(out)


def classify(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 32, 32) uint8 -> (predicted classes (N,), penultimate features (N, 128), last conv features (N, 2048))
    of the default classifier."""
    from aigc.evaluate._classifier import load_default_classifier

    clf = load_default_classifier()
    preds, feats, convs = [], [], []
    with torch.no_grad():
        for i in range(0, len(images), 250):
            x = torch.from_numpy(images[i:i + 250]).float()[:, None] / 127.5 - 1
            conv = clf.body(x)  # (B, 128, 4, 4)
            f = clf.neck(conv)  # (B, 128)
            convs.append(conv.flatten(1).numpy())
            feats.append(f.numpy())
            preds.append(clf.head(f).argmax(1).numpy())
    return np.concatenate(preds), np.concatenate(feats), np.concatenate(convs)


def identity(feat_out: np.ndarray, feat_in: np.ndarray) -> tuple[float, float]:
    """(pairwise share: other inputs farther than the own input, averaged; top-1 retrieval rate)."""
    d = ((feat_out[:, None, :] - feat_in[None, :, :]) ** 2).sum(-1)  # (N, N): translated i vs input j
    own = np.diag(d)[:, None]
    n = len(d)
    farther = ((d > own).sum(1)) / (n - 1)  # own input excluded (d[i, i] > own[i] is False)
    top1 = (d.argmin(1) == np.arange(n)).mean()
    return float(farther.mean()), float(top1)


def flicker(model: str, shoes: np.ndarray, frames: int = 8) -> dict[str, float]:
    """Video flicker, temporal=True vs False: each shoe held still for ``frames`` frames while a 3x3 white dot
    crosses the top of the background (x = 1, 5, 9, ...); the mean absolute change (0-255) of the shoe's own
    pixels (input > 16, away from the dot's path) between consecutive translated frames, over all shoes."""
    import aigc

    out: dict[str, float] = {}
    for temporal in (True, False):
        gen = aigc.load("video", model, backend="cyclegan", device="cpu", temporal=temporal)
        changes = []
        for shoe in shoes:
            clip = np.repeat(shoe[None], frames, axis=0).copy()
            for t in range(frames):
                clip[t, 1:4, 1 + 4 * t:4 + 4 * t] = 255
            mask = shoe > 16
            mask[:5] = False  # the dot's path and its neighbours
            video = gen.generate("a2b", init_video=clip, fps=8).videos[0][..., 0].astype(np.float64)
            changes.append(np.abs(np.diff(video, axis=0))[:, mask].mean())
        out["temporal" if temporal else "per_frame"] = round(float(np.mean(changes)), 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="a model folder, or 'default' (the installed one)")
    p.add_argument("--checkpoint", help="evaluate a train_cyclegan checkpoint folder instead")
    p.add_argument("--count", type=int, default=1000, help="test images per domain (at most 1000)")
    p.add_argument("--out", help="JSON file (default: eval.json in the model folder)")
    p.add_argument("--figure", help="PNG figure (default: figure.png in the model folder)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    import aigc
    from aigc.train.datasets import fashion_mnist, pad32

    tmp = tempfile.mkdtemp(prefix="cg_eval.")
    model = args.model
    if args.checkpoint:
        model = str(model_from_checkpoint(Path(args.checkpoint), Path(tmp) / "model"))
    folder = TARGET if model == "default" else Path(model)
    started = time.perf_counter()
    images, labels = fashion_mnist("test")
    images = pad32(images)
    sandals, boots = images[labels == SANDAL][:args.count], images[labels == BOOT][:args.count]
    gen = aigc.load("image", model, backend="cyclegan", device="cpu")

    report: dict[str, Any] = {"model": args.model if not args.checkpoint else args.checkpoint,
                              "data": "Fashion-MNIST test split", "inputs_per_domain": len(sandals),
                              "classifier": "aigc/assets/fid_classifier (real images only)", "gates": GATES}
    real_pred, _, _ = classify(np.concatenate([sandals, boots]))
    real_true = np.array([SANDAL] * len(sandals) + [BOOT] * len(boots))
    report["classifier_accuracy_on_real_inputs"] = float((real_pred == real_true).mean())
    rng = np.random.default_rng(0)
    figure_rows = []
    ok = True
    for name, src, target, there, back in (("a2b", sandals, BOOT, "an ankle boot", "a sandal"),
                                           ("b2a", boots, SANDAL, "a sandal", "an ankle boot")):
        out = translate(gen, there, src)
        cycled = translate(gen, back, out)
        pred, feat_out, conv_out = classify(out)
        _, feat_in, conv_in = classify(src)
        acc = float((pred == target).mean())
        mae = float(np.abs(cycled.astype(np.float64) - src).mean())
        other = src[rng.permutation(len(src))]
        baseline = float(np.abs(other.astype(np.float64) - src).mean())
        change = float(np.abs(out.astype(np.float64) - src).mean())
        pairwise, top1 = identity(conv_out, conv_in)
        pen_pairwise, pen_top1 = identity(feat_out, feat_in)
        classes = {int(k): int(v) for k, v in zip(*np.unique(pred, return_counts=True), strict=True)}
        report[name] = {"prompt": there, "target_accuracy": acc, "cycle_mae_255": mae,
                        "mae_between_two_inputs_255": baseline, "mae_input_to_translation_255": change,
                        "identity_pairwise": pairwise, "identity_top1": top1,
                        "identity_pairwise_penultimate": pen_pairwise, "identity_top1_penultimate": pen_top1,
                        "predicted_classes": classes}
        passed = acc >= GATES["target_accuracy"] and mae <= GATES["cycle_mae_255"] and \
            pairwise >= GATES["identity_pairwise"]
        report[name]["passed"] = passed
        ok = ok and passed
        print(f"{name} ({there!r}): target accuracy {acc:.4f}, cycle MAE {mae:.2f}/255 (two inputs differ by "
              f"{baseline:.2f}; translation changes {change:.2f}), identity pairwise {pairwise:.4f}, top-1 "
              f"{top1:.4f} (penultimate: {pen_pairwise:.4f}, {pen_top1:.4f}) -> {'pass' if passed else 'FAIL'}")
        figure_rows += [src[:12], out[:12], cycled[:12]]
    report["video_flicker_255"] = flicker(model, sandals[:20])
    print(f"video flicker: {report['video_flicker_255']}")
    report["passed"] = ok
    report["duration_s"] = round(time.perf_counter() - started, 1)
    out_json = Path(args.out) if args.out else folder / "eval.json"
    out_json.write_text(json.dumps(report, indent=2) + "\n")
    grid = np.concatenate([np.concatenate(list(row), axis=1) for row in figure_rows], axis=0)  # (6*32, 12*32)
    fig = Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.Resampling.NEAREST)
    fig_path = Path(args.figure) if args.figure else folder / "figure.png"
    fig.save(fig_path, optimize=True)
    print(f"wrote {out_json} and {fig_path}; {'all gates pass' if ok else 'a gate FAILED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
