"""aigc.ray.generate throughput on one machine: 1 and 2 actors, the embedded image model, and the memory per actor.

Each actor holds one CPU and runs torch on one thread (``threads=1``); a run writes one PNG per row (with its
provenance) into a temporary folder, as a real batch job does. Runs with 1 and 2 actors alternate (``--repeats``
pairs, so a change in the machine's load hits both alike); each gives:

- the wall time (actor start-up and model load included: what a user waits for);
- the start-up: from the call to the first file written;
- the steady throughput, ``(rows - 1) / (last file's mtime - first file's mtime)``: rows per second once the
  actors are loaded;
- the CPU time of the actor processes (start-up included), polled with the memory;
- the peak RSS and USS (memory no other process shares: not the shared libraries) of each actor process, polled
  every 0.5 s through ``psutil``.

An in-process baseline (``aigc.load`` then ``generate`` one row at a time on one thread, with the same saves) says
what Ray costs on top. Scaling efficiency is ``steady(2 actors) / (2 * steady(1 actor))``, from the medians.

Run:  python benchmarks/ray_throughput.py [--rows 64] [--steps 10] [--repeats 2]
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
        self.cpu_s: dict[int, float] = {}  # user + system CPU seconds, at the last poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._before: set[int] = set()

    def _poll(self) -> None:
        while not self._stop.is_set():
            for proc in psutil.process_iter(["pid", "cmdline"]):
                try:
                    if proc.pid not in self._before and " ".join(proc.info["cmdline"] or []).startswith(
                            "ray::MapWorker"):
                        mem = proc.memory_full_info()
                        self.peak[proc.pid] = max(self.peak.get(proc.pid, 0), mem.rss)
                        self.peak_uss[proc.pid] = max(self.peak_uss.get(proc.pid, 0), mem.uss)
                        cpu = proc.cpu_times()
                        self.cpu_s[proc.pid] = cpu.user + cpu.system
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self._stop.wait(0.5)

    def __enter__(self) -> PeakRss:
        self._before = {p.pid for p in psutil.process_iter(["cmdline"])  # the last run's actors, still exiting
                        if " ".join(p.info["cmdline"] or []).startswith("ray::MapWorker")}
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def ray_run(rows: int, actors: int, steps: int) -> dict[str, Any]:
    import aigc

    prompts = [PROMPTS[k % len(PROMPTS)] for k in range(rows)]
    with tempfile.TemporaryDirectory() as out, PeakRss() as rss:
        start = time.time()
        result = aigc.ray.generate(prompts, "image", seed=0, output=out, concurrency=actors, num_cpus=1, threads=1,
                                   device="cpu", batch_size=8, steps=steps)
        wall = time.time() - start
        statuses = [r["status"] for r in result.select_columns(["status"]).take_all()]
        assert statuses.count("generated") == rows, statuses
        done = sorted(p.stat().st_mtime_ns / 1e9 for p in Path(out).iterdir())
        assert len(done) == rows
    mib = [f"{rss.peak[pid] / 2**20:.0f}/{rss.peak_uss[pid] / 2**20:.0f}" for pid in sorted(rss.peak)]
    return {"wall": wall, "startup": done[0] - start, "steady": (rows - 1) / (done[-1] - done[0]), "mib": mib,
            "cpu_s": sum(rss.cpu_s.values())}


def in_process(rows: int, steps: int) -> tuple[float, float]:
    import torch

    import aigc

    torch.set_num_threads(1)
    gen = aigc.load("image", device="cpu")
    gen.generate(PROMPTS[0], seed=0, steps=steps, progress=False)  # warm-up
    with tempfile.TemporaryDirectory() as out:
        start, cpu = time.perf_counter(), time.process_time()
        for k in range(rows):
            gen.generate(PROMPTS[k % len(PROMPTS)], seed=k, steps=steps, progress=False).save(Path(out) / f"{k}.png")
        return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=64, help="rows per run")
    parser.add_argument("--steps", type=int, default=10, help="denoising steps per image (the model's default: 50)")
    parser.add_argument("--repeats", type=int, default=2, help="pairs of runs (1 actor, 2 actors)")
    args = parser.parse_args()

    import statistics

    import ray
    import ray.data

    print(f"load average before: {os.getloadavg()}; CPUs: {os.cpu_count()}")
    base, cpu = in_process(args.rows, args.steps)
    print(f"in-process, 1 thread: {args.rows} rows in {base:.1f} s = {args.rows / base:.2f} rows/s; CPU {cpu:.1f} s "
          f"= {args.rows / cpu:.2f} rows per CPU second")

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    steady: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.repeats):
        for actors in (1, 2):
            run = ray_run(args.rows, actors, args.steps)
            steady[actors].append(run["steady"])
            print(f"{actors} actor(s): {args.rows} rows in {run['wall']:.1f} s ({args.rows / run['wall']:.2f} rows/s "
                  f"overall), start-up {run['startup']:.1f} s, steady {run['steady']:.2f} rows/s, actors' CPU "
                  f"{run['cpu_s']:.1f} s (load included); peak RSS/USS per "
                  f"actor process (MiB): {' '.join(run['mib'])}; load average {os.getloadavg()[0]:.1f}")
    ray.shutdown()
    one, two = statistics.median(steady[1]), statistics.median(steady[2])
    print(f"median steady: 1 actor {one:.2f} rows/s, 2 actors {two:.2f} rows/s; "
          f"scaling efficiency {two / (2 * one):.0%}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
