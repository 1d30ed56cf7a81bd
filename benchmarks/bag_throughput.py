"""Bag -> Segmenter -> bag throughput vs the Segmenter alone, on this machine's CPU.

    python benchmarks/bag_throughput.py [--height 256 --width 512 --frames 30 --rounds 3]

A random-init DESANet-HN (speed does not depend on the weights), through onnxruntime when it
and the ONNX exporter are available, else torch. A ROS 2 MCAP bag of ``--frames`` synthetic
camera frames (sensor_msgs/Image bgr8 at the source size, or CompressedImage jpeg with
``--compressed``) is written first. Each round times

* Segmenter alone: ``segmenter(bgr)`` (preprocess, inference, argmax + resize to the frame) on
  frames already decoded in memory, ``--frames`` times, and
* bag to bag: ``run_pipeline`` from the bag (rosbags read + deserialise + decode on the reader
  thread) to an MCAP bag of class_mask, color_mask, overlay and label_info (rendering,
  serialisation and writing on the writer thread), by the wall clock from opening the bag to
  the finalised output file.

Rounds alternate the two; medians are reported. Target: bag-to-bag FPS >= 0.9 x Segmenter-alone
FPS. Results go to a rich table and to docs/benchmarks.md (``bag_throughput`` section).
"""

from __future__ import annotations

import argparse
import json
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
from run_pipeline import machine, make_segmenter  # noqa: E402

TARGET = 0.9
TOPIC = "/camera/image_raw"


def cpu_flags() -> str:
    """The SIMD features that decide CPU inference speed, from /proc/cpuinfo."""
    try:
        flags = next((ln.split(":", 1)[1].split() for ln in Path("/proc/cpuinfo").read_text()
                      .splitlines() if ln.startswith("flags")), [])
    except OSError:
        return "flags unknown"
    have = {"AVX2": "avx2", "FMA": "fma", "AVX-512": "avx512f",
            "VNNI": ("avx512_vnni", "avx_vnni"), "bf16": ("avx512_bf16", "amx_bf16")}
    yes = [k for k, v in have.items() if any(f in flags for f in ((v,) if isinstance(v, str) else v))]
    no = [k for k in have if k not in yes]
    return " + ".join(yes) + ("; no " + ", no ".join(no) if no else "")


