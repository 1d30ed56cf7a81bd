"""The web sinks: URIs, stats, the server's routes and limits, and the page in a real browser.

The browser tests drive Debian's headless Chromium through selenium (``make setup-dev`` installs
both); the model is an untrained DESANet-RN at 64x128 behind the torch Segmenter, fed with
moving synthetic frames, so what the page shows comes from real inference.
"""

from __future__ import annotations

import edgeseg.io  # noqa: F401 - the composition root registers the web and bag kinds

import json
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import pytest

from edgeseg.errors import EdgesegError
from tests._poll import wait_until
from edgeseg.web.stats import LiveStats, class_shares
from edgeseg.web.uri import parse_web_uri

if TYPE_CHECKING:
    from typing_extensions import Self

pytest.importorskip("aiohttp", reason="the web extra is not installed: pip install 'edgeseg[web]'")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

H, W = 64, 128
TOKEN = "s3cret-token"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ROUTES = ("/", "/stats", "/events", "/stream.mjpg", "/snapshot.jpg", "/healthz", "/nope")


# -- pure parts ------------------------------------------------------------------------------

def test_parse_web_uri() -> None:
    s = parse_web_uri("http://@:8080")
    assert (s.scheme, s.host, s.port, s.path, s.video) == ("http", "0.0.0.0", 8080, "/", "mjpeg")
    s = parse_web_uri("http://:9000/cam")
    assert (s.host, s.port, s.path) == ("127.0.0.1", 9000, "/cam")  # no host: loopback
    s = parse_web_uri("webrtc://@:8554/live")
    assert (s.scheme, s.host, s.port, s.path, s.video) == ("webrtc", "0.0.0.0", 8554, "/live",
                                                           "webrtc")
    assert parse_web_uri("webrtc://192.168.1.5/x").port == 8554
    assert parse_web_uri("http://").host == "127.0.0.1"
    for bad, part in (("ftp://x:1", "scheme"), ("http://h:99999", "port"),
                      ("http://@h:80", "either @"), ("http://u@h:80", "user@"),
                      ("http://h:80/a?token=x", "query"), ("http://h:80/../etc", "path"),
                      ("http://h:80/stats", "own routes"), ("localhost:80", "expected")):
        with pytest.raises(EdgesegError, match=part):
            parse_web_uri(bad)


