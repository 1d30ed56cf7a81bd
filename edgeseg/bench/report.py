"""`edgeseg bench` as a library: speed, stages, memory, power, model cost and roofline in one report.

:func:`run_bench` measures one configuration (backend x precision x input size) or several side
by side (``compare``) and returns a JSON-able dict; :func:`model_cost` and :func:`roofline_for`
are the no-timing parts (``--cost-only``). Conventions:

* **Speed.** A synthetic street frame (BGR uint8) goes through the :class:`Segmenter` methods.
  Warm-up runs until both ``warmup_s`` and ``min_warmup`` calls have passed
  (:func:`~edgeseg.bench.timing.time_callable`). ``latency_ms`` and ``fps`` time
  ``infer`` alone (network in, network out, host copies included); a second loop of as many
  frames times preprocess / inference / postprocess and the whole frame with a
  :class:`~edgeseg.bench.timing.StageTimer`, giving ``stages_ms`` and ``e2e_fps``. On CUDA
  (torch, TensorRT) ``latency_ms`` are CUDA-event times on the stream that does the work; the
  stage loop is host time with a synchronise after every stage.
* **Rounds.** The budget (``duration_s`` or ``iters``) is split into ``rounds`` rounds
  (default 3); each round times every configuration in turn (inference loop, then the staged
  loop), so load from other processes hits all configurations and both loops alike. Samples
  are pooled; with several configurations ``speedup`` is the median over rounds of the
  per-round ratio of mean latencies against the first configuration.
* **Power** comes from :func:`~edgeseg.bench.power.auto_sampler` over the inference windows:
  average W, energy per frame, FPS/W, or ``"n/a (reason)"``. The Jetson power mode and
  jetson_clocks state are stamped, with a warning when clocks are not locked.
* **Cost** needs the architecture, not the weights: the checkpoint's or ``--random-init``
  model, or the variant named in an ONNX / engine's metadata rebuilt untrained. GFLOPs count a
  multiply-add as 2; CIO is HarDNet's sum of conv inputs + outputs (elements), per component
  (:data:`edgeseg.models.summary.COMPONENTS`); DRAM = CIO x bytes/element at the precision +
  the convolutions' weights at the same precision (BatchNorm folds into them on export).
* **Roofline**: the profile's dense peak at the precision and its DRAM bandwidth give
  ``latency_floor_ms = max(gflops / peak, dram_mb / bandwidth)``; where the profile leaves a
  figure null (x86-cpu) it is measured here (torch fp32 matmul, large-tensor copy bandwidth).
* **Efficiency** = achieved GFLOP/s (``gflops`` / mean inference latency) / this machine's fp32
  matmul GFLOP/s (:func:`~edgeseg.bench.timing.matmul_gflops`, same threads, on the backend's
  device), measured before and after the timed loops; the higher of the two is used, so
  noise can only make efficiency look worse.
* **Overhead** of the measurement itself (``overhead_pct``): the timer's cost per sample (an
  empty callable timed through the same loop) relative to the mean latency, plus the CPU time
  the power sampler thread used relative to the window (its share of the machine it competes
  for).

Backends and artifacts: torch runs the checkpoint / random-init model, or the architecture
rebuilt from an ONNX or engine's metadata (untrained: speed does not depend on the weights; a
warning says so). onnxruntime runs the given ONNX, or one exported here from the torch model
(``dcn="native"``, i.e. ONNX DeformConv, which onnxruntime runs faster on CPU than the
portable GridSample graph; no parity check, which `edgeseg export` does). INT8 onnxruntime runs
``onnx_int8`` when given, else a Q/DQ ONNX built here by :mod:`edgeseg.deploy.quantize` from
the fp32 ONNX and :data:`INT8_CALIBRATION_FRAMES` synthetic street scenes, with the
onnxruntime settings `edgeseg calibrate` picks for this CPU (enough for a speed measurement:
the graph and kernels are the same; calibrate on real frames with `edgeseg calibrate` for
accuracy). TensorRT runs the given
engine only.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg import __version__
from edgeseg.errors import EdgesegError

__all__ = [
    "BACKENDS",
    "INT8_CALIBRATION_FRAMES",
    "PRECISIONS",
    "BenchConfig",
    "measure_dram_gbs",
    "measure_overhead",
    "model_cost",
    "parse_compare",
    "parse_config",
    "roofline_for",
    "run_bench",
    "synthetic_frame",
    "versions",
]

BACKENDS = ("torch", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_HW = (512, 1024)
DEFAULT_ROUNDS = 3  # interleaving rounds
ROUND_WARMUP_S = 0.25  # re-warm-up at the start of rounds after the first (and >= 1 call)
INT8_CALIBRATION_FRAMES = 8
MIN_ITERS = 10  # timed calls per configuration at least (percentiles need a few)
_DEFAULT_WARMUP_S, _DEFAULT_DURATION_S = 1.0, 3.0  # without a profile

Step = Callable[[str], None]


# ---------------------------------------------------------------------------------------------
# Configurations


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


def _hw(text: str, what: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise EdgesegError(f"{what}: expected HxW such as 512x1024, got '{text}'") from None
    if h < 32 or w < 32:
        raise EdgesegError(f"{what}: {h}x{w} is too small (at least 32x32)")
    return h, w


def parse_config(spec: str) -> BenchConfig:
    """``backend[:precision][@HxW]``, e.g. ``onnxruntime:int8@256x512``."""
    s = spec.strip()
    if not s:
        raise EdgesegError("--compare: empty configuration (two commas in a row?)")
    size = None
    if "@" in s:
        s, _, size_s = s.partition("@")
        size = _hw(size_s, f"--compare {spec}")
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


# ---------------------------------------------------------------------------------------------
# Model cost and roofline


def _meta_twin(model: Any) -> Any:
    """A copy of ``model`` on the meta device (no memory, no compute) for shape-level counting."""
    from edgeseg.models.desanet import DESANet, build_model

    if isinstance(model, DESANet):
        twin = build_model(model.variant, num_classes=model.num_classes, aux=False)
    else:
        twin = copy.deepcopy(model)
    twin = twin.to("meta").eval()
    if hasattr(twin, "set_dcn_impl"):
        twin.set_dcn_impl("portable")  # torchvision's kernel has no meta implementation
    return twin


def _gflops(model: Any, twin: Any, height: int, width: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from edgeseg.models.desanet import DESANet
    from edgeseg.models.summary import count_gflops

    if isinstance(model, DESANet):
        return count_gflops(model, height, width)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        twin(torch.empty(1, 3, height, width, device="meta"))
    return counter.get_total_flops() / 1e9


def model_cost(
    model: Any, height: int, width: int, precision: str = "fp32", *, rows: bool = False
) -> dict[str, Any]:
    """Parameters, GFLOPs, CIO (total and per component) and the DRAM estimate of one frame.

    Counting runs on a meta-device twin of the architecture, so it takes no memory or compute
    and the weights do not matter.

    Returns:
        ``params`` (inference graph), ``gflops``, ``cio_elements``, ``cio_by_component``
        (``{component: {cio, layers, macs, params}}``), ``conv_params``, ``dram_mb`` (at
        ``precision``), ``dram_mb_by_precision``, ``layers``; with ``rows`` also
        ``cio_rows`` (one per convolution call: name, kind, component, shapes, cio, macs).
    """
    from edgeseg.bench.cio import BYTES_PER_ELEMENT, bytes_per_element, conv_cio
    from edgeseg.models.desanet import DESANet
    from edgeseg.models.summary import component_of

    bytes_per_element(precision)  # validates
    if height < 16 or width < 16:
        raise EdgesegError(f"input size {height}x{width} is too small for the cost count")
    twin = _meta_twin(model)
    report = conv_cio(twin, (1, 3, height, width))
    if isinstance(model, DESANet):  # paper components instead of the first name segment
        # COMPONENTS holds parameter-name prefixes ("classifier."): a module name plus "." is one
        report.rows = [replace(r, component=component_of(r.name + ".")) for r in report.rows]
    if hasattr(model, "inference_parameters"):
        params = int(model.inference_parameters())
    else:
        params = sum(p.numel() for p in model.parameters())
    comps = {
        k: {"cio": v["cio"], "layers": v["layers"], "macs": v["macs"], "params": v["params"]}
        for k, v in report.components.items()
    }
    out: dict[str, Any] = {
        "model": getattr(model, "variant", type(model).__name__),
        "input_hw": [height, width],
        "precision": precision,
        "params": params,
        "gflops": _gflops(model, twin, height, width),
        "cio_elements": report.cio,
        "cio_by_component": comps,
        "conv_params": report.params,
        "dram_mb": report.dram_mb(precision),
        "dram_mb_by_precision": {p: report.dram_mb(p) for p in BYTES_PER_ELEMENT},
        "layers": len(report.rows),
    }
    if rows:
        out["cio_rows"] = [
            {
                "name": r.name,
                "kind": r.kind,
                "component": r.component,
                "in_shape": list(r.in_shape),
                "out_shape": list(r.out_shape),
                "cio": r.cio,
                "macs": r.macs,
            }
            for r in report.rows
        ]
    return out


def measure_dram_gbs(mb: int = 128, seconds: float = 0.5) -> dict[str, Any]:
    """Copy bandwidth of this machine: ``dst.copy_(src)`` of ``mb`` MB tensors (torch threads).

    Counts 2 x size per copy (read + write; write-allocate traffic is not added), median rate
    over the calls in ``seconds``. A stand-in for the DRAM roof where the profile has none.
    """
    import torch

    n = mb * 1_000_000 // 4
    src = torch.ones(n, dtype=torch.float32)
    dst = torch.empty_like(src)
    dst.copy_(src)  # first touch
    rates: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(rates) < 3 or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        dst.copy_(src)
        rates.append(2 * n * 4 / (time.perf_counter() - t0) / 1e9)
    return {
        "gbs": statistics.median(rates),
        "method": f"torch copy of {mb} MB, 2 x bytes per copy, median of {len(rates)}",
        "threads": torch.get_num_threads(),
    }


def _profile_peak(profile: Any, precision: str) -> float | None:
    if profile is None:
        return None
    return profile.device.peak_tflops.get(precision)


def roofline_for(
    cost: dict[str, Any],
    profile: Any,
    precision: str,
    *,
    measured: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Latency floor and FPS ceiling of ``cost`` at ``precision`` on the profile's device.

    ``measured`` supplies ``{"matmul": matmul_gflops(...), "dram": measure_dram_gbs()}`` for
    figures the profile leaves null (and for no profile at all); the result names where each
    roof came from.
    """
    from edgeseg.bench.cio import bytes_per_element
    from edgeseg.bench.roofline import roofline

    bytes_per_element(precision)
    peak = _profile_peak(profile, precision)
    bw = profile.device.dram_gbs if profile is not None else None
    where = f"profile {profile.name}" if profile is not None else "no profile"
    if peak is not None:
        peak_source = f"{where}: device.peak_tflops.{precision}"
    else:
        if not measured or "matmul" not in measured:
            raise EdgesegError(f"{where} has no {precision} peak and none was measured")
        mm = measured["matmul"]
        peak = mm["gflops"] / 1000.0
        peak_source = (
            f"measured {mm['dtype']} matmul ({mm['backend']} on {mm['device']}, "
            f"{mm.get('threads') or '?'} threads)"
        )
        if precision != "fp32":
            peak_source += f"; no {precision} peak known" + (
                f" in {where}" if profile is not None else "")
    if bw is not None:
        bw_source = f"{where}: device.dram_gbs"
    else:
        if not measured or "dram" not in measured:
            raise EdgesegError(f"{where} has no DRAM bandwidth and none was measured")
        bw = measured["dram"]["gbs"]
        bw_source = "measured " + measured["dram"]["method"]
    dram_mb = cost["dram_mb_by_precision"][precision] if "dram_mb_by_precision" in cost else cost["dram_mb"]
    r = roofline(cost["gflops"], dram_mb, peak, bw)
    r.update(
        device=profile.device.name if profile is not None else "this machine",
        precision=precision,
        gflops=cost["gflops"],
        dram_mb=dram_mb,
        peak_tflops=peak,
        dram_gbs=bw,
        peak_source=peak_source,
        bw_source=bw_source,
    )
    return r


