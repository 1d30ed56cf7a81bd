"""The Python-backend model Triton runs for edgeseg (``1/model.py`` imports this class).

One class, four stages picked by the config parameter ``stage``:

* ``segment``: uint8 RGB ``image`` (N, H, W, 3) -> uint8 ``labels`` (N, H, W): the whole
  Segmenter (preprocess, onnxruntime, postprocess) in one model;
* ``preprocess``: ``image`` -> the network input (N, 3, h, w) and the image ``size`` (N, 2);
* ``infer``: the network input -> its output, with onnxruntime (the network model of an
  ensemble on a server without the onnxruntime backend);
* ``postprocess``: the network output and ``size`` -> ``labels`` at the image's size.

Pre- and postprocessing are :class:`edgeseg.runtime.base.Segmenter`'s own methods, so the
server's masks are the ones ``edgeseg run`` computes. The requests Triton's dynamic batcher
hands to one ``execute`` are run as one network batch when the ONNX has a dynamic batch
dimension, else frame by frame. A bad request gets an error response; the model keeps serving.

``triton_python_backend_utils`` exists only inside Triton's Python backend stub, so it is
imported in :meth:`TritonPythonModel.initialize`.
"""

from __future__ import annotations

import ctypes

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.runtime.base import ModelMeta, Segmenter

__all__ = ["STAGES", "Codec", "TritonPythonModel", "run_batched"]

STAGES = ("segment", "preprocess", "infer", "postprocess")


