"""Tiny segmentation ONNX files for serving tests (Triton, DeepStream): built with onnx.helper
in milliseconds, carrying real edgeseg metadata, so the tests exercise the repository writer,
the server and the clients without a minutes-long DESANet export.

The graph is a small untrained segmentation net: Conv 3x3 stride 2 + ReLU, Conv 1x1 to the 19
classes, bilinear Resize x2 back to the input size: (N, 3, H, W) -> logits (N, 19, H, W).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseg.artifacts.meta import ModelMeta

HW = (64, 128)


def tiny_meta(hw: tuple[int, int] = HW) -> ModelMeta:
    from edgeseg.data import MEAN, STD
    from edgeseg.data.cityscapes import CLASSES, PALETTE

    return ModelMeta(variant="tiny-test", classes=list(CLASSES), palette=list(PALETTE),
                     mean=MEAN, std=STD, input_hw=hw)


def tiny_onnx(path: Path, *, dynamic_batch: bool = True, argmax: bool = False,
              hw: tuple[int, int] = HW, seed: int = 0) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgeseg.artifacts.files import write_onnx_metadata
    from edgeseg.deploy.onnx import add_labels_output

    rng = np.random.default_rng(seed)
    h, w = hw
    batch: int | str = "batch" if dynamic_batch else 1
    w1 = numpy_helper.from_array(rng.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.5, (19, 8, 1, 1)).astype(np.float32), "w2")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"]),
        helper.make_node("Resize", ["c2", "", "scales"], ["logits"], mode="linear"),
    ]
    graph = helper.make_graph(
        nodes, "tiny_seg",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, h, w])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 19, h, w])],
        initializer=[w1, b1, w2, scales],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    meta = tiny_meta(hw)
    if argmax:
        model = add_labels_output(model)
    write_onnx_metadata(model, meta, outputs=["labels" if argmax else "logits"],
                        dynamic=dynamic_batch)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
