"""`edgeseg calibrate`: INT8 Q/DQ ONNX + TensorRT calibration cache, and what INT8 costs."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
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

IMAGES_HELP = (
    "Calibration frames: a folder (recursive), a quoted glob, a manifest file (or a folder "
    "holding manifest.txt; see calibration/README.md), or a Cityscapes root (calibrates on "
    "train, compares on val)."
)


@command("calibrate", help="INT8 calibration: Q/DQ ONNX + TensorRT cache; FP32 vs INT8 report.")
def calibrate_cli(
    model: str | None = model_option(
        "Checkpoint (.pt) to export and calibrate, or an FP32 ONNX from `edgeseg export`."),
    weights: Path | None = WeightsAlias,
    onnx: Path | None = OnnxAlias,
    profile: str = typer.Option(
        "auto", "--profile", "-p",
        help="Device profile: backend picks the INT8 format, size the export.",
    ),
    images: str = typer.Option(..., "--images", help=IMAGES_HELP),
    calib_images: int | None = typer.Option(
        None, "--calib-images", min=1,
        help="Calibration images (default: the profile's calibration.images).",
    ),
    num: int | None = typer.Option(None, "--num", min=1, hidden=True),
    method: str = typer.Option(
        "percentile", "--method", help="Activation ranges: percentile, entropy or minmax."
    ),
    labels: Path | None = typer.Option(
        None, "--labels", help="Train-id label PNGs of the held-out images (for mIoU)."
    ),
    exclude: str | None = typer.Option(
        None, "--exclude",
        help="Op types kept in float, comma-separated, or none; 'logits' = the classifier conv "
        "and the upsampling after it (default: DeformConv,GridSample,logits).",
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Sampling seed."),
    holdout: int | None = typer.Option(
        None, "--holdout", min=0,
        help="Held-out images for the FP32 vs INT8 comparison (default: num/4, 2 to 50).",
    ),
    runs: int = typer.Option(10, "--runs", min=0, help="Latency runs per model (median)."),
    height: int | None = typer.Option(
        None, "--height", min=32, help="Export height of a checkpoint (default: the profile's)."
    ),
    width: int | None = typer.Option(
        None, "--width", min=32, help="Export width of a checkpoint (default: the profile's)."
    ),
    dcn: str = typer.Option(
        "auto", "--dcn", help="Deformable conv of a checkpoint export: auto, native, portable."
    ),
    trt_version: str | None = typer.Option(
        None, "--trt-version", help="TensorRT release the cache is for (header; default 8.6.2, JetPack 6.0)."
    ),
    threads: int | None = typer.Option(None, "--threads", min=1, help="onnxruntime threads."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    json_: bool = JsonOpt,
) -> None:
    from edgeseg.deploy.quantize import calibrate

    deprecated("--model", weights=weights, onnx=onnx)
    deprecated("--calib-images", num=num)
    if num is not None and calib_images is not None:
        raise EdgesegError("give --calib-images once (--num is its old name)")
    with ExitStack() as bars:

        def stage(name: str, total: int) -> Callable[[], None]:
            bars.close()
            return bars.enter_context(progress(name, total))

        report = calibrate(
            images=images, out=out, model=model, weights=weights, onnx=onnx, profile=profile,
            num=calib_images or num,
            method=method, labels=labels, exclude=exclude, seed=seed, holdout=holdout,
            runs=runs, height=height, width=width, dcn=dcn, trt_version=trt_version, threads=threads,
            log=_log, progress=stage,
        )
    if json_:
        emit_json(report)
    else:
        print_report(report)


def _log(message: str) -> None:
    console.print(message, soft_wrap=True, markup=False, highlight=False)


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.2f}%"


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f} ms"


def print_report(report: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"FP32 vs INT8 ({report['held_out_images']} held-out images)")
    table.add_column("")
    table.add_column("FP32", justify="right")
    table.add_column("INT8", justify="right")
    table.add_column("", justify="right")
    table.add_row("pixel agreement (argmax)", "", _pct(report["agreement"]), "")
    if report["miou_fp32"] is not None:
        delta = 100 * report["miou_delta"]
        table.add_row("mIoU", _pct(report["miou_fp32"]), _pct(report["miou_int8"]),
                      f"{delta:+.2f} pt")
    speed = report["speedup"]
    table.add_row("latency (median, onnxruntime)", _ms(report["latency_ms_fp32"]),
                  _ms(report["latency_ms_int8"]), "—" if speed is None else f"{speed:.2f}x")
    console.print(table)
    if report.get("latency_note") and report["latency_ms_fp32"] is not None:
        console.print(f"latency {report['latency_note']}", soft_wrap=True)
    deltas = report.get("iou_delta_per_class") or {}
    if deltas:
        per = Table(title="IoU per class")
        per.add_column("class")
        for col in ("FP32", "INT8", "delta"):
            per.add_column(col, justify="right")
        f32, i8 = report["iou_per_class_fp32"], report["iou_per_class_int8"]
        for name, d in deltas.items():
            if f32[name] is None and i8[name] is None:
                continue
            per.add_row(name, _pct(f32[name]), _pct(i8[name]),
                        "—" if d is None else f"{100 * d:+.2f} pt")
        console.print(per)
    s = report["settings"]
    console.print(
        f"{report['calibration_images']} calibration images, {report['method']}; "
        f"activations {s['activation_type']}, weights {s['weight_type']}"
        f"{' per-channel' if s['per_channel'] else ''}"
        f"{', reduce_range' if s['reduce_range'] else ''} ({s['target']}); float: "
        f"{', '.join(report['excluded_ops']) or 'nothing'}"
    )
    for key, label in (("qdq_onnx", "INT8 Q/DQ ONNX"), ("calibration_cache", "TensorRT cache"),
                       ("fp32_onnx", "FP32 ONNX"), ("report", "report")):
        if key in report["outputs"]:
            console.print(f"{label}: {report['outputs'][key]}")
