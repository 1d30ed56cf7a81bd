"""PyTorch backend: a DESANet checkpoint (or an in-memory model) behind the Segmenter interface.

Runs under ``torch.inference_mode``. Options: ``channels_last`` memory format (faster convs on
recent CPUs and on tensor cores), ``fp16`` on CUDA (weights and activations in half precision;
the CPU has no fast half convolutions, so it is refused there), and the deformable-conv
implementation (``auto`` picks torchvision on CUDA and the grid_sample version on CPU).
Any input size works, so ``native_size=True`` evaluation skips the resize.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.runtime.base import ModelMeta, Segmenter

__all__ = ["TorchSegmenter"]


class TorchSegmenter(Segmenter):
    """A Segmenter running a PyTorch model.

    Args:
        model: the network (eval mode is set here); returns logits (N, C, H, W).
        meta: its metadata.
        device: ``cpu``, ``cuda`` (the current CUDA device), ``cuda:1``, ``auto``
            (:func:`edgeseg.runtime.devices.parse_device`).
        channels_last: run in NHWC memory format.
        fp16: half precision (CUDA only).
        dcn: deformable conv implementation (``auto``, ``native``, ``portable``) when the model
            has ``set_dcn_impl``.
        argmax: take the argmax on the device and return labels (N, H, W) uint8, so only the
            labels cross to the host.
        input_hw: default input size (overrides ``meta.input_hw``).
    """

    backend = "torch"
    dynamic_input = True
    path: Path | None = None  # the checkpoint, when loaded from one

    def __init__(
        self,
        model: Any,
        meta: ModelMeta,
        *,
        device: str = "cpu",
        channels_last: bool = False,
        fp16: bool = False,
        dcn: str | None = None,
        argmax: bool = False,
        input_hw: tuple[int, int] | None = None,
    ) -> None:
        import torch

        if input_hw is not None:
            meta.input_hw = (int(input_hw[0]), int(input_hw[1]))
        super().__init__(meta)
        from edgeseg.runtime.devices import parse_device

        self.device = parse_device(device, what="device")
        if fp16 and self.device.type != "cuda":
            raise EdgesegError("fp16 inference with torch needs a CUDA device (--device cuda)")
        if dcn is not None:
            if dcn not in ("auto", "native", "portable"):
                raise EdgesegError(f"unknown deformable conv impl {dcn!r}: auto, native or portable")
            if hasattr(model, "set_dcn_impl"):
                model.set_dcn_impl(dcn)
        self.channels_last, self.fp16, self.argmax = channels_last, fp16, argmax
        self.dcn = dcn or "auto"
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        model = model.eval().to(self.device, memory_format=self.memory_format)
        self.model = model.half() if fp16 else model

    @classmethod
    def from_checkpoint(cls, path: str | Path, **opts: Any) -> TorchSegmenter:
        """Load a checkpoint written by `edgeseg train` (or ``save_model_only``)."""
        from edgeseg.artifacts.checkpoint import load_model

        model, meta = load_model(path)
        seg = cls(model, meta, **opts)
        seg.path = Path(path)
        return seg

    def infer(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
            x = x.contiguous(memory_format=self.memory_format)
            if self.fp16:
                x = x.half()
            out = self.model(x)
            if self.argmax:
                return out.argmax(1).to(torch.uint8).cpu().numpy()
            return out.float().cpu().numpy()

    def describe(self) -> dict[str, Any]:
        import torch

        d: dict[str, Any] = {
            "backend": self.backend,
            "torch": torch.__version__,
            "device": str(self.device),
            "channels_last": self.channels_last,
            "fp16": self.fp16,
            "dcn": self.dcn,
            "argmax_on_device": self.argmax,
            "precision": "fp16" if self.fp16 else "fp32",
        }
        if self.device.type == "cpu":
            d["threads"] = torch.get_num_threads()
        else:
            d["gpu"] = torch.cuda.get_device_name(self.device)
        if self.path is not None:
            d["model"] = str(self.path)
        return d