def _needs_measured(profile: Any, precisions: Sequence[str]) -> tuple[bool, bool]:
    """(matmul needed, bandwidth needed) for the roofline at these precisions."""
    peaks = any(_profile_peak(profile, p) is None for p in precisions)
    bw = profile is None or profile.device.dram_gbs is None
    return peaks, bw


# ---------------------------------------------------------------------------------------------
# Environment


def versions() -> dict[str, Any]:
    """Versions of the Python stack that the numbers depend on (None = not installed)."""
    out: dict[str, Any] = {
        "edgeseg": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    for mod in ("torch", "torchvision", "onnx", "onnxruntime", "cv2"):
        if mod in sys.modules or _importable(mod):
            try:
                m = __import__(mod)
                out["opencv" if mod == "cv2" else mod] = getattr(m, "__version__", "?")
            except Exception:  # noqa: BLE001 - a broken optional install is just absent
                out["opencv" if mod == "cv2" else mod] = None
        else:
            out["opencv" if mod == "cv2" else mod] = None
    if _importable("tensorrt"):
        try:
            import tensorrt

            out["tensorrt"] = tensorrt.__version__
        except Exception:  # noqa: BLE001 - the PyPI stub raises on import
            out["tensorrt"] = None
    else:
        out["tensorrt"] = None
    return out


def _importable(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def machine() -> dict[str, Any]:
    """CPU model, cores, GPU (when torch sees one) and load average at the start."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    out: dict[str, Any] = {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
    }
    with contextlib.suppress(AttributeError):
        out["usable_cpus"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, AttributeError):
        out["load_avg_1m"] = round(os.getloadavg()[0], 2)
    model = Path("/proc/device-tree/model")
    with contextlib.suppress(OSError):
        out["board"] = model.read_bytes().decode("utf-8", "replace").strip("\x00 \n")
    try:
        import torch

        if torch.cuda.is_available():
            out["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return out


def _reset_peak_rss() -> bool:
    """Restart the kernel's peak-RSS counter (VmHWM) of this process; False where it can't."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _is_jetson(profile: Any) -> bool:
    if profile is not None and profile.device.kind == "jetson":
        return True
    return Path("/etc/nv_tegra_release").exists()


def synthetic_frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A BGR uint8 street scene (the synthetic generator), else smooth noise."""
    rng = np.random.default_rng(seed)
    try:
        from edgeseg.data.synthetic import generate_scene

        rgb, _ = generate_scene(rng, height, width)
        return np.ascontiguousarray(rgb[:, :, ::-1])
    except (ImportError, EdgesegError):
        return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------
# Model sources and segmenters


@dataclass
class _Source:
    """Where the model comes from, and (lazily) its torch module."""

    kind: str  # checkpoint | random | onnx | engine
    path: Path | None
    meta: Any  # ModelMeta
    model: Any = None  # nn.Module when loaded / built
    rebuilt: bool = False  # model is the architecture rebuilt untrained from metadata

    @property
    def variant(self) -> str:
        return str(self.meta.variant)

    @property
    def description(self) -> str:
        if self.kind == "random":
            return f"random-init {self.variant}"
        return f"{self.path} ({self.kind}, {self.variant})"

    def torch_model(self) -> Any:
        """The torch module: trained weights for a checkpoint, else an untrained network."""
        if self.model is None:
            from edgeseg.models.desanet import build_model

            self.model = build_model(
                self.variant, num_classes=len(self.meta.classes), aux=False
            ).eval()
            self.rebuilt = True
        return self.model


def _resolve_source(
    weights: Path | None, onnx: Path | None, engine: Path | None,
    random_init: bool, model: str | None, step: Step, cost_only: bool = False,
) -> _Source:
    from edgeseg.runtime.base import ModelMeta

    given = [n for n, v in (("--weights", weights), ("--onnx", onnx), ("--engine", engine)) if v]
    if random_init:
        given.append("--random-init")
    if not given:
        raise EdgesegError(
            "no model: give --weights CKPT, --onnx FILE, --engine FILE, or --random-init "
            "--model VARIANT"
        )
    if len(given) > 1:
        raise EdgesegError(f"give one model source, not {' and '.join(given)}")
    if model is not None and not random_init:
        raise EdgesegError("--model goes with --random-init; artifacts name their own variant")
    if random_init:
        if model is None:
            raise EdgesegError("--random-init needs --model (desanet-hn or desanet-rn)")
        from edgeseg.models.desanet import VARIANTS, build_model
        from edgeseg.train.checkpoint import default_meta

        if model not in VARIANTS:
            raise EdgesegError(f"unknown model '{model}': expected one of {', '.join(VARIANTS)}")
        step(f"building an untrained {model}")
        return _Source("random", None, default_meta(model, DEFAULT_HW),
                       build_model(model, aux=False).eval())
    path = Path(weights or onnx or engine)  # type: ignore[arg-type]
    what = {"--weights": "checkpoint", "--onnx": "ONNX file", "--engine": "engine"}[given[0]]
    if not path.is_file():
        raise EdgesegError(f"{what} not found: {path}")
    if weights is not None:
        from edgeseg.train.checkpoint import load_model

        step(f"loading {path.name}")
        loaded, ckpt_meta = load_model(path)
        return _Source("checkpoint", path, ckpt_meta, loaded)
    if onnx is not None:
        from edgeseg.deploy.artifact import read_onnx_metadata

        return _Source("onnx", path, read_onnx_metadata(path))
    # An engine: to run it TensorRT must be importable before anything else is worth doing;
    # its cost needs only the sidecar's metadata.
    if not cost_only:
        from edgeseg.deploy.tensorrt import require_tensorrt

        require_tensorrt()
    from edgeseg.deploy.sidecar import EngineSidecar
    from edgeseg.runtime.tensorrt_backend import meta_from_sidecar

    engine_meta: ModelMeta = meta_from_sidecar(EngineSidecar.read(path))
    return _Source("engine", path, engine_meta)


class _Artifacts:
    """ONNX files exported / quantized during this run, cached by (precision, size)."""

    def __init__(
        self, source: _Source, dcn: str, onnx_int8: Path | None, threads: int | None, step: Step,
    ) -> None:
        self.source, self.dcn, self.onnx_int8, self.step = source, dcn, onnx_int8, step
        self.threads = threads
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._files: dict[tuple[str, int, int], Path] = {}

    @property
    def workdir(self) -> Path:
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="edgeseg-bench-")
        return Path(self._dir.name)

    def close(self) -> None:
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def _given_onnx(self, precision: str, hw: tuple[int, int]) -> Path | None:
        src = self.source
        if src.kind != "onnx" or src.path is None or src.meta.precision != precision:
            return None
        dynamic = bool(src.meta.extra.get("dynamic"))
        if tuple(src.meta.input_hw) != hw and not dynamic:
            raise EdgesegError(
                f"{src.path.name} is fixed at {src.meta.input_hw[0]}x{src.meta.input_hw[1]}; "
                f"to bench {hw[0]}x{hw[1]} give --weights or --random-init (exported here), or "
                "export the ONNX with --dynamic"
            )
        return src.path

    def onnx(self, precision: str, hw: tuple[int, int]) -> Path:
        """An ONNX of the model at ``precision`` and ``hw``: given, or made here."""
        given = self._given_onnx(precision, hw)
        if given is not None:
            return given
        key = (precision, *hw)
        if key in self._files:
            return self._files[key]
        if precision == "int8":
            path = self._int8(hw)
        else:
            if self.source.kind in ("onnx", "engine"):
                raise EdgesegError(
                    f"onnxruntime {precision} at {hw[0]}x{hw[1]} needs an ONNX of that precision "
                    f"and size; {self.source.path} is not one: give --weights or --random-init "
                    "to export it here"
                )
            from edgeseg.deploy.onnx import export_onnx

            path = self.workdir / f"{self.source.variant}-{precision}-{hw[0]}x{hw[1]}.onnx"
            self.step(f"exporting {path.name} (dcn {self.dcn})")
            export_onnx(
                self.source.torch_model(), self.source.meta, path, height=hw[0], width=hw[1],
                dcn=self.dcn, fp16=precision == "fp16", parity=False,
            )
        self._files[key] = path
        return path

    def _int8(self, hw: tuple[int, int]) -> Path:
        if self.onnx_int8 is not None:
            from edgeseg.deploy.artifact import read_onnx_metadata

            m = read_onnx_metadata(self.onnx_int8)
            if tuple(m.input_hw) != hw and not m.extra.get("dynamic"):
                raise EdgesegError(
                    f"--onnx-int8 {self.onnx_int8.name} is fixed at "
                    f"{m.input_hw[0]}x{m.input_hw[1]}, not {hw[0]}x{hw[1]}"
                )
            return self.onnx_int8
        fp32 = self.onnx("fp32", hw)
        out = self.workdir / f"{self.source.variant}-int8-{hw[0]}x{hw[1]}.onnx"
        self.step(f"quantizing {out.name} ({INT8_CALIBRATION_FRAMES} synthetic frames)")
        _quantize(fp32, out, hw, self.workdir, self.threads)
        return out


def _quantize(fp32: Path, out: Path, hw: tuple[int, int], workdir: Path,
              threads: int | None) -> None:
    """INT8 Q/DQ ONNX of ``fp32`` by :func:`edgeseg.deploy.quantize.calibrate` (onnxruntime
    settings for this CPU) on :data:`INT8_CALIBRATION_FRAMES` synthetic street scenes."""
    import cv2

    try:
        from edgeseg.deploy.quantize import QDQ_NAME, calibrate
    except ImportError:
        raise EdgesegError(
            "onnxruntime int8 needs an INT8 Q/DQ ONNX: give --onnx-int8 FILE (this install has "
            "no edgeseg.deploy.quantize to build one)"
        ) from None
    frames = workdir / f"calibration-{hw[0]}x{hw[1]}"
    frames.mkdir(parents=True, exist_ok=True)
    for i in range(INT8_CALIBRATION_FRAMES):
        cv2.imwrite(str(frames / f"scene{i:02d}.png"), synthetic_frame(*hw, seed=100 + i))
    qdir = workdir / f"int8-{hw[0]}x{hw[1]}"
    calibrate(
        images=frames, out=qdir, onnx=fp32, profile="x86-cpu", num=INT8_CALIBRATION_FRAMES,
        holdout=0, runs=0, threads=threads,
    )
    os.replace(qdir / QDQ_NAME, out)


def _open_segmenter(
    config: BenchConfig, hw: tuple[int, int], source: _Source, arts: _Artifacts,
    threads: int | None, warn: Callable[[str], None],
) -> Any:
    from edgeseg.runtime import open_segmenter

    if config.backend == "torch":
        import torch

        from edgeseg.runtime.base import ModelMeta
        from edgeseg.runtime.torch_backend import TorchSegmenter

        if config.precision == "int8":
            raise EdgesegError(
                "torch runs fp32 (fp16 on CUDA); INT8 runs in onnxruntime (Q/DQ ONNX) or TensorRT"
            )
        device = "cuda" if torch.cuda.is_available() else "cpu"
        if config.precision == "fp16" and device != "cuda":
            raise EdgesegError("torch fp16 needs a CUDA GPU; this machine has none")
        model = source.torch_model()
        if source.rebuilt:
            warn(
                f"torch runs {source.variant} rebuilt untrained from {source.path} metadata "
                "(speed does not depend on the weights)"
            )
        meta = ModelMeta.from_dict(source.meta.to_dict())
        return TorchSegmenter(model, meta, device=device, fp16=config.precision == "fp16",
                              input_hw=hw)
    if config.backend == "onnxruntime":
        path = arts.onnx(config.precision, hw)
        opts: dict[str, Any] = {"threads": threads}
        from edgeseg.deploy.artifact import read_onnx_metadata

        if tuple(read_onnx_metadata(path).input_hw) != hw:
            opts["input_hw"] = hw
        return open_segmenter(path, backend="onnxruntime", **opts)
    # tensorrt
    if source.kind != "engine" or source.path is None:
        from edgeseg.deploy.tensorrt import require_tensorrt

        require_tensorrt()
        raise EdgesegError(
            "tensorrt runs a built engine: give --engine FILE (build one with "
            "`edgeseg export --format engine`)"
        )
    if source.meta.precision != config.precision:
        raise EdgesegError(
            f"{source.path.name} is a {source.meta.precision} engine, not {config.precision}"
        )
    if tuple(source.meta.input_hw) != hw:
        raise EdgesegError(
            f"{source.path.name} is built for {source.meta.input_hw[0]}x"
            f"{source.meta.input_hw[1]}, not {hw[0]}x{hw[1]}"
        )
    return open_segmenter(source.path, backend="tensorrt")


# ---------------------------------------------------------------------------------------------
# Timing one configuration (several rounds when interleaved)


def _cuda_sync_and_timer(seg: Any) -> tuple[Callable[[], Any] | None, Any, str]:
    """(sync, timer factory, timer name) for the segmenter's device."""
    device = getattr(seg, "device", None)
    on_cuda = getattr(device, "type", None) == "cuda" or seg.backend == "tensorrt"
    if not on_cuda:
        return None, None, "perf_counter (host)"
    import torch

    from edgeseg.bench.timing import cuda_event_timer

    stream = getattr(seg, "stream", None)  # TensorRT's own stream; torch: the current one
    return torch.cuda.synchronize, (lambda: cuda_event_timer(stream)), "cuda events (device)"


def _thread_cpu_s(ident: int | None) -> float | None:
    if ident is None:
        return None
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(ident))
    except (AttributeError, OSError, ProcessLookupError):
        return None


@contextlib.contextmanager
def _sampler_cpu(sampler: Any, out: list[float]) -> Iterator[None]:
    """Inside an entered sampler: append the CPU seconds its thread used during the block."""
    prefix = f"power-{sampler.name}"
    thread = next((t for t in threading.enumerate() if t.name == prefix and t.is_alive()), None)
    ident = thread.ident if thread is not None else None
    t0 = _thread_cpu_s(ident)
    try:
        yield
    finally:
        t1 = _thread_cpu_s(ident)
        if t0 is not None and t1 is not None:
            out.append(t1 - t0)


@dataclass
class _Run:
    """Everything measured for one configuration across rounds."""

    config: BenchConfig
    hw: tuple[int, int]
    seg: Any
    frame: np.ndarray
    batch: np.ndarray
    sync: Callable[[], Any] | None
    timer_factory: Any
    timer_name: str
    infer_ms: list[float] = field(default_factory=list)
    round_means: list[float] = field(default_factory=list)
    stages: Any = None  # StageTimer
    warmup_iters: int = 0
    warmup_s: float = 0.0
    window_s: float = 0.0
    sampler_cpu_s: list[float] = field(default_factory=list)
    power: list[Any] = field(default_factory=list)  # PowerResult per round

    def warm_e2e(self) -> None:
        x = self.seg.preprocess(self.frame)
        self.seg.postprocess(self.seg.infer(x), self.frame.shape[:2])
        if self.sync is not None:
            self.sync()

    def time_round(
        self, *, first: bool, warmup_s: float, min_warmup: int, duration_s: float | None,
        iters: int | None, min_iters: int, sampler: Any, seed: int,
    ) -> None:
        from edgeseg.bench.timing import StageTimer, time_callable

        seg, batch, frame = self.seg, self.batch, self.frame
        infer = seg.infer

        def one() -> Any:
            return infer(batch)

        cpu: list[float] = []
        with sampler, _sampler_cpu(sampler, cpu):
            t0 = time.perf_counter()
            res = time_callable(
                one,
                # later rounds re-warm briefly: caches, and the thread pool of the previous
                # configuration may still be spinning on the cores
                warmup_s=warmup_s if first else min(warmup_s, ROUND_WARMUP_S),
                min_warmup=min_warmup if first else 1,
                duration_s=duration_s,
                iters=iters,
                min_iters=min_iters,
                sync=self.sync,
                timer=self.timer_factory() if self.timer_factory is not None else None,
                seed=seed,
            )
            window = time.perf_counter() - t0 - res.warmup_s
        self.power.append(sampler.result)
        self.sampler_cpu_s.extend(cpu)
        self.window_s += window
        if first:
            self.warmup_iters, self.warmup_s = res.warmup_iters, res.warmup_s
        self.infer_ms.extend(res.samples_ms)
        self.round_means.append(res.stats.mean_ms)

        if self.stages is None:
            self.stages = StageTimer(sync=self.sync)
        st = self.stages
        self.warm_e2e()
        size = frame.shape[:2]
        pre, inf, post, whole = (
            st.stage("preprocess"), st.stage("inference"), st.stage("postprocess"), st.frame()
        )
        for _ in range(len(res.samples_ms)):
            with whole:
                with pre:
                    x = seg.preprocess(frame)
                with inf:
                    y = infer(x)
                with post:
                    seg.postprocess(y, size)


def _stat_dict(stats: Any) -> dict[str, Any]:
    return {
        "min": stats.min_ms,
        "mean": stats.mean_ms,
        "p50": stats.p50_ms,
        "p90": stats.p90_ms,
        "p95": stats.p95_ms,
        "p99": stats.p99_ms,
        "max": stats.max_ms,
        "std": stats.std_ms,
        "ci95": list(stats.ci95_ms),
        "n": stats.n,
        "outliers": stats.outliers,
    }


def _merge_power(results: Sequence[Any]) -> dict[str, Any]:
    """One power figure over several windows: energy and duration add up."""
    ok = [r for r in results if r is not None and r.available and r.duration_s]
    if not ok:
        first = next((r for r in results if r is not None), None)
        reason = first.reason if first is not None and first.reason else "no readings"
        return {"available": False, "source": first.source if first else "none",
                "reason": reason, "avg_w": None}
    energy = sum(r.energy_j for r in ok)
    duration = sum(r.duration_s for r in ok)
    rails: dict[str, list[float]] = {}
    for r in ok:
        for k, v in r.rails_w.items():
            rails.setdefault(k, []).append(v)
    return {
        "available": True,
        "source": ok[0].source,
        "reason": None,
        "avg_w": energy / duration if duration > 0 else ok[0].avg_w,
        "energy_j": energy,
        "duration_s": duration,
        "n_samples": sum(len(r.samples) for r in ok),
        "rails_w": {k: statistics.fmean(v) for k, v in rails.items()},
        "meta": dict(ok[0].meta),
    }


def measure_overhead(n: int = 3000) -> dict[str, float]:
    """The cost of the measurement machinery itself, per timed call and per staged frame.

    ``timer_ms``: median latency that :func:`time_callable` reports for an empty callable
    (clock reads + call dispatch: the bias in every latency sample); ``loop_ms``: wall time per
    iteration of that loop; ``stage_frame_ms``: median end-to-end time of a frame of three empty
    stages through a :class:`StageTimer` (the bias of the end-to-end figure).
    """
    from edgeseg.bench.timing import StageTimer, time_callable

    def empty() -> None:
        return None

    res = time_callable(empty, warmup_s=0.0, min_warmup=100, iters=n)
    st = StageTimer()
    pre, inf, post, whole = st.stage("preprocess"), st.stage("inference"), st.stage("postprocess"), st.frame()
    for _ in range(n):
        with whole:
            with pre:
                pass
            with inf:
                pass
            with post:
                pass
    frames = st.samples_ms()[StageTimer.END_TO_END]
    return {
        "timer_ms": res.stats.p50_ms,
        "loop_ms": res.wall_s / n * 1000.0,
        "stage_frame_ms": float(np.median(frames)),
    }


# ---------------------------------------------------------------------------------------------
# The report


def _resolve_profile(profile: str | None, warn: Callable[[str], None]) -> Any:
    from edgeseg.profiles import ProfileWarning, load_profile

    if profile is not None:
        return load_profile(profile)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ProfileWarning)
        try:
            prof = load_profile("auto")
        except EdgesegError as e:
            warn(f"no device profile ({e}); roofline from measured peaks")
            return None
    for w in caught:
        if issubclass(w.category, ProfileWarning):
            warn(str(w.message))
    return prof


