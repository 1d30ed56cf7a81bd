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
import glob
import itertools
import os
import re
import shutil
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from edgeseg.errors import EdgesegError

__all__ = [
    "SAMPLERS",
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

_S = TypeVar("_S", bound="PowerSampler")

# Rails that measure the whole module input; when one is present it *is* the total (adding the
# other rails would double count). Jetson Nano: POM_5V_IN; TX2, Xavier NX, Orin NX/Nano: VDD_IN;
# Thor carrier board: VIN. AGX Xavier and AGX Orin have no input rail: their rails (AGX Orin:
# VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0, VDDQ_VDD2_1V8AO) are separate supplies, so the total is
# their sum - the same rule as jetson-stats' total_power. VIN_SYS_5V0 alone is only the 5 V
# system supply and would miss the CPU and GPU.
TOTAL_RAILS: tuple[str, ...] = ("VIN", "VDD_IN", "POM_5V_IN")


# ---------------------------------------------------------------------------------------------
# Results and pure helpers
# ---------------------------------------------------------------------------------------------


@dataclass
class PowerResult:
    """Power over one window. ``available=False`` carries ``reason`` and no numbers.

    ``samples`` are ``(t_s, watts)`` with ``t_s`` seconds since the window opened. ``rails_w``
    holds per-rail averages where the source has rails (tegrastats, jtop). ``meta`` stamps the
    conditions (nvpmodel mode, jetson_clocks, NVML method, RAPL domains).
    """

    available: bool
    source: str
    reason: str | None = None
    avg_w: float | None = None
    energy_j: float | None = None
    duration_s: float | None = None
    samples: list[tuple[float, float]] = field(default_factory=list)
    rails_w: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def unavailable(cls, source: str, reason: str) -> PowerResult:
        return cls(available=False, source=source, reason=reason)

    def to_dict(self, samples: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "available": self.available,
            "source": self.source,
            "reason": self.reason,
            "avg_w": self.avg_w,
            "energy_j": self.energy_j,
            "duration_s": self.duration_s,
            "n_samples": len(self.samples),
            "rails_w": dict(self.rails_w),
            "meta": dict(self.meta),
        }
        if samples:
            d["samples"] = [list(s) for s in self.samples]
        return d


def integrate_power(samples: Sequence[tuple[float, float]]) -> tuple[float, float, float]:
    """``(energy_j, avg_w, duration_s)`` of ``(t_s, watts)`` samples by the trapezoidal rule.

    One sample (or samples at one instant) gives that power and zero duration/energy.
    """
    if not samples:
        raise EdgesegError("no power samples to integrate")
    pts = sorted(samples)
    duration = pts[-1][0] - pts[0][0]
    if duration <= 0:
        avg = sum(w for _, w in pts) / len(pts)
        return 0.0, avg, 0.0
    energy = 0.0
    for (t0, w0), (t1, w1) in itertools.pairwise(pts):
        energy += 0.5 * (w0 + w1) * (t1 - t0)
    return energy, energy / duration, duration


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


# tegrastats ----------------------------------------------------------------------------------

_RAM_RE = re.compile(r"\bRAM (\d+)/(\d+)MB")
_SWAP_RE = re.compile(r"\bSWAP (\d+)/(\d+)MB")
_GR3D_RE = re.compile(r"\bGR3D_FREQ (\d+)%(?:@\[?(\d+))?")  # "45%", "45%@1300", "0%@[305,305]"
_EMC_RE = re.compile(r"\bEMC_FREQ (\d+)%(?:@(\d+))?")
_CPU_RE = re.compile(r"\bCPU \[([^\]]*)\]")
_CORE_RE = re.compile(r"^(\d+)%@(\d+)$")
# "<NAME> <cur>mW/<avg>mW" (Orin, JetPack 5+) or "<NAME> <cur>/<avg>" (Nano/TX2/Xavier, JP4).
_RAIL_RE = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")
_TEMP_RE = re.compile(r"\b([A-Za-z0-9_]+)@(-?\d+(?:\.\d+)?)C\b")


def parse_tegrastats_line(line: str) -> dict[str, Any]:
    """Parse one ``tegrastats`` line.

    Returns a dict with the keys that the line has:

    * ``ram_used_mb``, ``ram_total_mb``, ``swap_used_mb``, ``swap_total_mb``;
    * ``cpu``: one entry per core, ``{"load_pct", "freq_mhz"}``, or None for an ``off`` core;
    * ``gpu_load_pct`` (GR3D_FREQ), ``gpu_freq_mhz`` where printed; ``emc_load_pct``;
    * ``temps_c``: ``{"cpu": 48.5, ...}``;
    * ``rails_mw``: ``{rail: (current_mw, average_mw)}`` for every power rail;
    * ``total_mw``, ``total_avg_mw``, ``total_rail``: the module total - the input rail
      (VIN, VDD_IN or POM_5V_IN) when present, else the sum of all rails (``"sum"``; AGX Orin).

    Lines without power rails (some carrier boards, no INA3221) have no ``total_*`` keys.
    """
    out: dict[str, Any] = {}
    if m := _RAM_RE.search(line):
        out["ram_used_mb"], out["ram_total_mb"] = int(m[1]), int(m[2])
    if m := _SWAP_RE.search(line):
        out["swap_used_mb"], out["swap_total_mb"] = int(m[1]), int(m[2])
    if m := _CPU_RE.search(line):
        cores: list[dict[str, int] | None] = []
        for tok in m[1].split(","):
            c = _CORE_RE.match(tok.strip())
            cores.append({"load_pct": int(c[1]), "freq_mhz": int(c[2])} if c else None)
        out["cpu"] = cores
    if m := _GR3D_RE.search(line):
        out["gpu_load_pct"] = int(m[1])
        if m[2]:
            out["gpu_freq_mhz"] = int(m[2])
    if m := _EMC_RE.search(line):
        out["emc_load_pct"] = int(m[1])
    temps = {k.lower(): float(v) for k, v in _TEMP_RE.findall(line)}
    if temps:
        out["temps_c"] = temps
    rails = {
        name: (int(cur), int(avg))
        for name, cur, avg in _RAIL_RE.findall(line)
        if name not in ("RAM", "SWAP", "IRAM", "LFB")
    }
    if rails:
        out["rails_mw"] = rails
        total_rail = next((r for r in TOTAL_RAILS if r in rails), None)
        if total_rail is not None:
            out["total_mw"], out["total_avg_mw"] = rails[total_rail]
        else:
            out["total_mw"] = sum(c for c, _ in rails.values())
            out["total_avg_mw"] = sum(a for _, a in rails.values())
        out["total_rail"] = total_rail or "sum"
    return out


# ---------------------------------------------------------------------------------------------
# Samplers
# ---------------------------------------------------------------------------------------------


class PowerSampler(ABC):
    """Samples power on a background thread over a ``with`` block.

    Subclasses implement :meth:`probe` (None, or why the source cannot be used here),
    :meth:`_open`/:meth:`_close` and :meth:`_read`. A source with an energy counter sets
    ``counter = True`` and returns cumulative joules from ``_read``; otherwise ``_read``
    returns watts. ``_read`` may also return ``(value, {rail: watts})``.

    Entering an unavailable sampler is not an error: the block runs unmeasured and
    :attr:`result` says why.
    """

    name = "?"
    counter = False

    def __init__(self, interval_s: float = 0.1) -> None:
        if interval_s <= 0:
            raise EdgesegError(f"sampling interval must be > 0, got {interval_s}")
        self.interval_s = interval_s
        self.result: PowerResult | None = None
        self.skipped: dict[str, str] = {}  # sources auto_sampler passed over, with reasons
        self._raw: list[tuple[float, float]] = []
        self._rails: list[dict[str, float]] = []
        self._meta: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._reason: str | None = None
        self._error: str | None = None

    # -- to implement ------------------------------------------------------------------------
    @abstractmethod
    def probe(self) -> str | None:
        """None when this source works here, else a one-line reason."""

    def _open(self) -> None:
        """Acquire the source (connection, handle, process)."""

    def _close(self) -> None:
        """Release what :meth:`_open` acquired."""

    @abstractmethod
    def _read(self) -> float | tuple[float, dict[str, float]]:
        """One reading: watts, or cumulative joules when ``counter`` is True."""

    # -- machinery ---------------------------------------------------------------------------
    def available(self) -> bool:
        self._reason = self.probe()
        return self._reason is None

    def _sample(self) -> None:
        value = self._read()
        rails: dict[str, float] = {}
        if isinstance(value, tuple):
            value, rails = value
        t = time.perf_counter() - self._t0
        with self._lock:
            self._raw.append((t, float(value)))
            if rails:
                self._rails.append(rails)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._sample()
            except Exception as e:  # noqa: BLE001 - a sensor hiccup must not kill the run
                self._error = f"{type(e).__name__}: {e}"

    def __enter__(self: _S) -> _S:  # noqa: PYI019 - typing.Self needs Python 3.11
        self.result = None
        self._raw, self._rails, self._meta, self._error = [], [], {}, None
        reason = self.probe()
        if reason is None:
            try:
                self._open()
            except Exception as e:  # noqa: BLE001 - reported, not raised
                reason = f"{self.name} failed to start: {type(e).__name__}: {e}"
        self._reason = reason
        if reason is not None:
            return self
        self._stop.clear()
        self._t0 = time.perf_counter()
        self._start_sampling()
        return self

    def _start_sampling(self) -> None:
        try:
            self._sample()
        except Exception as e:  # noqa: BLE001
            self._error = f"{type(e).__name__}: {e}"
        self._thread = threading.Thread(target=self._loop, name=f"power-{self.name}", daemon=True)
        self._thread.start()

    def _stop_sampling(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, 2 * self.interval_s))
            self._thread = None
        try:
            self._sample()
        except Exception as e:  # noqa: BLE001
            self._error = f"{type(e).__name__}: {e}"

    def __exit__(self, *exc: object) -> None:
        if self._reason is not None:
            self.result = PowerResult.unavailable(self.name, self._reason)
            return
        duration = time.perf_counter() - self._t0
        try:
            self._stop_sampling()
        finally:
            self._close()
        self.result = self._summarise(duration)

    def _summarise(self, window_s: float) -> PowerResult:
        with self._lock:
            raw = list(self._raw)
            rail_rows = list(self._rails)
        meta = dict(self._meta)
        if self._error:
            meta["last_error"] = self._error
        if self.counter:
            if len(raw) < 2:
                return PowerResult.unavailable(self.name, self._error or "fewer than 2 readings")
            energy = raw[-1][1] - raw[0][1]
            duration = raw[-1][0] - raw[0][0]
            samples = [
                (t1, (e1 - e0) / (t1 - t0))
                for (t0, e0), (t1, e1) in itertools.pairwise(raw)
                if t1 > t0
            ]
            avg = energy / duration if duration > 0 else None
        else:
            if not raw:
                reason = self._error or f"no readings within the {window_s:.2f} s window"
                return PowerResult.unavailable(self.name, reason)
            samples = raw
            energy, avg, duration = integrate_power(raw)
            if duration <= 0:  # a single reading: hold it over the window
                duration, energy = window_s, avg * window_s
        rails_w: dict[str, float] = {}
        if rail_rows:
            for k in rail_rows[0]:
                vals = [r[k] for r in rail_rows if k in r]
                rails_w[k] = sum(vals) / len(vals)
        return PowerResult(
            available=True,
            source=self.name,
            avg_w=avg,
            energy_j=energy,
            duration_s=duration,
            samples=samples,
            rails_w=rails_w,
            meta=meta,
        )


