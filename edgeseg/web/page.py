"""The one HTML page: video (MJPEG ``<img>`` or WebRTC ``<video>``) beside a live stats panel.

Self-contained (inline CSS and JS, no external files or CDNs: a robot's network may have no
internet). Numbers arrive over Server-Sent Events from ``/events``; the token, when set, is
carried by the page into every URL it requests.
"""

from __future__ import annotations

import html
import json

__all__ = ["busy_page", "render_page"]

_CSS = """
body{margin:0;font:14px system-ui,sans-serif;background:#111;color:#ddd}
header{padding:8px 14px;background:#1d1d1d;display:flex;gap:16px;align-items:center}
header h1{font-size:16px;margin:0} #status{padding:2px 8px;border-radius:4px;background:#264}
#status.ended{background:#833} main{display:flex;flex-wrap:wrap;gap:14px;padding:14px}
#view{flex:1 1 480px;min-width:320px} #view img,#view video{width:100%;background:#000;
image-rendering:pixelated;display:block} #panel{flex:0 0 340px}
table{border-collapse:collapse;width:100%} td{padding:3px 6px;border-bottom:1px solid #2a2a2a}
td:first-child{color:#999} td:last-child{text-align:right;font-variant-numeric:tabular-nums}
h2{font-size:13px;color:#aaa;margin:14px 0 6px;text-transform:uppercase;letter-spacing:.05em}
#legend{list-style:none;margin:0;padding:0} #legend li{display:flex;gap:6px;align-items:center;
padding:2px 0} .sw{width:14px;height:14px;border-radius:2px;display:inline-block;
border:1px solid #000} .share{margin-left:auto;color:#999} canvas{width:100%;height:110px;
background:#181818} #summary{white-space:pre-wrap;background:#1b1b1b;padding:8px;display:none}
#msg{color:#e99} #power{max-width:180px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
"""

