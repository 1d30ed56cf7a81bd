"""DESANet beside torchvision's real-time segmentation models, on this machine's CPU.

    python benchmarks/peers.py [--height 512 --width 1024] [--rounds 4] [--threads 2,1]

Four untrained networks (speed does not depend on the weights), 19 classes, batch 1, fp32:
torchvision ``lraspp_mobilenet_v3_large`` and ``deeplabv3_mobilenet_v3_large``
(``weights=None, weights_backbone=None``), DESANet-HN and DESANet-RN. Each runs in torch eager
and in onnxruntime (exported with ``edgeseg.deploy.onnx.export_onnx``: native DCN, default
session options of the edgeseg runtime) at every thread count in ``--threads``.

Rounds interleave every (model, runtime, threads) configuration and an fp32 matmul per thread
count, so load from other processes hits all of them alike; medians over rounds are reported.
FPS is network-only (``1000 / mean latency``); efficiency = achieved GFLOP/s (GFLOPs per frame,
multiply-add = 2, / latency) / the fp32 matmul GFLOP/s of the same round and thread count
(:func:`edgeseg.bench.peaks.matmul_gflops`). GFLOPs and parameters come from
:func:`edgeseg.bench.report.model_cost` (inference graph: no auxiliary heads).

Prints a rich table, ``--json`` on stdout, and writes the ``<!-- peers:start -->`` section of
docs/benchmarks.md (``--no-write`` to skip), naming the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import machine_line, write_section
from bench_targets import log

MODELS = ("lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large", "desanet-hn",
          "desanet-rn")


def build(name: str) -> Any:
    """The network in eval mode, returning logits (N, 19, H, W)."""
    import torch
    from torch import nn

    if name.startswith("desanet"):
        from edgeseg.models.desanet import build_model

        return build_model(name, aux=False).eval()
    import torchvision.models.segmentation as seg

    net = getattr(seg, name)(num_classes=19, weights=None, weights_backbone=None)

    class Logits(nn.Module):
        """torchvision's dict output -> the ``out`` tensor (the aux head is not built)."""

        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net
            self.variant = name

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)["out"]

    return Logits(net).eval()


def export(name: str, model: Any, hw: tuple[int, int], out: Path) -> Path:
    from edgeseg.artifacts.checkpoint import default_meta
    from edgeseg.deploy.onnx import export_onnx

    if not out.exists():
        log(f"exporting {out.name}")
        export_onnx(model, default_meta(name, hw), out, height=hw[0], width=hw[1], parity=False)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--calls", type=int, default=2, help="timed calls per config per round")
    ap.add_argument("--threads", default="2,1", help="comma list of thread counts")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--previous", type=Path, default=None,
                    help="JSON of an earlier --json run: render and write it, measure nothing")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    result = json.loads(a.previous.read_text()) if a.previous else measure(a)
    md = render(result)
    if a.json:
        print(json.dumps(result, indent=2))
    if not a.no_write:
        write_section("peers", md)
        log("wrote docs/benchmarks.md (peers section)")
    return 0


