"""ROS 2: message conversion, bags in and out through `edgeseg run`, and the node on a fake rclpy.

Bags are written here with rosbags' writers (ROS 2 sqlite3 and MCAP storage, ROS 1) holding
synthetic frames; outputs are read back and checked against the Segmenter run on the same
frames. The model is an untrained DESANet-HN at 64x128.
"""

from __future__ import annotations

import edgeseg.io  # noqa: F401 - the composition root registers the web and bag kinds

import importlib.util
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseg.cli import app
from edgeseg.data.cityscapes import CLASSES, PALETTE, TRAIN_ID_TO_ID
from edgeseg.errors import EdgesegError
from edgeseg.ros import messages as m
from edgeseg.ros.bag import BagCapture, list_topics, parse_bag_source
from edgeseg.ros.bag_sink import BagSink, parse_bag_sink

pytestmark = pytest.mark.usefixtures("one_torch_thread")

H, W = 64, 128  # network
FH, FW = 48, 90  # camera frames (another size: masks come back at the frame's)
N = 4
STAMP0 = 1_700_000_000_123_456_789
DT = 33_333_333
FRAME_ID = "camera_optical"
TOPIC = "/camera/image_raw"
OUT_TOPICS = {"/edgeseg/class_mask": m.IMAGE, "/edgeseg/color_mask": m.IMAGE,
              "/edgeseg/overlay": m.IMAGE, "/edgeseg/label_info": m.LABEL_INFO}


def frames(n: int = N, h: int = FH, w: int = FW) -> list[np.ndarray]:
    """Smooth frames with a moving bar: varied enough for an untrained net to vary its labels."""
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for i in range(n):
        img = np.stack([(xx * 255 // w + 40 * i) % 256, yy * 255 // h,
                        ((xx + yy) * 3 + 60 * i) % 256], axis=-1).astype(np.uint8)
        img[:, (10 + 15 * i) % w: (20 + 15 * i) % w + 1] = (20, 200, 60)
        out.append(img)
    return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from edgeseg.models.desanet import build_model
    from edgeseg.train.checkpoint import default_meta, save_model_only

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "hn.pt"
    save_model_only(path, build_model("desanet-hn", aux=False), default_meta("desanet-hn", (H, W)))
    return path


@pytest.fixture(scope="module")
def seg(checkpoint: Path) -> Any:
    from edgeseg.runtime import open_segmenter

    return open_segmenter(checkpoint)


def write_bag(path: Path, kind: str, compressed: bool = False, n: int = N,
              extra_topic: bool = True) -> list[np.ndarray]:
    """A bag of ``n`` frames on TOPIC (+ an unrelated topic); returns the frames as a reader
    decodes them (jpeg is lossy)."""
    ros1 = kind == "ros1"
    store = m.rosbags_typestore(ros1=ros1)
    types = m.rosbags_types(store, ros1=ros1)
    msgtype = m.COMPRESSED if compressed else m.IMAGE
    imgs = frames(n)
    if ros1:
        from rosbags.rosbag1 import Writer as Writer1

        writer: Any = Writer1(path)
        ser = store.serialize_ros1
    else:
        from rosbags.rosbag2 import StoragePlugin, Writer

        writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP if kind == "mcap"
                        else StoragePlugin.SQLITE3)
        ser = store.serialize_cdr
    decoded = []
    with writer:
        conn = writer.add_connection(TOPIC, msgtype, typestore=store)
        other = writer.add_connection("/imu/temperature", "sensor_msgs/msg/Temperature",
                                      typestore=store) if extra_topic else None
        for i, img in enumerate(imgs):
            header = m.make_header(types, STAMP0 + i * DT, FRAME_ID)
            msg = (m.bgr_to_compressed(types, img, "jpeg", header) if compressed
                   else m.bgr_to_image(types, img, "bgr8", header))
            decoded.append(m.msg_to_bgr(msg))
            writer.write(conn, STAMP0 + i * DT + 1000, ser(msg, msgtype))
            if other is not None:
                t = store.types["sensor_msgs/msg/Temperature"](header=header, temperature=20.0,
                                                                 variance=0.0)
                writer.write(other, STAMP0 + i * DT + 2000, ser(t, "sensor_msgs/msg/Temperature"))
    return decoded


def read_bag(path: Path) -> dict[str, list[tuple[str, int, Any]]]:
    """``{topic: [(msgtype, log_ns, message)]}`` through rosbags' AnyReader."""
    from rosbags.highlevel import AnyReader

    out: dict[str, list[tuple[str, int, Any]]] = {}
    with AnyReader([path]) as r:
        for conn, t, raw in r.messages():
            out.setdefault(conn.topic, []).append((conn.msgtype, t, r.deserialize(raw, conn.msgtype)))
    return out


def run_lib(seg: Any, source: str, sink: str) -> Any:
    from edgeseg.video.run import run

    return run(seg, source, sink)


def check_outputs(out: Path, seg: Any, inputs: list[np.ndarray], alpha: float = 0.5) -> None:
    """Topics, types, counts, headers, and every mask against the Segmenter on the same frame."""
    got = read_bag(out)
    assert set(got) == set(OUT_TOPICS)
    for topic, msgtype in OUT_TOPICS.items():
        assert {t for t, _, _ in got[topic]} == {msgtype}
    (_, _, info), = got["/edgeseg/label_info"]
    assert [(c.class_id, c.class_name) for c in info.class_map] == list(enumerate(CLASSES))
    assert info.header.frame_id == FRAME_ID and m.header_stamp_ns(info.header) == STAMP0
    palette = np.asarray(PALETTE, np.uint8)
    for name in ("class_mask", "color_mask", "overlay"):
        msgs = got[f"/edgeseg/{name}"]
        assert len(msgs) == len(inputs)
        for i, ((_, log_ns, msg), img) in enumerate(zip(msgs, inputs)):
            assert m.header_stamp_ns(msg.header) == STAMP0 + i * DT == log_ns
            assert msg.header.frame_id == FRAME_ID
            labels = seg(img)
            px = m.image_to_numpy(msg)
            if name == "class_mask":
                assert msg.encoding == "mono8" and (px == labels).all()
            elif name == "color_mask":
                assert msg.encoding == "rgb8" and (px == palette[labels]).all()
            else:
                want = alpha * palette[labels][:, :, ::-1] + (1 - alpha) * img.astype(np.float64)
                assert msg.encoding == "bgr8" and np.abs(px - want).max() <= 1.0


