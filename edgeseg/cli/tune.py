"""`edgeseg tune`: options, one call to :func:`edgeseg.tune.tune`, a table and the pick."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgeseg.cli._util import (
    JsonOpt,
    OnnxAlias,
    WeightsAlias,
    command,
    console,
    deprecated,
    emit_json,
    model_option,
    progress,
)
from edgeseg.errors import EdgesegError

__all__ = ["tune_cli"]

SPACE_HELP = (
    "Replace axes of the search space: key=v1,v2;key=... with keys size (HxW, multiples of 32), "
    "precision, dcn (native, portable), threads, backend, dla, cuda_graphs, opt_level, "
    "channels_last; e.g. 'size=256x512,384x768;precision=fp32,int8;threads=1,2'."
)


@command("tune", help="Find the most accurate configuration (size, precision, deformable conv, "
         "threads) that reaches a target FPS on this device, and write it as a profile.")
def tune_cli(
    model: str | None = model_option(
        "Checkpoint (.pt), or an FP32 ONNX (its size; any size with --dynamic)."),
    weights: Path | None = WeightsAlias,
    onnx: Path | None = OnnxAlias,
    profile: str = typer.Option("auto", "--profile", "-p", help="Base device profile."),
    target_fps: float = typer.Option(..., "--target-fps", help="Network FPS to reach."),
    max_miou_drop: float | None = typer.Option(
        None, "--max-miou-drop", help="Accuracy bound with --data: mIoU points below the FP32 "
        "full-size reference (default 1.0 with --data)."),
    min_agreement: float | None = typer.Option(
        None, "--min-agreement", help="Accuracy bound: pixel agreement with the FP32 reference "
        "(default 0.98 without labels)."),
    data: Path | None = typer.Option(None, "--data", help="Cityscapes-layout root: val images "
                                     "and labels (mIoU), train images for INT8 calibration."),
    frames: str | None = typer.Option(
        None, "--frames", help="Unlabelled frames scored by pixel agreement (folder or glob)."),
    images: str | None = typer.Option(None, "--images", hidden=True),
    time_budget: str | None = typer.Option(
        None, "--time-budget", help="Wall-time budget, e.g. 15m, 90s, 1h [15m]."),
    budget: str | None = typer.Option(None, "--budget", hidden=True),
    space: str | None = typer.Option(None, "--space", help=SPACE_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Profile YAML to write (tuned.yaml)."),
    eval_images: int = typer.Option(8, "--eval-images", min=1, help="Images scored per config."),
    calib_images: int = typer.Option(16, "--calib-images", min=1, help="INT8 calibration images."),
    duration_s: float | None = typer.Option(
        None, "--duration-s", min=0.001, help="Timed seconds per config (profile's bench default)."),
    warmup_s: float | None = typer.Option(None, "--warmup-s", min=0.0, help="Warm-up seconds."),
    json_: bool = JsonOpt,
) -> None:
    from edgeseg.durations import parse_duration
    from edgeseg.tune.tune import DEFAULT_BUDGET_S, tune

    deprecated("--model", weights=weights, onnx=onnx)
    deprecated("--frames", images=images)
    deprecated("--time-budget", budget=budget)
    if images is not None and frames is not None:
        raise EdgesegError("give --frames once (--images is its old name in tune)")
    if budget is not None and time_budget is not None:
        raise EdgesegError("give --time-budget once (--budget is its old name)")
    spent = time_budget or budget
    budget_s = parse_duration(spent) if spent is not None else DEFAULT_BUDGET_S
    with progress("tune", None) as bar:
        def on_result(row: dict[str, Any], done: int, total: int) -> None:
            bar.total = total
            bar.bar.update(bar.task, total=total)
            bar(1, f"{row['label']}: {row['fps']:.1f} FPS")

        report = tune(
            model=model, weights=weights, onnx=onnx, profile=profile, target_fps=target_fps,
            max_miou_drop=max_miou_drop, min_agreement=min_agreement, data=data,
            images=frames or images,
            budget_s=budget_s, space=space, out=out, eval_images=eval_images,
            calib_images=calib_images, duration_s=duration_s, warmup_s=warmup_s,
            step=bar.note, on_result=on_result,
        )
    if json_:
        emit_json(report)
        return
    print_report(report)


def _f(v: Any, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def print_report(report: dict[str, Any]) -> None:
    from rich import box
    from rich.table import Table

    rows = report["measured"]
    front = set(report["pareto"])
    table = Table(title=f"edgeseg tune: {report['model']['variant']} for "
                  f"{report['target_fps']:g} FPS ({report['profile']})", box=box.SIMPLE_HEAD)
    energy = any(r.get("energy_mj_per_frame") is not None for r in rows)
    cols = ["", "config", "ceiling", "FPS", "e2e FPS", "p99 ms", *(["mJ/frame"] if energy else []),
            "agreement", "mIoU drop"]
    for col in cols:
        table.add_column(col, justify="left" if col in ("", "config") else "right",
                         no_wrap=col == "config")
    for i, r in enumerate(rows):
        mark = ("*" if i == report["pick"] else "") + ("P" if i in front else "")
        cells = [mark, r["label"], _f(r.get("fps_ceiling"), ".0f"), f"{r['fps']:.1f}",
                 f"{r['e2e_fps']:.1f}", f"{r['p99_ms']:.1f}"]
        if energy:
            cells.append(_f(r.get("energy_mj_per_frame"), ".1f"))
        cells += [f"{r['agreement']:.4f}", _f(r.get("miou_drop"), ".2f")]
        table.add_row(*cells)
    console.print(table)
    console.print(f"* pick, P Pareto front; {len(rows)} measured ({len(report['resumed'])} from "
                  f"the record), {len(report['pruned'])} pruned, {len(report['left'])} left, "
                  f"of {report['space_size']} configurations", soft_wrap=True)
    for p in report["pruned"][:8]:
        console.print(f"  pruned {p['label']}: {p['reason']}", soft_wrap=True)
    if len(report["pruned"]) > 8:
        console.print(f"  ... and {len(report['pruned']) - 8} more (see --json)")
    if report["left"]:
        console.print("not measured (budget): " + ", ".join(report["left"]), soft_wrap=True)
    style = "green" if report["met_target"] else "yellow"
    console.print(f"[{style}]{report['message']}[/]", soft_wrap=True)
    f = report["files"]
    console.print(f"wrote {f['profile']}, {f['onnx']}, {f['plot']}, {f['report']}",
                  soft_wrap=True)
