"""sensor_msgs / vision_msgs <-> numpy, shared by the rclpy node and the bag source and sink.

Everything works on plain message objects with the ROS field names, so the same code serves
rosbags' typestore classes (dataclasses, ``data`` a numpy uint8 array) and rclpy's generated
classes (``data`` an ``array.array('B')``): a :class:`MessageTypes` names the classes and how a
byte buffer goes into a ``uint8[]`` field.

Conventions (DESIGN.md section 11, isaac_ros_image_segmentation, ros_deep_learning segnet):
``class_mask`` mono8 (pixel = train id, or Cityscapes label id), ``color_mask`` rgb8 (palette),
``overlay`` bgr8, ``confidence`` 32FC1 (max softmax probability), ``label_info``
vision_msgs/LabelInfo; every output keeps the input header (stamp, frame_id).

Only numpy is imported at module level; OpenCV loads on the first colour conversion.
"""

from __future__ import annotations

import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeseg.errors import EdgesegError

__all__ = [
    "DEFAULT_OUTPUTS",
    "IMAGE_ENCODINGS",
    "INPUT_ENCODINGS",
    "LABEL_INFO_MSGDEFS",
    "OUTPUTS",
    "MessageTypes",
    "OutputRenderer",
    "bgr_to_compressed",
    "bgr_to_image",
    "compressed_to_bgr",
    "header_stamp_ns",
    "image_to_bgr",
    "image_to_numpy",
    "label_info_msg",
    "make_header",
    "msg_to_bgr",
    "numpy_to_image",
    "rclpy_types",
    "rosbags_types",
    "rosbags_typestore",
    "softmax_confidence",
]

# encoding -> (channels, numpy dtype); yuv422 = UYVY (ROS' name), yuv422_yuy2 = YUYV, both
# 2 bytes per pixel, stored here as (H, W, 2) uint8.
IMAGE_ENCODINGS: dict[str, tuple[int, str]] = {
    "bgr8": (3, "u1"), "rgb8": (3, "u1"), "bgra8": (4, "u1"), "rgba8": (4, "u1"),
    "mono8": (1, "u1"), "8UC1": (1, "u1"), "yuv422": (2, "u1"), "yuv422_yuy2": (2, "u1"),
    "mono16": (1, "u2"), "32FC1": (1, "f4"),
}
_ALIASES = {"uyvy": "yuv422", "yuyv": "yuv422_yuy2", "yuy2": "yuv422_yuy2"}
# What a camera topic may carry into the network (image_to_bgr).
INPUT_ENCODINGS = ("bgr8", "rgb8", "bgra8", "rgba8", "mono8", "yuv422", "yuv422_yuy2")
COMPRESSED_FORMATS = ("jpeg", "png")

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
LABEL_INFO = "vision_msgs/msg/LabelInfo"
# Output name -> message type; topics are ~/<name> on the node, <ns>/<name> in a bag.
OUTPUTS: dict[str, str] = {"class_mask": IMAGE, "color_mask": IMAGE, "overlay": IMAGE,
                           "confidence": IMAGE, "label_info": LABEL_INFO}
DEFAULT_OUTPUTS = ("class_mask", "color_mask", "overlay", "label_info")

# vision_msgs (ROS 2 Humble, 4.x) definitions: not in rosbags' stores, registered from text.
LABEL_INFO_MSGDEFS = {
    "vision_msgs/msg/VisionClass": "uint16 class_id\nstring class_name\n",
    LABEL_INFO: "std_msgs/Header header\nvision_msgs/VisionClass[] class_map\nfloat32 threshold\n",
}


# --------------------------------------------------------------------------------------------
# Message classes


@dataclass(frozen=True)
class MessageTypes:
    """The message classes outputs are built from, and how bytes go into a ``uint8[]`` field."""

    Image: Any
    CompressedImage: Any
    Header: Any
    Time: Any
    LabelInfo: Any
    VisionClass: Any
    pack: Callable[[np.ndarray], Any]  # contiguous uint8 array -> the field's value
    ros1: bool = False  # ROS 1 std_msgs/Header has a seq field


