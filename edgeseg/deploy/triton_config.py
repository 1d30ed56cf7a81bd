"""Triton model configuration (config.pbtxt) from plain dicts, and the tensors of an artifact.

:func:`to_pbtxt` writes protobuf text format without tritonclient (export needs no client);
the tests parse every config it writes into tritonclient's ModelConfig. :func:`onnx_io` and
:func:`engine_io` read the input/output tensors of an ONNX graph or an engine's sidecar.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseg.artifacts.files import META_KEY
from edgeseg.artifacts.meta import ModelMeta
from edgeseg.errors import EdgesegError

KINDS = ("KIND_CPU", "KIND_GPU")
LABELS_FILE = "labels.txt"
META_PARAM = META_KEY  # the model config parameter carrying the ModelMeta JSON

__all__ = ["KINDS", "LABELS_FILE", "META_PARAM", "Batching", "Enum", "TensorSpec", "engine_io",
           "labels_txt", "model_config", "split_batch",
           "onnx_io", "to_pbtxt"]

_ONNX_TO_TRITON = {1: "TYPE_FP32", 2: "TYPE_UINT8", 3: "TYPE_INT8", 6: "TYPE_INT32",
                   7: "TYPE_INT64", 10: "TYPE_FP16", 11: "TYPE_FP64", 16: "TYPE_BF16"}


class Enum(str):
    """A protobuf enum value: written unquoted (``kind: KIND_GPU``)."""


# ---------------------------------------------------------------------------------------------
# Protobuf text format


def _scalar(v: Any) -> str:
    if isinstance(v, Enum):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        escaped = v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    raise TypeError(f"no protobuf text for {type(v).__name__}")


def to_pbtxt(message: Mapping[str, Any], indent: int = 0) -> str:
    """A dict as protobuf text format: dict -> ``key { ... }``, list of dicts -> ``key [ {..} ]``,
    list of scalars -> ``key: [a, b]``, scalar -> ``key: v``. Map fields are lists of
    ``{"key": k, "value": v}``."""
    pad = "  " * indent
    lines: list[str] = []
    for key, value in message.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            lines += [f"{pad}{key} {{", to_pbtxt(value, indent + 1), f"{pad}}}"]
        elif isinstance(value, Sequence) and not isinstance(value, str):
            if value and all(isinstance(v, Mapping) for v in value):
                blocks = [f"{pad}  {{\n{to_pbtxt(v, indent + 2)}\n{pad}  }}" for v in value]
                lines.append(f"{pad}{key} [\n" + ",\n".join(blocks) + f"\n{pad}]")
            else:
                lines.append(f"{pad}{key}: [ {', '.join(_scalar(v) for v in value)} ]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return "\n".join(line for line in lines if line)


# ---------------------------------------------------------------------------------------------
# Tensors, batching, configs


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output as Triton declares it (dims without the batch dimension when
    the model batches; -1 for a variable dimension)."""

    name: str
    data_type: str  # TYPE_FP32, TYPE_UINT8, ...
    dims: tuple[int, ...]
    label_filename: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "data_type": Enum(self.data_type),
                             "dims": list(self.dims)}
        if self.label_filename:
            d["label_filename"] = self.label_filename
        return d


