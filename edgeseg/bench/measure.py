"""Timing configurations: interleaved rounds, the measurement's own overhead, timed results.

A :class:`_Run` holds one opened configuration and everything measured for it across rounds
(inference loop, staged loop, power windows, the power sampler's CPU time); :func:`_measure`
times every run in ``n_rounds`` interleaved rounds and :func:`_fill_timing` turns a run into
the timing fields of its result. :func:`measure_overhead` is the cost of the timer itself.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeseg.bench.configs import BenchConfig, Step, _device_of
from edgeseg.bench.cost import (
    _cost_for,
    _measured_for,
    _result_skeleton,
    _roof_profile,
    measure_dram_gbs,
    needs_int8_peak,
    with_measurement,
)
from edgeseg.bench.environment import _is_jetson, _reset_peak_rss, _threads_info, machine
from edgeseg.bench.sources import _Source

__all__ = ["measure_overhead"]

ROUND_WARMUP_S = 0.25  # re-warm-up at the start of rounds after the first (and >= 1 call)
MIN_ITERS = 10  # timed calls per configuration at least (percentiles need a few)
_DEFAULT_WARMUP_S, _DEFAULT_DURATION_S = 1.0, 3.0  # without a profile


def _cuda_sync_and_timer(seg: Any) -> tuple[Callable[[], Any] | None, Any, str]:
    """(sync, timer factory, timer name) for the segmenter's device."""
    device = getattr(seg, "device", None)
    on_cuda = getattr(device, "type", None) == "cuda" or seg.backend == "tensorrt"
    if not on_cuda:
        return None, None, "perf_counter (host)"
    import torch

    from edgeseg.bench.timing import cuda_event_timer

    stream = getattr(seg, "stream", None)  # TensorRT's own stream; torch: the current one
    return torch.cuda.synchronize, (lambda: cuda_event_timer(stream)), "cuda events (device)"


def _thread_cpu_s(ident: int | None) -> float | None:
    if ident is None:
        return None
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(ident))
    except (AttributeError, OSError, ProcessLookupError):
        return None


@contextlib.contextmanager
def _sampler_cpu(sampler: Any, out: list[float]) -> Iterator[None]:
    """Inside an entered sampler: append the CPU seconds its thread used during the block."""
    prefix = f"power-{sampler.name}"
    thread = next((t for t in threading.enumerate() if t.name == prefix and t.is_alive()), None)
    ident = thread.ident if thread is not None else None
    t0 = _thread_cpu_s(ident)
    try:
        yield
    finally:
        t1 = _thread_cpu_s(ident)
        if t0 is not None and t1 is not None:
            out.append(t1 - t0)


@dataclass
class _Run:
    """Everything measured for one configuration across rounds."""

    config: BenchConfig
    hw: tuple[int, int]
    seg: Any
    frame: np.ndarray
    batch: np.ndarray
    sync: Callable[[], Any] | None
    timer_factory: Any
    timer_name: str
    infer_ms: list[float] = field(default_factory=list)
    round_means: list[float] = field(default_factory=list)
    stages: Any = None  # StageTimer
    warmup_iters: int = 0
    warmup_s: float = 0.0
    window_s: float = 0.0
    sampler_cpu_s: list[float] = field(default_factory=list)
    power: list[Any] = field(default_factory=list)  # PowerResult per round
    reference: list[dict[str, Any]] = field(default_factory=list)  # matmul just before each round
    load_1m: list[float | None] = field(default_factory=list)  # load average before each round

    def warm_e2e(self) -> None:
        x = self.seg.preprocess(self.frame)
        self.seg.postprocess(self.seg.infer(x), self.frame.shape[:2])
        if self.sync is not None:
            self.sync()

    def time_round(
        self, *, first: bool, warmup_s: float, min_warmup: int, duration_s: float | None,
        iters: int | None, min_iters: int, sampler: Any, seed: int,
    ) -> None:
        from edgeseg.bench.timing import StageTimer, time_callable

        seg, batch, frame = self.seg, self.batch, self.frame
        infer = seg.infer

        def one() -> Any:
            return infer(batch)

        cpu: list[float] = []
        with sampler, _sampler_cpu(sampler, cpu):
            t0 = time.perf_counter()
            res = time_callable(
                one,
                # later rounds re-warm briefly: caches, and the thread pool of the previous
                # configuration may still be spinning on the cores
                warmup_s=warmup_s if first else min(warmup_s, ROUND_WARMUP_S),
                min_warmup=min_warmup if first else 1,
                duration_s=duration_s,
                iters=iters,
                min_iters=min_iters,
                sync=self.sync,
                timer=self.timer_factory() if self.timer_factory is not None else None,
                seed=seed,
            )
            window = time.perf_counter() - t0 - res.warmup_s
        self.power.append(sampler.result)
        self.sampler_cpu_s.extend(cpu)
        self.window_s += window
        if first:
            self.warmup_iters, self.warmup_s = res.warmup_iters, res.warmup_s
        self.infer_ms.extend(res.samples_ms)
        self.round_means.append(res.stats.mean_ms)

        if self.stages is None:
            self.stages = StageTimer(sync=self.sync)
        st = self.stages
        self.warm_e2e()
        size = frame.shape[:2]
        pre, inf, post, whole = (
            st.stage("preprocess"), st.stage("inference"), st.stage("postprocess"), st.frame()
        )
        for _ in range(len(res.samples_ms)):
            with whole:
                with pre:
                    x = seg.preprocess(frame)
                with inf:
                    y = infer(x)
                with post:
                    seg.postprocess(y, size)


