"""Power and energy over a timed window, from whatever sensor this machine has.

A :class:`PowerSampler` is a context manager: entering it takes a first reading and starts a
sampler thread, leaving it takes a last reading and fills :attr:`PowerSampler.result`::

    sampler = auto_sampler()
    with sampler:
        timing = time_callable(run_one_frame, duration_s=3)
    p = sampler.result            # PowerResult; p.available is False with p.reason off-board
    energy_per_frame_mj(p.avg_w, timing.stats.fps)

Sources, in :func:`auto_sampler` order:

* ``jtop`` - jetson-stats service; total board/module power ``power['tot']['power']`` (mW).
* ``tegrastats`` - parses ``tegrastats --interval N`` lines (:func:`parse_tegrastats_line`).
* ``nvml`` - discrete NVIDIA GPUs: the total-energy counter (mJ) when supported, else the power
  reading (mW). NVML does not report power on Jetson.
* ``rapl`` - x86 CPUs: ``/sys/class/powercap/intel-rapl:*/energy_uj`` package counters.

Power readings are integrated with the trapezoidal rule over the window; energy counters are
differenced (exact over the window). What each source measures differs (module input, GPU
board, CPU package): ``source`` says which, and numbers from different sources are not
comparable.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

# Re-exported: code and tests import these names from edgeseg.bench.power.
from edgeseg.bench.power_sampler import NullSampler, PowerResult, PowerSampler, integrate_power
from edgeseg.bench.power_sensors import (
    JtopSampler,
    NvmlSampler,
    RaplCounter,
    RaplSampler,
    TegrastatsSampler,
    _jtop_clock_stamp,
)
from edgeseg.bench.tegrastats import TOTAL_RAILS, parse_nvpmodel_query, parse_tegrastats_line
from edgeseg.errors import EdgesegError

__all__ = [
    "SAMPLERS",
    "TOTAL_RAILS",
    "JtopSampler",
    "NullSampler",
    "NvmlSampler",
    "PowerResult",
    "PowerSampler",
    "RaplCounter",
    "RaplSampler",
    "TegrastatsSampler",
    "auto_sampler",
    "clock_warning",
    "energy_per_frame_mj",
    "fps_per_watt",
    "integrate_power",
    "jetson_clock_state",
    "parse_nvpmodel_query",
    "parse_tegrastats_line",
]


def energy_per_frame_mj(avg_w: float | None, fps: float | None) -> float | None:
    """Energy per frame in millijoules (``W / (frames/s) = J/frame``); None if unknown."""
    if avg_w is None or fps is None or fps <= 0 or avg_w < 0:
        return None
    return avg_w / fps * 1000.0


def fps_per_watt(fps: float | None, avg_w: float | None) -> float | None:
    """Frames per second per watt (= frames per joule); None if unknown."""
    if avg_w is None or fps is None or avg_w <= 0 or fps < 0:
        return None
    return fps / avg_w


SAMPLERS: dict[str, type[PowerSampler]] = {
    "jtop": JtopSampler,
    "tegrastats": TegrastatsSampler,
    "nvml": NvmlSampler,
    "rapl": RaplSampler,
}


def auto_sampler(
    preferred: str | Sequence[str] | None = None, interval_s: float = 0.1
) -> PowerSampler:
    """The first available sampler among ``preferred`` (default: jtop, tegrastats, nvml, rapl).

    The returned sampler has ``skipped: dict[name, reason]`` for the sources passed over. When
    none is available it is a :class:`NullSampler` whose result carries all reasons.
    """
    if preferred is None:
        names = list(SAMPLERS)
    elif isinstance(preferred, str):
        names = [preferred]
    else:
        names = list(preferred)
    unknown = [n for n in names if n not in SAMPLERS]
    if unknown:
        raise EdgesegError(
            f"unknown power source {', '.join(unknown)}; choose from {', '.join(SAMPLERS)}"
        )
    skipped: dict[str, str] = {}
    for n in names:
        s = SAMPLERS[n](interval_s=interval_s)
        reason = s.probe()
        if reason is None:
            s.skipped = skipped
            return s
        skipped[n] = reason
    null = NullSampler("no power source: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    null.skipped = skipped
    return null


# ---------------------------------------------------------------------------------------------
# Clocks and power mode (Jetson)
# ---------------------------------------------------------------------------------------------


def jetson_clock_state(timeout_s: float = 5.0) -> tuple[dict[str, Any] | None, str | None]:
    """``(state, reason)``: the power mode and whether jetson_clocks is on.

    ``state`` is ``{"nvpmodel", "nvpmodel_id", "jetson_clocks": bool | None, "source"}``
    (``jetson_clocks`` None = unknown; without jtop it needs root). Off a Jetson ``state`` is
    None and ``reason`` says why.
    """
    reasons: list[str] = []
    try:
        from jtop import jtop

        j = jtop()
        try:
            j.start()
            return {**_jtop_clock_stamp(j), "source": "jtop"}, None
        except Exception as e:  # noqa: BLE001
            reasons.append(f"jtop: {' '.join(str(e).split())}")
        finally:
            with contextlib.suppress(Exception):
                j.close()
    except ImportError:
        reasons.append("jtop: jetson-stats is not installed")
    exe = shutil.which("nvpmodel")
    if exe is None:
        reasons.append("nvpmodel: not found on PATH (not a Jetson)")
        return None, "; ".join(reasons)
    try:
        proc = subprocess.run(
            [exe, "-q"], capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        reasons.append(f"nvpmodel -q: {e}")
        return None, "; ".join(reasons)
    parsed = parse_nvpmodel_query(proc.stdout)
    if parsed is None:
        reasons.append(f"nvpmodel -q: unexpected output {proc.stdout.strip()[:80]!r}")
        return None, "; ".join(reasons)
    return {**parsed, "jetson_clocks": None, "source": "nvpmodel"}, None


def clock_warning(state: dict[str, Any] | None) -> str | None:
    """The warning to print when Jetson clocks are not locked (None when they are, or off-board).

    Unlocked clocks follow DVFS, so latency and FPS drift with load and temperature and the
    numbers are not comparable with published ones.
    """
    if state is None:
        return None
    mode = state.get("nvpmodel")
    where = f" (power mode {mode})" if mode else ""
    locked = state.get("jetson_clocks")
    if locked is True:
        return None
    if locked is False:
        return (
            f"clocks are not locked{where}: FPS and latency follow DVFS; "
            "run `sudo jetson_clocks` before benchmarking"
        )
    return (
        f"could not tell whether clocks are locked{where}; "
        "run `sudo jetson_clocks` before benchmarking for stable numbers"
    )
