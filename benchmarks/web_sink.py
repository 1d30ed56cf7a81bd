"""End-to-end `edgeseg run` FPS with the web sinks and connected viewers vs no sink, on this CPU.

    python benchmarks/web_sink.py [--height 64 --width 128 --frames 40 --rounds 2]

A random-init DESANet-HN through torch (speed does not depend on the weights) runs
``run_pipeline`` over a synthetic MJPG video into

* no sink (``none``: nothing drawn, nothing sent), the reference;
* ``http://127.0.0.1:0`` with 0, 1 and 4 MJPEG viewers (Python clients, each in its own
  process like a browser, that read and decode every JPEG part they receive);
* ``webrtc://127.0.0.1:0/live`` with 1 viewer (an aiortc client decoding VP8).

The pipeline's own FPS (first frame to last frame handed to the sink) is compared; the web rows
include drawing the overlay, which the reference skips. Viewer side: frames received per
second and, for MJPEG, latency from the frame reaching the sink to the JPEG decoded by the
viewer (same machine, same monotonic clock). Rounds alternate the configurations so load from
other processes hits all alike; medians are reported. Target: every web row >= 0.9 x no sink.
Results go to a rich table and to ``docs/benchmarks.md`` (``<!-- web_sink:start -->``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import machine_line, write_section
from run_pipeline import make_segmenter, synthetic_video

TARGET = 0.9
CONFIGS = (("no sink", "none", 0), ("HTTP, 0 viewers", "http", 0), ("HTTP, 1 viewer", "http", 1),
           ("HTTP, 4 viewers", "http", 4), ("WebRTC, 1 viewer", "webrtc", 1))


class MjpegViewer(threading.Thread):
    """Reads /stream.mjpg to its end, decoding each part; records arrival times and latency."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.arrivals, self.latency_ms = url, [], []
        self.connected = threading.Event()

    def run(self) -> None:
        import cv2

        try:
            with urllib.request.urlopen(self.url + "stream.mjpg", timeout=30) as r:
                self.connected.set()
                stamp = None
                while True:
                    line = r.readline()
                    if not line:
                        return
                    low = line.lower()
                    if low.startswith(b"x-frame-stamp:"):
                        stamp = float(line.split(b":")[1])
                    elif low.startswith(b"content-length:"):
                        size = int(line.split(b":")[1])
                        while (h := r.readline().strip()):
                            if h.lower().startswith(b"x-frame-stamp:"):
                                stamp = float(h.split(b":")[1])
                        img = cv2.imdecode(np.frombuffer(r.read(size), np.uint8), cv2.IMREAD_COLOR)
                        now = time.monotonic()
                        if img is not None:
                            self.arrivals.append(now)
                            if stamp is not None:
                                self.latency_ms.append((now - stamp) * 1e3)
        except OSError:
            return