class Codec(Segmenter):
    """Pre- and postprocessing of a model without its network (the ensemble's pre/post steps)."""

    backend = "triton-python"

    def infer(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError("the network runs in the ensemble's network model")


def run_batched(seg: Segmenter, xs: list[np.ndarray], batched: bool) -> list[np.ndarray]:
    """Run ``seg.infer`` on the (n_i, ...) inputs ``xs``: concatenated into one call when the
    network takes a batch, else frame by frame; returns one output per input."""
    if not xs:
        return []
    counts = [len(x) for x in xs]
    if batched:
        out = seg.infer(np.concatenate(xs))
    else:
        out = np.concatenate([seg.infer(frame[None]) for x in xs for frame in x])
    return np.split(out, np.cumsum(counts)[:-1])


def _rgb_frames(image: np.ndarray) -> np.ndarray:
    if image.ndim != 4 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image: expected uint8 (N, H, W, 3), got {image.dtype} {image.shape}")
    if image.shape[1] < 1 or image.shape[2] < 1:
        raise ValueError(f"image: empty frame {image.shape[1]}x{image.shape[2]}")
    return image


class TritonPythonModel:
    """Triton's Python-backend interface: initialize(args), execute(requests), finalize()."""

    def initialize(self, args: dict[str, str]) -> None:
        import triton_python_backend_utils as pb_utils

        from edgeseg.deploy.triton_config import META_PARAM

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.stage = params.get("stage", "")
        if self.stage not in STAGES:
            raise ValueError(f"config parameter stage: expected one of {STAGES}, got {self.stage!r}")
        self.inputs = [t["name"] for t in config["input"]]
        self.outputs = [t["name"] for t in config["output"]]
        meta = ModelMeta.from_dict(json.loads(params[META_PARAM]))
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.batched = True
        self.seg: Segmenter
        if self.stage in ("segment", "infer"):
            from edgeseg.runtime.onnxruntime_backend import OnnxRuntimeSegmenter

            onnx_seg = OnnxRuntimeSegmenter(version_dir / "model.onnx",
                                            threads=int(params.get("threads", "1")))
            self.batched = not isinstance(onnx_seg.session.get_inputs()[0].shape[0], int)
            self.seg = onnx_seg
        else:
            self.seg = Codec(meta)

    def execute(self, requests: list[Any]) -> list[Any]:
        pb = self.pb
        responses: list[Any] = [None] * len(requests)
        arrays: dict[int, list[np.ndarray]] = {}
        for i, request in enumerate(requests):
            try:
                arrays[i] = [_array(pb.get_input_tensor_by_name(request, n)) for n in self.inputs]
            except Exception as e:  # noqa: BLE001 - answer this request, keep serving the rest
                responses[i] = pb.InferenceResponse(error=pb.TritonError(f"edgeseg: {e}"))
        try:
            results = self._run(arrays)
        except Exception as e:  # noqa: BLE001
            results = {i: e for i in arrays}
        for i, result in results.items():
            if isinstance(result, Exception):
                responses[i] = pb.InferenceResponse(error=pb.TritonError(f"edgeseg: {result}"))
            else:
                tensors = [_tensor(pb, n, a) for n, a in zip(self.outputs, result)]
                responses[i] = pb.InferenceResponse(output_tensors=tensors)
        return responses

    def _run(self, arrays: dict[int, list[np.ndarray]]) -> dict[int, Any]:
        """Request index -> its output arrays (or the exception that request raised)."""
        seg = self.seg
        out: dict[int, Any] = {}
        if self.stage == "infer":
            xs = [a[0] for a in arrays.values()]
            for i, y in zip(arrays, run_batched(seg, xs, self.batched)):
                out[i] = [y]
            return out
        if self.stage in ("segment", "preprocess"):
            frames: dict[int, np.ndarray] = {}
            for i, a in arrays.items():
                try:
                    frames[i] = _rgb_frames(a[0])
                except ValueError as e:
                    out[i] = e
            nets = {i: np.concatenate([seg.preprocess(np.ascontiguousarray(f[:, :, ::-1]))
                                       for f in img]) for i, img in frames.items()}
            if self.stage == "preprocess":
                for i, x in nets.items():
                    size = np.tile(np.asarray(frames[i].shape[1:3], np.int32), (len(x), 1))
                    out[i] = [x.astype(np.float32), size]
                return out
            for i, y in zip(nets, run_batched(seg, list(nets.values()), self.batched)):
                hw = frames[i].shape[1:3]
                out[i] = [np.stack([seg.postprocess(y[k:k + 1], hw) for k in range(len(y))])]
            return out
        # postprocess: network output + size -> labels at each image's size
        for i, (net, size) in arrays.items():
            sizes = {tuple(int(v) for v in s) for s in size}
            if len(sizes) != 1 or min(next(iter(sizes))) < 1:
                out[i] = ValueError(f"size: expected one positive (H, W) per request, got {sizes}")
                continue
            hw = next(iter(sizes))
            out[i] = [np.stack([seg.postprocess(net[k:k + 1], hw) for k in range(len(net))])]
        return out

    def finalize(self) -> None:
        self.seg = None  # type: ignore[assignment]


def _array(tensor: Any) -> np.ndarray:
    """An input tensor as numpy, by DLPack (see :func:`_tensor`); a copy, since the request's
    memory is the server's."""
    if tensor is None:
        raise ValueError("missing input tensor")
    return np.array(np.from_dlpack(tensor), copy=True)


# numpy's DLPack capsule destructor skips a capsule named "used_dltensor" (consumed) and else
# opens it as "dltensor"; the Python backend stub renames the capsules it consumes
# "used_dlpack", so each output tensor's capsule logged "PyCapsule_GetPointer called with
# incorrect name" with a traceback when freed. Module-level: the name must outlive the capsule.
_CONSUMED = b"used_dltensor"
_STUB_CONSUMED = b"used_dlpack"


def _mark_consumed(capsule: Any) -> None:
    api = ctypes.pythonapi
    api.PyCapsule_IsValid.argtypes = [ctypes.py_object, ctypes.c_char_p]
    api.PyCapsule_IsValid.restype = ctypes.c_int
    api.PyCapsule_SetName.argtypes = [ctypes.py_object, ctypes.c_char_p]
    api.PyCapsule_SetName.restype = ctypes.c_int
    if api.PyCapsule_IsValid(capsule, _STUB_CONSUMED):
        api.PyCapsule_SetName(capsule, _CONSUMED)


def _tensor(pb: Any, name: str, array: np.ndarray) -> Any:
    """An output tensor handed over by DLPack: the stub's pybind11 numpy conversion was built
    against numpy 1.x and returns empty tensors for numpy 2 arrays (and misreads some inputs);
    DLPack has no such ABI. The capsule is made here so that, once the stub has taken it, it
    is marked consumed the way numpy's destructor reads (see :data:`_CONSUMED`)."""
    capsule = np.ascontiguousarray(array).__dlpack__()
    tensor = pb.Tensor.from_dlpack(name, capsule)
    _mark_consumed(capsule)
    return tensor
