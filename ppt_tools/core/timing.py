# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Wall-clock and memory measurements: interleaved timing of several models, peak memory of one call.

Timings of the models being compared are *interleaved* (A B C, B C A, C A B, ...): each round times every model
once, in an order rotated every round, so slow drift of the machine (thermal throttling, other processes, frequency
scaling) and order effects (which model ran just before) affect all of them alike.

Every timing carries its noise verdict (`TimingStats.noise`): a figure is *noisy* when its rounds spread too far
(interquartile range over the median above `SPREAD_LIMIT`; with two rounds, max - min over the median; a single
round has no spread and is noisy), or when the machine was busy: the 1-minute load average read before or after the rounds, less what the
measured threads themselves add, left fewer free CPUs than the measurement used (`LOAD_SLACK` of leeway). A noisy
figure is still reported, marked, with its reasons; a ratio of two timings is noisy when either is.
"""

from __future__ import annotations

import os
import statistics
import time
import weakref
from dataclasses import asdict, dataclass, field
from collections.abc import Mapping
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from tqdm.auto import tqdm


SPREAD_LIMIT = 0.10  # rounds whose relative spread exceeds this do not give one figure
LOAD_SLACK = 0.5  # load average above the free CPUs, tolerated (the 1-minute average lags and jitters)


def load_average() -> float | None:
    """The 1-minute load average (runnable processes), or None where the OS has none (Windows)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def busy_reason(load_before: float | None, load_after: float | None, threads: int | None,
                cpus: int | None) -> str | None:
    """Why the machine was too busy for a timing with `threads` threads on `cpus` CPUs, or None. The reading after
    the rounds includes the measurement's own threads: all `threads` are taken off it, so that it can only add a
    verdict the reading before missed (load that started during the rounds), never blame the measurement itself."""
    if threads is None or cpus is None:
        return None
    others = [load for load in (load_before, None if load_after is None else load_after - threads) if load is not None]
    if not others or max(others) <= cpus - threads + LOAD_SLACK:
        return None
    return (f"machine busy: load average {max(others):.2f} besides the measurement, with {threads} thread(s) on "
            f"{cpus} CPUs")


def noise_of(timings: Mapping[str, "TimingStats | Mapping"]) -> list[str]:
    """The noise reasons of several named timings (`TimingStats` or their `to_dict()`), each reason once with the
    names it applies to: a figure computed from them (a ratio) is noisy when this is not empty."""
    names_by_reason: dict[str, list[str]] = {}
    for name, timing in timings.items():
        found = timing.noise if isinstance(timing, TimingStats) else (timing or {}).get("noise") or []
        for reason in found:
            names_by_reason.setdefault(reason, []).append(name)
    return [f"{', '.join(names)}: {reason}" for reason, names in names_by_reason.items()]


@dataclass
class TimingStats:
    """Throughput of one model over the timed rounds (each round: `iterations` calls on a batch of `batch_size`),
    with what the noise verdict needs: the threads used, the CPUs, and the load average before and after."""

    batch_size: int
    iterations: int
    images_per_second: list[float] = field(default_factory=list)
    threads: int | None = None
    cpus: int | None = None
    load_before: float | None = None
    load_after: float | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.images_per_second)

    @property
    def minimum(self) -> float:
        return min(self.images_per_second)

    @property
    def maximum(self) -> float:
        return max(self.images_per_second)

    @property
    def iqr(self) -> tuple[float, float]:
        """25th and 75th percentile (inclusive method; equals min/max for fewer than 3 rounds)."""
        values = sorted(self.images_per_second)
        if len(values) < 3:
            return values[0], values[-1]
        quartiles = statistics.quantiles(values, n=4, method="inclusive")
        return quartiles[0], quartiles[2]

    @property
    def median_latency_ms(self) -> float:
        """Median time of one call (one batch), in milliseconds."""
        return 1000.0 * self.batch_size / self.median

    @property
    def latency_range_ms(self) -> list[float]:
        """The fastest and the slowest round's time of one call (one batch), in milliseconds."""
        return [1000.0 * self.batch_size / self.maximum, 1000.0 * self.batch_size / self.minimum]

    @property
    def spread(self) -> float:
        """(q3 - q1) / median of the rounds' images/s: 0 for identical rounds (and for a single round)."""
        q1, q3 = self.iqr
        return (q3 - q1) / self.median

    @property
    def noise(self) -> list[str]:
        """Why this figure is noisy (empty: it is not); see the module doc."""
        reasons = []
        if len(self.images_per_second) < 2:
            reasons.append("a single round: its spread is unknown")
        elif self.spread > SPREAD_LIMIT:
            reasons.append(f"rounds spread {100 * self.spread:.0f}% of the median (over {100 * SPREAD_LIMIT:.0f}%)")
        busy = busy_reason(self.load_before, self.load_after, self.threads, self.cpus)
        if busy:
            reasons.append(busy)
        return reasons

    @property
    def noisy(self) -> bool:
        return bool(self.noise)

    def to_dict(self) -> dict:
        data = asdict(self)
        q1, q3 = self.iqr
        data.update(
            median=self.median, min=self.minimum, max=self.maximum, q1=q1, q3=q3, median_latency_ms=self.median_latency_ms,
            spread=self.spread, noisy=self.noisy, noise=self.noise,
        )
        return data


