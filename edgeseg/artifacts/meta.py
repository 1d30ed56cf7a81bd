"""ModelMeta: what every artifact (checkpoint, ONNX, engine sidecar) carries about its model.

The lowest rung of the artifact layer: plain data, no torch, onnx or TensorRT.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["ModelMeta"]


@dataclass
class ModelMeta:
    """What every artifact (checkpoint, ONNX, engine sidecar) carries about its model."""

    variant: str
    classes: list[str]
    palette: list[tuple[int, int, int]]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_hw: tuple[int, int]
    precision: str = "fp32"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelMeta:
        return cls(
            variant=str(d["variant"]),
            classes=list(d["classes"]),
            palette=[tuple(int(v) for v in c) for c in d["palette"]],  # type: ignore[misc]
            mean=tuple(float(v) for v in d["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in d["std"]),  # type: ignore[arg-type]
            input_hw=(int(d["input_hw"][0]), int(d["input_hw"][1])),
            precision=str(d.get("precision", "fp32")),
            extra=dict(d.get("extra", {})),
        )
