"""Library behind `edgeseg export`: checkpoint -> ONNX, TensorRT engine or torch2trt engine.

The formats and what each needs are the table in :mod:`edgeseg.deploy.formats`; this module
holds :func:`export` (validate against the table, then load the model and call the row's
builder) and the builders of the ONNX / TensorRT rows.

Defaults come from a device profile (input size, precision, TensorRT workspace / DLA); flags
override it. Every artifact carries the model metadata, and every export is checked against
PyTorch before it is written (see :mod:`edgeseg.deploy.onnx`).

Precision: an ONNX is fp32 unless ``--precision fp16`` is given explicitly (an fp16 graph, for
TensorRT 11's strongly typed builds); a profile's precision applies to engines only. INT8 ONNX
(Q/DQ) and calibrated INT8 engines come from `edgeseg calibrate`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeseg.deploy.formats import FORMATS, TORCH2TRT, get_format
from edgeseg.errors import EdgesegError

__all__ = ["export", "export_steps", "to_engine", "to_onnx", "to_torch2trt"]

PRECISIONS = ("fp32", "fp16", "int8")
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


def to_onnx(model: Any, meta: Any, out: Path, s: dict[str, Any], step: Step) -> dict[str, Any]:
    from edgeseg.deploy.onnx import export_onnx

    if s.get("normalize_in_graph"):
        from edgeseg.deploy.deepstream import export_normalized_onnx

        if s["argmax"] or s["dynamic"] or s["precision"] != "fp32":
            raise EdgesegError("--normalize-in-graph exports a static fp32 graph with softmax "
                               "scores: leave out --argmax, --dynamic and --precision fp16")
        return export_normalized_onnx(model, meta, out, height=s["height"], width=s["width"],
                                      dcn=s["dcn"] or "native", opset=s["opset"], step=step)
    return export_onnx(
        model, meta, out, height=s["height"], width=s["width"], dcn=s["dcn"] or "native",
        dynamic=s["dynamic"], argmax=s["argmax"], opset=s["opset"],
        fp16=s["precision"] == "fp16", step=step,
    )


def to_engine(model: Any, meta: Any, out: Path, s: dict[str, Any], step: Step) -> dict[str, Any]:
    """ONNX (portable DCN when this TensorRT's parser lacks DeformConv) -> TensorRT builder."""
    from edgeseg.deploy.onnx import export_onnx
    from edgeseg.deploy.tensorrt import build_engine

    plan = s["plan"]  # made by export() before the model loaded
    dcn = s["dcn"]
    if plan.needs_portable_dcn:
        if dcn == "native":
            raise EdgesegError(
                f"TensorRT {plan.trt_version.short} cannot import ONNX DeformConv (10.1+ can): "
                "use --dcn portable or leave --dcn out"
            )
        dcn = "portable"
    onnx_path = out.with_suffix(".onnx")
    report = export_onnx(
        model, meta, onnx_path, height=s["height"], width=s["width"], dcn=dcn or "native",
        dynamic=s["dynamic"], argmax=s["argmax"], opset=s["opset"],
        fp16=plan.requires_fp16_onnx, step=step,
    )
    h, w = report["meta"]["input_hw"]
    shapes = None
    if s["dynamic"]:  # batch 1; spatial sizes from half to twice the export size
        lo, hi = (1, 3, max(32, h // 2), max(32, w // 2)), (1, 3, 2 * h, 2 * w)
        shapes = {"input": (lo, (1, 3, h, w), hi)}
    step(f"building TensorRT {plan.trt_version} engine ({plan.precision})")
    model_meta = dict(report["meta"], precision=plan.precision)
    sidecar = build_engine(onnx_path, out, plan, profile_shapes=shapes, model_meta=model_meta)
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
        "warnings": list(plan.warnings),
    }


def to_torch2trt(model: Any, meta: Any, out: Path, s: dict[str, Any], step: Step) -> dict[str, Any]:
    """torch2trt with our deformable-conv / grid_sample converters; engine + sidecar."""
    import numpy as np
    import torch

    from edgeseg.artifacts.files import atomic_output
    from edgeseg.artifacts.meta import ModelMeta
    from edgeseg.artifacts.sidecar import EngineSidecar
    from edgeseg.deploy.onnx import parity_input
    from edgeseg.deploy.tensorrt import current_gpu
    from edgeseg.deploy.torch2trt_converters import register

    plan = s["plan"]  # INT8 was refused there (it needs `edgeseg calibrate`)
    register("auto")
    from torch2trt import torch2trt

    h, w = s["height"], s["width"]
    if s["dcn"]:
        model.set_dcn_impl(s["dcn"])
    net = model.eval().cuda()
    x = torch.from_numpy(parity_input(meta, h, w)).cuda()
    step(f"converting with torch2trt (TensorRT {plan.trt_version}, {plan.precision})")
    kw: dict[str, Any] = {"fp16_mode": plan.precision == "fp16"}
    if plan.workspace_bytes:
        kw["max_workspace_size"] = plan.workspace_bytes
    with torch.inference_mode():
        trt_module = torch2trt(net, [x], input_names=["input"], output_names=["logits"], **kw)
        ref, got = net(x).float().cpu().numpy(), trt_module(x).float().cpu().numpy()
    agreement = float((ref.argmax(1) == got.argmax(1)).mean())
    parity = {"max_abs_diff": float(np.abs(ref - got).max()), "agreement": agreement,
              "size": [h, w], "reference": "PyTorch fp32 on CUDA"}
    threshold = 0.999 if plan.precision == "fp32" else 0.99
    if agreement < threshold:
        raise EdgesegError(
            f"parity check failed: TensorRT and PyTorch agree on {agreement:.4%} of pixels "
            f"(< {threshold:.1%}); nothing written to {out}"
        )
    engine_meta = ModelMeta.from_dict({**meta.to_dict(), "input_hw": [h, w],
                                       "precision": plan.precision})
    engine_meta.extra.update(dcn=s["dcn"] or "auto", builder="torch2trt")
    with atomic_output(out) as tmp:
        tmp.write_bytes(bytes(trt_module.engine.serialize()))
    gpu_name, cc = current_gpu()
    sidecar = EngineSidecar(
        trt_version=str(plan.trt_version), gpu_name=gpu_name, compute_capability=cc,
        precision=plan.precision, input_shape=[1, 3, h, w], model=engine_meta.to_dict(),
        builder="torch2trt",
    )
    sidecar.write(out)
    return {"path": str(out), "format": "torch2trt", "bytes": out.stat().st_size,
            "precision": plan.precision, "tensorrt": str(plan.trt_version), "gpu": gpu_name,
            "dcn": s["dcn"] or "auto", "parity": parity, "meta": engine_meta.to_dict()}


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
    model: str | None = None,
    options: dict[str, Any] | None = None,
    step: Step | None = None,
) -> dict[str, Any]:
    """Library entry of `edgeseg export`; returns the report printed by ``--json``.

    Exactly one model source: ``weights`` (a checkpoint), or ``random_init=True`` with ``model``
    (a variant name; an untrained network for speed and export studies).

    ``options``: format-specific settings passed to the builder, e.g. ``normalize_in_graph``
    (onnx); ``triton_pipeline``, ``triton_form``, ``triton_name``, ``max_batch_size`` (triton);
    ``sources``, ``batch_size``, ``segmentation_threshold``, ``plugin_lib`` (deepstream).
    """
    say = step or (lambda _msg: None)
    # Everything that can be checked without torch is checked first.
    if fmt is not None:
        get_format(fmt)
    _choice("--precision", precision, PRECISIONS)
    _choice("--dcn", dcn, DCN_MODES)
    if weights is None and not random_init:
        raise EdgesegError(
            "no model: give --weights CKPT, or --random-init --model VARIANT for an untrained one"
        )
    if weights is not None and random_init:
        raise EdgesegError("give either --weights or --random-init, not both")
    if weights is not None and model is not None:
        raise EdgesegError("--model goes with --random-init; a checkpoint names its own variant")
    if random_init and model is None:
        raise EdgesegError("--random-init needs --model (desanet-hn or desanet-rn)")
    if weights is not None:
        if not Path(weights).is_file():
            raise EdgesegError(f"checkpoint not found: {weights}")
    folder = fmt is not None and get_format(fmt).is_folder
    if Path(out).is_dir() and not folder:
        raise EdgesegError(f"--out is a directory: {out} (give a file name)")
    if folder and Path(out).exists() and not Path(out).is_dir():
        raise EdgesegError(f"--out {out}: --format {fmt} writes a directory, not a file")
    _check_suffix(Path(out), fmt)

    prof = None
    if profile is not None:
        from edgeseg.profiles import load_profile

        prof = load_profile(profile)
    if fmt is None:
        fmt = _FORMAT_OF_BACKEND.get(prof.deploy.backend, "onnx") if prof else "onnx"
        _check_suffix(Path(out), fmt)
    settings: dict[str, Any] = {
        "height": height or (prof.deploy.height if prof else None),
        "width": width or (prof.deploy.width if prof else None),
        # ONNX precision only from the flag; engines fall back to the profile's
        "precision": precision or _default_precision(fmt, prof),
        "dcn": dcn, "dynamic": dynamic, "argmax": argmax, "opset": opset, "plan": None,
        "profile": prof, **(options or {}),
    }
    if settings.get("normalize_in_graph") and fmt != "onnx":
        raise EdgesegError("--normalize-in-graph goes with --format onnx (--format deepstream "
                           "always folds the normalisation into its ONNX)")
    row = get_format(fmt)
    row.check_precision(settings["precision"])
    if fmt == "torch2trt" and (dynamic or argmax):
        raise EdgesegError(
            "torch2trt engines have a static shape and a logits output: leave out --dynamic "
            "and --argmax, or use --format engine"
        )
    if fmt in ("engine", "torch2trt"):
        settings["plan"] = _plan(fmt, settings["precision"], prof)

    from edgeseg.artifacts.checkpoint import default_meta, load_model

    if weights is not None:
        say(f"loading {Path(weights).name}")
        net, meta = load_model(weights)
    else:
        from edgeseg.models.desanet import build_model

        say(f"building an untrained {model}")
        net = build_model(str(model), aux=False).eval()
        meta = default_meta(net.variant, DEFAULT_HW)
        meta.extra["random_init"] = True
    settings["height"] = settings["height"] or meta.input_hw[0]
    settings["width"] = settings["width"] or meta.input_hw[1]
    report = row.build(net, meta, Path(out), settings, say)
    report["source"] = str(weights) if weights is not None else f"random-init {model}"
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


def _plan(fmt: str, precision: str, prof: Any) -> Any:
    """TensorRT build plan for the installed TensorRT; one-line error when there is none."""
    from edgeseg.deploy.tensorrt import tensorrt_version
    from edgeseg.deploy.trt_compat import plan_build

    if fmt == "torch2trt":
        TORCH2TRT.require()
    version = tensorrt_version()  # MissingDependencyError without TensorRT
    d = prof.deploy if prof is not None else None
    plan = plan_build(
        version, precision,
        dla_core=d.dla_core if d else None,
        gpu_fallback=d.gpu_fallback if d else False,
        workspace_mib=d.workspace_mib if d else None,
    )
    if plan.use_calibrator:
        raise EdgesegError(
            f"INT8 on TensorRT {version.short} needs calibration images: run `edgeseg calibrate` "
            "(it builds the INT8 engine), or export fp16 here"
        )
    return plan
