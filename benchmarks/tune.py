"""`edgeseg tune` on this CPU: DESANet-HN for 2x its FP32 full-size FPS, at most 1 mIoU point
lost on the synthetic val split.

    python benchmarks/tune.py [--weights CKPT] [--iters 400] [--size 256x512] [--budget 20m]
                              [--duration-s 1.5] [--no-write]

Model: DESANet-HN trained here with the cpu-quick recipe for ``--iters`` iterations (few: a
quick checkpoint whose predictions have real structure, not a converged one) on synthetic
scenes at ``--size``, unless ``--weights`` gives one. "Full size" is ``--size``: the FP32
ONNX at that size, 2 onnxruntime threads, timed by ``run_bench`` first; the target is 2x that
network FPS. The tune's space is the default one of the x86-cpu profile below the full size:
the size ladder (1, 0.75, 0.5, 0.375, 0.25), fp32/int8, native/portable deformable conv,
1/2 threads; mIoU on the val split (8 images), INT8 calibrated on train scenes.

PASS when the pick reaches the target within the mIoU bound. The table and the
``<!-- tune:start -->`` section of docs/benchmarks.md report the pick, the FPS gain over the
FP32 full-size figure, its mIoU drop, and configurations measured vs the space's size.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import machine_line, write_section

SPEEDUP, MAX_DROP = 2.0, 1.0


def train_checkpoint(root: Path, out: Path, iters: int) -> Path:
    from edgeseg.train.config import load_train_config
    from edgeseg.train.loop import train

    cfg = load_train_config(None, recipe="cpu-quick", model="desanet-hn", data=str(root),
                            out=str(out), crop=(128, 256), iters=iters, seed=0)
    return Path(train(cfg, log=lambda _m: None).checkpoint)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=Path, help="DESANet-HN checkpoint (default: train one)")
    ap.add_argument("--iters", type=int, default=400, help="training iterations when training")
    ap.add_argument("--random-init", action="store_true",
                    help="an untrained DESANet-HN instead of training (speed figures only: "
                    "its mIoU drop says nothing)")
    ap.add_argument("--eval-images", type=int, default=8)
    ap.add_argument("--size", default="256x512", help="full size (synthetic scenes, reference)")
    ap.add_argument("--budget", default="20m")
    ap.add_argument("--duration-s", type=float, default=1.5, help="timed seconds per config")
    ap.add_argument("--work", type=Path, help="keep files here (default: a temporary folder)")
    ap.add_argument("--no-write", action="store_true", help="do not touch docs/benchmarks.md")
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    from edgeseg.bench.report import run_bench
    from edgeseg.data.synthetic import write_synthetic_cityscapes
    from edgeseg.sizes import parse_hw
    from edgeseg.tune.space import size_ladder
    from edgeseg.durations import parse_duration
    from edgeseg.tune.tune import tune

    console = Console()
    h, w = parse_hw(args.size, "--size", minimum=64)
    machine = machine_line()
    work = args.work or Path(tempfile.mkdtemp(prefix="edgeseg-tune-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    root = work / "data"
    if not (root / "leftImg8bit").is_dir():
        console.print(f"writing synthetic scenes at {h}x{w}")
        write_synthetic_cityscapes(root, train=160, val=24, height=h, width=w, seed=0)
    t0 = time.perf_counter()
    weights = args.weights
    trained = "given"
    if weights is None and args.random_init:
        import torch

        from edgeseg.artifacts.checkpoint import default_meta
        from edgeseg.models.desanet import build_model
        from edgeseg.train.checkpoint import save_model_only

        torch.manual_seed(0)
        weights = save_model_only(work / "hn-random.pt", build_model("desanet-hn", aux=False),
                                  default_meta("desanet-hn", (h, w)))
        trained = ("random-init DESANet-HN, seed 0 (untrained: the FPS figures hold, the mIoU "
                   "drop of an untrained net says nothing about a trained one)")
    elif weights is None:
        weights = work / "run" / "best.pt"
        found = sorted((work / "run").glob("**/*.pt")) if (work / "run").is_dir() else []
        if found:
            weights = found[-1]
        else:
            console.print(f"training DESANet-HN, cpu-quick recipe, {args.iters} iterations")
            weights = train_checkpoint(root, work / "run", args.iters)
        trained = f"cpu-quick recipe, {args.iters} iterations, synthetic train split"
    train_s = time.perf_counter() - t0

    console.print(f"FP32 full size {h}x{w}: onnxruntime, 2 threads")
    base = run_bench(weights=weights, backend="onnxruntime", precision="fp32", height=h,
                     width=w, threads=2, duration_s=3 * args.duration_s, warmup_s=0.5,
                     profile="x86-cpu")
    f0 = base["fps"]
    target = SPEEDUP * f0
    sizes = ",".join(f"{a}x{b}" for a, b in size_ladder(h, w))
    t1 = time.perf_counter()
    report = tune(weights=weights, profile="x86-cpu", target_fps=target, data=root,
                  max_miou_drop=MAX_DROP, budget_s=parse_duration(args.budget),
                  space=f"size={sizes}", out=work / "tuned.yaml", eval_images=args.eval_images,
                  calib_images=16, duration_s=args.duration_s, warmup_s=0.3,
                  step=lambda m: console.print(f"  {m}"))
    tune_s = time.perf_counter() - t1
    pick = report["measured"][report["pick"]]
    ok = report["met_target"]
    gain = pick["fps"] / f0
    verdict = "PASS" if ok else "MISS"

    table = Table(title=f"edgeseg tune: DESANet-HN, target {target:.1f} FPS (2x FP32 {h}x{w})")
    for col in ("config", "FPS", "e2e FPS", "p99 ms", "mIoU drop", "agreement", ""):
        table.add_column(col, justify="left" if col == "config" else "right")
    for i, r in enumerate(report["measured"]):
        mark = ("pick " if i == report["pick"] else "") + ("P" if i in report["pareto"] else "")
        table.add_row(r["label"], f"{r['fps']:.2f}", f"{r['e2e_fps']:.2f}", f"{r['p99_ms']:.1f}",
                      f"{r['miou_drop']:.2f}", f"{r['agreement']:.4f}", mark)
    console.print(table)
    summary = (f"FP32 {h}x{w} (2 threads): {f0:.2f} FPS; target {target:.2f} FPS; pick "
               f"{pick['label']}: {pick['fps']:.2f} FPS ({gain:.2f}x), mIoU drop "
               f"{pick['miou_drop']:.2f} points (reference mIoU "
               f"{100 * report['reference']['miou']:.1f}); measured {len(report['measured'])} "
               f"of {report['space_size']} configurations ({len(report['pruned'])} pruned, "
               f"{len(report['left'])} left by the budget); tune {tune_s / 60:.1f} min -> "
               f"{verdict}")
    console.print(summary)
    console.print(report["message"])

    if args.no_write:
        return
    rows = "\n".join(
        f"| {r['label']}{' **(pick)**' if i == report['pick'] else ''} | {r['fps']:.2f} | "
        f"{r['e2e_fps']:.2f} | {r['p99_ms']:.1f} | {r['miou_drop']:.2f} | "
        f"{r['agreement']:.4f} | {'yes' if i in report['pareto'] else ''} |"
        for i, r in enumerate(report["measured"]))
    caveat = ""
    if args.random_init:
        caveat = ("\nReading: the network is untrained (reference mIoU about 1%), so its mIoU "
                  "\"drop\" is noise (smaller inputs can even score higher) and the pick follows "
                  "that noise; what this run shows is the FPS of every configuration and the "
                  "search itself (ceilings, order, budget, record). Run with --weights on a "
                  "trained checkpoint for a pick that means something.\n")
    one, two = ({r["label"].rsplit(" ", 1)[0]: r["fps"] for r in report["measured"]
                 if r["label"].endswith(s)} for s in (" 1t", " 2t"))
    slower = sum(1 for k in one if k in two and two[k] < one[k])
    if slower:
        caveat += (f"\nThreads: 2 onnxruntime threads were slower than 1 in {slower} of "
                   f"{len([k for k in one if k in two])} pairs here (the machine is shared: the "
                   "second core is busy), which is why the FP32 2-thread baseline and the "
                   "in-tune 2-thread figures differ.\n")
    pruned = "; ".join(f"{p['label']}: {p['reason']}" for p in report["pruned"][:6]) or "none"
    body = f"""## Tune (`benchmarks/tune.py`)

