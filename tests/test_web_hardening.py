"""The web sink probed as an attacker would (issue 31), against live servers on 127.0.0.1.

Raw sockets send what browsers never do (half-open connections, 10 KB lines, HTTP/9.9, NUL
bytes, conflicting lengths); every probe is bounded in count and time, the server's timeouts
are shortened through :class:`~edgeseg.web.limits.WebLimits`, and every wait has a generous
deadline instead of a sleep, so the module's time does not depend on the machine's load.
No model is needed: a thread feeds small synthetic frames.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from tests._poll import wait_until as _wait_until
from edgeseg.web.limits import (ConnLimits, LogGate, WebLimits, fd_budget, host_allowed,
                                mask_token, origin_allowed, split_host)

pytest.importorskip("aiohttp", reason="the web extra is not installed: pip install 'edgeseg[web]'")

TOKEN = "Zq9-hardening-secret"
FAST = WebLimits(header_timeout_s=1.0, idle_timeout_s=2.0, max_connections=400,
                 max_per_client=400, connect_timeout_s=1.5)


# -- pure parts --------------------------------------------------------------------------------

def test_conn_limits_total_and_per_client() -> None:
    c = ConnLimits(max_total=3, max_per_client=2)
    assert c.admit("a") is None and c.admit("a") is None
    assert c.admit("a") == "per-client connection limit"
    assert c.admit("b") is None
    assert c.admit("c") == "connection limit"
    c.release("a")
    assert c.admit("c") is None
    for addr in ("a", "b", "c", "c"):  # a release of an address never admitted is ignored
        c.release(addr)
    assert (c.total, c.per_client) == (0, {})


def test_fd_budget_keeps_descriptors_for_the_process() -> None:
    assert fd_budget(256, 512) == 192
    assert fd_budget(100_000, 512) == 512
    assert fd_budget(-1, 512) == 512  # RLIM_INFINITY
    assert fd_budget(10, 512) == 1


def test_mask_token_everywhere() -> None:
    assert mask_token(f"GET /stream.mjpg?token={TOKEN}&x=1 HTTP/1.1") == \
        "GET /stream.mjpg?token=<token>&x=1 HTTP/1.1"
    assert TOKEN not in mask_token(f"Authorization: Bearer {TOKEN}")
    assert mask_token(f"'/?try=2&TOKEN={TOKEN}'") == "'/?try=2&TOKEN=<token>'"
    assert mask_token("mytoken=abc") == "mytoken=abc"  # only a token parameter


def test_log_gate_one_line_per_kind_per_interval() -> None:
    now = [0.0]
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("edgeseg.test.gate")
    logger.propagate = False
    logger.addHandler(Keep())
    gate = LogGate(logger, interval_s=60.0, clock=lambda: now[0])
    for i in range(1000):
        gate("400 BadStatusLine", f"bad line {i}\nwith token={TOKEN}")
    gate("header timeout", "closed")
    now[0] = 61.0
    gate("400 BadStatusLine", "again")
    assert len(lines) == 3
    assert all("\n" not in ln and TOKEN not in ln for ln in lines)
    assert "+999 more" in lines[2]


def test_host_and_origin_rules() -> None:
    assert split_host("[::1]:8080") == "::1" and split_host("Example.COM.") == "example.com"
    assert split_host("a b") is None and split_host("x:99999") is None
    for ok in ("127.0.0.1:8080", "localhost", "LOCALHOST:1", "[::1]:80", "robot.localhost"):
        assert host_allowed(ok, "127.0.0.1"), ok
    for bad in ("evil.example", "evil.example:8080", "", None, "10.0.0.5", "a@b"):
        assert not host_allowed(bad, "127.0.0.1"), bad
    assert host_allowed("10.0.0.5:80", "0.0.0.0")  # every interface: any IP literal
    assert not host_allowed("jetson.lan", "0.0.0.0")
    assert host_allowed("jetson.lan", "0.0.0.0", ["Jetson.LAN"])
    assert origin_allowed(None, "127.0.0.1:8080")  # curl, scripts
    assert origin_allowed("http://127.0.0.1:8080", "127.0.0.1:8080")
    assert origin_allowed("http://localhost", "localhost:80")
    for bad in ("http://evil.example", "null", "http://127.0.0.1:9999", "file://x"):
        assert not origin_allowed(bad, "127.0.0.1:8080"), bad


# -- live servers ------------------------------------------------------------------------------

class Logs(logging.Handler):
    """Every record of the loggers the server writes to, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def wait_until(fn: Callable[[], Any], timeout: float = 20.0) -> Any:
    return _wait_until(fn, timeout, step=0.05)


