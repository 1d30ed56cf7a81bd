"""Power sources, tegrastats parsing, RAPL counters, clock stamps and memory readers.

Hardware is faked at its boundary (a jtop module, a pynvml module, a powercap tree, a
tegrastats executable) so the real code paths run on a machine without any of them.
"""

from __future__ import annotations

import os
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest
import torch

from edgeseg.bench import memory, power
from edgeseg.bench.power import (
    JtopSampler,
    NullSampler,
    NvmlSampler,
    PowerSampler,
    RaplCounter,
    RaplSampler,
    TegrastatsSampler,
    auto_sampler,
    clock_warning,
    energy_per_frame_mj,
    fps_per_watt,
    integrate_power,
    jetson_clock_state,
    parse_nvpmodel_query,
    parse_tegrastats_line,
)
from edgeseg.bench.timing import time_callable
from edgeseg.errors import EdgesegError

# Lines in the formats tegrastats prints (JetPack 5/6 on Orin with mW, JetPack 4 without).
AGX_ORIN = (
    "11-25-2026 10:00:00 RAM 2845/30593MB (lfb 6920x4MB) SWAP 0/15296MB (cached 0MB) "
    "CPU [2%@729,1%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,off,off,off,off] "
    "EMC_FREQ 0%@2133 GR3D_FREQ 0%@[305,305] VIC_FREQ 729 APE 174 CV0@-256C CPU@47.75C "
    "Tboard@37C SOC2@44.031C Tdiode@38.5C SOC0@45.562C CV1@-256C GPU@-256C tj@47.75C "
    "SOC1@44.843C CV2@-256C VDD_GPU_SOC 4353mW/2769mW VDD_CPU_CV 923mW/1187mW "
    "VIN_SYS_5V0 3623mW/3541mW NC 0mW/0mW VDDQ_VDD2_1V8AO 303mW/296mW NC 0mW/0mW"
)
ORIN_NANO = (
    "03-14-2025 09:12:45 RAM 1873/7620MB (lfb 13x4MB) SWAP 0/3810MB (cached 0MB) "
    "CPU [5%@1510,3%@1510,0%@1510,1%@1510,off,off] EMC_FREQ 1%@2133 GR3D_FREQ 45%@[624] "
    "NVDEC off NVJPG off NVJPG1 off VIC off OFA off APE 200 cpu@51.5C soc2@49.75C "
    "soc0@50.093C gpu@50.468C tj@51.5C soc1@49.875C "
    "VDD_IN 6145mW/5837mW VDD_CPU_GPU_CV 1734mW/1502mW VDD_SOC 1658mW/1611mW"
)
XAVIER_NX_JP5 = (
    "RAM 3012/7765MB (lfb 512x4MB) SWAP 0/3882MB (cached 0MB) CPU [12%@1190,9%@1190,"
    "off,off,off,off] EMC_FREQ 0%@1600 GR3D_FREQ 12%@114 APE 150 AO@37C GPU@36.5C "
    "PMIC@50C AUX@36.5C CPU@38C thermal@37.05C "
    "VDD_IN 5012mW/5012mW VDD_CPU_GPU_CV 778mW/778mW VDD_SOC 1437mW/1437mW"
)
AGX_XAVIER_JP4 = (
    "RAM 2003/15692MB (lfb 3221x4MB) SWAP 0/7846MB (cached 0MB) "
    "CPU [4%@1190,2%@1190,1%@1190,0%@1190,off,off,off,off] EMC_FREQ 0% GR3D_FREQ 0% "
    "AO@37.5C GPU@37.5C Tdiode@40.25C PMIC@100C AUX@37C CPU@38C thermal@37.75C Tboard@37C "
    "GPU 0/0 CPU 311/311 SOC 931/931 CV 0/0 VDDRQ 155/155 SYS5V 1781/1781"
)
NANO_JP4 = (
    "RAM 1549/3964MB (lfb 323x4MB) SWAP 0/1982MB (cached 0MB) IRAM 0/252kB(lfb 252kB) "
    "CPU [12%@1479,8%@1479,6%@1479,3%@1479] EMC_FREQ 3%@1600 GR3D_FREQ 0%@76 APE 25 "
    "PLL@31.5C CPU@34C PMIC@100C GPU@33C AO@40.5C thermal@33.5C "
    "POM_5V_IN 2354/2354 POM_5V_GPU 0/0 POM_5V_CPU 474/474"
)
NO_POWER = (
    "RAM 1549/3964MB (lfb 323x4MB) SWAP 0/1982MB (cached 0MB) "
    "CPU [12%@1479,8%@1479,off,off] EMC_FREQ 3%@1600 GR3D_FREQ 87%@921 APE 25 CPU@34C GPU@33C"
)


