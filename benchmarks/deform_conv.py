"""CPU cost of the deformable convolution implementations relative to a dense 3x3 conv.

Measures, at DESANet's spatial-path shapes (batch 1, 128 -> 128 channels, 3x3, stride 1,
padding 1, float32, ``torch.no_grad``):

* ``dense``: ``F.conv2d`` with the same input and weight (the reference, ratio 1.00);
* ``portable``: :func:`edgeseg.models.deform.deform_conv2d_portable` as eager CPU code runs it
  (the embedding_bag + banded strided-conv formulation);
* ``portable (graph)``: :func:`edgeseg.models.deform.deform_conv2d_grid_sample`, the
  formulation that ONNX export / TensorRT / other devices get (one grid_sample + one conv);
* ``native``: ``torchvision.ops.deform_conv2d``.

The machine is shared and noisy, so implementations run interleaved, round after round; each
reports the median time and the median over rounds of (its time / dense time in the same round).
Offsets are N(0, 2 px) per tap, like a trained layer's (zero offsets would flatter the
samplers' memory access).

Prints a table and writes its section of docs/benchmarks.md (between
``<!-- deform_conv:start -->`` and ``<!-- deform_conv:end -->``; the rest of the file is kept).

    python benchmarks/deform_conv.py                  # both shapes, 2 and 1 threads, write doc
    python benchmarks/deform_conv.py --rounds 3 --shapes 128x256 --threads 2 --no-write

Single-threaded runs are the steadier reference on a loaded machine: with every core busy, each
of the portable path's parallel regions (a few per band) waits for a descheduled OpenMP thread,
which a single dense convolution does not.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from rich.console import Console
from rich.table import Table

from edgeseg.models.deform import (
    _default_impl,
    deform_conv2d_grid_sample,
    deform_conv2d_native,
    deform_conv2d_portable,
)

START, END = "<!-- deform_conv:start -->", "<!-- deform_conv:end -->"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import DOC, cpu_model, load_average, write_section  # noqa: E402

CHANNELS = 128
OFFSET_STD = 2.0
ARGS = ((1, 1), (1, 1), (1, 1))  # stride, padding, dilation


Row = tuple[float, float, "float | None"]  # ms median, x dense (wall), x dense (CPU time)


def measure(fns: dict[str, Callable[[], torch.Tensor]], rounds: int) -> dict[str, Row]:
    """name -> (median wall ms, median wall ratio to ``dense`` within a round, the same ratio
    in CPU time of this thread when torch runs single-threaded, else None). One warm-up round.

    Single-threaded, all the work is on this thread, so its CPU time leaves out the time the
    machine's other load keeps it descheduled (cache and memory contention stay in)."""
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(rounds + 1):
        for name, fn in fns.items():
            t0, c0 = time.perf_counter(), time.thread_time()
            fn()
            if r:
                wall[name].append((time.perf_counter() - t0) * 1e3)
                cpu[name].append((time.thread_time() - c0) * 1e3)

    def ratio(v: list[float], d: list[float]) -> float:
        return statistics.median(a / b for a, b in zip(v, d))

    single = torch.get_num_threads() == 1
    return {
        k: (
            statistics.median(v),
            ratio(v, wall["dense"]),
            ratio(cpu[k], cpu["dense"]) if single else None,
        )
        for k, v in wall.items()
    }


def bench_shape(h: int, w: int, rounds: int, native: bool) -> tuple[dict[str, Row], float]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, CHANNELS, h, w, generator=g)
    weight = torch.randn(CHANNELS, CHANNELS, 3, 3, generator=g) / (CHANNELS * 9) ** 0.5
    offset = torch.randn(1, 18, h, w, generator=g) * OFFSET_STD
    fns: dict[str, Callable[[], torch.Tensor]] = {
        "dense": lambda: F.conv2d(x, weight, padding=1),
        "portable": lambda: deform_conv2d_portable(x, offset, weight, None, *ARGS),
        "portable (graph)": lambda: deform_conv2d_grid_sample(x, offset, weight, None, *ARGS),
    }
    if native:
        fns["native"] = lambda: deform_conv2d_native(x, offset, weight, None, *ARGS)
    with torch.no_grad():
        ref = deform_conv2d_native(x, offset, weight, None, *ARGS)
        err = (deform_conv2d_portable(x, offset, weight, None, *ARGS) - ref).abs().max().item()
        del ref
        return measure(fns, rounds), err


