"""Throughput and latency at several request concurrencies, like Triton's perf_analyzer.

For each concurrency C, C client threads each hold their own segmenter (their own connection)
and send frames back to back for a fixed time after a warm-up: throughput is the requests
completed inside that window per second; latency is per request (client send to mask
received) of those requests. Requests are bounded by time and count. Threads are right here: each client waits on the server almost
all the time (the GIL is released in socket I/O).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edgeseg.errors import EdgesegError

__all__ = ["bench_triton", "measure_concurrency", "parse_levels"]

Call = Callable[[np.ndarray], Any]


def parse_levels(text: str) -> list[int]:
    """``"1,2,4,8"`` -> [1, 2, 4, 8] (each 1..64)."""
    try:
        levels = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise EdgesegError(f"--concurrency {text}: expected integers like 1,2,4,8") from None
    if not levels or any(not 1 <= v <= 64 for v in levels):
        raise EdgesegError(f"--concurrency {text}: expected integers in 1..64 like 1,2,4,8")
    return levels


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def measure_concurrency(
    make_call: Callable[[], Call],
    frames: Sequence[np.ndarray],
    levels: Sequence[int],
    *,
    duration_s: float = 5.0,
    warmup_s: float = 1.0,
    max_requests: int = 100_000,
    step: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """One row per concurrency: requests, throughput_fps, latency_ms {mean, p50, p90, p99}.

    Args:
        make_call: builds one client's callable (frame -> mask); called once in each client
            thread, since clients such as tritonclient.http's may only be used by the thread
            that made them.
        frames: frames the clients cycle through.
        levels: concurrencies.
        duration_s, warmup_s: measured window and warm-up per level. The warm-up is bounded by
            time alone; the window closes at ``duration_s`` or at the request that reaches
            ``max_requests``, whichever comes first, and throughput is over the window as run.
        max_requests: cap on requests counted per level, all threads together.
    """
    if not frames:
        raise EdgesegError("no frames to send")
    if max_requests < 1:
        raise EdgesegError(f"max_requests {max_requests}: expected at least 1")
    say = step or (lambda _m: None)
    rows = []
    for c in levels:
        say(f"concurrency {c}")
        lat, window = _run_level(make_call, c, frames, warmup_s, duration_s, max_requests)
        rows.append({
            "concurrency": c,
            "requests": len(lat),
            "window_s": window,
            "throughput_fps": len(lat) / window if window > 0 else 0.0,
            "latency_ms": {
                "mean": float(np.mean(lat) * 1e3) if lat else float("nan"),
                "p50": _percentile(lat, 50) * 1e3,
                "p90": _percentile(lat, 90) * 1e3,
                "p99": _percentile(lat, 99) * 1e3,
            },
        })
    return rows


class _Window:
    """The measured window of one level, shared by its client threads.

    A request counts when it completes inside [start, end]; the one that makes the count reach
    the cap closes the window there, so a fast server neither spends the cap in the warm-up
    nor divides its count by a window it did not run.
    """

    def __init__(self, start: float, duration_s: float, cap: int) -> None:
        self.start, self.end, self.cap = start, start + duration_s, cap
        self.latencies: list[float] = []
        self._lock = threading.Lock()

    def open(self, now: float) -> bool:
        return now < self.end

    def record(self, t0: float, t1: float) -> None:
        with self._lock:
            if not self.start <= t1 <= self.end or len(self.latencies) >= self.cap:
                return
            self.latencies.append(t1 - t0)
            if len(self.latencies) >= self.cap:
                self.end = t1

    def length(self) -> float:
        return self.end - self.start


def _run_level(
    make_call: Callable[[], Call], c: int, frames: Sequence[np.ndarray], warmup_s: float,
    duration_s: float, max_requests: int,
) -> tuple[list[float], float]:
    """Latencies (s) of the requests completed inside the window, and the window's length."""
    errors: list[BaseException] = []
    box: dict[str, _Window] = {}

    def start_clock() -> None:  # run once every client is built (connections open)
        box["window"] = _Window(time.perf_counter() + warmup_s, duration_s, max_requests)

    ready = threading.Barrier(c + 1, action=start_clock)

    def client(k: int) -> None:
        call: Call | None = None
        try:
            call = make_call()
        except BaseException as e:  # noqa: BLE001 - reported after the threads join
            errors.append(e)
        try:
            ready.wait()
        except threading.BrokenBarrierError:
            return
        try:
            window, i = box["window"], k
            while call is not None and not errors:
                t0 = time.perf_counter()
                if not window.open(t0):
                    return
                call(frames[i % len(frames)])
                # Completions inside the window count (whenever they started): on a slow
                # server a request can outlast the warm-up.
                window.record(t0, time.perf_counter())
                i += 1
        except BaseException as e:  # noqa: BLE001 - reported after the threads join
            errors.append(e)
        finally:
            close = getattr(call, "close", None)
            if callable(close):
                close()

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(c)]
    for t in threads:
        t.start()
    try:
        ready.wait(timeout=120.0)
    except threading.BrokenBarrierError:
        errors.append(TimeoutError("the clients were not ready within 120 s"))
    for t in threads:
        t.join(warmup_s + duration_s + 120.0)
    if errors:
        raise EdgesegError(f"concurrency {c}: a client failed: {errors[0]}")
    window = box["window"]
    return list(window.latencies), window.length()