class NullSampler(PowerSampler):
    """Stands in when no source is available; its result carries the combined reasons."""

    name = "none"

    def __init__(self, reason: str) -> None:
        super().__init__()
        self._why = reason

    def probe(self) -> str | None:
        return self._why

    def _read(self) -> float:  # pragma: no cover - never entered
        raise RuntimeError(self._why)


class JtopSampler(PowerSampler):
    """jetson-stats: ``jtop().power['tot']['power']`` (mW), stamped with nvpmodel/jetson_clocks."""

    name = "jtop"

    def __init__(self, interval_s: float = 0.1) -> None:
        super().__init__(interval_s)
        self._jetson: Any = None

    def probe(self) -> str | None:
        try:
            from jtop import jtop
        except ImportError:
            return "jetson-stats is not installed (pip install jetson-stats)"
        j = jtop(interval=max(self.interval_s, 0.1))
        try:
            j.start()
        except Exception as e:  # noqa: BLE001 - JtopException, OSError, ...
            return f"jtop service not reachable: {' '.join(str(e).split())}"
        with contextlib.suppress(Exception):
            j.close()
        return None

    def _open(self) -> None:
        from jtop import jtop

        self._jetson = jtop(interval=max(self.interval_s, 0.1))
        self._jetson.start()
        self._meta.update(_jtop_clock_stamp(self._jetson))

    def _close(self) -> None:
        if self._jetson is not None:
            try:
                self._jetson.close()
            finally:
                self._jetson = None

    def _read(self) -> tuple[float, dict[str, float]]:
        power = self._jetson.power
        rails = {k: v["power"] / 1000.0 for k, v in power.get("rail", {}).items() if "power" in v}
        return power["tot"]["power"] / 1000.0, rails


