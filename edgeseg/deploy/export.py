"""Library behind `edgeseg export`: checkpoint -> ONNX, TensorRT engine or torch2trt engine.

The formats and what each needs are the table in :mod:`edgeseg.deploy.formats`; this module
holds :func:`export` (validate against the table, then load the model and call the row's
builder) and the builders of the ONNX / TensorRT rows.

Defaults come from a device profile (input size, precision, TensorRT workspace / DLA); flags
override it. Every artifact carries the model metadata, and every export is checked against
PyTorch before it is written (see :mod:`edgeseg.deploy.onnx`).

Precision: an ONNX is fp32 unless ``--precision fp16`` is given explicitly (an fp16 graph, for
TensorRT 11's strongly typed builds); a profile's precision applies to engines only. The INT8
(Q/DQ) ONNX comes from `edgeseg calibrate`; INT8 engines are built here from it (``--onnx
model.int8.onnx``), from its cache (``--calibration-cache``, TensorRT 8.6), or by TensorRT
calibrating on ``--images`` (routes in :mod:`edgeseg.deploy.int8`, the TensorRT side in
:mod:`edgeseg.deploy.engine_export`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edgeseg.artifacts.job import resolve_job
from edgeseg.deploy.export_settings import ExportSettings
from edgeseg.deploy.formats import FORMATS, TORCH2TRT, get_format
from edgeseg.errors import EdgesegError
from edgeseg.precision import PRECISIONS

__all__ = ["export", "export_steps", "onnx_to_engine", "to_engine", "to_onnx", "to_torch2trt"]

DCN_MODES = ("native", "portable")
DEFAULT_HW = (512, 1024)
# profile deploy.backend -> default --format
_FORMAT_OF_BACKEND = {"tensorrt": "engine", "onnxruntime": "onnx", "torch": "onnx"}

Step = Callable[[str], None]


def _choice(flag: str, value: str | None, choices: tuple[str, ...]) -> str | None:
    if value is not None and value not in choices:
        raise EdgesegError(f"{flag}: expected one of {', '.join(choices)}, got '{value}'")
    return value


# ---------------------------------------------------------------------------------------------
# One function per format: (model, meta, out, settings, step) -> report


def to_onnx(model: Any, meta: Any, out: Path, settings: ExportSettings | Mapping[str, Any],
            step: Step) -> dict[str, Any]:
    from edgeseg.deploy.onnx import export_onnx

    s = ExportSettings.of(settings)
    if s.normalize_in_graph:
        from edgeseg.deploy.onnx_normalized import export_normalized_onnx

        if s.argmax or s.dynamic or s.precision != "fp32":
            raise EdgesegError("--normalize-in-graph exports a static fp32 graph with softmax "
                               "scores: leave out --argmax, --dynamic and --precision fp16")
        return export_normalized_onnx(model, meta, out, height=s.height, width=s.width,
                                      dcn=s.dcn or "native", opset=s.opset, step=step)
    return export_onnx(
        model, meta, out, height=s.height, width=s.width, dcn=s.dcn or "native",
        dynamic=s.dynamic, argmax=s.argmax, opset=s.opset,
        fp16=s.precision == "fp16", step=step,
    )


def to_engine(model: Any, meta: Any, out: Path, settings: ExportSettings | Mapping[str, Any],
              step: Step) -> dict[str, Any]:
    """ONNX (portable DCN when this TensorRT's parser lacks DeformConv) -> TensorRT builder."""
    s = ExportSettings.of(settings)
    from edgeseg.deploy.engine_export import build_engine_file
    from edgeseg.deploy.onnx import export_onnx

    plan = s.plan  # made by export() before the model loaded
    dcn = s.dcn
    if plan.needs_portable_dcn:
        if dcn == "native":
            raise EdgesegError(
                f"TensorRT {plan.trt_version.short} cannot import ONNX DeformConv (10.1+ can): "
                "use --dcn portable or leave --dcn out"
            )
        dcn = "portable"
    onnx_path = out.with_suffix(".onnx")
    report = export_onnx(
        model, meta, onnx_path, height=s.height, width=s.width, dcn=dcn or "native",
        dynamic=s.dynamic, argmax=s.argmax, opset=s.opset,
        fp16=plan.requires_fp16_onnx, step=step,
    )
    h, w = report["meta"]["input_hw"]
    shapes = None
    if s.dynamic:  # batch 1; spatial sizes from half to twice the export size
        lo, hi = (1, 3, max(32, h // 2), max(32, w // 2)), (1, 3, 2 * h, 2 * w)
        shapes = {"input": (lo, (1, 3, h, w), hi)}
    model_meta = dict(report["meta"], precision=plan.precision)
    warnings: list[str] = []
    sidecar, extra = build_engine_file(
        onnx_path, out, plan, s.int8, model_meta, profile_shapes=shapes,
        num_images=s.calibration_images, seed=s.seed, step=step, progress=s.build_progress,
        warn=warnings.append,
    )
    return {
        "path": str(out),
        "format": "engine",
        "bytes": out.stat().st_size,
        "precision": plan.precision,
        "tensorrt": sidecar.trt_version,
        "gpu": sidecar.gpu_name,
        "dcn": dcn or "native",
        "dcn_op": report["dcn_op"],
        "opset": report["opset"],
        "nodes": report["nodes"],
        "onnx": {k: v for k, v in report.items() if k != "meta"},
        "parity": report.get("parity"),
        "meta": model_meta,
        **extra,
        "warnings": warnings,
    }


def onnx_to_engine(onnx_path: Path, out: Path, settings: ExportSettings | Mapping[str, Any],
                   step: Step) -> dict[str, Any]:
    """An ONNX given as --model (e.g. calibrate's model.int8.onnx) -> TensorRT builder."""
    s = ExportSettings.of(settings)
    from edgeseg.deploy.engine_export import build_engine_file

    plan, info = s.plan, s.onnx_info
    if info is None:
        raise TypeError("onnx_to_engine() needs settings.onnx_info (export() reads it)")
    if plan.requires_fp16_onnx and not info["fp16"]:
        raise EdgesegError(
            f"TensorRT {plan.trt_version.short} builds fp16 only from an fp16 ONNX: export one "
            "with `edgeseg export --format onnx --precision fp16`"
        )
    model_meta = dict(info["meta"].to_dict(), precision=plan.precision)
    warnings: list[str] = []
    sidecar, extra = build_engine_file(
        onnx_path, out, plan, s.int8, model_meta, num_images=s.calibration_images,
        seed=s.seed, step=step, progress=s.build_progress, warn=warnings.append,
    )
    return {"path": str(out), "format": "engine", "bytes": out.stat().st_size,
            "precision": plan.precision, "tensorrt": sidecar.trt_version, "gpu": sidecar.gpu_name,
            "dcn_op": info["dcn_op"], "nodes": info["nodes"], "parity": None,
            "meta": model_meta, **extra, "warnings": warnings}


def to_torch2trt(model: Any, meta: Any, out: Path, settings: ExportSettings | Mapping[str, Any],
                 step: Step) -> dict[str, Any]:
    """torch2trt with our deformable-conv / grid_sample converters; engine + sidecar."""
    s = ExportSettings.of(settings)
    from edgeseg.deploy.torch2trt_build import convert_torch2trt

    int8 = s.int8
    report = convert_torch2trt(
        model, meta, out, s.plan, height=s.height or meta.input_hw[0],
        width=s.width or meta.input_hw[1], dcn=s.dcn,
        images=int8.images if int8 is not None else None, num_images=s.calibration_images,
        seed=s.seed, step=step,
    )
    report["warnings"] = list(s.plan.warnings) + report.pop("notes")
    return report


def export_steps(fmt: str, argmax: bool) -> int:
    onnx_steps = 5 if argmax else 4  # load, trace, check, parity (, argmax)
    return {"onnx": onnx_steps, "engine": onnx_steps + 1, "torch2trt": 2}.get(fmt, onnx_steps)


# ---------------------------------------------------------------------------------------------
# Library entry


def export(
    out: Path,
    *,
    weights: Path | None = None,
    fmt: str | None = None,
    profile: str | None = None,
    precision: str | None = None,
    height: int | None = None,
    width: int | None = None,
    dcn: str | None = None,
    dynamic: bool = False,
    argmax: bool = False,
    opset: int = 19,
    random_init: bool = False,
    model: str | Path | None = None,
    options: dict[str, Any] | None = None,
    onnx: Path | None = None,
    images: str | None = None,
    calibration_cache: Path | None = None,
    num_images: int | None = None,
    seed: int = 0,
    step: Step | None = None,
    build_progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Library entry of `edgeseg export`; returns the report printed by ``--json``.

    Exactly one model (:func:`~edgeseg.artifacts.resolve.resolve_model`): ``model`` (a
    checkpoint or ONNX path, or a variant name with ``random_init=True``: an untrained network
    for speed and export studies), or the legacy ``weights`` (a checkpoint) / ``onnx`` (an ONNX
    to build into an engine, e.g. calibrate's ``model.int8.onnx``; only with --format engine).
    ``height`` and ``width`` go together.
    INT8 engines: ``images`` (TensorRT / torch2trt calibrate on ``num_images`` of them),
    ``calibration_cache`` (calibrate's cache with its ``model.fp32.onnx``) or a Q/DQ ``onnx``.
    ``build_progress(phase, step, steps)``: TensorRT's build phases (a heartbeat on 8.6).

    ``options``: format-specific fields of :class:`~edgeseg.deploy.export_settings.ExportSettings`,
    e.g. ``normalize_in_graph`` (onnx); ``triton_pipeline``, ``triton_form``, ``triton_name``,
    ``max_batch_size`` (triton); ``sources``, ``batch_size``, ``segmentation_threshold``,
    ``plugin_lib`` (deepstream). One the format does not take is an error naming the formats
    that do (the table's rows list their options).
    """
    say = step or (lambda _msg: None)
    # Everything that can be checked without torch is checked first.
    if fmt is not None:
        get_format(fmt)
    _choice("--precision", precision, PRECISIONS)
    _choice("--dcn", dcn, DCN_MODES)
    if calibration_cache is not None and not Path(calibration_cache).is_file():
        raise EdgesegError(f"calibration cache not found: {calibration_cache}")
    if calibration_cache is not None and onnx is None and weights is None and model is None:
        onnx = Path(calibration_cache).parent / "model.fp32.onnx"  # calibrate wrote it there
    # the model, the profile with --height/--width applied, the size by flag > profile >
    # ONNX metadata (a checkpoint's own size applies below, once it is loaded)
    job = resolve_job("export", model=model, weights=weights, onnx=onnx, random_init=random_init,
                      accepts=("checkpoint", "onnx", "variant"), profile=profile, height=height,
                      width=width)
    ref = job.model
    assert ref is not None
    weights = ref.path if ref.kind == "checkpoint" else None
    onnx = ref.path if ref.kind == "onnx" else None
    if num_images is not None and num_images < 1:
        raise EdgesegError(f"--calib-images must be at least 1, got {num_images}")
    folder = fmt is not None and get_format(fmt).is_folder
    if Path(out).is_dir() and not folder:
        raise EdgesegError(f"--out is a directory: {out} (give a file name)")
    if folder and Path(out).exists() and not Path(out).is_dir():
        raise EdgesegError(f"--out {out}: --format {fmt} writes a directory, not a file")
    _check_suffix(Path(out), fmt)

    prof = job.profile
    if fmt is None:
        fmt = _FORMAT_OF_BACKEND.get(prof.deploy.backend, "onnx") if prof else "onnx"
        _check_suffix(Path(out), fmt)
    row = get_format(fmt)
    try:
        settings = ExportSettings.of({
            **(options or {}),
            "height": job.input_hw[0] if job.input_hw else None,
            "width": job.input_hw[1] if job.input_hw else None,
            # ONNX precision only from the flag; engines fall back to the profile's
            "precision": precision or _default_precision(fmt, prof),
            "dcn": dcn, "dynamic": dynamic, "argmax": argmax, "opset": opset, "profile": prof,
            "images": images, "num_images": num_images,
            "calibration_cache": str(calibration_cache) if calibration_cache else None,
            "seed": seed, "build_progress": build_progress,
        })
    except TypeError as e:
        raise EdgesegError(f"export options: {e}") from None
    row.check_options(settings)
    settings = settings.but(num_images=num_images or _default_images(prof))
    row.check_precision(settings.precision)
    if onnx is not None and "onnx" not in row.models:
        raise EdgesegError(
            f"an ONNX --model builds TensorRT engines (--format engine); --format {fmt} needs a "
            "checkpoint"
        )
    if fmt in ("engine", "torch2trt"):
        settings = _plan(fmt, settings, prof, onnx=Path(onnx) if onnx else None, images=images,
                         cache=Path(calibration_cache) if calibration_cache else None,
                         weights=weights)
    if onnx is not None:
        report = onnx_to_engine(Path(onnx), Path(out), settings, say)
        report["source"] = str(onnx)
        if prof is not None:
            report["profile"] = prof.name
        return report

    from edgeseg.artifacts.checkpoint import default_meta, load_model

    if weights is not None:
        say(f"loading {Path(weights).name}")
        net, meta = load_model(weights)
    else:
        from edgeseg.models.desanet import build_model

        say(f"building an untrained {ref.variant}")
        net = build_model(str(ref.variant), aux=False).eval()
        meta = default_meta(net.variant, DEFAULT_HW)
        meta.extra["random_init"] = True
    settings = settings.but(height=settings.height or meta.input_hw[0],
                            width=settings.width or meta.input_hw[1])
    report = row.build(net, meta, Path(out), settings, say)
    report["source"] = str(weights) if weights is not None else f"random-init {ref.variant}"
    if prof is not None:
        report["profile"] = prof.name
    return report


def _default_precision(fmt: str, prof: Any) -> str:
    """ONNX-based formats: fp32 (fp16 only from the flag); DeepStream: the profile's GPU
    precision, fp16 without one (nvinfer builds the engine); engines: the profile's."""
    if fmt == "deepstream":
        return prof.deploy.precision if prof is not None and prof.deploy.precision != "int8" \
            else "fp16"
    if fmt in ("onnx", "triton") or prof is None:
        return "fp32"
    return str(prof.deploy.precision)


def _check_suffix(out: Path, fmt: str | None) -> None:
    """The file name must say what it is: later commands pick the runtime from the suffix."""
    if fmt is None:
        return
    row = FORMATS[fmt]
    if row.suffixes and out.suffix.lower() not in row.suffixes:
        raise EdgesegError(
            f"--out {out.name}: --format {fmt} writes a file ending in {', '.join(row.suffixes)}"
        )


def _default_images(prof: Any) -> int:
    from edgeseg.deploy.int8 import DEFAULT_CALIBRATION_IMAGES

    return int(prof.calibration.images) if prof is not None else DEFAULT_CALIBRATION_IMAGES


def _plan(fmt: str, s: ExportSettings, prof: Any, *, onnx: Path | None, images: str | None,
          cache: Path | None, weights: Path | None) -> ExportSettings:
    """``s`` with the build plan and INT8 route for the installed TensorRT, made before any
    model loads; one-line error when there is none."""
    from edgeseg.deploy.engine_export import onnx_engine_source, plan_engine
    from edgeseg.deploy.tensorrt import tensorrt_version

    if fmt == "torch2trt":
        TORCH2TRT.require()
    has_qdq = False
    if onnx is not None:
        info = onnx_engine_source(onnx, tensorrt_version())
        has_qdq = info["has_qdq"]
        # a Q/DQ ONNX is INT8 whatever the profile says
        s = s.but(onnx_info=info, precision="int8" if has_qdq else s.precision)
    plan, int8 = plan_engine(fmt, s.precision, prof, onnx=onnx, onnx_has_qdq=has_qdq,
                             images=images, cache=cache, weights=weights)
    return s.but(plan=plan, int8=int8)
