"""Several sources at once: .streams files, mosaics, batched ticks, fallbacks, lost sources."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edgeseg.data.cityscapes import CLASSES, PALETTE
from edgeseg.errors import EdgesegError
from edgeseg.runtime.base import ModelMeta, Segmenter
from edgeseg.video.multi import expand_sources, mosaic, read_streams_file, run_multi
from edgeseg.video.reader import FrameSource, Reconnect
from edgeseg.video.sinks import Sink

pytestmark = pytest.mark.usefixtures("one_torch_thread")

H, W = 64, 128


class ColourSegmenter(Segmenter):
    """Train id 1 where blue > 127, 2 where red > 127; records the batch size of each call."""

    backend = "fake"

    def __init__(self, max_batch: int | None = None) -> None:
        super().__init__(ModelMeta("fake", list(CLASSES), [tuple(c) for c in PALETTE],
                                   (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (H, W)))
        self.calls: list[int] = []
        self.max_batch = max_batch

    def preprocess(self, bgr: np.ndarray, size_hw: Any = None) -> np.ndarray:
        return bgr.transpose(2, 0, 1)[None].astype(np.float32)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.max_batch is not None and batch.shape[0] > self.max_batch:
            raise RuntimeError(f"Got invalid dimensions for input: index 0 got {batch.shape[0]}")
        self.calls.append(batch.shape[0])
        return (batch[:, 0] > 127).astype(np.int64) + 2 * (batch[:, 2] > 127)


def expected(img: np.ndarray) -> np.ndarray:
    return ((img[..., 0] > 127).astype(np.uint8) + 2 * (img[..., 2] > 127)).astype(np.uint8)


def frame_for(src: int, i: int) -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    img[:, : 8 * (i % 16) + 1, 0] = 255  # blue grows with i
    img[: 4 * (src + 1), :, 2] = 255  # red band height names the source
    return img


def write_video(path: Path, src: int, n: int) -> str:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 30, (W, H))
    for i in range(n):
        vw.write(frame_for(src, i))
    vw.release()
    return str(path)


class Recorder(Sink):
    def __init__(self, name: str = "rec", on_write: Any = None) -> None:
        self.name, self.images, self.labels, self.vis, self.stats = name, [], [], [], []
        self.on_write, self.closed = on_write, 0

    def write(self, frame: Any, labels: np.ndarray, vis: np.ndarray | None) -> bool:
        self.images.append(frame.image)
        self.labels.append(labels.copy())
        self.vis.append(None if vis is None else vis.copy())
        if self.on_write is not None:
            self.on_write(len(self.labels))
        return True

    def on_stats(self, stats: dict[str, Any]) -> None:
        self.stats.append(stats)

    def close(self) -> None:
        self.closed += 1


def test_streams_file(tmp_path: Path) -> None:
    f = tmp_path / "cams.streams"
    f.write_text("# my cameras\nrtsp://a/1#frag\n\n  0  \n/data/x.mp4\n")
    assert read_streams_file(f) == ["rtsp://a/1#frag", "0", "/data/x.mp4"]
    assert expand_sources(["b.mp4", str(f)]) == ["b.mp4", "rtsp://a/1#frag", "0", "/data/x.mp4"]
    (tmp_path / "empty.streams").write_text("# none\n")
    with pytest.raises(EdgesegError, match="lists no source"):
        read_streams_file(tmp_path / "empty.streams")
    with pytest.raises(EdgesegError, match="cannot read"):
        read_streams_file(tmp_path / "missing.streams")


def test_mosaic_places_tiles() -> None:
    a = np.full((4, 6, 3), 10, np.uint8)
    b = np.full((8, 12, 3), 20, np.uint8)  # resized to a's size
    m = mosaic([a, b, None])
    assert m.shape == (8, 12, 3)
    assert (m[:4, :6] == 10).all() and (m[:4, 6:] == 20).all() and (m[4:] == 0).all()
    lab = mosaic([np.ones((2, 2), np.uint8), np.full((4, 4), 7, np.uint8)], cols=1)
    assert lab.shape == (4, 2) and (lab[2:] == 7).all()


def test_batched_ticks_exact_labels_and_mosaic(tmp_path: Path) -> None:
    n = 12
    srcs = [FrameSource(write_video(tmp_path / f"{k}.avi", k, n)) for k in range(3)]
    per = [Recorder(f"s{k}") for k in range(3)]
    shared = Recorder("mosaic")
    seg = ColourSegmenter()
    s = run_multi(seg, srcs, per_source=per, shared=[shared], visualize="mask")
    assert s.frames == 3 * n and [x.frames for x in s.sources] == [n] * 3
    assert sum(seg.calls) == 3 * n and len(seg.calls) == s.ticks < 3 * n  # batched
    assert max(seg.calls) == 3 and s.batched and s.batch_mean == pytest.approx(3 * n / s.ticks)
    for k, rec in enumerate(per):  # each source's own frames, in order, exact labels
        assert len(rec.labels) == n
        for img, lab in zip(rec.images, rec.labels):
            np.testing.assert_array_equal(lab, expected(img))
        assert rec.closed == 1
    # the shared sink gets one mosaic per tick: 2x2 grid, tile k = source k's latest mask
    assert len(shared.labels) == s.ticks
    last = shared.labels[-1]
    assert last.shape == (2 * H, 2 * W)
    for k in range(3):
        r, c = divmod(k, 2)
        np.testing.assert_array_equal(last[r * H:(r + 1) * H, c * W:(c + 1) * W], per[k].labels[-1])
    assert (last[H:, W:] == 0).all()
    final = shared.stats[-1]
    assert [x["frames"] for x in final["sources"]] == [n] * 3
    assert final["summary"]["frames"] == 3 * n and final["summary"]["stop_reason"] == "end"
    assert s.stop_reason == "end" and s.to_dict()["sources"][0]["name"].endswith("0.avi")


def test_sequential_baseline_and_max_frames(tmp_path: Path) -> None:
    srcs = [FrameSource(write_video(tmp_path / f"{k}.avi", k, 10)) for k in range(2)]
    seg = ColourSegmenter()
    s = run_multi(seg, srcs, batched=False, max_frames=4)
    assert seg.calls == [1] * 8 and s.ticks == 8 and not s.batched
    assert [x.frames for x in s.sources] == [4, 4] and s.stop_reason == "max-frames"


def test_fixed_batch_model_falls_back_once(tmp_path: Path) -> None:
    srcs = [FrameSource(write_video(tmp_path / f"{k}.avi", k, 6)) for k in range(2)]
    seg = ColourSegmenter(max_batch=1)
    warnings: list[str] = []
    rec = [Recorder(), Recorder()]
    s = run_multi(seg, srcs, per_source=rec, warn=warnings.append)
    assert s.frames == 12 and not s.batched and set(seg.calls) == {1}
    assert len([w for w in warnings if "refused a batch of 2" in w]) == 1
    for r in rec:
        for img, lab in zip(r.images, r.labels):
            np.testing.assert_array_equal(lab, expected(img))


class DyingCapture:
    """A live camera: ``n`` frames, then read() fails."""

    def __init__(self, n: int) -> None:
        self.left = n

    def isOpened(self) -> bool:
        return True

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.left <= 0:
            return False, None
        self.left -= 1
        return True, frame_for(0, self.left)

    def get(self, prop: int) -> float:
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        pass


def test_lost_source_never_stalls_the_others(tmp_path: Path) -> None:
    """The camera dies and waits in its reconnect backoff until the other source has been
    completely processed: if the loop waited for the camera, that could never happen."""
    gate = threading.Event()
    opened_by_sink = []
    script = [3]

    def factory(spec: Any) -> DyingCapture:
        if not script:
            raise EdgesegError("cannot open")
        return DyingCapture(script.pop(0))

    def backoff(seconds: float) -> None:
        gate.wait(20)

    cam = FrameSource("rtsp://cam/1", capture_factory=factory, sleep=backoff,
                      reconnect=Reconnect(attempts=1))
    n = 15

    def on_write(count: int) -> None:
        if count == n:
            opened_by_sink.append(True)
            gate.set()

    other = Recorder("file", on_write=on_write)
    s = run_multi(ColourSegmenter(), [cam, FrameSource(write_video(tmp_path / "f.avi", 1, n))],
                  per_source=[None, other])
    assert opened_by_sink == [True]  # the file finished while the camera was still reconnecting
    assert len(other.labels) == n
    cam_stats, file_stats = s.sources
    assert cam_stats.stop_reason == "source-lost" and 1 <= cam_stats.frames + cam_stats.dropped <= 3
    assert file_stats.frames == n and s.stop_reason == "end"


def test_torch_batch_equals_one_by_one(tmp_path: Path) -> None:
    """The real network: one call on a batch of 3 gives the labels of 3 separate calls."""
    from edgeseg.models.desanet import build_model
    from edgeseg.runtime.torch_backend import TorchSegmenter
    from edgeseg.train.checkpoint import default_meta

    seg = TorchSegmenter(build_model("desanet-rn", aux=False), default_meta("desanet-rn", (H, W)))
    vids = [write_video(tmp_path / f"{k}.avi", k, 3) for k in range(3)]
    runs = []
    for batched in (True, False):
        rec = [Recorder() for _ in vids]
        s = run_multi(seg, [FrameSource(v) for v in vids], per_source=rec, batched=batched)
        assert s.frames == 9
        runs.append(rec)
    for a, b in zip(*runs):
        for la, lb in zip(a.labels, b.labels):
            assert float(np.mean(la == lb)) > 0.999  # float reordering may flip a rare tie


def test_fanout_names_sources_and_closes_what_it_opened_on_a_failure(tmp_path, monkeypatch):
    from edgeseg.errors import EdgesegError
    from edgeseg.video import fanout

    # a clash renames every source by its index, so the names keep the --source order
    assert fanout.source_names(["a/cam.mp4", "b/cam.mp4", "/dev/video0"]) == ["cam-0", "cam-1", "cam2-2"]
    assert fanout.source_names(["a.mp4", "/dev/video0"]) == ["a", "cam1"]
    closed: list[str] = []

    class Fake:
        needs_visual = True

        def __init__(self, spec):
            self.spec = self.name = spec

        def close(self):
            closed.append(self.spec)

    def open_sink(spec, **kw):
        if spec.startswith("bad"):
            raise EdgesegError(f"cannot open {spec}")
        return Fake(spec)

    monkeypatch.setattr(fanout, "open_sink", open_sink)
    out = fanout.open_fanout(["{name}.mp4", "{name}-b.mp4", "all.mp4"], ["x", "y"], [10.0, 5.0],
                             classes=["a"], palette=[(0, 0, 0)], masks=[])
    assert [type(p).__name__ for p in out.per_source] == ["TeeSink", "TeeSink"]
    assert [s.spec for s in out.shared] == ["all.mp4"]
    with pytest.raises(EdgesegError, match="cannot open bad.mp4"):
        fanout.open_fanout(["{name}.mp4", "bad.mp4"], ["x", "y"], [None, None], classes=["a"],
                           palette=[(0, 0, 0)], masks=[])
    assert closed == ["x.mp4", "y.mp4"]  # both per-source sinks closed, nothing left open
