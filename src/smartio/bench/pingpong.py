"""Pieces shared by the benchmarks: the 8-byte ping-pong loop and latency statistics."""

from __future__ import annotations

import statistics
import time


def ping(q: memoryview, rounds: int) -> list[int]:
    """The pinger's side: store ``i`` in word 0, spin until the partner echoes it in word
    8; returns each round trip in nanoseconds (a ``'Q'`` view of a mapped page)."""
    samples = []
    clock = time.perf_counter_ns
    for i in range(1, rounds + 1):
        t0 = clock()
        q[0] = i
        while q[8] != i:
            pass
        samples.append(clock() - t0)
    return samples


def pong(q: memoryview, rounds: int) -> None:
    """The partner's side: wait for each ``i`` in word 0 and echo it in word 8."""
    for i in range(1, rounds + 1):
        while q[0] != i:
            pass
        q[8] = i


def stats(ns: list[int]) -> dict[str, float]:
    """Median, p99 and mean (µs) of nanosecond samples."""
    s = sorted(ns)
    return {"median_us": statistics.median(s) / 1000, "p99_us": s[int(len(s) * 0.99)] / 1000,
            "mean_us": statistics.fmean(s) / 1000, "n": len(s)}


__all__ = ["ping", "pong", "stats"]
