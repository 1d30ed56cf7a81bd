"""The ONNX nvinfer takes as is: 0..255 RGB in, softmax class scores out (``--normalize-in-graph``).

Gst-nvinfer normalises with one scalar scale, which cannot express ImageNet's per-channel std
(deploy/deepstream.py's ``scale_and_offsets``). This export wraps the network in a module that
divides by 255 and applies mean/std in the graph, then a softmax (nvinfer's segmentation parser
compares a pixel's best score with ``segmentation-threshold``: probabilities make the threshold
mean what it says). It is written only when the graph agrees with the Segmenter on one image.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.artifacts.meta import ModelMeta
from edgeseg.atomic import atomic_path
from edgeseg.errors import EdgesegError

__all__ = ["MIN_AGREEMENT", "PROBS_NAME", "export_normalized_onnx", "parity_image"]

PROBS_NAME = "probs"
MIN_AGREEMENT = 0.999

Step = Callable[[str], None]


def _normalize_wrapper(model: Any, meta: ModelMeta) -> Any:
    import torch
    from torch import nn

    class NormalizeInGraph(nn.Module):
        """0..255 RGB -> (x/255 - mean)/std -> network -> softmax over the classes."""

        def __init__(self, net: Any) -> None:
            super().__init__()
            self.net = net
            std = torch.tensor(meta.std, dtype=torch.float32).view(1, 3, 1, 1)
            mean = torch.tensor(meta.mean, dtype=torch.float32).view(1, 3, 1, 1)
            self.register_buffer("scale", 1.0 / (255.0 * std))
            self.register_buffer("shift", mean / std)

        def forward(self, x: Any) -> Any:
            return torch.softmax(self.net(x * self.scale - self.shift), dim=1)

        def set_dcn_impl(self, impl: str) -> None:
            if hasattr(self.net, "set_dcn_impl"):
                self.net.set_dcn_impl(impl)

    return NormalizeInGraph(model).eval()


def parity_image(meta: ModelMeta, seed: int = 0) -> np.ndarray:
    """An RGB uint8 street scene at the model's input size (smooth noise without the generator)."""
    import cv2

    h, w = meta.input_hw
    rng = np.random.default_rng(seed)
    try:
        from edgeseg.data.synthetic import generate_scene
    except ImportError:
        small = rng.uniform(0, 255, (max(h // 16, 2), max(w // 16, 2), 3)).astype(np.float32)
        return np.clip(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), 0, 255).astype(
            np.uint8)
    rgb, _ = generate_scene(rng, h, w)
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def export_normalized_onnx(
    model: Any,
    meta: ModelMeta,
    out: str | Path,
    *,
    height: int | None = None,
    width: int | None = None,
    dcn: str = "native",
    opset: int = 19,
    dynamic_batch: bool = False,
    threads: int | None = None,
    min_agreement: float = MIN_AGREEMENT,
    step: Step | None = None,
) -> dict[str, Any]:
    """Export ``model`` with 0..255 RGB input and softmax ``probs`` output, for nvinfer.

    Parity: the exported graph in onnxruntime on a raw RGB image against the Segmenter (PyTorch,
    the model's own normalisation) on the same image; the argmax must agree on at least
    ``min_agreement`` of the pixels, else nothing is written.
    """
    import onnx

    from edgeseg.artifacts.files import write_onnx_metadata
    from edgeseg.deploy.onnx import export_onnx
    from edgeseg.runtime.onnxruntime_backend import make_session
    from edgeseg.runtime.torch_backend import TorchSegmenter

    say = step or (lambda _m: None)
    out = Path(out)
    h, w = height or meta.input_hw[0], width or meta.input_hw[1]
    sized = ModelMeta.from_dict({**meta.to_dict(), "input_hw": [h, w]})
    with atomic_path(out) as tmp:
        report = export_onnx(_normalize_wrapper(copy.deepcopy(model), sized), sized, tmp,
                             dcn=dcn, opset=opset, parity=False, step=say,
                             dynamic_batch=dynamic_batch)
        say("folding: input 0..255 RGB, output softmax probs")
        proto = onnx.load(str(tmp))
        for node in proto.graph.node:
            node.output[:] = [PROBS_NAME if o == "logits" else o for o in node.output]
        proto.graph.output[0].name = PROBS_NAME
        graph_meta = ModelMeta.from_dict(report["meta"])
        graph_meta.extra.update(normalize_in_graph=True, input_range="0..255 RGB",
                                outputs=[PROBS_NAME], output_activation="softmax")
        write_onnx_metadata(proto, graph_meta)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))

        say("parity check (normalised graph vs Segmenter)")
        rgb = parity_image(sized)
        want = TorchSegmenter(copy.deepcopy(model), sized)(np.ascontiguousarray(rgb[:, :, ::-1]))
        sess, _ = make_session(tmp, threads=threads)
        x = rgb.transpose(2, 0, 1)[None].astype(np.float32)
        (probs,) = sess.run([PROBS_NAME], {sess.get_inputs()[0].name: x})
        got = probs[0].argmax(0).astype(np.uint8)
        agreement = float((got == want).mean())
        sums = probs.sum(1)
        parity = {"agreement": agreement, "size": [h, w],
                  "reference": "Segmenter (PyTorch) with the model's own normalisation",
                  "probs_sum_max_err": float(np.abs(sums - 1.0).max())}
        if agreement < min_agreement:
            raise EdgesegError(
                f"parity check failed: the normalised graph and the Segmenter agree on "
                f"{agreement:.4%} of pixels (< {min_agreement:.1%}); nothing written to {out}"
            )
    return {**{k: v for k, v in report.items() if k not in ("parity", "meta", "path")},
            "path": str(out), "format": "onnx", "normalize_in_graph": True,
            "outputs": {PROBS_NAME: report["outputs"]["logits"]}, "parity": parity,
            "meta": graph_meta.to_dict()}
