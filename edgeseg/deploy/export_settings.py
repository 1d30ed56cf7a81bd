"""What one ``edgeseg export`` request asks for, typed.

:class:`ExportSettings` is what every builder of the formats table receives (it replaced a
``dict[str, Any]``); :data:`OPTIONS` names the flag of every option that only some formats use.
Each row of :mod:`edgeseg.deploy.formats` lists the options it takes, and
``ExportFormat.check_options`` refuses the others before any model loads, naming the formats
where the flag does something (``--source goes with --format deepstream, not onnx``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULTS", "OPTIONS", "ExportSettings", "FormatOption", "given_options"]


@dataclass(frozen=True)
class ExportSettings:
    """One export request, resolved (sizes and precision from flag > profile > artifact)."""

    height: int | None = None
    width: int | None = None
    precision: str = "fp32"
    dcn: str | None = None  # None: native, or portable where the TensorRT parser needs it
    dynamic: bool = False
    argmax: bool = False
    opset: int = 19
    profile: Any = None  # a loaded edgeseg.profiles.Profile
    seed: int = 0
    build_progress: Callable[[str, int, int], None] | None = None
    # onnx
    normalize_in_graph: bool = False
    # engine / torch2trt INT8 (num_images: the profile's calibration count when None)
    images: str | None = None
    calibration_cache: str | None = None
    num_images: int | None = None
    # triton
    triton_pipeline: bool = False
    triton_form: str | None = None
    triton_name: str = "desanet"
    triton_kind: str | None = None
    max_batch_size: int | None = None
    # deepstream
    sources: tuple[str, ...] = ()
    plugin_lib: str | None = None
    segmentation_threshold: float = 0.0
    batch_size: int | None = None
    # filled by export() before the model loads (engine formats): the TensorRT build plan, the
    # INT8 route and what the ONNX --model holds
    plan: Any = None
    int8: Any = None
    onnx_info: Mapping[str, Any] | None = field(default=None, repr=False)

    @classmethod
    def of(cls, value: ExportSettings | Mapping[str, Any]) -> ExportSettings:
        """The settings a builder was given: as is, or from a mapping of field names (the
        builders' older dict form, kept for Python callers); an unknown key is an error."""
        if isinstance(value, ExportSettings):
            return value
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise TypeError(f"unknown export settings: {', '.join(unknown)}")
        data = dict(value)
        if "sources" in data:
            data["sources"] = tuple(data["sources"] or ())
        if data.get("precision") is None:
            data.pop("precision", None)
        return cls(**data)

    @property
    def calibration_images(self) -> int:
        """How many ``images`` TensorRT / torch2trt calibrate on."""
        if self.num_images is not None:
            return self.num_images
        from edgeseg.deploy.int8 import DEFAULT_CALIBRATION_IMAGES

        return int(DEFAULT_CALIBRATION_IMAGES)

    def but(self, **changes: Any) -> ExportSettings:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class FormatOption:
    """An option only some formats use (the rows of :mod:`edgeseg.deploy.formats` name which):
    its flag, and a hint for the formats that do not take it."""

    flag: str
    hint: str = ""


OPTIONS: dict[str, FormatOption] = {
    "normalize_in_graph": FormatOption(
        "--normalize-in-graph", "--format deepstream always folds the normalisation into its ONNX"),
    "dynamic": FormatOption(
        "--dynamic", "torch2trt engines have a static shape; triton and deepstream set the batch"),
    "argmax": FormatOption(
        "--argmax", "torch2trt engines output logits; nvinfer reads the class scores"),
    "images": FormatOption("--images", "an INT8 ONNX is written by `edgeseg calibrate`"),
    "calibration_cache": FormatOption("--calibration-cache"),
    "num_images": FormatOption("--calib-images"),
    "triton_pipeline": FormatOption("--triton-pipeline"),
    "triton_form": FormatOption("--triton-form"),
    "triton_name": FormatOption("--triton-name"),
    "max_batch_size": FormatOption("--max-batch-size"),
    "sources": FormatOption("--source"),
    "plugin_lib": FormatOption("--plugin-lib"),
    "segmentation_threshold": FormatOption("--segmentation-threshold"),
}

DEFAULTS = ExportSettings()


def given_options(settings: ExportSettings) -> list[str]:
    """The format-specific options ``settings`` sets to something other than the default."""
    return [name for name in OPTIONS if getattr(settings, name) != getattr(DEFAULTS, name)]
