"""TensorRT backend: runs a serialized engine, with I/O buffers as torch CUDA tensors.

Loading goes through :func:`edgeseg.runtime.trt_engine.load_engine`, which refuses an engine built
for another GPU architecture or TensorRT release (from its sidecar) before deserializing it.
TensorRT 10+ runs by tensor address on a torch stream (``execute_async_v3``); 8.6 by bindings
(``execute_v2``), as ``trt_compat.TrtFeatures.tensor_address_execution`` decides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.artifacts.sidecar import meta_from_sidecar
from edgeseg.artifacts.trt_version import trt_dtype_to_numpy
from edgeseg.errors import EdgesegError
from edgeseg.runtime.base import Segmenter

__all__ = ["TensorRTSegmenter", "make_layer_profiler", "top_layers"]


def top_layers(times: dict[str, list[float]], n: int = 10) -> list[dict[str, Any]]:
    """The ``n`` slowest layers by mean time per inference: name, mean_ms, share of the total.

    ``times`` maps a layer to its reported times (one per inference), as an IProfiler gets them.
    """
    means = {k: sum(v) / len(v) for k, v in times.items() if v}
    total = sum(means.values())
    rows = sorted(means.items(), key=lambda kv: -kv[1])[:n]
    return [{"layer": k, "mean_ms": m, "share": m / total if total else 0.0} for k, m in rows]


def make_layer_profiler(trt: Any) -> Any:
    """A ``trt.IProfiler`` collecting ``{layer: [ms, ...]}`` in ``.times``."""

    class LayerProfiler(trt.IProfiler):  # type: ignore[misc]
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)
            self.times: dict[str, list[float]] = {}

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            self.times.setdefault(layer_name, []).append(float(ms))

    return LayerProfiler()


class TensorRTSegmenter(Segmenter):
    """A Segmenter running a TensorRT engine (``model.engine`` + ``model.engine.json``).

    Args:
        engine_path: the serialized engine; its sidecar must sit next to it.
        check: refuse an engine whose sidecar names another GPU architecture or TensorRT.
        device: CUDA device index.
    """

    backend = "tensorrt"

    def __init__(self, engine_path: str | Path, *, check: bool = True, device: int = 0) -> None:
        from edgeseg.runtime.trt_engine import load_engine

        self.engine_path = Path(engine_path)
        loaded = load_engine(self.engine_path, check=check)
        super().__init__(meta_from_sidecar(loaded.sidecar))
        import tensorrt as trt
        import torch

        self.sidecar = loaded.sidecar
        self._loaded = loaded  # keeps runtime and logger alive as long as the engine
        self.engine = loaded.engine
        context = self.engine.create_execution_context()
        if context is None:
            raise EdgesegError(f"TensorRT could not create an execution context for {engine_path}")
        self.context = context
        self._by_address = loaded.features.tensor_address_execution
        self.device = torch.device("cuda", device)
        self.stream = torch.cuda.Stream(device=self.device)
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [
            n for n in self.names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT
        ]
        self.outputs = [n for n in self.names if n not in self.inputs]
        if len(self.inputs) != 1 or not self.outputs:
            raise EdgesegError(
                f"{engine_path} has inputs {self.inputs} and outputs {self.outputs}; a "
                "segmentation engine has one image input and a logits/labels output"
            )
        profile = self.sidecar.profile
        # Only an engine whose profile spans several spatial sizes can skip the resize.
        self.dynamic_input = profile is not None and profile["min"][2:] != profile["max"][2:]
        self._buffers: dict[str, Any] = {}
        self._bindings: list[int] = []
        self._shape: tuple[int, ...] | None = None

    def _allocate(self, shape: tuple[int, ...]) -> None:
        import torch

        if not self.context.set_input_shape(self.inputs[0], shape):
            raise EdgesegError(
                f"input shape {shape} is outside the engine's profile {self.sidecar.profile} "
                f"(built for {self.sidecar.input_shape})"
            )
        self._buffers = {}
        for name in self.names:
            dims = self.context.get_tensor_shape(name)
            size = tuple(int(dims[k]) for k in range(len(dims)))
            dtype = getattr(torch, trt_dtype_to_numpy(str(self.engine.get_tensor_dtype(name))))
            buf = torch.empty(size, dtype=dtype, device=self.device)
            self._buffers[name] = buf
            if self._by_address:
                self.context.set_tensor_address(name, int(buf.data_ptr()))
        self._bindings = [int(self._buffers[n].data_ptr()) for n in self.names]
        self._shape = shape

    def infer(self, batch: np.ndarray) -> np.ndarray:
        import torch

        shape = tuple(int(s) for s in batch.shape)
        if shape != self._shape:
            self._allocate(shape)
        host = torch.from_numpy(np.ascontiguousarray(batch))
        with torch.cuda.stream(self.stream):
            self._buffers[self.inputs[0]].copy_(host)
            if self._by_address:
                ok = self.context.execute_async_v3(self.stream.cuda_stream)
            else:
                self.stream.synchronize()  # execute_v2 is synchronous on its own stream
                ok = self.context.execute_v2(self._bindings)
            out = self._buffers[self.outputs[0]]
            result = out.float() if out.is_floating_point() else out
            result = result.cpu()
        self.stream.synchronize()
        if not ok:
            raise EdgesegError(f"TensorRT failed to run {self.engine_path.name}")
        return result.numpy()

    def profile_layers(self) -> Any:
        """Attach a per-layer profiler (bench --layers); its ``.times`` fill on every infer.

        Profiling serialises the layers, so timings taken with it on are not end-to-end figures.
        """
        import tensorrt as trt

        profiler = make_layer_profiler(trt)
        self.context.profiler = profiler
        return profiler

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "engine": str(self.engine_path),
            "tensorrt": self.sidecar.trt_version,
            "gpu": self.sidecar.gpu_name,
            "compute_capability": self.sidecar.compute_capability,
            "precision": self.sidecar.precision,
            "dla_core": self.sidecar.dla_core,
        }
