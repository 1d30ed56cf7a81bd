"""Parsing Jetson's ``tegrastats`` lines and ``nvpmodel -q`` output (pure: no processes, no files).

:func:`parse_tegrastats_line` reads RAM, CPU, GPU, EMC, temperatures and the power rails of one
line, with the module total (:data:`TOTAL_RAILS`); :func:`parse_nvpmodel_query` reads the power
mode. :class:`~edgeseg.bench.power_sensors.TegrastatsSampler` and
:func:`~edgeseg.bench.power.jetson_clock_state` feed them.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["TOTAL_RAILS", "parse_nvpmodel_query", "parse_tegrastats_line"]

# Rails that measure the whole module input; when one is present it *is* the total (adding the
# other rails would double count). Jetson Nano: POM_5V_IN; TX2, Xavier NX, Orin NX/Nano: VDD_IN;
# Thor carrier board: VIN. AGX Xavier and AGX Orin have no input rail: their rails (AGX Orin:
# VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0, VDDQ_VDD2_1V8AO) are separate supplies, so the total is
# their sum - the same rule as jetson-stats' total_power. VIN_SYS_5V0 alone is only the 5 V
# system supply and would miss the CPU and GPU.
TOTAL_RAILS: tuple[str, ...] = ("VIN", "VDD_IN", "POM_5V_IN")

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


def parse_nvpmodel_query(text: str) -> dict[str, Any] | None:
    """Parse ``nvpmodel -q`` output (``NV Power Mode: MAXN`` then the mode id on its own line)."""
    m = re.search(r"NV Power Mode:\s*(\S.*?)\s*$", text, re.MULTILINE)
    if not m:
        return None
    out: dict[str, Any] = {"nvpmodel": m[1]}
    if mid := re.search(r"^\s*(\d+)\s*$", text[m.end() :], re.MULTILINE):
        out["nvpmodel_id"] = int(mid[1])
    return out