# `bench --backend triton` defaults (None in the library call means these)
TRITON_DURATION_S = 5.0
TRITON_WARMUP_S = 1.0
TRITON_MAX_REQUESTS = 100_000


def bench_triton(
    url: str | None = None,
    *,
    model: str | None = None,
    levels: Sequence[int] | str = (1,),
    frame_hw: tuple[int, int] | None = None,
    duration_s: float | None = None,
    warmup_s: float | None = None,
    max_requests: int | None = None,
    token: str | None = None,
    step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """`edgeseg bench --backend triton --concurrency ...`: one row per concurrency for a model
    on a Triton server, sent synthetic street scenes (frame size default: the model's input).

    ``url`` defaults to the Triton backend's (localhost:8001), ``levels`` may be the
    ``--concurrency`` text ("1,2,4"); a None duration, warm-up or cap takes ``TRITON_*``."""
    from edgeseg.runtime.triton_backend import DEFAULT_URL, TritonSegmenter

    url = url or DEFAULT_URL
    levels = parse_levels(levels) if isinstance(levels, str) else list(levels)
    duration_s = TRITON_DURATION_S if duration_s is None else duration_s
    warmup_s = TRITON_WARMUP_S if warmup_s is None else warmup_s
    max_requests = TRITON_MAX_REQUESTS if max_requests is None else max_requests
    probe = TritonSegmenter(url, model=model, token=token)
    try:
        h, w = frame_hw or probe.meta.input_hw
        try:
            from edgeseg.data.synthetic import generate_scene
        except ImportError:  # pragma: no cover - the generator ships with edgeseg
            rng0 = np.random.default_rng(0)
            frames = [rng0.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(4)]
        else:
            rng = np.random.default_rng(0)
            frames = [np.ascontiguousarray(generate_scene(rng, h, w)[0][:, :, ::-1])
                      for _ in range(4)]
        rows = measure_concurrency(
            lambda: TritonSegmenter(url, model=probe.model, protocol=probe.protocol, token=token),
            frames, levels, duration_s=duration_s, warmup_s=warmup_s, max_requests=max_requests,
            step=step,
        )
        described = probe.describe()
    finally:
        probe.close()
    return {"backend": "triton", **described, "frame_hw": [h, w], "input_hw": list(
        probe.meta.input_hw), "duration_s": duration_s, "warmup_s": warmup_s,
        "concurrency": rows, "variant": probe.meta.variant}
