"""Build TensorRT engines from ONNX with the ONNX parser, and load them back.

Every version decision comes from :mod:`edgeseg.deploy.trt_compat` (``plan_build``); this module
only applies a :class:`~edgeseg.deploy.trt_compat.BuildPlan` to ``trt.Builder`` /
``trt.OnnxParser`` / ``trt.IBuilderConfig`` and writes the engine with its sidecar
(:mod:`edgeseg.artifacts.sidecar`). The small ONNX and error-formatting helpers are pure and tested
without TensorRT.

Typical use::

    plan = plan_build(tensorrt_version(), "fp16", workspace_mib=1024)
    sidecar = build_engine("model.onnx", "model.engine", plan, timing_cache_path="trt.cache")
    loaded = load_engine("model.engine")   # refuses an engine built on another GPU / TensorRT
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.artifacts.sidecar import EngineSidecar, file_sha256
from edgeseg.deploy.trt_compat import BuildPlan, TrtFeatures, TrtVersion, parse_trt_version
from edgeseg.errors import EdgesegError
from edgeseg.runtime.trt_engine import (
    LoadedEngine,
    _last_error,
    current_gpu,
    init_plugins,
    legacy,
    load_engine,
    process_logger,
    require_tensorrt,
    tensorrt_available,
    tensorrt_version,
)

__all__ = [
    "LoadedEngine",
    "ProfileShapes",
    "build_engine",
    "current_gpu",
    "dla_placement",
    "format_parser_error",
    "init_plugins",
    "legacy",
    "load_engine",
    "make_entropy_calibrator",
    "onnx_has_qdq",
    "onnx_model_meta",
    "process_logger",
    "require_tensorrt",
    "resolve_profile",
    "tensorrt_available",
    "tensorrt_version",
]


ProfileShapes = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
Progress = Callable[[str, int, int], None]
Warn = Callable[[str], None]
HEARTBEAT_S = 10.0  # TensorRT < 10 has no progress monitor: say "still building" this often


# ---------------------------------------------------------------------------------------------
# Pure helpers


def onnx_has_qdq(onnx_path: str | Path) -> bool:
    """Whether the ONNX carries QuantizeLinear/DequantizeLinear nodes (explicit INT8)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    graphs = [model.graph] + [f for f in model.functions]
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for g in graphs for n in g.node)


def onnx_model_meta(onnx_path: str | Path) -> dict[str, Any]:
    """Model metadata from ONNX ``metadata_props`` for the engine sidecar.

    Accepts both layouts an exporter may write: one property holding the whole ``ModelMeta``
    JSON object (any key; recognised by its ``variant`` field) or one property per field with
    JSON-encoded values. Values that are not JSON stay strings.
    """
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    flat: dict[str, Any] = {}
    for prop in model.metadata_props:
        try:
            value: Any = json.loads(prop.value)
        except ValueError:
            value = prop.value
        if isinstance(value, dict) and "variant" in value:
            return value
        flat[prop.key] = value
    return flat


def format_parser_error(
    onnx_path: str | Path,
    trt_version: str | TrtVersion,
    errors: Sequence[tuple[str, str, str]],
) -> str:
    """One line from the parser's errors ``(description, node name, op type)``, first one first."""
    v = parse_trt_version(trt_version)
    name = Path(onnx_path).name
    if not errors:
        return f"TensorRT {v} could not parse {name} (no parser error reported)"
    desc, node, op = errors[0]
    where = f"node {node or '?'} ({op})" if op else (f"node {node}" if node else "")
    first = " ".join(str(desc).split())
    msg = f"TensorRT {v} could not parse {name}: {where + ': ' if where else ''}{first}"
    if len(errors) > 1:
        msg += f" (+{len(errors) - 1} more)"
    if any("DeformConv" in f"{d} {o}" for d, _, o in errors):
        if TrtFeatures(v).needs_portable_dcn:
            msg += (
                f"; TensorRT {v.short} can't import ONNX DeformConv (10.1+ can): export with the "
                "portable deformable conv"
            )
        else:
            msg += "; DeformConv needs the ModulatedDeformConv2d plugin (libnvinfer_plugin)"
    return msg