# ------------------------------------------------------------------------------------------
# Conversion round trips


TYPES = m.rosbags_types()
HEADER = m.make_header(TYPES, STAMP0, FRAME_ID)


@pytest.mark.parametrize("w", [1, 7, 8, 91])
@pytest.mark.parametrize("pad", [0, 5])
def test_image_round_trip_exact_encodings(w: int, pad: int) -> None:
    img = frames(1, 5, w)[0]
    for enc in ("bgr8", "rgb8", "bgra8", "rgba8"):
        ch = 4 if enc.endswith("a8") else 3
        msg = m.bgr_to_image(TYPES, img, enc, HEADER, step=w * ch + pad)
        assert (msg.width, msg.height, msg.step, msg.encoding) == (w, 5, w * ch + pad, enc)
        assert msg.data.size == 5 * (w * ch + pad)
        assert (m.image_to_bgr(msg) == img).all(), enc
        assert m.header_stamp_ns(msg.header) == STAMP0 and msg.header.frame_id == FRAME_ID
    rgb = m.image_to_numpy(m.bgr_to_image(TYPES, img, "rgb8", HEADER, step=3 * w + pad))
    assert (rgb == img[:, :, ::-1]).all()
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    msg = m.bgr_to_image(TYPES, img, "mono8", HEADER, step=w + pad)
    assert (m.image_to_numpy(msg) == grey).all()
    assert (m.image_to_bgr(msg) == np.repeat(grey[:, :, None], 3, axis=2)).all()
    mask = (np.arange(5 * w).reshape(5, w) % 19).astype(np.uint8)
    assert (m.image_to_numpy(m.numpy_to_image(TYPES, mask, "mono8", HEADER, step=w + pad)) == mask).all()
    conf = np.linspace(0, 1, 5 * w, dtype=np.float32).reshape(5, w)
    back = m.image_to_numpy(m.numpy_to_image(TYPES, conf, "32FC1", HEADER, step=4 * w + pad))
    assert back.dtype == np.float32 and (back == conf).all()


def test_image_big_endian_and_bad_step() -> None:
    conf = np.array([[0.25, -1.5, 3.0]], np.float32)
    msg = TYPES.Image(header=HEADER, height=1, width=3, encoding="32FC1", is_bigendian=1, step=12,
                      data=np.frombuffer(conf.astype(">f4").tobytes(), np.uint8).copy())
    assert (m.image_to_numpy(msg) == conf).all()
    short = TYPES.Image(header=HEADER, height=2, width=3, encoding="bgr8", is_bigendian=0, step=9,
                        data=np.zeros(10, np.uint8))
    with pytest.raises(EdgesegError, match="do not hold"):
        m.image_to_bgr(short)


def _luma_reference(bgr: np.ndarray) -> np.ndarray:
    """BT.601 limited-range luma (what OpenCV's UYVY/YUY2 conversions use)."""
    b, g, r = (bgr[..., i].astype(np.float64) for i in range(3))
    return 16 + 0.257 * r + 0.504 * g + 0.098 * b


