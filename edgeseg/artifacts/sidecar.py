"""The JSON sidecar that makes a TensorRT engine self-describing (``model.engine.json``).

A serialized engine only runs on the GPU architecture and the TensorRT release that built it, and
it carries none of the model's metadata. The sidecar records both, so ``run`` and ``bench`` need
no repeated flags and refuse a foreign engine with one line instead of a deserialization crash.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeseg import __version__
from edgeseg.artifacts.meta import ModelMeta
from edgeseg.artifacts.trt_version import parse_trt_version
from edgeseg.atomic import atomic_write_text
from edgeseg.errors import EdgesegError

__all__ = [
    "DLA_CORES",
    "EngineSidecar",
    "check_dla",
    "check_sidecar",
    "file_sha256",
    "meta_from_sidecar",
    "normalise_compute_capability",
    "sidecar_path",
]

SCHEMA = 1

# DLA cores per Jetson module (data sheets); the message of check_dla names them.
DLA_CORES = {
    "Jetson AGX Orin": 2, "Jetson Orin NX 16GB": 2, "Jetson Orin NX 8GB": 1,
    "Jetson Orin Nano": 0, "Jetson AGX Xavier": 2, "Jetson Xavier NX": 2,
}


def sidecar_path(engine_path: str | Path) -> Path:
    """``model.engine`` -> ``model.engine.json``."""
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


def file_sha256(path: str | Path, chunk_size: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            h.update(block)
    return h.hexdigest()


def normalise_compute_capability(cc: str | tuple[int, int] | list[int]) -> str:
    """``(8, 7)``, ``'8.7'``, ``'sm_87'``, ``'87'`` -> ``'8.7'``."""
    if isinstance(cc, (tuple, list)):
        if len(cc) != 2:
            raise EdgesegError(f"compute capability needs (major, minor), got {cc!r}")
        return f"{int(cc[0])}.{int(cc[1])}"
    text = str(cc).strip().lower().removeprefix("sm_").removeprefix("sm")
    if "." in text:
        major, _, minor = text.partition(".")
    elif text.isdigit() and len(text) >= 2:
        major, minor = text[:-1], text[-1]
    else:
        raise EdgesegError(f"not a compute capability: {cc!r} (expected e.g. 8.7 or sm_87)")
    if not (major.isdigit() and minor.isdigit()):
        raise EdgesegError(f"not a compute capability: {cc!r} (expected e.g. 8.7 or sm_87)")
    return f"{int(major)}.{int(minor)}"


def _sm(cc: str) -> str:
    return "sm_" + normalise_compute_capability(cc).replace(".", "")


@dataclass
class EngineSidecar:
    """Facts about one engine file.

    Args:
        trt_version: TensorRT that built it (``10.3.0.30``).
        gpu_name, compute_capability: the build GPU (``Orin``, ``8.7``).
        precision: ``fp32`` / ``fp16`` / ``int8``.
        input_shape: the input's shape (the optimization profile's opt shape if dynamic).
        profile: ``{"min": [...], "opt": [...], "max": [...]}`` of the input when any dimension
            is dynamic, else None.
        onnx_sha256: hash of the ONNX it was built from (empty for torch2trt engines).
        edgeseg_version: producer version.
        model: the model metadata (``ModelMeta.to_dict()`` layout) carried over from the ONNX.
        dla_core: DLA core it runs on, None for GPU.
        builder: ``onnx`` (ONNX parser) or ``torch2trt``.
        build_s: seconds the TensorRT build took (None when not measured).
        dla_placement: for DLA engines, ``{"dla": n, "gpu": m, "gpu_layers": [...]}`` from
            the builder's per-layer ``can_run_on_DLA``.
        cache_facts: for an engine in the engine cache, the further facts it is keyed on.
    """

    trt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    input_shape: list[int]
    profile: dict[str, list[int]] | None = None
    onnx_sha256: str = ""
    edgeseg_version: str = __version__
    model: dict[str, Any] = field(default_factory=dict)
    dla_core: int | None = None
    builder: str = "onnx"
    build_s: float | None = None
    dla_placement: dict[str, Any] | None = None
    cache_facts: dict[str, Any] | None = None  # engine_cache.build_facts() of a cached engine
    schema: int = SCHEMA

    def __post_init__(self) -> None:
        self.compute_capability = normalise_compute_capability(self.compute_capability)
        self.input_shape = [int(v) for v in self.input_shape]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "sidecar") -> EngineSidecar:
        required = ("trt_version", "gpu_name", "compute_capability", "precision", "input_shape")
        missing = [k for k in required if k not in d]
        if missing:
            raise EdgesegError(f"{source} lacks {', '.join(missing)}: rebuild the engine")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    def write(self, engine_path: str | Path) -> Path:
        """Write ``<engine>.json`` next to the engine; returns its path."""
        path = sidecar_path(engine_path)
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def read(cls, engine_path: str | Path) -> EngineSidecar:
        path = sidecar_path(engine_path)
        if not path.is_file():
            raise EdgesegError(
                f"{path} not found: an engine without its sidecar can't be checked against this "
                "machine; rebuild it with `edgeseg export --format engine ...`"
            )
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise EdgesegError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(data, dict):
            raise EdgesegError(f"{path} should hold a JSON object")
        return cls.from_dict(data, source=str(path))


def check_dla(sidecar: EngineSidecar, device_dla_cores: int, device: str = "this device") -> None:
    """Refuse a DLA engine on a device without that DLA core (one line).

    An AGX Orin DLA engine passes the sm_87 check on an Orin Nano, which has no DLA, and would
    then fail inside TensorRT's deserializer.
    """
    core = sidecar.dla_core
    if core is None:
        return
    if device_dla_cores <= core:
        have = "no DLA" if device_dla_cores <= 0 else f"{device_dla_cores} DLA core(s)"
        raise EdgesegError(
            f"engine was built for DLA core {core} (on {sidecar.gpu_name}); {device} has {have} "
            "(AGX Orin / Orin NX 16GB / Xavier: 2, Orin NX 8GB: 1, Orin Nano: 0): rebuild it "
            "without --dla-core, or on the target"
        )


def check_sidecar(
    sidecar: EngineSidecar,
    current_gpu: str,
    current_cc: str | tuple[int, int],
    current_trt: str,
    dla_cores: int | None = None,
) -> None:
    """Refuse an engine built for another GPU architecture or TensorRT release, or for a DLA
    core this device lacks (``dla_cores``: the device's count; None skips that check).

    A different compute capability or TensorRT major.minor.patch raises EdgesegError (one line
    naming both sides); the same architecture under another device name (Orin NX vs Orin Nano)
    only warns, as TensorRT itself does.
    """
    cc = normalise_compute_capability(current_cc)
    built_trt, here_trt = parse_trt_version(sidecar.trt_version), parse_trt_version(current_trt)
    if sidecar.compute_capability != cc or not built_trt.same_release(here_trt):
        raise EdgesegError(
            f"engine built for {sidecar.gpu_name} ({_sm(sidecar.compute_capability)}) with "
            f"TensorRT {built_trt}; this machine has {current_gpu} ({_sm(cc)}) / TensorRT "
            f"{here_trt}: rebuild it on the target with `edgeseg export --format engine ...`"
        )
    if dla_cores is not None:
        check_dla(sidecar, dla_cores, current_gpu)
    if sidecar.gpu_name != current_gpu:
        warnings.warn(
            f"engine built on {sidecar.gpu_name}, running on {current_gpu} (same {_sm(cc)}): "
            "it works, but tactics were timed on the other device",
            stacklevel=2,
        )


def meta_from_sidecar(sidecar: EngineSidecar) -> ModelMeta:
    """The model metadata an engine carries; precision and input size from the engine itself."""
    d = dict(sidecar.model)
    d.setdefault("input_hw", list(sidecar.input_shape[-2:]))
    d["precision"] = sidecar.precision
    try:
        return ModelMeta.from_dict(d)
    except (KeyError, TypeError, ValueError) as e:
        raise EdgesegError(
            f"engine sidecar has no usable model metadata (missing {e}): rebuild the engine from "
            "an ONNX written by `edgeseg export`"
        ) from None
