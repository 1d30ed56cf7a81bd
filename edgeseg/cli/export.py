"""`edgeseg export`: options, one call to :func:`edgeseg.deploy.export.export`, the report.

The formats and what each needs are the table in :mod:`edgeseg.deploy.formats`
(`edgeseg export --formats` prints it with what this machine can build).
"""

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

__all__ = ["export_cli"]

CacheOpt = typer.Option(
    None, "--calibration-cache",
    help="INT8 (TensorRT 8.6): calibrate's calibration.cache; builds its model.fp32.onnx.",
)


@command("export", help="Export a checkpoint to ONNX, a TensorRT engine, a torch2trt engine, a "
         "Triton model repository or a DeepStream nvinfer config, checked against PyTorch.")
def export_cli(
    model: str | None = model_option(
        "Checkpoint (.pt); an ONNX (.onnx) to build into an engine (e.g. calibrate's "
        "model.int8.onnx, with --format engine); or a variant (desanet-hn, desanet-rn) with "
        "--random-init."),
    weights: Path | None = WeightsAlias,
    profile: str | None = typer.Option(
        None, "--profile", "-p",
        help="Device profile (name, .yaml or auto): default format, size, precision, workspace.",
    ),
    fmt: str | None = typer.Option(
        None, "--format", "-f",
        help="onnx, engine (TensorRT via the ONNX parser), torch2trt, triton (model repository "
        "folder) or deepstream (folder). Default: the profile's backend, else onnx.",
    ),
    precision: str | None = typer.Option(
        None, "--precision", help="fp32, fp16 or int8. ONNX: fp32 unless given; engines: profile."
    ),
    height: int | None = typer.Option(None, "--height", min=32, help="Input height."),
    width: int | None = typer.Option(None, "--width", min=32, help="Input width."),
    dcn: str | None = typer.Option(
        None, "--dcn",
        help="Deformable conv: native (ONNX DeformConv) or portable (GridSample + Conv). "
        "Default native; engines use portable where TensorRT needs it (8.6).",
    ),
    dynamic: bool = typer.Option(False, "--dynamic", help="Dynamic batch, height and width."),
    argmax: bool = typer.Option(
        False, "--argmax", help="Output uint8 'labels' (argmax in the graph) instead of logits."
    ),
    opset: int = typer.Option(19, "--opset", min=19, help="ONNX opset (19+)."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output file (.onnx / .engine), or folder (triton, deepstream)."
    ),
    normalize_in_graph: bool = typer.Option(
        False, "--normalize-in-graph",
        help="onnx: input 0..255 RGB, /255 and mean/std in the graph, softmax output (for "
        "nvinfer's scalar scale; --format deepstream always does this).",
    ),
    triton_pipeline: bool = typer.Option(
        False, "--triton-pipeline",
        help="triton: add Python pre/post-processing and an ensemble taking uint8 RGB of any size.",
    ),
    triton_form: str | None = typer.Option(
        None, "--triton-form",
        help="triton: onnx (onnxruntime backend) or python (Python backend running edgeseg).",
    ),
    triton_name: str = typer.Option("desanet", "--triton-name", help="triton: model name."),
    max_batch_size: int | None = typer.Option(
        None, "--max-batch-size", min=0,
        help="triton: max_batch_size (default: the profile's serving section, else 8).",
    ),
    source: list[str] = typer.Option(
        [], "--source", help="deepstream: deepstream-app source (URI, file, /dev/videoN); repeat."
    ),
    plugin_lib: str | None = typer.Option(
        None, "--plugin-lib", help="deepstream: TensorRT plugin library (custom-lib-path)."
    ),
    segmentation_threshold: float = typer.Option(
        0.0, "--segmentation-threshold", min=0.0, max=1.0,
        help="deepstream: minimum class score for a pixel's class.",
    ),
    random_init: bool = typer.Option(
        False, "--random-init", help="Export an untrained network of the --model variant."
    ),
    onnx: Path | None = OnnxAlias,
    images: str | None = typer.Option(
        None, "--images", help="INT8: calibration frames TensorRT / torch2trt calibrate on."
    ),
    calibration_cache: Path | None = CacheOpt,
    calib_images: int | None = typer.Option(
        None, "--calib-images", min=1, help="INT8 --images to use (default: the profile's)."
    ),
    num_images: int | None = typer.Option(None, "--num-images", min=1, hidden=True),
    formats: bool = typer.Option(
        False, "--formats", help="List the export formats and which this machine can build."
    ),
    json_: bool = JsonOpt,
) -> None:
    from edgeseg.deploy.export import export, export_steps

    if formats:
        _print_formats(json_)
        return
    deprecated("--model", weights=weights, onnx=onnx)
    deprecated("--calib-images", num_images=num_images)
    if num_images is not None and calib_images is not None:
        raise EdgesegError("give --calib-images once (--num-images is its old name)")
    if out is None:
        raise EdgesegError("--out is required: the file to write (.onnx or .engine)")
    # every format-specific option goes to the library; the format's row refuses the ones it
    # does not take (edgeseg.deploy.formats), naming the formats that do
    options: dict[str, Any] = dict(
        normalize_in_graph=normalize_in_graph, triton_pipeline=triton_pipeline,
        triton_form=triton_form, triton_name=triton_name, max_batch_size=max_batch_size,
        sources=tuple(source), plugin_lib=plugin_lib,
        segmentation_threshold=segmentation_threshold,
    )
    with progress("export", export_steps(fmt or "onnx", argmax), transient=True) as bar:

        def build_progress(phase: str, i: int, n: int) -> None:  # TensorRT's build phases
            bar.note(f"{phase} {i}/{n}" if n else f"{phase}: {i} s")

        report = export(
            out, weights=weights, fmt=fmt, profile=profile, precision=precision,
            height=height, width=width, dcn=dcn, dynamic=dynamic, argmax=argmax, opset=opset,
            random_init=random_init, model=model, options=options, onnx=onnx, images=images,
            calibration_cache=calibration_cache, num_images=calib_images or num_images,
            step=lambda msg: bar(1, msg), build_progress=build_progress,
        )
    if json_:
        emit_json(report)
        return
    for warning in report.get("warnings", []):
        console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)
    _print_report(report)