@pytest.fixture(scope="module")
def logs() -> Iterator[Logs]:
    h = Logs()
    names = ("edgeseg.web", "aiohttp", "asyncio", "aioice", "aiortc")
    old = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).addHandler(h)
        logging.getLogger(n).setLevel(logging.INFO)
    yield h
    for n in names:
        logging.getLogger(n).removeHandler(h)
        logging.getLogger(n).setLevel(old[n])


def frame(i: int) -> tuple[np.ndarray, np.ndarray]:
    img = np.zeros((32, 48, 3), np.uint8)
    img[:, (i * 4) % 40:(i * 4) % 40 + 8] = 200
    return img, np.zeros((32, 48), np.uint8)


class Feed:
    """Writes a new small frame every 20 ms until stopped (bounded: the test ends it)."""

    def __init__(self, sink: Any) -> None:
        self.sink, self.stop = sink, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        i = 0
        while not self.stop.wait(0.02):
            vis, labels = frame(i)
            self.sink.write(None, labels, vis)
            i += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sink.close()


def open_sink(uri: str, **kw: Any) -> Any:
    from edgeseg.web.sink import WebSink

    kw.setdefault("limits", FAST)
    return WebSink(uri, classes=["a", "b"], palette=[[0, 0, 0], [255, 0, 0]], stream_fps=20,
                   **{"linger_s": 0.0, **kw})


@pytest.fixture(scope="module")
def live(logs: Logs) -> Iterator[Any]:
    sink = open_sink("http://127.0.0.1:0/cam", token=TOKEN, max_clients=2)
    feed = Feed(sink)
    yield sink
    feed.close()


