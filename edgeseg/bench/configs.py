"""Benchmark configurations: what `edgeseg bench` measures and the ``--compare`` syntax.

:class:`BenchConfig` is one configuration (backend x precision x input size);
:func:`parse_config` and :func:`parse_compare` read ``backend[:precision][@HxW]`` specs. Also the
backends and precisions known, the default input size, the progress-callback type and where a
configuration computes (:func:`_device_of`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edgeseg.errors import EdgesegError
from edgeseg.precision import PRECISIONS
from edgeseg.sizes import parse_hw

__all__ = [
    "BACKENDS",
    "DEFAULT_HW",
    "PRECISIONS",
    "BenchConfig",
    "Step",
    "parse_compare",
    "parse_config",
]

BACKENDS = ("torch", "onnxruntime", "tensorrt")
DEFAULT_HW = (512, 1024)

Step = Callable[[str], None]


@dataclass(frozen=True)
class BenchConfig:
    """One measured configuration; ``height``/``width`` None = the run's default size."""

    backend: str
    precision: str = "fp32"
    height: int | None = None
    width: int | None = None

    @property
    def label(self) -> str:
        size = f"@{self.height}x{self.width}" if self.height and self.width else ""
        return f"{self.backend}:{self.precision}{size}"


def parse_config(spec: str) -> BenchConfig:
    """``backend[:precision][@HxW]``, e.g. ``onnxruntime:int8@256x512``."""
    s = spec.strip()
    if not s:
        raise EdgesegError("--compare: empty configuration (two commas in a row?)")
    size = None
    if "@" in s:
        s, _, size_s = s.partition("@")
        size = parse_hw(size_s, f"--compare {spec}", minimum=32)
    backend, _, precision = s.partition(":")
    backend, precision = backend.strip(), (precision.strip() or "fp32")
    if backend not in BACKENDS:
        raise EdgesegError(
            f"--compare {spec}: unknown backend '{backend}' (expected {', '.join(BACKENDS)})"
        )
    if precision not in PRECISIONS:
        raise EdgesegError(
            f"--compare {spec}: unknown precision '{precision}' (expected {', '.join(PRECISIONS)})"
        )
    return BenchConfig(backend, precision, *(size or (None, None)))


def parse_compare(spec: str | Sequence[str]) -> list[BenchConfig]:
    """A comma-separated list (or a sequence) of :func:`parse_config` specs, no duplicates."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    configs = [parse_config(s) for s in items]
    seen: set[BenchConfig] = set()
    for c in configs:
        if c in seen:
            raise EdgesegError(f"--compare: {c.label} is listed twice")
        seen.add(c)
    return configs


def _device_of(c: BenchConfig, cuda: bool) -> str:
    """Where a configuration computes: onnxruntime here runs on the CPU provider."""
    return "cuda" if cuda and c.backend in ("torch", "tensorrt") else "cpu"
