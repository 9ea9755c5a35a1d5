"""Kill saving processes with SIGKILL many times and check that every output is a whole save.

Each round starts a child that saves, over and over into the same names, a frame folder, a ``.txt`` with its
provenance sidecar and a JPEG whose record goes to a sidecar (aigc.testing.crash.save_forever), kills it with
``kill -9`` at a random moment, and checks that each output's data and record come from the same save.

Usage:
    python scripts/kill_saves.py --kills 200 --seed 1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from aigc.testing.crash import kill_during_saves


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="where to save (default: a temporary folder)")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        report = kill_during_saves(args.workdir or Path(tmp), kills=args.kills, seed=args.seed)
    print(f"{report.kills} kills in {time.perf_counter() - started:.1f} s; {report.generations} save generations")
    print(f"outputs checked after the kills: {report.checked}; inconsistent: {len(report.inconsistent)}")
    print(f"kills that interrupted a save (left a new .part behind): {report.mid_save}")
    print(f".part files after the last kill: {report.parts_left}; after they aged and one more save: "
          f"{report.parts_after_sweep}")
    for line in report.inconsistent:
        print("  inconsistent:", line)
    return 1 if report.inconsistent or report.parts_after_sweep else 0


if __name__ == "__main__":
    raise SystemExit(main())
