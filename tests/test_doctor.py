"""`edgeseg doctor` on fixture machines: a fake root folder with the files a Jetson has, and the
Python package facts each machine would report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeseg.doctor import PythonFacts, doctor, jetpack_of, parse_l4t

NVPMODEL_CONF = "< POWER_MODEL ID=0 NAME=MAXN >\nCPU_ONLINE CORE_0 1\n< POWER_MODEL ID=2 NAME=30W >\n"


def _root(tmp: Path, model: str | None, compatible: str = "", release: str | None = None,
          pmode: int | None = None, pinned: bool | None = None, jtop: bool = False) -> Path:
    root = tmp / "root"
    files = {}
    if model is not None:
        files["proc/device-tree/model"] = model + "\x00"
    if compatible:
        files["proc/device-tree/compatible"] = compatible.replace(" ", "\x00") + "\x00"
    if release is not None:
        files["etc/nv_tegra_release"] = release
    if pmode is not None:
        files["var/lib/nvpmodel/status"] = f"pmode:{pmode:04d} fmode:quiet\n"
        files["etc/nvpmodel.conf"] = NVPMODEL_CONF
    if pinned is not None:
        cpu = "sys/devices/system/cpu/cpu0/cpufreq/"
        files[cpu + "scaling_max_freq"] = "2201600\n"
        files[cpu + "scaling_min_freq"] = "2201600\n" if pinned else "729600\n"
    if jtop:
        files["run/jtop.sock"] = ""
    root.mkdir()
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


R36_4 = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64\n"
R35 = "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64\n"


def _jetson_python(**kw) -> PythonFacts:
    base: dict = {
        "torch": "2.5.0a0+872d972e41.nv24.08", "torch_cuda": "12.6", "cuda_available": True,
        "gpu_name": "Orin", "gpu_cc": "8.7", "arch_list": ["sm_87"], "tensorrt": "10.3.0",
        "deform_plugin": True, "torch2trt": "0.5.0", "opencv": "4.8.0", "gstreamer": True,
        "onnxruntime": "1.20.0",
        "ort_providers": ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                          "CPUExecutionProvider"],
    }
    base.update(kw)
    return PythonFacts(**base)


def _rows(report: dict) -> dict[str, tuple[str, str, str]]:
    return {c["name"]: (c["status"], c["detail"], c["fix"]) for c in report["checks"]}


def test_parse_l4t_and_jetpack() -> None:
    assert parse_l4t(R36_4) == (36, 4, 3) and jetpack_of((36, 4, 3)) == ("6.2", "10.3")
    assert jetpack_of((36, 3, 0)) == ("6.0", "8.6.2")
    assert jetpack_of((35, 4, 1)) == ("5.1.x", "8.5.2")
    assert parse_l4t("garbage") is None and parse_l4t(None) is None


def test_agx_orin_all_good(tmp_path: Path) -> None:
    root = _root(tmp_path, "NVIDIA Jetson AGX Orin Developer Kit", "nvidia,p3701-0000 nvidia,tegra234",
                 R36_4, pmode=0, pinned=True, jtop=True)
    r = doctor(root, _jetson_python(), machine="aarch64")
    rows = _rows(r)
    assert r["summary"] == {"OK": len(rows), "WARN": 0, "FAIL": 0}, rows
    assert "L4T R36.4.3 (JetPack 6.2, TensorRT 10.3)" in rows["L4T / JetPack"][1]
    assert rows["DLA cores"][1].startswith("2 ")
    assert rows["nvpmodel"][1] == "mode 0 (MAXN)"
    assert r["facts"]["profile"] == "jetson-agx-orin" and r["facts"]["l4t"] == "36.4.3"


def test_orin_nano_with_pip_opencv_cpu_torch_and_no_jtop(tmp_path: Path) -> None:
    root = _root(tmp_path, "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super",
                 "nvidia,p3768-0000+p3767-0005 nvidia,p3767-0005 nvidia,tegra234", R36_4,
                 pmode=2, pinned=False)
    py = _jetson_python(torch="2.14.1", torch_cuda=None, cuda_available=False, gpu_cc=None,
                        arch_list=[], gstreamer=False, tensorrt=None, deform_plugin=None,
                        torch2trt=None, ort_providers=["CPUExecutionProvider"])
    rows = _rows(doctor(root, py, machine="aarch64"))
    assert rows["torch CUDA"][0] == "FAIL" and "CPU-only" in rows["torch CUDA"][1]
    assert "Jetson torch wheel" in rows["torch CUDA"][2]
    assert rows["TensorRT"][0] == "FAIL" and "nvidia-tensorrt" in rows["TensorRT"][2]
    assert rows["OpenCV GStreamer"][0] == "WARN" and "python3-opencv" in rows["OpenCV GStreamer"][2]
    assert rows["jtop service"][0] == "WARN" and "jetson-stats" in rows["jtop service"][2]
    assert rows["jetson_clocks"] == ("WARN", "clocks float (benchmarks vary run to run)",
                                     "sudo jetson_clocks")
    assert rows["DLA cores"][1].startswith("0 ")  # Orin Nano: no DLA
    assert rows["onnxruntime"][0] == "WARN"
    assert "DeformConv plugin" not in rows  # unknowable without TensorRT
    for name, (status, _, fix) in rows.items():
        assert status == "OK" or (fix and "\n" not in fix), name


def test_orin_nx_8gb_has_one_dla_core(tmp_path: Path) -> None:
    root = _root(tmp_path, "NVIDIA Jetson Orin NX Engineering Reference Developer Kit",
                 "nvidia,p3767-0001 nvidia,tegra234", R36_4, pmode=0, pinned=True, jtop=True)
    rows = _rows(doctor(root, _jetson_python(), machine="aarch64"))
    assert rows["DLA cores"][1].startswith("1 ")


def test_xavier_on_jetpack5_and_missing_plugin(tmp_path: Path) -> None:
    root = _root(tmp_path, "Jetson-AGX", "nvidia,p2888-0001 nvidia,tegra194", R35,
                 pmode=2, pinned=True, jtop=True)
    py = _jetson_python(gpu_name="Xavier", gpu_cc="7.2", arch_list=["sm_72"], tensorrt="8.5.2.2",
                        deform_plugin=False, torch2trt="0.4.0")
    rows = _rows(doctor(root, py, machine="aarch64"))
    assert rows["L4T / JetPack"][0] == "FAIL" and "JetPack 6" in rows["L4T / JetPack"][2]
    assert "R35.4.1 (JetPack 5.1.x, TensorRT 8.5.2)" in rows["L4T / JetPack"][1]
    assert rows["TensorRT"][0] == "FAIL"
    assert rows["DeformConv plugin"][0] == "FAIL"
    assert rows["torch2trt"][0] == "WARN" and "predates" in rows["torch2trt"][1]
    assert rows["nvpmodel"][0] == "WARN" and rows["nvpmodel"][2] == "sudo nvpmodel -m 0"
    assert rows["DLA cores"][1].startswith("2 ")


def test_x86_gpu_box_with_ptx_only_torch(tmp_path: Path) -> None:
    root = _root(tmp_path, None)
    py = PythonFacts(torch="2.14.1+cu126", torch_cuda="12.6", cuda_available=True,
                     gpu_name="NVIDIA GeForce GTX 1080 Ti", gpu_cc="6.1",
                     arch_list=["sm_75", "sm_80", "compute_50"], tensorrt=None,
                     opencv="4.10.0", gstreamer=False, onnxruntime="1.20.0",
                     ort_providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    r = doctor(root, py, machine="x86_64")
    rows = _rows(r)
    assert rows["machine"][0] == "OK" and r["facts"]["profile"] == "gtx1080ti"
    assert rows["TensorRT"][0] == "WARN" and "pip install tensorrt" in rows["TensorRT"][2]
    assert rows["torch arch list"][0] == "WARN" and "compute_50" in rows["torch arch list"][1]
    assert rows["torch2trt"][0] == "WARN"
    assert rows["onnxruntime"][0] == "OK"
    assert not {"jtop service", "nvpmodel", "jetson_clocks", "DLA cores"} & set(rows)


def test_plain_cpu_box(tmp_path: Path) -> None:
    root = _root(tmp_path, None)
    py = PythonFacts(torch="2.14.1", opencv="4.10.0", gstreamer=False, onnxruntime="1.20.0",
                     ort_providers=["CPUExecutionProvider"])
    r = doctor(root, py, machine="x86_64")
    rows = _rows(r)
    assert r["summary"]["FAIL"] == 0
    assert rows["TensorRT"][0] == "WARN" and "no NVIDIA GPU" in rows["TensorRT"][1]
    assert rows["torch"][0] == "OK" and "torch CUDA" not in rows
    assert "torch2trt" not in rows  # optional and useless without a GPU


def test_cli_json_on_a_fixture_root(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edgeseg.cli import app

    root = _root(tmp_path, "NVIDIA Jetson AGX Orin Developer Kit", "nvidia,p3701-0000", R36_4)
    res = CliRunner().invoke(app, ["doctor", "--root", str(root), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["facts"]["jetson"] is True and report["facts"]["board"].startswith("NVIDIA")
    bad = CliRunner().invoke(app, ["doctor", "--root", str(tmp_path / "nope")])
    assert bad.exit_code == 2 and "not a folder" in bad.output


def test_doctor_on_this_machine() -> None:
    """A machine without a GPU or TensorRT (this one, CI): says what to install, fails nothing."""
    import torch

    from edgeseg.deploy.tensorrt import tensorrt_available

    if torch.cuda.is_available() or tensorrt_available() or Path("/etc/nv_tegra_release").exists():
        pytest.skip("this machine has a GPU, TensorRT or is a Jetson")
    r = doctor()
    rows = _rows(r)
    assert r["summary"]["FAIL"] == 0, rows
    assert rows["TensorRT"][0] == "WARN" and "NVIDIA GPU" in rows["TensorRT"][2]
    assert rows["machine"][0] == "OK" and r["facts"]["jetson"] is False


def test_container_board_from_the_environment(tmp_path: Path) -> None:
    """Docker masks the device tree: the board comes in through EDGESEG_BOARD (profiles/detection)."""
    from edgeseg.doctor import gather

    root = _root(tmp_path, None, release=R36_4)
    f = gather(root, _jetson_python(), machine="aarch64",
               environ={"EDGESEG_BOARD": "NVIDIA Jetson AGX Orin Developer Kit"})
    assert f.jetson and f.board == "NVIDIA Jetson AGX Orin Developer Kit"
    assert f.profile == "jetson-agx-orin" and "EDGESEG_BOARD" in str(f.profile_source)


# --- TensorRT 11 (issue 32 items 11, 12) ---------------------------------------------------------


class _Registry11:
    """TensorRT 11's IPluginRegistry lookup: get_creator only (get_plugin_creator removed)."""

    def __init__(self, names: set[tuple[str, str]]) -> None:
        self.names = names

    def get_creator(self, name: str, version: str, plugin_namespace: str = "") -> object | None:
        return object() if (name, version) in self.names else None


