"""Counters, gauges and histograms rendered in the Prometheus text format (version 0.0.4), for ``GET /metrics``.

A few dozen series do not need a client library: this module keeps them in dictionaries under one lock (the model
threads and the event loop both update them).

Example:
    >>> m = Metrics()
    >>> m.inc("aigc_requests_total", model="text-default", endpoint="chat", status="200")
    >>> "aigc_requests_total" in m.render()
    True
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

__all__ = ["Metrics"]

Labels = tuple[tuple[str, str], ...]

#: name -> (type, help)
SERIES: dict[str, tuple[str, str]] = {
    "aigc_requests_total": ("counter", "HTTP requests answered, by model, endpoint and status"),
    "aigc_rejected_total": ("counter", "requests refused before running (queue_full, timeout)"),
    "aigc_cancelled_total": ("counter", "requests cancelled while queued or running (client gone, timeout)"),
    "aigc_queue_depth": ("gauge", "requests waiting for their model"),
    "aigc_running_requests": ("gauge", "requests running on their model"),
    "aigc_batch_rows": ("gauge", "text rows in the latest decoding step"),
    "aigc_decode_steps_total": ("counter", "text decoding steps run (all rows of a step count once)"),
    "aigc_tokens_generated_total": ("counter", "text tokens generated"),
    "aigc_samples_generated_total": ("counter", "images, audio clips and videos generated"),
    "aigc_tokens_per_second": ("gauge", "text tokens generated per second over the last 10 s"),
    "aigc_samples_per_second": ("gauge", "images, clips or videos generated per second over the last 10 s"),
    "aigc_batch_size": ("histogram", "rows per text decoding step, samples per image/audio/video call"),
    "aigc_queue_wait_seconds": ("histogram", "time from arrival until the request started running"),
    "aigc_time_to_first_token_seconds": ("histogram", "text: time from arrival until the first token"),
    "aigc_request_duration_seconds": ("histogram", "time from arrival until the response was complete"),
}

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_BUCKETS = {"aigc_batch_size": _BATCH_BUCKETS}
_RATE_WINDOW_S = 10.0


@dataclass
class _Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def observe(self, value: float) -> None:
        if not self.counts:
            self.counts = [0] * len(self.buckets)
        i = bisect.bisect_left(self.buckets, value)
        if i < len(self.counts):
            self.counts[i] += 1
        self.total += value
        self.n += 1


class Metrics:
    """Thread-safe metric series, keyed by name and labels."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, Labels], float] = {}
        self._histograms: dict[tuple[str, Labels], _Histogram] = {}
        self._rates: dict[tuple[str, Labels], deque[tuple[float, float]]] = {}

    @staticmethod
    def _key(name: str, labels: dict[str, str]) -> tuple[str, Labels]:
        if name not in SERIES:
            raise KeyError(f"unknown metric {name!r}")
        return name, tuple(sorted(labels.items()))

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        key = self._key(name, labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + value

    def set(self, name: str, value: float, **labels: str) -> None:
        key = self._key(name, labels)
        with self._lock:
            self._values[key] = float(value)

    def get(self, name: str, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(name, labels), 0.0)

    def observe(self, name: str, value: float, **labels: str) -> None:
        key = self._key(name, labels)
        with self._lock:
            hist = self._histograms.get(key)
            if hist is None:
                hist = self._histograms[key] = _Histogram(_BUCKETS.get(name, _LATENCY_BUCKETS))
            hist.observe(value)

    def rate_add(self, name: str, value: float, **labels: str) -> None:
        """Count ``value`` towards the per-second gauge ``name`` (averaged over the last 10 s)."""
        key = self._key(name, labels)
        now = time.monotonic()
        with self._lock:
            window = self._rates.setdefault(key, deque())
            window.append((now, value))
            while window and window[0][0] < now - _RATE_WINDOW_S:
                window.popleft()

    def render(self) -> str:
        """All series in the Prometheus text format."""
        now = time.monotonic()
        with self._lock:
            values = dict(self._values)
            for key, window in self._rates.items():
                while window and window[0][0] < now - _RATE_WINDOW_S:
                    window.popleft()
                values[key] = sum(v for _, v in window) / _RATE_WINDOW_S
            hists = {k: (h.buckets, list(h.counts), h.total, h.n) for k, h in self._histograms.items()}
        lines: list[str] = []
        for name, (kind, help_text) in SERIES.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            if kind == "histogram":
                for (n, labels), (buckets, counts, total, count) in sorted(hists.items()):
                    if n != name:
                        continue
                    running = 0
                    for bound, c in zip(buckets, counts or [0] * len(buckets), strict=True):
                        running += c
                        lines.append(f"{name}_bucket{_labels(labels, le=_number(bound))} {running}")
                    lines.append(f"{name}_bucket{_labels(labels, le='+Inf')} {count}")
                    lines.append(f"{name}_sum{_labels(labels)} {_number(total)}")
                    lines.append(f"{name}_count{_labels(labels)} {count}")
                continue
            for (n, labels), value in sorted(values.items()):
                if n == name:
                    lines.append(f"{name}{_labels(labels)} {_number(value)}")
        return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, **extra: str) -> str:
    items = [*labels, *extra.items()]
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items) + "}"
