"""Latency measurement: warm-up, a timed loop, per-stage timers and robust statistics.

Conventions (the same as trtexec where it has one):

* Warm-up runs until *both* ``warmup_s`` has passed *and* ``min_warmup`` calls were made, so a
  slow model still gets a few calls and a fast one still gets its clocks and caches warm.
* The timed loop reads ``time.perf_counter_ns`` around each call. Asynchronous work (CUDA) is
  only finished when ``sync`` returns, so callers pass ``torch.cuda.synchronize`` (host view,
  includes launch overhead) or a :class:`CudaEventTimer` (device view, GPU time only).
* FPS is ``1000 / mean latency``: sequential single-stream throughput, batch 1.
* The 95 % confidence interval of the mean is a percentile bootstrap (seeded, vectorised), so
  two runs can be compared without assuming normal latencies; outliers are counted with
  Tukey's fences (beyond 1.5 IQR from the quartiles).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from edgeseg.errors import EdgesegError, MissingDependencyError

__all__ = [
    "CudaEventTimer",
    "LatencyStats",
    "PerfCounterTimer",
    "StageTimer",
    "Timer",
    "TimingResult",
    "cuda_event_timer",
    "time_callable",
]

# Bootstrap resamples; 2000 gives a CI stable to ~1 % of its width.
_N_BOOT = 2000
# Resampling is done in blocks of at most this many indices to bound memory for long runs.
_BOOT_BLOCK = 4_000_000


def _bootstrap_ci(x: np.ndarray, seed: int, n_boot: int) -> tuple[float, float]:
    n = x.size
    if n == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot, dtype=np.float64)
    step = max(1, _BOOT_BLOCK // n)
    for lo in range(0, n_boot, step):
        hi = min(n_boot, lo + step)
        idx = rng.integers(0, n, size=(hi - lo, n))
        means[lo:hi] = x[idx].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


@dataclass(frozen=True)
class LatencyStats:
    """Summary of per-call latencies in milliseconds.

    ``ci95_ms`` is the 95 % bootstrap confidence interval of the mean; ``fps`` is
    ``1000 / mean_ms``; ``outliers`` counts samples outside Tukey's fences.
    """

    n: int
    min_ms: float
    mean_ms: float
    std_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    ci95_ms: tuple[float, float]
    fps: float
    outliers: int

    @classmethod
    def from_samples(
        cls, ms: Sequence[float] | np.ndarray, seed: int = 0, n_boot: int = _N_BOOT
    ) -> LatencyStats:
        """Statistics of ``ms`` (one latency per call, milliseconds); deterministic for a seed."""
        x = np.asarray(ms, dtype=np.float64).ravel()
        if x.size == 0:
            raise EdgesegError("no latency samples to summarise (the timed loop ran 0 times)")
        if not np.all(np.isfinite(x)) or np.any(x < 0):
            raise EdgesegError("latency samples must be finite and non-negative milliseconds")
        p25, p50, p75, p90, p95, p99 = np.percentile(x, [25, 50, 75, 90, 95, 99])
        iqr = p75 - p25
        outliers = int(np.count_nonzero((x < p25 - 1.5 * iqr) | (x > p75 + 1.5 * iqr)))
        mean = float(x.mean())
        return cls(
            n=int(x.size),
            min_ms=float(x.min()),
            mean_ms=mean,
            std_ms=float(x.std(ddof=1)) if x.size > 1 else 0.0,
            p50_ms=float(p50),
            p90_ms=float(p90),
            p95_ms=float(p95),
            p99_ms=float(p99),
            max_ms=float(x.max()),
            ci95_ms=_bootstrap_ci(x, seed, n_boot),
            fps=1000.0 / mean if mean > 0 else float("inf"),
            outliers=outliers,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci95_ms"] = list(self.ci95_ms)
        return d


class Timer(Protocol):
    """Times one call: ``start()`` before it, ``stop()`` after it returns elapsed milliseconds."""

    def start(self) -> None: ...

    def stop(self) -> float: ...


class PerfCounterTimer:
    """Host wall-clock timer; ``sync`` (e.g. ``torch.cuda.synchronize``) runs before stopping."""

    def __init__(self, sync: Callable[[], Any] | None = None) -> None:
        self._sync = sync
        self._t0 = 0

    def start(self) -> None:
        self._t0 = time.perf_counter_ns()

    def stop(self) -> float:
        if self._sync is not None:
            self._sync()
        return (time.perf_counter_ns() - self._t0) / 1e6


class CudaEventTimer:
    """Device-side timer from a pair of CUDA events (GPU time of the work between them)."""

    def __init__(self, stream: Any = None) -> None:
        import torch

        self._torch = torch
        self._stream = stream
        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)

    def start(self) -> None:
        self._start.record(self._stream)

    def stop(self) -> float:
        self._end.record(self._stream)
        self._end.synchronize()
        return float(self._start.elapsed_time(self._end))


def cuda_event_timer(stream: Any = None) -> CudaEventTimer:
    """A :class:`CudaEventTimer` on ``stream`` (default: the current stream).

    Raises:
        MissingDependencyError: torch has no usable CUDA device.
    """
    try:
        import torch
    except ImportError as e:  # pragma: no cover - torch is a dependency
        raise MissingDependencyError("torch", "pip install torch") from e
    if not torch.cuda.is_available():
        raise MissingDependencyError("CUDA", "run on a machine with an NVIDIA GPU and CUDA torch")
    return CudaEventTimer(stream)


@dataclass
class TimingResult:
    """What :func:`time_callable` measured: raw samples, their statistics and the warm-up."""

    samples_ms: list[float]
    stats: LatencyStats
    warmup_iters: int
    warmup_s: float
    wall_s: float

    def to_dict(self, samples: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "stats": self.stats.to_dict(),
            "warmup_iters": self.warmup_iters,
            "warmup_s": self.warmup_s,
            "wall_s": self.wall_s,
        }
        if samples:
            d["samples_ms"] = list(self.samples_ms)
        return d


def time_callable(
    fn: Callable[[], Any],
    *,
    warmup_s: float = 0.2,
    min_warmup: int = 5,
    duration_s: float | None = None,
    iters: int | None = None,
    min_iters: int = 10,
    sync: Callable[[], Any] | None = None,
    timer: Timer | None = None,
    seed: int = 0,
) -> TimingResult:
    """Warm ``fn`` up, then time it call by call.

    Args:
        fn: the work of one frame, called without arguments.
        warmup_s, min_warmup: warm up until both this much time and this many calls passed.
        duration_s: time the loop for this long (and at least ``min_iters`` calls).
        iters: or time exactly this many calls. Give at most one of the two; neither means
            ``duration_s=3.0`` (trtexec's default).
        sync: called after every call, inside the timed region (``torch.cuda.synchronize``).
        timer: a :class:`Timer` to use instead (e.g. :func:`cuda_event_timer`); ``sync`` is
            then only used during warm-up.
        seed: bootstrap seed for the confidence interval.
    """
    if duration_s is not None and iters is not None:
        raise EdgesegError("give duration_s or iters, not both")
    if iters is not None and iters < 1:
        raise EdgesegError(f"iters must be >= 1, got {iters}")
    if duration_s is None and iters is None:
        duration_s = 3.0
    if warmup_s < 0 or min_warmup < 0:
        raise EdgesegError("warm-up time and count must be non-negative")
    clock = timer if timer is not None else PerfCounterTimer(sync)

    ns = time.perf_counter_ns
    t0 = ns()
    warm_deadline = t0 + int(warmup_s * 1e9)
    n_warm = 0
    while n_warm < min_warmup or ns() < warm_deadline:
        fn()
        if sync is not None:
            sync()
        n_warm += 1
    t_warm = ns()

    samples: list[float] = []
    append = samples.append
    if iters is not None:
        for _ in range(iters):
            clock.start()
            fn()
            append(clock.stop())
    else:
        assert duration_s is not None
        deadline = t_warm + int(duration_s * 1e9)
        while len(samples) < min_iters or ns() < deadline:
            clock.start()
            fn()
            append(clock.stop())
    t_end = ns()
    return TimingResult(
        samples_ms=samples,
        stats=LatencyStats.from_samples(samples, seed=seed),
        warmup_iters=n_warm,
        warmup_s=(t_warm - t0) / 1e9,
        wall_s=(t_end - t_warm) / 1e9,
    )


class _Stage:
    """Reusable context manager for one named stage (no allocation per use)."""

    __slots__ = ("_buf", "_sync", "_t0")

    def __init__(self, buf: list[int], sync: Callable[[], Any] | None) -> None:
        self._buf = buf
        self._sync = sync
        self._t0 = 0

    def __enter__(self) -> None:
        self._t0 = time.perf_counter_ns()

    def __exit__(self, *exc: object) -> None:
        if self._sync is not None:
            self._sync()
        self._buf.append(time.perf_counter_ns() - self._t0)


class StageTimer:
    """Times the stages of a frame (preprocess, inference, postprocess) and the whole frame.

    Published FPS often counts inference only; this keeps each stage and the end-to-end time
    so both can be reported. Overhead is two ``perf_counter_ns`` calls and a list append per
    stage (well under a microsecond)::

        st = StageTimer(sync=torch.cuda.synchronize)
        for frame in frames:
            with st.frame():
                with st.stage("preprocess"):
                    x = seg.preprocess(frame)
                with st.stage("inference"):
                    y = seg.infer(x)
                with st.stage("postprocess"):
                    labels = seg.postprocess(y, frame.shape[:2])
        st.stats()  # {"preprocess": LatencyStats, ..., "end_to_end": LatencyStats}

    ``sync`` runs at the end of each stage, so asynchronous GPU work is charged to the stage
    that launched it. Call :meth:`reset` after warm-up frames. A stage is not re-entrant: do
    not nest a stage inside itself.
    """

    END_TO_END = "end_to_end"

    def __init__(self, sync: Callable[[], Any] | None = None) -> None:
        self.sync = sync
        self._ns: dict[str, list[int]] = {}
        self._ctx: dict[str, _Stage] = {}

    def stage(self, name: str) -> _Stage:
        ctx = self._ctx.get(name)
        if ctx is None:
            buf = self._ns.setdefault(name, [])
            ctx = self._ctx[name] = _Stage(buf, self.sync)
        return ctx

    def frame(self) -> _Stage:
        """The end-to-end timer of one frame (wrap all its stages in it)."""
        return self.stage(self.END_TO_END)

    def add(self, name: str, ms: float) -> None:
        """Record a duration measured elsewhere (e.g. a CUDA event time)."""
        self._ns.setdefault(name, []).append(int(ms * 1e6))

    def reset(self) -> None:
        for buf in self._ns.values():
            buf.clear()

    def samples_ms(self) -> dict[str, list[float]]:
        return {k: [v / 1e6 for v in buf] for k, buf in self._ns.items() if buf}

    def stats(self, seed: int = 0) -> dict[str, LatencyStats]:
        return {k: LatencyStats.from_samples(v, seed=seed) for k, v in self.samples_ms().items()}
