"""Prune before measuring: the roofline FPS ceiling of every configuration, and the order.

The ceiling is the roofline (:func:`edgeseg.bench.roofline.roofline`) of the model's cost at
the configuration's size and precision (:func:`edgeseg.bench.cost.model_cost`: GFLOPs, DRAM
bytes at that precision). It must be an upper bound, or pruning drops reachable
configurations, so it takes peaks, never measured rates (a matmul or copy measured on a
loaded machine can be a tenth of the peak):

* compute: the profile's ``device.peak_tflops`` where it has one; else this CPU's peak from
  /proc/cpuinfo (:func:`cpu_peak_gflops`: cores x max clock x fp32 FLOP per cycle of its
  widest FMA), int8 :data:`INT8_PEAK_FACTOR` x that, scaled to the threads the configuration
  may use;
* memory: the profile's ``device.dram_gbs``; where it is null (x86-cpu) there is no memory
  roof (a measured copy rate is no upper bound) and the ceiling is compute-only.

A configuration whose ceiling is below the target cannot reach it and is pruned; so is one
this machine cannot run (reason given). :func:`promise` ranks the rest by likely accuracy
(largest input, fp32 before int8, native deformable conv before portable, then the higher
ceiling); :mod:`edgeseg.tune.schedule` orders the measurements with it, near the target first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseg.tune.space import TuneConfig

__all__ = [
    "INT8_PEAK_FACTOR",
    "Candidate",
    "ceilings",
    "cpu_peak_gflops",
    "plan",
    "promise",
    "this_cpu",
]

INT8_PEAK_FACTOR = 4.0  # 8-bit multiply-adds: 4x the fp32 lanes per instruction at most
TURBO_HEADROOM = 1.5  # the current clock x this, where the maximum clock is not published
_PREC_RANK = {"fp32": 0, "fp16": 1, "int8": 2}


@dataclass
class Candidate:
    config: TuneConfig
    roofline: dict[str, Any] | None  # None: not computed (unsupported configuration)
    reason: str | None = None  # why it is pruned; None = to be measured

    @property
    def ceiling(self) -> float | None:
        return self.roofline["fps_ceiling"] if self.roofline else None

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "label": self.config.label,
                "fps_ceiling": self.ceiling, "roofline": self.roofline, "reason": self.reason}


def cpu_peak_gflops(flags: set[str], cores: int, ghz: float) -> tuple[float, int]:
    """(fp32 GFLOP/s peak, FLOP per cycle per core): two FMA pipes of the widest vectors
    (AVX-512 16 lanes, AVX2+FMA 8, AVX 8 without FMA, NEON/SSE 4)."""
    if "avx512f" in flags:
        per_cycle = 64
    elif "avx2" in flags and "fma" in flags:
        per_cycle = 32
    elif "avx" in flags or "asimd" in flags:
        per_cycle = 16
    else:
        per_cycle = 8
    return cores * ghz * per_cycle, per_cycle


def this_cpu(cpuinfo: str | Path = "/proc/cpuinfo",
             max_freq: str | Path = "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq",
             cores: int | None = None) -> dict[str, Any]:
    """This machine's fp32 peak from /proc/cpuinfo and cpufreq (see :func:`cpu_peak_gflops`)."""
    from edgeseg.runtime.onnxruntime_backend import physical_cores

    flags: set[str] = set()
    mhz = 0.0
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("flags", "features") and not flags:
                flags = set(value.split())
            elif key == "cpu mhz":
                mhz = max(mhz, float(value))
    except (OSError, ValueError):
        pass
    try:
        ghz = int(Path(max_freq).read_text().strip()) / 1e6  # kHz
        clock = f"{ghz:.2f} GHz max (cpufreq)"
    except (OSError, ValueError):
        ghz = (mhz / 1000.0 or 3.0) * TURBO_HEADROOM
        clock = (f"{mhz / 1000:.2f} GHz now x {TURBO_HEADROOM:g} turbo headroom" if mhz else
                 f"clock unknown, {ghz:.1f} GHz assumed")
    n = cores or physical_cores()
    peak, per_cycle = cpu_peak_gflops(flags, n, ghz)
    return {"gflops": peak, "cores": n, "ghz": ghz, "flop_per_cycle": per_cycle,
            "source": f"{n} cores x {clock} x {per_cycle} fp32 FLOP/cycle"}


def ceilings(arch: Any, configs: list[TuneConfig], profile: Any,
             cpu: dict[str, Any]) -> dict[TuneConfig, dict[str, Any]]:
    """Roofline (with ``fps_ceiling``) of each configuration; the cost is counted once per size.

    ``profile``: the profile whose figures apply to where the configurations run (None: this
    CPU, ``cpu`` from :func:`this_cpu`).
    """
    from edgeseg.bench.cost import model_cost
    from edgeseg.bench.roofline import roofline

    costs: dict[tuple[int, int], dict[str, Any]] = {}
    out: dict[TuneConfig, dict[str, Any]] = {}
    for c in configs:
        if c.hw not in costs:
            costs[c.hw] = model_cost(arch, c.height, c.width)
        cost = costs[c.hw]
        dram_mb = cost["dram_mb_by_precision"][c.precision]
        peak = profile.device.peak_tflops.get(c.precision) if profile is not None else None
        if peak is not None:
            peak_source = f"profile {profile.name}: device.peak_tflops.{c.precision}"
        else:
            share = min(c.threads or cpu["cores"], cpu["cores"]) / cpu["cores"]
            factor = INT8_PEAK_FACTOR if c.precision == "int8" else 1.0
            peak = cpu["gflops"] * share * factor / 1000.0
            peak_source = (f"{cpu['source']}" + (f" x {share:g} (threads)" if share < 1 else "")
                           + (f" x {factor:g} (int8)" if factor != 1 else ""))
        bw = profile.device.dram_gbs if profile is not None else None
        if bw is not None:
            r = roofline(cost["gflops"], dram_mb, peak, bw)
            bw_source = f"profile {profile.name}: device.dram_gbs"
        else:
            floor = cost["gflops"] / peak
            r = {"compute_ms": floor, "memory_ms": None, "latency_floor_ms": floor,
                 "fps_ceiling": 1000.0 / floor, "bound": "compute"}
            bw_source = "none (no bandwidth figure in the profile: compute roof only)"
        r.update(gflops=cost["gflops"], dram_mb=dram_mb, peak_tflops=peak, dram_gbs=bw,
                 peak_source=peak_source, bw_source=bw_source)
        out[c] = r
    return out


def promise(c: Candidate) -> tuple[Any, ...]:
    """Sort key, most promising first (see the module docstring)."""
    cfg = c.config
    return (-cfg.height * cfg.width, _PREC_RANK.get(cfg.precision, 9), cfg.dcn != "native",
            -(c.ceiling or 0.0), cfg)


def plan(
    configs: list[TuneConfig], target_fps: float, roofs: dict[TuneConfig, dict[str, Any]],
    unsupported: Callable[[TuneConfig], str | None],
) -> tuple[list[Candidate], list[Candidate]]:
    """(to measure, most promising first; pruned, each with its reason)."""
    keep: list[Candidate] = []
    pruned: list[Candidate] = []
    for c in configs:
        why = unsupported(c)
        roof = roofs.get(c)
        if why is None and roof is not None and roof["fps_ceiling"] < target_fps:
            why = (f"roofline ceiling {roof['fps_ceiling']:.1f} FPS < target {target_fps:g} "
                   f"({roof['bound']}-bound)")
        (pruned if why else keep).append(Candidate(c, roof, why))
    keep.sort(key=promise)
    pruned.sort(key=promise)
    return keep, pruned