class TegrastatsSampler(PowerSampler):
    """Runs ``tegrastats --interval <ms>`` and reads the total power of each line."""

    name = "tegrastats"

    def __init__(self, interval_s: float = 0.1, executable: str = "tegrastats") -> None:
        super().__init__(interval_s)
        self.executable = executable
        self._proc: subprocess.Popen[str] | None = None

    def probe(self) -> str | None:
        if shutil.which(self.executable) is None:
            return f"{self.executable} not found on PATH (not a Jetson)"
        return None

    def _open(self) -> None:
        interval_ms = max(1, round(self.interval_s * 1000))
        self._proc = subprocess.Popen(
            [self.executable, "--interval", str(interval_ms)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )

    def _read(self) -> float:  # pragma: no cover - lines are pushed, see _loop
        raise NotImplementedError

    def _start_sampling(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="power-tegrastats", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self.feed(line)
            if self._stop.is_set():
                break

    def feed(self, line: str) -> None:
        """Record one tegrastats line (the reader thread calls this; tests may too)."""
        parsed = parse_tegrastats_line(line)
        if "total_mw" not in parsed:
            self._error = "tegrastats lines carry no power rails"
            return
        t = time.perf_counter() - self._t0
        rails = {k: c / 1000.0 for k, (c, _) in parsed["rails_mw"].items()}
        with self._lock:
            self._raw.append((t, parsed["total_mw"] / 1000.0))
            self._rails.append(rails)
        self._meta.setdefault("total_rail", parsed["total_rail"])

    def _stop_sampling(self) -> None:
        self._stop.set()
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover
                self._proc.kill()
                self._proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _close(self) -> None:
        if self._proc is not None and self._proc.stdout is not None:
            self._proc.stdout.close()
        self._proc = None


class NvmlSampler(PowerSampler):
    """NVML on a discrete GPU: total energy (mJ) when supported, else power usage (mW)."""

    name = "nvml"

    def __init__(self, interval_s: float = 0.1, index: int = 0) -> None:
        super().__init__(interval_s)
        self.index = index
        self._nvml: Any = None
        self._handle: Any = None

    def probe(self) -> str | None:
        try:
            import pynvml
        except ImportError:
            return "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
        try:
            pynvml.nvmlInit()
        except Exception as e:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded...
            return f"NVML unavailable: {e}"
        try:
            if pynvml.nvmlDeviceGetCount() <= self.index:
                return f"NVML sees no GPU {self.index}"
            h = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            if _nvml_method(pynvml, h) is None:
                return f"GPU {self.index} reports neither energy nor power via NVML"
            return None
        except Exception as e:  # noqa: BLE001
            return f"NVML query failed: {e}"
        finally:
            pynvml.nvmlShutdown()

    def _open(self) -> None:
        import pynvml

        pynvml.nvmlInit()
        self._nvml = pynvml
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
        method = _nvml_method(pynvml, self._handle)
        self.counter = method == "energy"
        name = pynvml.nvmlDeviceGetName(self._handle)
        self._meta.update(
            {"method": method, "gpu": name.decode() if isinstance(name, bytes) else str(name)}
        )

    def _close(self) -> None:
        if self._nvml is not None:
            self._nvml.nvmlShutdown()
            self._nvml = self._handle = None

    def _read(self) -> float:
        if self.counter:
            return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1000.0
        return self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000.0


def _nvml_method(pynvml: Any, handle: Any) -> str | None:
    with contextlib.suppress(Exception):  # NVMLError_NotSupported before Volta
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        return "energy"
    try:
        pynvml.nvmlDeviceGetPowerUsage(handle)
        return "power"
    except Exception:  # noqa: BLE001
        return None


class RaplCounter:
    """Cumulative joules from RAPL package counters, unwrapping each counter's overflow.

    ``energy_uj`` counts up to ``max_energy_range_uj`` and restarts from 0; a reading lower
    than the previous one means one wrap, so the delta is ``now - prev + max_range``. Read at
    least once per wrap period (minutes at package power), which a sampler thread does.

    Args:
        root: the powercap directory (tests point it at a fake tree).
        domains: directory names to read; default the top-level package domains
            (``intel-rapl:N`` whose ``name`` starts with ``package``), or every top-level
            domain when none is named so. Sub-domains (``intel-rapl:N:M``: core, uncore, dram)
            are parts of their package and are not added.
    """

    def __init__(
        self, root: str | Path = "/sys/class/powercap", domains: Iterable[str] | None = None
    ) -> None:
        self.root = Path(root)
        self.domains = list(domains) if domains is not None else self.find_domains(self.root)
        self._last: dict[str, int] = {}
        self._total_uj = 0

    @staticmethod
    def find_domains(root: Path) -> list[str]:
        top = sorted(
            Path(p).name
            for p in glob.glob(str(root / "intel-rapl:*"))
            if re.fullmatch(r"intel-rapl:\d+", Path(p).name)
        )
        packages = [d for d in top if _read_text(root / d / "name").startswith("package")]
        return packages or top

    def probe(self) -> str | None:
        if not self.domains:
            return f"no RAPL domains under {self.root} (not an x86 CPU with powercap)"
        for d in self.domains:
            f = self.root / d / "energy_uj"
            if not os.access(f, os.R_OK):
                return f"{f} is not readable (root only since Linux 5.10)"
            try:
                int(f.read_text())
            except (OSError, ValueError) as e:
                return f"{f} cannot be read: {e}"
        return None

    def read_j(self) -> float:
        for d in self.domains:
            raw = int((self.root / d / "energy_uj").read_text())
            prev = self._last.get(d)
            if prev is not None:
                delta = raw - prev
                if delta < 0:
                    delta += int((self.root / d / "max_energy_range_uj").read_text())
                self._total_uj += delta
            self._last[d] = raw
        return self._total_uj / 1e6


class RaplSampler(PowerSampler):
    """x86 CPU package energy from ``/sys/class/powercap/intel-rapl:*/energy_uj``."""

    name = "rapl"
    counter = True

    def __init__(
        self,
        interval_s: float = 0.1,
        root: str | Path = "/sys/class/powercap",
        domains: Iterable[str] | None = None,
    ) -> None:
        super().__init__(interval_s)
        self.root = Path(root)
        self._domains = list(domains) if domains is not None else None
        self._counter: RaplCounter | None = None

    def probe(self) -> str | None:
        return RaplCounter(self.root, self._domains).probe()

    def _open(self) -> None:
        self._counter = RaplCounter(self.root, self._domains)
        self._meta["domains"] = {
            d: _read_text(self.root / d / "name") or d for d in self._counter.domains
        }

    def _read(self) -> float:
        assert self._counter is not None
        return self._counter.read_j()


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


def _read_text(p: Path) -> str:
    try:
        return p.read_text().strip()
    except OSError:
        return ""


def _jtop_clock_stamp(j: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with contextlib.suppress(Exception):  # no nvpmodel on some boards
        nv = j.nvpmodel
        if nv is not None:
            out["nvpmodel"] = str(nv.name)
            out["nvpmodel_id"] = int(nv.id)
    with contextlib.suppress(Exception):  # no jetson_clocks on some boards
        out["jetson_clocks"] = bool(j.jetson_clocks)
    return out


def parse_nvpmodel_query(text: str) -> dict[str, Any] | None:
    """Parse ``nvpmodel -q`` output (``NV Power Mode: MAXN`` then the mode id on its own line)."""
    m = re.search(r"NV Power Mode:\s*(\S.*?)\s*$", text, re.MULTILINE)
    if not m:
        return None
    out: dict[str, Any] = {"nvpmodel": m[1]}
    if mid := re.search(r"^\s*(\d+)\s*$", text[m.end() :], re.MULTILINE):
        out["nvpmodel_id"] = int(mid[1])
    return out


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