def _pack_numpy(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


def _pack_array(a: np.ndarray) -> array.array:
    # array('B', bytes) copies once; a list or bytes would be checked element by element by
    # rclpy's generated setter.
    return array.array("B", np.ascontiguousarray(a).reshape(-1).view(np.uint8).tobytes())


def rosbags_typestore(ros1: bool = False) -> Any:
    """rosbags' Humble (or Noetic) typestore with vision_msgs LabelInfo registered."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_HUMBLE)
    for name, text in LABEL_INFO_MSGDEFS.items():
        store.register(get_types_from_msg(text, name))
    return store


def rosbags_types(store: Any | None = None, ros1: bool = False) -> MessageTypes:
    store = store if store is not None else rosbags_typestore(ros1)
    t = store.types
    return MessageTypes(t[IMAGE], t[COMPRESSED], t["std_msgs/msg/Header"],
                        t["builtin_interfaces/msg/Time"], t[LABEL_INFO],
                        t["vision_msgs/msg/VisionClass"], _pack_numpy, ros1)


def rclpy_types() -> MessageTypes:
    """rclpy's generated classes (from a sourced ROS 2 install)."""
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import Header
    from vision_msgs.msg import LabelInfo, VisionClass

    return MessageTypes(Image, CompressedImage, Header, Time, LabelInfo, VisionClass, _pack_array)


# --------------------------------------------------------------------------------------------
# Headers


def header_stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def make_header(types: MessageTypes, stamp_ns: int, frame_id: str) -> Any:
    sec, nsec = divmod(int(stamp_ns), 1_000_000_000)
    stamp = types.Time(sec=sec, nanosec=nsec)
    if types.ros1:
        return types.Header(seq=0, stamp=stamp, frame_id=frame_id)
    return types.Header(stamp=stamp, frame_id=frame_id)


# --------------------------------------------------------------------------------------------
# sensor_msgs/Image


def _encoding(name: str) -> str:
    enc = _ALIASES.get(name.lower(), name)
    if enc not in IMAGE_ENCODINGS:
        raise EdgesegError(f"unsupported image encoding {name!r} (expected one of "
                           f"{', '.join(INPUT_ENCODINGS)})")
    return enc


def image_to_numpy(msg: Any) -> np.ndarray:
    """An Image's pixels as (H, W) or (H, W, C) in its own encoding (yuv422*: (H, W, 2)),
    honouring ``step`` (row padding) and ``is_bigendian``; a view of the buffer where possible."""
    enc = _encoding(msg.encoding)
    ch, dt = IMAGE_ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    dtype = np.dtype(dt).newbyteorder(">" if msg.is_bigendian else "<")
    row = w * ch * dtype.itemsize
    buf = np.frombuffer(msg.data, np.uint8) if not isinstance(msg.data, np.ndarray) else msg.data
    if step < row or buf.size < step * (h - 1) + row:
        raise EdgesegError(f"{enc} image {w}x{h}: step {step} and {buf.size} data bytes do not "
                           f"hold {row}-byte rows")
    rows = np.lib.stride_tricks.as_strided(buf, (h, row), (step, 1)) if h else buf[:0].reshape(0, row)
    out = rows.view(dtype) if row % dtype.itemsize == 0 and step % dtype.itemsize == 0 \
        else np.ascontiguousarray(rows).view(dtype)
    if not out.dtype.isnative:
        out = out.astype(out.dtype.newbyteorder("="))
    return out.reshape(h, w) if ch == 1 else out.reshape(h, w, ch)


def _yuv_to_bgr(yuv: np.ndarray, enc: str) -> np.ndarray:
    import cv2

    code = cv2.COLOR_YUV2BGR_UYVY if enc == "yuv422" else cv2.COLOR_YUV2BGR_YUY2
    h, w = yuv.shape[:2]
    if w % 2:  # the last pixel's pair is cut short: borrow the previous pair's V, repeat its Y
        flat = yuv.reshape(h, 2 * w)
        uyvy = enc == "yuv422"
        v = flat[:, 2 * w - (4 if uyvy else 3)] if w > 1 else np.full(h, 128, np.uint8)
        y = flat[:, 2 * w - (1 if uyvy else 2)]
        extra = np.stack([v, y] if uyvy else [y, v], axis=1)
        yuv = np.concatenate([flat, extra], axis=1).reshape(h, w + 1, 2)
        return cv2.cvtColor(np.ascontiguousarray(yuv), code)[:, :w]
    return cv2.cvtColor(np.ascontiguousarray(yuv), code)


def _bgr_to_yuv(bgr: np.ndarray, enc: str) -> np.ndarray:
    import cv2

    code = cv2.COLOR_BGR2YUV_UYVY if enc == "yuv422" else cv2.COLOR_BGR2YUV_YUY2
    h, w = bgr.shape[:2]
    if w % 2:  # pad a copy of the last column, encode, keep the first 2*w bytes of each row
        padded = np.concatenate([bgr, bgr[:, -1:]], axis=1)
        return cv2.cvtColor(padded, code).reshape(h, 2 * (w + 1))[:, : 2 * w].reshape(h, w, 2)
    return cv2.cvtColor(np.ascontiguousarray(bgr), code).reshape(h, w, 2)


def image_to_bgr(msg: Any) -> np.ndarray:
    """An Image of a camera encoding (:data:`INPUT_ENCODINGS`) -> BGR uint8 (H, W, 3)."""
    import cv2

    enc = _encoding(msg.encoding)
    if enc not in INPUT_ENCODINGS:
        raise EdgesegError(f"unsupported camera image encoding {msg.encoding!r} (expected one of "
                           f"{', '.join(INPUT_ENCODINGS)})")
    px = image_to_numpy(msg)
    if enc == "bgr8":
        return np.ascontiguousarray(px)
    if enc in ("yuv422", "yuv422_yuy2"):
        return _yuv_to_bgr(px, enc)
    code = {"rgb8": cv2.COLOR_RGB2BGR, "bgra8": cv2.COLOR_BGRA2BGR, "rgba8": cv2.COLOR_RGBA2BGR,
            "mono8": cv2.COLOR_GRAY2BGR}[enc]
    return cv2.cvtColor(np.ascontiguousarray(px), code)


def numpy_to_image(types: MessageTypes, px: np.ndarray, encoding: str, header: Any,
                   step: int | None = None) -> Any:
    """Pixels already in ``encoding``'s layout -> Image (little-endian; ``step`` pads rows)."""
    enc = _encoding(encoding)
    ch, dt = IMAGE_ENCODINGS[enc]
    px = np.ascontiguousarray(px, np.dtype(dt).newbyteorder("<"))
    h, w = px.shape[:2]
    if (px.ndim == 2 and ch != 1) or (px.ndim == 3 and px.shape[2] != ch) or px.ndim not in (2, 3):
        raise EdgesegError(f"{enc} needs {ch} channel(s), got an array of shape {px.shape}")
    row = w * ch * px.itemsize
    step = row if step is None else int(step)
    if step < row:
        raise EdgesegError(f"step {step} is shorter than a {row}-byte {enc} row")
    raw = px.reshape(h, row // px.itemsize).view(np.uint8).reshape(h, row)
    if step != row:
        padded = np.zeros((h, step), np.uint8)
        padded[:, :row] = raw
        raw = padded
    return types.Image(header=header, height=h, width=w, encoding=enc, is_bigendian=0,
                       step=step, data=types.pack(raw))


def bgr_to_image(types: MessageTypes, bgr: np.ndarray, encoding: str, header: Any,
                 step: int | None = None) -> Any:
    """A BGR uint8 frame -> Image in a camera encoding (the inverse of :func:`image_to_bgr`)."""
    import cv2

    enc = _encoding(encoding)
    if enc in ("yuv422", "yuv422_yuy2"):
        px = _bgr_to_yuv(bgr, enc)
    elif enc == "bgr8":
        px = bgr
    elif enc in ("mono8", "8UC1"):
        px = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    elif enc in ("rgb8", "bgra8", "rgba8"):
        px = cv2.cvtColor(bgr, {"rgb8": cv2.COLOR_BGR2RGB, "bgra8": cv2.COLOR_BGR2BGRA,
                                "rgba8": cv2.COLOR_BGR2RGBA}[enc])
    else:
        raise EdgesegError(f"cannot encode a camera frame as {encoding!r}")
    return numpy_to_image(types, px, enc, header, step)


# --------------------------------------------------------------------------------------------
# sensor_msgs/CompressedImage


def _compressed_kind(fmt: str) -> str:
    low = fmt.lower()
    if "jpeg" in low or "jpg" in low:
        return "jpeg"
    if "png" in low:
        return "png"
    raise EdgesegError(f"unsupported CompressedImage format {fmt!r} (expected jpeg or png)")


def compressed_to_bgr(msg: Any) -> np.ndarray | None:
    """A jpeg/png CompressedImage -> BGR uint8; None when the payload does not decode."""
    import cv2

    _compressed_kind(msg.format)
    buf = msg.data if isinstance(msg.data, np.ndarray) else np.frombuffer(msg.data, np.uint8)
    return cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None


def bgr_to_compressed(types: MessageTypes, bgr: np.ndarray, fmt: str, header: Any,
                      quality: int = 90) -> Any:
    """BGR -> CompressedImage, format named as image_transport's compressed plugin does."""
    import cv2

    kind = _compressed_kind(fmt)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if kind == "jpeg" else []
    ok, buf = cv2.imencode(".jpg" if kind == "jpeg" else ".png", bgr, params)
    if not ok:
        raise EdgesegError(f"could not encode a {bgr.shape[1]}x{bgr.shape[0]} frame as {kind}")
    return types.CompressedImage(header=header, format=f"bgr8; {kind} compressed bgr8",
                                 data=types.pack(buf))


def msg_to_bgr(msg: Any) -> np.ndarray | None:
    """Image or CompressedImage -> BGR (None: a compressed payload that does not decode)."""
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        return compressed_to_bgr(msg)
    return image_to_bgr(msg)


# --------------------------------------------------------------------------------------------
# Outputs


def softmax_confidence(logits: np.ndarray) -> np.ndarray:
    """(C, H, W) logits -> (H, W) float32 max softmax probability, ``1 / sum(exp(l - max))``."""
    x = np.asarray(logits, np.float32)
    m = x.max(axis=0)
    return (1.0 / np.exp(x - m).sum(axis=0)).astype(np.float32)


def label_info_msg(types: MessageTypes, classes: Sequence[str], header: Any,
                   threshold: float = 0.0, label_ids: bool = False) -> Any:
    """vision_msgs/LabelInfo: class_map[i] = (id, name), ids = train ids or Cityscapes label ids."""
    ids = list(range(len(classes)))
    if label_ids:
        from edgeseg.data.cityscapes import TRAIN_ID_TO_ID

        ids = [int(TRAIN_ID_TO_ID[i]) for i in ids]
    class_map = [types.VisionClass(class_id=i, class_name=str(n)) for i, n in zip(ids, classes)]
    return types.LabelInfo(header=header, class_map=class_map, threshold=float(threshold))


def parse_outputs(value: str | Sequence[str], what: str = "outputs") -> tuple[str, ...]:
    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    bad = [n for n in names if n not in OUTPUTS]
    if bad or not names:
        raise EdgesegError(f"{what}: expected a comma list of {', '.join(OUTPUTS)}, got "
                           f"{','.join(names) or 'nothing'}")
    return tuple(dict.fromkeys(names))


class OutputRenderer:
    """Builds the output messages of one frame, for the node and the bag sink alike.

    Args:
        types: the message classes.
        classes, palette: the model's class names and RGB colours.
        alpha: mask weight in the overlay.
        label_ids: class_mask pixels (and LabelInfo ids) as Cityscapes label ids, not train ids
            (needs the 19-class Cityscapes model).
    """

    def __init__(self, types: MessageTypes, classes: Sequence[str],
                 palette: Sequence[Sequence[int]], *, alpha: float = 0.5,
                 label_ids: bool = False) -> None:
        from edgeseg.video.overlay import palette_lut

        if not 0.0 <= alpha <= 1.0:
            raise EdgesegError(f"alpha: expected a value in [0, 1], got {alpha}")
        if label_ids:
            from edgeseg.data.cityscapes import CLASSES

            if list(classes) != list(CLASSES):
                raise EdgesegError(f"Cityscapes label ids need the 19-class Cityscapes model; "
                                   f"this one has {len(classes)} classes: use train ids")
        self.types, self.classes, self.alpha, self.label_ids = types, list(classes), alpha, label_ids
        self.lut_bgr = palette_lut(palette)
        self.lut_rgb = np.ascontiguousarray(self.lut_bgr[:, :, ::-1])

    def label_info(self, header: Any) -> Any:
        return label_info_msg(self.types, self.classes, header, label_ids=self.label_ids)

    def render(self, outputs: Sequence[str], header: Any, bgr: np.ndarray, labels: np.ndarray,
               confidence: np.ndarray | None = None) -> dict[str, Any]:
        """``{output: message}`` for the image outputs asked for (label_info is separate;
        confidence only when given). Masks keep ``labels``' size; the overlay is drawn at it."""
        from edgeseg.video.overlay import blend, colorize

        t = self.types
        out: dict[str, Any] = {}
        if "class_mask" in outputs:
            mask = labels
            if self.label_ids:
                from edgeseg.data.cityscapes import train_ids_to_ids

                mask = train_ids_to_ids(labels)
            out["class_mask"] = numpy_to_image(t, mask, "mono8", header)
        color_bgr = None
        if "color_mask" in outputs:
            out["color_mask"] = numpy_to_image(t, colorize(labels, self.lut_rgb), "rgb8", header)
        if "overlay" in outputs:
            import cv2

            img = bgr
            if img.shape[:2] != labels.shape[:2]:
                img = cv2.resize(img, (labels.shape[1], labels.shape[0]), interpolation=cv2.INTER_AREA)
            color_bgr = colorize(labels, self.lut_bgr)
            out["overlay"] = numpy_to_image(t, blend(img, color_bgr, self.alpha), "bgr8", header)
        if "confidence" in outputs and confidence is not None:
            out["confidence"] = numpy_to_image(t, confidence, "32FC1", header)
        return out


def output_types(outputs: Sequence[str]) -> Mapping[str, str]:
    return {name: OUTPUTS[name] for name in outputs}
