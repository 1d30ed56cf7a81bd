"""`edgeseg bench`: latency, FPS per stage, memory, power, model cost and roofline.

The measuring is :func:`edgeseg.bench.report.run_bench`; this module parses flags, shows
progress, prints one table (one row per configuration with ``--compare``) and writes ``--out``
JSON and ``--plot`` PNGs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from edgeseg.atomic import atomic_write_text
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
from edgeseg.artifacts.resolve import triton_endpoint
from edgeseg.errors import EdgesegError
from edgeseg.sizes import parse_hw

__all__ = ["bench_cli"]

COMPARE_HELP = (
    "Several configurations in one interleaved run and one table: comma list of "
    "backend[:precision][@HxW], e.g. torch:fp32,onnxruntime:fp32,onnxruntime:int8@256x512. "
    "onnxruntime ONNX files are exported here from a checkpoint or --random-init when needed; int8 "
    "uses --onnx-int8 or is quantized here from synthetic frames."
)


@command("bench", help="Benchmark latency (p50..p99, CI), FPS per stage, memory, power, GFLOPs, "
         "CIO and the roofline of a model; --compare puts configurations side by side.")
def bench_cli(
    model: str | None = model_option(),
    weights: Path | None = WeightsAlias,
    onnx: Path | None = OnnxAlias,
    engine: Path | None = EngineAlias,
    random_init: bool = typer.Option(
        False, "--random-init", help="An untrained network of the --model variant: speed and "
        "cost only."
    ),
    backend: str | None = typer.Option(
        None, "--backend", "-b",
        help="torch, onnxruntime, tensorrt or triton (a server: --url). Default: the "
        "artifact's own (checkpoint: torch).",
    ),
    url: str | None = TritonUrlOpt,
    triton_model: str | None = TritonModelOpt,
    concurrency: str | None = typer.Option(
        None, "--concurrency",
        help="With --backend triton: request concurrencies, e.g. 1,2,4,8 (perf_analyzer style).",
    ),
    token: str | None = TritonTokenOpt,
    profile: str | None = typer.Option(
        None, "--profile", "-p",
        help="Device profile (name, .yaml or auto; default auto): roofline peaks, warm-up and "
        "duration; with --cost-only also size and precision, to predict that device.",
    ),
    precision: str | None = typer.Option(
        None, "--precision", help="fp32, fp16 or int8. Default: the artifact's, else fp32."
    ),
    height: int | None = typer.Option(None, "--height", min=32, help="Input height."),
    width: int | None = typer.Option(None, "--width", min=32, help="Input width."),
    frame_size: str | None = typer.Option(
        None, "--frame-size",
        help="Synthetic camera frame HxW (default: the input size; larger adds a resize to "
        "preprocessing).",
    ),
    warmup_s: float | None = typer.Option(
        None, "--warmup-s", min=0.0, help="Warm-up seconds (and at least --warmup-iters calls)."
    ),
    warmup_iters: int = typer.Option(5, "--warmup-iters", min=0, help="Warm-up calls at least."),
    duration_s: float | None = typer.Option(
        None, "--duration-s", min=0.001, help="Timed seconds per configuration (profile default)."
    ),
    iters: int | None = typer.Option(
        None, "--iters", min=1, help="Time exactly N calls instead of --duration-s."
    ),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="CPU threads: torch intra-op and onnxruntime intra-op."
    ),
    device: str = typer.Option(
        "auto", "--device", help="Torch/TensorRT device: cpu, cuda (current), cuda:N or auto."
    ),
    compare: str | None = typer.Option(None, "--compare", help=COMPARE_HELP),
    rounds: int | None = typer.Option(
        None, "--rounds", min=1, help="Interleaving rounds with --compare (default 3)."
    ),
    onnx_int8: Path | None = typer.Option(
        None, "--onnx-int8", help="INT8 Q/DQ ONNX to use for onnxruntime:int8."
    ),
    cost_only: bool = typer.Option(
        False, "--cost-only", help="Params, GFLOPs, CIO, DRAM and roofline only: no timing."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Also save the JSON report here."),
    plot: Path | None = typer.Option(
        None, "--plot", help="Write PNG charts (latency histogram, CIO bars, comparison) here."
    ),
    json_: bool = JsonOpt,
) -> None:
    from edgeseg.bench.report import run_bench, strip_samples

    deprecated("--model", weights=weights, onnx=onnx, engine=engine)
    remote = triton_endpoint(model, url, triton_model)
    if remote is not None:
        url, triton_model, model = remote[0], remote[1], None
    if backend == "triton" or concurrency is not None or url is not None:
        if model is not None or weights or onnx or engine or random_init:
            raise EdgesegError("--backend triton benchmarks the server's model: leave out the "
                               "local --model (or give --model triton://HOST:PORT/NAME)")
        _bench_triton(url=url, backend=backend, model=triton_model, concurrency=concurrency,
                      token=token, frame_size=frame_size, duration_s=duration_s,
                      warmup_s=warmup_s, iters=iters, out=out, json_=json_)
        return
    if out is not None and out.is_dir():
        raise EdgesegError(f"--out is a directory: {out} (give a file name)")
    if plot is not None and plot.exists() and not plot.is_dir():
        raise EdgesegError(f"--plot must be a directory, {plot} is a file")

    with progress("bench", None, transient=True) as bar:
        report = run_bench(
            weights=weights, onnx=onnx, engine=engine, random_init=random_init, model=model,
            backend=backend, profile=profile, precision=precision, height=height, width=width,
            warmup_s=warmup_s, min_warmup=warmup_iters, duration_s=duration_s, iters=iters,
            threads=threads, device=device, compare=compare, rounds=rounds, cost_only=cost_only,
            onnx_int8=onnx_int8, frame_hw=parse_hw(frame_size, "--frame-size", minimum=16) if frame_size else None,
            samples=plot is not None, step=lambda msg: bar(1, msg),
        )
    written: list[Path] = []
    if plot is not None:
        from edgeseg.bench.plots import write_plots

        written = write_plots(report, plot)
    report = strip_samples(report)
    if plot is not None:
        report["plots"] = [str(p) for p in written]
    if out is not None:
        from edgeseg.atomic import atomic_write_text
        from edgeseg.cli._util import _json_default

        atomic_write_text(out, json.dumps(report, indent=2, default=_json_default) + "\n")
    if json_:
        emit_json(report)
        for w in report.get("warnings", []):
            console.print(f"[yellow]warning:[/] {w}", soft_wrap=True, highlight=False)
        return
    print_report(report)
    for p in written:
        console.print(f"wrote {p}")
    if out is not None:
        console.print(f"wrote {out}")


def _bench_triton(
    *, url: str | None, backend: str | None, model: str | None, concurrency: str | None,
    token: str | None, frame_size: str | None, duration_s: float | None,
    warmup_s: float | None, iters: int | None, out: Path | None, json_: bool,
) -> None:
    """Thin CLI over :func:`edgeseg.bench.concurrency.bench_triton`."""
    from edgeseg.bench.concurrency import bench_triton, parse_levels

    if backend not in (None, "triton"):
        raise EdgesegError(f"--url and --concurrency go with --backend triton, not {backend}")
    if out is not None and out.is_dir():
        raise EdgesegError(f"--out is a directory: {out} (give a file name)")
    levels = parse_levels(concurrency or "1")
    frame_hw = parse_hw(frame_size, "--frame-size", minimum=16) if frame_size else None
    with progress("bench triton", len(levels), transient=True) as bar:
        report = bench_triton(  # the library's defaults for what was not given
            url, model=model, levels=levels, frame_hw=frame_hw, duration_s=duration_s,
            warmup_s=warmup_s, max_requests=iters, token=token, step=lambda msg: bar(1, msg),
        )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    if json_:
        emit_json(report)
        return
    from rich.table import Table

    table = Table(title=f"edgeseg bench: Triton {report['model']} at {report['url']} "
                  f"({report['protocol']}), frames {report['frame_hw'][0]}x{report['frame_hw'][1]}")
    for col in ("concurrency", "requests", "frames/s", "mean ms", "p50 ms", "p90 ms", "p99 ms"):
        table.add_column(col, justify="right")
    for r in report["concurrency"]:
        lat = r["latency_ms"]
        table.add_row(str(r["concurrency"]), str(r["requests"]), f"{r['throughput_fps']:.1f}",
                      *(f"{lat[k]:.1f}" for k in ("mean", "p50", "p90", "p99")))
    console.print(table)
    if out is not None:
        console.print(f"wrote {out}")


# ---------------------------------------------------------------------------------------------
# Tables


def _f(v: Any, fmt: str = ".2f", unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return f"{v:{fmt}}{unit}"


def _power(r: dict[str, Any], short: bool = True) -> str:
    p = r.get("power_w")
    if isinstance(p, (int, float)):
        e = r.get("energy_mj_per_frame")
        return f"{p:.2f} W, {e:.1f} mJ/frame, {r['fps_per_watt']:.2f} FPS/W"
    power = r.get("power") or {}
    skipped = power.get("skipped") or {}
    if short and skipped and not power.get("available"):
        return f"n/a (no power source here: {', '.join(skipped)} unavailable; see --json)"
    return str(p) if p is not None else "-"


def print_report(report: dict[str, Any]) -> None:
    """The human table: two columns for one configuration, one row each with --compare."""
    if "configs" in report:
        _print_compare(report)
    else:
        _print_single(report)
    for w in report.get("warnings", []):
        console.print(f"[yellow]warning:[/] {w}", soft_wrap=True, highlight=False)


def _cost_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    roof = r["roofline"]
    rows = [
        ("parameters", f"{r['params']:,}"),
        ("GFLOPs (MAC = 2)", f"{r['gflops']:.2f}"),
        ("CIO", f"{r['cio_elements'] / 1e6:.1f} M elements"),
        ("DRAM estimate", f"{r['dram_mb']:.1f} MB/frame ({r['precision']})"),
        ("roofline", (f"floor {roof['latency_floor_ms']:.3f} ms, ceiling "
                      f"{roof['fps_ceiling']:.1f} FPS ({roof['bound']}-bound) on {roof['device']}")
         if roof["fps_ceiling"] else f"no ceiling on {roof['device']}"
         + (f" ({roof['note']})" if roof.get("note") else "")),
        ("  peaks", (f"{_f(roof['peak_tflops'] and roof['peak_tflops'] * 1000, '.0f')} GFLOP/s "
                     f"({roof['peak_source']}); {roof['dram_gbs']:.1f} GB/s ({roof['bw_source']})")),
    ]
    comps = r.get("cio_by_component") or {}
    total = r["cio_elements"] or 1
    for name, c in sorted(comps.items(), key=lambda kv: -kv[1]["cio"]):
        share = 100 * c["cio"] / total
        rows.append((f"  CIO {name}", f"{c['cio'] / 1e6:.1f} M ({share:.0f}%), {c['layers']} convs"))
    return rows


def _print_single(r: dict[str, Any]) -> None:
    from rich.table import Table

    title = (f"edgeseg bench: {r['model']['variant']} {r['backend']}:{r['precision']} "
             f"{r['input_hw'][0]}x{r['input_hw'][1]}")
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    rows: list[tuple[str, str]] = []
    if r.get("latency_ms"):
        lat = r["latency_ms"]
        rows += [
            ("latency (inference)",
             (f"mean {lat['mean']:.2f} ms (95% CI {lat['ci95'][0]:.2f}-{lat['ci95'][1]:.2f}), "
              f"n={lat['n']}")),
            ("  min / p50 / p90", f"{lat['min']:.2f} / {lat['p50']:.2f} / {lat['p90']:.2f} ms"),
            ("  p95 / p99", f"{lat['p95']:.2f} / {lat['p99']:.2f} ms"),
            ("FPS (inference)", f"{r['fps']:.2f}"),
            ("FPS (end to end)", f"{r['e2e_fps']:.2f}"),
        ]
        for k, s in r["stages_ms"].items():
            rows.append((f"  stage {k}", f"mean {s['mean']:.2f} ms, p99 {s['p99']:.2f} ms"))
        rows.append(("efficiency",
                     (f"{r['efficiency']:.2f} ({r['achieved_gflops_per_s']:.1f} GFLOP/s of "
                      f"{r['matmul_gflops']:.1f} fp32 matmul)")))
        frac = r["roofline"]["fraction_of_ceiling"]
        rows.append(("roofline fraction",
                     f"{100 * frac:.1f}% of the FPS ceiling" if frac is not None else "-"))
        mem = r["memory"]
        rss = mem["rss"]
        mtext = f"peak RSS {rss['peak_rss_mb']:.0f} MB" if rss.get("available") else "RSS n/a"
        cuda = mem.get("cuda", {})
        if cuda.get("available"):
            mtext += (f"; CUDA max allocated {cuda['max_allocated_mb']:.0f} MB, reserved "
                      f"{cuda['max_reserved_mb']:.0f} MB")
        jet = mem.get("jetson", {})
        if jet.get("available"):
            mtext += f"; Jetson RAM {jet['ram_used_mb']:.0f} MB, GPU {jet['gpu_shared_mb']:.0f} MB"
        rows.append(("memory", mtext))
        rows.append(("power", _power(r)))
        clocks = r.get("clocks") or {}
        state = clocks.get("state")
        rows.append(("clocks", (f"{state.get('nvpmodel')} jetson_clocks="
                                f"{state.get('jetson_clocks')}") if state else
                     _f(f"n/a ({clocks.get('reason')})")))
        rows.append(("threads", ", ".join(f"{k}={v}" for k, v in r["threads"].items()
                                          if v is not None)))
        ov = r["overhead"]
        rows.append(("overhead", (f"{r['overhead_pct']:.3f}% of latency (timer "
                                  f"{ov['timer_ms'] * 1000:.2f} us/call, sampler "
                                  f"{ov['sampler_pct']:.3f}%)")))
    rows += _cost_rows(r)
    v = r["versions"]
    rows.append(("versions", ", ".join(f"{k} {x}" for k, x in v.items() if x)))
    for k, val in rows:
        table.add_row(k, val)
    console.print(table)


def _print_compare(report: dict[str, Any]) -> None:
    from rich import box
    from rich.table import Table

    results = report["configs"]
    timed = any(r.get("latency_ms") for r in results)
    first = results[0]
    sizes = list(dict.fromkeys(tuple(r["input_hw"]) for r in results))
    one_size = f" at {sizes[0][0]}x{sizes[0][1]}" if len(sizes) == 1 else ""
    table = Table(title=f"edgeseg bench: {first['model']['variant']}{one_size}",
                  box=box.SIMPLE_HEAD)
    table.add_column("config", no_wrap=True)
    if not one_size:
        table.add_column("input", no_wrap=True)
    cols = (("mean ms ±CI95", "p99 ms", "FPS", "e2e FPS", "speedup", "eff.", "ceiling FPS")
            if timed else ("GFLOPs", "DRAM MB", "floor ms", "ceiling FPS"))
    for col in cols:
        table.add_column(col, justify="right")
    speedup = report.get("speedup") or {}
    for r in results:
        cells = [r["config"].split("@")[0]]
        if not one_size:
            cells.append(f"{r['input_hw'][0]}x{r['input_hw'][1]}")
        roof = r["roofline"]
        if timed:
            lat = r["latency_ms"]
            half = (lat["ci95"][1] - lat["ci95"][0]) / 2
            cells += [
                f"{lat['mean']:.2f} ±{half:.2f}", f"{lat['p99']:.2f}", f"{r['fps']:.2f}",
                f"{r['e2e_fps']:.2f}", f"{speedup.get(r['config'], 1.0):.2f}x",
                f"{r['efficiency']:.2f}", _f(roof["fps_ceiling"], ".1f"),
            ]
        else:
            cells += [f"{r['gflops']:.2f}", f"{r['dram_mb']:.1f}",
                      _f(roof["latency_floor_ms"], ".3f"), _f(roof["fps_ceiling"], ".1f")]
        table.add_row(*cells)
    console.print(table)
    gflops = {tuple(r["input_hw"]): r["gflops"] for r in results}
    console.print("GFLOPs: " + ", ".join(f"{g:.2f} at {h}x{w}" for (h, w), g in gflops.items()),
                  soft_wrap=True)
    if timed:
        console.print(f"speedup: median over rounds of the per-round mean-latency ratio to "
                      f"{report['baseline']}; efficiency: achieved GFLOP/s / fp32 matmul "
                      f"GFLOP/s; overhead {report['overhead_pct']:.3f}% of latency",
                      soft_wrap=True)
        for r in results:
            console.print(f"power {r['config']}: {_power(r)}", soft_wrap=True)
            if not isinstance(r.get("power_w"), (int, float)):
                break  # the same reason for all
    roof = first["roofline"]
    console.print(f"roofline on {roof['device']}: {roof['peak_source']}; {roof['bw_source']}",
                  soft_wrap=True)