def _stat_dict(stats: Any) -> dict[str, Any]:
    return {
        "min": stats.min_ms,
        "mean": stats.mean_ms,
        "p50": stats.p50_ms,
        "p90": stats.p90_ms,
        "p95": stats.p95_ms,
        "p99": stats.p99_ms,
        "max": stats.max_ms,
        "std": stats.std_ms,
        "ci95": list(stats.ci95_ms),
        "n": stats.n,
        "outliers": stats.outliers,
    }


def _merge_power(results: Sequence[Any]) -> dict[str, Any]:
    """One power figure over several windows: energy and duration add up."""
    ok = [r for r in results if r is not None and r.available and r.duration_s]
    if not ok:
        first = next((r for r in results if r is not None), None)
        reason = first.reason if first is not None and first.reason else "no readings"
        return {"available": False, "source": first.source if first else "none",
                "reason": reason, "avg_w": None}
    energy = sum(r.energy_j for r in ok)
    duration = sum(r.duration_s for r in ok)
    rails: dict[str, list[float]] = {}
    for r in ok:
        for k, v in r.rails_w.items():
            rails.setdefault(k, []).append(v)
    return {
        "available": True,
        "source": ok[0].source,
        "reason": None,
        "avg_w": energy / duration if duration > 0 else ok[0].avg_w,
        "energy_j": energy,
        "duration_s": duration,
        "n_samples": sum(len(r.samples) for r in ok),
        "rails_w": {k: statistics.fmean(v) for k, v in rails.items()},
        "meta": dict(ok[0].meta),
    }


def measure_overhead(n: int = 3000) -> dict[str, float]:
    """The cost of the measurement machinery itself, per timed call and per staged frame.

    ``timer_ms``: median latency that :func:`time_callable` reports for an empty callable
    (clock reads + call dispatch: the bias in every latency sample); ``loop_ms``: wall time per
    iteration of that loop; ``stage_frame_ms``: median end-to-end time of a frame of three empty
    stages through a :class:`StageTimer` (the bias of the end-to-end figure).
    """
    from edgeseg.bench.timing import StageTimer, time_callable

    def empty() -> None:
        return None

    res = time_callable(empty, warmup_s=0.0, min_warmup=100, iters=n)
    st = StageTimer()
    pre, inf, post, whole = st.stage("preprocess"), st.stage("inference"), st.stage("postprocess"), st.frame()
    for _ in range(n):
        with whole:
            with pre:
                pass
            with inf:
                pass
            with post:
                pass
    frames = st.samples_ms()[StageTimer.END_TO_END]
    return {
        "timer_ms": res.stats.p50_ms,
        "loop_ms": res.wall_s / n * 1000.0,
        "stage_frame_ms": float(np.median(frames)),
    }


