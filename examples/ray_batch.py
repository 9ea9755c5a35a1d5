"""Generate an image for every row of a catalogue file on Ray, resume an interrupted run, and replay one output.

    python examples/ray_batch.py                        # a local Ray with 2 CPUs; outputs in out/ray_batch/
    python examples/ray_batch.py --address auto         # on the cluster this machine belongs to
    python examples/ray_batch.py --concurrency 4 --num-gpus 0.5 --steps 50

Needs ``pip install 'aigc[ray]'``. The catalogue has string keys (``sku``), one row with its own ``steps`` and one
with a bad value, which becomes an error entry while the other rows complete. Every row's seed comes from its key,
so the files are the same whatever the number of actors, and the same as ``aigc.generate`` in one process.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import ray
import torch
from PIL import Image

import aigc

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--address", help="a Ray cluster to join (default: start a local one)")
parser.add_argument("--concurrency", type=int, default=2, help="actors, each loading the model once (default 2)")
parser.add_argument("--num-gpus", type=float, default=None, help="GPUs per actor (0.5: two actors share one)")
parser.add_argument("--steps", type=int, default=20, help="denoising steps (default 20)")
parser.add_argument("--out", default="out/ray_batch", help="where to write the catalogue and the outputs")
args = parser.parse_args()

out = Path(args.out)
shutil.rmtree(out / "images", ignore_errors=True)
out.mkdir(parents=True, exist_ok=True)
products = ["an ankle boot", "a sneaker", "a bag", "a coat", "a dress", "a shirt", "a sandal", "a pullover"]
rows: list[dict[str, object]] = [{"sku": f"sku-{i:04d}", "prompt": p} for i, p in enumerate(products * 2)]
rows[3]["steps"] = 40  # this row's own parameter
rows[5]["guidance"] = -1.0  # a bad value: an error entry, not a failed job
catalogue = out / "catalogue.jsonl"
catalogue.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

if args.address or not ray.is_initialized():
    ray.init(address=args.address, logging_level=logging.WARNING, **({} if args.address else {"num_cpus": 2}))


def run() -> list[dict[str, object]]:
    result = aigc.ray.generate(catalogue, "image", seed=2026, output=out / "images", id_column="sku",
                               concurrency=args.concurrency, num_gpus=args.num_gpus, steps=args.steps)
    return sorted(result.drop_columns(["record"]).take_all(), key=lambda r: str(r["sku"]))


# 1. The whole catalogue: one PNG per row, with its provenance record inside.
first = run()
for row in first:
    print(f"{row['sku']}  {row['status']:9}  seed {row['seed']}  {row['path'] or row['error']}")

# 2. An interrupted run, simulated: delete a third of the files; the rerun makes only those.
for row in first[::3]:
    if row["path"]:
        Path(str(row["path"])).unlink()
second = run()
counts = {s: sum(r["status"] == s for r in second) for s in ("generated", "skipped", "failed")}
print(f"rerun: {counts}")

# 3. Any output replays in one process from its file: the same pixels (on one torch thread, as the actors ran:
#    on a CPU, another thread count may round the last bit differently).
torch.set_num_threads(1)
path = Path(str(first[3]["path"]))
again = aigc.replay(path)
assert isinstance(again, aigc.ImageResult)
with Image.open(path) as saved:
    same = np.array_equal(np.asarray(saved.convert("RGB")), np.asarray(again.images[0].convert("RGB")))
print(f"{path.name} replayed in-process: identical pixels = {same}")