# ---------------------------------------------------------------------------------------------
# tegrastats
# ---------------------------------------------------------------------------------------------


def test_parse_agx_orin_sums_rails_without_input_rail() -> None:
    d = parse_tegrastats_line(AGX_ORIN)
    assert (d["ram_used_mb"], d["ram_total_mb"]) == (2845, 30593)
    assert (d["swap_used_mb"], d["swap_total_mb"]) == (0, 15296)
    assert d["gpu_load_pct"] == 0 and d["gpu_freq_mhz"] == 305
    assert d["emc_load_pct"] == 0
    assert len(d["cpu"]) == 12
    assert d["cpu"][0] == {"load_pct": 2, "freq_mhz": 729}
    assert d["cpu"][8:] == [None] * 4
    assert d["temps_c"]["tj"] == 47.75 and d["temps_c"]["gpu"] == -256.0
    assert d["rails_mw"]["VDD_GPU_SOC"] == (4353, 2769)
    assert d["rails_mw"]["VIN_SYS_5V0"] == (3623, 3541)
    assert d["rails_mw"]["VDDQ_VDD2_1V8AO"] == (303, 296)
    assert d["total_rail"] == "sum"
    assert d["total_mw"] == 4353 + 923 + 3623 + 0 + 303
    assert d["total_avg_mw"] == 2769 + 1187 + 3541 + 0 + 296


def test_parse_orin_nano_uses_vdd_in() -> None:
    d = parse_tegrastats_line(ORIN_NANO)
    assert (d["ram_used_mb"], d["ram_total_mb"]) == (1873, 7620)
    assert d["gpu_load_pct"] == 45 and d["gpu_freq_mhz"] == 624
    assert [c["freq_mhz"] if c else None for c in d["cpu"]] == [1510] * 4 + [None] * 2
    assert d["rails_mw"] == {
        "VDD_IN": (6145, 5837),
        "VDD_CPU_GPU_CV": (1734, 1502),
        "VDD_SOC": (1658, 1611),
    }
    assert (d["total_rail"], d["total_mw"], d["total_avg_mw"]) == ("VDD_IN", 6145, 5837)


def test_parse_xavier_nx_jetpack5() -> None:
    d = parse_tegrastats_line(XAVIER_NX_JP5)
    assert d["gpu_load_pct"] == 12 and d["gpu_freq_mhz"] == 114
    assert (d["total_rail"], d["total_mw"]) == ("VDD_IN", 5012)
    assert d["cpu"][:2] == [{"load_pct": 12, "freq_mhz": 1190}, {"load_pct": 9, "freq_mhz": 1190}]


def test_parse_agx_xavier_old_style_without_mw() -> None:
    d = parse_tegrastats_line(AGX_XAVIER_JP4)
    assert d["rails_mw"] == {
        "GPU": (0, 0),
        "CPU": (311, 311),
        "SOC": (931, 931),
        "CV": (0, 0),
        "VDDRQ": (155, 155),
        "SYS5V": (1781, 1781),
    }
    assert (d["total_rail"], d["total_mw"]) == ("sum", 311 + 931 + 155 + 1781)
    assert d["gpu_load_pct"] == 0 and "gpu_freq_mhz" not in d
    assert d["temps_c"]["cpu"] == 38.0  # "CPU@38C" is a temperature, "CPU 311/311" a rail


def test_parse_nano_pom_5v_in_and_no_power_line() -> None:
    d = parse_tegrastats_line(NANO_JP4)
    assert (d["total_rail"], d["total_mw"], d["total_avg_mw"]) == ("POM_5V_IN", 2354, 2354)
    assert "IRAM" not in d["rails_mw"] and d["rails_mw"]["POM_5V_CPU"] == (474, 474)
    assert d["gpu_freq_mhz"] == 76
    n = parse_tegrastats_line(NO_POWER)
    assert n["gpu_load_pct"] == 87 and n["ram_used_mb"] == 1549
    assert "total_mw" not in n and "rails_mw" not in n
    assert parse_tegrastats_line("") == {}