def raw(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes (or ``timeout``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            out += chunk
            if out.startswith(b"HTTP/1.1 ") and b"\r\n\r\n" in out and b"Connection: close" not in out \
                    and b"Content-Length: 0" in out:
                break
        return out


def request(port: int, path: str, method: str = "GET", headers: dict[str, str] | None = None,
            body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    h = {"Host": f"127.0.0.1:{port}", "Connection": "close", **(headers or {})}
    if body:
        h["Content-Length"] = str(len(body))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
    resp = raw(port, head.encode() + b"\r\n" + body)
    status_line, _, rest = resp.partition(b"\r\n")
    hdr_blob, _, payload = rest.partition(b"\r\n\r\n")
    hdrs = {}
    for line in hdr_blob.split(b"\r\n"):
        k, _, v = line.decode("latin-1").partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return int(status_line.split()[1]), hdrs, payload


class Stream:
    """A raw MJPEG viewer: counts the parts it has read."""

    def __init__(self, port: int, query: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(f"GET /stream.mjpg?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
                          .encode())
        self.buf = b""

    def status(self) -> int:
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buf += chunk
        code = int(self.buf.split(b" ", 2)[1])
        self.buf = self.buf.partition(b"\r\n\r\n")[2][:8]  # parts counted from here on
        return code

    def parts(self, n: int, timeout: float = 20.0) -> int:
        """Read until ``n`` more JPEG parts came or the stream closed; how many came."""
        tail = self.buf[-8:]  # a boundary split across two reads is counted once
        got = 0
        deadline = time.monotonic() + timeout
        while got < n and time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            got += (tail + chunk).count(b"--frame") - tail.count(b"--frame")
            tail = (tail + chunk)[-8:]
        self.buf = tail
        return got

    def closed_by_server(self, timeout: float = 10.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except (socket.timeout, ConnectionResetError):
            return False
        return True

    def close(self) -> None:
        self.sock.close()


def assert_quiet(logs: Logs, since: int) -> None:
    new = logs.lines[since:]
    assert not any("Traceback" in ln or "Error handling request" in ln for ln in new), new[:3]
    assert not any(TOKEN in ln for ln in new)


def test_url_is_announced_with_real_port_and_masked_token() -> None:
    said: list[str] = []
    sink = open_sink("http://127.0.0.1:0", token=TOKEN, announce=said.append)
    try:
        port = sink.server.port
        assert port != 0 and len(said) == 1
        assert f"http://127.0.0.1:{port}/?token=<token>" in said[0] and TOKEN not in said[0]
        assert sink.shown_url == f"http://127.0.0.1:{port}/?token=<token>"
    finally:
        sink.close()


def test_half_open_connections_close_while_a_viewer_streams(live: Any, logs: Logs) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 800:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 1024), hard))
    port, n0, since = live.server.port, live.server.guard.closed.get("header timeout", 0), \
        len(logs.lines)
    viewer = Stream(port, f"token={TOKEN}")
    assert viewer.status() == 200 and viewer.parts(2) >= 2
    socks = []
    try:
        for i in range(300):  # connect, send part of a request line or nothing, then stall
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            if i % 2:
                s.sendall(b"GET /cam?token=")
            socks.append(s)
        wait_until(lambda: live.server.guard.closed.get("header timeout", 0) - n0 >= 300)
        for s in socks:  # each was closed by the server: EOF, not a timeout
            s.settimeout(10)
            assert s.recv(100) == b""
        assert viewer.parts(5) >= 5  # the viewer never stopped
    finally:
        for s in socks:
            s.close()
        viewer.close()
    new = logs.lines[since:]
    assert sum("header timeout" in ln for ln in new) <= 1  # one line for the 300
    assert_quiet(logs, since)


def test_connection_caps_refuse_with_503(logs: Logs) -> None:
    sink = open_sink("http://127.0.0.1:0", limits=WebLimits(header_timeout_s=30.0,
                     max_connections=10, max_per_client=3))
    held = []
    try:
        port = sink.server.port
        held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
        wait_until(lambda: sink.server.guard.conns.total == 3)
        out = raw(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 503") and b"too many connections" in out
        held.pop().close()  # one leaves: the next is served
        wait_until(lambda: sink.server.guard.conns.total == 2)
        status, _, _ = request(port, "/healthz")
        assert status == 200
    finally:
        for s in held:
            s.close()
        sink.close()


MALFORMED = {
    "10 KB URL": b"GET /cam?token=" + TOKEN.encode() + b"&x=" + b"a" * 10_000 + b" HTTP/1.1\r\n"
                 b"Host: 127.0.0.1\r\n\r\n",
    "10 KB header": b"GET /cam?token=" + TOKEN.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"X-Big: " + b"b" * 10_000 + b"\r\n\r\n",
    "200 headers": b"GET /?token=" + TOKEN.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n",
    "no Host": b"GET /healthz?token=" + TOKEN.encode() + b" HTTP/1.1\r\n\r\n",
    "HTTP/9.9": b"GET /?token=" + TOKEN.encode() + b" HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n",
    "NUL in path": b"GET /ca\x00m?token=" + TOKEN.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "length + chunked": b"POST /?token=" + TOKEN.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "negative length": b"POST /?token=" + TOKEN.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       b"Content-Length: -5\r\n\r\n",
    "bare LF": b"GET /?token=" + TOKEN.encode() + b" HTTP/1.1\nHost: 127.0.0.1\n\n",
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_http_is_4xx_quiet_and_secret_free(live: Any, logs: Logs, name: str) -> None:
    since = len(logs.lines)
    out = raw(live.server.port, MALFORMED[name])
    assert re.match(rb"HTTP/1\.[01] 4\d\d ", out), (name, out[:80])
    assert TOKEN.encode() not in out
    head = out.partition(b"\r\n\r\n")[0].lower()
    assert b"nosniff" in head and b"aiohttp" not in head
    assert_quiet(logs, since)


def test_wrong_host_is_421_and_headers_on_every_response(live: Any) -> None:
    port = live.server.port
    status, _, body = request(port, f"/cam?token={TOKEN}", headers={"Host": "evil.example"})
    assert status == 421 and TOKEN.encode() not in body
    status, _, _ = request(port, f"/cam?token={TOKEN}", headers={"Host": f"localhost:{port}"})
    assert status == 200
    for path, method, want in ((f"/nope?token={TOKEN}", "GET", 404),
                               (f"/stats?token={TOKEN}", "POST", 405),
                               ("/cam", "GET", 401), (f"/cam?token={TOKEN}", "GET", 200)):
        status, hdrs, _ = request(port, path, method)
        assert status == want, path
        assert hdrs.get("x-content-type-options") == "nosniff", path
        assert hdrs.get("cache-control") == "no-store", path
        assert "aiohttp" not in hdrs.get("server", "").lower(), path


def test_head_is_bodiless_and_takes_no_slot(live: Any) -> None:
    port = live.server.port
    for path in ("/stream.mjpg", "/events", "/cam"):
        out = raw(port, f"HEAD {path}?token={TOKEN} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  "Connection: close\r\n\r\n".encode())
        head, _, body = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and body == b"", path
    assert live.server.viewers == 0 and live.server.events_clients == 0


def test_reload_replaces_its_own_stream_and_slots_free_on_close(logs: Logs) -> None:
    sink = open_sink("http://127.0.0.1:0", max_clients=1)
    feed = Feed(sink)
    try:
        port = sink.server.port
        first = Stream(port, "viewer=tab1")
        assert first.status() == 200 and first.parts(1) == 1
        other = Stream(port, "viewer=tab2")  # a second viewer: refused (max_clients 1)
        assert other.status() == 503
        other.close()
        again = Stream(port, "viewer=tab1")  # the same tab reloaded: served, the old one ends
        assert again.status() == 200 and again.parts(2) >= 2
        assert first.closed_by_server()
        wait_until(lambda: sink.server.viewers == 1)
        again.close()  # the socket closes: the slot frees without waiting for a write
        wait_until(lambda: sink.server.viewers == 0, timeout=10)
        status, _, _ = request(port, "/")  # a full server still serves the page itself
        assert status == 200
    finally:
        feed.close()


# -- WebRTC signalling ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rtc(logs: Logs) -> Iterator[Any]:
    pytest.importorskip("aiortc", reason="WebRTC needs aiortc: pip install 'edgeseg[web]'")
    sink = open_sink("webrtc://127.0.0.1:0/live", max_clients=1)
    feed = Feed(sink)
    yield sink
    feed.close()


def client_offer() -> str:
    """A real browser-like offer (recvonly video) from aiortc, its peer closed at once: the
    client that leaves before ICE connects."""
    from aiortc import RTCPeerConnection

    async def make() -> str:
        pc = RTCPeerConnection()
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return str(sdp)

    return asyncio.run(make())


def post_offer(port: int, body: bytes, ctype: str = "application/json",
               origin: str | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": ctype}
    if origin:
        headers["Origin"] = origin
    status, _, payload = request(port, "/offer", "POST", headers, body)
    return status, payload


def test_offer_needs_json_and_same_origin(rtc: Any) -> None:
    port = rtc.server.port
    offer = json.dumps({"sdp": "v=0", "type": "offer"}).encode()
    assert post_offer(port, offer, "text/plain")[0] == 415
    assert post_offer(port, b"sdp=x", "application/x-www-form-urlencoded")[0] == 415
    assert post_offer(port, offer, origin="http://evil.example")[0] == 403
    assert rtc.server.viewers == 0


@pytest.mark.parametrize("sdp", ["garbage", "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", ""])
def test_garbage_sdp_is_400_one_line(rtc: Any, logs: Logs, sdp: str) -> None:
    since = len(logs.lines)
    status, body = post_offer(rtc.server.port, json.dumps({"sdp": sdp, "type": "offer"}).encode())
    assert status == 400 and body.count(b"\n") == 1, body
    assert rtc.server.viewers == 0
    assert_quiet(logs, since)


def test_abandoned_offer_frees_its_slot(rtc: Any) -> None:
    port = rtc.server.port
    status, body = post_offer(port, json.dumps({"sdp": client_offer(), "type": "offer"}).encode())
    assert status == 200 and json.loads(body)["type"] == "answer"
    assert rtc.server.viewers == 1  # held from the offer on ...
    status, _ = post_offer(port, json.dumps({"sdp": client_offer(), "type": "offer"}).encode())
    assert status == 503  # ... so max_clients 1 refuses a second
    wait_until(lambda: rtc.server.viewers == 0, timeout=FAST.connect_timeout_s + 10)
    status, _ = post_offer(port, json.dumps({"sdp": client_offer(), "type": "offer"}).encode())
    assert status == 200  # the freed slot is usable
    wait_until(lambda: rtc.server.viewers == 0, timeout=FAST.connect_timeout_s + 10)


def test_linger_serves_the_final_frame_and_summary() -> None:
    """After the source ends a viewer who opens the page late still gets the last frame and
    the summary for ``linger_s`` (the old server left as soon as no page was open)."""
    sink = open_sink("http://127.0.0.1:0", linger_s=30.0)
    port = sink.server.port
    vis, labels = frame(3)
    sink.write(None, labels, vis)
    sink.on_stats({"summary": {"frames": 1, "fps": 2.5, "stop_reason": "end"}})
    closer = threading.Thread(target=sink.close, daemon=True)
    closer.start()
    try:
        wait_until(lambda: sink.server._linger is not None)  # the source ended, lingering
        status, hdrs, body = request(port, "/snapshot.jpg")
        assert status == 200 and hdrs["content-type"] == "image/jpeg"
        import cv2

        img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == vis.shape and abs(float(img.mean()) - float(vis.mean())) < 8
        status, _, body = request(port, "/stats")
        snap = json.loads(body)
        assert status == 200 and snap["ended"] and snap["summary"]["fps"] == 2.5
        assert closer.is_alive()  # still lingering
    finally:
        wait_until(lambda: sink.server._linger is not None)
        sink.server.end_linger()
        closer.join(20)
    assert not closer.is_alive()