def _measure(
    runs: list[_Run], source: _Source, prof: Any, costs: dict[Any, Any], measured: dict[str, Any],
    need_bw: bool, devices: list[str], cuda: bool, n_rounds: int, warmup_s: float | None,
    min_warmup: int, duration_s: float | None, iters: int | None, threads: int | None,
    samples: bool, reference_s: float, note: Callable[[str], None], say: Step,
) -> tuple[list[dict[str, Any]], dict[str, float] | None]:
    """Time ``runs`` in ``n_rounds`` interleaved rounds; (results, speedup) for
    :func:`~edgeseg.bench.report._finish`."""
    from edgeseg.bench.memory import memory_report, reset_cuda_peak
    from edgeseg.bench.power import auto_sampler, clock_warning, jetson_clock_state
    from edgeseg.bench.peaks import fp32_peak, int8_matmul_gops, matmul_gflops

    w_s = warmup_s if warmup_s is not None else (prof.bench.warmup_s if prof else _DEFAULT_WARMUP_S)
    if iters is None and duration_s is None:
        duration_s = prof.bench.duration_s if prof else _DEFAULT_DURATION_S
    per_round_s = duration_s / n_rounds if duration_s is not None else None
    min_iters = max(1, math.ceil(MIN_ITERS / n_rounds))

    clock_state, clock_reason = jetson_clock_state()
    clock_warn = clock_warning(clock_state)
    if clock_warn:
        note(clock_warn)
    sampler = auto_sampler()

    if need_bw:
        say("measuring copy bandwidth")
        measured["dram"] = measure_dram_gbs(seconds=reference_s)
    say("measuring the fp32 matmul rate")
    mm_before = {d: fp32_peak(seconds=reference_s, device=d) for d in devices}
    int8_peak = needs_int8_peak(prof, [run.config for run in runs], cuda)
    if int8_peak:
        say("measuring the int8 matmul rate")
        int8_before = int8_matmul_gops(seconds=reference_s, threads=threads)
    peak_reset = _reset_peak_rss()  # the peak then covers the models and the timed loops only
    reset_cuda_peak()
    done = 0
    for r in range(n_rounds):
        for run in runs:
            done += 1
            say(f"timing {run.config.label} (round {r + 1}/{n_rounds})" if n_rounds > 1
                else f"timing {run.config.label}")
            # the efficiency's denominator: same process, same threads, right before the run
            run.load_1m.append(_load_1m())
            run.reference.append(matmul_gflops(seconds=reference_s, device=_device_of(
                run.config, cuda), threads=_run_threads(run, threads)))
            run.time_round(
                first=r == 0, warmup_s=w_s, min_warmup=min_warmup, duration_s=per_round_s,
                iters=None if iters is None else iters // n_rounds + (r < iters % n_rounds),
                min_iters=min_iters, sampler=sampler, seed=done,
            )
    memory = memory_report(jetson=_is_jetson(prof))
    memory["rss"]["peak_reset_before_timing"] = peak_reset
    for d in devices:  # the better of before and after: noise only lowers the efficiency
        after = fp32_peak(seconds=reference_s, device=d)
        best = max((mm_before[d], after), key=lambda m: m["gflops"])
        measured["matmul"][d] = {**best, "runs_gflops": [mm_before[d]["gflops"], after["gflops"]]}
    if int8_peak:
        after = int8_matmul_gops(seconds=reference_s, threads=threads)
        best = max((int8_before, after), key=lambda m: m["gflops"])
        measured["matmul_int8"] = {
            "cpu": {**best, "runs_gflops": [int8_before["gflops"], after["gflops"]]}}
    overhead = measure_overhead()
    clocks = {"state": clock_state, "reason": clock_reason, "warning": clock_warn}
    cores = _usable_cpus()
    loads = [x for run in runs for x in run.load_1m if x is not None]
    if loads and max(loads) > cores:
        note(f"load average {max(loads):.1f} exceeded the {cores} cores during the runs: "
             "timings and efficiency figures are unreliable")

    results = []
    for run in runs:
        cost = _cost_for(source, run.hw, costs, samples)
        mine = _measured_for(measured, run.config, cuda)
        res = _result_skeleton(run.config, run.hw, source, prof,
                               _roof_profile(prof, run.config, cuda), cost, mine, cost_only=False)
        _fill_timing(res, run, cost, mine, memory, overhead, sampler, clocks, threads, samples)
        results.append(res)
    speedup = None
    if len(runs) > 1:  # per-round ratios: both sides of each saw the same machine load
        base = runs[0].round_means
        speedup = {
            run.config.label: statistics.median(b / m for b, m in zip(base, run.round_means))
            for run in runs
        }
    return results, speedup


