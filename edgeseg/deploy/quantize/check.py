"""Static checks of a Q/DQ ONNX: where its QuantizeLinear/DequantizeLinear pairs sit, read
from the graph alone (no calibration, no runtime).

TensorRT fuses a Q/DQ pair into the layer it feeds; it runs fast and right only when the pairs
sit on the inputs of weighted ops (Conv, ConvTranspose, MatMul, Gemm) and of residual Adds
(DESIGN.md section 13, TensorRT's developer guide, ModelOpt's ONNX PTQ). Everything else is
counted as a finding:

* ``non_weighted``: Q/DQ feeding any other op (Relu, Clip, Resize, Concat, ...): it keeps the
  activation out of the conv epilogue and forces a requantization.
* ``concat_unequal_scales``: a Concat whose dequantized inputs carry different scales.
* ``dcn_quantized``: Q/DQ on the path computing a deformable conv's offsets/mask (native
  ``DeformConv`` inputs 2 and 4) or a portable form's sampling grid (``GridSample`` input 1),
  back to and including the inputs of the offset Conv: offsets are sub-pixel positions.
* ``quantized_bn``: a BatchNormalization with a dequantized input (TensorRT cannot fold it).
* ``int32_dq``: a DequantizeLinear of INT32 data (onnx-tensorrt accepts INT8/FP8/INT4 only).

The ``tensorrt`` target must have zero of each; the ``onnxruntime`` target only forbids
``dcn_quantized`` (onnxruntime's own placement is measured faster on the CPU, and runs the
INT32 bias and Q/DQ around activations as integer kernels).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.errors import EdgesegError

__all__ = ["FINDINGS", "FORBIDDEN", "WEIGHTED_OPS", "check_qdq", "is_residual_add", "load_qdq"]

WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})
FINDINGS = ("non_weighted", "concat_unequal_scales", "dcn_quantized", "quantized_bn",
            "int32_dq")
FORBIDDEN = {"tensorrt": FINDINGS, "onnxruntime": ("dcn_quantized",)}
_Q, _DQ = "QuantizeLinear", "DequantizeLinear"


def load_qdq(path: str | Path) -> Any:
    """Load a Q/DQ ONNX for checking; one-line errors for a missing or foreign file."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise EdgesegError(f"ONNX file not found: {p}")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - truncated or foreign files
        raise EdgesegError(f"{p}: not a readable ONNX file ({type(e).__name__})") from None
    if not any(n.op_type in (_Q, _DQ) for n in model.graph.node):
        raise EdgesegError(f"{p.name} has no QuantizeLinear/DequantizeLinear nodes: not a Q/DQ "
                           "ONNX (calibrate writes one)")
    return model


def is_residual_add(node: Any, constants: set[str]) -> bool:
    """An Add of two computed tensors (a skip connection), not a bias or constant offset."""
    return node.op_type == "Add" and len(node.input) == 2 and not (set(node.input) & constants)


def check_qdq(model: Any, target: str | None = None) -> dict[str, Any]:
    """Findings of ``model`` (a ModelProto): counts and, per finding, the node names.

    ``target`` (``tensorrt`` | ``onnxruntime``) adds ``forbidden`` (the findings that target
    must not have, with their counts) and ``ok``.
    """
    import onnx
    from onnx import numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    for n in g.node:  # Constant nodes hold scales too (exporters and ModelOpt write both)
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            inits[n.output[0]] = n.attribute[0].t
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def weight_dq(dq: Any) -> bool:  # DQ of a stored tensor (weights), not of an activation
        src = producer.get(dq.input[0])
        return dq.input[0] in inits or (src is not None and src.op_type == "Constant")

    def scale_of(dq: Any) -> tuple[float, ...] | None:
        t = inits.get(dq.input[1]) if len(dq.input) > 1 else None
        return None if t is None else tuple(np.ravel(numpy_helper.to_array(t)).tolist())

    constants = set(inits) | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    constants |= {d.output[0] for d in g.node if d.op_type == _DQ and weight_dq(d)}

    by_consumer: Counter[str] = Counter()
    weights_by_consumer: Counter[str] = Counter()
    non_weighted: Counter[str] = Counter()
    names: dict[str, list[str]] = {k: [] for k in FINDINGS}
    dqs = [n for n in g.node if n.op_type == _DQ]
    for dq in dqs:
        users = consumers.get(dq.output[0], [])
        if weight_dq(dq):
            for u in users:
                weights_by_consumer[u.op_type] += 1
            src = inits.get(dq.input[0])
            if src is not None and src.data_type == onnx.TensorProto.INT32:
                names["int32_dq"].append(dq.name or dq.input[0])
            continue
        for u in users:
            by_consumer[u.op_type] += 1
            if u.op_type not in WEIGHTED_OPS and not is_residual_add(u, constants):
                non_weighted[u.op_type] += 1
                names["non_weighted"].append(f"{u.op_type}:{u.name}")

    for n in g.node:
        if n.op_type == "Concat":
            scales = {scale_of(producer[i]) for i in n.input
                      if i in producer and producer[i].op_type == _DQ}
            if len(scales) > 1:
                names["concat_unequal_scales"].append(n.name)
        elif n.op_type == "BatchNormalization":
            if any(i in producer and producer[i].op_type == _DQ for i in n.input):
                names["quantized_bn"].append(n.name)
        if n.op_type in ("DeformConv", "GridSample"):
            idx = (2, 4) if n.op_type == "DeformConv" else (1,)
            starts = [n.input[k] for k in idx if k < len(n.input) and n.input[k]]
            if _qdq_on_path(starts, producer, inits):
                names["dcn_quantized"].append(n.name)

    counts = {k: len(v) for k, v in names.items()}
    report: dict[str, Any] = {
        "qdq_pairs": sum(1 for d in dqs if not weight_dq(d)),
        "qdq_by_consumer": dict(sorted(by_consumer.items())),
        "weights_by_consumer": dict(sorted(weights_by_consumer.items())),
        "non_weighted_by_op": dict(sorted(non_weighted.items())),
        "counts": counts,
        "nodes": names,
    }
    if target is not None:
        if target not in FORBIDDEN:
            raise EdgesegError(f"unknown Q/DQ target {target!r}: tensorrt or onnxruntime")
        forbidden = {k: counts[k] for k in FORBIDDEN[target]}
        report.update(target=target, forbidden=forbidden, ok=not any(forbidden.values()))
    return report


def _qdq_on_path(starts: list[str], producer: dict[str, Any], inits: dict[str, Any]) -> bool:
    """Whether any Q/DQ computes the tensors ``starts``: walk producers back to and including
    the inputs of the first Conv on each branch (the offset conv)."""
    stack, seen = list(starts), set()
    while stack:
        name = stack.pop()
        node = producer.get(name)
        if node is None or name in seen or name in inits:
            continue
        seen.add(name)
        if node.op_type in (_Q, _DQ):
            return True
        if node.op_type in ("Conv", "ConvTranspose"):
            # the conv's own inputs: an INT8 offset conv rounds the offsets too
            for i in node.input:
                src = producer.get(i)
                if src is not None and src.op_type in (_Q, _DQ):
                    return True
            continue
        stack.extend(node.input)
    return False