@dataclass(frozen=True)
class Batching:
    """max_batch_size, dynamic batching and instance_group of one model."""

    max_batch_size: int = 8
    preferred_batch_sizes: tuple[int, ...] = (4, 8)
    max_queue_delay_us: int = 2000
    instances: int = 1
    kind: str = "KIND_CPU"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise EdgesegError(f"instance kind: expected one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.max_batch_size < 0 or self.instances < 1 or self.max_queue_delay_us < 0:
            raise EdgesegError(
                f"batching: max_batch_size >= 0, instances >= 1 and queue delay >= 0 expected, "
                f"got {self.max_batch_size}, {self.instances}, {self.max_queue_delay_us}"
            )
        bad = [b for b in self.preferred_batch_sizes if not 1 <= b <= max(self.max_batch_size, 1)]
        if bad:
            raise EdgesegError(
                f"preferred batch size {bad[0]} is outside 1..max_batch_size ({self.max_batch_size})"
            )

    @classmethod
    def from_profile(cls, profile: Any, **overrides: Any) -> Batching:
        """Defaults, then the profile's ``serving`` section, then explicit overrides (not None)."""
        values: dict[str, Any] = {}
        serving = getattr(profile, "serving", None) if profile is not None else None
        if serving is not None:
            values.update(max_batch_size=serving.max_batch_size,
                          preferred_batch_sizes=tuple(serving.preferred_batch_sizes),
                          max_queue_delay_us=serving.max_queue_delay_us,
                          instances=serving.instances)
        if profile is not None and getattr(profile.device, "kind", "cpu") != "cpu":
            values["kind"] = "KIND_GPU"
        values.update({k: v for k, v in overrides.items() if v is not None})
        mbs = values.get("max_batch_size", cls.max_batch_size)
        if "preferred_batch_sizes" not in values:
            values["preferred_batch_sizes"] = tuple(b for b in cls.preferred_batch_sizes if b <= mbs)
        return cls(**values)

    def without_batching(self) -> Batching:
        return Batching(0, (), 0, self.instances, self.kind)


def labels_txt(meta: ModelMeta) -> str:
    """Triton's label file: class names, one per line, in train-id order."""
    for name in meta.classes:
        if "\n" in name:
            raise EdgesegError(f"class name {name!r} has a line break: it can't go in {LABELS_FILE}")
    return "".join(f"{name}\n" for name in meta.classes)


def model_config(
    name: str,
    *,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    batching: Batching,
    meta: ModelMeta,
    backend: str | None = None,
    platform: str | None = None,
    parameters: Mapping[str, str] | None = None,
    dynamic_batching: bool = True,
) -> dict[str, Any]:
    """A ModelConfig as a dict (see :func:`to_pbtxt`)."""
    params = {META_PARAM: json.dumps(meta.to_dict(), sort_keys=True), **(parameters or {})}
    cfg: dict[str, Any] = {"name": name}
    if platform:
        cfg["platform"] = platform
    if backend:
        cfg["backend"] = backend
    cfg["max_batch_size"] = batching.max_batch_size
    cfg["input"] = [t.to_dict() for t in inputs]
    cfg["output"] = [t.to_dict() for t in outputs]
    if platform != "ensemble":
        if dynamic_batching and batching.max_batch_size > 1:
            cfg["dynamic_batching"] = {
                "preferred_batch_size": list(batching.preferred_batch_sizes),
                "max_queue_delay_microseconds": batching.max_queue_delay_us,
            }
        cfg["instance_group"] = [{"count": batching.instances, "kind": Enum(batching.kind)}]
    cfg["parameters"] = [{"key": k, "value": {"string_value": v}} for k, v in params.items()]
    return cfg


def split_batch(dims: list[int], max_batch_size: int) -> tuple[int, ...]:
    """Full dims (batch first) -> Triton dims: without the batch when the model batches."""
    return tuple(dims[1:]) if max_batch_size > 0 else tuple(dims)


def onnx_io(path: str | Path) -> tuple[list[TensorSpec], list[TensorSpec], bool]:
    """Inputs, outputs (full dims, -1 for symbolic) and whether the batch dimension is dynamic."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def spec(v: Any) -> TensorSpec:
        t = v.type.tensor_type
        if t.elem_type not in _ONNX_TO_TRITON:
            raise EdgesegError(f"{Path(path).name}: tensor {v.name} has an element type "
                               f"({t.elem_type}) Triton has no TYPE_ for")
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        return TensorSpec(v.name, _ONNX_TO_TRITON[t.elem_type], tuple(dims))

    initializers = {i.name for i in model.graph.initializer}
    inputs = [spec(v) for v in model.graph.input if v.name not in initializers]
    outputs = [spec(v) for v in model.graph.output]
    if len(inputs) != 1:
        raise EdgesegError(f"{Path(path).name} has {len(inputs)} inputs; expected one image")
    return inputs, outputs, inputs[0].dims[0] == -1


def engine_io(sidecar: Any) -> tuple[list[TensorSpec], list[TensorSpec], int]:
    """Inputs, outputs (full dims) and the largest batch of a TensorRT engine, from its sidecar.

    The engine's input is ``input``; its outputs are those the ONNX declared (``logits`` fp32/fp16
    (N, C, H, W) or ``labels`` uint8 (N, H, W)); the batch range comes from the optimization
    profile (a static engine has batch 1).
    """
    model = ModelMeta.from_dict(sidecar.model)
    shape = list(sidecar.input_shape)
    profile = sidecar.profile or {}
    max_shape = list(profile.get("max", shape))
    batch_dynamic = bool(profile) and profile.get("min", shape)[0] != max_shape[0]
    in_shape = [-1 if batch_dynamic else shape[0]] + [
        -1 if profile and profile["min"][i] != max_shape[i] else shape[i] for i in (1, 2, 3)
    ]
    io_fp16 = model.extra.get("onnx_precision", "fp32") == "fp16"
    dtype = "TYPE_FP16" if io_fp16 else "TYPE_FP32"
    outs = model.extra.get("outputs") or ["logits"]
    outputs = []
    for name in outs:
        if name == "labels":
            outputs.append(TensorSpec(name, "TYPE_UINT8", (in_shape[0], in_shape[2], in_shape[3])))
        else:
            outputs.append(TensorSpec(name, dtype, (in_shape[0], len(model.classes), in_shape[2],
                                                    in_shape[3])))
    return [TensorSpec("input", dtype, tuple(in_shape))], outputs, max_shape[0] if batch_dynamic else 1


# ---------------------------------------------------------------------------------------------
# Repository writer
