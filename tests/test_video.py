"""Live segmentation: source parsing, reading, reconnects, sinks, drawing and the whole loop.

Most tests use ``ColourSegmenter``, whose labels follow from the frame's colours exactly, so
every output pixel can be checked; one runs a real DESANet-HN checkpoint through the CLI.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseg.cli import app
from edgeseg.data.cityscapes import CLASSES, PALETTE, train_ids_to_ids
from edgeseg.errors import EdgesegError
from edgeseg.runtime.base import ModelMeta, Segmenter
from edgeseg.video.overlay import Renderer, blend, classes_present, colorize, palette_lut
from edgeseg.video.pipeline import run_pipeline
from edgeseg.video.reader import FrameSource, Reconnect
from edgeseg.video.sinks import parse_sink
from edgeseg.video.sources import gstreamer_available, parse_source

H, W = 64, 128
BLUE, RED = (255, 0, 0), (0, 0, 255)  # BGR


class ColourSegmenter(Segmenter):
    """Train id 1 where blue > 127, 2 where red > 127 (3 if both), else 0 (road)."""

    backend = "fake"

    def __init__(self) -> None:
        super().__init__(ModelMeta("fake", list(CLASSES), [tuple(c) for c in PALETTE],
                                   (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (H, W)))
        self.calls = 0

    def preprocess(self, bgr: np.ndarray) -> np.ndarray:
        return bgr.transpose(2, 0, 1)[None].astype(np.float32)  # keeps the frame size

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        return (batch[:, 0] > 127).astype(np.int64) + 2 * (batch[:, 2] > 127)


def expected_labels(img: np.ndarray) -> np.ndarray:
    return ((img[..., 0] > 127).astype(np.uint8) + 2 * (img[..., 2] > 127)).astype(np.uint8)


def make_frame(i: int) -> np.ndarray:
    """Blue left, red right, a black band that moves with ``i``: labels 1, 2, 0."""
    img = np.zeros((H, W, 3), np.uint8)
    img[:, : W // 2] = BLUE
    img[:, W // 2:] = RED
    img[8:24, (4 * i) % (W - 16):(4 * i) % (W - 16) + 16] = 0
    return img


def write_video(path: Path, n: int = 20) -> Path:
    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25, (W, H))
    assert vw.isOpened()
    for i in range(n):
        vw.write(make_frame(i))
    vw.release()
    return path


def read_video(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


def bgr_palette(ids: np.ndarray) -> np.ndarray:
    return np.asarray(PALETTE, np.uint8)[ids][..., ::-1]


# ---------------------------------------------------------------------------------- parsing


def test_parse_source_live_kinds() -> None:
    cam = parse_source("0")
    assert (cam.kind, cam.target, cam.live) == ("camera", 0, True)
    assert parse_source("2?width=640&height=480").options == {"width": 640, "height": 480}
    v4l = parse_source("/dev/video1")
    assert (v4l.kind, v4l.target, v4l.api, v4l.live) == ("v4l2", "/dev/video1", "v4l2", True)
    csi = parse_source("csi://0")
    assert (csi.kind, csi.api, csi.live) == ("csi", "gstreamer", True)
    pipe = str(csi.target)
    assert pipe.startswith("nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),")
    assert "width=1280,height=720,framerate=30/1" in pipe
    assert "nvvidconv flip-method=0 ! video/x-raw,format=BGRx ! videoconvert" in pipe
    assert pipe.endswith("video/x-raw,format=BGR ! appsink drop=true max-buffers=1")
    csi1 = str(parse_source("csi://1?width=1920&height=1080&fps=60&flip=2").target)
    assert "sensor-id=1" in csi1 and "width=1920,height=1080,framerate=60/1" in csi1
    assert "flip-method=2" in csi1
    rtsp = parse_source("rtsp://admin:secret@10.0.0.2:554/stream1")
    assert (rtsp.kind, rtsp.api, rtsp.live) == ("stream", "ffmpeg", True)
    assert rtsp.target == "rtsp://admin:secret@10.0.0.2:554/stream1"
    assert "secret" not in rtsp.name and "10.0.0.2:554/stream1" in rtsp.name
    gst = parse_source("videotestsrc ! videoconvert ! appsink")
    assert (gst.kind, gst.api) == ("gstreamer", "gstreamer")


def test_parse_source_files(tmp_path: Path) -> None:
    assert parse_source(str(tmp_path)).kind == "folder"
    assert parse_source("not/yet/made/").kind == "folder"
    g = parse_source(str(tmp_path / "*.png"))
    assert (g.kind, g.live) == ("glob", False)
    assert parse_source("clip.mp4").kind == "video"
    assert parse_source("file:///data/clip.avi").target == "/data/clip.avi"
    assert parse_source("frame.JPG").kind == "image"
    assert parse_source("shots/img_??.png").kind == "glob"


@pytest.mark.parametrize("bad", ["", "csi://x", "foo://bar", "0?bogus=1", "0?fps=0",
                                 "videotestsrc ! fakesink"])
def test_parse_source_errors(bad: str) -> None:
    with pytest.raises(EdgesegError):
        parse_source(bad)


def test_parse_sink(tmp_path: Path) -> None:
    assert parse_sink("display").kind == "display"
    assert parse_sink("none").kind == "none"
    assert parse_sink("out/run.mp4").kind == "video"
    assert parse_sink("out.AVI").kind == "video"
    assert parse_sink("masks").kind == "folder"
    assert parse_sink(str(tmp_path)).kind == "folder"
    with pytest.raises(EdgesegError, match="unknown suffix"):
        parse_sink("out.png")


# ---------------------------------------------------------------------------------- drawing


def test_colorize_blend_legend() -> None:
    lut = palette_lut(PALETTE)
    labels = np.array([[0, 1, 2], [18, 255, 7]], np.uint8)
    color = colorize(labels, lut)
    assert (color[0, 1] == PALETTE[1][::-1]).all() and (color[1, 0] == PALETTE[18][::-1]).all()
    assert (color[1, 1] == 0).all()  # ignore (255) is black
    frame = np.random.default_rng(0).integers(0, 256, (2, 3, 3), dtype=np.uint8)
    out = blend(frame, color, 0.3)
    ref = 0.3 * color.astype(np.float64) + 0.7 * frame
    assert np.abs(out - ref).max() <= 0.5 + 1e-6
    big = np.zeros((40, 40), np.uint8)
    big[:, 30:] = 13
    assert classes_present(big, 19) == [0, 13]


# ---------------------------------------------------------------------------------- reading


class FakeCapture:
    """Yields ``n`` frames, then read() fails (a dropped stream)."""

    def __init__(self, n: int) -> None:
        self.left = n

    def isOpened(self) -> bool:
        return True

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.left <= 0:
            return False, None
        self.left -= 1
        return True, make_frame(self.left)

    def get(self, prop: int) -> float:
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        pass


def scripted_factory(script: list[int | None]):
    """Each open takes the next entry: N -> a capture with N frames, None -> open fails."""
    calls = []

    def factory(spec):
        calls.append(spec.spec)
        n = script.pop(0) if script else None
        if n is None:
            raise EdgesegError(f"cannot open source {spec.name!r}")
        return FakeCapture(n)

    return factory, calls


def drain(src: FrameSource) -> int:
    return sum(1 for _ in src)


def test_reconnect_recovers_then_gives_up() -> None:
    sleeps: list[float] = []
    factory, calls = scripted_factory([3, None, 2])  # drop, one failed reopen, back, drop again
    src = FrameSource("rtsp://cam/stream", capture_factory=factory, sleep=sleeps.append,
                      reconnect=Reconnect(attempts=3, backoff_s=0.5))
    n = drain(src)
    src.close()
    assert n + src.dropped == 5
    # 2 attempts for the first loss; the count restarts after a good frame: 3 more, then stop.
    assert sleeps == [0.5, 1.0, 0.5, 1.0, 2.0]
    assert len(calls) == 1 + 5
    assert src.stop_reason == "source-lost"
    assert any("source lost after 3" in w for w in src.warnings)


def test_reconnect_never_recovers() -> None:
    sleeps: list[float] = []
    factory, calls = scripted_factory([1])
    src = FrameSource("rtsp://cam/stream", capture_factory=factory, sleep=sleeps.append,
                      reconnect=Reconnect(attempts=4, backoff_s=1.0, max_backoff_s=3.0))
    assert drain(src) == 1
    assert sleeps == [1.0, 2.0, 3.0, 3.0]
    assert len(calls) == 5 and src.stop_reason == "source-lost"


class SlowSegmenter(ColourSegmenter):
    def infer(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(0.002)
        return super().infer(batch)


def test_live_source_drops_stale_frames_and_counts_them() -> None:
    factory, _ = scripted_factory([60])
    src = FrameSource("rtsp://cam/stream", capture_factory=factory, sleep=lambda s: None,
                      reconnect=Reconnect(attempts=0))
    s = run_pipeline(SlowSegmenter(), src, "none")
    assert s.frames + s.dropped == 60 and s.dropped > 0
    assert (s.skipped, s.stop_reason) == (0, "source-lost")


def test_unopenable_sources(tmp_path: Path) -> None:
    with pytest.raises(EdgesegError, match="video file not found"):
        FrameSource(str(tmp_path / "missing.mp4")).open()
    with pytest.raises(EdgesegError, match="no images"):
        FrameSource(str(tmp_path)).open()
    with pytest.raises(EdgesegError, match="no files match"):
        FrameSource(str(tmp_path / "*.png")).open()
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 100)
    with pytest.raises(EdgesegError, match="cannot open source"):
        FrameSource(str(junk)).open()
    if not gstreamer_available():
        with pytest.raises(EdgesegError, match="GStreamer"):
            FrameSource("csi://0").open()


# ---------------------------------------------------------------------------------- pipeline


@pytest.fixture()
def image_folder(tmp_path: Path) -> Path:
    d = tmp_path / "frames"
    d.mkdir()
    for i in range(6):
        cv2.imwrite(str(d / f"f_{i}.png"), make_frame(i))
    (d / "f_3.png").write_bytes(b"\x89PNG garbage")  # corrupt: skipped, counted
    (d / "notes.txt").write_text("not an image")
    return d


def test_folder_to_masks_exact(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "masks"
    s = run_pipeline(ColourSegmenter(), str(image_folder), str(out), visualize="overlay",
                     alpha=0.4, masks=("color", "labelids", "trainids", "vis"),
                     legend=False, hud=False)
    assert (s.frames, s.skipped, s.dropped, s.stop_reason) == (5, 1, 0, "end")
    assert any("f_3.png" in w for w in s.warnings)
    for i in (0, 1, 2, 4, 5):
        frame = make_frame(i)
        ids = expected_labels(frame)
        color = cv2.imread(str(out / f"f_{i}_color.png"))
        assert color.shape == (H, W, 3)
        assert (color == bgr_palette(ids)).all()  # palette colours, exactly
        trainids = cv2.imread(str(out / f"f_{i}_labelTrainIds.png"), cv2.IMREAD_UNCHANGED)
        assert (trainids == ids).all()
        labelids = cv2.imread(str(out / f"f_{i}_labelIds.png"), cv2.IMREAD_UNCHANGED)
        assert (labelids == train_ids_to_ids(ids)).all() and set(np.unique(labelids)) <= {7, 8, 11}
        vis = cv2.imread(str(out / f"f_{i}_vis.png")).astype(np.float64)
        ref = 0.4 * bgr_palette(ids) + 0.6 * frame
        assert np.abs(vis - ref).max() <= 0.5 + 1e-6  # alpha blend within rounding
    assert not (out / "f_3_color.png").exists()


def test_video_to_mp4(tmp_path: Path) -> None:
    src = write_video(tmp_path / "in.avi")
    out = tmp_path / "out" / "seg.mp4"
    seg = ColourSegmenter()
    s = run_pipeline(seg, str(src), str(out), visualize="mask", legend=False, hud=False)
    assert (s.frames, s.dropped, s.skipped, s.stop_reason) == (20, 0, 0, "end")
    assert s.fps > 0 and s.latency_ms["p99"] >= s.latency_ms["p50"] > 0
    assert s.source == str(src) and s.sink == str(out)
    frames = read_video(out)
    assert len(frames) == 20 and frames[0].shape == (H, W, 3)
    ref = bgr_palette(expected_labels(make_frame(0))).astype(np.int16)
    assert np.abs(frames[0].astype(np.int16) - ref).mean() < 6  # mp4v is lossy
    assert sorted(p.name for p in out.parent.iterdir()) == ["seg.mp4"]  # no temp file left


def test_side_by_side_avi_with_max_frames(tmp_path: Path) -> None:
    src = write_video(tmp_path / "in.avi")
    out = tmp_path / "sbs.avi"
    s = run_pipeline(ColourSegmenter(), str(src), str(out), visualize="side-by-side",
                     max_frames=7)
    assert (s.frames, s.stop_reason) == (7, "max-frames")
    frames = read_video(out)
    assert len(frames) == 7 and frames[0].shape == (H, 2 * W, 3)


def test_truncated_video(tmp_path: Path) -> None:
    full = write_video(tmp_path / "full.avi", n=20)
    data = full.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.75)])
    out = tmp_path / "cut_out.mp4"
    s = run_pipeline(ColourSegmenter(), str(cut), str(out), legend=False, hud=False)
    assert 0 < s.frames < 20 and s.stop_reason == "end"
    assert any("truncated" in w for w in s.warnings)
    assert len(read_video(out)) == s.frames  # finalised, playable


class InterruptingSegmenter(ColourSegmenter):
    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.calls == 4:
            raise KeyboardInterrupt
        return super().infer(batch)


def test_ctrl_c_finalises_output(tmp_path: Path) -> None:
    src = write_video(tmp_path / "in.avi")
    out = tmp_path / "partial.mp4"
    s = run_pipeline(InterruptingSegmenter(), str(src), str(out))
    assert (s.frames, s.stop_reason) == (4, "interrupted")
    assert len(read_video(out)) == 4
    assert [p.name for p in tmp_path.iterdir() if "partial." in p.name] == ["partial.mp4"]


def test_renderer_rejects_bad_mode(tmp_path: Path) -> None:
    with pytest.raises(EdgesegError, match="--visualize"):
        Renderer(CLASSES, PALETTE, "heatmap")
    src = write_video(tmp_path / "in.avi", n=2)
    with pytest.raises(EdgesegError, match="--visualize"):
        run_pipeline(ColourSegmenter(), str(src), "none", visualize="heatmap")


def test_display_sink_without_display(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    src = write_video(tmp_path / "in.avi", n=2)
    with pytest.raises(EdgesegError, match="no display"):
        run_pipeline(ColourSegmenter(), str(src), "display")


# ---------------------------------------------------------------------------------- CLI


def test_cli_unopenable_source_one_line(tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"x")
    r = CliRunner().invoke(app, ["run", "--model", str(weights), "--source",
                                 str(tmp_path / "nope.mp4"), "--sink", "none"])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "nope.mp4" in lines[0]
    r = CliRunner().invoke(app, ["run", "--model", str(weights), "--source", "csi://0?fps=x",
                                 "--sink", "none"])
    assert r.exit_code == 2 and "fps must be a positive integer" in r.output


def test_cli_model_flags_and_profile(tmp_path: Path, image_folder: Path) -> None:
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"x")
    for args, message in (([], "no model: give --model"),
                          (["--weights", str(weights), "--model", str(weights)], "give one model")):
        r = CliRunner().invoke(app, ["run", "--source", str(image_folder), *args])
        assert r.exit_code == 2 and message in r.output, r.output
    r = CliRunner().invoke(app, ["run", "--source", str(image_folder), "--model", str(weights),
                                 "--profile", "no-such-board"])
    assert r.exit_code == 2 and r.output.startswith("error:")


def test_cli_real_checkpoint(tmp_path: Path, image_folder: Path) -> None:
    """A random-init DESANet-HN at 64x128 through `edgeseg run --weights ... --json`."""
    import json

    from edgeseg.models.desanet import build_model
    from edgeseg.train.checkpoint import default_meta, save_model_only

    ckpt = tmp_path / "hn.pt"
    save_model_only(ckpt, build_model("desanet-hn", aux=False), default_meta("desanet-hn", (H, W)))
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["run", "--model", str(ckpt), "--source", str(image_folder),
                                 "--sink", str(out), "--masks", "color,trainids", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert {"frames", "dropped", "skipped", "fps", "latency_ms", "source", "sink"} <= set(summary)
    assert (summary["frames"], summary["skipped"], summary["dropped"]) == (5, 1, 0)
    assert set(summary["latency_ms"]) >= {"p50", "p99"}
    ids = cv2.imread(str(out / "f_0_labelTrainIds.png"), cv2.IMREAD_UNCHANGED)
    color = cv2.imread(str(out / "f_0_color.png"))
    assert ids.shape == (H, W) and ids.max() < 19
    assert (color == bgr_palette(ids)).all()