def street_frames(n: int, hw: tuple[int, int]) -> list[np.ndarray]:
    """Sky/road bands, a moving box and noise (so JPEG has work to do)."""
    import cv2

    h, w = hw
    rng = np.random.default_rng(0)
    base = np.zeros((h, w, 3), np.uint8)
    base[: h // 3] = (180, 130, 70)
    base[h // 3: 2 * h // 3] = (70, 70, 70)
    base[2 * h // 3:] = (128, 64, 128)
    noise = rng.integers(0, 24, (h, w, 3), dtype=np.uint8)
    out = []
    for i in range(n):
        f = cv2.add(base, noise)
        x = (7 * i) % max(1, w - w // 6)
        cv2.rectangle(f, (x, h // 2), (x + w // 6, h // 2 + h // 5), (142, 0, 0), -1)
        out.append(f)
    return out


def write_input_bag(path: Path, imgs: list[np.ndarray], compressed: bool) -> Path:
    from rosbags.rosbag2 import StoragePlugin, Writer

    from edgeseg.ros import messages as m

    store = m.rosbags_typestore()
    types = m.rosbags_types(store)
    msgtype = m.COMPRESSED if compressed else m.IMAGE
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conn = w.add_connection(TOPIC, msgtype, typestore=store)
        for i, img in enumerate(imgs):
            stamp = 1_700_000_000_000_000_000 + i * 33_333_333
            header = m.make_header(types, stamp, "camera")
            msg = (m.bgr_to_compressed(types, img, "jpeg", header) if compressed
                   else m.bgr_to_image(types, img, "bgr8", header))
            w.write(conn, stamp, store.serialize_cdr(msg, msgtype))
    return path / f"{path.name}.mcap"


def alone_fps(seg: Any, imgs: list[np.ndarray]) -> float:
    t = time.perf_counter()
    for img in imgs:
        seg(img)
    return len(imgs) / (time.perf_counter() - t)


def bag_fps(seg: Any, bag: Path, out: Path) -> tuple[float, Any]:
    """Through the source/sink registry, as `edgeseg run --source BAG?topic=... --sink out.mcap`."""
    import edgeseg.io  # noqa: F401 - registers the bag source and sink
    from edgeseg.video.pipeline import run_pipeline
    from edgeseg.video.reader import FrameSource

    out.unlink(missing_ok=True)
    t = time.perf_counter()
    src = FrameSource(f"{bag}?topic={TOPIC}", prepare=seg.preprocess)
    s = run_pipeline(seg, src, str(out))
    wall = time.perf_counter() - t
    return s.frames / wall, s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--source-height", type=int, default=480, help="camera frame height")
    ap.add_argument("--source-width", type=int, default=640)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--compressed", action="store_true", help="CompressedImage jpeg input")
    ap.add_argument("--backend", choices=("auto", "onnxruntime", "torch"), default="auto")
    ap.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    hw, src_hw = (a.height, a.width), (a.source_height, a.source_width)
    host = f"{machine()}; {cpu_flags()}"
    with tempfile.TemporaryDirectory(prefix="edgeseg-bag-bench-") as tmp:
        work = Path(tmp)
        seg = make_segmenter(a.backend, hw, work)
        imgs = street_frames(a.frames, src_hw)
        bag = write_input_bag(work / "in", imgs, a.compressed)
        if a.compressed:  # the Segmenter alone gets what the bag decodes to
            import cv2

            imgs = [cv2.imdecode(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1],
                                 cv2.IMREAD_COLOR) for f in imgs]
        for _ in range(3):  # warm-up: allocator, thread pools, caches
            seg(imgs[0])
        alones, bags, summaries = [], [], []
        for r in range(a.rounds):
            alones.append(alone_fps(seg, imgs))
            fps, s = bag_fps(seg, bag, work / "out.mcap")
            bags.append(fps)
            summaries.append(s)
            console.print(f"round {r + 1}/{a.rounds}: Segmenter alone {alones[-1]:.2f} FPS, "
                          f"bag to bag {fps:.2f} FPS")
        out_mb = (work / "out.mcap").stat().st_size / 1e6
        in_mb = bag.stat().st_size / 1e6
    alone, through = statistics.median(alones), statistics.median(bags)
    ratio = through / alone
    ok = ratio >= TARGET
    last = summaries[-1]
    kind = "CompressedImage jpeg" if a.compressed else "Image bgr8"
    result = {"machine": host, "backend": seg.backend, "input_hw": list(hw),
              "source_hw": list(src_hw), "input": kind, "frames": a.frames, "rounds": a.rounds,
              "segmenter_fps": alone, "bag_fps": through, "ratio": ratio, "target": TARGET,
              "passed": ok, "segmenter_fps_rounds": alones, "bag_fps_rounds": bags,
              "stages_ms": last.stages_ms, "input_mb": in_mb, "output_mb": out_mb}
    rows = [
        ("Segmenter alone", f"{alone:.2f} FPS  ({', '.join(f'{x:.2f}' for x in alones)})"),
        ("bag -> Segmenter -> bag", f"{through:.2f} FPS  ({', '.join(f'{x:.2f}' for x in bags)})"),
        (f"ratio (target >= {TARGET:.2f})", f"{ratio:.3f}  {'PASS' if ok else 'MISS'}"),
        ("bags in / out", f"{in_mb:.1f} MB / {out_mb:.1f} MB ({a.frames} frames)"),
    ] + [(f"  stage {k} (mean)", f"{v:.2f} ms") for k, v in last.stages_ms.items()]
    table = Table(title=f"bag throughput, DESANet-HN {hw[0]}x{hw[1]}, {seg.backend} on CPU")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    if a.json:
        print(json.dumps(result, indent=2))
    if not a.no_write:
        md = [
            "## Bags: bag -> Segmenter -> bag vs the Segmenter alone",
            "",
            f"Machine: {host}.",
            "",
            (f"`python benchmarks/bag_throughput.py --height {a.height} --width {a.width} "
             f"--source-height {a.source_height} --source-width {a.source_width} "
             f"--frames {a.frames} --rounds {a.rounds} --backend {a.backend}"
             f"{' --compressed' if a.compressed else ''}`: random-init DESANet-HN at "
             f"{hw[0]}x{hw[1]} through **{seg.backend}**; input a ROS 2 MCAP bag of {kind} "
             f"frames at {src_hw[0]}x{src_hw[1]} read with rosbags, output an MCAP bag of "
             "class_mask, color_mask, overlay and label_info at the frame size. Median of the "
             "rounds; Segmenter-alone and bag-to-bag runs alternate."),
            "",
            "| measure | value |",
            "|---|---|",
        ] + [f"| {k.strip()} | {v} |" for k, v in rows]
        md += ["", ("Reading, decoding and pre-processing run on the reader thread, rendering "
                    "and writing the bag on the writer thread, so the stage means overlap, and "
                    "the ratio can exceed 1: the Segmenter alone does its pre-processing in "
                    "series with the network.")]
        write_section("bag_throughput", "\n".join(md))
        console.print(f"wrote {DOC.relative_to(ROOT)} (bag_throughput section)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
