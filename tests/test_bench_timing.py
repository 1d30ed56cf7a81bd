"""Latency statistics, the timed loop, stage timers and the matmul reference rate."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from edgeseg.bench.timing import (
    LatencyStats,
    PerfCounterTimer,
    StageTimer,
    cuda_event_timer,
    time_callable,
)
from edgeseg.bench import peaks
from edgeseg.bench.peaks import fp32_peak, matmul_gflops
from edgeseg.errors import EdgesegError, MissingDependencyError

# ---------------------------------------------------------------------------------------------
# LatencyStats
# ---------------------------------------------------------------------------------------------


def test_stats_match_numpy_on_known_data() -> None:
    data = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 8.0, 7.0, 9.0]
    s = LatencyStats.from_samples(data)
    assert s.n == 10
    assert s.min_ms == 1.0 and s.max_ms == 10.0
    assert s.mean_ms == pytest.approx(5.5)
    for q, got in [(50, s.p50_ms), (90, s.p90_ms), (95, s.p95_ms), (99, s.p99_ms)]:
        assert got == pytest.approx(float(np.percentile(data, q)))
    # numpy's default (linear) interpolation on 1..10: p50 = 5.5, p90 = 9.1, p99 = 9.91
    assert (s.p50_ms, s.p90_ms) == pytest.approx((5.5, 9.1))
    assert s.p99_ms == pytest.approx(9.91)
    assert s.std_ms == pytest.approx(float(np.std(data, ddof=1)))
    assert s.fps == pytest.approx(1000 / 5.5)
    assert s.outliers == 0


def test_stats_random_data_against_numpy() -> None:
    x = np.random.default_rng(3).lognormal(1.0, 0.4, size=997)
    s = LatencyStats.from_samples(x.tolist())
    expected = np.percentile(x, [50, 90, 95, 99])
    assert [s.p50_ms, s.p90_ms, s.p95_ms, s.p99_ms] == pytest.approx(expected.tolist())
    assert s.mean_ms == pytest.approx(x.mean())


def test_bootstrap_ci_contains_mean_is_deterministic_and_shrinks() -> None:
    rng = np.random.default_rng(0)
    small = rng.gamma(4.0, 2.0, size=50)
    large = rng.gamma(4.0, 2.0, size=5000)
    s_small = LatencyStats.from_samples(small, seed=1)
    s_large = LatencyStats.from_samples(large, seed=1)
    for s in (s_small, s_large):
        lo, hi = s.ci95_ms
        assert lo < s.mean_ms < hi
    width_small = s_small.ci95_ms[1] - s_small.ci95_ms[0]
    width_large = s_large.ci95_ms[1] - s_large.ci95_ms[0]
    # the CI of a mean shrinks like 1/sqrt(n): 100x the samples -> about 1/10 the width
    assert width_large < width_small / 5
    assert LatencyStats.from_samples(small, seed=1).ci95_ms == s_small.ci95_ms
    assert LatencyStats.from_samples(small, seed=2).ci95_ms != s_small.ci95_ms


def test_bootstrap_ci_close_to_normal_theory() -> None:
    x = np.random.default_rng(5).normal(10.0, 2.0, size=2000)
    lo, hi = LatencyStats.from_samples(x).ci95_ms
    half = 1.96 * x.std(ddof=1) / np.sqrt(x.size)
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.1)


def test_stats_edge_cases() -> None:
    one = LatencyStats.from_samples([2.0])
    assert one.ci95_ms == (2.0, 2.0) and one.std_ms == 0.0 and one.fps == 500.0
    with pytest.raises(EdgesegError):
        LatencyStats.from_samples([])
    with pytest.raises(EdgesegError):
        LatencyStats.from_samples([1.0, float("nan")])
    with_outlier = LatencyStats.from_samples([1.0] * 20 + [1.1] * 20 + [50.0])
    assert with_outlier.outliers == 1
    d = with_outlier.to_dict()
    assert set(d) >= {
        "min_ms",
        "mean_ms",
        "p50_ms",
        "p90_ms",
        "p95_ms",
        "p99_ms",
        "ci95_ms",
        "fps",
        "n",
        "outliers",
    }
    assert isinstance(d["ci95_ms"], list)


# ---------------------------------------------------------------------------------------------
# time_callable
# ---------------------------------------------------------------------------------------------


class _Counter:
    def __init__(self, sleep_s: float = 0.0) -> None:
        self.calls = 0
        self.sleep_s = sleep_s

    def __call__(self) -> None:
        self.calls += 1
        if self.sleep_s:
            time.sleep(self.sleep_s)


def test_time_callable_iters_counts_and_min_warmup() -> None:
    fn, syncs = _Counter(), []
    res = time_callable(fn, warmup_s=0.0, min_warmup=3, iters=7, sync=lambda: syncs.append(1))
    assert res.warmup_iters == 3
    assert len(res.samples_ms) == 7 and res.stats.n == 7
    assert fn.calls == 10
    assert len(syncs) == 10  # synchronised after every warm-up and timed call
    assert all(s >= 0 for s in res.samples_ms)


def test_time_callable_warmup_by_time_and_count() -> None:
    fn = _Counter(sleep_s=0.005)
    res = time_callable(fn, warmup_s=0.04, min_warmup=2, iters=2)
    assert res.warmup_s >= 0.04
    assert 2 <= res.warmup_iters <= 9  # about 0.04 / 0.005 calls
    assert fn.calls == res.warmup_iters + 2
    assert min(res.samples_ms) >= 5.0  # sleep(5 ms) measured in ms


def test_time_callable_duration_mode() -> None:
    fn = _Counter()
    res = time_callable(fn, warmup_s=0.0, min_warmup=0, duration_s=0.05, min_iters=10)
    assert res.wall_s >= 0.05
    assert res.stats.n == len(res.samples_ms) >= 10
    slow = _Counter(sleep_s=0.002)
    res = time_callable(slow, warmup_s=0.0, min_warmup=0, duration_s=0.0, min_iters=4)
    assert res.stats.n == 4  # min_iters wins over a short duration


def test_time_callable_uses_given_timer_and_rejects_bad_args() -> None:
    class FixedTimer:
        def start(self) -> None:
            pass

        def stop(self) -> float:
            return 4.0

    res = time_callable(_Counter(), warmup_s=0, min_warmup=0, iters=5, timer=FixedTimer())
    assert res.samples_ms == [4.0] * 5
    assert res.stats.fps == pytest.approx(250.0)
    with pytest.raises(EdgesegError):
        time_callable(_Counter(), iters=3, duration_s=1.0)
    with pytest.raises(EdgesegError):
        time_callable(_Counter(), iters=0)


def test_perf_counter_timer_calls_sync_inside_window() -> None:
    t = PerfCounterTimer(sync=lambda: time.sleep(0.003))
    t.start()
    assert t.stop() >= 3.0


# ---------------------------------------------------------------------------------------------
# StageTimer
# ---------------------------------------------------------------------------------------------


def test_stage_timer_stages_and_end_to_end() -> None:
    st = StageTimer()
    for _ in range(3):
        with st.frame():
            with st.stage("preprocess"):
                time.sleep(0.002)
            with st.stage("inference"):
                time.sleep(0.004)
            with st.stage("postprocess"):
                pass
    stats = st.stats()
    assert set(stats) == {"preprocess", "inference", "postprocess", "end_to_end"}
    assert all(s.n == 3 for s in stats.values())
    assert stats["inference"].min_ms >= 4.0
    assert stats["preprocess"].min_ms >= 2.0
    parts = sum(stats[k].mean_ms for k in ("preprocess", "inference", "postprocess"))
    assert stats["end_to_end"].mean_ms >= parts
    st.reset()
    assert st.stats() == {}
    st.add("inference", 1.5)
    assert st.samples_ms() == {"inference": [1.5]}


def test_stage_timer_sync_and_overhead() -> None:
    syncs: list[int] = []
    st = StageTimer(sync=lambda: syncs.append(1))
    with st.stage("a"):
        pass
    assert syncs == [1]

    st = StageTimer()
    n = 20000
    # this thread's CPU time, not the wall clock: a busy neighbour (or a stopped process)
    # stretches the wall time of the loop, never the work one stage costs
    t0 = time.thread_time()
    for _ in range(n):
        with st.stage("empty"):
            pass
    per_use_us = (time.thread_time() - t0) / n * 1e6
    assert per_use_us < 20  # ~0.5 us on a laptop; generous for slow CI
    # the median sample: preemption hits a few samples of 20000, never half of them
    assert st.stats()["empty"].p50_ms < 0.02


# ---------------------------------------------------------------------------------------------
# CUDA events and matmul
# ---------------------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")
def test_cuda_event_timer_without_cuda_says_why() -> None:
    with pytest.raises(MissingDependencyError, match="CUDA"):
        cuda_event_timer()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_event_timer_times_gpu_work() -> None:  # pragma: no cover - GPU machines only
    a = torch.randn(1024, 1024, device="cuda")
    res = time_callable(lambda: a @ a, warmup_s=0, min_warmup=2, iters=5, timer=cuda_event_timer())
    assert res.stats.n == 5 and res.stats.min_ms > 0


@pytest.mark.parametrize("backend", ["torch", "numpy", "onnxruntime"])
def test_matmul_gflops_reports_rate_and_setup(backend: str) -> None:
    r = matmul_gflops(n=128, seconds=0.05, backend=backend)
    assert r["backend"].startswith(backend) and r["dtype"] == "float32" and r["n"] == 128
    assert r["gflops"] > 0.01 and r["iters"] >= 3
    if backend in ("torch", "onnxruntime"):  # onnxruntime's session runs torch's threads
        assert r["threads"] == torch.get_num_threads()
    with pytest.raises(EdgesegError):
        matmul_gflops(n=16, seconds=0.01, backend="bogus")


def test_onnxruntime_peak_graph_computes_the_product() -> None:
    # the timed session does the work it is credited with: a @ b, against numpy
    rng = np.random.default_rng(1)
    b = rng.standard_normal((64, 64)).astype(np.float32)
    a = rng.standard_normal((64, 64)).astype(np.float32)
    sess, name = peaks._ort_matmul("MatMul", b, 64, threads=1)
    (y,) = sess.run(None, {"a": a})
    assert name.startswith("onnxruntime ") and name.endswith(" MatMul")
    np.testing.assert_allclose(y, a @ b, rtol=1e-4, atol=1e-4)
    with pytest.raises(EdgesegError, match="float32 on the CPU"):
        matmul_gflops(n=16, seconds=0.01, backend="onnxruntime", dtype="float16")


def test_fp32_peak_is_the_faster_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    # the AVX-512 record: MLAS sgemm 190 GFLOP/s, torch mm 93 on one thread
    rates = {"torch": 93.0, "onnxruntime": 190.0}
    seen: list[tuple[str, int | None]] = []

    def fake(n: int = 1024, dtype: str = "float32", seconds: float = 1.0, backend: str = "auto",
             device: str = "cpu", threads: int | None = None) -> dict:
        seen.append((backend, threads))
        return {"gflops": rates[backend], "backend": backend, "device": device, "threads": threads}

    monkeypatch.setattr(peaks, "matmul_gflops", fake)
    r = fp32_peak(seconds=0.1, threads=1)
    assert r["gflops"] == 190.0 and r["backend"] == "onnxruntime"
    assert r["candidates"] == rates and seen == [("torch", 1), ("onnxruntime", 1)]
    rates["torch"] = 250.0
    assert fp32_peak(seconds=0.1)["backend"] == "torch"