def _print_formats(json_: bool) -> None:
    from rich.table import Table

    from edgeseg.deploy.formats import availability

    rows = availability()
    if json_:
        emit_json({"formats": rows})
        return
    table = Table(title="edgeseg export formats")
    for col in ("format", "writes", "precisions", "requires", "here"):
        table.add_column(col)
    for r in rows:
        here = "[green]yes[/]" if r["available"] else "[red]no[/]: " + "; ".join(
            f"{m['name']}: {m['reason']} ({m['install']})" for m in r["missing"])
        table.add_row(r["format"], r["writes"], ", ".join(r["precisions"]),
                      ", ".join(r["requires"]), here)
    console.print(table)


def _print_report(r: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"edgeseg export ({r['format']})", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    parity = r.get("parity")
    rows = [
        ("file", r["path"]),
        ("size", f"{r['bytes'] / 2**20:.1f} MiB" if "bytes" in r else "-"),
        ("source", r.get("source", "")),
        ("precision", r.get("precision", "")),
        ("opset", str(r.get("opset", "-"))),
        ("nodes", str(r.get("nodes", "-"))),
        ("DCN op", f"{r.get('dcn_op', '-')} ({r.get('dcn', '-')})"),
        ("input", " x ".join(map(str, r.get("input", {}).get("shape", r["meta"]["input_hw"])))),
        ("outputs", ", ".join(r.get("outputs", {})) or "-"),
        ("parity", f"agreement {parity['agreement']:.4%}"
         + (f", max |diff| {parity['max_abs_diff']:.2e}" if "max_abs_diff" in parity else "")
         if parity else "not checked"),
    ]
    if r["format"] == "triton":
        rows.append(("models", ", ".join(f"{n} ({m['role']})" for n, m in r["models"].items())))
    if r["format"] == "deepstream":
        rows.append(("nvinfer", r["infer_config"]))
        rows.append(("deepstream-app", f"{r['app_config']} ({len(r['sources'])} source(s))"))
    if "tensorrt" in r:
        rows.insert(4, ("TensorRT", f"{r['tensorrt']} on {r.get('gpu', '?')}"))
    if r.get("build_s") is not None:
        rows.append(("build time", f"{r['build_s']:.1f} s"))
    if r.get("int8"):
        rows.append(("INT8", r["int8"]["source"]))
    if r.get("dla_placement"):
        p = r["dla_placement"]
        listed = f" ({', '.join(p['gpu_layers'][:5])})" if p["gpu_layers"] else ""
        placed = f"{p['dla']} on DLA core {r.get('dla_core')}, {p['gpu']} on the GPU{listed}"
        rows.append(("DLA layers", placed))
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
