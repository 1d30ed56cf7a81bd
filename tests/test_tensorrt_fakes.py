"""build_engine / load_engine / the converters against TensorRT fakes built from the vendored
stubs (tests/trt_fakes.py): wrong names or signatures fail, and the order of operations holds
(prerequisites before the build, sidecar before the timing cache, DLA_core before
deserializing, one process-wide logger)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest

from edgeseg.artifacts import sidecar as sc
from edgeseg.deploy import tensorrt as trt_mod
from edgeseg.runtime import trt_engine
from edgeseg.deploy import trt_compat as tc
from edgeseg.errors import EdgesegError, MissingDependencyError
from tests.trt_fakes import fake_trt, spec

META = {"variant": "tiny", "classes": ["a", "b"], "palette": [[0, 0, 0], [9, 9, 9]],
        "mean": [0.5] * 3, "std": [0.5] * 3, "input_hw": [8, 8]}


def _onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])
    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 3, 1, 1], np.ones(6, np.float32))
    g = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["y"])], "g", [x], [y], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.metadata_props.add(key="edgeseg", value=json.dumps(META))
    onnx.save(m, str(path))
    return path


class Fakes:
    """One fake TensorRT install with a builder whose steps append to ``events``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp: Path, version: str = "10.3.0.30",
                 dla_cores: int = 0) -> None:
        self.events: list[Any] = []
        self.tmp = tmp
        self.trt = fake_trt(version)
        tensor = spec("ITensor", name="input", shape=(1, 3, 8, 8))
        self.network = spec("INetworkDefinition", num_inputs=1, num_layers=0)
        self.network.get_input.return_value = tensor
        self.cache = spec("ITimingCache")
        self.cache.serialize.side_effect = self._serialize_cache
        self.config = spec("IBuilderConfig")
        self.config.create_timing_cache.return_value = self.cache
        self.config.get_timing_cache.return_value = self.cache
        self.config.set_timing_cache.return_value = True
        self.builder = spec("Builder", num_DLA_cores=dla_cores)
        self.builder.create_network.return_value = self.network
        self.builder.create_builder_config.return_value = self.config
        self.builder.build_serialized_network.side_effect = self._build
        self.parser = spec("OnnxParser")
        self.parser.parse_from_file.return_value = True
        self.runtime = spec("Runtime", num_DLA_cores=dla_cores)
        self.runtime.deserialize_cuda_engine.side_effect = self._deserialize
        self.trt.Builder.return_value = self.builder
        self.trt.OnnxParser.return_value = self.parser
        self.trt.Runtime.return_value = self.runtime
        self.build_delay = 0.0
        monkeypatch.setitem(sys.modules, "tensorrt", self.trt)
        monkeypatch.setattr(trt_engine, "_process", {"logger": None, "plugins": False})
        monkeypatch.setattr(trt_mod, "current_gpu", self._gpu)  # the builder's
        monkeypatch.setattr(trt_engine, "current_gpu", self._gpu)  # load_engine's
        self.gpu: Any = ("Orin", "8.7")

    def _gpu(self, device: int = 0) -> tuple[str, str]:
        self.events.append("gpu")
        if isinstance(self.gpu, Exception):
            raise self.gpu
        return self.gpu

    def _build(self, network: Any, config: Any) -> bytes:
        self.events.append("build")
        time.sleep(self.build_delay)
        return b"plan"

    def _serialize_cache(self) -> bytes:
        self.events.append(("cache", sc.sidecar_path(self.tmp / "m.engine").is_file()))
        return b"timing"

    def _deserialize(self, data: bytes) -> Any:
        self.events.append(("deserialize", self.runtime.DLA_core))
        return spec("ICudaEngine")


def _plan(version: str = "10.3.0.30", **kw: Any) -> tc.BuildPlan:
    return tc.plan_build(version, "fp16", **kw)


def test_prerequisites_before_build_sidecar_before_cache(monkeypatch, tmp_path) -> None:
    f = Fakes(monkeypatch, tmp_path)
    side = trt_mod.build_engine(_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", _plan(),
                                timing_cache_path=tmp_path / "t.cache")
    assert f.events == ["gpu", "build", ("cache", True)]
    assert (tmp_path / "m.engine").read_bytes() == b"plan"
    assert (tmp_path / "t.cache").read_bytes() == b"timing"
    assert sc.EngineSidecar.read(tmp_path / "m.engine") == side
    assert side.model["variant"] == "tiny" and side.build_s is not None
    f.config.set_flag.assert_called_once_with(f.trt.BuilderFlag.FP16)


