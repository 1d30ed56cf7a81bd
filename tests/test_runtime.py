"""Runtime backends: the open_segmenter registry, torch vs onnxruntime on one image, session
options, and the errors a user meets (wrong file type, missing metadata, wrong backend)."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from edgeseg.errors import EdgesegError
from edgeseg.runtime import BACKENDS, open_segmenter
from edgeseg.runtime.onnxruntime_backend import OnnxRuntimeSegmenter, physical_cores
from edgeseg.runtime.torch_backend import TorchSegmenter
from edgeseg.train.checkpoint import default_meta, save_model_only
from tests.test_export import HW, exported, model_for

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _scene_bgr(h: int = 150, w: int = 300) -> np.ndarray:
    from edgeseg.data.synthetic import generate_scene

    rgb, _ = generate_scene(np.random.default_rng(3), h, w)
    return np.ascontiguousarray(rgb[:, :, ::-1])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rt") / "hn.pt"
    return save_model_only(path, model_for("desanet-hn"), default_meta("desanet-hn", HW))


def test_registry_maps_every_artifact_kind() -> None:
    assert {b.artifact for b in BACKENDS.values()} == {"checkpoint", "onnx", "engine"}
    assert {n: b.artifact for n, b in BACKENDS.items()} == {
        "torch": "checkpoint", "onnxruntime": "onnx", "tensorrt": "engine"}


@pytest.mark.slow
def test_torch_and_onnxruntime_give_the_same_labels(checkpoint: Path) -> None:
    onnx_path, _ = exported("desanet-hn", "portable")
    ts = open_segmenter(checkpoint)
    ort = open_segmenter(onnx_path)
    assert isinstance(ts, TorchSegmenter) and isinstance(ort, OnnxRuntimeSegmenter)
    assert ts.meta.input_hw == ort.meta.input_hw == HW
    bgr = _scene_bgr()  # another size: both resize through the shared preprocess
    np.testing.assert_array_equal(ts.preprocess(bgr), ort.preprocess(bgr))
    a, b = ts(bgr), ort(bgr)
    assert a.shape == b.shape == bgr.shape[:2] and a.dtype == b.dtype == np.uint8
    assert (a == b).mean() >= 0.999


@pytest.mark.slow
def test_torch_segmenter_options(checkpoint: Path) -> None:
    x = np.random.default_rng(0).normal(size=(1, 3, 32, 64)).astype(np.float32)
    meta = default_meta("desanet-hn", HW)
    plain = TorchSegmenter(copy.deepcopy(model_for("desanet-hn")), meta, dcn="native")
    fast = open_segmenter(checkpoint, channels_last=True, argmax=True, input_hw=(32, 64))
    logits, labels = plain.infer(x), fast.infer(x)
    assert logits.shape == (1, 19, 32, 64) and labels.shape == (1, 32, 64)
    assert labels.dtype == np.uint8
    assert (labels == logits.argmax(1)).mean() >= 0.999
    assert fast.meta.input_hw == (32, 64) and fast.describe()["channels_last"] is True
    with pytest.raises(EdgesegError, match="CUDA"):
        TorchSegmenter(torch.nn.Identity(), default_meta("desanet-hn", HW), fp16=True)


@pytest.mark.slow
def test_onnxruntime_session_options_are_described() -> None:
    path, _ = exported("desanet-hn", "portable")
    d = OnnxRuntimeSegmenter(path).describe()
    so = d["session_options"]
    assert so["graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert so["execution_mode"] == "ORT_SEQUENTIAL"
    assert so["intra_op_num_threads"] == physical_cores()
    assert so["enable_cpu_mem_arena"] and so["enable_mem_pattern"]
    assert d["providers"] == ["CPUExecutionProvider"] and d["output"] == "logits"
    assert OnnxRuntimeSegmenter(path, threads=1).describe()["session_options"][
        "intra_op_num_threads"] == 1
    with pytest.raises(EdgesegError, match="fixed input size"):
        OnnxRuntimeSegmenter(path, input_hw=(64, 64))


def test_physical_cores() -> None:
    assert 1 <= physical_cores() <= (os.cpu_count() or 1)


def _plain_onnx(path: Path) -> Path:
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["logits"])], "g", [x], [y])
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_onnx_without_metadata_is_refused(tmp_path: Path) -> None:
    path = _plain_onnx(tmp_path / "foreign.onnx")
    with pytest.raises(EdgesegError, match="no edgeseg metadata.*edgeseg export"):
        open_segmenter(path)


def test_open_segmenter_errors(tmp_path: Path) -> None:
    with pytest.raises(EdgesegError, match="unknown model file type"):
        open_segmenter(tmp_path / "model.tflite")
    with pytest.raises(EdgesegError, match="onnx not found"):
        open_segmenter(tmp_path / "missing.onnx")
    path = _plain_onnx(tmp_path / "m.onnx")
    with pytest.raises(EdgesegError, match="backend torch runs checkpoint files.*onnxruntime"):
        open_segmenter(path, backend="torch")
    with pytest.raises(EdgesegError, match="unknown backend"):
        open_segmenter(path, backend="tflite")
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0")
    with pytest.raises(EdgesegError):  # no sidecar / no TensorRT: one readable error either way
        open_segmenter(engine)


def test_unknown_option_is_a_readable_error(tmp_path: Path) -> None:
    path = _plain_onnx(tmp_path / "m.onnx")
    with pytest.raises(EdgesegError, match="onnxruntime.*channels_last"):
        open_segmenter(path, channels_last=True)


@pytest.mark.slow
def test_read_artifact_meta_of_checkpoint_and_onnx(checkpoint: Path) -> None:
    from edgeseg.artifacts.files import artifact_kind, read_artifact_meta

    onnx_path, _ = exported("desanet-hn", "portable")
    a, b = read_artifact_meta(checkpoint), read_artifact_meta(onnx_path)
    assert a.variant == b.variant == "desanet-hn" and a.classes == b.classes
    assert a.input_hw == b.input_hw == HW
    assert [artifact_kind(p) for p in ("m.pt", "m.ONNX", "m.plan")] == ["checkpoint", "onnx",
                                                                        "engine"]