def test_tegrastats_sampler_reads_a_real_process(tmp_path: Path) -> None:
    exe = tmp_path / "tegrastats"
    exe.write_text(f'#!/bin/sh\nwhile true; do echo "{ORIN_NANO}"; sleep 0.02; done\n')
    exe.chmod(0o755)
    s = TegrastatsSampler(interval_s=0.02, executable=str(exe))
    with s:
        time.sleep(0.3)
    r = s.result
    assert r is not None and r.available, r
    assert r.source == "tegrastats"
    assert r.avg_w == pytest.approx(6.145)
    assert r.rails_w["VDD_SOC"] == pytest.approx(1.658)
    assert r.meta["total_rail"] == "VDD_IN"
    assert len(r.samples) >= 3 and r.duration_s is not None
    assert r.energy_j == pytest.approx(6.145 * r.duration_s)


def test_tegrastats_absent_here() -> None:
    s = TegrastatsSampler(executable="tegrastats-not-installed")
    assert "not found" in (s.probe() or "")
    with s:
        pass
    assert s.result is not None and not s.result.available
    assert "not found" in (s.result.reason or "")


# ---------------------------------------------------------------------------------------------
# Integration, energy per frame, fake sampler
# ---------------------------------------------------------------------------------------------


def test_integrate_power_trapezoid() -> None:
    assert integrate_power([(0.0, 1.0), (1.0, 3.0), (2.0, 3.0)]) == (5.0, 2.5, 2.0)
    assert integrate_power([(2.0, 3.0), (0.0, 1.0), (1.0, 3.0)]) == (5.0, 2.5, 2.0)
    assert integrate_power([(0.5, 4.0)]) == (0.0, 4.0, 0.0)
    with pytest.raises(EdgesegError):
        integrate_power([])


def test_energy_per_frame_and_fps_per_watt() -> None:
    assert energy_per_frame_mj(10.0, 50.0) == pytest.approx(200.0)  # 10 J/s / 50 f/s
    assert fps_per_watt(50.0, 10.0) == pytest.approx(5.0)
    assert energy_per_frame_mj(None, 50.0) is None
    assert energy_per_frame_mj(10.0, 0.0) is None
    assert fps_per_watt(50.0, 0.0) is None


class _ConstantSampler(PowerSampler):
    name = "fake"

    def __init__(self, watts: float, interval_s: float = 0.01) -> None:
        super().__init__(interval_s)
        self.watts = watts
        self.opened = self.closed = 0

    def probe(self) -> str | None:
        return None

    def _open(self) -> None:
        self.opened += 1

    def _close(self) -> None:
        self.closed += 1

    def _read(self) -> tuple[float, dict[str, float]]:
        return self.watts, {"GPU": self.watts - 1.0}


def test_fake_sampler_energy_per_frame_over_timed_loop() -> None:
    s = _ConstantSampler(5.0)
    with s:
        timing = time_callable(lambda: time.sleep(0.004), warmup_s=0, min_warmup=1, iters=15)
    r = s.result
    assert r is not None and r.available and r.source == "fake"
    assert (s.opened, s.closed) == (1, 1)
    assert r.avg_w == pytest.approx(5.0)
    assert r.rails_w == {"GPU": pytest.approx(4.0)}
    assert r.duration_s is not None and r.duration_s >= 0.06
    assert r.energy_j == pytest.approx(5.0 * r.duration_s)
    assert r.samples[0][0] == pytest.approx(0.0, abs=0.01)  # first reading at the start
    e = energy_per_frame_mj(r.avg_w, timing.stats.fps)
    assert e == pytest.approx(5.0 * timing.stats.mean_ms)  # W x ms/frame = mJ/frame
    d = r.to_dict()
    assert d["n_samples"] == len(r.samples) and "samples" not in d


class _FlakySampler(_ConstantSampler):
    def _read(self) -> tuple[float, dict[str, float]]:
        raise OSError("sensor gone")


def test_sampler_that_never_reads_reports_why() -> None:
    s = _FlakySampler(1.0)
    with s:
        time.sleep(0.03)
    assert s.result is not None and not s.result.available
    assert "sensor gone" in (s.result.reason or "")


# ---------------------------------------------------------------------------------------------
# RAPL
# ---------------------------------------------------------------------------------------------

MAX_RANGE_UJ = 262143328850  # a real package max_energy_range_uj