def _cost_for(
    source: _Source, hw: tuple[int, int], cache: dict[Any, Any], rows: bool
) -> dict[str, Any]:
    if hw not in cache:
        net = source.model if source.model is not None else _arch(source)
        cache[hw] = model_cost(net, hw[0], hw[1], rows=rows)
    return cache[hw]


def _arch(source: _Source) -> Any:
    """The architecture for counting (cheap: no weights are loaded for an ONNX or engine)."""
    from edgeseg.models.desanet import build_model

    return build_model(source.variant, num_classes=len(source.meta.classes), aux=False)


def _threads_info(runs: Sequence[_Run], requested: int | None) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {
        "requested": requested,
        "torch_intra_op": torch.get_num_threads(),
        "torch_inter_op": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
    }
    with contextlib.suppress(AttributeError):
        out["usable_cpus"] = len(os.sched_getaffinity(0))
    for r in runs:
        opts = getattr(r.seg, "options", None)
        if isinstance(opts, dict) and "intra_op_num_threads" in opts:
            out["onnxruntime_intra_op"] = opts["intra_op_num_threads"]
            out["onnxruntime_inter_op"] = opts.get("inter_op_num_threads")
    return out


def _na(reason: str | None) -> str:
    return f"n/a ({reason or 'unknown'})"


