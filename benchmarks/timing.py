"""Timing the benchmarks share: medians of interleaved rounds, after a warm-up.

Interleaving (one run of each function per round) spreads the machine's changing load over
all of them alike, so their ratios hold better than their absolute times.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def seconds(function: Callable[[], object], device: torch.device | None = None) -> float:
    """Wall time of one call (waiting for CUDA work to finish)."""
    cuda = device is not None and device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    function()
    if cuda:
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def interleaved_seconds(
    runs: dict[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int = 1,
    device: torch.device | None = None,
) -> dict[str, list[float]]:
    """Each function's times over ``repeats`` rounds, one call of every function per round,
    after ``warmup`` untimed rounds."""
    for _ in range(warmup):
        for function in runs.values():
            function()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, function in runs.items():
            times[name].append(seconds(function, device))
    return times


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in times.items()}
