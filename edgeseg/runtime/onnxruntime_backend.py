"""onnxruntime backend: runs an ONNX written by `edgeseg export`, metadata from the file itself.

Session options are chosen for single-stream CPU latency (batch 1, one frame after another):

* ``ORT_ENABLE_ALL`` graph optimizations (constant folding, Conv+BN/activation fusion, layout
  transforms for the NCHWc CPU kernels);
* ``intra_op_num_threads`` = physical cores (SMT siblings share the FMA units, so extra threads
  only add synchronisation), ``inter_op_num_threads`` = 1 with sequential execution: a
  segmentation net is one chain of big ops, so there is nothing to run side by side;
* CPU memory arena, memory pattern and reuse on: every frame has the same shapes, so buffers
  are planned once and reused.

The options actually used are recorded in :meth:`OnnxRuntimeSegmenter.describe`, so benchmark
reports say how the numbers were obtained.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.errors import EdgesegError, MissingDependencyError
from edgeseg.runtime.base import ModelMeta, Segmenter

__all__ = ["OnnxRuntimeSegmenter", "make_session", "physical_cores", "session_options"]

LABELS_OUTPUT = "labels"


def physical_cores() -> int:
    """Physical CPU cores usable by this process (SMT siblings counted once)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 1
    cores: set[tuple[str, str]] = set()
    try:
        phys = core = ""
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "physical id":
                    phys = value
                elif key == "core id":
                    core = value
                elif not key and core:  # blank line ends one processor block
                    cores.add((phys, core))
                    phys = core = ""
        if core:
            cores.add((phys, core))
    except OSError:
        pass
    # ARM (Jetson) /proc/cpuinfo has no core ids: every logical CPU is a core there.
    return max(1, min(usable, len(cores))) if cores else max(1, usable)


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError("onnxruntime", "pip install onnxruntime") from None
    return onnxruntime


def session_options(threads: int | None = None) -> tuple[Any, dict[str, Any]]:
    """CPU-latency session options and a JSON-able description of them."""
    ort = _ort()
    if threads is not None and threads < 1:
        raise EdgesegError(f"threads must be >= 1, got {threads}")
    n = threads or physical_cores()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = n
    so.inter_op_num_threads = 1
    so.enable_cpu_mem_arena = True
    so.enable_mem_pattern = True
    so.enable_mem_reuse = True
    so.log_severity_level = 3  # errors only: no per-node placement chatter
    described = {
        "graph_optimization_level": "ORT_ENABLE_ALL",
        "execution_mode": "ORT_SEQUENTIAL",
        "intra_op_num_threads": n,
        "inter_op_num_threads": 1,
        "enable_cpu_mem_arena": True,
        "enable_mem_pattern": True,
        "enable_mem_reuse": True,
    }
    return so, described


def _providers(providers: list[str] | None) -> list[str]:
    available = _ort().get_available_providers()
    if not providers:
        return ["CPUExecutionProvider"]
    missing = [p for p in providers if p not in available]
    if missing:
        raise EdgesegError(
            f"onnxruntime execution provider(s) {', '.join(missing)} not available here "
            f"(available: {', '.join(available)})"
        )
    return list(providers)


def make_session(
    path: str | Path, *, threads: int | None = None, providers: list[str] | None = None
) -> tuple[Any, dict[str, Any]]:
    """An InferenceSession with :func:`session_options`; returns (session, options description)."""
    ort = _ort()
    so, described = session_options(threads)
    try:
        sess = ort.InferenceSession(str(path), sess_options=so, providers=_providers(providers))
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own untyped errors
        first = " ".join(str(e).split())[:300]
        raise EdgesegError(f"onnxruntime could not load {Path(path).name}: {first}") from None
    return sess, described


class OnnxRuntimeSegmenter(Segmenter):
    """A Segmenter running an ONNX file with onnxruntime.

    The model metadata (classes, palette, mean/std, input size) comes from the file's
    ``metadata_props``; an ONNX exported with ``--argmax`` returns ``labels`` directly.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads (default: physical cores).
        providers: onnxruntime execution providers (default: CPU).
        input_hw: run at this size instead of the exported one (dynamic-size ONNX only).
    """

    backend = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        *,
        threads: int | None = None,
        providers: list[str] | None = None,
        input_hw: tuple[int, int] | None = None,
    ) -> None:
        from edgeseg.artifacts.files import meta_from_props

        self.path = Path(path)
        if not self.path.is_file():
            raise EdgesegError(f"ONNX file not found: {self.path}")
        self.session, self.options = make_session(self.path, threads=threads, providers=providers)
        props = dict(self.session.get_modelmeta().custom_metadata_map)
        meta: ModelMeta = meta_from_props(props, source=str(self.path))

        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise EdgesegError(f"{self.path.name} has {len(inputs)} inputs; expected one image")
        self.input_name = inputs[0].name
        self.input_dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
        dims = inputs[0].shape
        self.dynamic_input = any(not isinstance(d, int) for d in dims[2:])
        outputs = [o.name for o in self.session.get_outputs()]
        # Prefer labels (argmax in the graph) over logits when both exist.
        self.output_name = LABELS_OUTPUT if LABELS_OUTPUT in outputs else outputs[0]
        if input_hw is not None:
            if not self.dynamic_input and tuple(input_hw) != tuple(dims[2:]):
                raise EdgesegError(
                    f"{self.path.name} has a fixed input size {dims[2]}x{dims[3]}; "
                    f"re-export with --dynamic to run at {input_hw[0]}x{input_hw[1]}"
                )
            meta.input_hw = (int(input_hw[0]), int(input_hw[1]))
        super().__init__(meta)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        feed = {self.input_name: np.ascontiguousarray(batch, dtype=self.input_dtype)}
        (out,) = self.session.run([self.output_name], feed)
        return out

    def describe(self) -> dict[str, Any]:
        import onnxruntime

        return {
            "backend": self.backend,
            "onnxruntime": onnxruntime.__version__,
            "model": str(self.path),
            "providers": self.session.get_providers(),
            "session_options": dict(self.options),
            "output": self.output_name,
            "input_dtype": np.dtype(self.input_dtype).name,
            "dynamic_input": self.dynamic_input,
            "precision": self.meta.precision,
        }
