"""`--format torch2trt`: a checkpoint through torch2trt (with edgeseg's converters) to an engine
and its sidecar.

The pure part, :func:`torch2trt_kwargs`, decides what torch2trt is told from the build plan
and the parameters the installed torch2trt accepts (its keyword set differs between releases):
precision, INT8 calibration data, DLA core and GPU fallback, and the workspace limit, which
torch2trt applies only below TensorRT 10 (it sets ``max_workspace_size`` there and never calls
``set_memory_pool_limit``): on TensorRT 10+ the report says it is not applied.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeseg.deploy.trt_compat import BuildPlan
from edgeseg.errors import EdgesegError

__all__ = ["TORCH2TRT_HINT", "convert_torch2trt", "torch2trt_kwargs"]

TORCH2TRT_HINT = ("build it from github.com/NVIDIA-AI-IOT/torch2trt "
                  "(pip install --no-build-isolation .)")

Step = Callable[[str], None]


def torch2trt_kwargs(
    plan: BuildPlan, accepted: set[str], trt: Any = None, calib_dataset: Any = None,
) -> tuple[dict[str, Any], list[str]]:
    """(keyword arguments for ``torch2trt(...)``, notes for the report).

    Args:
        plan: the build plan (precision, DLA core, GPU fallback, workspace).
        accepted: parameter names of the installed ``torch2trt`` function.
        trt: the tensorrt module (for ``DeviceType.DLA``); needed only with a DLA core.
        calib_dataset: ``int8_calib_dataset`` (see ``deploy.int8.Torch2trtCalibration``).
    """
    kw: dict[str, Any] = {"fp16_mode": plan.precision in ("fp16", "int8")}
    notes: list[str] = []
    if plan.precision == "int8":
        if "int8_mode" not in accepted:
            raise EdgesegError("this torch2trt has no int8_mode: update it (" + TORCH2TRT_HINT +
                               ") or use --format engine")
        if calib_dataset is None:
            raise EdgesegError("--format torch2trt --precision int8 needs --images DIR")
        kw.update(int8_mode=True, int8_calib_dataset=calib_dataset)
    if plan.workspace_bytes:
        if plan.trt_version.major < 10 and "max_workspace_size" in accepted:
            kw["max_workspace_size"] = plan.workspace_bytes
        else:
            notes.append(
                f"workspace limit {plan.workspace_bytes >> 20} MiB not applied: torch2trt sets "
                f"no memory-pool limit on TensorRT {plan.trt_version.short} (use --format "
                "engine to apply it)"
            )
    if plan.dla_core is not None:
        missing = {"default_device_type", "dla_core", "gpu_fallback"} - accepted
        if missing:
            raise EdgesegError(
                f"this torch2trt has no DLA options ({', '.join(sorted(missing))}): build the "
                "DLA engine with --format engine, or leave out --dla-core"
            )
        if trt is None:
            raise EdgesegError("internal: a DLA torch2trt build needs the tensorrt module")
        kw.update(default_device_type=trt.DeviceType.DLA, dla_core=plan.dla_core,
                  gpu_fallback=plan.gpu_fallback)
    elif "gpu_fallback" in accepted:
        kw["gpu_fallback"] = False  # no DLA: nothing to fall back from
    return kw, notes


def _accepted(fn: Any) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def convert_torch2trt(
    model: Any, meta: Any, out: Path, plan: BuildPlan, *, height: int, width: int,
    dcn: str | None = None, images: str | None = None, num_images: int = 100, seed: int = 0,
    step: Step | None = None,
) -> dict[str, Any]:
    """Convert ``model`` with torch2trt, check it against PyTorch, write engine + sidecar."""
    import numpy as np
    import torch

    from edgeseg.artifacts.files import atomic_output
    from edgeseg.artifacts.meta import ModelMeta
    from edgeseg.artifacts.sidecar import EngineSidecar
    from edgeseg.deploy.onnx import parity_input
    from edgeseg.deploy.tensorrt import current_gpu, require_tensorrt
    from edgeseg.deploy.torch2trt_converters import register

    say = step or (lambda _m: None)
    trt = require_tensorrt()
    gpu_name, cc = current_gpu()  # before any work: a CPU-only torch fails here
    if not register("auto"):
        from edgeseg.errors import MissingDependencyError

        raise MissingDependencyError("torch2trt", TORCH2TRT_HINT)
    from torch2trt import torch2trt

    dataset = None
    if plan.precision == "int8":
        from edgeseg.deploy.int8 import Torch2trtCalibration, calibration_batches

        paths, _ = calibration_batches(images or "", meta, num_images, seed, (height, width))
        dataset = Torch2trtCalibration(paths, meta, (height, width))
    kw, notes = torch2trt_kwargs(plan, _accepted(torch2trt), trt, dataset)
    if dcn:
        model.set_dcn_impl(dcn)
    net = model.eval().cuda()
    x = torch.from_numpy(parity_input(meta, height, width)).cuda()
    say(f"converting with torch2trt (TensorRT {plan.trt_version}, {plan.precision})")
    with torch.inference_mode():
        trt_module = torch2trt(net, [x], input_names=["input"], output_names=["logits"], **kw)
        if getattr(trt_module, "engine", None) is None:  # torch2trt returns it even on failure
            raise EdgesegError(
                f"torch2trt could not build the engine (TensorRT {plan.trt_version}, "
                f"{plan.precision}): see the TensorRT log above; nothing written to {out}"
            )
        ref, got = net(x).float().cpu().numpy(), trt_module(x).float().cpu().numpy()
    agreement = float((ref.argmax(1) == got.argmax(1)).mean())
    parity = {"max_abs_diff": float(np.abs(ref - got).max()), "agreement": agreement,
              "size": [height, width], "reference": "PyTorch fp32 on CUDA"}
    threshold = {"fp32": 0.999, "fp16": 0.99, "int8": 0.95}[plan.precision]
    if agreement < threshold:
        raise EdgesegError(
            f"parity check failed: TensorRT and PyTorch agree on {agreement:.4%} of pixels "
            f"(< {threshold:.1%}); nothing written to {out}"
        )
    engine_meta = ModelMeta.from_dict({**meta.to_dict(), "input_hw": [height, width],
                                       "precision": plan.precision})
    engine_meta.extra.update(dcn=dcn or "auto", builder="torch2trt")
    sidecar = EngineSidecar(
        trt_version=str(trt.__version__), gpu_name=gpu_name, compute_capability=cc,
        precision=plan.precision, input_shape=[1, 3, height, width],
        model=engine_meta.to_dict(), dla_core=plan.dla_core, builder="torch2trt",
    )
    with atomic_output(out) as tmp:
        tmp.write_bytes(bytes(trt_module.engine.serialize()))
    sidecar.write(out)
    return {"path": str(out), "format": "torch2trt", "bytes": out.stat().st_size,
            "precision": plan.precision, "tensorrt": sidecar.trt_version, "gpu": gpu_name,
            "dla_core": plan.dla_core, "dcn": dcn or "auto", "parity": parity,
            "notes": notes, "meta": engine_meta.to_dict()}
