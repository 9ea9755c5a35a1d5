"""Load on ``aigc serve``: N concurrent streaming clients against the same requests run one by one.

The server runs in its own process (``aigc serve``, started by this script on a free loopback port), so the
clients' work does not share its interpreter; the clients are ``openai.AsyncOpenAI`` streams on one event loop in
this process. Every request asks for exactly ``--max-tokens`` tokens (``min_tokens`` equal to ``max_tokens``, so
no request stops early) and counts them from the response's ``usage``.

For each model and each N in ``--clients`` (default 1, 4, 16, 64), every client sends ``--requests`` requests one
after another (a closed loop); the baseline sends ``--sequential`` requests one at a time. Each case runs
``--repeats`` times (default 3) and the run with the median aggregate rate is reported. Reported per case:
    aggregate tokens/s    all completion tokens / the case's wall-clock time
    speed-up              aggregate tokens/s / the baseline's
    TTFT p50 / p99        time from sending a request to its first text chunk
    per-token p50 / p99   time between consecutive text chunks of one request (pooled over all requests)
    load                  the machine's 1-minute load average before and after the case (other processes count)

Models (``--models``):
    embedded   the embedded default text model (character-level GPT-2, 2.9M parameters)
    gpt2-6l    a random GPT-2: 6 layers, width 384, 6 heads, 1024 positions (11M parameters), built here with a
               fixed seed; aigc.testing's byte-level BPE tokenizer

Targets on a 2-core CPU: 16 clients >= 4x the sequential aggregate throughput, p99 TTFT < 2 s.

Run:  python benchmarks/serve_load.py                      # both models, 1/4/16/64 clients (a few minutes)
      python benchmarks/serve_load.py --models gpt2-6l --clients 16 --device cuda
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROMPTS = ["Once upon a time", "The quick brown fox", "To be, or not to be", "Shall I compare thee to a summer's day",
           "Hello world! How are you", "The dog sleeps in the sun and", "It was the best of times", "And then"]


@dataclass
class Sample:
    tokens: int
    ttft: float
    gaps: list[float] = field(default_factory=list)


@dataclass
class Case:
    name: str
    clients: int
    requests: int
    tokens: int
    seconds: float
    ttft: list[float]
    gaps: list[float]
    load: tuple[float, float]

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def build_gpt2(path: Path) -> Path:
    """The random 6-layer GPT-2 (fixed seed), saved with save_pretrained."""
    import torch
    import transformers

    from aigc.testing import tiny_tokenizer

    tokenizer = tiny_tokenizer(path, vocab_size=541)
    config = transformers.GPT2Config(n_embd=384, n_layer=6, n_head=6, n_positions=1024, vocab_size=len(tokenizer),
                                     pad_token_id=0, eos_token_id=1, bos_token_id=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = transformers.GPT2LMHeadModel(config).eval()
    model.save_pretrained(path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model: str, port: int, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    spec = f"text={model},id=bench,device={args.device}" + (f",dtype={args.dtype}" if args.dtype else "")
    cmd = [sys.executable, "-m", "aigc", "serve", spec, "--port", str(port), "--max-queue", "1024",
           "--max-concurrent", "256", "--max-batch-rows", str(args.max_rows), "--log-level", "warning"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.Popen(cmd)
    deadline = time.monotonic() + 300
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"the server did not start (exit code {proc.poll()})")
        time.sleep(0.2)


async def one_request(client: Any, prompt: str, seed: int, max_tokens: int) -> Sample:
    started = time.perf_counter()
    first: float | None = None
    last = started
    gaps: list[float] = []
    tokens = 0
    stream = await client.completions.create(model="bench", prompt=prompt, seed=seed, max_tokens=max_tokens,
                                             stream=True, stream_options={"include_usage": True},
                                             extra_body={"min_tokens": max_tokens})
    async for chunk in stream:
        now = time.perf_counter()
        if chunk.choices and chunk.choices[0].text:
            if first is None:
                first = now
            else:
                gaps.append(now - last)
            last = now
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    return Sample(tokens=tokens, ttft=(first or last) - started, gaps=gaps)


async def run_case(base_url: str, name: str, clients: int, requests: int, max_tokens: int, seed0: int) -> Case:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600)
    samples: list[Sample] = []

    async def loop(c: int) -> None:
        for r in range(requests):
            i = c * requests + r
            samples.append(await one_request(client, PROMPTS[i % len(PROMPTS)], seed0 + i, max_tokens))

    load0 = os.getloadavg()[0]
    started = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in range(clients)))
    seconds = time.perf_counter() - started
    await client.close()
    return Case(name=name, clients=clients, requests=len(samples), tokens=sum(s.tokens for s in samples),
                seconds=seconds, ttft=[s.ttft for s in samples], gaps=[g for s in samples for g in s.gaps],
                load=(load0, os.getloadavg()[0]))


def report(model: str, cases: list[Case]) -> list[dict[str, Any]]:
    base = cases[0].rate
    rows = []
    print(f"\n### {model}\n")
    print("| Case | Requests | Tokens | Seconds | Aggregate tok/s | Speed-up | TTFT p50 | TTFT p99 | "
          "per-token p50 | per-token p99 | Load (before-after) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for case in cases:
        row = {"model": model, "case": case.name, "clients": case.clients, "requests": case.requests,
               "tokens": case.tokens, "seconds": round(case.seconds, 3), "tokens_per_s": round(case.rate, 1),
               "speedup": round(case.rate / base, 2), "ttft_p50_s": round(_pct(case.ttft, 50), 4),
               "ttft_p99_s": round(_pct(case.ttft, 99), 4), "token_p50_ms": round(1000 * _pct(case.gaps, 50), 2),
               "token_p99_ms": round(1000 * _pct(case.gaps, 99), 2), "load": [round(x, 2) for x in case.load]}
        rows.append(row)
        print(f"| {case.name} | {case.requests} | {case.tokens} | {case.seconds:.1f} | {case.rate:.1f} | "
              f"{case.rate / base:.2f}x | {_pct(case.ttft, 50):.3f} s | {_pct(case.ttft, 99):.3f} s | "
              f"{1000 * _pct(case.gaps, 50):.1f} ms | {1000 * _pct(case.gaps, 99):.1f} ms | "
              f"{case.load[0]:.2f}-{case.load[1]:.2f} |")
    by_clients = {c.clients: c for c in cases[1:]}
    if 16 in by_clients:
        c16 = by_clients[16]
        ok = c16.rate >= 4 * base and _pct(c16.ttft, 99) < 2.0
        print(f"\ntarget (16 clients >= 4x sequential, p99 TTFT < 2 s): {c16.rate / base:.2f}x, "
              f"p99 TTFT {_pct(c16.ttft, 99):.3f} s -> {'met' if ok else 'MISSED'}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["embedded", "gpt2-6l"], choices=["embedded", "gpt2-6l"])
    parser.add_argument("--clients", nargs="+", type=int, default=[1, 4, 16, 64])
    parser.add_argument("--requests", type=int, default=4, help="requests per client (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each case; the median counts (default 3)")
    parser.add_argument("--sequential", type=int, default=8, help="requests in the one-by-one baseline (default 8)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--max-rows", type=int, default=64, help="the server's --max-batch-rows")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--threads", type=int, default=1, help="the server's torch threads (default 1: on a 2-core "
                        "machine the clients need the other core; 0: torch's choice)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()

    import torch

    print(f"# aigc serve load, {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}"
          f", device {args.device}, load average {os.getloadavg()}")
    if args.device.startswith("cuda") and torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name(0)}")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            path = "default" if model == "embedded" else str(build_gpt2(Path(tmp) / "gpt2-6l"))
            port = free_port()
            server = start_server(path, port, args)
            base_url = f"http://127.0.0.1:{port}/v1"
            try:
                asyncio.run(run_case(base_url, "warm-up", 2, 1, 8, 10_000))
                plan = [("sequential", 1, args.sequential, 0)] + [
                    (f"{n} clients", n, args.requests, 1000 * n) for n in args.clients]
                cases = []
                for name, n, requests, seed0 in plan:  # each case --repeats times; the run of median rate counts
                    runs = [asyncio.run(run_case(base_url, name, n, requests, args.max_tokens, seed0))
                            for _ in range(args.repeats)]
                    cases.append(sorted(runs, key=lambda c: c.rate)[len(runs) // 2])
                rows += report(model, cases)
            finally:
                server.terminate()
                server.wait(30)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    print(f"\nload average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