`edgeseg tune` for DESANet-HN: target 2x the FP32 full-size ({h}x{w}) network FPS with at
most {MAX_DROP:g} mIoU point lost on the synthetic val split ({args.eval_images} images).
Machine: {machine}. This CPU: AMD EPYC, 2 cores, AVX2 + FMA, no AVX-512, no VNNI, no bf16.
Checkpoint: {trained} ({train_s / 60:.1f} min); reference mIoU
{100 * report['reference']['miou']:.1f}.

| | figure |
|---|---|
| FP32 {h}x{w}, 2 threads | {f0:.2f} FPS |
| target | {target:.2f} FPS |
| pick | {pick['label']} |
| pick FPS / gain | {pick['fps']:.2f} FPS / {gain:.2f}x |
| pick mIoU drop | {pick['miou_drop']:.2f} points |
| configurations measured / space | {len(report['measured'])} / {report['space_size']} ({len(report['pruned'])} pruned, {len(report['left'])} left by the {args.budget} budget) |
| tune time | {tune_s / 60:.1f} min |
| result | **{verdict}** |

| config | FPS | e2e FPS | p99 ms | mIoU drop | agreement | Pareto |
|---|---:|---:|---:|---:|---:|---|
{rows}

Pruned (roofline ceiling on this CPU's peak, or not runnable): {pruned}.
{report['message']}
{caveat}"""
    write_section("tune", body)
    console.print("wrote docs/benchmarks.md (tune section)")


if __name__ == "__main__":
    main()