def test_class_shares_against_counts() -> None:
    labels = np.zeros((H, W), np.uint8)
    labels[:, : W // 4] = 2
    labels[: H // 2, W // 2:] = 255  # ignore: counted in the total, never listed
    palette = [(128, 64, 128), (244, 35, 232), (70, 70, 70)]
    got = class_shares(labels, ["road", "sidewalk", "building"], palette, stride=1)
    assert [c["name"] for c in got] == ["road", "building"]  # largest first, sidewalk absent
    assert got[0]["share"] == pytest.approx(np.mean(labels == 0))
    assert got[1]["share"] == pytest.approx(0.25)
    assert got[1]["color"] == "#464646"


def test_live_stats_fps_history_and_push() -> None:
    t = [0.0]
    st = LiveStats({"variant": "v"}, clock=lambda: t[0])
    for _ in range(11):
        st.frame(latency_ms=5.0)
        t[0] += 0.1
    t[0] -= 0.1
    snap = st.snapshot()
    assert snap["frames"] == 11 and snap["fps"] == pytest.approx(10.0)
    assert snap["latency_ms"] == {"p50": 5.0, "p99": 5.0}
    assert snap["power"]["available"] is False and snap["power"]["reason"]
    st.push({"latency_ms": {"p50": 7.0, "p99": 9.0}, "dropped": 3, "model": {"backend": "torch"}})
    t[0] += 1.0
    snap2 = st.snapshot()
    assert snap2["seq"] == snap["seq"] + 1
    assert snap2["latency_ms"] == {"p50": 7.0, "p99": 9.0} and snap2["dropped"] == 3
    assert snap2["model"] == {"variant": "v", "backend": "torch"}
    assert len(snap2["history"]) == 2  # one point per second of uptime
    t[0] += 3.0
    assert st.fps() == 0.0  # no frame for 2 s: the stream is not moving
    st2 = LiveStats(power=lambda: {"available": True, "watts": 5.0})
    for _ in range(3):
        st2.frame()
    assert st2.snapshot()["power"]["mj_per_frame"] == pytest.approx(5.0 / st2.fps() * 1e3, rel=1e-3)


# -- a live sink fed by real inference --------------------------------------------------------

def moving_frame(i: int) -> np.ndarray:
    """Sky over road, with a bright box sliding across: every frame differs."""
    img = np.zeros((H, W, 3), np.uint8)
    img[: H // 2] = (200, 150, 90)
    img[H // 2:] = (90, 90, 90)
    x = (i * 6) % (W - 24)
    img[20:44, x:x + 24] = (30, 30, 220)
    return img


@pytest.fixture(scope="module")
def segmenter() -> Any:
    from edgeseg.models.desanet import build_model
    from edgeseg.runtime.torch_backend import TorchSegmenter
    from edgeseg.train.checkpoint import default_meta

    return TorchSegmenter(build_model("desanet-rn", aux=False), default_meta("desanet-rn", (H, W)))


class Feeder:
    """A pipeline stand-in on a thread: infer, render, write, and push stats every 5 frames."""

    def __init__(self, seg: Any, sink: Any) -> None:
        from edgeseg.video.overlay import Renderer

        self.seg, self.sink = seg, sink
        self.render = Renderer(seg.meta.classes, seg.meta.palette, "overlay", 0.5)
        self.seen: set[int] = set()
        self.write_s: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        i = 0
        while not self.stop.is_set():
            img = moving_frame(i)
            labels = self.seg(img)
            self.seen.update(int(v) for v in np.unique(labels))
            t = time.perf_counter()
            self.sink.write(None, labels, self.render(img, labels))
            self.write_s.append(time.perf_counter() - t)
            i += 1
            if i % 5 == 0:
                self.sink.on_stats({"dropped": 0, "skipped": 0,
                                    "latency_ms": {"p50": 10.0 + i % 3, "p99": 20.0}})

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def model_info(seg: Any) -> dict[str, Any]:
    m = seg.meta
    return {"variant": m.variant, "backend": seg.backend, "precision": m.precision,
            "input_hw": list(m.input_hw)}


def open_sink(uri: str, seg: Any, **kw: Any) -> Any:
    from edgeseg.web.sink import WebSink

    return WebSink(uri, classes=seg.meta.classes, palette=seg.meta.palette,
                   model=model_info(seg), **kw)


def get(url: str, headers: dict[str, str] | None = None, data: bytes | None = None,
        read: int | None = None) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(read) if read else r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


@pytest.fixture(scope="module")
def live(segmenter: Any) -> Iterator[tuple[Any, Feeder]]:
    sink = open_sink("http://127.0.0.1:0/cam", segmenter, token=TOKEN, max_clients=1,
                     stream_fps=10, linger_s=0.2)
    with Feeder(segmenter, sink) as feeder:
        wait_until(lambda: sink.stats.frames >= 3)
        yield sink, feeder
    sink.close()


def base(sink: Any) -> str:
    return f"http://127.0.0.1:{sink.server.port}"


# -- routes and limits (no browser needed) ------------------------------------------------

def test_every_route_needs_the_token(live: tuple[Any, Feeder]) -> None:
    sink, _ = live
    for route in (*ROUTES, "/cam"):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-Edgeseg-Token": TOKEN[:-1]}):
            status, body, _ = get(base(sink) + route, headers)
            assert status == 401, (route, headers, status)
            assert b"token" in body
    status, _, _ = get(base(sink) + "/offer", data=b"{}")
    assert status == 401
    # /stats serves the snapshot the server refreshes each tick: poll until it has frames
    got: list[tuple[int, bytes]] = []
    wait_until(lambda: got.append(get(base(sink) + f"/stats?token={TOKEN}")[:2]) or (
        got[-1][0] == 200 and json.loads(got[-1][1])["frames"] > 0))
    status, body = got[-1]
    assert status == 200 and json.loads(body)["frames"] > 0
    status, body, _ = get(base(sink) + "/healthz", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and json.loads(body)["ok"] is True
    status, body, hdr = get(base(sink) + "/snapshot.jpg", {"X-Edgeseg-Token": TOKEN})
    img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert status == 200 and hdr["Content-Type"] == "image/jpeg" and img.shape == (H, W, 3)
    status, _, _ = get(base(sink) + f"/nope?token={TOKEN}")
    assert status == 404  # nothing is served but the app's own routes
    status, _, _ = get(base(sink) + f"/..%2Fetc%2Fpasswd?token={TOKEN}")
    assert status == 404


def test_request_sizes_are_bounded(live: tuple[Any, Feeder]) -> None:
    sink, _ = live
    status, _, _ = get(base(sink) + "/stats?token=" + TOKEN, {"X-Long": "a" * 20_000})
    assert status in (400, 431)
    status, _, _ = get(base(sink) + "/stats?token=" + TOKEN + "&pad=" + "b" * 20_000)
    assert status in (400, 414)


def test_default_bind_is_loopback(segmenter: Any) -> None:
    assert parse_web_uri("http://:0").host == "127.0.0.1"
    sink = open_sink("http://:0", segmenter, linger_s=0)
    try:
        host, port = sink.server.bound[0][:2]
        assert host == "127.0.0.1" and port == sink.server.port > 0
        assert sink.url == f"http://127.0.0.1:{port}/"
    finally:
        sink.close()
    with pytest.raises(OSError):  # after close nothing listens any more
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_options_are_checked(segmenter: Any, tmp_path: Path) -> None:
    with pytest.raises(EdgesegError, match="jpeg-quality"):
        open_sink("http://:0", segmenter, jpeg_quality=0)
    with pytest.raises(EdgesegError, match="stream-fps"):
        open_sink("http://:0", segmenter, stream_fps=0)
    with pytest.raises(EdgesegError, match="max-clients"):
        open_sink("http://:0", segmenter, max_clients=0)
    with pytest.raises(EdgesegError, match="go together"):
        open_sink("http://:0", segmenter, ssl_cert=tmp_path / "c.pem")
    with pytest.raises(EdgesegError, match="HTTPS needs"):
        open_sink("https://:0", segmenter)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        with pytest.raises(EdgesegError, match="cannot listen"):
            open_sink(f"http://:{busy.getsockname()[1]}", segmenter)
    finally:
        busy.close()


def read_parts(sock_file: Any, n: int, timeout: float = 20.0) -> list[bytes]:
    """``n`` JPEG parts from an MJPEG response body."""
    parts: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(parts) < n and time.monotonic() < deadline:
        line = sock_file.readline()
        if line.lower().startswith(b"content-length:"):
            size = int(line.split(b":")[1])
            sock_file.readline()
            parts.append(sock_file.read(size))
    return parts


def test_stalled_viewer_never_slows_inference(segmenter: Any) -> None:
    """One viewer that reads nothing and one that reads: the second keeps getting new frames,
    each JPEG is encoded once for both, and write() stays a reference swap."""
    sink = open_sink("http://:0", segmenter, max_clients=2, stream_fps=30, linger_s=0)
    try:
        with Feeder(segmenter, sink) as feeder:
            stalled = socket.socket()
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.connect(("127.0.0.1", sink.server.port))
            stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # a Host we answer
            wait_until(lambda: sink.server.viewers == 1)
            with urllib.request.urlopen(base(sink) + "/stream.mjpg", timeout=10) as r:
                enc0 = sink.hub.encoded
                parts = read_parts(r, 8)
            assert len(parts) == 8 and len(set(parts)) == 8  # fresh frames, none repeated
            assert sink.hub.encoded - enc0 >= 7  # one encode per new frame, shared
            # a reference swap: the median is far below one frame of inference (~70 ms here);
            # single writes can still wait for the GIL on a loaded machine
            assert float(np.median(feeder.write_s)) < 0.01
            stalled.close()
    finally:
        sink.close()


# -- the page in a real browser ---------------------------------------------------------------

@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("headless Chromium is not installed: apt-get install -y chromium "
                    "chromium-driver (make setup-dev and .ci/run do this)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium missing: pip install "
                                    "'edgeseg[dev]'")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,800", "--autoplay-policy=no-user-gesture-required",
                "--disable-features=WebRtcHideLocalIpsWithMdns", "--mute-audio"):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    drv.set_page_load_timeout(30)
    drv.set_script_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()


def text(drv: Any, id_: str) -> str:
    return str(drv.execute_script(f"return document.getElementById('{id_}').textContent"))


def panel(drv: Any) -> dict[str, Any]:
    return drv.execute_script(
        "const t = (i) => document.getElementById(i).textContent;"
        "return {seq: t('seq'), frames: t('frames'), fps: t('fps'), status: t('status'),"
        " legend: [...document.querySelectorAll('#legend li')].map(li => li.dataset.name)};")


def video_png(drv: Any) -> np.ndarray:
    from selenium.webdriver.common.by import By

    png = drv.find_element(By.ID, "video").screenshot_as_png
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)


def test_page_shows_live_video_and_stats(live: tuple[Any, Feeder], browser: Any,
                                         tmp_path: Path) -> None:
    sink, feeder = live
    browser.get(f"{base(sink)}/cam?token={TOKEN}")  # the page carries the token from here on
    wait_until(lambda: text(browser, "status") == "live" and text(browser, "frames") not in "–")
    wait_until(lambda: browser.execute_script(
        "const v = document.getElementById('video'); return v.complete && v.naturalWidth > 0"))
    assert browser.execute_script("return document.getElementById('video').naturalWidth") == W
    a = video_png(browser)
    time.sleep(1.0)
    b = video_png(browser)
    assert a.shape == b.shape and float(np.abs(a.astype(int) - b.astype(int)).mean()) > 1.0

    # the panel equals /stats whenever both show the same update, and it moves
    def same_update() -> tuple[dict[str, Any], dict[str, Any]] | None:
        _, body, _ = get(f"{base(sink)}/stats?token={TOKEN}")
        s, p = json.loads(body), panel(browser)
        return (s, p) if str(s["seq"]) == p["seq"] else None

    s1, p1 = wait_until(same_update, timeout=5, step=0.05)  # within one update (0.5 s)
    assert p1["frames"] == str(s1["frames"]) and p1["fps"] == f"{s1['fps']:.2f}"
    time.sleep(1.2)
    s2, p2 = wait_until(same_update, timeout=5, step=0.05)
    assert int(p2["frames"]) > int(p1["frames"]) and float(p2["fps"]) > 0
    assert s2["model"]["backend"] == "torch" and s2["model"]["input_hw"] == [H, W]
    assert text(browser, "input") == f"{H}×{W}"
    assert text(browser, "lat").endswith("/ 20.0 ms")  # the pipeline's pushed numbers

    # the legend: classes that are in the masks, with the palette's colours
    names = p2["legend"]
    assert names and len(names) == len(s2["classes"])
    classes = segmenter_classes(sink)
    assert {classes.index(n) for n in names} <= feeder.seen
    swatch = browser.execute_script(
        "return getComputedStyle(document.querySelector('#legend li .sw')).backgroundColor")
    r, g, bl = sink.stats.model["palette"][classes.index(names[0])]
    assert swatch == f"rgb({r}, {g}, {bl})"
    shot = tmp_path / "web-view.png"
    browser.save_screenshot(str(shot))
    if (dest := _screenshot_target()) is not None:
        shutil.copy(shot, dest)


def segmenter_classes(sink: Any) -> list[str]:
    return list(sink.stats.model["classes"])


def _screenshot_target() -> Path | None:
    import os

    p = os.environ.get("EDGESEG_WEB_SCREENSHOT")
    return Path(p) if p else None


def test_max_clients_refuses_a_second_viewer(live: tuple[Any, Feeder], browser: Any) -> None:
    sink, _ = live
    browser.get("about:blank")  # the previous test's page lets its slot go first
    wait_until(lambda: sink.server.viewers == 0)
    browser.get(f"{base(sink)}/cam?token={TOKEN}")
    wait_until(lambda: sink.server.viewers == 1)  # the browser's MJPEG stream holds the slot
    status, body, hdr = get(f"{base(sink)}/stream.mjpg?token={TOKEN}")
    assert status == 503 and b"Viewer limit reached" in body and b"1 viewer" in body
    assert hdr.get("Retry-After") == "10"
    for route in ("/cam", "/"):  # the page itself is served (a reload must not lock out)
        assert get(f"{base(sink)}{route}?token={TOKEN}")[0] == 200
    browser.get("about:blank")  # the first viewer leaves: the slot frees
    wait_until(lambda: sink.server.viewers == 0)
    status, _, _ = get(f"{base(sink)}/cam?token={TOKEN}")
    assert status == 200


def test_page_shows_stream_ended_with_summary(segmenter: Any, browser: Any,
                                              tmp_path: Path) -> None:
    """The real pipeline on a 12-frame video: when it ends, the page says so."""
    from edgeseg.video.pipeline import run_pipeline

    video = tmp_path / "clip.avi"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 10, (W, H))
    for i in range(12):
        vw.write(moving_frame(i))
    vw.release()
    sink = open_sink("http://:0", segmenter, linger_s=5.0)
    browser.get(sink.url)
    wait_until(lambda: text(browser, "status") == "live")
    summary = run_pipeline(segmenter, str(video), sink)  # closes the sink at the end
    assert summary.frames == 12
    wait_until(lambda: text(browser, "status") == "stream ended", timeout=10)
    shown = text(browser, "summary")
    assert "final summary" in shown and "frames: 12" in shown
    assert text(browser, "frames") == "12"
    with pytest.raises(OSError):  # and the server is gone
        urllib.request.urlopen(sink.url, timeout=2)


def test_webrtc_video_plays(segmenter: Any, browser: Any) -> None:
    pytest.importorskip("aiortc", reason="aiortc missing: pip install 'edgeseg[web]'")
    sink = open_sink("webrtc://127.0.0.1:0/live", segmenter, stream_fps=10, linger_s=0,
                     token=TOKEN)
    try:
        with Feeder(segmenter, sink):
            browser.get(f"{base(sink)}/live?token={TOKEN}")
            js = "const v = document.getElementById('video'); return [v.readyState, " \
                 "v.getVideoPlaybackQuality().totalVideoFrames, v.videoWidth];"
            state = wait_until(lambda: (s := browser.execute_script(js)) and s[0] >= 2 and s[1] > 0
                               and s, timeout=30, step=0.2)
            assert state[2] == W  # the picture's own size
            time.sleep(1.5)
            later = browser.execute_script(js)
            assert later[0] >= 2 and later[1] > state[1]  # decoding keeps going
            assert sink.server.viewers == 1
            assert text(browser, "status") == "live" and int(text(browser, "frames")) > 0
            status, _, _ = get(f"{base(sink)}/offer", data=b'{"sdp": "x", "type": "offer"}')
            assert status == 401  # signalling needs the token too
            browser.get("about:blank")
    finally:
        sink.close()


# -- the CLI: repeatable --sink / --source, web options, SIGTERM ---------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, segmenter: Any) -> Path:
    from edgeseg.train.checkpoint import save_model_only

    return save_model_only(tmp_path_factory.mktemp("ckpt") / "rn.pt", segmenter.model,
                           segmenter.meta)


def clip(path: Path, n: int, offset: int = 0) -> Path:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (W, H))
    for i in range(n):
        vw.write(moving_frame(i + offset))
    vw.release()
    return path


def cli(*args: str) -> Any:
    from typer.testing import CliRunner

    from edgeseg.cli import app

    return CliRunner().invoke(app, ["run", *args])


def test_cli_video_file_plus_http_sink(checkpoint: Path, tmp_path: Path) -> None:
    video = clip(tmp_path / "in.avi", 6)
    out = tmp_path / "out.avi"
    r = cli("--model", str(checkpoint), "--source", str(video), "--sink", str(out),
            "--sink", "http://127.0.0.1:0/live", "--web-token", TOKEN, "--max-clients", "2",
            "--jpeg-quality", "60", "--stream-fps", "5", "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["frames"] == 6 and s["stop_reason"] == "end"
    assert s["sink"].startswith(f"{out} + http://127.0.0.1:") and s["sink"].endswith("/live")
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    cap.release()


@pytest.mark.parametrize(("args", "msg"), [
    (["--sink", "http://127.0.0.1:80/stats"], "own routes"),
    (["--sink", "http://127.0.0.1:0", "--ssl-cert", "c.pem"], "go together"),
    (["--sink", "https://127.0.0.1:0"], "HTTPS needs"),
    (["--sink", "webrtc://@h:1/x"], "either @"),
])
def test_cli_web_errors_are_one_line(checkpoint: Path, tmp_path: Path, args: list[str],
                                     msg: str) -> None:
    video = clip(tmp_path / "in.avi", 2)
    r = cli("--model", str(checkpoint), "--source", str(video), *args)
    assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output


def test_cli_several_sources_batched(checkpoint: Path, tmp_path: Path) -> None:
    a, b = clip(tmp_path / "a.avi", 5), clip(tmp_path / "b.avi", 4, offset=3)
    streams = tmp_path / "cams.streams"
    streams.write_text(f"# two cameras\n{b}\n")
    r = cli("--model", str(checkpoint), "--source", str(a), "--source", str(streams),
            "--sink", str(tmp_path / "{name}_out.avi"), "--sink", str(tmp_path / "mosaic.avi"),
            "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert [x["frames"] for x in s["sources"]] == [5, 4] and s["frames"] == 9
    assert s["batched"] and s["ticks"] < 9  # frames of both sources shared calls
    for name, n, size in (("a_out", 5, (W, H)), ("b_out", 4, (W, H)), ("mosaic", None, (2 * W, H))):
        cap = cv2.VideoCapture(str(tmp_path / f"{name}.avi"))
        got = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == size
        assert got == (n if n is not None else s["ticks"])
        cap.release()


def test_sigterm_shuts_down_cleanly(checkpoint: Path, tmp_path: Path) -> None:
    """SIGTERM while serving: the run stops like Ctrl-C, the video is finalised, the page's
    server goes away, the summary is printed."""
    import os
    import signal
    import subprocess
    import sys

    video = clip(tmp_path / "long.avi", 400)
    out = tmp_path / "out.avi"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeseg", "run", "--model", str(checkpoint), "--source",
         str(video), "--sink", str(out), "--sink", f"http://127.0.0.1:{port}", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"edgeseg run ended early: {proc.stderr.read().decode()[-2000:]}")
            try:
                status, body, _ = get(f"http://127.0.0.1:{port}/healthz")
            except OSError:
                return False
            return status == 200 and json.loads(body)["frames"] >= 3

        wait_until(healthy, timeout=240, step=0.3)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr.decode()[-2000:]
    summary = json.loads(stdout)
    assert summary["stop_reason"] == "interrupted" and 3 <= summary["frames"] < 400
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == summary["frames"]
    cap.release()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
