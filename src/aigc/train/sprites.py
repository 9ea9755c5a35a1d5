"""The procedural sprite clips of aigc's embedded video model, and the measures of its clips.

A clip is a digit sprite moving left, right, up or down across a black canvas (by default 16 frames of 32x32):

* sprites: MNIST digits (28x28), centre 24x24 crop, area-resized to 16x16, in [0, 1] (:func:`make_sprites`);
* :func:`digit_split`: the 5,000 digits of :func:`aigc.train.datasets.mnist_5k` split by class with a fixed
  seed -- ``held_out_per_class`` (100) of each class are held out (never trained on; the evaluation's
  independent classifier learns from them), the rest train;
* :func:`draw_motion`: speed ~ U[0.5, 1.0] pixels per frame, a start that keeps the whole sprite on the canvas,
  the other coordinate uniform; :func:`render` draws sub-pixel positions with bilinear resampling;
* :func:`direction_of` and :func:`centroids`: where a clip's intensity centroid goes -- how the direction of a
  generated clip is measured;
* :class:`FrameClassifier` and :func:`train_frame_classifier`: a small CNN that names the digit of one frame,
  trained on real frames of given sprites (with blur and contrast augmentation). The recipe
  :func:`aigc.train.train_sprite_video` guides its decoder with one trained on the *training* digits;
  ``scripts/eval_video_default.py`` measures with an independent one trained on the *held-out* digits.

Every random draw comes from an explicit ``torch.Generator``; the classifier's initialisation and dropout run
under :func:`aigc.train._run.seeded_rng` (the caller's global RNG is left as it was).

Example:
    >>> import torch
    >>> gen = torch.Generator().manual_seed(0)
    >>> sprites, labels = torch.rand(4, 16, 16), torch.tensor([0, 1, 0, 1])
    >>> clips, cls, direction, pos = make_clips(sprites, labels, 3, gen, num_classes=2)
    >>> clips.shape, bool((direction_of((clips[:, :, 0] + 1) / 2) == direction).all())
    (torch.Size([3, 16, 1, 32, 32]), True)
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from aigc.errors import InvalidRequest
from aigc.train._run import seeded_rng
from aigc.train.datasets import DIGIT_WORDS, WHEEL_DIR

__all__ = ["CANVAS", "DIRECTIONS", "FRAMES", "HELD_OUT_PER_CLASS", "SPEED", "SPRITE", "FrameClassifier", "augment",
           "centroids", "digit_classes", "digit_split", "direction_entries", "direction_of", "draw_motion",
           "make_clips", "make_sprites", "real_frames", "render", "train_frame_classifier"]

FRAMES, CANVAS, SPRITE = 16, 32, 16
SPEED = (0.5, 1.0)  # pixels per frame
HELD_OUT_PER_CLASS = 100
DIRECTIONS = ("left", "right", "up", "down")  # ids 0-3, image coordinates (y grows downwards)


def digit_classes() -> list[dict[str, Any]]:
    """The ten digit classes (ids 0-9) with the prompt phrases that name each, as the sprite format stores them.

    Example:
        >>> digit_classes()[3]["phrases"][:3]
        ['digit 3', 'a handwritten 3', 'handwritten 3']
    """
    out = []
    for d, word in enumerate(DIGIT_WORDS):
        phrases = [f"digit {d}", f"a handwritten {d}", f"handwritten {d}", f"handwritten digit {d}",
                   f"the number {d}", f"number {d}", f"the digit {d}", str(d), word, f"digit {word}",
                   f"handwritten {word}", f"the number {word}", f"number {word}", f"a {word}"]
        out.append({"id": d, "name": f"digit {d}", "phrases": phrases})
    return out


def direction_entries() -> list[dict[str, Any]]:
    """The four directions (ids 0-3: left, right, up, down) with their phrases, as the sprite format stores them."""
    from aigc.formats.sprites import DIRECTION_PHRASES

    return [{"id": i, "name": name, "phrases": DIRECTION_PHRASES[name]} for i, name in enumerate(DIRECTIONS)]


# -- sprites and clips -----------------------------------------------------------------------------------
def make_sprites(images: Any, size: int = SPRITE) -> torch.Tensor:
    """MNIST digits (N, 28, 28) uint8 -> sprites (N, size, size) float in [0, 1]: centre 24x24 crop, area resize."""
    x = torch.as_tensor(images)[:, 2:26, 2:26].float()[:, None] / 255.0  # (N, 1, 24, 24)
    return F.interpolate(x, size=(size, size), mode="area")[:, 0].clamp(0, 1)


def digit_split(folder: str | os.PathLike[str] = WHEEL_DIR, *, download: bool = False, seed: int = 0,
                held_out_per_class: int = HELD_OUT_PER_CLASS) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Sprites (N, 16, 16) and labels (N,) of the ``"train"`` and ``"held_out"`` digits.

    The split depends only on ``seed`` (a NumPy ``RandomState`` shuffling each class), so training and evaluation
    agree on it; ``folder`` and ``download`` are :func:`aigc.train.datasets.mnist_5k`'s.
    """
    import numpy as np

    from aigc.train.datasets import mnist_5k

    images, labels = mnist_5k(folder, download=download)
    rng = np.random.RandomState(seed)
    held, train = [], []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        held.append(idx[:held_out_per_class])
        train.append(idx[held_out_per_class:])
    out = {}
    for name, parts in (("train", train), ("held_out", held)):
        idx = np.sort(np.concatenate(parts))
        out[name] = (make_sprites(images[idx]), torch.from_numpy(labels[idx].astype(np.int64)))
    return out


