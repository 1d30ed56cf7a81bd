"""`edgeseg run`: live segmentation from a camera, stream, video or images to a window or files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from edgeseg.cli._util import (
    EngineAlias,
    JsonOpt,
    OnnxAlias,
    TritonModelOpt,
    TritonTokenOpt,
    TritonUrlOpt,
    WeightsAlias,
    command,
    console,
    deprecated,
    emit_json,
    model_option,
    progress,
)
from edgeseg.errors import EdgesegError

if TYPE_CHECKING:
    from edgeseg.video.multi import MultiSummary
    from edgeseg.video.pipeline import RunSummary

SOURCE_HELP = (
    "Camera index (0), /dev/videoN, csi://N[?width=&height=&fps=&flip=], rtsp://..., a video "
    "file, an image folder or a quoted glob ('frames/*.png'); a ROS bag: "
    "'rec.mcap?topic=/camera/image_raw&start=SEC&end=SEC', a rosbag2 folder, .db3 or ROS 1 .bag. "
    "Repeat it, or give a .streams file (one source per line), to batch several sources into "
    "one inference call per tick."
)
SINK_HELP = (
    "display (q/Esc quits), out.mp4 / out.avi, a folder of PNG masks, out.mcap or rosbag2:DIR "
    "(a ROS 2 bag of the node's topics), none, "
    "http://HOST:PORT\\[/path] (live page: MJPEG + stats; @ = all interfaces, no host = "
    "127.0.0.1) or webrtc://HOST:PORT/name. Repeatable. auto: display when there is one, else "
    "none. With several sources a sink holding {name} is opened per source, others show a mosaic."
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
    model: str | None = model_option(
        "Checkpoint (.pt: torch), ONNX (onnxruntime), TensorRT engine, or "
        "triton://HOST:PORT/NAME (a model on a Triton server)."),
    weights: Path | None = WeightsAlias,
    onnx: Path | None = OnnxAlias,
    engine: Path | None = EngineAlias,
    backend: str | None = typer.Option(
        None, "--backend", "-b",
        help="triton: a model on a Triton server (--url) instead of a local file; tensorrt with "
        "an ONNX --model: build (or reuse from the engine cache) a TensorRT engine.",
    ),
    url: str | None = TritonUrlOpt,
    triton_model: str | None = TritonModelOpt,
    token: str | None = TritonTokenOpt,
    source: list[str] = typer.Option(..., "--source", "-s", help=SOURCE_HELP),
    sink: list[str] = typer.Option(["auto"], "--sink", help=SINK_HELP),
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
    web_token: str | None = typer.Option(
        None, "--web-token", envvar="EDGESEG_WEB_TOKEN",
        help="Web sinks: every route needs it (?token= or 'Authorization: Bearer')."),
    web_host: list[str] = typer.Option([], "--web-host", help="Web sinks: a name browsers use "
                                       "for this device (Host check; IPs and localhost pass)."),
    ssl_cert: Path | None = typer.Option(None, "--ssl-cert", help="Web sinks: serve HTTPS."),
    ssl_key: Path | None = typer.Option(None, "--ssl-key", help="Web sinks: the key."),
    max_clients: int = typer.Option(4, "--max-clients", min=1, help="Web sinks: viewers at once."),
    jpeg_quality: int = typer.Option(80, "--jpeg-quality", min=1, max=100,
                                     help="Web sinks: MJPEG / snapshot quality."),
    stream_fps: float = typer.Option(15.0, "--stream-fps", min=0.1, max=120.0,
                                     help="Web sinks: most frames a second sent to viewers."),
    device: str = typer.Option("auto", "--device", help="Torch/TensorRT device: cpu, cuda, "
                               "cuda:N or auto."),
    json_: bool = JsonOpt,
) -> None:
    _quiet_opencv()
    # the composition root: registers the web and ROS bag kinds before any spec is parsed
    from edgeseg.io import load_segmenter, run
    from edgeseg.video.overlay import check_visualize
    from edgeseg.video.reader import FrameSource, Reconnect
    from edgeseg.video.run import pick_model
    from edgeseg.video.sinks import check_sink, display_available, parse_sink

    def warn(msg: str) -> None:
        console.print(f"[yellow]warning:[/] {msg}", soft_wrap=True, highlight=False)

    from edgeseg.video.multi import expand_sources

    sinks = list(sink) or ["auto"]
    auto = sinks == ["auto"]
    if auto:
        sinks = ["display" if display_available() else "none"]
    mask_list = [m.strip() for m in masks.split(",") if m.strip()]
    deprecated("--model", weights=weights, onnx=onnx, engine=engine)
    model_path, backend, remote = pick_model(model, weights, onnx, engine, backend=backend,
                                             url=url, triton_model=triton_model)
    if token is not None and backend != "triton":
        raise EdgesegError("--token is the Triton client's bearer token; a web sink's is "
                           "--web-token")
    from edgeseg.runtime.devices import check_device_spec

    check_device_spec(device)
    check_visualize(visualize, alpha)
    web = False
    for s in sinks:
        spec = parse_sink(s.replace("{name}", "x"))
        check_sink(spec, mask_list)
        if spec.kind in ("web", "webrtc"):
            web = True
            _check_web(spec.target, ssl_cert, ssl_key)
    options: dict[str, Any] = {}
    if web:
        options = {"token": web_token, "ssl_cert": ssl_cert, "ssl_key": ssl_key,
                   "max_clients": max_clients, "jpeg_quality": jpeg_quality,
                   "stream_fps": stream_fps, "power": _power_reader(warn), "web_host": web_host,
                   "announce": lambda m: console.print(m, soft_wrap=True, highlight=False)}
    specs = expand_sources(source)
    # Sources and sinks are checked before the model loads, so a typo fails in a second.
    srcs: list[FrameSource] = []
    try:
        for spec_s in specs:
            srcs.append(FrameSource(spec_s, warn=warn, reconnect=Reconnect(attempts=reconnect)).open())
        if backend == "triton":
            remote["token"] = token
        seg = load_segmenter(model_path, backend, profile, device,
                             say=lambda m: console.print(m, soft_wrap=True, highlight=False),
                             **remote)
    except BaseException:
        for src in srcs:
            src.close()
        raise
    if auto and sinks == ["none"]:
        console.print("no display: results are neither shown nor saved (use --sink out.mp4)")
    if len(srcs) == 1:
        if any("{name}" in s for s in sinks):
            from edgeseg.video.fanout import source_name

            sinks = [s.replace("{name}", source_name(specs[0], 0)) for s in sinks]
        summary: RunSummary | MultiSummary = run(
            seg, srcs[0], sinks, visualize=visualize, alpha=alpha, max_frames=max_frames,
            masks=mask_list, legend=legend, hud=hud, sink_options=options,
            warn=warn, progress=lambda name, total: progress(name, total, transient=True),
        )
    else:
        summary = _run_many(seg, srcs, specs, sinks, visualize=visualize, alpha=alpha,
                            max_frames=max_frames, masks=mask_list, legend=legend, hud=hud,
                            options=options, warn=warn)
    if json_:
        emit_json(summary.to_dict())
    elif len(srcs) == 1:
        print_summary(summary)  # type: ignore[arg-type]
    else:
        print_multi_summary(summary)  # type: ignore[arg-type]
    if summary.stop_reason == "source-lost":
        raise typer.Exit(1)  # a supervisor (systemd Restart=on-failure) can restart the run


def _check_web(uri: str, ssl_cert: Path | None, ssl_key: Path | None) -> None:
    """A web sink's URI, extra and TLS files, before any model loads."""
    from edgeseg.web.server import ssl_context
    from edgeseg.web.sink import check_web_deps
    from edgeseg.web.uri import parse_web_uri

    spec = parse_web_uri(uri)
    check_web_deps(spec)
    ssl_context(ssl_cert, ssl_key)
    if spec.tls_requested and ssl_cert is None:
        raise EdgesegError(f"--sink {uri}: HTTPS needs --ssl-cert and --ssl-key")


