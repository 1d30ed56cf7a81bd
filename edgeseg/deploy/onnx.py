"""Export DESANet to ONNX, check the graph, stamp its metadata, and prove it matches PyTorch.

Exporter: ``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript) with its onnxscript
optimizer (constant folding, dead-code removal, Conv+BN already folded in eval mode).

Deformable conv (``dcn``):

* ``native``: torchvision's ``deform_conv2d`` becomes one ONNX ``DeformConv`` (opset 19+).
  torch.onnx ships no translation for ``torchvision::deform_conv2d`` (the TorchScript exporter
  has no symbolic either), so :func:`_deform_conv2d_onnx` supplies one through
  ``custom_translation_table``. onnxruntime runs it on CPU; TensorRT's parser imports it from
  10.1 onto the ModulatedDeformConv2d plugin.
* ``portable``: standard ops only (one GridSample + one strided Conv). The graph is checked to
  contain no ``DeformConv``.

Outputs: ``logits`` (N, C, H, W) float, or with ``argmax=True`` *instead* a ``labels`` output
(N, H, W) uint8 (ArgMax over classes + Cast). Labels replace logits because the point is to
keep the 19-channel float tensor on the device: a TensorRT engine must bind and write every
output, so a logits output kept beside the labels would still cost 40 MB per 512x1024 frame.
The parity check runs on the logits graph before the ArgMax is appended, and the labels graph
is then checked to reproduce the argmax of those logits.

Parity: the exported file runs in onnxruntime (the session options of the runtime backend) on a
synthetic street scene and is compared with the PyTorch model (fp32, torchvision's deformable
conv as the reference): max |logit difference| and the fraction of pixels whose argmax agrees.
An export whose agreement is below 0.999 (fp32; 0.99 for fp16) fails and writes nothing.

Everything is written to a temporary file and renamed into place at the very end.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import io
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg import __version__
from edgeseg.artifacts.files import atomic_output, write_onnx_metadata
from edgeseg.artifacts.meta import ModelMeta
from edgeseg.errors import EdgesegError

__all__ = [
    "DCN_MODES",
    "MIN_AGREEMENT",
    "MIN_TORCH",
    "add_labels_output",
    "check_exporter",
    "count_ops",
    "export_onnx",
    "parity_input",
]

DCN_MODES = ("native", "portable")
MIN_OPSET = 19  # DeformConv
MIN_AGREEMENT = {"fp32": 0.999, "fp16": 0.99}
# torch.onnx.export gained custom_translation_table= and optimize= in 2.6 (read from the 2.5.1 and
# 2.6.0 wheels); 2.5's export swallows unknown keywords (**_), which would silently drop the
# DeformConv translation, so an older exporter is refused instead.
MIN_TORCH = "2.6"
EXPORTER_OPTIONS = ("custom_translation_table", "optimize")
INPUT_NAME, LOGITS_NAME, LABELS_NAME = "input", "logits", "labels"

Step = Callable[[str], None]


def _deform_conv2d_onnx(
    input: Any, weight: Any, offset: Any, mask: Any, bias: Any,
    stride_h: int, stride_w: int, pad_h: int, pad_w: int, dil_h: int, dil_w: int,
    n_weight_grps: int, n_offset_grps: int, use_mask: bool,
) -> Any:
    """``torchvision::deform_conv2d`` -> ONNX ``DeformConv`` (opset 19).

    torchvision's op order is (input, weight, offset, mask, bias, ...); ONNX's is
    (X, W, offset, B, mask). The offset layout is the same ((dy, dx) per tap, row-major).
    DCNv1 (no mask) leaves the optional mask input out, which ONNX defines as all ones.
    """
    from onnxscript import opset19 as op

    return op.DeformConv(
        input, weight, offset, bias, mask if use_mask else None,
        strides=[stride_h, stride_w],
        pads=[pad_h, pad_w, pad_h, pad_w],
        dilations=[dil_h, dil_w],
        group=n_weight_grps,
        offset_group=n_offset_grps,
    )


def _translation_table() -> dict[Any, Any]:
    import torch
    import torchvision.ops  # noqa: F401 - registers torch.ops.torchvision.*

    return {torch.ops.torchvision.deform_conv2d.default: _deform_conv2d_onnx}


def check_exporter(export: Callable[..., Any], torch_version: str) -> None:
    """Raise a one-line EdgesegError for a torch whose ``torch.onnx.export`` lacks an option
    :func:`export_onnx` passes: any torch older than :data:`MIN_TORCH`, or an exporter that
    declares its options (it has ``dynamo``) without these (a pre-release build)."""
    m = re.match(r"(\d+)\.(\d+)", torch_version)
    too_old = m is not None and (int(m[1]), int(m[2])) < tuple(map(int, MIN_TORCH.split(".")))
    params = inspect.signature(export).parameters
    missing = [name for name in EXPORTER_OPTIONS if name not in params]
    if too_old or ("dynamo" in params and missing):
        raise EdgesegError(
            f"ONNX export needs torch >= {MIN_TORCH}: torch {torch_version}'s torch.onnx.export "
            f"has no {' or '.join(missing or EXPORTER_OPTIONS)} option (export in edgeseg:cpu, "
            "see docker/README.md)"
        )


def count_ops(model: Any) -> Counter[str]:
    """Op type -> count over the main graph and any local functions."""
    graphs = [model.graph, *model.functions]
    return Counter(n.op_type for g in graphs for n in g.node)


def parity_input(meta: ModelMeta, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A normalised (1, 3, H, W) float32 input: a synthetic street scene when the generator is
    available, else a smooth random image (low-frequency noise, so features are image-like)."""
    import cv2

    rng = np.random.default_rng(seed)
    try:
        from edgeseg.data.synthetic import generate_scene
    except ImportError:
        small = rng.uniform(0, 255, (max(height // 16, 2), max(width // 16, 2), 3))
        rgb = cv2.resize(small.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
        rgb = np.clip(rgb + rng.normal(0, 8, rgb.shape), 0, 255).astype(np.uint8)
    else:
        rgb, _ = generate_scene(rng, height, width)
    x = rgb.transpose(2, 0, 1)[None].astype(np.float32)
    mean = np.asarray(meta.mean, np.float32).reshape(1, 3, 1, 1) * 255.0
    std = np.asarray(meta.std, np.float32).reshape(1, 3, 1, 1) * 255.0
    return (x - mean) / std


def add_labels_output(model: Any, *, keep_logits: bool = False) -> Any:
    """Append ArgMax(axis=1) + Cast(uint8) after ``logits``; return the edited ModelProto.

    ``keep_logits`` keeps the logits output beside ``labels`` (labels first).
    """
    import onnx
    from onnx import TensorProto, helper

    outs = [o.name for o in model.graph.output]
    if LOGITS_NAME not in outs:
        raise EdgesegError(f"graph has no '{LOGITS_NAME}' output to take the argmax of: {outs}")
    logits = next(o for o in model.graph.output if o.name == LOGITS_NAME)
    dims = logits.type.tensor_type.shape.dim
    n_classes = dims[1].dim_value if len(dims) > 1 else 0
    if n_classes > 256:
        raise EdgesegError(f"{n_classes} classes do not fit the uint8 labels output")
    model.graph.node.extend(
        [
            helper.make_node("ArgMax", [LOGITS_NAME], ["labels_i64"], name="labels_argmax",
                             axis=1, keepdims=0),
            helper.make_node("Cast", ["labels_i64"], [LABELS_NAME], name="labels_cast",
                             to=TensorProto.UINT8),
        ]
    )
    shape: list[Any] = []
    for i, d in enumerate(dims):
        if i == 1:
            continue
        shape.append(d.dim_param if d.dim_param else (d.dim_value if d.HasField("dim_value") else None))
    labels = helper.make_tensor_value_info(LABELS_NAME, TensorProto.UINT8, shape)
    kept = [o for o in model.graph.output if keep_logits and o.name == LOGITS_NAME]
    del model.graph.output[:]
    model.graph.output.extend([labels, *kept])
    onnx.checker.check_model(model)
    return model


def _ort_run(path: Path, x: np.ndarray, output: str, threads: int | None) -> np.ndarray:
    from edgeseg.runtime.onnxruntime_backend import make_session

    sess, _ = make_session(path, threads=threads)
    dtype = np.float16 if sess.get_inputs()[0].type == "tensor(float16)" else np.float32
    (out,) = sess.run([output], {INPUT_NAME: x.astype(dtype)})
    return out


def _torch_reference(model: Any, x: np.ndarray) -> np.ndarray:
    """fp32 logits of the model with torchvision's deformable conv (the reference maths)."""
    import torch

    ref = copy.deepcopy(model).float().eval()
    if hasattr(ref, "set_dcn_impl"):
        ref.set_dcn_impl("native")
    with torch.inference_mode():
        return ref(torch.from_numpy(x)).numpy()


def _parity(ref: np.ndarray, got: np.ndarray) -> dict[str, Any]:
    got = got.astype(np.float32)
    if ref.shape != got.shape:
        raise EdgesegError(f"exported model returned shape {got.shape}, PyTorch {ref.shape}")
    return {
        "max_abs_diff": float(np.abs(ref - got).max()),
        "agreement": float((ref.argmax(1) == got.argmax(1)).mean()),
    }


def export_onnx(
    model: Any,
    meta: ModelMeta,
    out: str | Path,
    *,
    height: int | None = None,
    width: int | None = None,
    dcn: str = "native",
    dynamic: bool = False,
    dynamic_batch: bool = False,
    argmax: bool = False,
    opset: int = MIN_OPSET,
    fp16: bool = False,
    parity: bool = True,
    min_agreement: float | None = None,
    threads: int | None = None,
    step: Step | None = None,
) -> dict[str, Any]:
    """Export ``model`` to ``out`` and return a report (JSON-able dict).

    Args:
        model: a DESANet (or any module returning logits in eval mode). Not modified.
        meta: its metadata; the ONNX carries a copy with ``input_hw`` = the export size and
            ``precision``, plus ``extra`` keys dcn, dynamic, outputs, opset.
        height, width: the export (and parity) input size; default ``meta.input_hw``.
        dcn: ``native`` (ONNX DeformConv) or ``portable`` (GridSample + Conv, no DeformConv).
        dynamic: batch, height and width as symbolic dimensions.
        dynamic_batch: the batch only symbolic, H and W fixed (nvinfer with several sources).
        argmax: replace ``logits`` by a uint8 ``labels`` output.
        opset: ONNX opset, 19 or newer.
        fp16: export an fp16 graph (fp16 input, weights and logits; TensorRT 11 strongly typed
            builds need one). Parity is still measured against fp32 PyTorch.
        parity: run the parity check (and fail below ``min_agreement``).
        min_agreement: default 0.999 for fp32, 0.99 for fp16.
        threads: onnxruntime threads for the parity run.
        step: called with a short message before each stage (for progress display).

    Raises:
        EdgesegError: bad arguments, exporter failure, a DeformConv in a portable graph,
            or failed parity. Nothing is left at ``out`` then.
    """
    import onnx
    import torch

    check_exporter(torch.onnx.export, torch.__version__)
    say = step or (lambda _msg: None)
    out = Path(out)
    if dcn not in DCN_MODES:
        raise EdgesegError(f"unknown deformable conv mode {dcn!r}: expected native or portable")
    max_opset = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= max_opset:
        raise EdgesegError(f"opset {opset} not supported: use {MIN_OPSET} to {max_opset}")
    h, w = (height or meta.input_hw[0]), (width or meta.input_hw[1])
    if h < 32 or w < 32:
        raise EdgesegError(f"export size {h}x{w} is too small: at least 32x32")
    precision = "fp16" if fp16 else "fp32"
    threshold = MIN_AGREEMENT[precision] if min_agreement is None else float(min_agreement)

    net = copy.deepcopy(model).eval()
    if hasattr(net, "set_dcn_impl"):
        net.set_dcn_impl(dcn)
    sample = torch.from_numpy(parity_input(meta, h, w)) if parity else torch.randn(1, 3, h, w)
    if fp16:
        net = net.half()
    dynamic_shapes: tuple[dict[int, str], ...] | None = (
        ({0: "batch", 2: "height", 3: "width"},) if dynamic
        else ({0: "batch"},) if dynamic_batch else None)

    say(f"tracing ({'dynamic' if dynamic else f'{h}x{w}'}, {dcn} DCN, opset {opset})")
    t0 = time.perf_counter()
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):  # keep stdout clean for --json
            program = torch.onnx.export(
                net,
                (sample.half() if fp16 else sample,),
                dynamo=True,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[LOGITS_NAME],
                dynamic_shapes=dynamic_shapes,
                custom_translation_table=_translation_table(),
                optimize=True,
                verbose=False,
            )
    except Exception as e:  # the exporter raises many types; keep one line
        first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise EdgesegError(f"ONNX export failed: {first.strip()[:300]}") from e
    assert program is not None  # dynamo=True always returns the program
    proto = program.model_proto
    export_s = time.perf_counter() - t0

    say("checking graph")
    ops = count_ops(proto)
    n_deform = ops.get("DeformConv", 0)
    if dcn == "portable" and n_deform:
        raise EdgesegError(f"portable export still contains {n_deform} DeformConv node(s)")
    if dcn == "native" and not n_deform and _has_deformable(model):
        raise EdgesegError("native export produced no DeformConv node for the deformable conv")

    onnx_meta = ModelMeta.from_dict({**meta.to_dict(), "input_hw": [h, w], "precision": precision})
    onnx_meta.extra.update(
        dcn=dcn, dynamic=dynamic, dynamic_batch=dynamic_batch or dynamic, opset=opset,
        outputs=[LABELS_NAME if argmax else LOGITS_NAME],
        edgeseg_version=__version__,
    )
    write_onnx_metadata(proto, onnx_meta)
    proto.producer_name, proto.producer_version = "edgeseg", __version__
    onnx.checker.check_model(proto, full_check=True)

    report: dict[str, Any] = {}
    with atomic_output(out) as tmp:
        onnx.save(proto, str(tmp))
        if parity:
            say("parity check (onnxruntime vs PyTorch)")
            x = sample.numpy()
            ref = _torch_reference(model, x)
            logits = _ort_run(tmp, x, LOGITS_NAME, threads)
            report["parity"] = {**_parity(ref, logits), "size": [h, w],
                                "reference": "PyTorch fp32, torchvision DCN"}
            agreement = report["parity"]["agreement"]
            if agreement < threshold:
                raise EdgesegError(
                    f"parity check failed: onnxruntime and PyTorch agree on {agreement:.4%} of "
                    f"pixels (< {threshold:.1%}), max logit diff "
                    f"{report['parity']['max_abs_diff']:.3g}; nothing written to {out}"
                )
        if argmax:
            say("appending argmax")
            proto = add_labels_output(proto)
            onnx.save(proto, str(tmp))
            if parity:
                labels = _ort_run(tmp, x, LABELS_NAME, threads)
                same = float((labels == logits.argmax(1)).mean())
                report["parity"]["labels_match_logits"] = same
                if labels.dtype != np.uint8 or same < 1.0 - 1e-4:
                    raise EdgesegError(
                        f"labels output differs from the argmax of the logits ({same:.4%} equal)"
                    )
        size = tmp.stat().st_size

    return {
        "path": str(out),
        "format": "onnx",
        "bytes": size,
        "opset": opset,
        "nodes": sum(count_ops(proto).values()),
        "op_counts": dict(sorted(count_ops(proto).items())),
        "dcn": dcn,
        "dcn_op": "DeformConv" if n_deform else ("GridSample" if ops.get("GridSample") else "none"),
        "dynamic": dynamic,
        "input": {"name": INPUT_NAME, "shape": _shape(proto.graph.input[0])},
        "outputs": {o.name: _shape(o) for o in proto.graph.output},
        "precision": precision,
        "exporter": f"torch.onnx dynamo (torch {torch.__version__})",
        "export_s": round(export_s, 2),
        **report,
        "meta": onnx_meta.to_dict(),
    }


def _has_deformable(model: Any) -> bool:
    from edgeseg.models.deform import DeformableConv2d

    return any(isinstance(m, DeformableConv2d) for m in model.modules())


def _shape(value_info: Any) -> list[int | str]:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_param or d.dim_value for d in dims]