def _domain(root: Path, d: str, name: str, uj: int) -> None:
    (root / d).mkdir(parents=True)
    (root / d / "name").write_text(name + "\n")
    (root / d / "energy_uj").write_text(f"{uj}\n")
    (root / d / "max_energy_range_uj").write_text(f"{MAX_RANGE_UJ}\n")


def _set(root: Path, d: str, uj: int) -> None:
    tmp = root / d / "energy_uj.tmp"
    tmp.write_text(f"{uj}\n")
    os.replace(tmp, root / d / "energy_uj")


@pytest.fixture
def rapl_root(tmp_path: Path) -> Path:
    root = tmp_path / "powercap"
    _domain(root, "intel-rapl:0", "package-0", 1_000_000)
    _domain(root, "intel-rapl:0:0", "core", 400_000)
    _domain(root, "intel-rapl:0:1", "uncore", 10_000)
    _domain(root, "intel-rapl:1", "psys", 9_000_000)
    return root


def test_rapl_counter_picks_packages_and_unwraps(rapl_root: Path) -> None:
    c = RaplCounter(rapl_root)
    assert c.domains == ["intel-rapl:0"]  # psys and sub-domains would double count
    assert c.probe() is None
    assert c.read_j() == 0.0
    _set(rapl_root, "intel-rapl:0", 3_500_000)
    assert c.read_j() == pytest.approx(2.5)
    _set(rapl_root, "intel-rapl:0", MAX_RANGE_UJ - 500_000)
    assert c.read_j() == pytest.approx((MAX_RANGE_UJ - 1_500_000) / 1e6)
    _set(rapl_root, "intel-rapl:0", 250_000)  # wrapped: 500_000 to the top, then 250_000
    assert c.read_j() == pytest.approx((MAX_RANGE_UJ - 1_500_000 + 750_000) / 1e6)


def test_rapl_sampler_energy_over_window_with_wrap(rapl_root: Path) -> None:
    _set(rapl_root, "intel-rapl:0", MAX_RANGE_UJ - 1_000_000)
    s = RaplSampler(interval_s=30.0, root=rapl_root)  # no thread readings inside the window
    with s:
        time.sleep(0.02)
        _set(rapl_root, "intel-rapl:0", 2_000_000)  # 3 J including one wrap
    r = s.result
    assert r is not None and r.available and r.source == "rapl"
    assert r.energy_j == pytest.approx(3.0)
    assert r.duration_s is not None and r.duration_s >= 0.02
    assert r.avg_w == pytest.approx(3.0 / r.duration_s)
    assert r.meta["domains"] == {"intel-rapl:0": "package-0"}
    assert len(r.samples) == 1 and r.samples[0][1] == pytest.approx(r.avg_w)


def test_rapl_unavailable_reasons(tmp_path: Path, rapl_root: Path) -> None:
    assert "no RAPL domains" in (RaplSampler(root=tmp_path / "none").probe() or "")
    only_top = RaplCounter(rapl_root, domains=["intel-rapl:1"])
    assert only_top.probe() is None
    if os.geteuid() != 0:  # root reads anything
        (rapl_root / "intel-rapl:0" / "energy_uj").chmod(0o000)
        assert "not readable" in (RaplSampler(root=rapl_root).probe() or "")


# ---------------------------------------------------------------------------------------------
# jtop, NVML, auto_sampler (faked at the module boundary)
# ---------------------------------------------------------------------------------------------


class JtopException(Exception):
    pass


def _fake_jtop_module(alive: bool, tot_mw: int = 7300) -> types.ModuleType:
    class FakeJtop:
        def __init__(self, interval: float = 0.5) -> None:
            self.interval = interval
            self.started = False

        def start(self) -> None:
            if not alive:
                raise JtopException(
                    "The jtop.service is not active. Please run:\nsudo jtop --install-service"
                )
            self.started = True

        def close(self) -> None:
            self.started = False

        @property
        def power(self) -> dict[str, Any]:
            return {
                "rail": {
                    "VDD_GPU_SOC": {"power": 4000, "avg": 3900},
                    "VDD_CPU_CV": {"power": 1000, "avg": 1000},
                },
                "tot": {"power": tot_mw, "avg": tot_mw},
            }

        @property
        def memory(self) -> dict[str, Any]:
            return {"RAM": {"tot": 7800000, "used": 2048000, "shared": 512000}}

        nvpmodel = types.SimpleNamespace(name="MAXN", id=0)
        jetson_clocks = True

    mod = types.ModuleType("jtop")
    mod.jtop = FakeJtop  # type: ignore[attr-defined]
    mod.JtopException = JtopException  # type: ignore[attr-defined]
    return mod