def resolve_profile(
    name: str, dims: Sequence[int], shapes: Mapping[str, ProfileShapes] | None = None
) -> ProfileShapes | None:
    """Optimization-profile shapes (min, opt, max) for one network input; None if static.

    Given ``shapes[name]`` are checked against the static dimensions; otherwise a dynamic batch
    alone defaults to 1 and any other dynamic dimension is an error.
    """
    dims = tuple(int(d) for d in dims)
    if all(d >= 0 for d in dims):
        return None
    if shapes and name in shapes:
        lo, opt, hi = (tuple(int(v) for v in s) for s in shapes[name])
        for s in (lo, opt, hi):
            if len(s) != len(dims):
                raise EdgesegError(f"input {name} has rank {len(dims)}, profile shape {s} has not")
            for d, v in zip(dims, s):
                if d >= 0 and v != d:
                    raise EdgesegError(f"input {name} is fixed at {dims}; profile says {s}")
        if not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
            raise EdgesegError(f"profile for {name} needs min <= opt <= max, got {lo}, {opt}, {hi}")
        return lo, opt, hi
    if all(d >= 0 for d in dims[1:]):
        one = (1,) + dims[1:]
        return one, one, one
    raise EdgesegError(
        f"input {name} has dynamic dimensions {dims}: give min/opt/max shapes, or export the "
        "ONNX with a fixed input size"
    )


# ---------------------------------------------------------------------------------------------
# Thin TensorRT glue


