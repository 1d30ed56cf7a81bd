"""Soak test of `edgeseg run`: a long run whose resident memory must stay flat.

    python benchmarks/run_soak.py [--frames 2000 --height 64 --width 128 --every 50]

A random-init DESANet-HN (onnxruntime when available, else torch) segments a synthetic MJPG
video of ``--frames`` frames into an mp4v file with overlay, legend and HUD, i.e. every thread
and buffer of the real pipeline. RSS (``/proc/self/status`` VmRSS) is sampled every ``--every``
frames; the least-squares slope over the samples after the first ``--warmup`` fraction is
reported in MB per 1000 frames. Verdict: flat when the slope is at most ``--max-slope``
(default 1 MB / 1000 frames). Results go to a rich table and to ``docs/benchmarks.md`` between
``<!-- run_soak:start -->`` and ``<!-- run_soak:end -->``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import DOC, write_section  # noqa: E402
from run_pipeline import ROOT, machine, make_segmenter, synthetic_video  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--height", type=int, default=64)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--every", type=int, default=50, help="sample RSS every N frames")
    ap.add_argument("--warmup", type=float, default=0.1, help="fraction of samples not fitted")
    ap.add_argument("--max-slope", type=float, default=1.0, help="MB per 1000 frames")
    ap.add_argument("--backend", choices=("auto", "onnxruntime", "torch"), default="auto")
    ap.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from edgeseg.bench.memory import peak_rss
    from edgeseg.video.pipeline import run_pipeline

    console = Console(stderr=True)
    hw = (a.height, a.width)
    host = machine()
    samples: list[tuple[int, float]] = []
    done = 0

    def sample(n: int = 1, info: str = "") -> None:
        nonlocal done
        done += n
        if done % a.every == 0:
            samples.append((done, float(peak_rss()["rss_mb"])))
            if done % (a.every * 10) == 0:
                console.print(f"{done}/{a.frames} frames, RSS {samples[-1][1]:.1f} MB {info}")

    with tempfile.TemporaryDirectory(prefix="edgeseg-soak-") as tmp:
        work = Path(tmp)
        seg = make_segmenter(a.backend, hw, work)
        video = synthetic_video(work / "soak.avi", a.frames, hw)
        samples.append((0, float(peak_rss()["rss_mb"])))
        t = time.perf_counter()
        s = run_pipeline(seg, str(video), str(work / "soak.mp4"), progress=sample)
        wall = time.perf_counter() - t
    x = np.array([f for f, _ in samples], float)
    y = np.array([m for _, m in samples], float)
    fit = slice(max(1, int(len(x) * a.warmup)), None)
    slope = float(np.polyfit(x[fit], y[fit], 1)[0] * 1000) if len(x[fit]) >= 2 else float("nan")
    flat = abs(slope) <= a.max_slope
    result = {
        "machine": host, "backend": seg.backend, "input_hw": list(hw), "frames": s.frames,
        "wall_s": wall, "fps": s.fps, "rss_start_mb": y[0], "rss_fit_start_mb": y[fit][0],
        "rss_end_mb": y[-1], "rss_max_mb": y.max(), "slope_mb_per_1000_frames": slope,
        "max_slope": a.max_slope, "flat": flat, "dropped": s.dropped, "skipped": s.skipped,
        "samples": samples,
    }

    table = Table(title=f"edgeseg run soak, DESANet-HN {hw[0]}x{hw[1]}, {seg.backend} on CPU")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("frames (dropped / skipped)", f"{s.frames} ({s.dropped} / {s.skipped})"),
        ("wall time, FPS", f"{wall:.0f} s, {s.fps:.1f} FPS"),
        ("RSS before first frame", f"{y[0]:.1f} MB"),
        (f"RSS after warm-up (frame {int(x[fit][0])})", f"{y[fit][0]:.1f} MB"),
        ("RSS at the end / max", f"{y[-1]:.1f} / {y.max():.1f} MB"),
        ("RSS slope after warm-up", f"{slope:+.3f} MB per 1000 frames"),
        (f"verdict (slope within ±{a.max_slope:g})", "FLAT" if flat else "GROWING"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    if a.json:
        print(json.dumps(result, indent=2))
    if not a.no_write:
        md = [
            "## `edgeseg run` soak: memory over a long run",
            "",
            f"Machine: {host}.",
            "",
            (f"`python benchmarks/run_soak.py --frames {a.frames} --height {a.height} "
             f"--width {a.width} --every {a.every} --backend {a.backend}`: random-init "
             f"DESANet-HN through **{seg.backend}**, synthetic MJPG video -> overlay + legend + "
             f"HUD -> mp4v file. RSS sampled every {a.every} frames; slope is a least-squares fit "
             f"after the first {a.warmup:.0%} of the samples."),
            "",
            "| measure | value |",
            "|---|---|",
        ] + [f"| {k} | {v} |" for k, v in rows]
        write_section("run_soak", "\n".join(md))
        console.print(f"wrote {DOC.relative_to(ROOT)} (run_soak section)")
    return 0 if flat else 1


if __name__ == "__main__":
    raise SystemExit(main())