def _power_reader(warn: Callable[[str], Any]) -> Callable[[], dict[str, Any]]:
    """Live watts for the web page from the first power source found (jtop, tegrastats, NVML,
    RAPL), or the reason there is none."""
    from edgeseg.bench.power import auto_sampler

    sampler = auto_sampler()
    sampler.__enter__()  # samples on its own daemon thread for the rest of the run
    return sampler.latest


def _run_many(seg: Any, srcs: list[Any], specs: list[str], sinks: list[str], *,
              options: dict[str, Any], masks: list[str], **kw: Any) -> MultiSummary:
    """Several sources: per-source sinks for specs holding ``{name}``, a mosaic for the others."""
    from edgeseg.video.fanout import open_fanout, source_names
    from edgeseg.video.multi import run_multi

    try:
        out = open_fanout(sinks, source_names(specs), [src.fps for src in srcs],
                          classes=seg.meta.classes, palette=seg.meta.palette, masks=masks,
                          options=options)
    except BaseException:
        for src in srcs:
            src.close()
        raise
    with progress("run", None, transient=True) as bar:
        return run_multi(seg, srcs, per_source=out.per_source, shared=out.shared, progress=bar,
                         **kw)


def print_multi_summary(s: MultiSummary) -> None:
    from rich.table import Table

    table = Table(title=f"edgeseg run: {len(s.sources)} sources, "
                        f"{'batched' if s.batched else 'one call per frame'}")
    for col in ("source", "frames", "FPS", "dropped", "skipped", "latency p50 / p99", "stopped"):
        table.add_column(col, justify="left" if col == "source" else "right")
    for x in s.sources:
        table.add_row(x.name, str(x.frames), f"{x.fps:.2f}", str(x.dropped), str(x.skipped),
                      f"{x.latency_ms['p50']:.1f} / {x.latency_ms['p99']:.1f} ms", x.stop_reason)
    table.add_row("all", str(s.frames), f"{s.fps:.2f}", "", "",
                  f"{s.latency_ms['p50']:.1f} / {s.latency_ms['p99']:.1f} ms", s.stop_reason,
                  style="bold")
    console.print(table)
    console.print(f"sinks: {', '.join(s.sinks) or 'none'}; {s.ticks} inference calls, "
                  f"{s.batch_mean:.2f} frames per call")


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
