"""A seeded fuzz of the public API (aigc.testing.fuzz) on a fixed budget, and the corpus of past failures.

Every call must return or raise an AigcError (a TypeError only for a path of the wrong type), within a per-call
timeout, without taking the process down. tests/data/fuzz_corpus.json keeps every call that once failed (the
issue-11 findings and what this fuzzer found), each with the error it must now raise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aigc.testing.fuzz import FuzzEnv, fuzz

CORPUS = Path(__file__).parent / "data" / "fuzz_corpus.json"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> FuzzEnv:
    return FuzzEnv.create(tmp_path_factory.mktemp("fuzz"))


def _corpus() -> list[dict[str, Any]]:
    return json.loads(CORPUS.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@pytest.mark.parametrize("case", _corpus(), ids=lambda case: case["issue"][:50])
def test_past_failures_stay_fixed(env: FuzzEnv, case: dict[str, Any]) -> None:
    report = fuzz(env, calls=0, cases=[case], timeout_s=30)
    assert report.failures == []
    assert report.errors == {case["expect"]: 1} if case["expect"] != "ok" else report.outcomes == {"ok": 1}


@pytest.mark.slow
def test_300_random_calls_fail_only_with_aigc_errors(env: FuzzEnv) -> None:
    before = sorted(p.name for p in Path.cwd().iterdir())
    report = fuzz(env, calls=300, seed=2024, timeout_s=30)
    assert sorted(p.name for p in Path.cwd().iterdir()) == before  # every file went under the fuzzer's folder
    assert report.calls == 300
    assert report.failures == []
    assert set(report.outcomes) <= {"ok", "aigc", "typeerror"}
    assert report.outcomes["ok"] >= 20 and report.outcomes["aigc"] >= 100  # the calls reach real work and errors
    assert set(report.calls_by_kind) == {"generate", "stream", "load", "replay", "save", "record", "to",
                                          "result"}