_JS = r"""
const u = (p) => TOKEN ? p + (p.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(TOKEN) : p;
const $ = (id) => document.getElementById(id);
// one id per browser tab (kept over reloads): the server lets a reloaded page's stream
// replace the old one instead of counting it as a second viewer
const VIEWER = sessionStorage.edgesegViewer || (sessionStorage.edgesegViewer =
  Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, '0')).join(''));
const f = (x, d = 1) => (x === null || x === undefined) ? '–' : Number(x).toFixed(d);
let ended = false;
function fmtUptime(s) { s = Math.floor(s); const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60;
  return (h ? h + 'h ' : '') + (h || m ? m + 'm ' : '') + (s % 60) + 's'; }
function render(d) {
  $('seq').textContent = d.seq; $('frames').textContent = d.frames; $('fps').textContent = f(d.fps, 2);
  $('lat').textContent = f(d.latency_ms.p50) + ' / ' + f(d.latency_ms.p99) + ' ms';
  $('dropped').textContent = d.dropped; $('skipped').textContent = d.skipped;
  $('viewers').textContent = d.viewers; $('uptime').textContent = fmtUptime(d.uptime_s);
  const p = d.power || {};
  // one short line; the sensor's own diagnostic (often long) on hover
  $('power').textContent = p.available ? f(p.watts, 2) + ' W' + (p.mj_per_frame != null ?
    ', ' + f(p.mj_per_frame, 1) + ' mJ/frame' : '') : 'not measured';
  $('power').title = p.available ? (p.source || '') : (p.reason || '');
  const m = d.model || {};
  $('model').textContent = [m.variant, m.backend, m.precision].filter(Boolean).join(' · ') || '–';
  $('input').textContent = m.input_hw ? m.input_hw[0] + '×' + m.input_hw[1] : '–';
  const ul = $('legend'); ul.replaceChildren();
  for (const c of d.classes || []) {
    const li = document.createElement('li'); li.dataset.name = c.name; li.dataset.id = c.id;
    const sw = document.createElement('span'); sw.className = 'sw'; sw.style.background = c.color;
    const nm = document.createElement('span'); nm.textContent = c.name;
    const sh = document.createElement('span'); sh.className = 'share'; sh.textContent = f(100 * c.share, 1) + ' %';
    li.append(sw, nm, sh); ul.append(li);
  }
  const src = d.sources || []; $('sources-h').style.display = src.length ? '' : 'none';
  const tb = $('sources'); tb.replaceChildren();
  for (const s of src) { const tr = document.createElement('tr');
    for (const v of [s.name, s.frames, f(s.fps, 1) + ' source FPS', (s.dropped || 0) + ' dropped', s.state || '']) {
      const td = document.createElement('td'); td.textContent = v; tr.append(td); } tb.append(tr); }
  chart(d.history || []);
}
function chart(h) {
  const c = $('chart'), g = c.getContext('2d'); const W = c.width = c.clientWidth * devicePixelRatio,
    H = c.height = c.clientHeight * devicePixelRatio; g.clearRect(0, 0, W, H);
  if (h.length < 2) return;
  const line = (key, color) => { const vals = h.map(p => p[key]).filter(v => v !== null);
    if (!vals.length) return 0; const mx = Math.max(...vals) * 1.15 || 1; g.strokeStyle = color;
    g.lineWidth = 2 * devicePixelRatio; g.beginPath(); h.forEach((p, i) => { if (p[key] === null) return;
      const x = W - (h.length - 1 - i) * W / 59, y = H - p[key] / mx * H; i ? g.lineTo(x, y) : g.moveTo(x, y); });
    g.stroke(); return mx / 1.15; };
  const fm = line('fps', '#4c4'), lm = line('p50', '#e93');
  $('chart-legend').textContent = 'FPS (green, max ' + f(fm, 1) + ')  ·  latency p50 (orange, max ' + f(lm, 1) + ' ms)';
}
function end(d) {
  ended = true; render(d); $('status').textContent = 'stream ended'; $('status').className = 'ended';
  const s = d.summary || {};
  const lines = Object.entries(s).filter(([k, v]) => typeof v !== 'object').map(([k, v]) =>
    k + ': ' + (typeof v === 'number' ? Number(v.toFixed(3)) : v));
  if (s.latency_ms) lines.push('latency p50 / p99: ' + f(s.latency_ms.p50) + ' / ' + f(s.latency_ms.p99) + ' ms');
  $('summary').textContent = 'final summary\n' + lines.join('\n'); $('summary').style.display = 'block';
}
const es = new EventSource(u('/events'));
es.addEventListener('stats', (e) => render(JSON.parse(e.data)));
es.addEventListener('end', (e) => { end(JSON.parse(e.data)); es.close(); });
es.onerror = () => { if (!ended) $('status').textContent = 'reconnecting…'; };
es.onopen = () => { if (!ended) $('status').textContent = 'live'; };
// the whole negotiation is bounded too: a stalled offer must not leave a black box
const webrtc = () => Promise.race([negotiate(), new Promise((_, fail) => setTimeout(() =>
  fail(new Error('no WebRTC answer')), (ICE_S + 12) * 1000))]);
async function negotiate() {
  const v = $('video'), pc = new RTCPeerConnection();
  pc.addTransceiver('video', {direction: 'recvonly'});
  pc.ontrack = (e) => { v.srcObject = e.streams[0] || new MediaStream([e.track]); v.play().catch(() => {}); };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((ok) => { if (pc.iceGatheringState === 'complete') return ok();
    pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && ok());
    setTimeout(ok, 3000); });
  const r = await fetch(u('/offer'), {method: 'POST', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({sdp: pc.localDescription.sdp, type: pc.localDescription.type})});
  if (!r.ok) throw new Error((await r.text()).trim());
  await pc.setRemoteDescription(await r.json()); window.edgesegPc = pc;
  // no usable ICE route (loopback-only host, SSH tunnel): say so and show MJPEG instead
  await new Promise((ok, fail) => {
    const t = setTimeout(() => fail(new Error('no ICE route within ' + ICE_S + ' s')), ICE_S * 1000);
    pc.addEventListener('connectionstatechange', () => {
      if (pc.connectionState === 'connected') { clearTimeout(t); ok(); }
      if (pc.connectionState === 'failed') { clearTimeout(t); fail(new Error('ICE failed')); } });
  });
}
function mjpeg() {
  let img = $('video');
  if (img.tagName !== 'IMG') { const i = document.createElement('img'); i.id = 'video';
    i.alt = img.getAttribute('aria-label') || 'live segmentation'; img.replaceWith(i); img = i; }
  let tries = 0;
  // refused (viewer limit) or cut: retry
  img.onerror = () => { if (ended) return; $('msg').textContent = 'video stream unavailable, retrying';
    setTimeout(() => { img.src = u('/stream.mjpg?viewer=' + VIEWER + '&try=' + (++tries)); }, 2000); };
  img.onload = () => { if (!$('msg').dataset.keep) $('msg').textContent = ''; };
  img.src = u('/stream.mjpg?viewer=' + VIEWER);
}
// the video starts after "load": an endless MJPEG response must not hold the page's load event
window.addEventListener('load', () => {
  if (VIDEO === 'webrtc') webrtc().catch((e) => {
    if (window.edgesegPc) window.edgesegPc.close();
    $('msg').dataset.keep = '1';
    $('msg').textContent = 'WebRTC did not connect (' + e.message + '): showing MJPEG instead';
    $('video-kind').textContent = 'MJPEG (WebRTC fallback)'; mjpeg(); });
  else mjpeg();
});
"""