def test_jtop_unavailable_reason_without_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jtop", _fake_jtop_module(alive=False))
    s = JtopSampler()
    reason = s.probe()
    assert reason is not None and "jtop.service is not active" in reason and "\n" not in reason
    with s:
        pass
    assert s.result is not None and not s.result.available and s.result.source == "jtop"


def test_jtop_sampler_reads_total_and_stamps_clocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jtop", _fake_jtop_module(alive=True))
    s = JtopSampler(interval_s=0.01)
    with s:
        time.sleep(0.05)
    r = s.result
    assert r is not None and r.available
    assert r.avg_w == pytest.approx(7.3)
    assert r.rails_w == {"VDD_GPU_SOC": pytest.approx(4.0), "VDD_CPU_CV": pytest.approx(1.0)}
    assert r.meta == {"nvpmodel": "MAXN", "nvpmodel_id": 0, "jetson_clocks": True}


def test_real_jtop_here_reports_unavailable() -> None:
    reason = JtopSampler().probe()
    if reason is None:
        pytest.skip("a jtop service is running on this machine")
    assert "jtop" in reason


def _fake_pynvml(energy: bool, fail_init: bool = False) -> types.ModuleType:
    class NVMLError(Exception):
        pass

    state = {"mj": 1_000_000}
    mod = types.ModuleType("pynvml")

    def init() -> None:
        if fail_init:
            raise NVMLError("NVML Shared Library Not Found")

    def energy_fn(h: Any) -> int:
        if not energy:
            raise NVMLError("Not Supported")
        state["mj"] += 500  # 0.5 J per reading
        return state["mj"]

    mod.NVMLError = NVMLError  # type: ignore[attr-defined]
    mod.nvmlInit = init  # type: ignore[attr-defined]
    mod.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    mod.nvmlDeviceGetCount = lambda: 1  # type: ignore[attr-defined]
    mod.nvmlDeviceGetHandleByIndex = lambda i: object()  # type: ignore[attr-defined]
    mod.nvmlDeviceGetName = lambda h: b"NVIDIA H100"  # type: ignore[attr-defined]
    mod.nvmlDeviceGetTotalEnergyConsumption = energy_fn  # type: ignore[attr-defined]
    mod.nvmlDeviceGetPowerUsage = lambda h: 123456  # type: ignore[attr-defined]
    return mod


def test_nvml_without_library_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(True, fail_init=True))
    assert "NVML unavailable: NVML Shared Library Not Found" == NvmlSampler().probe()


def test_real_nvml_here_reports_unavailable() -> None:
    reason = NvmlSampler().probe()
    if reason is None:
        pytest.skip("an NVIDIA GPU with NVML is present")
    assert "NVML" in reason or "nvidia-ml-py" in reason


def test_nvml_energy_counter_preferred(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(energy=True))
    s = NvmlSampler(interval_s=30.0)
    with s:
        pass
    r = s.result
    assert r is not None and r.available
    assert r.meta["method"] == "energy" and r.meta["gpu"] == "NVIDIA H100"
    assert r.energy_j == pytest.approx(0.5)  # two readings, 500 mJ apart


def test_nvml_power_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(energy=False))
    s = NvmlSampler(interval_s=0.01)
    with s:
        time.sleep(0.03)
    r = s.result
    assert r is not None and r.available and r.meta["method"] == "power"
    assert r.avg_w == pytest.approx(123.456)


def test_auto_sampler_order_reasons_and_null(
    monkeypatch: pytest.MonkeyPatch, rapl_root: Path
) -> None:
    monkeypatch.setitem(sys.modules, "jtop", _fake_jtop_module(alive=False))
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(True, fail_init=True))
    monkeypatch.setitem(
        power.SAMPLERS, "rapl", lambda interval_s: RaplSampler(interval_s, root=rapl_root)
    )
    s = auto_sampler(["jtop", "nvml", "rapl"])
    assert isinstance(s, RaplSampler)
    assert set(s.skipped) == {"jtop", "nvml"}

    monkeypatch.setitem(
        power.SAMPLERS, "rapl", lambda interval_s: RaplSampler(interval_s, root=rapl_root / "x")
    )
    monkeypatch.setenv("PATH", str(rapl_root))  # no tegrastats
    none = auto_sampler()
    assert isinstance(none, NullSampler)
    assert set(none.skipped) == {"jtop", "tegrastats", "nvml", "rapl"}
    with none:
        pass
    assert none.result is not None and not none.result.available
    assert none.result.reason is not None
    for name in ("jtop:", "tegrastats:", "nvml:", "rapl:"):
        assert name in none.result.reason
    with pytest.raises(EdgesegError, match="unknown power source"):
        auto_sampler("watts-up")


