"""Where Q/DQ goes: the deformable conv's float branch, TensorRT's placement, the BN fold.

TensorRT's rules (DESIGN.md section 13; ModelOpt's ONNX PTQ follows the same): Q/DQ on the
inputs of weighted ops (Conv, ConvTranspose, MatMul, Gemm) and of residual Adds only; TensorRT
fuses activations, Resize, pooling and reductions into their neighbours or runs them at the
neighbours' precision. A Concat that receives no Q/DQ of its own is quantized once, at the
input of the conv after it, so its inputs share that one scale (what ModelOpt gets by giving
all Concat inputs one scale). BatchNormalization needs initializer inputs to be folded: the BN
after DeformConv is folded into the DeformConv's weight and bias before quantizing.

The deformable conv's offset path (native ``DeformConv`` inputs 2 and 4, the portable
``GridSample``'s grid) is kept in float on every target, back to and including the offset
Conv: offsets are sub-pixel positions, and a near-zero offset tensor (a freshly fine-tuned
model) gets a scale that rounds every offset to a whole pixel or to zero.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from edgeseg.deploy.quantize.check import WEIGHTED_OPS, is_residual_add

__all__ = ["dcn_branch_nodes", "fold_deformconv_bn", "strip_qdq_outside", "tensorrt_nodes"]

_Q, _DQ = "QuantizeLinear", "DequantizeLinear"


def dcn_branch_nodes(model: Any) -> list[str]:
    """Names of the nodes computing a DCN's offsets/mask or a GridSample's grid, back to and
    including the first Conv of each branch (the offset conv)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    names: list[str] = []
    for node in model.graph.node:
        if node.op_type == "DeformConv":
            stack = [node.input[k] for k in (2, 4) if k < len(node.input) and node.input[k]]
        elif node.op_type == "GridSample" and len(node.input) > 1:
            stack = [node.input[1]]
        else:
            continue
        while stack:
            src = producer.get(stack.pop())
            if src is None or src.name in names:
                continue
            names.append(src.name)
            if src.op_type not in ("Conv", "ConvTranspose"):
                stack.extend(src.input)
    return names


def tensorrt_nodes(model: Any, float_nodes: set[str]) -> list[str]:
    """The nodes to quantize for TensorRT: weighted ops and residual Adds not kept in float."""
    constants = {i.name for i in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in model.graph.node if n.name not in float_nodes
            and (n.op_type in WEIGHTED_OPS or is_residual_add(n, constants))]


def strip_qdq_outside(model: Any, float_nodes: Iterable[str] = (),
                      only_weighted: bool = True) -> dict[str, int]:
    """Feed the float tensor instead of an activation Q/DQ pair to every node in
    ``float_nodes`` and, with ``only_weighted``, to every node that is neither a weighted op nor
    a residual Add; drop the pairs left unused. Returns the consumers rewired, by op type.

    onnxruntime shares one pair among all consumers of a tensor, the excluded ones included (the
    DCN's input feeds quantized convs and the float DeformConv), and it quantizes the
    outputs of the nodes it quantizes (a residual Add's sum): this leaves the pairs only where
    the target runs them.
    """
    keep_float = set(float_nodes)
    g = model.graph
    inits = {i.name for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    constants = inits | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    constants |= {n.output[0] for n in g.node if n.op_type == _DQ and n.input[0] in inits}
    rewired: dict[str, int] = {}
    for node in g.node:
        if node.op_type in (_Q, _DQ):
            continue
        allowed = node.op_type in WEIGHTED_OPS or is_residual_add(node, constants)
        if node.name not in keep_float and (allowed or not only_weighted):
            continue
        for k, name in enumerate(node.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != _DQ or dq.input[0] in inits:
                continue
            q = producer.get(dq.input[0])
            if q is None or q.op_type != _Q:
                continue
            node.input[k] = q.input[0]
            rewired[node.op_type] = rewired.get(node.op_type, 0) + 1
    outputs = {o.name for o in g.output}
    while True:  # drop DQs, then Qs, that nothing reads any more
        used = {i for n in g.node for i in n.input} | outputs
        dead = [n for n in g.node if n.op_type in (_Q, _DQ) and not (set(n.output) & used)]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
    used = {i for n in g.node for i in n.input}
    for init in [i for i in g.initializer if i.name not in used]:
        g.initializer.remove(init)
    return rewired


def fold_deformconv_bn(model: Any) -> int:
    """Fold each BatchNormalization that alone reads a DeformConv's output (with initializer
    scale, bias, mean and variance) into that DeformConv's weight and bias. Returns the count.

    ``y = gamma * (conv(x, W) + b - mean) / sqrt(var + eps) + beta`` is ``conv(x, W * s) +
    (b - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)`` per output channel.
    """
    from onnx import numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    readers: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    outputs = {o.name for o in g.output}
    folded = 0
    for bn in [n for n in g.node if n.op_type == "BatchNormalization"]:
        conv = producer.get(bn.input[0])
        if conv is None or conv.op_type != "DeformConv" or len(bn.output) != 1:
            continue
        if readers.get(bn.input[0], 0) != 1 or bn.input[0] in outputs:
            continue
        if not all(i in inits for i in list(bn.input[1:5]) + [conv.input[1]]):
            continue
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        gamma, beta, mean, var = (numpy_helper.to_array(inits[i]).astype(np.float64)
                                  for i in bn.input[1:5])
        s = gamma / np.sqrt(var + eps)
        w = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float64)
        has_bias = len(conv.input) > 3 and conv.input[3] in inits
        b = numpy_helper.to_array(inits[conv.input[3]]).astype(np.float64) if has_bias \
            else np.zeros(w.shape[0])
        # new names: exporters deduplicate equal initializers, so the old ones may be shared
        wname, bname = f"{conv.name}_bn_folded_weight", f"{conv.name}_bn_folded_bias"
        g.initializer.append(numpy_helper.from_array(
            (w * s.reshape(-1, *([1] * (w.ndim - 1)))).astype(np.float32), wname))
        g.initializer.append(numpy_helper.from_array(((b - mean) * s + beta).astype(np.float32),
                                                     bname))
        conv.input[1] = wname
        while len(conv.input) < 4:
            conv.input.append("")
        conv.input[3] = bname
        conv.output[0] = bn.output[0]
        g.node.remove(bn)
        folded += 1
    if folded:
        used = {i for n in g.node for i in n.input}
        for init in [i for i in g.initializer if i.name not in used]:
            g.initializer.remove(init)
    return folded