def draw_motion(direction: torch.Tensor, gen: torch.Generator, *, frames: int = FRAMES, canvas: int = CANVAS,
                sprite: int = SPRITE) -> torch.Tensor:
    """Top-left sprite positions (B, T, 2) as (x, y) pixels for directions (B,) (0 left, 1 right, 2 up, 3 down).

    Speed ~ U[0.5, 1.0] px/frame; the start along the motion is uniform over the starts that keep the sprite on
    the canvas for all frames; the other coordinate is uniform over [0, canvas - sprite].
    """
    b = direction.shape[0]
    room = float(canvas - sprite)
    speed = SPEED[0] + (SPEED[1] - SPEED[0]) * torch.rand(b, generator=gen)  # (B,)
    travel = speed * (frames - 1)
    start = torch.rand(b, generator=gen) * (room - travel).clamp_min(0.0)  # start of the increasing path
    other = torch.rand(b, generator=gen) * room
    t = torch.arange(frames, dtype=torch.float32)
    forward = start[:, None] + speed[:, None] * t  # (B, T)
    backward = (start + travel)[:, None] - speed[:, None] * t
    decreasing = (direction == 0) | (direction == 2)
    along = torch.where(decreasing[:, None], backward, forward)
    across = other[:, None].expand(-1, frames)
    horizontal = (direction <= 1)[:, None]
    return torch.stack([torch.where(horizontal, along, across), torch.where(horizontal, across, along)], dim=2)


def render(sprites: torch.Tensor, pos: torch.Tensor, *, canvas: int = CANVAS) -> torch.Tensor:
    """Sprites (B, S, S) in [0, 1] at top-left positions (B, T, 2) -> clips (B, T, 1, canvas, canvas) in [-1, 1]."""
    b, t = pos.shape[:2]
    s = sprites.shape[-1]
    centres = torch.arange(canvas, dtype=torch.float32) + 0.5  # pixel centres of the canvas
    u = centres[None, None, :] - pos[:, :, 0:1]  # (B, T, W) x in sprite pixels
    v = centres[None, None, :] - pos[:, :, 1:2]  # (B, T, H)
    gx = (2 * u / s - 1)[:, :, None, :].expand(-1, -1, canvas, -1)  # normalised, align_corners=False
    gy = (2 * v / s - 1)[:, :, :, None].expand(-1, -1, -1, canvas)
    grid = torch.stack([gx, gy], dim=-1).reshape(b * t, canvas, canvas, 2)
    src = sprites[:, None, None].expand(-1, t, -1, -1, -1).reshape(b * t, 1, s, s)
    frames = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return frames.reshape(b, t, 1, canvas, canvas) * 2 - 1


