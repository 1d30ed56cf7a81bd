"""Triton on CPU: throughput at concurrency 1, 2, 4, 8 through a real tritonserver against the
local Segmenter at batch 1, and what dynamic batching gains.

The server is the nvidia-pytriton wheel's tritonserver (Python backend), serving the
Python-backend form of the export (edgeseg's Segmenter with onnxruntime inside) twice:

* ``seg_batched``: max_batch_size 8, dynamic batching (preferred 4, 8; queue delay 2 ms), one
  instance: the requests waiting in the queue run as one onnxruntime batch;
* ``seg_single``: no batching (max_batch_size 0), one instance: one request per execution.

Clients are gRPC (edgeseg's Triton backend), one connection per client thread, frames of
360x640 RGB sent back to back (:func:`edgeseg.bench.concurrency.measure_concurrency`).
The local baseline is ``OnnxRuntimeSegmenter`` on the same ONNX at batch 1, one caller.

    python benchmarks/triton_serving.py --onnx model.onnx   # an ONNX exported with --dynamic
    python benchmarks/triton_serving.py --duration 3 --no-write

Prints a table with PASS/MISS and writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from edgeseg.bench.concurrency import measure_concurrency
from edgeseg.deploy.triton import Batching, write_repository
from edgeseg.deploy.tritonserver import TritonServer
from edgeseg.runtime.onnxruntime_backend import OnnxRuntimeSegmenter, physical_cores
from edgeseg.runtime.triton_backend import TritonSegmenter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import cpu_model, load_average, write_section

LEVELS = (1, 2, 4, 8)
GAIN_TARGET = 1.1  # dynamic batching at concurrency 8 vs no batching
OVERHEAD_TARGET = 0.7  # server at concurrency 1 vs the local Segmenter
READING = (
    "Reading: onnxruntime already uses both cores at batch 1, so on this CPU a larger batch "
    "has no idle compute to fill, and the server's own threads (gRPC, the Python stub's "
    "shared-memory hand-off) compete with it; at a load average above the core count the rows "
    "differ by more than batching does. The batcher did form batches (sizes above); a "
    "throughput gain from dynamic batching needs a device with spare parallelism (a GPU)."
)


def frames(n: int = 4, hw: tuple[int, int] = (360, 640)) -> list[np.ndarray]:
    from edgeseg.data.synthetic import generate_scene

    rng = np.random.default_rng(0)
    return [np.ascontiguousarray(generate_scene(rng, *hw)[0][:, :, ::-1]) for _ in range(n)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--onnx", type=Path, required=True, help="ONNX with a dynamic batch")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per level")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=physical_cores(),
                    help="onnxruntime threads (server instance and local)")
    ap.add_argument("--no-write", action="store_true", help="don't update docs/benchmarks.md")
    args = ap.parse_args()
    console = Console()
    load_start = load_average()
    imgs = frames()

    local = OnnxRuntimeSegmenter(args.onnx, threads=args.threads)
    console.print(f"local Segmenter, {args.onnx.name}, {local.meta.input_hw}, batch 1")
    (local_row,) = measure_concurrency(lambda: local, imgs, [1], duration_s=args.duration,
                                       warmup_s=args.warmup)

    rows: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        write_repository(repo, args.onnx, name="seg_batched", form="python", threads=args.threads,
                         batching=Batching(8, (4, 8), 2000))
        write_repository(repo, args.onnx, name="seg_single", form="python", threads=args.threads,
                         batching=Batching(0, ()))
        with TritonServer(repo, ready_timeout_s=300) as srv:
            for model in ("seg_batched", "seg_single"):
                console.print(f"server {model}: concurrency {', '.join(map(str, LEVELS))}")

                def make(model: str = model) -> Any:
                    return TritonSegmenter(srv.grpc_url, model=model, protocol="grpc")

                rows[model] = measure_concurrency(make, imgs, LEVELS, duration_s=args.duration,
                                                  warmup_s=args.warmup, step=console.print)
            stats = TritonSegmenter(srv.grpc_url, model="seg_batched").statistics()
    batch_sizes = sorted(int(b["batch_size"]) for b in stats["model_stats"][0]["batch_stats"])

    local_fps = local_row["throughput_fps"] or float("nan")

    def ratio(a: float, b: float) -> float:
        return a / b if b else float("nan")

    table = Table(title=f"Triton (Python backend, CPU) vs local Segmenter — {cpu_model()}")
    for col in ("path", "concurrency", "fps", "p50 ms", "p99 ms", "vs local", "batching gain"):
        table.add_column(col, justify="right" if col != "path" else "left")
    lines = [("| path | concurrency | frames/s | p50 ms | p99 ms | vs local batch 1 | "
             "batching gain |"), "|---|---|---|---|---|---|---|"]

    def add(path: str, r: dict[str, Any], gain: str) -> None:
        cells = [path, str(r["concurrency"]), f"{r['throughput_fps']:.1f}",
                 f"{r['latency_ms']['p50']:.1f}", f"{r['latency_ms']['p99']:.1f}",
                 f"{ratio(r['throughput_fps'], local_fps):.2f}x", gain]
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")

    add("local Segmenter (onnxruntime)", local_row, "")
    for b, s in zip(rows["seg_batched"], rows["seg_single"]):
        add("server, dynamic batching", b, f"{ratio(b['throughput_fps'], s['throughput_fps']):.2f}x")
    for s in rows["seg_single"]:
        add("server, no batching", s, "")
    console.print(table)

    gain8 = ratio(rows["seg_batched"][-1]["throughput_fps"], rows["seg_single"][-1]["throughput_fps"])
    overhead = ratio(rows["seg_single"][0]["throughput_fps"], local_fps)
    checks = [
        (f"dynamic batching gain at concurrency 8 >= {GAIN_TARGET}x", gain8 >= GAIN_TARGET,
         f"{gain8:.2f}x"),
        (f"server at concurrency 1 >= {OVERHEAD_TARGET:.0%} of local batch 1",
         overhead >= OVERHEAD_TARGET, f"{overhead:.0%}"),
    ]
    for text, ok, got in checks:
        console.print(f"{'PASS' if ok else 'MISS'}  {text}: {got}")

    if not args.no_write:
        body = "\n".join([
            "## Triton serving on CPU (benchmarks/triton_serving.py)",
            "",
            (f"{dt.date.today()}, {cpu_model()} (2 cores, AVX2 + FMA, no AVX-512/VNNI/bf16), "
            f"no GPU; load average {load_start} at start (the machine is shared)."),
            (f"Model: `{args.onnx.name}` at {local.meta.input_hw[0]}x{local.meta.input_hw[1]} "
            f"(untrained DESANet-HN, dynamic batch), onnxruntime {args.threads} threads in "
            "the server instance and locally; frames 360x640 RGB over gRPC; "
            f"{args.duration:.0f} s per level after {args.warmup:.0f} s warm-up. Server: "
            "nvidia-pytriton's tritonserver, Python backend running edgeseg's Segmenter "
            "(`edgeseg export --format triton` Python form), one instance per model; "
            "dynamic batching = max_batch_size 8, preferred 4/8, 2 ms queue delay."),
            "",
            *lines,
            "",
            f"Batch sizes the server ran (batch_stats of seg_batched): {batch_sizes}.",
            "",
            READING,
            "",
            *[f"- {'PASS' if ok else 'MISS'} {text}: {got}" for text, ok, got in checks],
        ])
        write_section("triton", body)
        console.print("wrote docs/benchmarks.md section triton")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
