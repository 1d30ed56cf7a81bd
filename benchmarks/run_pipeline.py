"""End-to-end `edgeseg run` speed vs network-only speed, on this machine's CPU.

    python benchmarks/run_pipeline.py [--height 256 --width 512 --frames 30 --rounds 3]

A random-init DESANet-HN (speed does not depend on the weights) runs through onnxruntime when
it and the ONNX exporter are available, else torch. Each round times

* network only: ``segmenter.infer`` on one pre-processed frame, ``--frames`` times, and
* end to end: ``run_pipeline`` over a synthetic MJPG video of ``--frames`` frames: decode
  (reader thread), preprocess, inference, argmax + resize, overlay + legend + HUD, mp4v encode
  (writer thread), timed by the wall clock from opening the video to the finalised output.

Rounds alternate the two so that load from other processes hits both alike; medians are
reported. Target: end-to-end FPS >= 0.9 x network-only FPS. Results go to a rich table and to
``docs/benchmarks.md`` between ``<!-- run_pipeline:start -->`` and ``<!-- run_pipeline:end -->``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import DOC, write_section  # noqa: E402
TARGET = 0.9


# ------------------------------------------------------------------------- shared with run_soak


def machine() -> str:
    """One line naming the machine, its load and the software versions."""
    import cv2

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    parts = [f"{cpu}, {os.cpu_count()} logical cores, no GPU used",
             f"{platform.system()} {platform.release()}", f"Python {platform.python_version()}",
             f"OpenCV {cv2.__version__}"]
    try:
        import onnxruntime

        parts.append(f"onnxruntime {onnxruntime.__version__}")
    except ImportError:
        pass
    import torch

    parts.append(f"torch {torch.__version__}")
    if hasattr(os, "getloadavg"):
        parts.append(f"load average at start {os.getloadavg()[0]:.1f}")
    return "; ".join(parts)


def synthetic_video(path: Path, n: int, hw: tuple[int, int], fps: float = 30.0) -> Path:
    """A street-like MJPG video: sky/road bands, moving boxes, noise (so JPEG has work to do)."""
    import cv2

    h, w = hw
    rng = np.random.default_rng(0)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    if not vw.isOpened():
        raise SystemExit(f"cannot write {path}")
    base = np.zeros((h, w, 3), np.uint8)
    base[: h // 3] = (180, 130, 70)
    base[h // 3: 2 * h // 3] = (70, 70, 70)
    base[2 * h // 3:] = (128, 64, 128)
    noise = rng.integers(0, 24, (h, w, 3), dtype=np.uint8)
    for i in range(n):
        f = cv2.add(base, noise)
        x = (7 * i) % max(1, w - w // 6)
        cv2.rectangle(f, (x, h // 2), (x + w // 6, h // 2 + h // 5), (142, 0, 0), -1)
        vw.write(f)
    vw.release()
    return path


def make_segmenter(backend: str, hw: tuple[int, int], workdir: Path, *, argmax: bool = False,
                   dcn: str = "portable") -> Any:
    """A random-init DESANet-HN at ``hw`` through onnxruntime (exported here) or torch."""
    from edgeseg.models.desanet import build_model
    from edgeseg.runtime import open_segmenter
    from edgeseg.train.checkpoint import default_meta, save_model_only

    model, meta = build_model("desanet-hn", aux=False).eval(), default_meta("desanet-hn", hw)
    if backend in ("auto", "onnxruntime"):
        try:
            import onnxruntime  # noqa: F401

            from edgeseg.deploy.onnx import export_onnx
        except ImportError:
            if backend == "onnxruntime":
                raise SystemExit("onnxruntime or edgeseg.deploy.onnx is not available") from None
        else:
            onnx = workdir / "desanet-hn.onnx"
            print(f"exporting {onnx.name} at {hw[0]}x{hw[1]} ({dcn} DCN) ...", file=sys.stderr)
            export_onnx(model, meta, onnx, dcn=dcn, argmax=argmax, parity=False)
            return open_segmenter(onnx)
    ckpt = save_model_only(workdir / "desanet-hn.pt", model, meta)
    return open_segmenter(ckpt, argmax=argmax, dcn=dcn)


# ------------------------------------------------------------------------------- this benchmark


def network_fps(seg: Any, batch: np.ndarray, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        seg.infer(batch)
    return n / (time.perf_counter() - t)


def e2e(seg: Any, video: Path, out: Path, visualize: str) -> tuple[float, Any]:
    from edgeseg.video.pipeline import run_pipeline

    t = time.perf_counter()
    s = run_pipeline(seg, str(video), str(out), visualize=visualize)
    wall = time.perf_counter() - t
    return s.frames / wall, s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--source-height", type=int, default=None, help="video size [network size]")
    ap.add_argument("--source-width", type=int, default=None)
    ap.add_argument("--frames", type=int, default=30, help="frames per timed run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--backend", choices=("auto", "onnxruntime", "torch"), default="auto")
    ap.add_argument("--visualize", default="overlay")
    ap.add_argument("--argmax", action="store_true", help="argmax inside the network (labels out)")
    ap.add_argument("--dcn", choices=("portable", "native"), default="portable")
    ap.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    hw = (a.height, a.width)
    src_hw = (a.source_height or a.height, a.source_width or a.width)
    host = machine()
    with tempfile.TemporaryDirectory(prefix="edgeseg-bench-") as tmp:
        work = Path(tmp)
        seg = make_segmenter(a.backend, hw, work, argmax=a.argmax, dcn=a.dcn)
        video = synthetic_video(work / "in.avi", a.frames, src_hw)
        import cv2

        frame = cv2.VideoCapture(str(video)).read()[1]
        batch = seg.preprocess(frame)
        for _ in range(3):  # warm-up: allocator, thread pools, caches
            seg.infer(batch)
        nets, e2es, summaries = [], [], []
        for r in range(a.rounds):
            nets.append(network_fps(seg, batch, a.frames))
            fps, s = e2e(seg, video, work / "out.mp4", a.visualize)
            e2es.append(fps)
            summaries.append(s)
            console.print(f"round {r + 1}/{a.rounds}: network {nets[-1]:.2f} FPS, "
                          f"end-to-end {fps:.2f} FPS")
    net, end = statistics.median(nets), statistics.median(e2es)
    ratio = end / net
    last = summaries[-1]
    result = {
        "machine": host, "backend": seg.backend, "input_hw": list(hw), "source_hw": list(src_hw),
        "frames": a.frames, "rounds": a.rounds, "argmax": a.argmax, "dcn": a.dcn,
        "network_fps": net, "e2e_fps": end,
        "ratio": ratio, "target": TARGET, "passed": ratio >= TARGET,
        "network_fps_rounds": nets, "e2e_fps_rounds": e2es,
        "e2e_latency_ms": last.latency_ms, "stages_ms": last.stages_ms,
    }

    table = Table(title=f"edgeseg run, DESANet-HN {hw[0]}x{hw[1]}, {seg.backend} on CPU")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("network only (infer)", f"{net:.2f} FPS  ({', '.join(f'{x:.2f}' for x in nets)})"),
        ("end to end (decode..encode)", f"{end:.2f} FPS  ({', '.join(f'{x:.2f}' for x in e2es)})"),
        ("ratio (target >= 0.90)", f"{ratio:.3f}  {'PASS' if ratio >= TARGET else 'FAIL'}"),
        ("e2e latency p50 / p99", f"{last.latency_ms['p50']:.1f} / {last.latency_ms['p99']:.1f} ms"),
    ] + [(f"  stage {k} (mean)", f"{v:.2f} ms") for k, v in last.stages_ms.items()]
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    if a.json:
        print(json.dumps(result, indent=2))
    if not a.no_write:
        md = [
            "## `edgeseg run`: end-to-end vs network-only FPS",
            "",
            f"Machine: {host}.",
            "",
            (f"`python benchmarks/run_pipeline.py --height {a.height} --width {a.width} "
             f"--frames {a.frames} --rounds {a.rounds} --backend {a.backend} --dcn {a.dcn}"
             f"{' --argmax' if a.argmax else ''}`: random-init "
             f"DESANet-HN at {hw[0]}x{hw[1]} through **{seg.backend}** "
             f"({'labels out of the network' if a.argmax else 'logits out, argmax in numpy'}, "
             f"{a.dcn} deformable conv), source a "
             f"{src_hw[0]}x{src_hw[1]} MJPG video, sink an mp4v file, `--visualize "
             f"{a.visualize}` with legend and HUD. Median of the rounds; network-only and "
             "end-to-end runs alternate."),
            "",
            "| measure | value |",
            "|---|---|",
        ] + [f"| {k.strip()} | {v} |" for k, v in rows]
        md += ["", ("Stages run on three threads (read + preprocess on the reader, encode on the "
                    "writer), so the stage means overlap and do not add up to the frame time.")]
        write_section("run_pipeline", "\n".join(md))
        console.print(f"wrote {DOC.relative_to(ROOT)} (run_pipeline section)")
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