@pytest.mark.parametrize("enc", ["yuv422", "yuv422_yuy2", "uyvy"])
@pytest.mark.parametrize("w", [8, 9])
def test_yuv422_round_trip(enc: str, w: int) -> None:
    # Chroma is shared by horizontal pairs: a frame whose pairs have one colour (and odd
    # widths repeating the last pair's colour) survives up to rounding.
    rng = np.random.default_rng(1)
    pairs = rng.integers(30, 220, (6, (w + 1) // 2, 3), dtype=np.uint8)
    img = np.repeat(pairs, 2, axis=1)[:, :w]
    luma = rng.integers(-20, 20, (6, w, 1))  # luma may differ within a pair
    img = np.clip(img.astype(int) + luma, 0, 255).astype(np.uint8)
    img[:, -1] = img[:, -2] if w % 2 else img[:, -1]
    msg = m.bgr_to_image(TYPES, img, enc, HEADER, step=2 * w + 3)
    assert msg.encoding in ("yuv422", "yuv422_yuy2") and msg.step == 2 * w + 3
    px = m.image_to_numpy(msg)
    assert px.shape == (6, w, 2)
    ych = 1 if msg.encoding == "yuv422" else 0  # UYVY: Y at odd bytes; YUYV: even bytes
    assert np.abs(px[:, :, ych] - _luma_reference(img)).max() <= 1.5
    back = m.image_to_bgr(msg)
    assert back.shape == img.shape and np.abs(back.astype(int) - img).max() <= 12
    assert np.abs(back.astype(int) - img).mean() <= 3


def test_compressed_round_trip_and_formats() -> None:
    img = frames(1, 33, 47)[0]
    png = m.bgr_to_compressed(TYPES, img, "png", HEADER)
    assert "png" in png.format and (m.compressed_to_bgr(png) == img).all()
    jpg = m.bgr_to_compressed(TYPES, img, "jpeg", HEADER, quality=95)
    assert jpg.format == "bgr8; jpeg compressed bgr8"
    back = m.msg_to_bgr(jpg)
    assert back.shape == img.shape and np.abs(back.astype(int) - img).mean() < 6
    assert m.header_stamp_ns(jpg.header) == STAMP0
    bad = TYPES.CompressedImage(header=HEADER, format="jpeg", data=np.arange(50, dtype=np.uint8))
    assert m.msg_to_bgr(bad) is None  # undecodable payload: skipped, not fatal
    with pytest.raises(EdgesegError, match="unsupported CompressedImage format 'theora'"):
        m.msg_to_bgr(TYPES.CompressedImage(header=HEADER, format="theora", data=bad.data))


def test_unsupported_encoding_one_line() -> None:
    msg = TYPES.Image(header=HEADER, height=2, width=2, encoding="bayer_rggb8", is_bigendian=0,
                      step=2, data=np.zeros(4, np.uint8))
    with pytest.raises(EdgesegError, match="unsupported image encoding 'bayer_rggb8'") as e:
        m.image_to_bgr(msg)
    assert "\n" not in str(e.value)
    msg.encoding = "32FC1"
    with pytest.raises(EdgesegError, match="unsupported camera image encoding"):
        m.image_to_bgr(msg)


def test_softmax_confidence_and_label_info() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (5, 4, 6)).astype(np.float32)
    e = np.exp(logits.astype(np.float64))
    np.testing.assert_allclose(m.softmax_confidence(logits), (e / e.sum(0)).max(0), rtol=1e-5)
    info = m.label_info_msg(TYPES, CLASSES, HEADER, label_ids=True)
    assert [c.class_id for c in info.class_map] == [int(TRAIN_ID_TO_ID[i]) for i in range(19)]
    assert info.class_map[0].class_id == 7 and info.class_map[0].class_name == "road"


def test_output_renderer_label_ids_and_sizes() -> None:
    labels = (np.arange(6 * 10).reshape(6, 10) % 19).astype(np.uint8)
    img = frames(1, 12, 20)[0]
    r = m.OutputRenderer(TYPES, CLASSES, PALETTE, alpha=1.0, label_ids=True)
    out = r.render(("class_mask", "overlay"), HEADER, img, labels)
    assert set(out) == {"class_mask", "overlay"}
    assert (m.image_to_numpy(out["class_mask"]) == TRAIN_ID_TO_ID[labels]).all()
    ov = m.image_to_numpy(out["overlay"])  # at the labels' size; alpha 1 = the palette
    assert ov.shape == (6, 10, 3) and (ov == np.asarray(PALETTE, np.uint8)[labels][:, :, ::-1]).all()
    with pytest.raises(EdgesegError, match="19-class Cityscapes"):
        m.OutputRenderer(TYPES, ["a", "b"], [(0, 0, 0), (1, 1, 1)], label_ids=True)


# ------------------------------------------------------------------------------------------
# Bags: specs, source errors


def test_parse_specs(tmp_path: Path) -> None:
    s = parse_bag_source(f"{tmp_path}/rec.mcap?topic=/cam/image&start=1.5&end=3")
    assert (s.path, s.topic, s.start_s, s.end_s) == (tmp_path / "rec.mcap", "/cam/image", 1.5, 3.0)
    for bad, msg in (("a.mcap?fps=3", "unknown option 'fps'"), ("a.mcap?start=x", "seconds"),
                     ("a.mcap?start=3&end=1", "must be after")):
        with pytest.raises(EdgesegError, match=msg):
            parse_bag_source(bad)
    k = parse_bag_sink("rosbag2:out_bag?storage=sqlite3&ns=/seg/&outputs=class_mask,label_info")
    assert (k.folder, k.storage, k.namespace, k.outputs) == (True, "sqlite3", "/seg",
                                                              ("class_mask", "label_info"))
    assert not parse_bag_sink("x.mcap").folder
    k = parse_bag_sink("rosbag2:///tmp/b?alpha=0.25&class_ids=label")
    assert (k.path, k.folder, k.alpha, k.label_ids) == (Path("/tmp/b"), True, 0.25, True)
    for bad, msg in (("x.mcap?storage=sqlite3", "is MCAP"), ("x.mcap?outputs=depth", "outputs"),
                     ("x.mcap?alpha=2", "alpha"), ("x.mcap?class_ids=coco", "class_ids"),
                     ("x.mcap?outputs=confidence", "logits")):
        with pytest.raises(EdgesegError, match=msg):
            parse_bag_sink(bad)


def test_registry_routes_bags(tmp_path: Path) -> None:
    from edgeseg.video.sinks import parse_sink
    from edgeseg.video.sources import parse_source

    folder = tmp_path / "rec"
    folder.mkdir()
    (folder / "metadata.yaml").write_text("rosbag2_bagfile_information: {}\n")
    for spec in ("a.mcap?topic=/cam", "b.db3", "c.bag?start=2", str(folder), "rosbag2://x"):
        assert parse_source(spec).kind == "rosbag", spec
    assert parse_source("a.mcap?topic=/cam").query == {"topic": "/cam"}
    for spec in ("out.mcap", "out.mcap?outputs=class_mask", "rosbag2:out", "rosbag2://out"):
        assert parse_sink(spec).kind == "rosbag", spec
    assert parse_sink(str(tmp_path / "masks")).kind == "folder"  # a plain folder stays PNGs


@pytest.fixture(scope="module")
def mcap_bag(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    path = tmp_path_factory.mktemp("bags") / "rec"
    decoded = write_bag(path, "mcap")
    return path / "rec.mcap", decoded  # the bare MCAP file, read without metadata.yaml


def test_capture_reads_frames_stamps_ranges(mcap_bag: tuple[Path, list[np.ndarray]]) -> None:
    path, decoded = mcap_bag
    cap = BagCapture(parse_bag_source(f"{path}?topic={TOPIC}"))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == N and cap.get(cv2.CAP_PROP_FPS) == pytest.approx(30, rel=0.01)
    got = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        got.append((cap.last_stamp_ns, cap.last_frame_id, img))
    cap.release()
    assert [s for s, _, _ in got] == [STAMP0 + i * DT for i in range(N)]
    assert {f for _, f, _ in got} == {FRAME_ID}
    assert all((a == b).all() for (_, _, a), b in zip(got, decoded))
    # start/end: seconds from the bag's first message (log time STAMP0 + 1 us)
    cap = BagCapture(parse_bag_source(f"{path}?start=0.03&end=0.09"))  # one image topic: no ?topic
    stamps = []
    while cap.read()[0]:
        stamps.append(cap.last_stamp_ns)
    cap.release()
    assert stamps == [STAMP0 + DT, STAMP0 + 2 * DT]


def test_source_errors_one_line(mcap_bag: tuple[Path, list[np.ndarray]], tmp_path: Path) -> None:
    path, _ = mcap_bag
    with pytest.raises(EdgesegError) as e:
        BagCapture(parse_bag_source(f"{path}?topic=/front/image"))
    assert str(e.value) == (f"bag {path} has no topic /front/image (image topics: "
                            f"{TOPIC} (Image))")
    with pytest.raises(EdgesegError, match="is sensor_msgs/msg/Temperature, not"):
        BagCapture(parse_bag_source(f"{path}?topic=/imu/temperature"))
    with pytest.raises(EdgesegError, match="bag not found"):
        BagCapture(parse_bag_source(f"{tmp_path}/none.mcap"))
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(EdgesegError, match="truncated or corrupt") as e:
        cap = BagCapture(parse_bag_source(str(cut)))
        while cap.read()[0]:
            pass
    assert "\n" not in str(e.value)
    assert [r["topic"] for r in list_topics(path)] == ["/camera/image_raw", "/imu/temperature"]


# ------------------------------------------------------------------------------------------
# Bags through `edgeseg run`


@pytest.mark.parametrize("kind,compressed", [("sqlite3", False), ("mcap", True), ("ros1", False)])
def test_run_bag_round_trip(seg: Any, tmp_path: Path, kind: str, compressed: bool) -> None:
    src = tmp_path / ("in.bag" if kind == "ros1" else "in_bag")
    inputs = write_bag(src, kind, compressed)
    out = tmp_path / "out.mcap"
    summary = run_lib(seg, f"{src}?topic={TOPIC}", str(out))
    assert summary.frames == N and summary.skipped == 0
    check_outputs(out, seg, inputs)
    assert not list(tmp_path.glob(".*partial*"))


def test_rosbag2_folder_sink_sqlite3(seg: Any, mcap_bag: tuple[Path, list[np.ndarray]],
                                     tmp_path: Path) -> None:
    path, decoded = mcap_bag
    out = tmp_path / "seg_bag"
    run_lib(seg, str(path), f"rosbag2:{out}?storage=sqlite3")
    assert (out / "metadata.yaml").is_file() and list(out.glob("*.db3"))
    check_outputs(out, seg, decoded)
    meta = (out / "metadata.yaml").read_text()
    assert "durability: 1" in meta or "transient_local" in meta.lower()  # LabelInfo's QoS
    with pytest.raises(EdgesegError, match="never overwritten"):
        run_lib(seg, str(path), f"rosbag2:{out}")


# Humble's reading rules, from ros2/rosbag2 branch humble: rosbag2_storage's yaml.hpp (the
# metadata.yaml decoder called by metadata_io.cpp) and rosbag2_transport's qos.cpp. yaml-cpp's
# as<std::string> takes a scalar only (a YAML list -> BadConversion: Jazzy's version 9 QoS list
# is what broke `ros2 bag info` on Humble), as<int>/as<uint64_t> a scalar that parses as a
# number ("keep_last" -> BadConversion), as<bool> y/yes/true/on or n/no/false/off; keys Humble
# does not know (type_description_hash, ros_distro) are never looked up.
_NULL = "tag:yaml.org,2002:null"


def _key(node: Any, key: str) -> Any:
    import yaml

    assert isinstance(node, yaml.MappingNode), f"{key}: parent is not a map"
    for k, v in node.value:
        if k.value == key:
            return v
    raise AssertionError(f"{key}: missing (yaml-cpp InvalidNode)")


def _scalar(node: Any, what: str) -> str:
    import yaml

    assert isinstance(node, yaml.ScalarNode) and node.tag != _NULL, f"{what}: not a scalar"
    return str(node.value)


def _as_int(node: Any, what: str, unsigned: bool = False) -> int:
    text = _scalar(node, what)
    assert text.lstrip("+" if unsigned else "+-").isdigit(), f"{what}: {text!r} is not an int"
    return int(text)


def _as_bool(node: Any, what: str) -> bool:
    text = _scalar(node, what).lower()
    assert text in ("y", "yes", "true", "on", "n", "no", "false", "off"), f"{what}: {text!r}"
    return text in ("y", "yes", "true", "on")


def humble_qos(text: str) -> list[dict[str, int]]:
    """rosbag2_transport (humble) qos.cpp: YAML::Load(string).as<std::vector<Rosbag2QoS>>()."""
    import yaml

    if not text:
        return []
    seq = yaml.compose(text, Loader=yaml.SafeLoader)
    assert isinstance(seq, yaml.SequenceNode), "offered_qos_profiles: not a sequence of QoS"
    out = []
    for q in seq.value:
        got = {k: _as_int(_key(q, k), k) for k in ("history", "depth", "reliability",
                                                   "durability", "liveliness")}
        for k in ("deadline", "lifespan", "liveliness_lease_duration"):  # rmw_time_t
            _as_int(_key(_key(q, k), "sec"), f"{k}.sec", True)
            _as_int(_key(_key(q, k), "nsec"), f"{k}.nsec", True)
        _as_bool(_key(q, "avoid_ros_namespace_conventions"), "avoid_ros_namespace_conventions")
        out.append(got)
    return out


def humble_metadata(text: str, embedded: bool = False) -> dict[str, Any]:
    """rosbag2_storage (humble) yaml.hpp convert<BagMetadata>::decode, field by field (from
    metadata.yaml, or ``embedded``: the BagMetadata node an MCAP's rosbag2 record holds)."""
    import yaml

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    root = root if embedded else _key(root, "rosbag2_bagfile_information")
    version = _as_int(_key(root, "version"), "version")
    _scalar(_key(root, "storage_identifier"), "storage_identifier")
    _as_int(_key(_key(root, "duration"), "nanoseconds"), "duration", True)
    _as_int(_key(_key(root, "starting_time"), "nanoseconds_since_epoch"), "starting_time", True)
    _as_int(_key(root, "message_count"), "message_count", True)
    topics = {}
    for info in _key(root, "topics_with_message_count").value:
        tm = _key(info, "topic_metadata")
        name = _scalar(_key(tm, "name"), "name")
        _scalar(_key(tm, "type"), "type")
        _scalar(_key(tm, "serialization_format"), "serialization_format")
        qos = humble_qos(_scalar(_key(tm, "offered_qos_profiles"), "offered_qos_profiles")
                         if version >= 4 else "")
        topics[name] = (_as_int(_key(info, "message_count"), "message_count", True), qos)
    paths = [_scalar(n, "relative_file_paths") for n in _key(root, "relative_file_paths").value]
    if version >= 3:
        _scalar(_key(root, "compression_format"), "compression_format")  # '' is a scalar
        _scalar(_key(root, "compression_mode"), "compression_mode")
    files = [_scalar(_key(f, "path"), "files.path") for f in _key(root, "files").value] \
        if version >= 5 else []
    return {"version": version, "topics": topics, "paths": paths, "files": files}


def test_humble_rules_refuse_jazzy_metadata() -> None:
    # the rules above reject what Jazzy writes (version 9: QoS as a list, string enums)
    v9 = """rosbag2_bagfile_information:
  version: 9
  storage_identifier: mcap
  duration: {nanoseconds: 0}
  starting_time: {nanoseconds_since_epoch: 5}
  message_count: 1
  topics_with_message_count:
  - message_count: 1
    topic_metadata:
      name: /a
      type: std_msgs/msg/String
      serialization_format: cdr
      offered_qos_profiles:
      - {history: keep_last, depth: 1, reliability: reliable, durability: volatile}
  relative_file_paths: [a.mcap]
"""
    with pytest.raises(AssertionError, match="offered_qos_profiles: not a scalar"):
        humble_metadata(v9)
    with pytest.raises(AssertionError, match="'keep_last' is not an int"):
        humble_qos("- {history: keep_last, depth: 1}")


DURABILITY = {t: "TRANSIENT_LOCAL" if t.endswith("label_info") else "VOLATILE" for t in OUT_TOPICS}


def rosbags_durability(folder: Path) -> dict[str, str]:
    """``{topic: durability}`` as rosbags' rosbag2 Reader parses the metadata's QoS."""
    from rosbags.rosbag2 import Reader

    with Reader(folder) as r:
        return {c.topic: c.ext.offered_qos_profiles[0].durability.name for c in r.connections}


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_rosbag2_sink_humble_reads_it(seg: Any, mcap_bag: tuple[Path, list[np.ndarray]],
                                      tmp_path: Path, storage: str) -> None:
    # issue 32 items 1 and 4: version 8 with the QoS string Humble parses (the default distro),
    # the storage file named as the folder, the metadata naming it; rosbags reads it back.
    path, decoded = mcap_bag
    out = tmp_path / "seg_bag"
    run_lib(seg, str(path), f"rosbag2:{out}?storage={storage}")
    ext = ".mcap" if storage == "mcap" else ".db3"
    assert sorted(f.name for f in out.iterdir()) == sorted(["metadata.yaml", f"seg_bag{ext}"])
    meta = humble_metadata((out / "metadata.yaml").read_text())
    assert meta["version"] == 8
    assert meta["paths"] == [f"seg_bag{ext}"] and meta["files"] in ([], [f"seg_bag{ext}"])
    assert set(meta["topics"]) == set(OUT_TOPICS)
    count, (qos,) = meta["topics"]["/edgeseg/label_info"]
    # rmw enums: KEEP_LAST 1, RELIABLE 1, TRANSIENT_LOCAL 1 (volatile 2), AUTOMATIC 1
    assert count == 1 and qos == {"history": 1, "depth": 1, "reliability": 1, "durability": 1,
                                  "liveliness": 1}
    assert meta["topics"]["/edgeseg/class_mask"][1][0]["durability"] == 2
    assert rosbags_durability(out) == DURABILITY
    check_outputs(out, seg, decoded)
    assert not list(tmp_path.glob(".*partial*"))


def test_rosbag2_sink_jazzy_distro(seg: Any, mcap_bag: tuple[Path, list[np.ndarray]],
                                   tmp_path: Path) -> None:
    import yaml

    path, decoded = mcap_bag
    out = tmp_path / "j_bag"
    run_lib(seg, str(path), f"rosbag2:{out}?distro=jazzy")
    assert yaml.safe_load((out / "metadata.yaml").read_text())[
        "rosbag2_bagfile_information"]["version"] == 9
    assert rosbags_durability(out) == DURABILITY
    assert (out / "j_bag.mcap").is_file()
    with pytest.raises(AssertionError, match="offered_qos_profiles"):
        humble_metadata((out / "metadata.yaml").read_text())  # Jazzy's, as asked
    check_outputs(out, seg, decoded)
    with pytest.raises(EdgesegError, match="distro must be humble or jazzy"):
        parse_bag_sink("rosbag2:x?distro=foxy")


def test_bare_mcap_read_by_mcap_ros2(seg: Any, mcap_bag: tuple[Path, list[np.ndarray]],
                                     tmp_path: Path) -> None:
    # An independent reader (mcap + mcap-ros2-support): the embedded rosbag2 metadata names the
    # final file and is Humble's version 8; every mask decodes equal to the Segmenter's.

    reader_mod = pytest.importorskip("mcap.reader", reason="pip install mcap")
    decoder_mod = pytest.importorskip("mcap_ros2.decoder", reason="pip install mcap-ros2-support")
    path, decoded = mcap_bag
    out = tmp_path / "seg.mcap"
    run_lib(seg, str(path), str(out))
    with out.open("rb") as f:
        r = reader_mod.make_reader(f, decoder_factories=[decoder_mod.DecoderFactory()])
        embedded = {md.name: md.metadata for md in r.iter_metadata()}
        meta = humble_metadata(embedded["rosbag2"]["serialized_metadata"], embedded=True)
        assert meta["version"] == 8 and meta["paths"] == ["seg.mcap"]
        masks: list[np.ndarray] = []
        for _schema, channel, message, msg in r.iter_decoded_messages():
            humble_qos(channel.metadata["offered_qos_profiles"])
            if channel.topic == "/edgeseg/class_mask":
                assert msg.encoding == "mono8" and msg.header.frame_id == FRAME_ID
                assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == message.log_time
                masks.append(np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
                             [:, : msg.width])
    assert len(masks) == len(decoded)
    for got, img in zip(masks, decoded):
        assert (got == seg(img)).all()
    assert not list(tmp_path.glob(".*partial*"))


def test_cli_bag_to_mcap(checkpoint: Path, tmp_path: Path, seg: Any) -> None:
    src = tmp_path / "in_bag"
    inputs = write_bag(src, "sqlite3")
    out = tmp_path / "out.mcap"
    r = CliRunner().invoke(app, ["run", "--model", str(checkpoint), "--source",
                                 f"{src}?topic={TOPIC}", "--sink", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["frames"] == N
    check_outputs(out, seg, inputs)
    r = CliRunner().invoke(app, ["run", "--model", str(checkpoint), "--source",
                                 f"{src}?topic=/nope", "--sink", str(tmp_path / "x.mcap")])
    assert r.exit_code == 2 and r.output.startswith("error:") and "/camera/image_raw" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "x.mcap").exists()
    r = CliRunner().invoke(app, ["ros2", "topics", str(src), "--json"])
    assert r.exit_code == 0 and {t["topic"] for t in json.loads(r.stdout)} == {TOPIC, "/imu/temperature"}


def _encodings_bag(path: Path, encodings: list[str]) -> None:
    """One frame per encoding on TOPIC; the pixels are bgr8's, so an unsupported encoding
    fails at its frame."""
    store = m.rosbags_typestore()
    from rosbags.rosbag2 import StoragePlugin, Writer

    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conn = w.add_connection(TOPIC, m.IMAGE, typestore=store)
        for i, enc in enumerate(encodings):
            msg = m.bgr_to_image(TYPES, frames(1)[0], "bgr8", m.make_header(TYPES, STAMP0 + i * DT, FRAME_ID))
            msg.encoding = enc
            w.write(conn, STAMP0 + i * DT, store.serialize_cdr(msg, m.IMAGE))


def _no_output(tmp_path: Path, *names: str) -> None:
    for name in names:
        assert not (tmp_path / name).exists(), name
    assert not list(tmp_path.glob(".*partial*")), "a staging folder was left behind"


def test_error_mid_run_leaves_no_output(checkpoint: Path, tmp_path: Path) -> None:
    # issue 32 item 2: 5 bgr8 frames then a 16UC1 one used to leave a finished 5-frame mcap,
    # an unsupported first frame an empty mcap / an empty rosbag2 folder.
    late, first = tmp_path / "late", tmp_path / "first"
    _encodings_bag(late, ["bgr8"] * 5 + ["16UC1"])
    _encodings_bag(first, ["bayer_rggb8"])
    mcap, folder = str(tmp_path / "out.mcap"), f"rosbag2:{tmp_path / 'out_bag'}"
    for src, sink in ((late, mcap), (late, folder), (first, mcap), (first, folder + "?storage=sqlite3")):
        r = CliRunner().invoke(app, ["run", "--model", str(checkpoint), "--source", str(src),
                                     "--sink", sink])
        last = r.output.strip().splitlines()[-1]  # after the progress lines: one error line
        assert r.exit_code == 2 and last.startswith("error: unsupported"), r.output
        assert "Traceback" not in r.output
        _no_output(tmp_path, "out.mcap", "out_bag")
    # asked for: the partial, under a name that says so, readable, with the 5 good frames
    r = CliRunner().invoke(app, ["run", "--model", str(checkpoint), "--source", str(late),
                                 "--sink", f"{tmp_path / 'out.mcap'}?partial=keep"])
    assert r.exit_code == 2
    _no_output(tmp_path, "out.mcap")
    got = read_bag(tmp_path / "out.partial.mcap")
    assert len(got["/edgeseg/class_mask"]) == 5 and len(got["/edgeseg/label_info"]) == 1


def test_empty_bag_is_an_error(checkpoint: Path, tmp_path: Path) -> None:
    # issue 32 item 3: a connection with 0 messages exited 0 with "frames 0" and an empty bag
    src = tmp_path / "empty"
    _encodings_bag(src, [])
    for sink in (str(tmp_path / "out.mcap"), f"rosbag2:{tmp_path / 'out_bag'}"):
        r = CliRunner().invoke(app, ["run", "--model", str(checkpoint), "--source", str(src),
                                     "--sink", sink])
        assert r.exit_code == 2 and "has no messages" in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1
        _no_output(tmp_path, "out.mcap", "out_bag")


class _Frame:  # a frame from a source with no stamps (a video file)
    def __init__(self, i: int, h: int = 8, w: int = 10) -> None:
        self.index, self.image, self.name = i, frames(1, h, w)[0], f"{i}"


def test_truncated_bags_one_line_before_any_output(seg: Any, tmp_path: Path) -> None:
    for kind in ("mcap", "sqlite3", "ros1"):  # a recording cut off
        src = tmp_path / ("t.bag" if kind == "ros1" else f"t_{kind}")
        write_bag(src, kind)
        f = src if kind == "ros1" else next(src.glob("*.mcap" if kind == "mcap" else "*.db3"))
        cut = tmp_path / f"cut{f.suffix}"
        cut.write_bytes(f.read_bytes()[: int(f.stat().st_size * 0.8)])
        out2 = tmp_path / f"out_{kind}.mcap"
        with pytest.raises(EdgesegError, match=f"cannot read bag {cut}: truncated or corrupt") as e:
            run_lib(seg, str(cut), str(out2))
        assert "\n" not in str(e.value) and not out2.exists()


def test_bag_sink_hostile_full_disk_and_no_frames(tmp_path: Path) -> None:
    import errno

    def full(*a: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    sink = BagSink(str(tmp_path / "o.mcap?outputs=class_mask"), classes=CLASSES, palette=PALETTE)
    sink._put = full  # type: ignore[method-assign]
    sink.write(_Frame(0), np.zeros((8, 10), np.uint8), None)
    with pytest.raises(EdgesegError, match="cannot write the bag [(]No space left") as e:
        sink.close()
    assert "\n" not in str(e.value)
    _no_output(tmp_path, "o.mcap")
    sink = BagSink(f"rosbag2:{tmp_path / 'b'}", classes=CLASSES, palette=PALETTE)
    with pytest.raises(EdgesegError, match="no frames reached it"):
        sink.close()
    _no_output(tmp_path, "b")
    sink.close()  # idempotent
    sink.abort()


def test_bag_sink_without_stamps_uses_frame_rate(tmp_path: Path) -> None:
    class F:  # a frame from a source with no stamps (a video file)
        def __init__(self, i: int) -> None:
            self.index, self.image, self.name = i, frames(1, 8, 10)[0], f"{i}"

    sink = BagSink(str(tmp_path / "o.mcap?outputs=class_mask"), classes=CLASSES, palette=PALETTE,
                   fps=10.0)
    for i in range(3):
        sink.write(F(i), np.full((8, 10), i, np.uint8), None)
    sink.close()
    got = read_bag(tmp_path / "o.mcap")
    assert list(got) == ["/edgeseg/class_mask"]
    assert [t for _, t, _ in got["/edgeseg/class_mask"]] == [0, 100_000_000, 200_000_000]
    assert [int(m.image_to_numpy(x)[0, 0]) for _, _, x in got["/edgeseg/class_mask"]] == [0, 1, 2]


# ------------------------------------------------------------------------------------------
# The node, on a fake of the rclpy surface it uses


class FakeParameter:
    def __init__(self, name: str, value: Any) -> None:
        self.name, self.value = name, value


class FakePublisher:
    def __init__(self, msg_type: Any, topic: str, qos_profile: Any) -> None:
        self.msg_type, self.topic, self.qos = msg_type, topic, qos_profile
        self.sent: list[Any] = []
        self.subscribers = 1

    def publish(self, msg: Any) -> None:
        assert isinstance(msg, self.msg_type)
        self.sent.append(msg)

    def get_subscription_count(self) -> int:
        return self.subscribers


class FakeLogger:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def info(self, msg: str) -> None:
        self.lines.append(("info", msg))

    def warning(self, msg: str) -> None:
        self.lines.append(("warning", msg))

    def error(self, msg: str) -> None:
        self.lines.append(("error", msg))


class FakeTime:
    def __init__(self, nanoseconds: int) -> None:
        self.nanoseconds = nanoseconds


class FakeClock:
    def now(self) -> FakeTime:
        return FakeTime(STAMP0)


class FakeNode:
    """rclpy.node.Node's signatures (Humble) for the calls the node makes."""

    def __init__(self, node_name: str, *, parameter_overrides: dict[str, Any] | None = None) -> None:
        self.name = node_name
        self.overrides = parameter_overrides or {}
        self.params: dict[str, FakeParameter] = {}
        self.publishers: dict[str, FakePublisher] = {}
        self.subscriptions: list[tuple[Any, str, Any, Any]] = []
        self.timers: list[tuple[float, Any]] = []
        self.logger = FakeLogger()

    def declare_parameter(self, name: str, value: Any = None, descriptor: Any = None,
                          ignore_override: bool = False) -> FakeParameter:
        assert name not in self.params, f"parameter {name} declared twice"
        self.params[name] = FakeParameter(name, self.overrides.get(name, value))
        return self.params[name]

    def get_parameter(self, name: str) -> FakeParameter:
        return self.params[name]

    def create_publisher(self, msg_type: Any, topic: str, qos_profile: Any, *,
                         callback_group: Any = None, event_callbacks: Any = None,
                         qos_overriding_options: Any = None, publisher_class: Any = None) -> FakePublisher:
        self.publishers[topic] = FakePublisher(msg_type, topic, qos_profile)
        return self.publishers[topic]

    def create_subscription(self, msg_type: Any, topic: str, callback: Any, qos_profile: Any, *,
                            callback_group: Any = None, event_callbacks: Any = None,
                            qos_overriding_options: Any = None, raw: bool = False) -> object:
        self.subscriptions.append((msg_type, topic, callback, qos_profile))
        return object()

    def create_timer(self, timer_period_sec: float, callback: Any, callback_group: Any = None,
                     clock: Any = None) -> object:
        self.timers.append((timer_period_sec, callback))
        return object()

    def get_logger(self) -> FakeLogger:
        return self.logger

    def get_clock(self) -> FakeClock:
        return FakeClock()


def fake_api() -> Any:
    from edgeseg.ros.node import RosApi

    t = m.rosbags_typestore().types
    return RosApi(TYPES, "sensor", "reliable", "latched", t["diagnostic_msgs/msg/DiagnosticArray"],
                  t["diagnostic_msgs/msg/DiagnosticStatus"], t["diagnostic_msgs/msg/KeyValue"])


def make_node(seg: Any, **params: Any) -> tuple[Any, FakeNode]:
    from edgeseg.ros.node import SegmenterNode

    node = FakeNode("edgeseg", parameter_overrides={"model": "hn.pt", **params})
    return SegmenterNode(node, fake_api(), lambda model, profile: seg), node


def test_node_topics_qos_and_outputs(seg: Any) -> None:
    sn, node = make_node(seg, outputs="class_mask,color_mask,overlay,confidence,label_info")
    assert set(node.publishers) == {"~/class_mask", "~/color_mask", "~/overlay", "~/confidence",
                                    "~/label_info", "~/stats"}
    assert node.publishers["~/label_info"].qos == "latched"
    assert node.publishers["~/class_mask"].qos == "reliable"
    (msg_type, topic, _cb, qos), = node.subscriptions
    assert (msg_type, topic, qos) == (TYPES.Image, "/camera/image_raw", "sensor")
    assert node.timers[0][0] == 1.0
    (info,) = node.publishers["~/label_info"].sent  # published once at start-up
    assert [c.class_name for c in info.class_map] == list(CLASSES)
    img = frames(1)[0]
    cam = m.bgr_to_image(TYPES, img, "rgb8", HEADER, step=3 * FW + 2)
    node.subscriptions[0][2](cam)
    assert sn.step()
    labels = seg(img)
    sent = {t: p.sent[-1] for t, p in node.publishers.items() if p.sent and t != "~/label_info"}
    assert set(sent) == {"~/class_mask", "~/color_mask", "~/overlay", "~/confidence"}
    for msg in sent.values():
        assert msg.header is cam.header
    assert (m.image_to_numpy(sent["~/class_mask"]) == labels).all()
    conf = m.image_to_numpy(sent["~/confidence"])
    logits = seg.infer(seg.preprocess(img))[0]
    ref = cv2.resize(m.softmax_confidence(logits), (FW, FH), interpolation=cv2.INTER_LINEAR)
    assert conf.shape == (FH, FW) and np.allclose(conf, ref) and (conf > 1 / 19 - 1e-6).all()


def test_node_drops_idle_mask_size_stats(seg: Any) -> None:
    sn, node = make_node(seg, mask_size="network", input_topic="/cam/image/compressed")
    (msg_type, topic, cb, _), = node.subscriptions
    assert msg_type is TYPES.CompressedImage and topic == "/cam/image/compressed"
    img = frames(1)[0]
    for _ in range(3):  # two frames replaced before the worker took them
        cb(m.bgr_to_compressed(TYPES, img, "png", HEADER))
    assert sn.stats.dropped == 2
    for p in node.publishers.values():
        p.subscribers = 0
    node.publishers["~/class_mask"].subscribers = 1
    assert sn.step() and not sn.step()
    assert len(node.publishers["~/class_mask"].sent) == 1
    assert not node.publishers["~/overlay"].sent and not node.publishers["~/color_mask"].sent
    mask = m.image_to_numpy(node.publishers["~/class_mask"].sent[0])
    assert mask.shape == (H, W)  # network size
    node.publishers["~/class_mask"].subscribers = 0  # nobody listens: the network does not run
    cb(m.bgr_to_compressed(TYPES, img, "png", HEADER))
    assert sn.step() and sn.stats.idle == 1 and sn.stats.frames == 1
    node.timers[0][1]()
    (diag,) = node.publishers["~/stats"].sent
    values = {kv.key: kv.value for kv in diag.status[0].values}
    assert values["frames"] == "1" and values["dropped"] == "2" and values["no_subscriber"] == "1"
    assert float(values["fps"]) >= 0 and float(values["latency_ms_mean"]) > 0
    assert m.header_stamp_ns(diag.header) == STAMP0


def test_node_worker_thread_and_bad_params(seg: Any) -> None:
    import time

    sn, node = make_node(seg, class_ids="label")
    sn.start()
    try:
        node.subscriptions[0][2](m.bgr_to_image(TYPES, frames(1)[0], "yuv422", HEADER))
        deadline = time.monotonic() + 20
        while not node.publishers["~/class_mask"].sent and time.monotonic() < deadline:
            time.sleep(0.01)
        bad = m.bgr_to_image(TYPES, frames(1)[0], "bgr8", HEADER)
        bad.encoding = "bayer_rggb8"
        node.subscriptions[0][2](bad)  # logged, the node keeps running
        deadline = time.monotonic() + 20
        while not any(lv == "error" for lv, _ in node.logger.lines) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        sn.stop()
    mask = m.image_to_numpy(node.publishers["~/class_mask"].sent[0])
    assert set(np.unique(mask)) <= {int(i) for i in TRAIN_ID_TO_ID[:19]}
    assert any("bayer_rggb8" in line for lv, line in node.logger.lines if lv == "error")
    from edgeseg.ros.node import SegmenterNode

    for params, msg in (({"model": ""}, "parameter model is empty"),
                        ({"mask_size": "65x64"}, "even"), ({"outputs": "depth"}, "outputs"),
                        ({"palette": "viridis"}, "palette"), ({"alpha": 2.0}, "alpha")):
        node = FakeNode("edgeseg", parameter_overrides={"model": "hn.pt", **params})
        with pytest.raises(EdgesegError, match=msg):
            SegmenterNode(node, fake_api(), lambda model, profile: seg)


def test_ros_args_and_shipped_files() -> None:
    import yaml

    from edgeseg.cli.ros2 import config_file
    from edgeseg.ros.node import PARAMETERS, ros_args

    assert ros_args({"model": "m.onnx", "profile": None, "outputs": ""}, "p.yaml", ["-r", "x"]) == [
        "edgeseg", "--ros-args", "--params-file", "p.yaml", "-p", "model:=m.onnx", "-r", "x"]
    with pytest.raises(EdgesegError, match="unknown parameter"):
        ros_args({"modle": "x"})
    cfg = yaml.safe_load(config_file().read_text())["edgeseg"]["ros__parameters"]
    assert set(cfg) == set(PARAMETERS)
    assert {k: v for k, v in cfg.items() if k != "model"} == {
        k: d for k, (d, _) in PARAMETERS.items() if k != "model"}
    launch = config_file().parent.parent / "launch" / "segmenter.launch.py"
    compile(launch.read_text(), str(launch), "exec")
    assert "generate_launch_description" in launch.read_text()


def test_cli_ros2_without_rclpy() -> None:
    r = CliRunner().invoke(app, ["ros2", "--help"])
    assert r.exit_code == 0 and "source /opt/ros/humble/setup.bash" in r.output
    if importlib.util.find_spec("rclpy") is None:
        r = CliRunner().invoke(app, ["ros2", "run", "--model", "x.onnx"])
        assert r.exit_code == 2 and r.output.startswith("error:")
        assert "source /opt/ros/humble/setup.bash" in r.output
        assert len(r.output.strip().splitlines()) == 1
    r = CliRunner().invoke(app, ["ros2", "params", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["mask_size"]["default"] == "input"


@pytest.mark.skipif(importlib.util.find_spec("rclpy") is None,
                    reason="rclpy comes from a ROS 2 install: source /opt/ros/humble/setup.bash")
def test_live_node_with_rclpy(seg: Any) -> None:  # pragma: no cover - needs ROS 2
    import time

    import rclpy

    from edgeseg.ros.node import SegmenterNode, load_rclpy_api

    api = load_rclpy_api()
    rclpy.init()
    try:
        node = rclpy.create_node("edgeseg", parameter_overrides=[
            rclpy.parameter.Parameter("model", value="hn.pt")])
        peer = rclpy.create_node("edgeseg_test_peer")
        sn = SegmenterNode(node, api, lambda model, profile: seg)
        got: list[Any] = []
        peer.create_subscription(api.types.Image, "/edgeseg/class_mask", got.append, api.output_qos)
        pub = peer.create_publisher(api.types.Image, "/camera/image_raw", api.sensor_qos)
        img = frames(1)[0]
        msg = m.bgr_to_image(api.types, img, "bgr8", m.make_header(api.types, STAMP0, FRAME_ID))
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            pub.publish(msg)
            rclpy.spin_once(node, timeout_sec=0.05)
            sn.step()
            rclpy.spin_once(peer, timeout_sec=0.05)
        assert got and (m.image_to_numpy(got[0]) == seg(img)).all()
        assert got[0].header.frame_id == FRAME_ID
    finally:
        rclpy.shutdown()