def synchronize(device: torch.device | str) -> None:
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    steps: dict[str, Callable[[], object]],
    batch_size: int,
    device: torch.device | str = "cpu",
    warmup: int = 2,
    rounds: int = 5,
    iterations: int = 1,
    progress: bool = True,
    description: str = "timing",
    settle_seconds: float = 0.0,
    threads: int | None = None,
) -> dict[str, TimingStats]:
    """Time several zero-argument callables (each processes one batch of `batch_size` images), interleaved.

    Args:
        steps: name -> callable running one batch (a forward, or a training step).
        batch_size: images per call, to turn seconds into images/s.
        warmup: untimed calls per model first (allocator warm-up, oneDNN / cuDNN autotuning, torch.compile).
        rounds: timed rounds; in each round every model runs `iterations` calls, in turn.
        iterations: calls per timed measurement.
        settle_seconds: an untimed pause before each measurement, for the threads of the step before to go idle
            (ONNX Runtime's threads spin for a while after a run, on the cores the next step needs).
        threads: threads the steps run on, for the load verdict (default: torch's intra-op threads).

    Returns:
        name -> `TimingStats` (images/s of every round, the load average before and after the rounds).
    """
    if rounds < 1 or iterations < 1 or warmup < 0:
        raise ValueError(f"need rounds >= 1, iterations >= 1, warmup >= 0; got {rounds}, {iterations}, {warmup}")
    threads = threads or torch.get_num_threads()
    load_before = load_average()  # before the warm-up, which adds this process's own load
    for _ in range(warmup):
        for step in steps.values():
            step()
    synchronize(device)
    results = {name: TimingStats(batch_size, iterations, threads=threads, cpus=os.cpu_count(), load_before=load_before)
               for name in steps}
    names = list(steps)
    for round_index in tqdm(range(rounds), desc=description, disable=not progress, leave=False):
        # Rotate the order every round: with a fixed order, each model always runs right after the same other
        # model (its caches, allocator state, clock), which biased the first model by ~3% in measurements here.
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            step = steps[name]
            synchronize(device)
            if settle_seconds:
                time.sleep(settle_seconds)
            start = time.perf_counter()
            for _ in range(iterations):
                step()
            synchronize(device)
            elapsed = time.perf_counter() - start
            results[name].images_per_second.append(batch_size * iterations / elapsed)
    load_after = load_average()
    for stats in results.values():
        stats.load_after = load_after
    return results


# ---------------------------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------------------------


class TensorMemoryTracker(TorchDispatchMode):
    """Peak bytes of tensor storages created inside the context and still alive, via the dispatcher.

    Every op output's storage is counted when it first appears and uncounted when it is freed (weakref on the
    storage). This is the CPU analogue of CUDA's `max_memory_allocated() - memory_allocated()` at entry: activations,
    saved tensors, gradients and optimizer state created inside; not the scratch buffers kernels allocate
    internally, nor allocator caching / fragmentation (so it is a lower bound on the process's RSS growth).
    """

    def __init__(self):
        super().__init__()
        self.current = 0
        self.peak = 0
        self._seen: set[int] = set()
        self._refs: list = []

    def _release(self, key: int, nbytes: int) -> None:
        self._seen.discard(key)
        self.current -= nbytes

    def _track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key in self._seen or storage.nbytes() == 0:
            return
        nbytes = storage.nbytes()
        try:
            self._refs.append(weakref.ref(storage, lambda _, key=key, n=nbytes: self._release(key, n)))
        except TypeError:  # storage not weak-referenceable: count it as live until the end (conservative)
            pass
        self._seen.add(key)
        self.current += nbytes
        self.peak = max(self.peak, self.current)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for item in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(item, torch.Tensor) and item.device.type != "meta":
                self._track(item)
        return out


@dataclass
class MemoryMeasurement:
    peak_bytes: int
    method: str

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / 2**20


CPU_MEMORY_METHOD = (
    "peak bytes of tensor storages allocated during one call (TorchDispatchMode storage accounting; excludes "
    "kernel scratch buffers and allocator caching)"
)
CUDA_MEMORY_METHOD = "torch.cuda.max_memory_allocated() during one call, minus memory allocated before it"


def peak_memory(step: Callable[[], object], device: torch.device | str = "cpu", prime: bool = True) -> MemoryMeasurement:
    """Peak extra memory of one call of `step`. With `prime`, `step` runs once beforehand so that lazy state
    (optimizer buffers, compiled graphs) exists and is not counted; pass `prime=False` if it already ran."""
    device = torch.device(device)
    if prime:
        step()
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        synchronize(device)
        return MemoryMeasurement(torch.cuda.max_memory_allocated(device) - before, CUDA_MEMORY_METHOD)
    tracker = TensorMemoryTracker()
    with tracker:
        step()
    return MemoryMeasurement(tracker.peak, CPU_MEMORY_METHOD)


# ---------------------------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------------------------


def inference_step(model: torch.nn.Module, pixel_values: torch.Tensor) -> Callable[[], object]:
    """One forward pass without autograd."""

    def step():
        with torch.inference_mode():
            return model(pixel_values).logits

    return step


__all__ = [
    "LOAD_SLACK",
    "MemoryMeasurement",
    "SPREAD_LIMIT",
    "TensorMemoryTracker",
    "TimingStats",
    "busy_reason",
    "inference_step",
    "load_average",
    "noise_of",
    "peak_memory",
    "synchronize",
    "time_interleaved",
]
