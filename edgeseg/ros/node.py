"""The ROS 2 segmentation node: camera Image / CompressedImage in, masks and LabelInfo out.

rclpy comes from the robot's ROS 2 install (Humble on JetPack 6), not the package index, so it
is imported only by :func:`load_rclpy_api` / :func:`main`; everything else here is plain logic
over an object with rclpy's ``Node`` surface (``create_subscription``, ``create_publisher``,
``declare_parameter``, ``get_parameter(...).value``, ``create_timer``, ``get_logger``), which the
tests replace with a fake of that surface.

Topics (DESIGN.md section 11; ros_deep_learning segnet, isaac_ros_image_segmentation):
``~/class_mask`` mono8, ``~/color_mask`` rgb8, ``~/overlay`` bgr8, ``~/confidence`` 32FC1,
``~/label_info`` vision_msgs/LabelInfo (transient local), ``~/stats`` diagnostic_msgs/
DiagnosticArray once a second. Input: sensor-data QoS (best effort), depth 1. The subscription
callback only keeps the newest frame (an older one not yet taken is counted in ``dropped``); a
worker thread runs the network, so a slow model never stalls the executor. Outputs nobody
subscribes to are not computed, and with no subscriber at all the network does not run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeseg.errors import EdgesegError, MissingDependencyError
from edgeseg.ros.messages import (
    DEFAULT_OUTPUTS,
    MessageTypes,
    OutputRenderer,
    label_info_msg,
    make_header,
    msg_to_bgr,
    parse_outputs,
    rclpy_types,
    softmax_confidence,
)

__all__ = ["PARAMETERS", "NodeConfig", "RosApi", "SegmenterNode", "load_rclpy_api", "main",
           "parse_mask_size"]

RCLPY_HINT = ("source /opt/ros/humble/setup.bash (ROS 2 Humble; apt install ros-humble-ros-base "
              "ros-humble-vision-msgs), or use docker/Dockerfile.jetson-ros")
NODE_NAME = "edgeseg"

# name -> (default, description); the shipped config/segmenter.yaml lists the same keys.
PARAMETERS: dict[str, tuple[Any, str]] = {
    "model": ("", "checkpoint (.pt), ONNX (.onnx) or TensorRT engine (.engine)"),
    "profile": ("", "device profile (name, .yaml or auto): a checkpoint's input size"),
    "input_topic": ("/camera/image_raw", "sensor_msgs/Image or CompressedImage topic"),
    "input_transport": ("auto", "raw, compressed, or auto (compressed when the topic ends in /compressed)"),
    "mask_size": ("input", "input, network, or HxW (even numbers)"),
    "palette": ("model", "model (the artifact's palette) or cityscapes"),
    "alpha": (0.5, "mask weight in the overlay"),
    "outputs": (",".join(DEFAULT_OUTPUTS), "comma list of class_mask, color_mask, overlay, confidence, label_info"),
    "class_ids": ("train", "class_mask pixels: train (0..18) or label (Cityscapes label ids)"),
    "stats_period": (1.0, "seconds between ~/stats diagnostics"),
}


def parse_mask_size(value: str, network_hw: tuple[int, int]) -> tuple[int, int] | None:
    """``input`` -> None (each frame's size), ``network`` -> the model's, ``HxW`` -> (H, W)
    (every size in edgeseg is HxW, read by :func:`edgeseg.sizes.parse_hw`)."""
    from edgeseg.sizes import parse_hw

    v = str(value).strip().lower()
    if v == "input":
        return None
    if v == "network":
        return network_hw
    h, w = parse_hw(v, "mask_size")
    if h % 2 or w % 2:
        raise EdgesegError(f"mask_size: expected even H and W, got {value!r}")
    return h, w


@dataclass
class NodeConfig:
    """The node's parameters, validated."""

    model: str = ""
    profile: str = ""
    input_topic: str = "/camera/image_raw"
    input_transport: str = "auto"
    mask_size: str = "input"
    palette: str = "model"
    alpha: float = 0.5
    outputs: tuple[str, ...] = DEFAULT_OUTPUTS
    class_ids: str = "train"
    stats_period: float = 1.0

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> NodeConfig:
        cfg = cls(**{k: v for k, v in values.items() if k != "outputs"})
        cfg.outputs = parse_outputs(values.get("outputs", ",".join(DEFAULT_OUTPUTS)), "outputs")
        if cfg.input_transport not in ("auto", "raw", "compressed"):
            raise EdgesegError(f"input_transport: expected auto, raw or compressed, got {cfg.input_transport!r}")
        if cfg.palette not in ("model", "cityscapes"):
            raise EdgesegError(f"palette: expected model or cityscapes, got {cfg.palette!r}")
        if cfg.class_ids not in ("train", "label"):
            raise EdgesegError(f"class_ids: expected train or label, got {cfg.class_ids!r}")
        if not 0.0 <= float(cfg.alpha) <= 1.0:
            raise EdgesegError(f"alpha: expected a value in [0, 1], got {cfg.alpha}")
        if float(cfg.stats_period) <= 0:
            raise EdgesegError(f"stats_period: expected seconds > 0, got {cfg.stats_period}")
        return cfg

    @property
    def compressed(self) -> bool:
        if self.input_transport == "auto":
            return self.input_topic.rstrip("/").endswith("/compressed")
        return self.input_transport == "compressed"


@dataclass(frozen=True)
class RosApi:
    """What the node needs from rclpy and the message packages (a fake in tests)."""

    types: MessageTypes
    sensor_qos: Any  # best effort, keep last 1
    output_qos: Any  # reliable, keep last 1
    latched_qos: Any  # reliable, transient local, keep last 1
    DiagnosticArray: Any
    DiagnosticStatus: Any
    KeyValue: Any


def load_rclpy_api() -> RosApi:
    """rclpy's QoS profiles and message classes; a one-line error when ROS 2 is not sourced."""
    try:
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
        from rclpy.qos import (
            DurabilityPolicy,
            HistoryPolicy,
            QoSProfile,
            ReliabilityPolicy,
        )

        types = rclpy_types()
    except ImportError as e:
        raise MissingDependencyError(f"ROS 2 ({e.name or e})", RCLPY_HINT) from None
    keep1 = {"history": HistoryPolicy.KEEP_LAST, "depth": 1}
    return RosApi(
        types,
        QoSProfile(**keep1, reliability=ReliabilityPolicy.BEST_EFFORT,
                   durability=DurabilityPolicy.VOLATILE),
        QoSProfile(**keep1, reliability=ReliabilityPolicy.RELIABLE,
                   durability=DurabilityPolicy.VOLATILE),
        QoSProfile(**keep1, reliability=ReliabilityPolicy.RELIABLE,
                   durability=DurabilityPolicy.TRANSIENT_LOCAL),
        DiagnosticArray, DiagnosticStatus, KeyValue,
    )


@dataclass
class _Stats:
    frames: int = 0
    dropped: int = 0
    skipped: int = 0  # undecodable frames
    idle: int = 0  # frames not run: no subscriber
    latency_ms: list[float] = field(default_factory=list)  # since the last report
    window_start: float = field(default_factory=time.monotonic)
    window_frames: int = 0


class SegmenterNode:
    """The node's logic around an rclpy ``Node`` (or a fake with its surface).

    Args:
        node: an ``rclpy.node.Node``.
        api: QoS profiles and message classes (:func:`load_rclpy_api`).
        segmenter_factory: ``(model, profile) -> Segmenter``; default
            :func:`edgeseg.video.run.load_segmenter` picking the backend by file type.
    """

    def __init__(self, node: Any, api: RosApi,
                 segmenter_factory: Callable[[str, str | None], Any] | None = None) -> None:
        self.node, self.api = node, api
        self.log = node.get_logger()
        values = {}
        for name, (default, _desc) in PARAMETERS.items():
            node.declare_parameter(name, default)
            values[name] = node.get_parameter(name).value
        self.config = cfg = NodeConfig.from_values(values)
        if not cfg.model:
            raise EdgesegError("parameter model is empty: set it to a .pt, .onnx or .engine file "
                               "(-p model:=path or the params YAML)")
        factory = segmenter_factory or _load_segmenter
        self.segmenter = seg = factory(cfg.model, cfg.profile or None)
        meta = seg.meta
        palette = meta.palette
        if cfg.palette == "cityscapes":
            from edgeseg.data.cityscapes import PALETTE

            palette = list(PALETTE)
        self.mask_hw = parse_mask_size(cfg.mask_size, tuple(meta.input_hw))
        self.renderer = OutputRenderer(api.types, meta.classes, palette, alpha=float(cfg.alpha),
                                       label_ids=cfg.class_ids == "label")
        t = api.types
        self.publishers = {
            name: node.create_publisher(t.LabelInfo if name == "label_info" else t.Image,
                                        f"~/{name}",
                                        api.latched_qos if name == "label_info" else api.output_qos)
            for name in cfg.outputs
        }
        if "label_info" in self.publishers:  # once; transient local keeps it for late joiners
            self.publishers["label_info"].publish(label_info_msg(
                t, meta.classes, make_header(t, 0, ""), label_ids=cfg.class_ids == "label"))
        self.stats_pub = node.create_publisher(api.DiagnosticArray, "~/stats", api.output_qos)
        msg_type = t.CompressedImage if cfg.compressed else t.Image
        self.subscription = node.create_subscription(msg_type, cfg.input_topic, self.on_image,
                                                     api.sensor_qos)
        self.timer = node.create_timer(float(cfg.stats_period), self.publish_stats)
        self.stats = _Stats()
        self._pending: Any = None
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._warned_conf = False
        self.log.info(f"edgeseg: {meta.variant} ({seg.backend}) on {cfg.input_topic} -> "
                      f"{', '.join(f'~/{n}' for n in cfg.outputs)}")

    # -- input ---------------------------------------------------------------------------------

    def on_image(self, msg: Any) -> None:
        """Subscription callback: keep the newest frame; one not yet taken is dropped."""
        with self._cond:
            if self._pending is not None:
                self.stats.dropped += 1
            self._pending = msg
            self._cond.notify()

    def start(self) -> None:
        """Run frames on a worker thread (the executor thread only hands them over)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="edgeseg-ros-worker",
                                            daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stop:
                    self._cond.wait(0.1)
                if self._stop:
                    return
            try:
                self.step()
            except EdgesegError as e:  # e.g. an unsupported encoding: say so, keep running
                self.log.error(str(e))

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # -- work ----------------------------------------------------------------------------------

    def wanted(self) -> tuple[str, ...]:
        """The image outputs someone subscribes to now."""
        return tuple(n for n, p in self.publishers.items()
                     if n != "label_info" and p.get_subscription_count() > 0)

    def step(self) -> bool:
        """Process the pending frame, if any; True when one was taken."""
        with self._cond:
            msg, self._pending = self._pending, None
        if msg is None:
            return False
        wanted = self.wanted()
        if not wanted:
            self.stats.idle += 1
            return True
        t0 = time.perf_counter()
        bgr = msg_to_bgr(msg)
        if bgr is None:
            self.stats.skipped += 1
            self.log.warning(f"skipped an undecodable {msg.format} frame on {self.config.input_topic}")
            return True
        seg = self.segmenter
        out = seg.infer(seg.preprocess(bgr))
        size = self.mask_hw or bgr.shape[:2]
        labels = seg.postprocess(out, size)
        conf = None
        if "confidence" in wanted:
            conf = self._confidence(out, size)
        for name, m in self.renderer.render(wanted, msg.header, bgr, labels, conf).items():
            self.publishers[name].publish(m)
        self.stats.frames += 1
        self.stats.window_frames += 1
        self.stats.latency_ms.append((time.perf_counter() - t0) * 1e3)
        return True

    def _confidence(self, out: np.ndarray, size: tuple[int, int]) -> np.ndarray | None:
        if out.ndim != 4:  # the backend returned labels (argmax on the device)
            if not self._warned_conf:
                self.log.warning("~/confidence needs logits; this backend returns labels only")
                self._warned_conf = True
            return None
        conf = softmax_confidence(out[0])
        if conf.shape != tuple(size):
            import cv2

            conf = cv2.resize(conf, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        return conf

    # -- diagnostics ---------------------------------------------------------------------------

    def stats_values(self) -> dict[str, str]:
        s = self.stats
        now = time.monotonic()
        dt = now - s.window_start
        lat = np.asarray(s.latency_ms) if s.latency_ms else np.zeros(1)
        values = {
            "fps": f"{s.window_frames / dt:.2f}" if dt > 0 else "0.00",
            "latency_ms_mean": f"{float(lat.mean()):.2f}",
            "latency_ms_max": f"{float(lat.max()):.2f}",
            "frames": str(s.frames), "dropped": str(s.dropped), "skipped": str(s.skipped),
            "no_subscriber": str(s.idle),
        }
        s.latency_ms, s.window_start, s.window_frames = [], now, 0
        return values

    def publish_stats(self) -> None:
        """Timer callback: FPS and latency since the last report, as DiagnosticArray."""
        a = self.api
        values = self.stats_values()
        status = a.DiagnosticStatus(
            level=a.DiagnosticStatus.OK,
            name=f"{NODE_NAME}: segmenter", message=f"{values['fps']} FPS",
            hardware_id=str(self.segmenter.backend),
            values=[a.KeyValue(key=k, value=v) for k, v in values.items()])
        self.stats_pub.publish(a.DiagnosticArray(header=make_header(
            a.types, self.node.get_clock().now().nanoseconds, ""),
                                                 status=[status]))


def _load_segmenter(model: str, profile: str | None) -> Any:
    from edgeseg.video.run import load_segmenter, pick_model

    p, backend, remote = pick_model(model)  # any --model: file suffix or triton://
    return load_segmenter(p, backend, profile, **remote)


def ros_args(overrides: dict[str, Any], params_file: str | None = None,
             extra: Sequence[str] = ()) -> list[str]:
    """``rclpy.init`` arguments: ``--ros-args [--params-file F] -p k:=v ...`` then ``extra``."""
    args = ["edgeseg", "--ros-args"]
    if params_file:
        args += ["--params-file", params_file]
    for key, value in overrides.items():
        if value is None or value == "":
            continue
        if key not in PARAMETERS:
            raise EdgesegError(f"unknown parameter {key!r} (expected {', '.join(PARAMETERS)})")
        args += ["-p", f"{key}:={value}"]
    return [*args, *extra]


def main(args: Sequence[str] | None = None) -> None:  # pragma: no cover - needs a ROS 2 install
    """Spin the node until Ctrl-C; ``args`` as ``rclpy.init`` takes them."""
    try:
        import rclpy
        from rclpy.executors import ExternalShutdownException
    except ImportError as e:
        raise MissingDependencyError(f"rclpy ({e.name or e})", RCLPY_HINT) from None
    api = load_rclpy_api()
    rclpy.init(args=list(args) if args is not None else None)
    node = rclpy.create_node(NODE_NAME)
    seg_node: SegmenterNode | None = None
    try:
        seg_node = SegmenterNode(node, api)
        seg_node.start()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if seg_node is not None:
            seg_node.stop()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
