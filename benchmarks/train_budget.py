"""How well a time budget's probe predicts the rate a training run goes on at (CPU).

    python benchmarks/train_budget.py --runs 3 --iters 150

``edgeseg train --time-budget`` fixes the run's length from the step rate it times at the start
(``edgeseg.train.budget``) and plans for ``BUDGET_MARGIN`` of it, so the budget holds when the
probed rate overstates the later rate by at most 1 / BUDGET_MARGIN. Each run trains the demo's
recipe (cpu-quick, 30 warm-up steps) for ``--iters`` steps without a budget, timing every step,
and compares two probes with the rate of the steps after the warm-up: the fewest probe steps
(steps 2-9) and the whole warm-up (steps 2-30, what the loop times). Writes its section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from edgeseg.demo import DemoSettings  # light: its heavy imports are lazy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import load_average, machine_line, publish  # noqa: E402

WARMUP = DemoSettings().warmup_iters or 0  # the demo's warm-up, which its budget times


def step_times(data: Path, out: Path, iters: int) -> list[float]:
    """perf_counter after each step (index i: after step i + 1) of one cpu-quick run."""
    from edgeseg.train.config import load_train_config
    from edgeseg.train.loop import train

    cfg = load_train_config(None, recipe="cpu-quick", data=str(data), out=str(out), seed=0,
                            iters=iters, warmup_iters=WARMUP, val_split="")
    times: list[float] = []
    train(cfg, on_step=lambda it, info: times.append(time.perf_counter()), log=lambda m: None)
    return times


def rate(times: list[float], first: int, last: int) -> float:
    """Steps per second over steps first+1..last (1-based), as the loop times them."""
    return (last - first) / (times[last - 1] - times[first - 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--iters", type=int, default=150)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if args.iters < 2 * WARMUP:
        raise SystemExit(f"--iters: expected >= {2 * WARMUP}, got {args.iters}")
    from rich.table import Table

    from edgeseg.data.synthetic import write_synthetic_cityscapes
    from edgeseg.train.budget import BUDGET_MARGIN, PROBE_SKIP, PROBE_STEPS, probe_end

    host, load_before = machine_line(), load_average()
    few, warm = PROBE_SKIP + PROBE_STEPS, probe_end(0, WARMUP)
    bound = 1 / BUDGET_MARGIN
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "synth"
        write_synthetic_cityscapes(data, train=160, val=0, height=128, width=256, seed=0)
        for k in range(args.runs):
            t = step_times(data, Path(tmp) / f"run{k}", args.iters)
            later = rate(t, warm, args.iters)
            rows.append((k + 1, rate(t, PROBE_SKIP, few) / later,
                         rate(t, PROBE_SKIP, warm) / later, later))
    cols = ["run", f"steps {PROBE_SKIP + 1}-{few} / later", f"steps {PROBE_SKIP + 1}-{warm} / later",
            f"later it/s (steps {warm + 1}-{args.iters})"]
    table = Table(title=f"probed rate / later rate (bound: <= {bound:.2f})")
    for c in cols:
        table.add_column(c, justify="right")
    md = ["## Time budget: the probe against the run's rate (benchmarks/train_budget.py)\n",
          f"Machine: {host}.\n",
          f"`python benchmarks/train_budget.py --runs {args.runs} --iters {args.iters}`: the "
          f"demo's recipe (cpu-quick, {WARMUP} warm-up steps, 160 scenes at 128x256), every step "
          f"timed. A budgeted run plans for {BUDGET_MARGIN:g} of its probed rate, so the budget "
          f"holds while probed / later <= {bound:.2f} (PASS) and is under-used by the amount "
          f"the ratio falls below 1. Load average (1/5/15 min) {load_before} before, "
          f"{load_average()} after.\n",
          "| " + " | ".join(cols) + " |", "|---:" * len(cols) + "|"]
    cells = ([str(k), *(f"{r:.3f} {'PASS' if r <= bound else 'MISS'}" for r in (a, b)),
              f"{later:.3f}"] for k, a, b, later in rows)
    publish(None if args.no_write else "train_budget", table, md, cells)


if __name__ == "__main__":
    main()
