"""Shared by the benchmark scripts: the machine line and docs/benchmarks.md sections."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nMeasured figures, one section per script in benchmarks/.\n"


def cpu_model() -> str:
    """The CPU's marketing name (/proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> str:
    """The SIMD features that decide CPU speed, present and missing (AVX2/FMA/AVX-512/VNNI/bf16)."""
    try:
        flags = next(line.split(":", 1)[1].split() for line in
                     Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "flags unknown"
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16")
    have = [f for f in wanted if f in flags]
    missing = [f for f in wanted if f not in flags]
    return " + ".join(have) + (f", no {', '.join(missing)}" if missing else "")


def load_average() -> str:
    """1/5/15-minute load averages, e.g. ``0.8/1.2/1.5``: a loaded machine skews timings."""
    try:
        return "/".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def machine_line() -> str:
    """CPU, cores, OS, versions and the load at start: figures mean nothing without them."""
    from edgeseg.bench.report import machine, versions

    m, v = machine(), versions()
    return (f"{m['cpu']} ({cpu_flags()}), {m.get('usable_cpus', m['logical_cpus'])} cores, "
            "no GPU used; "
            f"{m['system']}; Python {v['python']}, torch {v['torch']}, onnxruntime "
            f"{v['onnxruntime']}; load average {m.get('load_avg_1m', '?')} at start")


def write_section(name: str, body: str, doc: Path = DOC) -> None:
    """Replace (or append) the ``<!-- name:start -->``...``<!-- name:end -->`` block of ``doc``,
    leaving the other scripts' sections as they are."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    body = body.strip().removeprefix(start).removesuffix(end).strip()
    block = f"{start}\n{body}\n{end}"
    text = doc.read_text() if doc.exists() else HEADER
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    from edgeseg.atomic import atomic_write_text

    atomic_write_text(doc, text)  # no half-written doc on a crash


def publish(section: str | None, table: Any, md: list[str],
            rows: Iterable[Sequence[str]]) -> None:
    """Add each row to the rich ``table`` and as a markdown row to ``md``, print the table, and
    write ``md`` as the docs section ``section`` (None: print only, for ``--no-write``)."""
    from rich.console import Console

    for cells in rows:
        table.add_row(*cells)
        md.append("| " + " | ".join(cells) + " |")
    Console().print(table)
    if section is not None:
        write_section(section, "\n".join(md))
