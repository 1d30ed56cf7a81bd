"""INT8 export routes (edgeseg/deploy/int8.py): which source builds the engine, one-line
refusals naming the command that works, calibrate's cache reused for the installed TensorRT,
calibration batches identical to inference preprocessing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.deploy import int8
from edgeseg.deploy import trt_compat as tc
from edgeseg.errors import EdgesegError


def _files(tmp: Path) -> dict[str, Path]:
    d = tmp / "int8"
    d.mkdir()
    out = {k: d / n for k, n in (("fp32", "model.fp32.onnx"), ("qdq", "model.int8.onnx"))}
    for p in out.values():
        p.write_bytes(b"onnx")
    out["cache"] = tc.write_calibration_cache(d / "calibration.cache", "8.6.2",
                                              {"input": 0.02, "/conv/Conv_output_0": 0.1})
    return out


@pytest.mark.parametrize("version", ["8.6.2", "10.3.0", "11.0.0"])
def test_qdq_onnx_builds_everywhere(tmp_path: Path, version: str) -> None:
    f = _files(tmp_path)
    src = int8.plan_int8("engine", version, onnx=f["qdq"], onnx_has_qdq=True)
    assert src.route == "qdq" and src.has_qdq and src.onnx == f["qdq"]
    plan = tc.plan_build(version, "int8", has_qdq=src.has_qdq)
    assert not plan.use_calibrator


@pytest.mark.parametrize("version", ["8.6.2", "10.3.0"])
def test_cache_finds_its_fp32_onnx(tmp_path: Path, version: str) -> None:
    f = _files(tmp_path)
    src = int8.plan_int8("engine", version, cache=f["cache"])
    assert src.route == "cache" and src.onnx == f["fp32"] and src.cache == f["cache"]
    assert tc.plan_build(version, "int8", has_qdq=src.has_qdq).use_calibrator


def test_cache_without_its_onnx_is_refused(tmp_path: Path) -> None:
    f = _files(tmp_path)
    f["fp32"].unlink()
    with pytest.raises(EdgesegError, match="pass calibrate's model.fp32.onnx as --model"):
        int8.plan_int8("engine", "8.6.2", cache=f["cache"])


def test_images_route_for_a_checkpoint(tmp_path: Path) -> None:
    src = int8.plan_int8("engine", "8.6.2", images="frames/", weights=tmp_path / "m.pt")
    assert src.route == "images" and src.onnx is None and src.images == "frames/"


@pytest.mark.parametrize(
    "fmt, version, kw, match",
    [
        ("engine", "11.0.0", {"images": "f/"}, "edgeseg calibrate .*model.int8.onnx"),
        ("engine", "11.0.0", {"cache": "CACHE"}, "only from a Q/DQ ONNX"),
        ("engine", "11.0.0", {"weights": Path("m.pt")}, "only from a Q/DQ ONNX"),
        ("engine", "10.3.0", {"weights": Path("m.pt")}, "give --images DIR.*edgeseg calibrate"),
        ("engine", "10.3.0", {"onnx": "FP32"}, "has no Q/DQ nodes"),
        ("engine", "10.3.0", {"onnx": "QDQ", "onnx_has_qdq": True, "images": "f/"},
         "give one INT8 source"),
        ("torch2trt", "10.3.0", {"weights": Path("m.pt")}, "needs --images"),
        ("torch2trt", "10.3.0", {"cache": "CACHE"}, "--format engine --model"),
        ("torch2trt", "11.0.0", {"images": "f/"}, "torch2trt cannot calibrate"),
        ("onnx", "10.3.0", {"images": "f/"}, "written by `edgeseg calibrate`"),
    ],
)
def test_impossible_combinations_name_what_works(tmp_path: Path, fmt: str, version: str,
                                                 kw: dict, match: str) -> None:
    f = _files(tmp_path)
    kw = {k: ({"CACHE": f["cache"], "FP32": f["fp32"], "QDQ": f["qdq"]}.get(v, v)
              if isinstance(v, str) else v) for k, v in kw.items()}
    with pytest.raises(EdgesegError, match=match) as info:
        int8.plan_int8(fmt, version, **kw)
    assert "\n" not in str(info.value)


def test_torch2trt_route() -> None:
    src = int8.plan_int8("torch2trt", "10.3.0", images="f/", weights=Path("m.pt"))
    assert src.route == "torch2trt" and "int8_mode" in src.describe


def test_cache_rewritten_for_the_installed_tensorrt(tmp_path: Path) -> None:
    f = _files(tmp_path)
    data, notes = int8.cache_for_tensorrt(f["cache"], "10.3.0.30",
                                          ["input", "/conv/Conv_output_0", "logits"])
    parsed = tc.parse_calibration_cache(data)
    assert parsed.version_tag == 100300
    assert parsed.scales == tc.read_calibration_cache(f["cache"]).scales
    assert len(notes) == 1 and "8.6.2" in notes[0] and "10.3.0" in notes[0]
    same, none = int8.cache_for_tensorrt(f["cache"], "8.6.2.3", ["input", "/conv/Conv_output_0"])
    assert same == f["cache"].read_bytes() and none == []
    with pytest.raises(EdgesegError, match="1 tensor.*'/conv/Conv_output_0'.*another export"):
        int8.cache_for_tensorrt(f["cache"], "8.6.2", ["input"])


def test_calibration_batches_match_inference_preprocessing(tmp_path: Path) -> None:
    from edgeseg.artifacts.meta import ModelMeta

    rng = np.random.default_rng(0)
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(5):
        cv2.imwrite(str(frames / f"f{i}.png"), rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    meta = ModelMeta.from_dict({"variant": "desanet_rn", "classes": ["a", "b"],
                                "palette": [[0, 0, 0], [1, 1, 1]], "mean": [0.4, 0.5, 0.6],
                                "std": [0.2, 0.25, 0.3], "input_hw": [16, 24]})
    paths, batches = int8.calibration_batches(frames, meta, num=3, seed=1)
    got = list(batches)
    assert len(paths) == len(got) == 3 and all(b.shape == (1, 3, 16, 24) for b in got)
    bgr = cv2.imread(str(paths[0]))
    rgb = cv2.resize(bgr, (24, 16), interpolation=cv2.INTER_LINEAR)[:, :, ::-1] / 255.0
    ref = (rgb - np.array([0.4, 0.5, 0.6])) / np.array([0.2, 0.25, 0.3])
    np.testing.assert_allclose(got[0][0], ref.transpose(2, 0, 1), rtol=1e-5, atol=1e-5)
    ds = int8.Torch2trtCalibration(paths, meta, (16, 24), device="cpu")
    assert len(ds) == 3
    (x,) = ds[0]
    assert tuple(x.shape) == (3, 16, 24)  # torch2trt stacks the batch itself
    np.testing.assert_allclose(x.numpy(), got[0][0], rtol=0, atol=0)


# --- torch2trt keyword arguments (defects 3, 10 and the int8 route) ---------------------------

NEW_T2T = {"module", "inputs", "input_names", "output_names", "fp16_mode", "max_workspace_size",
           "int8_mode", "int8_calib_dataset", "default_device_type", "dla_core", "gpu_fallback"}
OLD_T2T = {"module", "inputs", "input_names", "output_names", "fp16_mode", "max_workspace_size",
           "int8_mode", "int8_calib_dataset"}


def test_torch2trt_workspace_applied_below_10_and_reported_above() -> None:
    from edgeseg.deploy.torch2trt_build import torch2trt_kwargs

    kw, notes = torch2trt_kwargs(tc.plan_build("8.6.2", "fp16", workspace_mib=512), NEW_T2T)
    assert kw["max_workspace_size"] == 512 << 20 and notes == []
    kw, notes = torch2trt_kwargs(tc.plan_build("10.3.0", "fp16", workspace_mib=512), NEW_T2T)
    assert "max_workspace_size" not in kw
    assert len(notes) == 1 and "512 MiB not applied" in notes[0] and "10.3" in notes[0]


def test_torch2trt_gets_the_profiles_dla_core() -> None:
    from types import SimpleNamespace

    from edgeseg.deploy.torch2trt_build import torch2trt_kwargs

    trt = SimpleNamespace(DeviceType=SimpleNamespace(DLA="DLA", GPU="GPU"))
    plan = tc.plan_build("10.3.0", "fp16", dla_core=1, gpu_fallback=True)
    kw, _ = torch2trt_kwargs(plan, NEW_T2T, trt)
    assert (kw["default_device_type"], kw["dla_core"], kw["gpu_fallback"]) == ("DLA", 1, True)
    assert kw["fp16_mode"] is True
    with pytest.raises(EdgesegError, match="no DLA options .*--format engine"):
        torch2trt_kwargs(plan, OLD_T2T, trt)
    gpu, _ = torch2trt_kwargs(tc.plan_build("10.3.0", "fp16"), NEW_T2T)
    assert "dla_core" not in gpu and gpu["gpu_fallback"] is False


def test_torch2trt_int8_mode_takes_the_calibration_dataset() -> None:
    from edgeseg.deploy.torch2trt_build import torch2trt_kwargs

    plan = tc.plan_build("10.3.0", "int8")
    dataset = object()
    kw, _ = torch2trt_kwargs(plan, NEW_T2T, calib_dataset=dataset)
    assert kw["int8_mode"] is True and kw["int8_calib_dataset"] is dataset and kw["fp16_mode"]
    with pytest.raises(EdgesegError, match="needs --images"):
        torch2trt_kwargs(plan, NEW_T2T)
    with pytest.raises(EdgesegError, match="no int8_mode"):
        torch2trt_kwargs(plan, {"module", "inputs", "fp16_mode"}, calib_dataset=dataset)


# --- engine_export: plan first, then the build with the route's calibrator --------------------


def test_plan_engine_routes_and_profile_settings(tmp_path: Path) -> None:
    from edgeseg.deploy.engine_export import plan_engine
    from edgeseg.profiles import load_profile

    f = _files(tmp_path)
    orin = load_profile("jetson-agx-orin")
    plan, src = plan_engine("engine", "int8", orin, cache=f["cache"], trt_version="8.6.2")
    assert src is not None and src.route == "cache" and plan.use_calibrator
    assert plan.workspace_bytes == orin.deploy.workspace_mib << 20 and not plan.warnings
    plan, src = plan_engine("engine", "int8", orin, onnx=f["qdq"], onnx_has_qdq=True,
                            trt_version="10.3.0")
    assert src is not None and src.route == "qdq" and not plan.use_calibrator
    plan, src = plan_engine("engine", "fp16", orin, trt_version="10.3.0")
    assert src is None and plan.builder_flags == ("FP16",)
    with pytest.raises(EdgesegError, match="for --precision int8, not fp16"):
        plan_engine("engine", "fp16", orin, images="f/", trt_version="10.3.0")


def test_onnx_source_refuses_deformconv_on_8_6(tmp_path: Path) -> None:
    import json as _json

    import onnx
    from onnx import TensorProto, helper

    from edgeseg.deploy.engine_export import onnx_engine_source

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    node = helper.make_node("Identity", ["input"], ["y"])
    node.op_type = "DeformConv"
    m = helper.make_model(helper.make_graph([node], "g", [x], [y]))
    meta = {"variant": "desanet_rn", "classes": ["a"], "palette": [[0, 0, 0]],
            "mean": [0.5] * 3, "std": [0.5] * 3, "input_hw": [8, 8]}
    m.metadata_props.add(key="edgeseg.meta", value=_json.dumps(meta))
    onnx.save(m, str(tmp_path / "m.onnx"))
    with pytest.raises(EdgesegError, match="TensorRT 8.6 cannot import .*--dcn portable"):
        onnx_engine_source(tmp_path / "m.onnx", "8.6.2")
    info = onnx_engine_source(tmp_path / "m.onnx", "10.3.0")
    assert info["dcn_op"] == "DeformConv" and not info["has_qdq"] and info["meta"].input_hw == (8, 8)


def test_cache_route_builds_with_the_rewritten_cache(monkeypatch, tmp_path: Path) -> None:
    from edgeseg.deploy.engine_export import build_engine_file, calibration_cache_path
    from tests.test_tensorrt_fakes import META, Fakes, _onnx

    fk = Fakes(monkeypatch, tmp_path, version="8.6.2.3")
    onnx_path = _onnx(tmp_path / "m.onnx")
    cache = tc.write_calibration_cache(tmp_path / "calibration.cache", "8.6.1", {"input": 0.02})
    src = int8.plan_int8("engine", "8.6.2", onnx=onnx_path, cache=cache)
    plan = tc.plan_build("8.6.2.3", "int8")
    said: list[str] = []
    side, extra = build_engine_file(onnx_path, tmp_path / "m.engine", plan, src, META,
                                    warn=said.append)
    calib = fk.config.int8_calibrator
    assert tc.parse_calibration_cache(calib.read_calibration_cache()).version_tag == 8602
    assert calibration_cache_path(tmp_path / "m.engine").is_file()
    assert extra["int8"]["route"] == "cache" and side.precision == "int8"
    assert any("8.6.1" in s for s in said)
    fk.config.set_flag.assert_any_call(fk.trt.BuilderFlag.INT8)


def test_images_route_feeds_tensorrt_calibrator(monkeypatch, tmp_path: Path) -> None:
    from edgeseg.deploy.engine_export import build_engine_file
    from tests.test_tensorrt_fakes import META, Fakes, _onnx

    fk = Fakes(monkeypatch, tmp_path, version="10.3.0.30")
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"{i}.png"), np.full((8, 8, 3), 40 * i, np.uint8))
    onnx_path = _onnx(tmp_path / "m.onnx")
    src = int8.plan_int8("engine", "10.3.0", images=str(frames), weights=tmp_path / "m.pt")
    _, extra = build_engine_file(onnx_path, tmp_path / "m.engine", tc.plan_build("10.3.0", "int8"),
                                 src, META, num_images=2)
    calib = fk.config.int8_calibrator
    assert calib.get_batch_size() == 1 and extra["calibration_images"] == 2
    assert calib.read_calibration_cache() is None  # nothing cached yet: TensorRT calibrates


# --- `edgeseg export` library entry with a fake TensorRT ----------------------------------------


def _meta_onnx(path: Path, qdq: bool) -> Path:
    import onnx

    from edgeseg.artifacts.files import write_onnx_metadata
    from edgeseg.artifacts.meta import ModelMeta
    from tests.test_tensorrt_fakes import META
    from tests.test_tensorrt_pure import _tiny_onnx

    _tiny_onnx(path, qdq=qdq)
    m = onnx.load(str(path))
    write_onnx_metadata(m, ModelMeta.from_dict({**META, "precision": "int8" if qdq else "fp32"}))
    onnx.save(m, str(path))
    return path


def test_export_builds_int8_engine_from_calibrates_qdq_onnx(monkeypatch, tmp_path: Path) -> None:
    from edgeseg.artifacts.sidecar import EngineSidecar
    from edgeseg.deploy.export import export
    from tests.test_tensorrt_fakes import Fakes

    fk = Fakes(monkeypatch, tmp_path, version="10.3.0.30")
    qdq = _meta_onnx(tmp_path / "model.int8.onnx", qdq=True)
    fk.config.int8_calibrator = None
    r = export(tmp_path / "m.engine", onnx=qdq, fmt="engine", profile="jetson-agx-orin")
    assert r["precision"] == "int8" and r["int8"]["route"] == "qdq"  # profile said fp16
    fk.config.set_flag.assert_any_call(fk.trt.BuilderFlag.INT8)
    assert fk.config.int8_calibrator is None  # explicit quantization: no calibrator
    assert EngineSidecar.read(tmp_path / "m.engine").model["precision"] == "int8"
    assert fk.events[0] == "gpu"


def test_export_builds_from_calibrates_cache(monkeypatch, tmp_path: Path) -> None:
    from edgeseg.deploy.export import export
    from tests.test_tensorrt_fakes import Fakes

    fk = Fakes(monkeypatch, tmp_path, version="8.6.2.3")
    d = tmp_path / "int8"
    d.mkdir()
    _meta_onnx(d / "model.fp32.onnx", qdq=False)
    cache = tc.write_calibration_cache(d / "calibration.cache", "8.6.2", {"x": 0.02, "y": 0.1})
    r = export(tmp_path / "m.engine", calibration_cache=cache, fmt="engine", precision="int8")
    assert r["int8"]["route"] == "cache" and r["source"] == str(d / "model.fp32.onnx")
    assert fk.config.int8_calibrator.read_calibration_cache() == cache.read_bytes()
    with pytest.raises(EdgesegError, match="give --images DIR"):
        export(tmp_path / "n.engine", onnx=d / "model.fp32.onnx", fmt="engine", precision="int8")


def _fake_torch2trt(monkeypatch: pytest.MonkeyPatch, engine: object, calls: list) -> None:
    import sys
    import types

    import torch

    from edgeseg.deploy import torch2trt_converters as conv

    def torch2trt(module, inputs, input_names=None, output_names=None, fp16_mode=False,
                  max_workspace_size=1 << 25, int8_mode=False, int8_calib_dataset=None,
                  default_device_type=None, dla_core=0, gpu_fallback=True):
        calls.append({"fp16_mode": fp16_mode, "dla_core": dla_core})
        return types.SimpleNamespace(engine=engine, __call__=None)

    fake = types.ModuleType("torch2trt")
    fake.torch2trt = torch2trt  # type: ignore[attr-defined]
    fake.tensorrt_converter = lambda name: (lambda fn: fn)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch2trt", fake)
    monkeypatch.setitem(conv._settings, "registered", False)
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)


def test_failed_torch2trt_build_is_one_line_and_writes_nothing(monkeypatch, tmp_path) -> None:
    """torch2trt returns a TRTModule with engine None when the build fails; the next call would
    raise AttributeError (no 'context')."""
    from edgeseg.artifacts.meta import ModelMeta
    from edgeseg.deploy.torch2trt_build import convert_torch2trt
    from tests.test_tensorrt_fakes import META, Fakes

    fk = Fakes(monkeypatch, tmp_path, version="10.3.0.30")
    monkeypatch.setattr("edgeseg.deploy.tensorrt.current_gpu", fk._gpu)
    calls: list = []
    _fake_torch2trt(monkeypatch, None, calls)

    class Net:
        def eval(self):
            return self

        def cuda(self):
            return self

        def __call__(self, x):
            raise AssertionError("never reached: the engine check comes first")

    meta = ModelMeta.from_dict(META)
    with pytest.raises(EdgesegError, match="torch2trt could not build the engine") as info:
        convert_torch2trt(Net(), meta, tmp_path / "m.engine", tc.plan_build("10.3.0", "fp16"),
                          height=32, width=32)
    assert "\n" not in str(info.value) and not (tmp_path / "m.engine").exists()
    assert fk.events == ["gpu"] and calls == [{"fp16_mode": True, "dla_core": 0}]
