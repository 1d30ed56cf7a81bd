"""`edgeseg run`: live segmentation from a camera, stream, video or images to a window or files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from edgeseg.cli._util import JsonOpt, command, console, emit_json, progress

if TYPE_CHECKING:
    from edgeseg.video.pipeline import RunSummary

SOURCE_HELP = (
    "Camera index (0), /dev/videoN, csi://N[?width=&height=&fps=&flip=], rtsp://..., a video "
    "file, an image folder or a quoted glob ('frames/*.png'); a ROS bag: "
    "'rec.mcap?topic=/camera/image_raw&start=SEC&end=SEC', a rosbag2 folder, .db3 or ROS 1 .bag."
)
SINK_HELP = (
    "display (q/Esc quits), out.mp4 / out.avi, a folder of PNG masks, out.mcap or rosbag2:DIR "
    "(a ROS 2 bag of the node's topics), or none. "
    "auto: display when there is one, else none."
)
MASKS_HELP = (
    "Folder sink: comma list of color (palette PNG), labelids (Cityscapes label ids), "
    "trainids, vis (the visualisation)."
)


def _quiet_opencv() -> None:
    """OpenCV/FFmpeg print their own warnings for every bad frame; ours say it once, clearly.
    Set OPENCV_LOG_LEVEL / OPENCV_FFMPEG_LOGLEVEL to see theirs."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


@command(
    "run",
    help="Live segmentation: camera, CSI, RTSP, video or images -> window, video or masks. "
    "Exit status 0, 1 when a live source was lost for good, 2 on errors.",
)
def run_cli(
    weights: Path | None = typer.Option(None, "--weights", help="Checkpoint (.pt): torch."),
    onnx: Path | None = typer.Option(None, "--onnx", help="ONNX model: onnxruntime."),
    engine: Path | None = typer.Option(None, "--engine", help="TensorRT engine."),
    backend: str | None = typer.Option(
        None, "--backend", "-b",
        help="tensorrt with --onnx: build (or reuse from the engine cache) a TensorRT engine.",
    ),
    source: str = typer.Option(..., "--source", "-s", help=SOURCE_HELP),
    sink: str = typer.Option("auto", "--sink", "-o", help=SINK_HELP),
    profile: str | None = typer.Option(
        None, "--profile", "-p", help="Device profile (name, .yaml or auto): checkpoint input size."
    ),
    visualize: str = typer.Option("overlay", "--visualize", help="overlay, mask or side-by-side."),
    alpha: float = typer.Option(0.5, "--alpha", min=0.0, max=1.0, help="Mask weight in overlay."),
    max_frames: int | None = typer.Option(None, "--max-frames", min=1, help="Stop after N."),
    masks: str = typer.Option("color", "--masks", help=MASKS_HELP),
    legend: bool = typer.Option(True, "--legend/--no-legend", help="Legend of classes present."),
    hud: bool = typer.Option(True, "--hud/--no-hud", help="FPS and latency on the picture."),
    reconnect: int = typer.Option(
        5, "--reconnect", min=0, help="Attempts to reopen a lost camera or stream (backoff)."
    ),
    device: str = typer.Option("auto", "--device", help="Torch/TensorRT device: cpu, cuda, "
                               "cuda:N or auto."),
    json_: bool = JsonOpt,
) -> None:
    _quiet_opencv()
    from edgeseg.video.overlay import check_visualize
    from edgeseg.video.reader import FrameSource, Reconnect
    from edgeseg.video.run import load_segmenter, pick_model, run
    from edgeseg.video.sinks import check_sink, display_available, parse_sink

    def warn(msg: str) -> None:
        console.print(f"[yellow]warning:[/] {msg}", soft_wrap=True, highlight=False)

    auto = sink == "auto"
    if auto:
        sink = "display" if display_available() else "none"
    mask_list = [m.strip() for m in masks.split(",") if m.strip()]
    from edgeseg.errors import EdgesegError
    from edgeseg.runtime.devices import check_device_spec

    model_path, own_backend = pick_model(weights, onnx, engine)
    if backend not in (None, own_backend) and not (backend == "tensorrt" and onnx is not None):
        raise EdgesegError(f"--backend {backend} runs an --onnx model as a TensorRT engine; "
                           f"{model_path.name} runs on {own_backend}")
    backend = backend or own_backend
    check_device_spec(device)
    check_visualize(visualize, alpha)
    check_sink(parse_sink(sink), mask_list)
    # Source and sink are checked before the model loads, so a typo fails in a second.
    src = FrameSource(source, warn=warn, reconnect=Reconnect(attempts=reconnect)).open()
    try:
        seg = load_segmenter(model_path, backend, profile, device,
                             say=lambda m: console.print(m, soft_wrap=True, highlight=False))
    except BaseException:
        src.close()
        raise
    if auto and sink == "none":
        console.print("no display: results are neither shown nor saved (use --sink out.mp4)")
    summary = run(
        seg, src, sink, visualize=visualize, alpha=alpha, max_frames=max_frames,
        masks=mask_list, legend=legend, hud=hud,
        warn=warn, progress=lambda name, total: progress(name, total, transient=True),
    )
    if json_:
        emit_json(summary.to_dict())
    else:
        print_summary(summary)
    if summary.stop_reason == "source-lost":
        raise typer.Exit(1)  # a supervisor (systemd Restart=on-failure) can restart the run


def print_summary(s: RunSummary) -> None:
    from rich.table import Table

    table = Table(title="edgeseg run", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    for key, value in (
        ("source", s.source), ("sink", s.sink), ("frames", f"{s.frames}"),
        ("dropped", f"{s.dropped}"), ("skipped", f"{s.skipped}"), ("FPS", f"{s.fps:.2f}"),
        ("latency p50 / p99", f"{s.latency_ms['p50']:.1f} / {s.latency_ms['p99']:.1f} ms"),
        ("stages (mean ms)", "  ".join(f"{k} {v:.1f}" for k, v in s.stages_ms.items())),
        ("stopped", s.stop_reason),
    ):
        table.add_row(key, value)
    console.print(table)