def _make_progress_monitor(trt: Any, progress: Progress) -> Any:
    class _Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.steps: dict[str, int] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self.steps[phase_name] = num_steps
            progress(phase_name, 0, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            progress(phase_name, step + 1, self.steps.get(phase_name, step + 1))
            return True

        def phase_finish(self, phase_name: str) -> None:
            n = self.steps.pop(phase_name, 0)
            progress(phase_name, n, n)

    return _Monitor()


def _enum(enum_cls: Any, name: str) -> Any:
    try:
        return getattr(enum_cls, name)
    except AttributeError:
        raise EdgesegError(f"this TensorRT has no {enum_cls.__name__}.{name}") from None


def _network_has_fp16(trt: Any, network: Any) -> bool:
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        for j in range(layer.num_outputs):
            if layer.get_output(j).dtype == trt.DataType.HALF:
                return True
    return False


def dla_placement(config: Any, network: Any, max_listed: int = 20) -> dict[str, Any]:
    """Which layers DLA can run and which fall back to the GPU (``can_run_on_DLA`` per layer).

    ``{"dla": n, "gpu": m, "gpu_layers": ["name (TYPE)", ...]}`` with at most ``max_listed``
    names; the builder decides the final placement, but a layer DLA cannot run always ends up
    on the GPU (the deformable conv plugin, GridSample, Resize modes DLA lacks).
    """
    dla, gpu = 0, []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if config.can_run_on_DLA(layer):
            dla += 1
        else:
            gpu.append(f"{layer.name} ({str(layer.type).rsplit('.', 1)[-1]})")
    return {"dla": dla, "gpu": len(gpu), "gpu_layers": gpu[:max_listed]}


def _dims(dims: Any) -> list[int]:
    """trt.Dims -> list (Dims indexes but does not declare __iter__)."""
    return [int(dims[k]) for k in range(len(dims))]


def _write_atomic(path: Path, data: Any) -> None:
    from edgeseg.atomic import atomic_write_bytes

    atomic_write_bytes(path, data)  # any buffer (trt.IHostMemory)


def build_engine(
    onnx_path: str | Path,
    out_path: str | Path,
    plan: BuildPlan,
    timing_cache_path: str | Path | None = None,
    calibrator: Any = None,
    progress: Progress | None = None,
    *,
    profile_shapes: Mapping[str, ProfileShapes] | None = None,
    model_meta: Mapping[str, Any] | None = None,
    verbose: bool = False,
    on_warning: Warn | None = None,
) -> EngineSidecar:
    """Parse ``onnx_path``, build with ``plan``, write the engine and its sidecar.

    Args:
        plan: from ``plan_build`` for the TensorRT that is installed.
        timing_cache_path: loaded if it exists, saved after the build (speeds up rebuilds).
        calibrator: an ``IInt8EntropyCalibrator2`` (see ``make_entropy_calibrator``) when
            ``plan.use_calibrator``.
        progress: ``progress(phase, step, num_steps)`` during the build (TensorRT 10+).
        profile_shapes: ``{input: (min, opt, max)}`` for inputs with dynamic dimensions.
        model_meta: model metadata for the sidecar; default: read from the ONNX.
        on_warning: one-line warnings (a rejected timing cache, a cache that could not be
            saved); default: printed to stderr.

    Order: every prerequisite (TensorRT, the CUDA GPU for the sidecar, the plan, calibration)
    is checked before the build, which may take minutes; the engine's sidecar is written
    right after the engine, before the timing cache, whose failure only warns.
    """
    require_tensorrt()
    import tensorrt as trt

    warn = on_warning or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    version = _check_prerequisites(trt, onnx_path, plan, calibrator)
    gpu_name, cc = current_gpu()  # before the build: a CPU-only torch fails here, not after
    meta = dict(model_meta) if model_meta is not None else onnx_model_meta(onnx_path)

    logger = process_logger(trt, verbose)
    init_plugins(trt)
    mark = len(logger.errors)
    builder = trt.Builder(logger)
    network = _parse_network(trt, builder, logger, onnx_path, plan, version)
    config, placement = _configure(trt, builder, network, plan, calibrator)
    input_shape, profile_dict = _add_input_profile(trt, builder, network, config, profile_shapes)
    cache_path = Path(timing_cache_path) if timing_cache_path else None
    _attach_timing_cache(config, cache_path, warn)
    monitor = None
    if progress is not None and TrtFeatures(version).progress_monitor:
        monitor = _make_progress_monitor(trt, progress)  # must outlive the build
        config.progress_monitor = monitor

    started = time.monotonic()
    with _heartbeat(progress if monitor is None else None, started):
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        last = _last_error(logger, mark)
        raise EdgesegError(f"TensorRT {version} failed to build {onnx_path.name}: {last}")
    build_s = time.monotonic() - started
    sidecar = EngineSidecar(
        trt_version=str(trt.__version__),
        gpu_name=gpu_name,
        compute_capability=cc,
        precision=plan.precision,
        input_shape=input_shape,
        profile=profile_dict,
        onnx_sha256=file_sha256(onnx_path),
        model=meta,
        dla_core=plan.dla_core,
        builder="onnx",
        build_s=round(build_s, 1),
        dla_placement=placement,
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(out_path, serialized)
    sidecar.write(out_path)  # right after the engine: nothing may fail in between
    if cache_path is not None:
        _save_timing_cache(config, cache_path, warn)
    return sidecar


# -- build_engine's steps, in order ----------------------------------------------------------


def _check_prerequisites(trt: Any, onnx_path: Path, plan: BuildPlan, calibrator: Any) -> Any:
    """The ONNX file, the plan's TensorRT release and the calibrator: checked before any
    TensorRT object exists. Returns the installed TensorRT version."""
    if not onnx_path.is_file():
        raise EdgesegError(f"ONNX file not found: {onnx_path}")
    version = parse_trt_version(trt.__version__)
    if not version.same_release(plan.trt_version):
        raise EdgesegError(
            f"build plan was made for TensorRT {plan.trt_version}, but {version} is installed"
        )
    if plan.use_calibrator and calibrator is None:
        raise EdgesegError(
            f"INT8 on TensorRT {version.short} needs calibration: pass calibration images or a "
            "calibration cache (or build from a Q/DQ ONNX written by `edgeseg calibrate`)"
        )
    return version


def _parse_network(trt: Any, builder: Any, logger: Any, onnx_path: Path, plan: BuildPlan,
                   version: Any) -> Any:
    """The network parsed from the ONNX with the plan's creation flags; parser errors become
    one message naming the node."""
    net_flags = 0
    for name in plan.network_flags:
        flag = getattr(trt.NetworkDefinitionCreationFlag, name, None)
        if flag is not None:  # EXPLICIT_BATCH is gone or a no-op in newer releases
            net_flags |= 1 << int(flag)
    network = builder.create_network(net_flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errs = []
        for i in range(parser.num_errors):
            e = parser.get_error(i)
            node_name = getattr(e, "node_name", None)
            node_op = getattr(e, "node_operator", None)
            errs.append(
                (
                    str(e.desc()),
                    str(node_name()) if callable(node_name) else str(e.node()),
                    str(node_op()) if callable(node_op) else "",
                )
            )
        raise EdgesegError(format_parser_error(onnx_path, version, errs))
    if plan.requires_fp16_onnx and not _network_has_fp16(trt, network):
        raise EdgesegError(
            f"TensorRT {version.short} builds strongly typed networks: fp16 needs an ONNX with "
            "fp16 tensors; export one with `edgeseg export --format onnx --precision fp16`"
        )
    return network


def _configure(trt: Any, builder: Any, network: Any, plan: BuildPlan,
               calibrator: Any) -> tuple[Any, dict[str, Any] | None]:
    """The builder config: workspace, flags, DLA (checked against the device and the GPU
    fallback) and the calibrator. Returns it with the DLA placement (None without DLA)."""
    config = builder.create_builder_config()
    if plan.workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    for name in plan.builder_flags:
        config.set_flag(_enum(trt.BuilderFlag, name))
    placement: dict[str, Any] | None = None
    if plan.dla_core is not None:
        if builder.num_DLA_cores <= plan.dla_core:
            raise EdgesegError(
                f"DLA core {plan.dla_core} requested but this device has {builder.num_DLA_cores} "
                "(Jetson AGX Orin / Orin NX have 2, Orin Nano none)"
            )
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
        placement = dla_placement(config, network)
        if placement["gpu"] and not plan.gpu_fallback:
            raise EdgesegError(
                f"{placement['gpu']} layer(s) cannot run on DLA (e.g. "
                f"{placement['gpu_layers'][0]}) and GPU fallback is off: pass --gpu-fallback"
            )
    if plan.use_calibrator:
        config.int8_calibrator = calibrator
    return config, placement


def _add_input_profile(
    trt: Any, builder: Any, network: Any, config: Any,
    profile_shapes: Mapping[str, ProfileShapes] | None,
) -> tuple[list[int], dict[str, list[int]] | None]:
    """One optimization profile for the inputs with dynamic dimensions. Returns the first
    input's shape (its opt shape when dynamic) and its min/opt/max for the sidecar."""
    input_shape: list[int] = []
    profile_dict: dict[str, list[int]] | None = None
    opt_profile = None
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = _dims(tensor.shape)
        shapes = resolve_profile(tensor.name, dims, profile_shapes)
        if i == 0:
            input_shape = list(shapes[1]) if shapes else dims
        if shapes is None:
            continue
        if opt_profile is None:
            opt_profile = builder.create_optimization_profile()
        lo, opt, hi = (trt.Dims(list(s)) for s in shapes)
        opt_profile.set_shape(tensor.name, lo, opt, hi)
        if i == 0:
            profile_dict = {k: list(s) for k, s in zip(("min", "opt", "max"), shapes)}
    if opt_profile is not None:
        config.add_optimization_profile(opt_profile)
    return input_shape, profile_dict


def _attach_timing_cache(config: Any, cache_path: Path | None, warn: Warn) -> None:
    """Load the timing cache when there is one; one TensorRT rejects (another GPU or release)
    warns and the build starts from an empty cache, which this build then replaces."""
    cache_bytes = cache_path.read_bytes() if cache_path and cache_path.is_file() else b""
    timing_cache = config.create_timing_cache(cache_bytes)
    if not config.set_timing_cache(timing_cache, False):
        warn(f"timing cache {cache_path} was rejected (made on another GPU or TensorRT): "
             "building without it; it will be replaced by this build's")
        timing_cache = config.create_timing_cache(b"")
        config.set_timing_cache(timing_cache, False)


def _save_timing_cache(config: Any, cache_path: Path, warn: Warn) -> None:
    """Save the timing cache after the engine and sidecar: a failure here only warns."""
    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(cache_path, config.get_timing_cache().serialize())
    except (OSError, RuntimeError, AttributeError) as e:
        warn(f"timing cache not saved to {cache_path} ({type(e).__name__}: {e}); the "
             "engine and its sidecar are written")


class _heartbeat:
    """``progress("building", seconds, 0)`` every :data:`HEARTBEAT_S` while the build runs, for
    TensorRT releases without a progress monitor (8.6): a silent multi-minute build looks hung.
    """

    def __init__(self, progress: Progress | None, started: float) -> None:
        self.progress, self.started = progress, started
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def _run(self) -> None:
        assert self.progress is not None
        while not self.stop.wait(HEARTBEAT_S):
            self.progress("building", int(time.monotonic() - self.started), 0)

    def __enter__(self) -> None:
        if self.progress is not None:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()


# ---------------------------------------------------------------------------------------------
# INT8 entropy calibrator (implicit quantization, TensorRT 8.6 - 10.x)


def make_entropy_calibrator(
    batches: Iterable[np.ndarray], cache_path: str | Path | None = None
) -> Any:
    """An ``IInt8EntropyCalibrator2`` fed from ``batches`` of preprocessed (N, 3, H, W) float32.

    Batches are copied into one CUDA buffer (a torch tensor). With an existing ``cache_path`` the
    builder skips calibration and reads the scales from it; after calibrating, TensorRT's cache
    is written there (the format of ``trt_compat.write_calibration_cache``).
    """
    require_tensorrt()
    import tensorrt as trt
    import torch

    cache = Path(cache_path) if cache_path else None
    it = iter(batches)
    first = next(it, None)

    class EntropyCalibrator2(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._pending = first
            self._buffer: torch.Tensor | None = None
            self.count = 0

        def get_batch_size(self) -> int:
            return 1 if first is None else int(first.shape[0])

        def get_batch(self, names: list[str]) -> list[int]:
            if len(names) != 1:
                raise EdgesegError(f"calibration feeds one input, the network has {names}")
            batch = self._pending if self._pending is not None else next(it, None)
            self._pending = None
            if batch is None:
                return []  # no data left: TensorRT finishes calibration
            host = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
            if self._buffer is None or self._buffer.shape != host.shape:
                self._buffer = torch.empty(host.shape, dtype=torch.float32, device="cuda")
            self._buffer.copy_(host)
            torch.cuda.synchronize()
            self.count += 1
            return [int(self._buffer.data_ptr())]

        # TensorRT documents None as "no cache": calibrate from the batches.
        def read_calibration_cache(self) -> bytes | None:
            if cache is not None and cache.is_file():
                return cache.read_bytes()
            return None

        def write_calibration_cache(self, data: Any) -> None:
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                _write_atomic(cache, bytes(memoryview(data)))

    if first is None and (cache is None or not cache.is_file()):
        raise EdgesegError("no calibration batches and no calibration cache to read")
    return EntropyCalibrator2()
