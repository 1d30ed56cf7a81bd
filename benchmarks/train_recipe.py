"""Val mIoU against training time for training recipes on synthetic scenes (CPU).

    python benchmarks/train_recipe.py --variants "cpu-quick" "cpu-quick optimizer=sgd lr=0.05"

Each variant is a recipe name (edgeseg.train.config.RECIPES) followed by ``key=value``
overrides of TrainConfig fields. All variants train DESANet-HN from random init on the same
synthetic scenes (160 train, 24 val, 128x256, seed 0) and are evaluated every ``--eval-every``
iterations; the table gives val mIoU at each point and the seconds spent training (evaluation
excluded). Runs are sequential, so compare seconds only within one run of this script.
Writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import machine_line, publish  # noqa: E402


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``"cpu-quick lr=0.004 batch=8"`` -> ``("cpu-quick", {"lr": 0.004, "batch": 8})``."""
    import yaml

    recipe, *pairs = text.split()
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--variants: expected key=value, got '{pair}' in '{text}'")
        overrides[key] = yaml.safe_load(value)  # numbers, booleans and [a, b] lists
    return recipe, overrides


def run_variant(text: str, data: Path, work: Path, eval_every: int) -> dict[str, Any]:
    from edgeseg.train.config import load_train_config
    from edgeseg.train.loop import train

    recipe, overrides = parse_variant(text)
    cfg = load_train_config(None, recipe=recipe, model="desanet-hn", data=str(data),
                            out=str(work / f"run{abs(hash(text))}"), seed=0, eval_every=eval_every,
                            **overrides)
    curve: list[tuple[int, float, float]] = []
    t_train = [0.0]
    last = [time.perf_counter()]

    def on_step(it: int, _info: dict[str, float]) -> None:
        now = time.perf_counter()
        t_train[0] += now - last[0]
        last[0] = now

    def log(msg: str) -> None:  # "iteration N: val mIoU X" after each in-run evaluation
        if msg.startswith("iteration "):
            it, miou = msg.removeprefix("iteration ").split(": val mIoU ")
            curve.append((int(it), float(miou), t_train[0]))
        last[0] = time.perf_counter()  # evaluation time is not training time

    result = train(cfg, on_step=on_step, log=log)
    curve.append((result.iteration, float(result.eval["miou"]), t_train[0]))
    return {"variant": text, "iters": cfg.iters, "curve": curve}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=["cpu-quick"])
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--train-images", type=int, default=160, help="synthetic training scenes")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    from rich.table import Table

    from edgeseg.data.synthetic import write_synthetic_cityscapes

    host = machine_line()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "synth"
        write_synthetic_cityscapes(data, train=args.train_images, val=24, height=128, width=256,
                                   seed=0)
        runs = [run_variant(v, data, Path(tmp), args.eval_every) for v in args.variants]
    table = Table(title="val mIoU (training seconds) by iteration")
    table.add_column("variant")
    points = sorted({it for r in runs for it, _, _ in r["curve"]})
    for it in points:
        table.add_column(str(it), justify="right")
    md = ["## Training recipe: val mIoU against training time\n", f"Machine: {host}.\n",
          "`python benchmarks/train_recipe.py --variants "
          + " ".join(f'"{v}"' for v in args.variants)
          + f" --eval-every {args.eval_every} --train-images {args.train_images}`: DESANet-HN "
          f"from random init on {args.train_images} synthetic "
          "scenes at 128x256 (seed 0), val = 24 other scenes; cells are val mIoU (training "
          "seconds, evaluation excluded) at each iteration.\n",
          "| variant | " + " | ".join(str(p) for p in points) + " |",
          "|---" * (len(points) + 1) + "|"]
    def cells(r: dict[str, Any]) -> list[str]:
        at = {it: f"{m:.3f} ({s:.0f} s)" for it, m, s in r["curve"]}
        return [r["variant"]] + [at.get(p, "") for p in points]

    publish(None if args.no_write else "train_recipe", table, md, map(cells, runs))


if __name__ == "__main__":
    main()
