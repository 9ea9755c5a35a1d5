"""Fuzz aigc's public API outside CI: many seeded malformed calls, with counts of what happened.

Every call must return or raise an ``AigcError`` (a ``TypeError`` only for a path argument of the wrong type),
within the per-call timeout. Failing cases are printed as JSON, ready for ``tests/data/fuzz_corpus.json``.

Usage:
    OMP_NUM_THREADS=2 python scripts/fuzz_api.py --calls 1000 --seed 1
    OMP_NUM_THREADS=2 python scripts/fuzz_api.py --calls 5000 --seed 7 --failures failures.json
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import warnings
from pathlib import Path

from aigc.testing.fuzz import FuzzEnv, fuzz


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds one call may take")
    parser.add_argument("--workdir", type=Path, help="where models and files go (default: a temporary folder)")
    parser.add_argument("--failures", type=Path, help="write the failing cases here as JSON")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the libraries' own warnings about bad input are expected here
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        env = FuzzEnv.create(args.workdir or Path(tmp))
        report = fuzz(env, calls=args.calls, seed=args.seed, timeout_s=args.timeout)
    print(f"{report.calls} calls in {report.seconds:.1f} s (seed {args.seed})")
    print("outcomes:", dict(sorted(report.outcomes.items())))
    print("by call: ", dict(sorted(report.calls_by_kind.items())))
    print("errors:  ", dict(sorted(report.errors.items())))
    non_aigc = report.outcomes["fail"] + report.outcomes["timeout"]
    print(f"failures (not an AigcError, not a path TypeError, or a timeout): {non_aigc}")
    for case, outcome in report.failures:
        print(json.dumps(case, ensure_ascii=False)[:500], "->", outcome.status, outcome.error, outcome.message[:200])
    if args.failures is not None:
        args.failures.write_text(json.dumps([case for case, _ in report.failures], ensure_ascii=False, indent=1))
    return 1 if non_aigc else 0


if __name__ == "__main__":
    raise SystemExit(main())
