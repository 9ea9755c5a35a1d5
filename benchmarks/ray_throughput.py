"""aigc.ray.generate throughput on one machine: 1 and 2 actors, the embedded image model, and the memory per actor.

Each actor holds one CPU and runs torch on one thread (``threads=1``); a run writes one PNG per row (with its
provenance) into a temporary folder, as a real batch job does. For each actor count, two runs of ``--rows`` and
``2 * --rows`` rows give:

- the wall time of each run (actor start-up and model load included: what a user waits for);
- the steady throughput, ``rows / (t(2 * rows) - t(rows))``: the start-up cost cancels out;
- the peak resident memory (RSS) of each actor process, and USS, polled every 0.5 s through ``psutil``.

An in-process baseline (``aigc.load`` then ``generate`` one row at a time on one thread, with the same saves) says
what Ray costs on top. Scaling efficiency is ``throughput(2 actors) / (2 * throughput(1 actor))``.

Run:  python benchmarks/ray_throughput.py [--rows 48] [--steps 10]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

PROMPTS = ["an ankle boot", "a sneaker", "a bag", "a coat", "a dress", "a shirt", "a sandal", "a pullover"]


class PeakRss:
    """Peak RSS and USS (memory no other process shares: not the shared libraries) per Ray Data actor process
    (``ray::MapWorker(...)``), polled in a thread."""

    def __init__(self) -> None:
        self.peak: dict[int, int] = {}
        self.peak_uss: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            for proc in psutil.process_iter(["pid", "cmdline"]):
                try:
                    if " ".join(proc.info["cmdline"] or []).startswith("ray::MapWorker"):
                        mem = proc.memory_full_info()
                        self.peak[proc.pid] = max(self.peak.get(proc.pid, 0), mem.rss)
                        self.peak_uss[proc.pid] = max(self.peak_uss.get(proc.pid, 0), mem.uss)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self._stop.wait(0.5)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def ray_run(rows: int, actors: int, steps: int) -> tuple[float, str]:
    import aigc

    prompts = [PROMPTS[k % len(PROMPTS)] for k in range(rows)]
    with tempfile.TemporaryDirectory() as out, PeakRss() as rss:
        start = time.perf_counter()
        result = aigc.ray.generate(prompts, "image", seed=0, output=out, concurrency=actors, num_cpus=1, threads=1,
                                   device="cpu", batch_size=8, steps=steps)
        wall = time.perf_counter() - start
        statuses = [r["status"] for r in result.select_columns(["status"]).take_all()]
        assert statuses.count("generated") == rows, statuses
        assert len(list(Path(out).iterdir())) == rows
    mib = [f"{rss.peak[pid] / 2**20:.0f}/{rss.peak_uss[pid] / 2**20:.0f}" for pid in sorted(rss.peak)]
    return wall, " ".join(mib)


def in_process(rows: int, steps: int) -> float:
    import torch

    import aigc

    torch.set_num_threads(1)
    gen = aigc.load("image", device="cpu")
    gen.generate(PROMPTS[0], seed=0, steps=steps, progress=False)  # warm-up
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        for k in range(rows):
            gen.generate(PROMPTS[k % len(PROMPTS)], seed=k, steps=steps, progress=False).save(Path(out) / f"{k}.png")
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=48, help="rows of the short run (the long one has twice)")
    parser.add_argument("--steps", type=int, default=10, help="denoising steps per image (the model's default: 50)")
    args = parser.parse_args()

    import ray
    import ray.data

    print(f"load average before: {os.getloadavg()}; CPUs: {os.cpu_count()}")
    base = in_process(args.rows, args.steps)
    print(f"in-process, 1 thread: {args.rows} rows in {base:.1f} s = {args.rows / base:.2f} rows/s")

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    figures: dict[int, dict[str, Any]] = {}
    for actors in (1, 2):
        short, rss_short = ray_run(args.rows, actors, args.steps)
        long, rss_long = ray_run(2 * args.rows, actors, args.steps)
        steady = args.rows / (long - short)
        figures[actors] = {"steady": steady}
        print(f"{actors} actor(s): {args.rows} rows in {short:.1f} s ({args.rows / short:.2f} rows/s), "
              f"{2 * args.rows} rows in {long:.1f} s ({2 * args.rows / long:.2f} rows/s); "
              f"steady {steady:.2f} rows/s; peak RSS/USS per actor process (MiB): {rss_short}; {rss_long}")
    ray.shutdown()
    efficiency = figures[2]["steady"] / (2 * figures[1]["steady"])
    print(f"scaling efficiency (steady, 2 actors vs 2 x 1 actor): {efficiency:.0%}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
