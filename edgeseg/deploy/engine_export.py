"""`edgeseg export --format engine|torch2trt`: the TensorRT side of export, all precisions.

:func:`plan_engine` runs first, before any model loads: it checks the prerequisites (TensorRT,
torch2trt for that format, the INT8 route from :mod:`edgeseg.deploy.int8`) and returns the
build plan. :func:`build_engine_file` then builds one ONNX into an engine with the route's
calibrator (none for Q/DQ, calibrate's cache, or TensorRT calibrating on images), a timing
cache beside the engine, build progress and warnings. :func:`onnx_engine_source` checks an ONNX
given directly (``--onnx``, e.g. calibrate's ``model.int8.onnx``) against this TensorRT.
"""

from __future__ import annotations

import importlib.metadata

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edgeseg.atomic import atomic_write_bytes
from edgeseg.deploy.int8 import DEFAULT_CALIBRATION_IMAGES, Int8Source, plan_int8
from edgeseg.deploy.trt_compat import BuildPlan, TrtFeatures, plan_build
from edgeseg.errors import EdgesegError, MissingDependencyError

__all__ = [
    "DOCKER_HINT",
    "build_engine_file",
    "calibration_cache_path",
    "engine_for_onnx",
    "onnx_engine_source",
    "plan_engine",
    "timing_cache_path",
]

DOCKER_HINT = "edgeseg:jetson (docker/Dockerfile.jetson) or edgeseg:gpu"
Step = Callable[[str], None]


def calibration_cache_path(engine: Path) -> Path:
    """Where an INT8 engine's calibration cache goes: ``model.engine`` -> ``model.calibration.cache``."""
    return engine.with_name(engine.stem + ".calibration.cache")


def timing_cache_path(engine: Path) -> Path:
    """The builder's timing cache beside the engine (rebuilds on this GPU reuse it)."""
    return engine.with_name(engine.stem + ".timing.cache")


def plan_engine(
    fmt: str, precision: str, prof: Any = None, *, onnx: Path | None = None,
    onnx_has_qdq: bool = False, images: str | None = None, cache: Path | None = None,
    weights: Path | None = None, trt_version: str | None = None,
) -> tuple[BuildPlan, Int8Source | None]:
    """(build plan, INT8 route or None) for the installed TensorRT; one line when impossible.

    ``trt_version`` replaces the installed version (tests); then torch2trt is not checked.
    """
    if trt_version is None:
        if fmt == "torch2trt":
            from edgeseg.deploy.torch2trt_build import TORCH2TRT_HINT
            from edgeseg.deploy.torch2trt_converters import torch2trt_available

            if not torch2trt_available():
                raise MissingDependencyError("torch2trt", TORCH2TRT_HINT, image=DOCKER_HINT)
        from edgeseg.deploy.tensorrt import tensorrt_version

        version: Any = tensorrt_version()  # MissingDependencyError without TensorRT
    else:
        version = trt_version
    if precision != "int8" and (images or cache):
        raise EdgesegError(f"--images / --calibration-cache are for --precision int8, not {precision}")
    src = None
    if precision == "int8":
        src = plan_int8(fmt, version, onnx=onnx, onnx_has_qdq=onnx_has_qdq, cache=cache,
                        images=images, weights=weights)
    d = prof.deploy if prof is not None else None
    plan = plan_build(
        version, precision,
        dla_core=d.dla_core if d else None,
        gpu_fallback=d.gpu_fallback if d else False,
        workspace_mib=d.workspace_mib if d else None,
        has_qdq=src is not None and src.has_qdq,
    )
    return plan, src


def onnx_engine_source(onnx: Path, plan_version: Any) -> dict[str, Any]:
    """Facts of an ONNX given to ``export --onnx``: its metadata, Q/DQ, and whether this
    TensorRT can parse its deformable conv."""
    import onnx as onnx_lib

    from edgeseg.artifacts.files import meta_from_props

    if not onnx.is_file():
        raise EdgesegError(f"ONNX file not found: {onnx}")
    model = onnx_lib.load(str(onnx), load_external_data=False)
    ops = {n.op_type for n in model.graph.node}
    meta = meta_from_props({p.key: p.value for p in model.metadata_props}, source=str(onnx))
    if "DeformConv" in ops and TrtFeatures(plan_version).needs_portable_dcn:
        raise EdgesegError(
            f"{onnx.name} has ONNX DeformConv, which TensorRT {TrtFeatures(plan_version).version.short}"
            " cannot import (10.1+ can): export or calibrate it with --dcn portable"
        )
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    fp16 = any(i.type.tensor_type.elem_type == onnx_lib.TensorProto.FLOAT16 for i in inputs)
    return {"meta": meta, "has_qdq": bool(ops & {"QuantizeLinear", "DequantizeLinear"}),
            "fp16": fp16, "dcn_op": "DeformConv" if "DeformConv" in ops else
            ("GridSample" if "GridSample" in ops else None), "nodes": len(model.graph.node)}


