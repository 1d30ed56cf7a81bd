"""Per-device profiles: device facts plus deployment settings, read from ``profiles/*.yaml``.

A profile answers two questions for one board or machine:

* what the hardware can do (``profile.device``: peak TFLOP/s per precision, DRAM bandwidth,
  memory, DLA cores), which the roofline and the benchmark report use, and
* how edgeseg deploys on it by default (``profile.deploy``, ``profile.calibration``,
  ``profile.power`` on Jetson, ``profile.bench``), which command-line flags override
  through :func:`apply_overrides`.

Where profiles are found (first match wins, so a user profile may shadow a shipped one):

1. every directory in ``$EDGESEG_PROFILES_DIR`` (``os.pathsep``-separated), then
2. the shipped ``profiles/`` directory: ``<repo>/profiles`` next to the ``edgeseg`` package
   when running from a source checkout or an editable install, else ``edgeseg/profiles``
   inside the installed package.

``load_profile`` takes a profile name, a path to a ``.yaml`` file, or ``"auto"``, which runs
:func:`detect_profile`. Every problem with a profile file is an :class:`EdgesegError` whose
message is one line naming the file, the key path and what was expected, e.g.
``profiles/x.yaml: deploy.precision: expected one of fp32, fp16, int8, got 'fp64'``.

This module imports only the standard library and PyYAML, so ``edgeseg profiles list`` and
``--help`` stay fast.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import re
import shutil
import subprocess
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edgeseg.errors import EdgesegError

__all__ = [
    "BACKENDS",
    "DEVICE_KINDS",
    "ENV_PROFILES_DIR",
    "GPU_ARCHS",
    "OVERRIDABLE",
    "PRECISIONS",
    "BenchSettings",
    "CalibrationSettings",
    "DeploySettings",
    "Detection",
    "DeviceSpec",
    "PowerSettings",
    "Profile",
    "ProfileWarning",
    "apply_overrides",
    "detect",
    "detect_profile",
    "list_profiles",
    "load_profile",
    "profile_path",
    "profiles_dirs",
    "validate_profile",
]

ENV_PROFILES_DIR = "EDGESEG_PROFILES_DIR"

PRECISIONS = ("fp32", "fp16", "int8")
BACKENDS = ("tensorrt", "onnxruntime", "torch")
DEVICE_KINDS = ("jetson", "discrete", "cpu")
GPU_ARCHS = ("maxwell", "pascal", "volta", "turing", "ampere", "ada", "hopper", "blackwell")
DLA_PRECISIONS = ("fp16", "int8")  # the DLA has no fp32

# Detection reads these; tests point them elsewhere through detect()'s keyword arguments.
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
DEVICE_TREE_COMPATIBLE = Path("/proc/device-tree/compatible")
TEGRA_RELEASE = Path("/etc/nv_tegra_release")


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
class Profile:
    """One device profile. ``name`` is the file stem; ``source`` the file it came from."""

    name: str
    source: Path | None
    device: DeviceSpec
    deploy: DeploySettings
    calibration: CalibrationSettings
    power: PowerSettings | None  # Jetson only
    bench: BenchSettings

    def to_dict(self) -> dict[str, Any]:
        """The profile as the YAML file spells it (``name``/``source`` excluded): it loads back."""
        out: dict[str, Any] = {}
        for section in _SECTIONS:
            value = getattr(self, section)
            if value is not None:
                out[section] = dataclasses.asdict(value)
        return out

    @classmethod
    def from_dict(
        cls, data: Any, *, name: str = "custom", source: Path | str | None = None
    ) -> Profile:
        """Validate a YAML-shaped mapping and build the profile; errors name ``source``."""
        where = _display(Path(source)) if source is not None else f"profile {name!r}"
        try:
            clean = _validate(data)
        except _Invalid as e:
            raise EdgesegError(f"{where}: {e}") from None
        return _build(clean, name=name, source=Path(source) if source is not None else None)


_SECTIONS = ("device", "deploy", "calibration", "power", "bench")


# --------------------------------------------------------------------------------------------
# Schema: a few small field types, each with a one-line description of what it expects.


class _Invalid(Exception):
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
            raise _Invalid(path, f"expected {self.expect()}, got null")
        return self.convert(path, value)

    def convert(self, path: str, value: Any) -> Any:
        raise NotImplementedError

    def fail(self, path: str, value: Any) -> _Invalid:
        return _Invalid(path, f"expected {self._expect()}, {_got(value)}")


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
                raise _Invalid(
                    f"{prefix}{key}",
                    f"unknown key; expected one of {', '.join(self.fields)}",
                )
        out: dict[str, Any] = {}
        for key, field in self.fields.items():
            if key not in value:
                if field.optional:
                    out[key] = None
                    continue
                raise _Invalid(f"{prefix}{key}", f"missing; expected {field._expect()}")
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
    }
)


def _validate(data: Any) -> dict[str, Any]:
    """Field checks, then the rules that tie fields together. Raises _Invalid."""
    if data is None:
        raise _Invalid("(top level)", f"expected {_SCHEMA.expect()}, got an empty document")
    if not isinstance(data, dict):
        raise _Invalid("(top level)", f"expected {_SCHEMA.expect()}, {_got(data)}")
    d = _SCHEMA.check("", data)
    dev, dep = d["device"], d["deploy"]
    kind = dev["kind"]

    if kind == "cpu":
        for key in ("gpu_arch", "compute_capability"):
            if dev[key] is not None:
                raise _Invalid(f"device.{key}", f"expected null for a cpu device, {_got(dev[key])}")
        if dep["backend"] == "tensorrt":
            raise _Invalid(
                "deploy.backend",
                "expected onnxruntime or torch on a cpu device (TensorRT needs an NVIDIA GPU), "
                "got 'tensorrt'",
            )
    else:
        for key in ("gpu_arch", "compute_capability"):
            if dev[key] is None:
                raise _Invalid(f"device.{key}", f"expected a value for a {kind} GPU, got null")
        for prec, value in dev["peak_tflops"].items():
            if value is None:
                raise _Invalid(
                    f"device.peak_tflops.{prec}",
                    f"expected a number > 0 for a {kind} GPU (vendor figure), got null",
                )

    n_dla = dev["dla_cores"]
    if n_dla == 0 and dev["dla_peak_tflops"] is not None:
        raise _Invalid(
            "device.dla_peak_tflops",
            f"expected null when device.dla_cores is 0, {_got(dev['dla_peak_tflops'])}",
        )
    if n_dla > 0 and dev["dla_peak_tflops"] is None:
        raise _Invalid(
            "device.dla_peak_tflops",
            f"expected a mapping with keys {', '.join(DLA_PRECISIONS)} "
            f"(device.dla_cores is {n_dla}), got null",
        )

    core = dep["dla_core"]
    if core is not None:
        if n_dla == 0:
            raise _Invalid(
                "deploy.dla_core", f"expected null (the device has no DLA), got {core!r}"
            )
        if core >= n_dla:
            raise _Invalid(
                "deploy.dla_core",
                f"expected null or 0..{n_dla - 1} (the device has {n_dla} DLA cores), got {core!r}",
            )
        if dep["backend"] != "tensorrt":
            raise _Invalid(
                "deploy.backend",
                f"expected tensorrt when deploy.dla_core is set, {_got(dep['backend'])}",
            )
        if dep["precision"] not in DLA_PRECISIONS:
            raise _Invalid(
                "deploy.precision",
                "expected fp16 or int8 when deploy.dla_core is set (the DLA has no "
                f"fp32), {_got(dep['precision'])}",
            )
    if dep["backend"] == "tensorrt" and dep["workspace_mib"] is None:
        raise _Invalid(
            "deploy.workspace_mib",
            "expected an integer number of MiB for the tensorrt backend, got null",
        )

    if kind == "jetson" and d["power"] is None:
        raise _Invalid(
            "power",
            "missing; expected a mapping with keys nvpmodel, nvpmodel_name, "
            "jetson_clocks for a Jetson device",
        )
    if kind != "jetson" and d["power"] is not None:
        raise _Invalid("power", f"expected no power section for a {kind} device (Jetson only)")
    return d


def _build(d: dict[str, Any], *, name: str, source: Path | None) -> Profile:
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
    )


# --------------------------------------------------------------------------------------------
# Files


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _display(path: Path) -> str:
    """The path relative to the working directory when it lies below it, else as given."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def _read_yaml(path: Path) -> Any:
    shown = _display(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EdgesegError(f"profile file not found: {shown}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise EdgesegError(f"{shown}: cannot read: {e}") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{shown}:{mark.line + 1}:{mark.column + 1}" if mark else shown
        problem = " ".join(str(e.problem or e.context or "invalid YAML").split())
        ctx = e.context_mark
        if e.problem and e.context and ctx and mark and ctx.line != mark.line:
            problem += f" ({' '.join(e.context.split())} at line {ctx.line + 1})"
        raise EdgesegError(f"{where}: malformed YAML: {problem}") from None
    except yaml.YAMLError as e:
        raise EdgesegError(f"{shown}: malformed YAML: {' '.join(str(e).split())}") from None


def _builtin_dir() -> Path | None:
    import sys

    pkg = Path(__file__).resolve().parent
    # source checkout / editable install, then a wheel install (pyproject data-files)
    installed = Path(sys.prefix) / "share" / "edgeseg" / "profiles"
    for candidate in (pkg.parent / "profiles", pkg / "profiles", installed):
        if candidate.is_dir():
            return candidate
    return None


def profiles_dirs() -> list[Path]:
    """Directories searched for profiles, in order: $EDGESEG_PROFILES_DIR, then the shipped one."""
    dirs: list[Path] = []
    for entry in os.environ.get(ENV_PROFILES_DIR, "").split(os.pathsep):
        if not entry.strip():
            continue
        d = Path(entry).expanduser()
        if not d.is_dir():
            raise EdgesegError(f"{ENV_PROFILES_DIR}: not a directory: {d}")
        dirs.append(d)
    builtin = _builtin_dir()
    if builtin is not None and all(builtin.resolve() != d.resolve() for d in dirs):
        dirs.append(builtin)
    return dirs


def _profile_files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in profiles_dirs():
        for f in sorted(d.iterdir()):
            if f.suffix in (".yaml", ".yml") and f.is_file():
                found.setdefault(f.stem, f)
    return found


def list_profiles() -> list[str]:
    """Names of all profiles found (see the module docstring for where), sorted."""
    return sorted(_profile_files())


def profile_path(name: str) -> Path:
    """The file behind a profile name; EdgesegError naming the known ones if there is none."""
    files = _profile_files()
    if name not in files:
        known = ", ".join(sorted(files)) or "none"
        raise EdgesegError(
            f"unknown profile {name!r}; known: {known} (or 'auto', or a path to a .yaml file)"
        )
    return files[name]


def _looks_like_path(s: str) -> bool:
    return "/" in s or os.sep in s or s.endswith((".yaml", ".yml"))


def validate_profile(path: str | Path) -> Profile:
    """Load and check one profile file; returns it, or raises a one-line EdgesegError."""
    p = Path(path)
    return Profile.from_dict(_read_yaml(p), name=p.stem, source=p)


def load_profile(name_or_path: str | Path) -> Profile:
    """A profile by name (``jetson-orin-nano``), by path (``my/board.yaml``) or ``"auto"``."""
    s = str(name_or_path)
    if isinstance(name_or_path, Path) or _looks_like_path(s):
        return validate_profile(Path(s))
    if s == "auto":
        return validate_profile(profile_path(detect_profile()))
    return validate_profile(profile_path(s))


# --------------------------------------------------------------------------------------------
# Command-line overrides

# flag (keyword argument) -> (section, key)
OVERRIDABLE: dict[str, tuple[str, str]] = {
    "backend": ("deploy", "backend"),
    "precision": ("deploy", "precision"),
    "height": ("deploy", "height"),
    "width": ("deploy", "width"),
    "workspace_mib": ("deploy", "workspace_mib"),
    "dla_core": ("deploy", "dla_core"),
    "gpu_fallback": ("deploy", "gpu_fallback"),
    "calibration_images": ("calibration", "images"),
    "nvpmodel": ("power", "nvpmodel"),
    "jetson_clocks": ("power", "jetson_clocks"),
    "warmup_s": ("bench", "warmup_s"),
    "duration_s": ("bench", "duration_s"),
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def apply_overrides(profile: Profile, **flags: Any) -> Profile:
    """A copy of ``profile`` with command-line values applied; ``None`` keeps the profile's.

    Keywords are the keys of :data:`OVERRIDABLE`. ``dla_core=-1`` means "GPU only" (null).
    The result is validated like a file; an error names the flag, e.g.
    ``--precision: expected one of fp32, fp16, int8, got 'fp64'``.
    """
    unknown = sorted(set(flags) - set(OVERRIDABLE))
    if unknown:
        raise TypeError(f"apply_overrides() got unknown flags: {', '.join(unknown)}")
    given = {k: v for k, v in flags.items() if v is not None}
    if not given:
        return profile
    data = profile.to_dict()
    by_path: dict[str, str] = {}
    for flag, value in given.items():
        section, key = OVERRIDABLE[flag]
        if flag == "dla_core" and value == -1:
            value = None
        if data.get(section) is None:
            raise EdgesegError(
                f"{_flag(flag)}: applies to Jetson profiles only; profile {profile.name!r} is a "
                f"{profile.device.kind} device"
            )
        if flag == "nvpmodel" and profile.power is not None and value != profile.power.nvpmodel:
            data[section]["nvpmodel_name"] = f"mode {value}"
        data[section][key] = value
        by_path[f"{section}.{key}"] = flag
    try:
        clean = _validate(data)
    except _Invalid as e:
        if e.path in by_path:
            raise EdgesegError(f"{_flag(by_path[e.path])}: {e.message}") from None
        where = _display(profile.source) if profile.source else f"profile {profile.name!r}"
        flags_s = ", ".join(_flag(f) for f in given)
        raise EdgesegError(f"{where} with {flags_s}: {e}") from None
    return _build(clean, name=profile.name, source=profile.source)


# --------------------------------------------------------------------------------------------
# Auto-detection


@dataclass(frozen=True)
class Detection:
    """What :func:`detect` chose and why; ``warnings`` is non-empty for a nearest match."""

    profile: str
    reason: str
    warnings: tuple[str, ...] = ()


def _read_text(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return None


_NX_NEAREST = (
    "Orin NX has no profile of its own; using jetson-orin-nano (same 1024-core GPU, but the NX "
    "clocks higher, has 102 GB/s and DLA cores): copy and edit it for exact figures"
)
_XAVIER_NX_NEAREST = (
    "Xavier NX has no profile of its own; using jetson-agx-xavier (same Volta generation, but "
    "the NX has 384 cores and 59.7 GB/s): copy and edit it for exact figures"
)
_ORIN_32GB = (
    "AGX Orin 32GB: the jetson-agx-orin figures are for the 64GB module (2048 cores, "
    "204.8 GB/s); the 32GB one has 1792 cores"
)

# (substring of the lower-cased /proc/device-tree/model, profile, warning or None)
_JETSON_MODELS: tuple[tuple[str, str, str | None], ...] = (
    ("agx orin", "jetson-agx-orin", None),
    ("orin nano", "jetson-orin-nano", None),
    ("orin nx", "jetson-orin-nano", _NX_NEAREST),
    ("agx xavier", "jetson-agx-xavier", None),
    ("jetson-agx", "jetson-agx-xavier", None),  # L4T R32 spelling for AGX Xavier
    ("xavier nx", "jetson-agx-xavier", _XAVIER_NX_NEAREST),
)

# (substring of /proc/device-tree/compatible, profile, warning or None); order matters.
_JETSON_BOARDS: tuple[tuple[str, str, str | None], ...] = (
    ("p3701-0004", "jetson-agx-orin", _ORIN_32GB),
    ("p3701", "jetson-agx-orin", None),
    ("p3767-0000", "jetson-orin-nano", _NX_NEAREST),
    ("p3767-0001", "jetson-orin-nano", _NX_NEAREST),
    ("p3767", "jetson-orin-nano", None),
    ("p3668", "jetson-agx-xavier", _XAVIER_NX_NEAREST),
    ("p2888", "jetson-agx-xavier", None),
    ("tegra194", "jetson-agx-xavier", None),
)


_R36_GUESS = (
    "could not read the Jetson module name; assuming the smallest Orin (jetson-orin-nano): "
    "pass --profile jetson-agx-orin on an AGX Orin"
)


def _unknown_gpu(gpu: str) -> str:
    return (
        f"GPU {gpu!r} has no edgeseg profile; using x86-cpu (onnxruntime on the CPU). Copy "
        "profiles/gtx1080ti.yaml, set the device figures, and pass its path or put it in "
        f"${ENV_PROFILES_DIR}"
    )


def _no_profile(what: str) -> EdgesegError:
    return EdgesegError(
        f"{what} has no edgeseg profile (profiles cover AGX Orin, Orin Nano/NX, AGX Xavier); "
        "copy profiles/jetson-orin-nano.yaml, edit it, and pass its path"
    )


def detect(
    *,
    model_path: Path | str | None = None,
    compatible_path: Path | str | None = None,
    release_path: Path | str | None = None,
    gpu_names: Callable[[], list[str]] | None = None,
) -> Detection:
    """Choose the profile for this machine. Arguments replace the paths/NVML query (tests).

    Order: Jetson ``/proc/device-tree/model``, then ``/proc/device-tree/compatible``, then
    ``/etc/nv_tegra_release``; then the first NVIDIA GPU by name (NVML, else ``nvidia-smi``);
    else ``x86-cpu``. Decisions:

    * Orin NX -> ``jetson-orin-nano``, Xavier NX -> ``jetson-agx-xavier`` (nearest, warned).
    * Older Jetsons (Nano, TX1, TX2) -> EdgesegError: no profile would be close.
    * A Jetson whose module cannot be read: L4T R36 (JetPack 6 runs only on Orin) ->
      ``jetson-orin-nano``, the smallest Orin, warned; other releases -> EdgesegError.
    * GTX 1080 Ti -> ``gtx1080ti``. Any other GPU -> ``x86-cpu`` with a warning: its peaks
      are unknown, and the CPU profile at least runs everywhere; write a profile for it.
    """
    model_p = Path(model_path) if model_path is not None else DEVICE_TREE_MODEL
    compat_p = Path(compatible_path) if compatible_path is not None else DEVICE_TREE_COMPATIBLE
    release_p = Path(release_path) if release_path is not None else TEGRA_RELEASE

    model_raw = _read_text(model_p)
    model = model_raw.replace("\x00", " ").strip() if model_raw else ""
    compat = (_read_text(compat_p) or "").replace("\x00", " ").lower()
    release = (_read_text(release_p) or "").strip()

    if model:
        low = model.lower()
        for needle, name, warn in _JETSON_MODELS:
            if needle in low:
                warns = [warn] if warn else []
                if name == "jetson-agx-orin" and "p3701-0004" in compat:
                    warns.append(_ORIN_32GB)
                return Detection(name, f"{model_p}: {model!r}", tuple(warns))
    jetsonish = "jetson" in model.lower() or "nvidia,tegra" in compat or bool(release)
    for needle, name, warn in _JETSON_BOARDS:
        if needle in compat:
            return Detection(name, f"{compat_p}: {needle}", (warn,) if warn else ())
    if jetsonish:
        if model:  # the module names itself but matches no profile (Nano, TX2, Thor, ...)
            raise _no_profile(f"Jetson {model!r} ({model_p})")
        if "tegra210" in compat or "tegra186" in compat:  # Nano/TX1, TX2
            raise _no_profile(f"this Jetson ({compat_p}: {compat.split()[0]})")
        m = re.search(r"#\s*R(\d+)", release)
        if m and m.group(1) == "36":  # JetPack 6 runs on Orin modules only
            return Detection(
                "jetson-orin-nano",
                f"{release_p}: L4T R36 (JetPack 6: an Orin)",
                (_R36_GUESS,),
            )
        first = release.splitlines()[0] if release else compat.strip()
        raise EdgesegError(
            f"this is a Jetson ({first}) but {model_p} is unreadable, so the module is unknown; "
            "pass --profile NAME (see `edgeseg profiles list`)"
        )

    names = (gpu_names or _gpu_names)()
    if names:
        gpu = names[0]
        low = gpu.lower()
        if "1080 ti" in low:
            return Detection("gtx1080ti", f"NVIDIA GPU 0: {gpu!r}")
        return Detection(
            "x86-cpu",
            f"NVIDIA GPU 0 {gpu!r} has no profile",
            (_unknown_gpu(gpu),),
        )
    machine = platform.machine().lower()
    cpu_warns: tuple[str, ...] = ()
    if machine and machine not in ("x86_64", "amd64", "i386", "i686"):
        cpu_warns = (f"not an x86 machine ({machine}); x86-cpu stands for any CPU here",)
    return Detection("x86-cpu", "no Jetson and no NVIDIA GPU found", cpu_warns)


def detect_profile(**kwargs: Any) -> str:
    """The profile name :func:`detect` chooses; nearest matches raise a ProfileWarning."""
    found = detect(**kwargs)
    for w in found.warnings:
        warnings.warn(w, ProfileWarning, stacklevel=2)
    return found.profile


def _gpu_names() -> list[str]:
    """Names of the NVIDIA GPUs, NVML first (optional pynvml), else nvidia-smi; [] if none."""
    names = _nvml_gpu_names()
    return names if names is not None else _smi_gpu_names()


def _nvml_gpu_names() -> list[str] | None:
    """GPU names through NVML; None when pynvml or the driver is missing (or on a Jetson)."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return None
    try:
        names = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            n = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
            names.append(n.decode() if isinstance(n, bytes) else str(n))
        return names
    except Exception:  # noqa: BLE001 - NVMLError_NotSupported and friends
        return None
    finally:
        pynvml.nvmlShutdown()


def _smi_gpu_names() -> list[str]:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]