def make_clips(sprites: torch.Tensor, labels: torch.Tensor, batch: int, gen: torch.Generator, *,
               num_classes: int = 10, frames: int = FRAMES, canvas: int = CANVAS,
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch of clips (B, T, 1, canvas, canvas) in [-1, 1] with classes (B,), directions (B,), positions (B, T, 2).

    Classes are drawn uniformly (every class must have a sprite), then a sprite of that class, then a direction.
    """
    cls = torch.randint(0, num_classes, (batch,), generator=gen)
    pick = []
    for c in cls.tolist():
        idx = torch.nonzero(labels == c)[:, 0]
        pick.append(int(idx[torch.randint(0, len(idx), (1,), generator=gen)]))
    direction = torch.randint(0, len(DIRECTIONS), (batch,), generator=gen)
    pos = draw_motion(direction, gen, frames=frames, canvas=canvas, sprite=sprites.shape[-1])
    return render(sprites[pick], pos, canvas=canvas), cls, direction, pos


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


# -- a frame classifier ----------------------------------------------------------------------------------
class FrameClassifier(nn.Module):
    """A frame (N, 1, H, W) in [0, 1] -> digit logits (N, classes); global max pooling makes it indifferent to
    where the digit stands."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()

        def block(a: int, b: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(),
                                 nn.Conv2d(b, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU())

        self.features = nn.Sequential(block(1, 16), nn.MaxPool2d(2), block(16, 32), nn.MaxPool2d(2), block(32, 64))
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(64, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x * 2 - 1).amax(dim=(2, 3))
        return self.head(h)  # type: ignore[no-any-return]


def real_frames(sprites: torch.Tensor, labels: torch.Tensor, n: int, gen: torch.Generator, *,
                canvas: int = CANVAS) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random frames (n, 1, canvas, canvas) in [0, 1] of real clips of these sprites, and their labels."""
    pick = torch.randint(0, len(sprites), (n,), generator=gen)
    direction = torch.randint(0, 4, (n,), generator=gen)
    pos = draw_motion(direction, gen, canvas=canvas, sprite=sprites.shape[-1])  # (n, T, 2)
    t = torch.randint(0, pos.shape[1], (n,), generator=gen)
    frames = render(sprites[pick], pos[torch.arange(n), t][:, None], canvas=canvas)[:, 0]
    return (frames + 1) / 2, labels[pick]


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random Gaussian blur (sigma 0-1.2 px) on half the frames (N, 1, H, W), and contrast 0.6-1.0."""
    n, _, h, w = x.shape
    sigma = torch.rand(n, generator=gen) * 1.2
    blur = torch.rand(n, generator=gen) < 0.5
    r = torch.arange(-2, 3, dtype=torch.float32)
    k1 = torch.exp(-(r[None] ** 2) / (2 * sigma[:, None].clamp_min(1e-3) ** 2))
    k1 = k1 / k1.sum(1, keepdim=True)  # (n, 5)
    k2 = (k1[:, :, None] * k1[:, None, :])[:, None]  # (n, 1, 5, 5)
    blurred = F.conv2d(x.reshape(1, n, h, w), k2, padding=2, groups=n).reshape(n, 1, h, w)
    x = torch.where(blur[:, None, None, None], blurred, x)
    return x * (0.6 + 0.4 * torch.rand(n, 1, 1, 1, generator=gen))


def train_frame_classifier(sprites: torch.Tensor, labels: torch.Tensor, *, steps: int = 800, seed: int = 0,
                           batch_size: int = 128, canvas: int = CANVAS, log: Any = None) -> FrameClassifier:
    """A :class:`FrameClassifier` trained on real augmented frames of ``sprites`` (AdamW, one-cycle lr 2e-3).

    Initial weights and dropout come from the global RNG seeded with ``seed`` inside :func:`seeded_rng` (the
    caller's RNG state is restored); frames from a generator seeded with ``seed + 1``. Returned in eval mode,
    gradients off.

    Raises:
        InvalidRequest: ``steps`` is not a positive int, or ``labels`` do not fit ``sprites``.

    Example:
        >>> clf = train_frame_classifier(torch.rand(4, 16, 16), torch.tensor([0, 1, 2, 3]), steps=2)
        >>> clf(torch.zeros(1, 1, 32, 32)).shape
        torch.Size([1, 10])
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise InvalidRequest("steps", steps, "must be a positive int", "pass steps=800")
    if labels.shape[0] != sprites.shape[0] or labels.ndim != 1:
        raise InvalidRequest("labels", tuple(labels.shape), f"must be one label per sprite ({sprites.shape[0]})",
                             "pass labels of shape (N,)")
    with seeded_rng(seed, torch.device("cpu")):
        clf = FrameClassifier()
        opt = torch.optim.AdamW(clf.parameters(), lr=2e-3, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
        gen = torch.Generator().manual_seed(seed + 1)
        clf.train()
        for step in range(steps):
            x, y = real_frames(sprites, labels, batch_size, gen, canvas=canvas)
            loss = F.cross_entropy(clf(augment(x, gen)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            sched.step()
            if log is not None and (step + 1) % 200 == 0:
                log(f"classifier step {step + 1}/{steps} loss {loss.item():.3f}")
    return clf.eval().requires_grad_(False)