def test_cpu_only_torch_fails_before_the_build(monkeypatch, tmp_path) -> None:
    f = Fakes(monkeypatch, tmp_path)
    f.gpu = MissingDependencyError("A CUDA GPU", "check drivers")
    with pytest.raises(MissingDependencyError):
        trt_mod.build_engine(_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", _plan())
    assert f.events == ["gpu"] and not (tmp_path / "m.engine").exists()


def test_rejected_timing_cache_is_reported_and_replaced(monkeypatch, tmp_path) -> None:
    f = Fakes(monkeypatch, tmp_path)
    (tmp_path / "t.cache").write_bytes(b"from another gpu")
    f.config.set_timing_cache.side_effect = [False, True]
    said: list[str] = []
    trt_mod.build_engine(_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", _plan(),
                         timing_cache_path=tmp_path / "t.cache", on_warning=said.append)
    assert len(said) == 1 and "rejected" in said[0]
    assert [c.args[0] for c in f.config.create_timing_cache.call_args_list] == [
        b"from another gpu", b""]
    assert (tmp_path / "t.cache").read_bytes() == b"timing"


def test_failed_cache_save_keeps_engine_and_sidecar(monkeypatch, tmp_path) -> None:
    f = Fakes(monkeypatch, tmp_path)
    f.cache.serialize.side_effect = RuntimeError("out of host memory")
    said: list[str] = []
    trt_mod.build_engine(_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", _plan(),
                         timing_cache_path=tmp_path / "t.cache", on_warning=said.append)
    assert (tmp_path / "m.engine").is_file() and sc.sidecar_path(tmp_path / "m.engine").is_file()
    assert "not saved" in said[0] and not (tmp_path / "t.cache").exists()


def test_one_process_wide_logger(monkeypatch, tmp_path) -> None:
    from edgeseg.deploy import torch2trt_converters as conv

    f = Fakes(monkeypatch, tmp_path)
    engine = tmp_path / "m.engine"
    trt_mod.build_engine(_onnx(tmp_path / "m.onnx"), engine, _plan())
    trt_mod.build_engine(tmp_path / "m.onnx", engine, _plan())
    trt_mod.load_engine(engine)
    monkeypatch.setattr(conv, "_tensorrt", lambda: f.trt)
    logger = trt_engine._process["logger"]
    assert isinstance(logger, f.trt.ILogger)
    f.trt.init_libnvinfer_plugins.assert_called_once_with(logger, "")
    assert all(c.args == (logger,) for c in f.trt.Builder.call_args_list + f.trt.Runtime.call_args_list)
    assert trt_mod.init_plugins(f.trt) is logger  # what the deform_conv2d converter calls


def test_heartbeat_without_progress_monitor(monkeypatch, tmp_path) -> None:
    f = Fakes(monkeypatch, tmp_path, version="8.6.2.3")
    monkeypatch.setattr(trt_mod, "HEARTBEAT_S", 0.01)
    f.build_delay = 0.1
    seen: list[tuple[str, int, int]] = []
    trt_mod.build_engine(_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", _plan("8.6.2.3"),
                         progress=lambda *a: seen.append(a))
    assert seen and all(p == "building" and n == 0 for p, _, n in seen)
    net_flags = f.builder.create_network.call_args.args[0]
    assert net_flags == 1 << int(f.trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)


def _engine_with_sidecar(tmp_path: Path, dla_core: int | None) -> Path:
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    sc.EngineSidecar(trt_version="10.3.0.30", gpu_name="Orin", compute_capability="8.7",
                     precision="fp16", input_shape=[1, 3, 8, 8], model=META,
                     dla_core=dla_core).write(engine)
    return engine


def test_load_engine_sets_dla_core_before_deserializing(monkeypatch, tmp_path) -> None:
    f = Fakes(monkeypatch, tmp_path, dla_cores=2)
    f.runtime.DLA_core = 0
    trt_mod.load_engine(_engine_with_sidecar(tmp_path, dla_core=1))
    assert f.events == ["gpu", ("deserialize", 1)]


def test_load_engine_refuses_dla_engine_on_a_device_without_dla(monkeypatch, tmp_path) -> None:
    f = Fakes(monkeypatch, tmp_path, dla_cores=0)
    with pytest.raises(EdgesegError, match="built for DLA core 1.*has no DLA") as info:
        trt_mod.load_engine(_engine_with_sidecar(tmp_path, dla_core=1))
    assert "\n" not in str(info.value)
    f.runtime.deserialize_cuda_engine.assert_not_called()


def test_gpu_engine_leaves_dla_core_alone(monkeypatch, tmp_path) -> None:
    f = Fakes(monkeypatch, tmp_path, dla_cores=0)
    f.runtime.DLA_core = -1
    trt_mod.load_engine(_engine_with_sidecar(tmp_path, dla_core=None))
    assert f.events == ["gpu", ("deserialize", -1)]


def test_dla_build_sets_core_and_device(monkeypatch, tmp_path) -> None:
    f = Fakes(monkeypatch, tmp_path, dla_cores=2)
    side = trt_mod.build_engine(_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine",
                                _plan(dla_core=1, gpu_fallback=True))
    assert f.config.DLA_core == 1 and f.config.default_device_type == f.trt.DeviceType.DLA
    assert side.dla_core == 1


def test_fakes_refuse_wrong_names_and_signatures() -> None:
    """The point of building fakes from the stubs."""
    config = spec("IBuilderConfig")
    with pytest.raises(AttributeError):
        config.set_memory_pool_limits  # noqa: B018
    with pytest.raises(TypeError):
        config.set_timing_cache(spec("ITimingCache"))  # ignore_mismatch is required
    with pytest.raises(AttributeError):
        spec("Runtime").DLA_cores = 1


def test_legacy_names_are_listed() -> None:
    obj = mock.Mock(max_workspace_size=5)
    assert trt_mod.legacy(obj, "max_workspace_size") == 5
    with pytest.raises(ValueError, match="LEGACY_NAMES"):
        trt_mod.legacy(obj, "max_batch_size")


def _layers(f: Fakes, names_on_dla: dict[str, bool]) -> None:
    layers = []
    for name in names_on_dla:
        layer = spec("ILayer", name=name, type="LayerType.CONVOLUTION" if "conv" in name
                     else "LayerType.PLUGIN_V2")
        layers.append(layer)
    f.network.num_layers = len(layers)
    f.network.get_layer.side_effect = lambda i: layers[i]
    f.config.can_run_on_DLA.side_effect = lambda layer: names_on_dla[layer.name]


def test_dla_placement_in_the_sidecar(monkeypatch, tmp_path) -> None:
    f = Fakes(monkeypatch, tmp_path, dla_cores=2)
    _layers(f, {"conv1": True, "dcn": False, "conv2": True})
    side = trt_mod.build_engine(_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine",
                                _plan(dla_core=0, gpu_fallback=True))
    assert side.dla_placement == {"dla": 2, "gpu": 1, "gpu_layers": ["dcn (PLUGIN_V2)"]}
    assert sc.EngineSidecar.read(tmp_path / "m.engine").dla_placement == side.dla_placement


def test_dla_without_fallback_refused_before_the_build(monkeypatch, tmp_path) -> None:
    f = Fakes(monkeypatch, tmp_path, dla_cores=2)
    _layers(f, {"conv1": True, "dcn": False})
    with pytest.raises(EdgesegError, match=r"1 layer\(s\) cannot run on DLA \(e.g. dcn"):
        trt_mod.build_engine(_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine",
                             _plan(dla_core=0, gpu_fallback=False))
    assert "build" not in f.events


def test_layer_profiler_and_top_layers() -> None:
    from edgeseg.runtime.tensorrt_backend import make_layer_profiler, top_layers

    prof = make_layer_profiler(fake_trt())
    for ms in (1.0, 3.0):
        prof.report_layer_time("dcn", ms)
        prof.report_layer_time("conv", ms / 4)
    prof.report_layer_time("head", 0.6)
    rows = top_layers(prof.times, n=2)
    assert [r["layer"] for r in rows] == ["dcn", "head"]
    assert rows[0]["mean_ms"] == 2.0 and rows[0]["share"] == pytest.approx(2.0 / 3.1)