def markdown(
    results: dict[tuple[str, int], dict[str, Row]],
    errors: dict[str, float],
    meta: dict[str, str],
) -> str:
    lines = [
        START,
        "## Deformable convolution on CPU",
        "",
        (
            f"`python benchmarks/deform_conv.py {meta['argv']}` on {meta['date']}: "
            f"{meta['cpu']} ({meta['cores']} cores, torch threads as listed), "
            f"torch {torch.__version__}, torchvision {torchvision.__version__}; load average "
            f"(1/5/15 min) {meta['load_start']} before, {meta['load_end']} after (shared machine)."
        ),
        "",
        (
            f"Batch 1, {CHANNELS} -> {CHANNELS} channels, 3x3, stride 1, padding 1, float32, "
            f"`torch.no_grad`, offsets N(0, {OFFSET_STD:g} px). Median of {meta['rounds']} "
            "interleaved rounds; *x dense* is the median over rounds of the implementation's "
            "wall time over the dense conv's in the same round; *x dense (CPU time)*, "
            "single-threaded runs only, is the same ratio in the calling thread's CPU time, "
            "which leaves out the time other processes keep it descheduled."
        ),
        "",
        "| shape (HxW) | threads | implementation | ms (median) | x dense | x dense (CPU time) |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for (shape, threads), rows in results.items():
        for name, (ms, ratio, cpu_ratio) in rows.items():
            lines.append(
                f"| {shape} | {threads} | {name} | {ms:.1f} | {ratio:.2f} | {_fmt(cpu_ratio)} |"
            )
    lines += [
        "",
        "- *dense*: `F.conv2d`, same input and weight. *native*: `torchvision.ops.deform_conv2d`.",
        (
            "- *portable*: `deform_conv2d_portable` in eager CPU code: bilinear sampling as "
            "`F.embedding_bag` over the channels-last zero-padded input (4 corner rows, bilinear "
            "per-sample weights), in ~8 MB row bands, each contracted by one channels-last "
            "`conv2d(stride=3)` over its 3x3 blocks."
        ),
        (
            "- *portable (graph)*: the formulation exported to ONNX / TensorRT and used off-CPU: "
            "one `grid_sample` of all 9 taps into a (3H, 3W) block image + one "
            "`conv2d(stride=3)`; on CPU it pays for allocating and filling the 9x-sized block "
            "image at once."
        ),
        (
            "- On a loaded machine the 2-thread *portable* figure is mostly waiting: each band "
            "opens two OpenMP regions (embedding_bag, conv), ~40 per call at 128x256, and each "
            "waits for the second thread to be scheduled again; the dense conv opens one. The "
            "single-threaded rows show the cost of the work itself."
        ),
        "- max |portable - native| at "
        + ", ".join(f"{s}: {e:.1e}" for s, e in errors.items())
        + f". `DeformableConv2d(impl='auto')` picks *{_default_impl(torch.device('cpu'))}* on "
        "CPU and *native* on CUDA. The module also runs its offset conv (18 output channels, "
        f"~{18 / CHANNELS:.0%} of a dense conv's FLOPs), not included here.",
        END,
    ]
    return "\n".join(lines)


def _fmt(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7, help="timed rounds per shape (median)")
    ap.add_argument("--shapes", default="128x256,256x512", help="comma-separated HxW")
    ap.add_argument(
        "--threads", default=None, help="comma-separated torch thread counts (default: torch's,1)"
    )
    ap.add_argument("--no-native", action="store_true", help="skip torchvision (slow on CPU)")
    ap.add_argument("--doc", type=Path, default=DOC, help="markdown file to update")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()
    default_threads = torch.get_num_threads()
    threads = [int(t) for t in (args.threads or f"{default_threads},1").split(",")]
    threads = list(dict.fromkeys(threads))

    console = Console()
    meta = {
        "date": dt.date.today().isoformat(),
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "rounds": str(args.rounds),
        "argv": " ".join(sys.argv[1:]) or "(defaults)",
        "load_start": load_average(),
    }
    console.print(f"{meta['cpu']}, {meta['cores']} cores, load {meta['load_start']}")
    results: dict[tuple[str, int], dict[str, Row]] = {}
    errors: dict[str, float] = {}
    for shape in args.shapes.split(","):
        h, w = (int(v) for v in shape.lower().split("x"))
        for n_threads in threads:
            torch.set_num_threads(n_threads)
            console.print(f"measuring {h}x{w}, {n_threads} threads ...")
            results[(f"{h}x{w}", n_threads)], errors[f"{h}x{w}"] = bench_shape(
                h, w, args.rounds, not args.no_native
            )
    torch.set_num_threads(default_threads)
    meta["load_end"] = load_average()

    table = Table(title="Deformable conv vs dense 3x3 conv (CPU, batch 1, 128 -> 128 channels)")
    for col, justify in (("shape", "left"), ("threads", "right"), ("impl", "left"),
                         ("ms median", "right"), ("ratio to dense", "right"),
                         ("ratio (CPU time)", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for (shape, n_threads), rows in results.items():
        for name, (ms, ratio, cpu_ratio) in rows.items():
            table.add_row(
                shape, str(n_threads), name, f"{ms:.1f}", f"{ratio:.2f}", _fmt(cpu_ratio)
            )
    console.print(table)
    console.print(f"load average after: {meta['load_end']}")
    if not args.no_write:
        write_section("deform_conv", markdown(results, errors, meta), args.doc)
        console.print(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