class _Registry86:
    def get_plugin_creator(self, type: str, version: str, plugin_namespace: str = "") -> object | None:
        return object() if (type, version) == ("ModulatedDeformConv2d", "1") else None


def test_plugin_lookup_on_tensorrt_11_and_8() -> None:
    from edgeseg.doctor.facts import plugin_registered

    assert plugin_registered(_Registry11({("ModulatedDeformConv2d", "1")}), "ModulatedDeformConv2d", "1")
    assert not plugin_registered(_Registry11(set()), "ModulatedDeformConv2d", "1")
    assert plugin_registered(_Registry86(), "ModulatedDeformConv2d", "1")


def test_gather_python_on_a_tensorrt_11_module(monkeypatch: pytest.MonkeyPatch) -> None:
    # a tensorrt module with 11's surface: no get_plugin_creator on the registry
    import sys
    import types

    from edgeseg.doctor.facts import gather_python
    from edgeseg.runtime import trt_engine

    trt = types.ModuleType("tensorrt")
    trt.__version__ = "11.0.0.1"  # type: ignore[attr-defined]
    trt.Builder = object  # type: ignore[attr-defined]
    trt.Logger = type("Logger", (), {"WARNING": 2, "VERBOSE": 4, "__init__": lambda self, s=0: None})  # type: ignore[attr-defined]
    trt.ILogger = trt.Logger  # type: ignore[attr-defined]
    trt.init_libnvinfer_plugins = lambda logger, ns: True  # type: ignore[attr-defined]
    trt.get_plugin_registry = lambda: _Registry11({("ModulatedDeformConv2d", "1")})  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "torch2trt", None)  # not installed
    monkeypatch.setattr(trt_engine, "_process", {"logger": None, "plugins": False})
    f = gather_python()
    assert f.tensorrt == "11.0.0.1" and f.deform_plugin is True and f.tensorrt_error is None


def test_torch2trt_hint_on_tensorrt_11(tmp_path: Path) -> None:
    root = _root(tmp_path, "NVIDIA Jetson AGX Orin Developer Kit", "nvidia,p3701-0000 nvidia,tegra234",
                 R36_4, pmode=0, pinned=True, jtop=True)
    for t2t in ({"torch2trt": None, "torch2trt_error": "AttributeError: IInt8Calibrator"},
                {"torch2trt": "0.5.0"}):
        rows = _rows(doctor(root, _jetson_python(tensorrt="11.0.0", **t2t), machine="aarch64"))
        assert rows["torch2trt"][:2] == ("WARN", "torch2trt does not support TensorRT 11; use "
                                         "--format engine"), rows["torch2trt"]
        assert "git clone" not in rows["torch2trt"][2]
        assert rows["DLA cores"][1] == "2 (--dla-core 0..1)"  # DLA stays on TensorRT 11