def build_engine_file(
    onnx_path: Path, out: Path, plan: BuildPlan, int8: Int8Source | None, model_meta: Mapping[str, Any],
    *, profile_shapes: Any = None, num_images: int = DEFAULT_CALIBRATION_IMAGES, seed: int = 0,
    step: Step | None = None, progress: Callable[[str, int, int], None] | None = None,
    warn: Step | None = None, timing_cache: Path | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Build ``onnx_path`` into ``out`` (+ sidecar); returns (sidecar, report extras).

    ``timing_cache``: the builder's timing cache (default: :func:`timing_cache_path` of ``out``).
    """
    timing = timing_cache or timing_cache_path(out)
    import onnx as onnx_lib

    from edgeseg.artifacts.meta import ModelMeta
    from edgeseg.deploy.int8 import cache_for_tensorrt, calibration_batches
    from edgeseg.deploy.tensorrt import build_engine, make_entropy_calibrator

    say = step or (lambda _m: None)
    notes: list[str] = []
    calibrator = None
    extra: dict[str, Any] = {}
    if plan.use_calibrator:
        if int8 is None:
            raise EdgesegError("INT8 needs calibration: give --images or --calibration-cache")
        cache_out = calibration_cache_path(out)
        if int8.route == "cache":
            assert int8.cache is not None
            proto = onnx_lib.load(str(onnx_path), load_external_data=False)
            names = [i.name for i in proto.graph.input] + [o for n in proto.graph.node
                                                           for o in n.output]
            data, notes = cache_for_tensorrt(int8.cache, plan.trt_version, names)
            cache_out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(cache_out, data)
            calibrator = make_entropy_calibrator([], cache_out)
            say(f"INT8 scales from {int8.cache.name} (no calibration run)")
        elif int8.route == "images":
            meta = ModelMeta.from_dict(dict(model_meta))
            paths, batches = calibration_batches(int8.images or "", meta, num_images, seed)
            calibrator = make_entropy_calibrator(batches, cache_out)
            say(f"TensorRT calibrates on {len(paths)} images ({int8.images})")
            extra["calibration_images"] = len(paths)
        else:
            raise EdgesegError(f"internal: route {int8.route} with a calibrator plan")
        extra["calibration_cache"] = str(cache_out)
    if int8 is not None:
        extra["int8"] = {"route": int8.route, "source": int8.describe}
    say(f"building TensorRT {plan.trt_version} engine ({plan.precision})")
    sidecar = build_engine(
        onnx_path, out, plan, timing_cache_path=timing, calibrator=calibrator,
        progress=progress, profile_shapes=profile_shapes, model_meta=model_meta, on_warning=warn,
    )
    for msg in list(plan.warnings) + notes:
        if warn:
            warn(msg)
    extra.update(notes=list(plan.warnings) + notes, build_s=sidecar.build_s,
                 dla_core=sidecar.dla_core, dla_placement=sidecar.dla_placement,
                 timing_cache=str(timing))
    return sidecar, extra


def engine_for_onnx(
    onnx_path: Path, precision: str = "fp16", profile: Any = None, *, cache_dir: Path | None = None,
    say: Step | None = None, progress: Callable[[str, int, int], None] | None = None,
) -> Path:
    """The engine for ``onnx_path`` on this GPU and TensorRT, from the engine cache
    (:mod:`edgeseg.artifacts.engine_cache`) or built now; ``say`` gets one line: reused, or
    why it is rebuilt. A Q/DQ ONNX builds INT8 whatever ``precision`` says; implicit INT8
    (calibration) is refused here: build that engine with `edgeseg export`.
    """
    from edgeseg import __version__
    from edgeseg.artifacts.engine_cache import (
        EngineCache,
        EngineKey,
        build_facts,
        cuda_major_from_dists,
        file_sha256,
        jetson_module,
    )
    from edgeseg.deploy.tensorrt import current_gpu, require_tensorrt, tensorrt_version

    onnx_path = Path(onnx_path)
    info = onnx_engine_source(onnx_path, tensorrt_version())
    if info["has_qdq"]:
        precision = "int8"
    plan, int8 = plan_engine("engine", precision, profile, onnx=onnx_path,
                             onnx_has_qdq=info["has_qdq"])
    trt = require_tensorrt()
    gpu, cc = current_gpu()
    meta = info["meta"]
    dists = [d.metadata["Name"] or "" for d in importlib.metadata.distributions()]
    try:  # the exact Jetson module (AGX Orin / Orin NX / Orin Nano all say "Orin", sm_87)
        model = Path("/proc/device-tree/model").read_text(errors="replace")
    except OSError:
        model = None
    facts = build_facts(__version__, plan, None, cuda_major_from_dists(dists), jetson_module(model))
    key = EngineKey.make(file_sha256(onnx_path), str(trt.__version__), gpu, cc, plan.dla_core,
                         plan.precision, [1, 3, *meta.input_hw], facts)
    cache = EngineCache(cache_dir)
    model_meta = dict(meta.to_dict(), precision=plan.precision)

    def build(engine: Path, timing: Path) -> None:
        build_engine_file(onnx_path, engine, plan, int8, model_meta, step=say, progress=progress,
                          warn=say, timing_cache=timing)

    return cache.get_or_build(key, onnx_path.stem, build, say)