class WebRTCViewer(threading.Thread):
    """An aiortc peer on its own loop: offer recvonly video, count decoded frames."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.arrivals, self.latency_ms = url, [], []
        self.connected = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as e:  # noqa: BLE001 - reported in the table
            self.error = f"{type(e).__name__}: {e}"
            self.connected.set()

    async def _main(self) -> None:
        import aiohttp
        from aiortc import RTCPeerConnection, RTCSessionDescription
        from aiortc.mediastreams import MediaStreamError

        pc = RTCPeerConnection()
        pc.addTransceiver("video", direction="recvonly")
        got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        pc.on("track", lambda track: got.done() or got.set_result(track))
        await pc.setLocalDescription(await pc.createOffer())
        async with aiohttp.ClientSession() as http, http.post(
                self.url.rsplit("/", 2)[0] + "/offer",
                json={"sdp": pc.localDescription.sdp, "type": "offer"}) as r:
            answer = await r.json()
        await pc.setRemoteDescription(RTCSessionDescription(**answer))
        track = await asyncio.wait_for(got, 20)
        self.connected.set()
        try:
            while True:
                await asyncio.wait_for(track.recv(), 20)
                self.arrivals.append(time.monotonic())
        except (MediaStreamError, asyncio.TimeoutError):
            pass
        finally:
            await pc.close()


def _viewer_main(kind: str, url: str, conn: Any) -> None:
    """A viewer in its own process (as a browser would be): no GIL shared with inference."""
    v = (WebRTCViewer if kind == "webrtc" else MjpegViewer)(url)
    v.start()
    v.connected.wait(30)
    conn.send("connected")
    v.join(120)
    conn.send((v.arrivals, v.latency_ms, getattr(v, "error", None)))


class ViewerProcess:
    def __init__(self, kind: str, url: str) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_viewer_main, args=(kind, url, child), daemon=True)
        self.arrivals: list[float] = []
        self.latency_ms: list[float] = []
        self.error: str | None = None

    def start(self) -> None:
        self.proc.start()

    def wait_connected(self, timeout: float) -> None:
        if self.conn.poll(timeout):
            self.conn.recv()

    def join(self, timeout: float) -> None:
        if self.conn.poll(timeout):
            self.arrivals, self.latency_ms, self.error = self.conn.recv()
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()


def one_run(seg: Any, video: Path, kind: str, viewers: int, stream_fps: float) -> dict[str, Any]:
    from edgeseg.video.pipeline import run_pipeline

    if kind == "none":
        s = run_pipeline(seg, str(video), "none")
        return {"fps": s.fps}
    from edgeseg.web.sink import WebSink

    uri = "webrtc://127.0.0.1:0/live" if kind == "webrtc" else "http://127.0.0.1:0"
    sink = WebSink(uri, classes=seg.meta.classes, palette=seg.meta.palette, max_clients=8,
                   stream_fps=stream_fps, linger_s=0)
    vs = [ViewerProcess(kind, sink.url) for _ in range(viewers)]
    for v in vs:
        v.start()
    for v in vs:
        v.wait_connected(30)
    deadline = time.monotonic() + 10
    while sink.server.viewers < viewers and time.monotonic() < deadline:
        time.sleep(0.05)
    s = run_pipeline(seg, str(video), sink)  # closes the sink: viewers' streams end
    for v in vs:
        v.join(30)
    rates = [(len(v.arrivals) - 1) / (v.arrivals[-1] - v.arrivals[0])
             for v in vs if len(v.arrivals) > 1 and v.arrivals[-1] > v.arrivals[0]]
    lat = [x for v in vs for x in v.latency_ms]
    errors = [v.error for v in vs if v.error]
    return {"fps": s.fps, "viewer_fps": statistics.mean(rates) if rates else None,
            "latency_ms": float(np.median(lat)) if lat else None,
            "latency_p99_ms": float(np.percentile(lat, 99)) if lat else None,
            "connected": sum(1 for v in vs if v.arrivals), "errors": errors}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--height", type=int, default=64)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--frames", type=int, default=40, help="frames per timed run")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--stream-fps", type=float, default=15.0)
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
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        seg = make_segmenter("torch", hw, Path(tmp))
        video = synthetic_video(Path(tmp) / "clip.avi", args.frames, hw)
        one_run(seg, video, "none", 0, args.stream_fps)  # warm-up
        for r in range(args.rounds):
            for name, kind, n in CONFIGS:
                res = one_run(seg, video, kind, n, args.stream_fps)
                results[name].append(res)
                print(f"round {r + 1}: {name}: {res['fps']:.2f} FPS", file=sys.stderr)

    def med(name: str, key: str) -> float | None:
        vals = [x[key] for x in results[name] if x.get(key) is not None]
        return statistics.median(vals) if vals else None

    ref = med("no sink", "fps") or 0.0
    table = Table(title=f"web sink, DESANet-HN (random init) torch {hw[0]}x{hw[1]}, "
                        f"{args.frames} frames x {args.rounds} rounds")
    for col in ("configuration", "pipeline FPS", "vs no sink", "viewer FPS",
                "latency p50 / p99 (ms)", "target"):
        table.add_column(col, justify="left" if col == "configuration" else "right")
    rows = []
    for name, kind, _ in CONFIGS:
        fps = med(name, "fps") or 0.0
        ratio = fps / ref if ref else 0.0
        vf, lp, l99 = med(name, "viewer_fps"), med(name, "latency_ms"), med(name, "latency_p99_ms")
        errs = sorted({e for x in results[name] for e in x.get("errors", [])})
        verdict = "reference" if kind == "none" else ("PASS" if ratio >= TARGET else "MISS")
        cells = (name, f"{fps:.2f}", "1.00x" if kind == "none" else f"{ratio:.2f}x",
                 "–" if vf is None else f"{vf:.1f}",
                 "–" if lp is None else f"{lp:.1f} / {l99:.1f}",
                 verdict + (f" ({errs[0]})" if errs else ""))
        rows.append(cells)
        table.add_row(*cells)
    Console().print(table)
    print(line)
    if not args.no_write:
        md = ["## Web sink (benchmarks/web_sink.py)", "",
              (f"Machine: {line}. DESANet-HN (random init) through torch at {hw[0]}x{hw[1]}, a "
              f"{args.frames}-frame synthetic video, {args.rounds} alternating rounds, medians; "
              f"stream capped at {args.stream_fps:g} FPS. Pipeline FPS = frames / (last - first "
              "frame handed to the sink); web rows also draw the overlay, which `none` skips. "
              "Viewers run on the same machine, each in its own process (MJPEG: Python clients decoding every JPEG; "
              "latency = frame reaching the sink to decoded by the viewer; WebRTC: an aiortc "
              f"client decoding VP8). Target: >= {TARGET}x no sink."), "",
              ("| configuration | pipeline FPS | vs no sink | viewer FPS | latency p50 / p99 (ms) "
              "| target |"), "|---|---:|---:|---:|---:|---|"]
        md += ["| " + " | ".join(c) + " |" for c in rows]
        write_section("web_sink", "\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