def measure(a: argparse.Namespace) -> dict[str, Any]:
    """Every (model, runtime, threads) configuration, interleaved rounds; the result dict."""
    import torch

    from edgeseg.bench.peaks import matmul_gflops
    from edgeseg.bench.report import model_cost
    from edgeseg.bench.timing import time_callable
    from edgeseg.runtime.onnxruntime_backend import make_session

    hw = (a.height, a.width)
    threads = [int(t) for t in a.threads.split(",")]
    names = [m.strip() for m in a.models.split(",") if m.strip()]
    host = machine_line()
    x = np.random.default_rng(0).standard_normal((1, 3, *hw)).astype(np.float32)
    xt = torch.from_numpy(x)
    fns: dict[tuple[str, str, int], Any] = {}
    costs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="edgeseg-peers-") as tmp:
        work = a.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name in names:
            model = build(name)
            costs[name] = model_cost(model, *hw)
            path = export(name, model, hw, work / f"{name}-{hw[0]}x{hw[1]}.onnx")
            for t in threads:
                def run_torch(model: Any = model, t: int = t) -> Any:
                    torch.set_num_threads(t)
                    with torch.inference_mode():
                        return model(xt)

                sess, _ = make_session(path, threads=t)
                fns[(name, "torch", t)] = run_torch
                fns[(name, "onnxruntime", t)] = (
                    lambda s=sess: s.run(None, {"input": x}))
        for key, fn in fns.items():
            log(f"warming {key}")
            fn()
        ms: dict[tuple[str, str, int], list[float]] = {k: [] for k in fns}
        mm: dict[int, list[float]] = {t: [] for t in threads}
        for r in range(a.rounds):
            for t in threads:
                torch.set_num_threads(t)
                mm[t].append(matmul_gflops(seconds=0.4)["gflops"])
            for key, fn in fns.items():
                res = time_callable(fn, warmup_s=0.0, min_warmup=0, iters=a.calls)
                ms[key].append(res.stats.mean_ms)
            log(f"round {r + 1}/{a.rounds}: " + ", ".join(
                f"{k[0][:12]}/{k[1][:5]}/{k[2]}={v[-1]:.0f}" for k, v in ms.items()))
    torch.set_num_threads(threads[0])

    rows = []
    for name in names:
        g = costs[name]["gflops"]
        row: dict[str, Any] = {"model": name, "params": costs[name]["params"], "gflops": g,
                               "cio_elements": costs[name]["cio_elements"], "by_threads": {}}
        for t in threads:
            tor, ort = ms[(name, "torch", t)], ms[(name, "onnxruntime", t)]
            row["by_threads"][str(t)] = {
                "torch_ms": statistics.median(tor),
                "onnxruntime_ms": statistics.median(ort),
                "torch_fps": 1000 / statistics.median(tor),
                "onnxruntime_fps": 1000 / statistics.median(ort),
                "ort_vs_torch": statistics.median(a_ / b for a_, b in zip(tor, ort)),
                "efficiency_onnxruntime": statistics.median(
                    g / (m / 1000) / p for m, p in zip(ort, mm[t])),
                "efficiency_torch": statistics.median(
                    g / (m / 1000) / p for m, p in zip(tor, mm[t])),
            }
        rows.append(row)
    return {"machine": host, "input_hw": list(hw), "rounds": a.rounds, "calls": a.calls,
            "threads": threads, "matmul_gflops": {str(t): statistics.median(v)
                                                  for t, v in mm.items()},
            "models": rows}


def render(result: dict[str, Any]) -> str:
    """The rich table (stderr) and the markdown section of a result."""
    from rich.console import Console
    from rich.table import Table

    hw, threads = result["input_hw"], result["threads"]
    table = Table(title=f"peers at {hw[0]}x{hw[1]}, fp32, batch 1, CPU")
    for col in ("model", "params (M)", "GFLOPs", "threads", "torch FPS", "ORT FPS",
                "ORT/torch", "eff. ORT", "eff. torch"):
        table.add_column(col, justify="left" if col == "model" else "right")
    md = [
        "## Peers: DESANet beside torchvision's real-time segmentation models",
        "",
        f"Machine: {result['machine']}.",
        "",
        (f"`python benchmarks/peers.py --height {hw[0]} --width {hw[1]} --rounds "
         f"{result['rounds']} --calls {result['calls']} --threads "
         f"{','.join(map(str, threads))}`: untrained networks, 19 classes, batch 1, fp32, "
         "network only (no pre/post-processing). onnxruntime runs the ONNX exported by "
         "`edgeseg.deploy.onnx.export_onnx` (native DCN) with the edgeseg runtime's session "
         "options. Medians over interleaved rounds; efficiency = achieved GFLOP/s / fp32 "
         "matmul GFLOP/s of the same round and thread count (matmul: "
         + ", ".join(f"{v:.1f} GFLOP/s at {t} thread(s)"
                     for t, v in result["matmul_gflops"].items())
         + "). The machine is shared and loaded by other jobs: compare within the table, "
         "not with other machines; with 2 threads on 2 busy cores every parallel region waits "
         "for a descheduled thread, which hits torch eager (hundreds of small ops) hardest."),
        "",
        ("| model | params (M) | GFLOPs | threads | torch FPS | onnxruntime FPS | ORT / torch "
         "| efficiency ORT | efficiency torch |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["models"]:
        for t in threads:
            b = row["by_threads"][str(t)]
            cells = [row["model"], f"{row['params'] / 1e6:.2f}", f"{row['gflops']:.1f}", str(t),
                     f"{b['torch_fps']:.2f}", f"{b['onnxruntime_fps']:.2f}",
                     f"{b['ort_vs_torch']:.2f}x", f"{b['efficiency_onnxruntime']:.2f}",
                     f"{b['efficiency_torch']:.2f}"]
            table.add_row(*cells)
            md.append("| " + " | ".join(cells) + " |")
    Console(stderr=True).print(table)
    return "\n".join(md)


if __name__ == "__main__":
    raise SystemExit(main())