def run_bench(
    *,
    weights: str | Path | None = None,
    onnx: str | Path | None = None,
    engine: str | Path | None = None,
    random_init: bool = False,
    model: str | None = None,
    backend: str | None = None,
    profile: str | None = None,
    precision: str | None = None,
    height: int | None = None,
    width: int | None = None,
    warmup_s: float | None = None,
    min_warmup: int = 5,
    duration_s: float | None = None,
    iters: int | None = None,
    threads: int | None = None,
    compare: str | Sequence[str] | None = None,
    rounds: int | None = None,
    cost_only: bool = False,
    onnx_int8: str | Path | None = None,
    frame_hw: tuple[int, int] | None = None,
    dcn: str = "native",
    samples: bool = False,
    reference_s: float = 0.5,
    step: Step | None = None,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Benchmark a model; the library entry of `edgeseg bench`.

    Exactly one model source: ``weights`` (checkpoint), ``onnx``, ``engine`` or
    ``random_init`` with ``model``. ``compare`` (``"torch:fp32,onnxruntime:int8@256x512"``)
    measures several configurations; otherwise one: ``backend`` (default: the artifact's own)
    at ``precision``. Timing is split into ``rounds`` interleaved rounds (default 3).

    Defaults: input size = ``height``/``width``, else the ONNX/engine's fixed size, else the
    explicitly given profile's deploy size, else the checkpoint's, else 512x1024. Precision =
    ``precision``, else the ONNX/engine's, else (``cost_only`` with an explicit profile) the
    profile's deploy precision, else fp32. Warm-up and duration from the profile's ``bench``
    section (``iters`` replaces the duration). ``profile`` None = auto-detect.

    Returns a JSON-able dict (see the module docstring); one configuration gives a flat dict
    with ``backend``, ``precision``, ``input_hw``, ``latency_ms``, ``fps``, ``e2e_fps``,
    ``stages_ms``, ``memory``, ``power_w``, ``energy_mj_per_frame``, ``params``, ``gflops``,
    ``cio_elements``, ``dram_mb``, ``roofline``, ``efficiency``, ``versions``, ``threads``,
    ``overhead_pct`` ...; several give ``{"configs": [...], "speedup": {...}, ...}``. With
    ``samples`` each configuration also carries ``samples_ms`` and ``cio_rows`` (for plots).
    ``reference_s``: seconds of each fp32 matmul measurement (before and after the timed
    loops) and of the copy-bandwidth measurement.
    """
    say = step or (lambda _m: None)
    notes: list[str] = []

    def note(msg: str) -> None:
        if msg not in notes:
            notes.append(msg)
        if warn is not None:
            warn(msg)

    # -- arguments that need nothing loaded ---------------------------------------------------
    if backend is not None and backend not in BACKENDS:
        raise EdgesegError(f"--backend: expected one of {', '.join(BACKENDS)}, got '{backend}'")
    if precision is not None and precision not in PRECISIONS:
        raise EdgesegError(f"--precision: expected one of {', '.join(PRECISIONS)}, got '{precision}'")
    if duration_s is not None and iters is not None:
        raise EdgesegError("give --duration-s or --iters, not both")
    if iters is not None and iters < 1:
        raise EdgesegError(f"--iters must be >= 1, got {iters}")
    if duration_s is not None and duration_s <= 0:
        raise EdgesegError(f"--duration-s must be > 0, got {duration_s}")
    if warmup_s is not None and warmup_s < 0:
        raise EdgesegError(f"--warmup-s must be >= 0, got {warmup_s}")
    if threads is not None and threads < 1:
        raise EdgesegError(f"--threads must be >= 1, got {threads}")
    if (height is None) != (width is None):
        raise EdgesegError("give --height and --width together")
    if height is not None and width is not None and (height < 32 or width < 32):
        raise EdgesegError(f"input size {height}x{width} is too small (at least 32x32)")
    if dcn not in ("native", "portable"):
        raise EdgesegError(f"dcn: expected native or portable, got '{dcn}'")
    if reference_s <= 0:
        raise EdgesegError(f"reference_s must be > 0, got {reference_s}")
    configs_in = parse_compare(compare) if compare else None
    if configs_in is not None and (backend is not None or precision is not None):
        raise EdgesegError("--compare lists backend:precision itself; drop --backend/--precision")
    if onnx_int8 is not None and not Path(onnx_int8).is_file():
        raise EdgesegError(f"--onnx-int8 file not found: {onnx_int8}")
    wanted = [c.backend for c in configs_in] if configs_in else [backend] if backend else []
    if "tensorrt" in wanted and not cost_only:
        from edgeseg.deploy.tensorrt import require_tensorrt

        require_tensorrt()  # MissingDependencyError: one line, before any model loads

    source = _resolve_source(
        Path(weights) if weights else None, Path(onnx) if onnx else None,
        Path(engine) if engine else None, random_init, model, say, cost_only,
    )
    prof = _resolve_profile(profile, note)

    # -- configurations ------------------------------------------------------------------------
    fixed_hw = tuple(source.meta.input_hw) if source.kind in ("onnx", "engine") else None
    if fixed_hw is not None and source.kind == "onnx" and source.meta.extra.get("dynamic"):
        fixed_hw = None
    if height is not None and width is not None:
        hw: tuple[int, int] = (height, width)
    elif fixed_hw is not None:
        hw = (int(fixed_hw[0]), int(fixed_hw[1]))
    elif profile is not None and prof is not None:
        hw = prof.deploy.input_hw
    elif source.kind == "checkpoint":
        hw = tuple(source.meta.input_hw)  # type: ignore[assignment]
    else:
        hw = DEFAULT_HW
    own = {"checkpoint": "torch", "random": "torch", "onnx": "onnxruntime", "engine": "tensorrt"}
    if precision is None:
        if source.kind in ("onnx", "engine"):
            precision = str(source.meta.precision)
        elif cost_only and profile is not None and prof is not None:
            precision = prof.deploy.precision
        else:
            precision = "fp32"
    configs = configs_in or [BenchConfig(backend or own[source.kind], precision)]
    configs = [c if c.height else replace(c, height=hw[0], width=hw[1]) for c in configs]
    n_rounds = rounds or DEFAULT_ROUNDS
    if n_rounds < 1:
        raise EdgesegError(f"rounds must be >= 1, got {n_rounds}")
    if iters is not None:
        n_rounds = max(1, min(n_rounds, iters))

    # -- cost and roofline ---------------------------------------------------------------------
    import torch

    torch_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _bench_configs(
            configs, hw, source, prof, cost_only, threads, onnx_int8, dcn, frame_hw, n_rounds,
            warmup_s, min_warmup, duration_s, iters, samples, reference_s, notes, note, say,
        )
    finally:
        torch.set_num_threads(torch_threads)  # library callers keep their own setting


def _bench_configs(
    configs: list[BenchConfig], hw: tuple[int, int], source: _Source, prof: Any,
    cost_only: bool, threads: int | None, onnx_int8: str | Path | None, dcn: str,
    frame_hw: tuple[int, int] | None, n_rounds: int, warmup_s: float | None, min_warmup: int,
    duration_s: float | None, iters: int | None, samples: bool, reference_s: float,
    notes: list[str], note: Callable[[str], None], say: Step,
) -> dict[str, Any]:
    import torch

    from edgeseg.bench.timing import matmul_gflops

    say("counting GFLOPs and CIO")
    costs: dict[Any, Any] = {}
    need_mm, need_bw = _needs_measured(prof, [c.precision for c in configs])
    cuda = torch.cuda.is_available()
    devices = sorted({_device_of(c, cuda) for c in configs})
    if not cost_only and any(_roof_profile(prof, c, cuda) is None for c in configs):
        need_bw = True  # a CPU configuration beside a GPU profile: this CPU's own roofs
    measured: dict[str, Any] = {"matmul": {}}

    if cost_only:
        if need_mm:
            say("measuring the fp32 matmul rate")
            measured["matmul"] = {d: matmul_gflops(seconds=2 * reference_s, device=d)
                                  for d in devices}
        if need_bw:
            say("measuring copy bandwidth")
            measured["dram"] = measure_dram_gbs(seconds=reference_s)
        results = []
        for c in configs:
            h, w = c.height or hw[0], c.width or hw[1]
            cost = _cost_for(source, (h, w), costs, samples)
            results.append(_result_skeleton(c, (h, w), source, prof, prof, cost,
                                            _measured_for(measured, c, cuda), cost_only=True))
        return _finish(results, notes, prof, measured, None, samples)

    # -- open every configuration --------------------------------------------------------------
    arts = _Artifacts(source, dcn, Path(onnx_int8) if onnx_int8 else None, threads, say)
    runs: list[_Run] = []
    try:
        for c in configs:
            h, w = c.height or hw[0], c.width or hw[1]
            say(f"opening {c.label}")
            seg = _open_segmenter(c, (h, w), source, arts, threads, note)
            fhw = frame_hw or (h, w)
            frame = synthetic_frame(*fhw)
            sync, timer_factory, timer_name = _cuda_sync_and_timer(seg)
            batch = seg.preprocess(frame)
            runs.append(_Run(c, (h, w), seg, frame, batch, sync, timer_factory, timer_name))
        return _measure(
            runs, source, prof, costs, measured, need_bw, devices, cuda, n_rounds,
            warmup_s, min_warmup, duration_s, iters, threads, samples, reference_s, notes,
            note, say,
        )
    finally:
        arts.close()


def _device_of(c: BenchConfig, cuda: bool) -> str:
    """Where a configuration computes: onnxruntime here runs on the CPU provider."""
    return "cuda" if cuda and c.backend in ("torch", "tensorrt") else "cpu"


def _measured_for(measured: dict[str, Any], c: BenchConfig, cuda: bool) -> dict[str, Any]:
    """The measured roofs that apply to one configuration (its device's matmul)."""
    out = {k: v for k, v in measured.items() if k != "matmul"}
    mm = measured.get("matmul", {}).get(_device_of(c, cuda))
    if mm is not None:
        out["matmul"] = mm
    return out


def _measure(
    runs: list[_Run], source: _Source, prof: Any, costs: dict[Any, Any], measured: dict[str, Any],
    need_bw: bool, devices: list[str], cuda: bool, n_rounds: int, warmup_s: float | None,
    min_warmup: int, duration_s: float | None, iters: int | None, threads: int | None,
    samples: bool, reference_s: float, notes: list[str], note: Callable[[str], None],
    say: Step,
) -> dict[str, Any]:
    from edgeseg.bench.memory import memory_report, reset_cuda_peak
    from edgeseg.bench.power import auto_sampler, clock_warning, jetson_clock_state
    from edgeseg.bench.timing import matmul_gflops

    w_s = warmup_s if warmup_s is not None else (prof.bench.warmup_s if prof else _DEFAULT_WARMUP_S)
    if iters is None and duration_s is None:
        duration_s = prof.bench.duration_s if prof else _DEFAULT_DURATION_S
    per_round_s = duration_s / n_rounds if duration_s is not None else None
    min_iters = max(1, math.ceil(MIN_ITERS / n_rounds))

    clock_state, clock_reason = jetson_clock_state()
    clock_warn = clock_warning(clock_state)
    if clock_warn:
        note(clock_warn)
    sampler = auto_sampler()

    if need_bw:
        say("measuring copy bandwidth")
        measured["dram"] = measure_dram_gbs(seconds=reference_s)
    say("measuring the fp32 matmul rate")
    mm_before = {d: matmul_gflops(seconds=reference_s, device=d) for d in devices}
    peak_reset = _reset_peak_rss()  # the peak then covers the models and the timed loops only
    reset_cuda_peak()
    done = 0
    for r in range(n_rounds):
        for run in runs:
            done += 1
            say(f"timing {run.config.label} (round {r + 1}/{n_rounds})" if n_rounds > 1
                else f"timing {run.config.label}")
            run.time_round(
                first=r == 0, warmup_s=w_s, min_warmup=min_warmup, duration_s=per_round_s,
                iters=None if iters is None else iters // n_rounds + (r < iters % n_rounds),
                min_iters=min_iters, sampler=sampler, seed=done,
            )
    memory = memory_report(jetson=_is_jetson(prof))
    memory["rss"]["peak_reset_before_timing"] = peak_reset
    for d in devices:  # the better of before and after: noise only lowers the efficiency
        after = matmul_gflops(seconds=reference_s, device=d)
        best = max((mm_before[d], after), key=lambda m: m["gflops"])
        measured["matmul"][d] = {**best, "runs_gflops": [mm_before[d]["gflops"], after["gflops"]]}
    overhead = measure_overhead()
    clocks = {"state": clock_state, "reason": clock_reason, "warning": clock_warn}

    results = []
    for run in runs:
        cost = _cost_for(source, run.hw, costs, samples)
        mine = _measured_for(measured, run.config, cuda)
        res = _result_skeleton(run.config, run.hw, source, prof,
                               _roof_profile(prof, run.config, cuda), cost, mine, cost_only=False)
        _fill_timing(res, run, cost, mine, memory, overhead, sampler, clocks, threads, samples)
        results.append(res)
    speedup = None
    if len(runs) > 1:  # per-round ratios: both sides of each saw the same machine load
        base = runs[0].round_means
        speedup = {
            run.config.label: statistics.median(b / m for b, m in zip(base, run.round_means))
            for run in runs
        }
    return _finish(results, notes, prof, measured, speedup, samples)


def _roof_profile(prof: Any, c: BenchConfig, cuda: bool) -> Any:
    """The profile whose roofs apply to a measured configuration: None (this machine's
    measured CPU roofs) for a CPU run beside a GPU or Jetson profile."""
    if prof is not None and prof.device.kind != "cpu" and _device_of(c, cuda) == "cpu":
        return None
    return prof


def _result_skeleton(
    c: BenchConfig, hw: tuple[int, int], source: _Source, prof: Any, roof_prof: Any,
    cost: dict[str, Any], measured: dict[str, Any], *, cost_only: bool,
) -> dict[str, Any]:
    roof = roofline_for(cost, roof_prof, c.precision, measured=measured)
    res: dict[str, Any] = {
        "config": c.label,
        "backend": c.backend,
        "precision": c.precision,
        "input_hw": list(hw),
        "model": {"variant": source.variant, "source": source.description},
        "profile": prof.name if prof is not None else None,
        "cost_only": cost_only,
        "latency_ms": None,
        "fps": None,
        "e2e_fps": None,
        "stages_ms": None,
        "memory": None,
        "power_w": None,
        "energy_mj_per_frame": None,
        "fps_per_watt": None,
        "params": cost["params"],
        "gflops": cost["gflops"],
        "cio_elements": cost["cio_elements"],
        "cio_by_component": cost["cio_by_component"],
        "dram_mb": cost["dram_mb_by_precision"][c.precision],
        "dram_mb_by_precision": cost["dram_mb_by_precision"],
        "conv_params": cost["conv_params"],
        "roofline": roof,
        "efficiency": None,
        "versions": versions(),
        "threads": None,
        "overhead_pct": None,
    }
    if "cio_rows" in cost:
        res["cio_rows"] = cost["cio_rows"]
    if cost_only:
        res["machine"] = machine()
    return res


def _fill_timing(
    res: dict[str, Any], run: _Run, cost: dict[str, Any], measured: dict[str, Any],
    memory: dict[str, Any], overhead: dict[str, float], sampler: Any, clocks: dict[str, Any],
    threads: int | None, samples: bool,
) -> None:
    from edgeseg.bench.power import energy_per_frame_mj, fps_per_watt
    from edgeseg.bench.roofline import achieved_gflops_per_s
    from edgeseg.bench.timing import LatencyStats

    lat = LatencyStats.from_samples(run.infer_ms)
    stage_stats = run.stages.stats()
    e2e = stage_stats["end_to_end"]
    power = _merge_power(run.power)
    avg_w = power.get("avg_w")
    fps = lat.fps
    achieved = achieved_gflops_per_s(cost["gflops"], lat.mean_ms)
    mm = measured["matmul"]
    sampler_cpu = sum(run.sampler_cpu_s)
    sampler_pct = 100.0 * sampler_cpu / run.window_s if run.window_s > 0 else 0.0
    timer_pct = 100.0 * overhead["timer_ms"] / lat.mean_ms
    stage_pct = 100.0 * overhead["stage_frame_ms"] / e2e.mean_ms
    roof = res["roofline"]
    roof["measured_latency_ms"] = lat.mean_ms
    roof["measured_fps"] = fps
    roof["fraction_of_ceiling"] = fps / roof["fps_ceiling"]
    if roof["fraction_of_ceiling"] > 1.0 and roof["peak_source"].startswith("measured"):
        roof["note"] = ("measured above the ceiling: the measured matmul rate is a lower "
                        "bound of this machine's peak, not the peak itself")
    res.update(
        latency_ms=_stat_dict(lat),
        fps=fps,
        e2e_fps=e2e.fps,
        stages_ms={k: _stat_dict(v) for k, v in stage_stats.items()},
        timing={
            "timer": run.timer_name,
            "iters": lat.n,
            "rounds": len(run.round_means),
            "round_mean_ms": run.round_means,
            "warmup_iters": run.warmup_iters,
            "warmup_s": run.warmup_s,
            "window_s": run.window_s,
            "frame_hw": list(run.frame.shape[:2]),
        },
        memory=memory,
        power={**power, "sampler": sampler.name, "skipped": dict(sampler.skipped)},
        power_w=avg_w if avg_w is not None else _na(power.get("reason")),
        energy_mj_per_frame=(
            energy_per_frame_mj(avg_w, fps) if avg_w is not None else _na(power.get("reason"))
        ),
        fps_per_watt=fps_per_watt(fps, avg_w) if avg_w is not None else _na(power.get("reason")),
        clocks=clocks,
        achieved_gflops_per_s=achieved,
        matmul_gflops=mm["gflops"],
        matmul={k: mm[k] for k in ("gflops", "runs_gflops", "backend", "device", "dtype", "n",
                                    "threads")},
        efficiency=achieved / mm["gflops"],
        backend_info=run.seg.describe(),
        threads=_threads_info([run], threads),
        overhead_pct=timer_pct + sampler_pct,
        overhead={
            **overhead,
            "timer_pct": timer_pct,
            "sampler_cpu_s": sampler_cpu if run.sampler_cpu_s else None,
            "sampler_pct": sampler_pct,
            "sampler_note": (
                "CPU time of the power sampler thread over the timed windows"
                if run.sampler_cpu_s else "no sampler thread ran (no power source here)"
            ),
            "stage_pct": stage_pct,
        },
        machine=machine(),
    )
    if samples:
        res["samples_ms"] = {"inference": list(run.infer_ms), **run.stages.samples_ms()}


def _finish(
    results: list[dict[str, Any]], notes: list[str], prof: Any, measured: dict[str, Any],
    speedup: dict[str, float] | None, samples: bool,
) -> dict[str, Any]:
    if "dram" in measured:
        for r in results:
            r["dram_bandwidth"] = measured["dram"]
    for r in results:
        r["warnings"] = list(notes)
    if len(results) == 1:
        return results[0]
    out: dict[str, Any] = {
        "configs": results,
        "baseline": results[0]["config"],
        "speedup": speedup,
        "profile": prof.name if prof is not None else None,
        "versions": results[0]["versions"],
        "threads": results[0]["threads"],
        "machine": results[0].get("machine"),
        "overhead_pct": max((r["overhead_pct"] or 0.0) for r in results)
        if speedup is not None else None,
        "warnings": list(notes),
    }
    return out


def strip_samples(report: dict[str, Any]) -> dict[str, Any]:
    """A copy of a :func:`run_bench` report without the raw samples and per-layer rows."""
    def strip(r: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in r.items() if k not in ("samples_ms", "cio_rows")}

    if "configs" in report:
        return {**report, "configs": [strip(r) for r in report["configs"]]}
    return strip(report)
