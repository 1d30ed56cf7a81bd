"""The search space of `edgeseg tune`: configurations, the size ladder and the ``--space`` syntax.

A :class:`TuneConfig` is one point of the space: backend, precision, input size, deformable-conv
form, onnxruntime threads, and the backend options that are configuration entries only
(TensorRT: DLA core, CUDA graphs, builder optimization level; torch: channels_last). The default
space comes from the profile (:func:`default_space`); ``--space`` replaces any axis, e.g.
``size=256x512,384x768;precision=fp32,int8;threads=1,2`` (:func:`parse_space`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass
from typing import Any

from edgeseg.errors import EdgesegError
from edgeseg.precision import PRECISIONS
from edgeseg.sizes import parse_hw

__all__ = [
    "AXES",
    "LADDER",
    "Space",
    "TuneConfig",
    "default_space",
    "parse_space",
    "size_ladder",
]

# Fractions of the reference (full) size tried by default: the paper's 1024x2048 -> 256x512.
LADDER = (1.0, 0.75, 0.5, 0.375, 0.25)
BACKENDS = ("onnxruntime", "tensorrt", "torch")
DCN_FORMS = ("native", "portable")
ON_OFF = ("on", "off")

# --space key -> what it holds (the one-line error lists these)
AXES: dict[str, str] = {
    "backend": "onnxruntime, tensorrt, torch",
    "size": "HxW sizes, sides multiples of 32",
    "precision": "fp32, fp16, int8",
    "dcn": "native (ONNX DeformConv), portable (GridSample)",
    "threads": "onnxruntime intra-op threads",
    "dla": "gpu or a DLA core number (TensorRT)",
    "cuda_graphs": "on, off (TensorRT)",
    "opt_level": "TensorRT builder optimization level 0..5",
    "channels_last": "on, off (torch)",
}


@dataclass(frozen=True, order=True)
class TuneConfig:
    """One configuration; backend options that do not apply to ``backend`` are None."""

    backend: str
    precision: str
    height: int
    width: int
    dcn: str = "native"
    threads: int | None = None  # onnxruntime intra-op threads
    dla: str | None = None  # TensorRT: "gpu" or a DLA core number
    cuda_graphs: str | None = None  # TensorRT
    opt_level: int | None = None  # TensorRT builder optimization level
    channels_last: str | None = None  # torch

    @property
    def hw(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def label(self) -> str:
        """Short and unique, e.g. ``int8 256x512 native 2t`` (backend named unless
        onnxruntime)."""
        parts = [] if self.backend == "onnxruntime" else [self.backend]
        parts += [self.precision, f"{self.height}x{self.width}", self.dcn]
        if self.threads is not None:
            parts.append(f"{self.threads}t")
        for k in ("dla", "cuda_graphs", "opt_level", "channels_last"):
            v = getattr(self, k)
            if v is not None:
                parts.append(f"{k}={v}")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TuneConfig:
        return cls(**d)

    def key(self, context: str = "") -> str:
        """A stable hash of the configuration (and of what it is measured against)."""
        text = json.dumps({"config": self.to_dict(), "context": context}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def artifact_key(self) -> tuple[str, str, int, int]:
        """What the built model depends on (threads and session options do not change it)."""
        return (self.precision, self.dcn, self.height, self.width)


def size_ladder(height: int, width: int, fractions: tuple[float, ...] = LADDER) -> list[tuple[int, int]]:
    """Sizes at ``fractions`` of ``height x width``: height a multiple of 32, width the
    multiple of 32 nearest the aspect ratio; largest first, no duplicates, at least 32."""
    aspect = width / height
    out: list[tuple[int, int]] = []
    for f in fractions:
        h = max(32, round(height * f / 32) * 32)
        w = max(32, round(h * aspect / 32) * 32)
        if (h, w) not in out:
            out.append((h, w))
    return sorted(out, key=lambda hw: -hw[0] * hw[1])


@dataclass
class Space:
    """Values per axis; :meth:`configs` is their product (options only on their backend)."""

    axes: dict[str, list[Any]]

    def configs(self) -> list[TuneConfig]:
        a = self.axes
        out: list[TuneConfig] = []
        for backend in a["backend"]:
            trt = backend == "tensorrt"
            for (h, w), prec, dcn in itertools.product(a["size"], a["precision"], a["dcn"]):
                extra = itertools.product(
                    a["threads"] if backend == "onnxruntime" else [None],
                    a["dla"] if trt else [None],
                    a["cuda_graphs"] if trt else [None],
                    a["opt_level"] if trt else [None],
                    a["channels_last"] if backend == "torch" else [None],
                )
                for threads, dla, graphs, opt, cl in extra:
                    out.append(TuneConfig(backend, prec, h, w, dcn, threads, dla, graphs, opt, cl))
        return list(dict.fromkeys(out))

    def describe(self) -> dict[str, list[Any]]:
        return {k: [f"{v[0]}x{v[1]}" if k == "size" else v for v in vals]
                for k, vals in self.axes.items()}


def default_space(profile: Any, reference_hw: tuple[int, int], cores: int,
                  tensorrt: bool = False) -> Space:
    """The profile's space: the size ladder below ``reference_hw``; fp32 and int8 on
    onnxruntime (its CPU kernels have no fast fp16); both deformable-conv forms; 1 thread and
    every physical core. A GPU profile on a machine with TensorRT adds the TensorRT options
    (DLA core vs GPU where the device has DLAs, CUDA graphs, builder optimization level)."""
    threads = sorted({1, max(1, cores)})
    backends = ["onnxruntime"]
    dla: list[Any] = ["gpu"]
    if tensorrt and profile is not None and profile.device.kind != "cpu":
        backends.append("tensorrt")
        dla += [str(i) for i in range(profile.device.dla_cores)]
    precisions = ["fp32", "int8"] + (["fp16"] if "tensorrt" in backends else [])
    return Space({
        "backend": backends,
        "size": size_ladder(*reference_hw),
        "precision": precisions,
        "dcn": list(DCN_FORMS),
        "threads": threads,
        "dla": dla,
        "cuda_graphs": ["off", "on"],
        "opt_level": [3, 5],
        "channels_last": ["off"],
    })


def _enum(key: str, values: list[str], allowed: tuple[str, ...]) -> list[Any]:
    for v in values:
        if v not in allowed:
            raise EdgesegError(f"--space {key}: unknown value '{v}' (expected {', '.join(allowed)})")
    return values


def _ints(key: str, values: list[str], lo: int, hi: int) -> list[int]:
    out = []
    for v in values:
        try:
            n = int(v)
        except ValueError:
            raise EdgesegError(f"--space {key}: expected integers, got '{v}'") from None
        if not lo <= n <= hi:
            raise EdgesegError(f"--space {key}: {n} is outside {lo}..{hi}")
        out.append(n)
    return out


def parse_space(spec: str | None, base: Space) -> Space:
    """``key=v1,v2;key=...`` over ``base``: each given key replaces that axis.

    Unknown keys and bad values are one-line EdgesegErrors naming the key.
    """
    axes = {k: list(v) for k, v in base.axes.items()}
    if not spec or not spec.strip():
        return Space(axes)
    seen: set[str] = set()
    for part in spec.split(";"):
        part = part.strip()
        if not part:
            continue
        key, eq, text = part.partition("=")
        key = key.strip().replace("-", "_")
        if not eq:
            raise EdgesegError(f"--space: expected key=value[,value...], got '{part}'")
        if key not in AXES:
            raise EdgesegError(f"--space: unknown key '{key}' (expected one of {', '.join(AXES)})")
        if key in seen:
            raise EdgesegError(f"--space: key '{key}' is given twice")
        seen.add(key)
        values = [v.strip() for v in text.split(",") if v.strip()]
        if not values:
            raise EdgesegError(f"--space {key}: no values")
        if key == "size":
            sizes = [parse_hw(v, f"--space size {v}", minimum=32) for v in values]
            for h, w in sizes:
                if h % 32 or w % 32:
                    raise EdgesegError(f"--space size: {h}x{w} has a side that is not a "
                                       "multiple of 32 (the network downsamples 32x)")
            axes[key] = list(dict.fromkeys(sizes))
        elif key == "backend":
            axes[key] = _enum(key, values, BACKENDS)
        elif key == "precision":
            axes[key] = _enum(key, values, PRECISIONS)
        elif key == "dcn":
            axes[key] = _enum(key, values, DCN_FORMS)
        elif key in ("cuda_graphs", "channels_last"):
            axes[key] = _enum(key, values, ON_OFF)
        elif key == "threads":
            axes[key] = _ints(key, values, 1, 1024)
        elif key == "opt_level":
            axes[key] = _ints(key, values, 0, 5)
        elif key == "dla":
            for v in values:
                if v != "gpu" and not v.isdigit():
                    raise EdgesegError(f"--space dla: expected gpu or a core number, got '{v}'")
            axes[key] = values
    return Space(axes)
