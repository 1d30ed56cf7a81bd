"""One :class:`~edgeseg.bench.power_sampler.PowerSampler` per power sensor.

* :class:`JtopSampler` - jetson-stats service; total board/module power (mW).
* :class:`TegrastatsSampler` - ``tegrastats --interval N`` lines
  (:func:`~edgeseg.bench.tegrastats.parse_tegrastats_line`).
* :class:`NvmlSampler` - discrete NVIDIA GPUs: total-energy counter, else the power reading.
* :class:`RaplSampler` - x86 CPU package energy counters (:class:`RaplCounter`).

See :mod:`edgeseg.bench.power` for what each measures and how they are chosen.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edgeseg.bench.power_sampler import PowerSampler
from edgeseg.bench.tegrastats import parse_tegrastats_line

__all__ = ["JtopSampler", "NvmlSampler", "RaplCounter", "RaplSampler", "TegrastatsSampler"]


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
