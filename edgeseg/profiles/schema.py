"""The typed profile: device facts and deployment settings as frozen dataclasses, the names
they allow, and building a :class:`Profile` from a validated mapping.

Checking a YAML-shaped mapping (one-line errors naming the key path and what was expected) is
:mod:`edgeseg.profiles.validate`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseg.errors import EdgesegError
from edgeseg.precision import PRECISIONS

__all__ = [
    "BACKENDS",
    "DEVICE_KINDS",
    "DLA_PRECISIONS",
    "ENV_PROFILES_DIR",
    "GPU_ARCHS",
    "PRECISIONS",
    "SECTIONS",
    "BenchSettings",
    "CalibrationSettings",
    "DeploySettings",
    "DeviceSpec",
    "PowerSettings",
    "Profile",
    "ProfileWarning",
    "ServingSettings",
    "build_profile",
    "display_path",
]

ENV_PROFILES_DIR = "EDGESEG_PROFILES_DIR"

BACKENDS = ("tensorrt", "onnxruntime", "torch")
DEVICE_KINDS = ("jetson", "discrete", "cpu")
GPU_ARCHS = ("maxwell", "pascal", "volta", "turing", "ampere", "ada", "hopper", "blackwell")
DLA_PRECISIONS = ("fp16", "int8")  # the DLA has no fp32


class ProfileWarning(UserWarning):
    """Auto-detection picked the nearest profile rather than an exact one."""


# --------------------------------------------------------------------------------------------
# Typed profile


@dataclass(frozen=True)
class DeviceSpec:
    """Hardware facts. Peaks are dense (no structured sparsity); int8 values are TOPS.

    ``None`` means unknown (the generic CPU profile): ``edgeseg bench`` measures it instead.
    """

    name: str
    kind: str  # one of DEVICE_KINDS
    gpu_arch: str | None
    compute_capability: str | None  # "8.7"; None for a CPU
    peak_tflops: dict[str, float | None]  # precision -> TFLOP/s (TOPS for int8), GPU only
    dla_peak_tflops: dict[str, float | None] | None  # all DLA cores together; None: no DLA
    dram_gbs: float | None
    memory_gib: float | None
    dla_cores: int

    @property
    def compute_capability_tuple(self) -> tuple[int, int] | None:
        if self.compute_capability is None:
            return None
        major, minor = self.compute_capability.split(".")
        return int(major), int(minor)


@dataclass(frozen=True)
class DeploySettings:
    backend: str  # one of BACKENDS
    precision: str  # one of PRECISIONS
    height: int
    width: int
    workspace_mib: int | None  # TensorRT builder workspace; None when the backend has none
    dla_core: int | None  # None = GPU only
    gpu_fallback: bool  # let layers the DLA cannot run fall back to the GPU

    @property
    def input_hw(self) -> tuple[int, int]:
        return self.height, self.width


@dataclass(frozen=True)
class CalibrationSettings:
    images: int  # INT8 calibration image count


@dataclass(frozen=True)
class PowerSettings:
    """Jetson power mode to run (and to stamp on every benchmark)."""

    nvpmodel: int
    nvpmodel_name: str
    jetson_clocks: bool


@dataclass(frozen=True)
class BenchSettings:
    warmup_s: float
    duration_s: float


@dataclass(frozen=True)
class ServingSettings:
    """Triton's batching for this device (optional section ``serving``)."""

    max_batch_size: int
    preferred_batch_sizes: tuple[int, ...]
    max_queue_delay_us: int
    instances: int  # instance_group count


@dataclass(frozen=True)
class Profile:
    """One device profile. ``name`` is the file stem; ``source`` the file it came from."""

    name: str
    source: Path | None
    device: DeviceSpec
    deploy: DeploySettings
    calibration: CalibrationSettings
    power: PowerSettings | None  # Jetson only
    bench: BenchSettings
    serving: ServingSettings | None = None  # Triton batching; None: edgeseg's defaults

    def to_dict(self) -> dict[str, Any]:
        """The profile as the YAML file spells it (``name``/``source`` excluded): it loads back."""
        out: dict[str, Any] = {}
        for section in SECTIONS:
            value = getattr(self, section)
            if value is not None:
                out[section] = dataclasses.asdict(value)
        if self.serving is not None:  # YAML has lists, not tuples
            out["serving"] = dict(dataclasses.asdict(self.serving),
                                  preferred_batch_sizes=list(self.serving.preferred_batch_sizes))
        return out

    @classmethod
    def from_dict(
        cls, data: Any, *, name: str = "custom", source: Path | str | None = None
    ) -> Profile:
        """Validate a YAML-shaped mapping and build the profile; errors name ``source``."""
        where = display_path(Path(source)) if source is not None else f"profile {name!r}"
        from edgeseg.profiles.validate import Invalid, validate_data

        try:
            clean = validate_data(data)
        except Invalid as e:
            raise EdgesegError(f"{where}: {e}") from None
        return build_profile(clean, name=name, source=Path(source) if source is not None else None)


SECTIONS = ("device", "deploy", "calibration", "power", "bench")
OPTIONAL_SECTIONS = ("serving",)  # written by to_dict only when set


def build_profile(d: dict[str, Any], *, name: str, source: Path | None) -> Profile:
    dev = dict(d["device"])
    dev["peak_tflops"] = dict(dev["peak_tflops"])
    if dev["dla_peak_tflops"] is not None:
        dev["dla_peak_tflops"] = dict(dev["dla_peak_tflops"])
    return Profile(
        name=name,
        source=source,
        device=DeviceSpec(**dev),
        deploy=DeploySettings(**d["deploy"]),
        calibration=CalibrationSettings(**d["calibration"]),
        power=PowerSettings(**d["power"]) if d["power"] is not None else None,
        bench=BenchSettings(**d["bench"]),
        serving=ServingSettings(**d["serving"]) if d.get("serving") is not None else None,
    )


def display_path(path: Path) -> str:
    """The path relative to the working directory when it lies below it, else as given."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)
