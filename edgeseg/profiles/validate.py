"""Validating a YAML-shaped profile mapping against the schema of
:mod:`edgeseg.profiles.schema`: a few small field types, each with a one-line description of
what it expects, so an error names the key path and what was expected.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgeseg.profiles.schema import (
    BACKENDS,
    DEVICE_KINDS,
    DLA_PRECISIONS,
    GPU_ARCHS,
    PRECISIONS,
)

__all__ = ["Invalid", "validate_data"]


# --------------------------------------------------------------------------------------------
# Schema: a few small field types, each with a one-line description of what it expects.


class Invalid(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def _got(value: Any) -> str:
    kind = type(value).__name__
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"got {shown}" if isinstance(value, (str, int, float)) else f"got {shown} ({kind})"


def _fmt(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class _Field:
    nullable: bool = False
    optional: bool = False  # the key may be absent

    def expect(self) -> str:
        raise NotImplementedError

    def _expect(self) -> str:
        return f"{self.expect()}{' or null' if self.nullable else ''}"

    def check(self, path: str, value: Any) -> Any:
        if value is None:
            if self.nullable:
                return None
            raise Invalid(path, f"expected {self.expect()}, got null")
        return self.convert(path, value)

    def convert(self, path: str, value: Any) -> Any:
        raise NotImplementedError

    def fail(self, path: str, value: Any) -> Invalid:
        return Invalid(path, f"expected {self._expect()}, {_got(value)}")


@dataclass(frozen=True)
class _Str(_Field):
    def expect(self) -> str:
        return "a non-empty string"

    def convert(self, path: str, value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, value)
        return value


@dataclass(frozen=True)
class _Bool(_Field):
    def expect(self) -> str:
        return "true or false"

    def convert(self, path: str, value: Any) -> Any:
        if not isinstance(value, bool):
            raise self.fail(path, value)
        return value


@dataclass(frozen=True)
class _Int(_Field):
    lo: int = 0
    hi: int = 2**31

    def expect(self) -> str:
        return f"an integer in {self.lo}..{self.hi}"

    def convert(self, path: str, value: Any) -> Any:
        # bool is an int subclass in Python; `true` is never a valid count.
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, value)
        if not self.lo <= value <= self.hi:
            raise self.fail(path, value)
        return value


@dataclass(frozen=True)
class _IntList(_Field):
    lo: int = 0
    hi: int = 2**31

    def expect(self) -> str:
        return f"a list of integers in {self.lo}..{self.hi}"

    def convert(self, path: str, value: Any) -> Any:
        item = _Int(lo=self.lo, hi=self.hi)
        if not isinstance(value, list):
            raise self.fail(path, value)
        return tuple(item.convert(f"{path}[{i}]", v) for i, v in enumerate(value))


@dataclass(frozen=True)
class _Float(_Field):
    lo: float = 0.0
    hi: float = math.inf
    lo_open: bool = False  # True: value must be > lo

    def expect(self) -> str:
        left = "(" if self.lo_open else "["
        return f"a number in {left}{_fmt(self.lo)}, {_fmt(self.hi)}]"

    def convert(self, path: str, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(path, value)
        v = float(value)
        low_ok = v > self.lo if self.lo_open else v >= self.lo
        if not (math.isfinite(v) and low_ok and v <= self.hi):
            raise self.fail(path, value)
        return v


@dataclass(frozen=True)
class _Enum(_Field):
    values: tuple[str, ...] = ()

    def expect(self) -> str:
        return f"one of {', '.join(self.values)}"

    def convert(self, path: str, value: Any) -> Any:
        if not isinstance(value, str) or value not in self.values:
            raise self.fail(path, value)
        return value


_CC_RE = re.compile(r"^(\d{1,2})\.(\d)$")


@dataclass(frozen=True)
class _ComputeCapability(_Field):
    def expect(self) -> str:
        return 'a compute capability such as "8.7"'

    def convert(self, path: str, value: Any) -> Any:
        if isinstance(value, float) and not isinstance(value, bool):
            value = repr(value)  # YAML read 8.7 unquoted; CUDA minors are one digit
        if not isinstance(value, str) or not _CC_RE.match(value):
            raise self.fail(path, value)
        return value


@dataclass(frozen=True)
class _Map(_Field):
    """A mapping with a fixed set of keys (all required unless the field is optional)."""

    fields: Mapping[str, _Field] = dataclasses.field(default_factory=dict)

    def expect(self) -> str:
        return f"a mapping with keys {', '.join(self.fields)}"

    def convert(self, path: str, value: Any) -> Any:
        if not isinstance(value, dict):
            raise self.fail(path, value)
        prefix = f"{path}." if path else ""
        for key in value:
            if key not in self.fields:
                raise Invalid(
                    f"{prefix}{key}",
                    f"unknown key; expected one of {', '.join(self.fields)}",
                )
        out: dict[str, Any] = {}
        for key, field in self.fields.items():
            if key not in value:
                if field.optional:
                    out[key] = None
                    continue
                raise Invalid(f"{prefix}{key}", f"missing; expected {field._expect()}")
            out[key] = field.check(f"{prefix}{key}", value[key])
        return out


def _peaks(keys: tuple[str, ...], **kw: Any) -> _Map:
    return _Map(
        fields={k: _Float(lo=0.0, hi=100_000.0, lo_open=True, nullable=True) for k in keys}, **kw
    )


_SCHEMA = _Map(
    fields={
        "device": _Map(
            fields={
                "name": _Str(),
                "kind": _Enum(values=DEVICE_KINDS),
                "gpu_arch": _Enum(values=GPU_ARCHS, nullable=True),
                "compute_capability": _ComputeCapability(nullable=True),
                "peak_tflops": _peaks(PRECISIONS),
                "dla_peak_tflops": _peaks(DLA_PRECISIONS, nullable=True),
                "dram_gbs": _Float(lo=0.0, hi=100_000.0, lo_open=True, nullable=True),
                "memory_gib": _Float(lo=0.0, hi=100_000.0, lo_open=True, nullable=True),
                "dla_cores": _Int(lo=0, hi=8),
            }
        ),
        "deploy": _Map(
            fields={
                "backend": _Enum(values=BACKENDS),
                "precision": _Enum(values=PRECISIONS),
                "height": _Int(lo=16, hi=16384),
                "width": _Int(lo=16, hi=16384),
                "workspace_mib": _Int(lo=16, hi=1_048_576, nullable=True),
                "dla_core": _Int(lo=0, hi=7, nullable=True),
                "gpu_fallback": _Bool(),
            }
        ),
        "calibration": _Map(fields={"images": _Int(lo=1, hi=100_000)}),
        "power": _Map(
            optional=True,
            fields={
                "nvpmodel": _Int(lo=0, hi=99),
                "nvpmodel_name": _Str(),
                "jetson_clocks": _Bool(),
            },
        ),
        "bench": _Map(
            fields={
                "warmup_s": _Float(lo=0.0, hi=600.0),
                "duration_s": _Float(lo=0.0, hi=3600.0, lo_open=True),
            }
        ),
        "serving": _Map(
            optional=True,
            fields={
                "max_batch_size": _Int(lo=1, hi=1024),
                "preferred_batch_sizes": _IntList(lo=1, hi=1024),
                "max_queue_delay_us": _Int(lo=0, hi=10_000_000),
                "instances": _Int(lo=1, hi=64),
            },
        ),
    }
)


def validate_data(data: Any) -> dict[str, Any]:
    """Field checks, then the rules that tie fields together. Raises Invalid."""
    if data is None:
        raise Invalid("(top level)", f"expected {_SCHEMA.expect()}, got an empty document")
    if not isinstance(data, dict):
        raise Invalid("(top level)", f"expected {_SCHEMA.expect()}, {_got(data)}")
    d = _SCHEMA.check("", data)
    dev, dep = d["device"], d["deploy"]
    kind = dev["kind"]

    if kind == "cpu":
        for key in ("gpu_arch", "compute_capability"):
            if dev[key] is not None:
                raise Invalid(f"device.{key}", f"expected null for a cpu device, {_got(dev[key])}")
        if dep["backend"] == "tensorrt":
            raise Invalid(
                "deploy.backend",
                "expected onnxruntime or torch on a cpu device (TensorRT needs an NVIDIA GPU), "
                "got 'tensorrt'",
            )
    else:
        for key in ("gpu_arch", "compute_capability"):
            if dev[key] is None:
                raise Invalid(f"device.{key}", f"expected a value for a {kind} GPU, got null")
        for prec, value in dev["peak_tflops"].items():
            if value is None:
                raise Invalid(
                    f"device.peak_tflops.{prec}",
                    f"expected a number > 0 for a {kind} GPU (vendor figure), got null",
                )

    n_dla = dev["dla_cores"]
    if n_dla == 0 and dev["dla_peak_tflops"] is not None:
        raise Invalid(
            "device.dla_peak_tflops",
            f"expected null when device.dla_cores is 0, {_got(dev['dla_peak_tflops'])}",
        )
    if n_dla > 0 and dev["dla_peak_tflops"] is None:
        raise Invalid(
            "device.dla_peak_tflops",
            f"expected a mapping with keys {', '.join(DLA_PRECISIONS)} "
            f"(device.dla_cores is {n_dla}), got null",
        )

    core = dep["dla_core"]
    if core is not None:
        if n_dla == 0:
            raise Invalid(
                "deploy.dla_core", f"expected null (the device has no DLA), got {core!r}"
            )
        if core >= n_dla:
            raise Invalid(
                "deploy.dla_core",
                f"expected null or 0..{n_dla - 1} (the device has {n_dla} DLA cores), got {core!r}",
            )
        if dep["backend"] != "tensorrt":
            raise Invalid(
                "deploy.backend",
                f"expected tensorrt when deploy.dla_core is set, {_got(dep['backend'])}",
            )
        if dep["precision"] not in DLA_PRECISIONS:
            raise Invalid(
                "deploy.precision",
                "expected fp16 or int8 when deploy.dla_core is set (the DLA has no "
                f"fp32), {_got(dep['precision'])}",
            )
    if dep["backend"] == "tensorrt" and dep["workspace_mib"] is None:
        raise Invalid(
            "deploy.workspace_mib",
            "expected an integer number of MiB for the tensorrt backend, got null",
        )

    if kind == "jetson" and d["power"] is None:
        raise Invalid(
            "power",
            "missing; expected a mapping with keys nvpmodel, nvpmodel_name, "
            "jetson_clocks for a Jetson device",
        )
    if kind != "jetson" and d["power"] is not None:
        raise Invalid("power", f"expected no power section for a {kind} device (Jetson only)")
    serving = d["serving"]
    if serving is not None:
        too_big = [b for b in serving["preferred_batch_sizes"] if b > serving["max_batch_size"]]
        if too_big:
            raise Invalid(
                "serving.preferred_batch_sizes",
                f"expected sizes <= serving.max_batch_size ({serving['max_batch_size']}), "
                f"got {too_big[0]}",
            )
    return d
