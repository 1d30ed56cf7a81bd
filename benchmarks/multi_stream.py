"""Several streams batched into one inference call per tick vs the same streams one frame per
call, on this machine's CPU.

    python benchmarks/multi_stream.py [--height 64 --width 128 --frames 24 --rounds 2]

A random-init DESANet-HN through torch runs :func:`edgeseg.video.multi.run_multi` over 1, 2
and 4 synthetic MJPG videos (``--frames`` each, no sink), once with ``batched=True`` (one
``(N, 3, h, w)`` call per tick) and once with ``batched=False`` (one call per frame, the same
reading, drawing and bookkeeping). Throughput = frames of all streams / wall time. Rounds
alternate the two so that load from other processes hits both alike; medians are reported.
Target: batched >= 1.3x sequential at 4 streams. Results go to a rich table and to
``docs/benchmarks.md`` between ``<!-- multi_stream:start -->`` and ``<!-- multi_stream:end -->``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import machine_line, write_section
from run_pipeline import make_segmenter, synthetic_video

TARGET = 1.3
STREAMS = (1, 2, 4)


def throughput(seg: Any, videos: list[Path], batched: bool) -> tuple[float, float]:
    from edgeseg.video.multi import run_multi
    from edgeseg.video.reader import FrameSource

    s = run_multi(seg, [FrameSource(str(v)) for v in videos], batched=batched)
    return s.fps, s.batch_mean


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--height", type=int, default=64)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--frames", type=int, default=24, help="frames per stream per run")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: steady on a shared machine; 0: torch's default)")
    ap.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args(argv)

    import torch
    from rich.console import Console
    from rich.table import Table

    if args.threads:
        torch.set_num_threads(args.threads)
    line = machine_line()
    hw = (args.height, args.width)
    res: dict[tuple[int, bool], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        seg = make_segmenter("torch", hw, Path(tmp))
        videos = [synthetic_video(Path(tmp) / f"s{k}.avi", args.frames, hw) for k in range(max(STREAMS))]
        throughput(seg, videos[:1], True)  # warm-up
        for r in range(args.rounds):
            for n in STREAMS:
                for batched in (True, False):
                    fps, bm = throughput(seg, videos[:n], batched)
                    res.setdefault((n, batched), []).append((fps, bm))
                    print(f"round {r + 1}: {n} stream(s) {'batched' if batched else 'sequential'}: "
                          f"{fps:.2f} FPS (batch {bm:.2f})", file=sys.stderr)

    table = Table(title=f"multi-stream, DESANet-HN (random init) torch {hw[0]}x{hw[1]}, "
                        f"{args.frames} frames/stream x {args.rounds} rounds")
    for col in ("streams", "batched FPS", "mean batch", "sequential FPS", "ratio", "target"):
        table.add_column(col, justify="right")
    rows = []
    for n in STREAMS:
        b = statistics.median(x[0] for x in res[(n, True)])
        bm = statistics.median(x[1] for x in res[(n, True)])
        s = statistics.median(x[0] for x in res[(n, False)])
        ratio = b / s if s else 0.0
        verdict = ("PASS" if ratio >= TARGET else "MISS") if n == max(STREAMS) else "–"
        cells = (str(n), f"{b:.2f}", f"{bm:.2f}", f"{s:.2f}", f"{ratio:.2f}x",
                 f"{verdict} (>= {TARGET}x)" if n == max(STREAMS) else verdict)
        rows.append(cells)
        table.add_row(*cells)
    Console().print(table)
    print(line)
    if not args.no_write:
        md = ["## Multi-stream batching (benchmarks/multi_stream.py)", "",
              (f"Machine: {line}. DESANet-HN (random init) through torch at {hw[0]}x{hw[1]}, "
               f"{args.frames} frames per synthetic MJPG stream, no sink, {args.rounds} "
               "alternating rounds, medians. FPS = frames of all streams / wall time; batched = "
               "one inference call per tick on the frames ready then; sequential = one call per "
               f"frame. Target: >= {TARGET}x at {max(STREAMS)} streams."), "",
              "| streams | batched FPS | mean batch | sequential FPS | ratio | target |",
              "|---:|---:|---:|---:|---:|---|"]
        md += ["| " + " | ".join(c) + " |" for c in rows]
        write_section("multi_stream", "\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
