"""`edgeseg demo` wall time per stage, with the CPU named, and the accuracy it ends with.

    python benchmarks/demo_time.py                  # the demo in this process (installed venv)
    python benchmarks/demo_time.py --clean-clone    # git clone + `make demo` (install included)

The README's demo time quotes this record. ``--clean-clone`` clones this checkout's HEAD into
a temporary folder and runs ``make setup`` then ``make demo`` there, timing both (pip's cache
is whatever this machine has). Either way the stage times, val mIoU, INT8 agreement and INT8
mIoU next to FP32 come from the demo's ``summary.json``. Target: the whole demo within
``--target-min`` minutes (10) and val mIoU >= 0.55. Writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import cpu_flags, cpu_model, load_average, machine_line, write_section  # noqa: E402

TARGET_MIOU = 0.55


def in_process(out: Path, quick: bool = False) -> dict[str, Any]:
    from edgeseg.demo import DemoSettings, run_demo

    t = time.perf_counter()
    settings = DemoSettings.quick() if quick else DemoSettings()
    summary = run_demo(out, settings, log=lambda m: print(m, file=sys.stderr))
    return {"summary": summary, "stages_s": {"demo": time.perf_counter() - t}}


def clean_clone(work: Path) -> dict[str, Any]:
    clone = work / "edgeseg"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    env = {**os.environ, "CI": "true"}
    env.pop("PYTHONPATH", None)
    stages: dict[str, float] = {}
    for target in ("setup", "demo"):
        t = time.perf_counter()
        subprocess.run(["make", target], cwd=clone, env=env, check=True)
        stages[f"make {target}"] = time.perf_counter() - t
    summary = json.loads((clone / "outputs" / "summary.json").read_text())
    return {"summary": summary, "stages_s": stages}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clean-clone", action="store_true", help="time install + demo from a clone")
    ap.add_argument("--target-min", type=float, default=10.0)
    ap.add_argument("--quick", action="store_true",
                    help="DemoSettings.quick(): a smoke run of this script (never written)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    from rich.console import Console
    from rich.table import Table

    host, load0 = machine_line(), load_average()
    with tempfile.TemporaryDirectory() as tmp:
        rec = (clean_clone(Path(tmp)) if args.clean_clone
               else in_process(Path(tmp) / "outputs", args.quick))
    load1 = load_average()
    s = rec["summary"]
    total = sum(rec["stages_s"].values())
    miou, cal, tr = s["eval"]["miou"], s["calibrate"], s["train"]
    sched = tr.get("schedule") or {}
    time_ok = total <= args.target_min * 60
    miou_ok = miou >= TARGET_MIOU
    rows = [(k, f"{v:.0f} s") for k, v in rec["stages_s"].items()]
    rows += [(f"  stage: {k}", f"{v:.0f} s") for k, v in s["timings_s"].items()]
    rows += [
        ("training", f"{tr['iterations']} iterations at crop {tr.get('crop')}, "
         + (f"budget {sched['time_budget_s']:.0f} s, measured {sched.get('steps_per_s')} it/s"
            if sched.get("time_budget_s") else "no time budget")),
        ("val mIoU (FP32 checkpoint)", f"{miou:.3f}"),
        ("calibrate: FP32 / INT8 mIoU", f"{_f(cal.get('miou_fp32'))} / {_f(cal.get('miou_int8'))}"),
        ("calibrate: INT8 argmax agreement", _f(cal.get("agreement"), 4)),
        (f"total (target <= {args.target_min:.0f} min)",
         f"{total / 60:.1f} min {'PASS' if time_ok else 'MISS'}"),
        (f"val mIoU (target >= {TARGET_MIOU})", f"{miou:.3f} {'PASS' if miou_ok else 'MISS'}"),
    ]
    table = Table(title="edgeseg demo wall time")
    table.add_column("measure")
    table.add_column("value")
    for r in rows:
        table.add_row(*r)
    Console(stderr=True).print(table)
    how = ("`python benchmarks/demo_time.py --clean-clone`: `git clone` of this checkout, then "
           "`make setup` (venv + pip install, with this machine's pip cache) and `make demo`"
           if args.clean_clone else
           "`python benchmarks/demo_time.py`: `run_demo(DemoSettings())` in an installed "
           "environment (install not included)")
    md = ["## `edgeseg demo`: wall time per stage\n", f"Machine: {host}.\n",
          f"{how}. Load average (1/5/15 min) {load0} before, {load1} after "
          "(a shared machine stretches every stage, and a time-budgeted training stage then "
          "runs fewer iterations).\n", "| measure | value |", "|---|---|"]
    md += [f"| {a} | {b} |" for a, b in rows]
    print(json.dumps({"cpu": cpu_model(), "flags": cpu_flags(), "stages_s": rec["stages_s"],
                      "timings_s": s["timings_s"], "train": tr, "eval": s["eval"],
                      "calibrate": cal, "load_before": load0, "load_after": load1}, default=str))
    if not (args.no_write or args.quick):
        write_section("demo_time", "\n".join(md))


def _f(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


if __name__ == "__main__":
    main()