# a favicon inline (a data: URI), so the browser asks for no /favicon.ico (no 404)
_ICON = ("data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E"
         "%3Crect width='16' height='8' fill='%234682b4'/%3E%3Crect y='8' width='16' height='8' "
         "fill='%23804080'/%3E%3C/svg%3E")


def render_page(*, title: str, token: str | None, video: str, stream_fps: float,
                ice_timeout_s: float = 15.0) -> str:
    """The page; ``video`` is mjpeg or webrtc. The token is embedded as a JSON string."""
    t = html.escape(title)
    # "edgeseg live", or "<title> · edgeseg live" for a named sink (never the name twice)
    page_title = "edgeseg live" if title in ("", "edgeseg") else f"{t} · edgeseg live"
    player = ('<video id="video" muted autoplay playsinline></video>' if video == "webrtc"
              else f'<img id="video" alt="live segmentation of {t}">')
    # </script> cannot appear inside a JSON string after this escaping
    tok = json.dumps(token).replace("<", "\\u003c")
    rows = "".join(f'<tr><td>{k}</td><td id="{i}">–</td></tr>' for k, i in (
        ("total FPS", "fps"), ("frames", "frames"), ("latency p50 / p99", "lat"), ("dropped", "dropped"),
        ("skipped", "skipped"), ("power", "power"), ("model", "model"), ("input", "input"),
        ("uptime", "uptime"), ("viewers", "viewers"), ("update", "seq")))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{page_title}</title><link rel="icon" href="{_ICON}"><style>{_CSS}</style></head>
<body><header><h1>{t}</h1><span id="status">connecting…</span>
<span><span id="video-kind">{html.escape(video.upper())}</span> · up to {stream_fps:g} FPS</span><span id="msg"></span></header>
<main><section id="view">{player}</section>
<section id="panel"><table>{rows}</table>
<h2>classes present</h2><ul id="legend"></ul>
<h2>last minute</h2><canvas id="chart"></canvas><div id="chart-legend"></div>
<h2 id="sources-h" style="display:none">sources</h2><table id="sources"></table>
<pre id="summary"></pre></section></main>
<script>const TOKEN = {tok}; const VIDEO = {json.dumps(video)}; const ICE_S = {ice_timeout_s:g};{_JS}</script></body></html>
"""


def busy_page(max_clients: int) -> str:
    n = f"{max_clients} viewer" + ("s" if max_clients != 1 else "")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>edgeseg: busy</title></head>"
            f"<body><h1>Viewer limit reached</h1><p>This stream already has {n} (the "
            f"--max-clients limit). Please try again later.</p></body></html>\n")
