"""Export parity and CPU latency: DESANet-HN/RN x deformable-conv mode x runtime.

For each variant and each deformable-conv mode (``native``: ONNX DeformConv / torchvision;
``portable``: GridSample + Conv / the eager CPU formulation) the script

1. exports a random-init model to ONNX with ``edgeseg.deploy.onnx.export_onnx`` (static
   shape, batch 1) — the offset conv gets small random weights and a bias of about 1 px so the
   deformable conv samples off the grid;
2. compares each runtime's logits with the reference, PyTorch fp32 with torchvision's
   deformable conv, on a synthetic street scene: max |logit diff| and argmax agreement;
3. times ``Segmenter.infer`` (network only, no pre/post-processing) for onnxruntime (the
   runtime backend's session options) and torch (``inference_mode``), calls interleaved
   round-robin because the machine is shared.

Prints a table and writes its section of docs/benchmarks.md (between
``<!-- export_parity:start -->`` and ``<!-- export_parity:end -->``; the rest is kept).

    python benchmarks/export_parity.py                       # 512x1024, 5 timed calls each
    python benchmarks/export_parity.py --height 128 --width 256 --iters 3 --no-write
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch
from rich.console import Console
from rich.table import Table

from edgeseg.artifacts.checkpoint import default_meta
from edgeseg.bench.timing import LatencyStats
from edgeseg.deploy.onnx import export_onnx, parity_input
from edgeseg.models.desanet import build_model
from edgeseg.runtime.onnxruntime_backend import OnnxRuntimeSegmenter, physical_cores
from edgeseg.runtime.torch_backend import TorchSegmenter

START, END = "<!-- export_parity:start -->", "<!-- export_parity:end -->"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import DOC, cpu_model, load_average, write_section  # noqa: E402

VARIANTS = ("desanet-hn", "desanet-rn")
MODES = ("native", "portable")


def deforming_model(variant: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(variant, aux=False).eval()
    offset: Any = model.spatial_path.deform.offset  # type: ignore[union-attr]
    with torch.no_grad():
        offset.weight.normal_(0.0, 0.01)
        offset.bias.normal_(0.0, 1.0)
    return model


def compare(ref: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    return float(np.abs(ref - got).max()), float((ref.argmax(1) == got.argmax(1)).mean())


def bench_variant(
    variant: str, hw: tuple[int, int], iters: int, threads: int, workdir: Path, console: Console
) -> list[dict[str, Any]]:
    model = deforming_model(variant)
    meta = default_meta(variant, hw)
    x = parity_input(meta, *hw)
    reference: Any = copy.deepcopy(model)
    reference.set_dcn_impl("native")
    with torch.inference_mode():
        ref = reference(torch.from_numpy(x)).numpy()
    del reference

    rows: list[dict[str, Any]] = []
    for mode in MODES:
        path = workdir / f"{variant}-{mode}.onnx"
        console.print(f"exporting {path.name} at {hw[0]}x{hw[1]} ...")
        report = export_onnx(model, meta, path, dcn=mode)
        segs = {
            "onnxruntime": OnnxRuntimeSegmenter(path, threads=threads),
            "torch": TorchSegmenter(copy.deepcopy(model), meta, dcn=mode),
        }
        diffs = {name: compare(ref, seg.infer(x)) for name, seg in segs.items()}  # also warms up
        times: dict[str, list[float]] = {name: [] for name in segs}
        for _ in range(iters):
            for name, seg in segs.items():
                t0 = time.perf_counter()
                seg.infer(x)
                times[name].append((time.perf_counter() - t0) * 1e3)
        for name, seg in segs.items():
            stats = LatencyStats.from_samples(times[name])
            rows.append({
                "variant": variant, "dcn": mode, "runtime": name,
                "max_abs_diff": diffs[name][0], "agreement": diffs[name][1],
                "p50_ms": stats.p50_ms, "ci95_ms": stats.ci95_ms,
                "onnx_nodes": report["nodes"], "dcn_op": report["dcn_op"],
                "export_s": report["export_s"],
            })
            console.print(f"  {variant} {mode} {name}: {stats.p50_ms:.0f} ms, "
                          f"agreement {diffs[name][1]:.5f}")
        del segs
        path.unlink()
    return rows


def table(rows: list[dict[str, Any]]) -> Table:
    t = Table(title="export parity and CPU latency (network only, batch 1)")
    for col in ("variant", "DCN", "runtime", "max |diff|", "agreement", "ms (median)",
                "95% CI of mean"):
        t.add_column(col, justify="right" if col[0] in "m9a" else "left")
    for r in rows:
        t.add_row(r["variant"], r["dcn"], r["runtime"], f"{r['max_abs_diff']:.1e}",
                  f"{r['agreement']:.5f}", f"{r['p50_ms']:.0f}",
                  f"{r['ci95_ms'][0]:.0f} - {r['ci95_ms'][1]:.0f}")
    return t


def markdown(rows: list[dict[str, Any]], meta: dict[str, str]) -> str:
    lines = [
        START,
        "## Export parity and CPU latency (ONNX vs PyTorch)",
        "",
        (
            f"`python benchmarks/export_parity.py --height {meta['h']} --width {meta['w']} "
            f"--iters {meta['iters']} --threads {meta['threads']}` on {meta['date']}. "
            f"Machine: {meta['cpu']}, "
            f"{meta['cores']} logical cores ({meta['physical']} physical), no GPU; "
            f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__} "
            f"(CPUExecutionProvider, ORT_ENABLE_ALL, sequential), {meta['threads']} thread(s) "
            f"each; load average (1/5/15 min) "
            f"{meta['load_start']} before, {meta['load_end']} after (shared machine: latencies "
            "are upper bounds)."
        ),
        "",
        (
            f"Random-init models whose offset conv deforms (offsets ~1 px), batch 1, "
            f"{meta['h']}x{meta['w']}, fp32, a synthetic street scene. *max |diff|* and "
            "*agreement* (argmax pixels equal) are against PyTorch fp32 with torchvision's "
            "deformable conv. Latency is `Segmenter.infer` only (no resize, normalisation or "
            f"argmax on the host), median of {meta['iters']} calls after one warm-up, runtimes "
            "interleaved; the interval is the bootstrap 95% CI of the mean."
        ),
        "",
        "| variant | DCN | runtime | ONNX op | max abs diff | agreement | ms (median) | 95% CI |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        op = r["dcn_op"] if r["runtime"] == "onnxruntime" else (
            "torchvision" if r["dcn"] == "native" else "eager CPU")
        lines.append(
            f"| {r['variant']} | {r['dcn']} | {r['runtime']} | {op} | {r['max_abs_diff']:.1e} "
            f"| {r['agreement']:.5f} | {r['p50_ms']:.0f} "
            f"| {r['ci95_ms'][0]:.0f}-{r['ci95_ms'][1]:.0f} |"
        )
    lines += [
        "",
        (
            "- *native* exports one ONNX `DeformConv` (opset 19; torch.onnx has no translation "
            "for `torchvision::deform_conv2d`, edgeseg supplies it) and runs torchvision's "
            "kernel in PyTorch. *portable* exports GridSample + Conv (no DeformConv: TensorRT 8.6 "
            "and any ONNX runtime) and runs the eager CPU formulation in PyTorch."
        ),
        "- `edgeseg export` fails an export whose fp32 agreement is below 0.999.",
    ]
    if meta["threads"] == "1" and meta["physical"] != "1":
        lines.append(
            "- One thread per runtime because the machine was shared and loaded: with a thread "
            "per core, torch's OpenMP barriers wait for preempted threads and its latency "
            "grew about tenfold in a trial run, which would measure the neighbours, not the model."
        )
    lines.append(END)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--iters", type=int, default=5, help="timed calls per runtime")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument(
        "--threads", type=int, default=None,
        help="threads for both runtimes (default: physical cores; use 1 on a loaded machine, "
        "where torch's OpenMP barriers wait for preempted threads)",
    )
    ap.add_argument("--doc", type=Path, default=DOC, help="markdown file to update")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()

    args.threads = args.threads or physical_cores()
    torch.set_num_threads(args.threads)
    console = Console(width=None if sys.stdout.isatty() else 110)
    meta = {
        "date": dt.date.today().isoformat(), "cpu": cpu_model(), "cores": str(os.cpu_count()),
        "physical": str(physical_cores()), "load_start": load_average(),
        "h": str(args.height), "w": str(args.width), "iters": str(args.iters),
        "threads": str(args.threads),
    }
    console.print(f"{meta['cpu']}, {meta['cores']} cores, load {meta['load_start']}")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="export-parity-") as tmp:
        for variant in args.variants.split(","):
            rows += bench_variant(variant, (args.height, args.width), args.iters, args.threads,
                                  Path(tmp), console)
    meta["load_end"] = load_average()
    console.print(table(rows))
    if not args.no_write:
        write_section("export_parity", markdown(rows, meta), args.doc)
        console.print(f"wrote the export_parity section of {args.doc}")


if __name__ == "__main__":
    main()
