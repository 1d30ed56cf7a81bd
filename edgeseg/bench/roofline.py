"""Roofline bounds for one frame: how fast the model could run on a device at best.

Plain arithmetic on numbers the caller supplies (work from a profile, traffic from
:mod:`edgeseg.bench.cio`, peaks from a datasheet or :func:`edgeseg.bench.timing.matmul_gflops`).
Units: GFLOP of work per frame (1 MAC = 2 FLOP), MB = 10^6 bytes of DRAM traffic per frame,
peak compute in TFLOP/s, DRAM bandwidth in GB/s (10^9 bytes/s).
"""

from __future__ import annotations

from typing import Any

from edgeseg.errors import EdgesegError

__all__ = ["achieved_gflops_per_s", "efficiency", "roofline"]


def _positive(**values: float) -> None:
    for k, v in values.items():
        if not v > 0:
            raise EdgesegError(f"{k} must be > 0, got {v}")


def roofline(gflops: float, dram_mb: float, peak_tflops: float, dram_gbs: float) -> dict[str, Any]:
    """Latency floor and FPS ceiling of a frame of ``gflops`` work moving ``dram_mb``.

    Returns:
        ``compute_ms`` (work / peak), ``memory_ms`` (traffic / bandwidth),
        ``latency_floor_ms`` (the larger), ``fps_ceiling`` (1000 / floor), ``bound``
        (``"compute"`` or ``"memory"``, whichever sets the floor; ties are ``"compute"``),
        ``arithmetic_intensity`` (FLOP/byte), ``ridge_point`` (FLOP/byte where the two
        roofs meet) and ``attainable_tflops`` (min(peak, intensity x bandwidth)).
    """
    _positive(gflops=gflops, dram_mb=dram_mb, peak_tflops=peak_tflops, dram_gbs=dram_gbs)
    compute_ms = gflops / peak_tflops  # 1e9 FLOP / (1e12 FLOP/s) = 1e-3 s
    memory_ms = dram_mb / dram_gbs  # 1e6 B / (1e9 B/s) = 1e-3 s
    floor_ms = max(compute_ms, memory_ms)
    intensity = gflops * 1e9 / (dram_mb * 1e6)
    ridge = peak_tflops * 1e12 / (dram_gbs * 1e9)
    return {
        "compute_ms": compute_ms,
        "memory_ms": memory_ms,
        "latency_floor_ms": floor_ms,
        "fps_ceiling": 1000.0 / floor_ms,
        "bound": "compute" if compute_ms >= memory_ms else "memory",
        "arithmetic_intensity": intensity,
        "ridge_point": ridge,
        "attainable_tflops": min(peak_tflops, intensity * dram_gbs / 1e3),
    }


def achieved_gflops_per_s(gflops: float, latency_ms: float) -> float:
    """Work rate actually reached: ``gflops`` per frame done in ``latency_ms``."""
    _positive(gflops=gflops, latency_ms=latency_ms)
    return gflops / (latency_ms / 1e3)


def efficiency(gflops: float, latency_ms: float, peak_gflops_per_s: float) -> float:
    """Fraction of the peak rate (e.g. measured matmul GFLOP/s) that the model reaches."""
    _positive(peak_gflops_per_s=peak_gflops_per_s)
    return achieved_gflops_per_s(gflops, latency_ms) / peak_gflops_per_s