def _fill_timing(
    res: dict[str, Any], run: _Run, cost: dict[str, Any], measured: dict[str, Any],
    memory: dict[str, Any], overhead: dict[str, float], sampler: Any, clocks: dict[str, Any],
    threads: int | None, samples: bool,
) -> None:
    from edgeseg.bench.power import energy_per_frame_mj, fps_per_watt
    from edgeseg.bench.roofline import achieved_gflops_per_s
    from edgeseg.bench.timing import LatencyStats

    lat = LatencyStats.from_samples(run.infer_ms)
    stage_stats = run.stages.stats()
    e2e = stage_stats["end_to_end"]
    power = _merge_power(run.power)
    avg_w = power.get("avg_w")
    fps = lat.fps
    achieved = achieved_gflops_per_s(cost["gflops"], lat.mean_ms)
    mm = measured["matmul"]
    sampler_cpu = sum(run.sampler_cpu_s)
    sampler_pct = 100.0 * sampler_cpu / run.window_s if run.window_s > 0 else 0.0
    timer_pct = 100.0 * overhead["timer_ms"] / lat.mean_ms
    stage_pct = 100.0 * overhead["stage_frame_ms"] / e2e.mean_ms
    roof = res["roofline"]
    roof["measured_latency_ms"] = lat.mean_ms
    with_measurement(roof, fps)
    res.update(
        latency_ms=_stat_dict(lat),
        fps=fps,
        e2e_fps=e2e.fps,
        stages_ms={k: _stat_dict(v) for k, v in stage_stats.items()},
        timing={
            "timer": run.timer_name,
            "iters": lat.n,
            "rounds": len(run.round_means),
            "round_mean_ms": run.round_means,
            "warmup_iters": run.warmup_iters,
            "warmup_s": run.warmup_s,
            "window_s": run.window_s,
            "frame_hw": list(run.frame.shape[:2]),
        },
        memory=memory,
        power={**power, "sampler": sampler.name, "skipped": dict(sampler.skipped)},
        power_w=avg_w if avg_w is not None else _na(power.get("reason")),
        energy_mj_per_frame=(
            energy_per_frame_mj(avg_w, fps) if avg_w is not None else _na(power.get("reason"))
        ),
        fps_per_watt=fps_per_watt(fps, avg_w) if avg_w is not None else _na(power.get("reason")),
        clocks=clocks,
        achieved_gflops_per_s=achieved,
        matmul_gflops=mm["gflops"],
        matmul={k: mm.get(k) for k in ("gflops", "runs_gflops", "backend", "candidates",
                                        "device", "dtype", "n", "threads")},
        efficiency=_efficiency(run, cost["gflops"]),
        efficiency_reference=_reference_info(run),
        backend_info=run.seg.describe(),
        threads=_threads_info([run], threads),
        overhead_pct=timer_pct + sampler_pct,
        overhead={
            **overhead,
            "timer_pct": timer_pct,
            "sampler_cpu_s": sampler_cpu if run.sampler_cpu_s else None,
            "sampler_pct": sampler_pct,
            "sampler_note": (
                "CPU time of the power sampler thread over the timed windows"
                if run.sampler_cpu_s else "no sampler thread ran (no power source here)"
            ),
            "stage_pct": stage_pct,
        },
        machine=machine(),
    )
    if samples:
        res["samples_ms"] = {"inference": list(run.infer_ms), **run.stages.samples_ms()}


def _efficiency(run: _Run, gflops: float) -> float:
    """Median over rounds of (work rate in the round / matmul rate measured just before it)."""
    from edgeseg.bench.roofline import efficiency

    return statistics.median(efficiency(gflops, ms, ref["gflops"])
                             for ms, ref in zip(run.round_means, run.reference))


def _reference_info(run: _Run) -> dict[str, Any]:
    cores = _usable_cpus()
    loads = [x for x in run.load_1m if x is not None]
    return {
        "matmul_gflops_per_round": [ref["gflops"] for ref in run.reference],
        "threads": run.reference[0]["threads"] if run.reference else None,
        "load_avg_1m_per_round": run.load_1m,
        "cores": cores,
        # a neighbour's load makes both the model and its reference wait, unevenly
        "reliable": bool(loads) and max(loads) <= cores,
    }


def _run_threads(run: _Run, requested: int | None) -> int | None:
    """The intra-op threads the configuration runs with (onnxruntime's session, else torch's)."""
    opts = getattr(run.seg, "options", None)
    if isinstance(opts, dict) and opts.get("intra_op_num_threads"):
        return int(opts["intra_op_num_threads"])
    return requested


def _load_1m() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _na(reason: str | None) -> str:
    return f"n/a ({reason or 'unknown'})"