# ---------------------------------------------------------------------------------------------
# Clocks and power mode
# ---------------------------------------------------------------------------------------------


def test_parse_nvpmodel_query() -> None:
    assert parse_nvpmodel_query("NV Fan Mode:quiet\nNV Power Mode: MAXN\n0\n") == {
        "nvpmodel": "MAXN",
        "nvpmodel_id": 0,
    }
    assert parse_nvpmodel_query("NV Power Mode: 15W\n1\n") == {"nvpmodel": "15W", "nvpmodel_id": 1}
    assert parse_nvpmodel_query("nvpmodel: command failed") is None


def test_jetson_clock_state_off_jetson(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "jtop", _fake_jtop_module(alive=False))
    monkeypatch.setenv("PATH", str(tmp_path))
    state, reason = jetson_clock_state()
    assert state is None
    assert reason is not None and "not a Jetson" in reason and "jtop" in reason
    assert clock_warning(state) is None


def test_jetson_clock_state_sources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "jtop", _fake_jtop_module(alive=False))
    exe = tmp_path / "nvpmodel"
    exe.write_text('#!/bin/sh\nprintf "NV Power Mode: 15W\\n1\\n"\n')
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    state, reason = jetson_clock_state()
    assert reason is None
    assert state == {
        "nvpmodel": "15W",
        "nvpmodel_id": 1,
        "jetson_clocks": None,
        "source": "nvpmodel",
    }
    monkeypatch.setitem(sys.modules, "jtop", _fake_jtop_module(alive=True))
    state, reason = jetson_clock_state()
    assert state == {"nvpmodel": "MAXN", "nvpmodel_id": 0, "jetson_clocks": True, "source": "jtop"}


def test_clock_warning_messages() -> None:
    assert clock_warning({"nvpmodel": "MAXN", "jetson_clocks": True}) is None
    off = clock_warning({"nvpmodel": "15W", "jetson_clocks": False})
    assert off is not None and "not locked" in off and "15W" in off and "jetson_clocks" in off
    unknown = clock_warning({"nvpmodel": "MAXN", "jetson_clocks": None})
    assert unknown is not None and "could not tell" in unknown


# ---------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------


def test_parse_proc_status_and_peak_rss(tmp_path: Path) -> None:
    text = "Name:\tpython\nVmPeak:\t 3060 kB\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n"
    assert memory.parse_proc_status(text) == {"VmPeak": 3060, "VmHWM": 204800, "VmRSS": 102400}
    f = tmp_path / "status"
    f.write_text(text)
    assert memory.peak_rss(f) == {
        "available": True,
        "peak_rss_mb": 200.0,
        "rss_mb": 100.0,
        "source": "VmHWM",
    }
    fallback = memory.peak_rss(tmp_path / "missing")
    assert fallback["available"] and fallback["source"] == "getrusage"
    assert fallback["peak_rss_mb"] > 10  # this process has torch loaded
    here = memory.peak_rss()
    assert here["available"] and here["peak_rss_mb"] >= here["rss_mb"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")
def test_cuda_memory_unavailable_here() -> None:
    assert memory.cuda_memory() == {"available": False, "reason": "torch sees no CUDA device"}
    memory.reset_cuda_peak()  # no-op, no error


def test_jetson_memory_from_jtop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jtop", _fake_jtop_module(alive=False))
    off = memory.jetson_memory()
    assert off["available"] is False and "jtop.service is not active" in off["reason"]
    monkeypatch.setitem(sys.modules, "jtop", _fake_jtop_module(alive=True))
    on = memory.jetson_memory()
    assert on == {
        "available": True,
        "ram_used_mb": 2000.0,
        "ram_total_mb": 7800000 / 1024,
        "gpu_shared_mb": 500.0,
        "source": "jtop",
    }
    report = memory.memory_report()
    assert set(report) == {"rss", "cuda", "jetson"}
