"""Start-up: the CLI's main jobs, wall time from a fresh process, against ``python -c "import torch"``.

A new user's first command is ``aigc generate image "an ankle boot" -o boot.png``: a fresh interpreter imports
aigc and torch, loads the embedded image model, runs 50 denoising steps and writes a PNG with its provenance.
Importing torch alone is the floor any PyTorch tool pays, so the figure is the ratio of the job's wall time to that
of ``python -c "import torch"`` on the same machine at the same moment:

  (a) ``aigc generate image "an ankle boot" -o X.png``   target <= 2.0x
  (b) ``aigc generate text "ROMEO:"``                    target <= 3.0x

Each round runs ``import torch``, (a) and (b) one after another, so load from other processes hits all three alike;
one warm-up round (file cache, bytecode) is not counted; the median of ``--repeats`` rounds is reported, with the
children's CPU time (user + system, all threads) beside the wall time. ``--importtime`` also prints the slowest
imports of job (a) by ``python -X importtime`` (cumulative time).

Run:  python benchmarks/startup.py [--repeats 5] [--threads N] [--importtime]

``--threads N`` sets ``OMP_NUM_THREADS=N`` for every command (the torch floor too); by default each command
inherits the environment, as a user's shell would give it.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"image": 2.0, "text": 3.0}


def _aigc() -> list[str]:
    """The ``aigc`` console script of this interpreter's environment (what a user types), else ``python -m aigc``."""
    script = Path(sys.executable).with_name("aigc")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "aigc"]


def commands(out: Path) -> dict[str, list[str]]:
    return {
        "torch": [sys.executable, "-c", "import torch"],
        "image": [*_aigc(), "generate", "image", "an ankle boot", "-o", str(out / "boot.png")],
        "text": [*_aigc(), "generate", "text", "ROMEO:"],
    }


def run(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system of the child and its threads) of one command; raises on failure."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def importtime(cmd: list[str], env: dict[str, str], cwd: Path, top: int) -> list[tuple[int, int, str]]:
    """The ``top`` modules by cumulative import time in ``python -X importtime`` of ``cmd``: (cumulative us, nesting
    depth, name), slowest first; modules aigc imports lazily, once a job runs, appear at depth 0."""
    argv = [sys.executable, "-X", "importtime", "-m", "aigc", *cmd[cmd.index("generate"):]]
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    rows = []
    for line in proc.stderr.splitlines():
        parts = line[len("import time:"):].split("|") if line.startswith("import time:") else []
        if len(parts) == 3 and parts[1].strip().isdigit():
            depth = (len(parts[2]) - len(parts[2].lstrip()) - 1) // 2
            rows.append((int(parts[1]), depth, parts[2].strip()))
    return sorted(rows, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (median reported); default 5")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for every command")
    parser.add_argument("--importtime", action="store_true", help="also list job (a)'s slowest imports")
    args = parser.parse_args()

    env = dict(os.environ)
    if args.threads is not None:
        env["OMP_NUM_THREADS"] = str(args.threads)
    work = Path(tempfile.mkdtemp(prefix="aigc-startup-"))
    try:
        cmds = commands(work)
        load = os.getloadavg()[0]
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load:.2f}, "
              f"OMP_NUM_THREADS={env.get('OMP_NUM_THREADS', '(unset)')}, {args.repeats} rounds + 1 warm-up")
        for cmd in cmds.values():
            run(cmd, env, work)  # warm-up: file cache and bytecode
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in cmds}
        for i in range(args.repeats):
            for name, cmd in cmds.items():
                times[name].append(run(cmd, env, work))
            print(f"  round {i + 1}: " + ", ".join(f"{n} {times[n][-1][0]:.2f} s" for n in cmds), flush=True)
        wall = {n: statistics.median(t[0] for t in ts) for n, ts in times.items()}
        cpu = {n: statistics.median(t[1] for t in ts) for n, ts in times.items()}
        print(f"import torch: {wall['torch']:.2f} s wall, {cpu['torch']:.2f} s CPU (median)")
        for name, target in TARGETS.items():
            ratio = wall[name] / wall["torch"]
            verdict = "met" if ratio <= target else "MISSED"
            print(f"({'a' if name == 'image' else 'b'}) {' '.join(cmds[name][len(_aigc()):])}: {wall[name]:.2f} s "
                  f"wall, {cpu[name]:.2f} s CPU -> {ratio:.2f}x import torch (CPU {cpu[name] / cpu['torch']:.2f}x); "
                  f"target <= {target:.1f}x: {verdict}")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        if args.importtime:
            print("slowest imports of (a), cumulative (indented by nesting depth):")
            for us, depth, name in importtime(cmds["image"], env, work, top=15):
                print(f"  {us / 1e6:7.3f} s  {'  ' * depth}{name}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
