"""What `edgeseg doctor` concludes: :class:`Check` rows (OK / WARN / FAIL with a one-line fix)
from :class:`~edgeseg.doctor.facts.Facts`, and the library entry :func:`doctor`."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgeseg.doctor.facts import Facts, PythonFacts, gather, jetpack_of
from edgeseg.errors import EdgesegError

__all__ = ["FAIL", "MIN_TORCH2TRT", "OK", "WARN", "Check", "doctor", "evaluate"]

OK, WARN, FAIL = "OK", "WARN", "FAIL"
MIN_TORCH2TRT = (0, 5, 0)  # the first release with TensorRT 10 support

_JETPACK6_FIX = "flash JetPack 6 (L4T R36: TensorRT 8.6 / 10.3) with SDK Manager"
_TRT_FIX_JETSON = "sudo apt install nvidia-tensorrt (part of JetPack: sudo apt install nvidia-jetpack)"
_TRT_FIX_X86 = "pip install tensorrt (NVIDIA's wheel) or use the edgeseg:gpu image (docker/Dockerfile.gpu)"
_TORCH_FIX_JETSON = ("install NVIDIA's Jetson torch wheel (pypi.jetson-ai-lab.io / "
                     "developer.download.nvidia.com/compute/redist/jp) or the edgeseg:jetson image")
_TORCH_FIX_X86 = "pip install torch --index-url https://download.pytorch.org/whl/cu126 (a CUDA build)"
_T2T_FIX = ("git clone https://github.com/NVIDIA-AI-IOT/torch2trt && cd torch2trt && "
            "pip install --no-build-isolation .")


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK | WARN | FAIL
    detail: str
    fix: str = ""


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def _arch_check(py: PythonFacts) -> Check | None:
    if not py.gpu_cc:
        return None
    cc = py.gpu_cc.replace(".", "")
    if f"sm_{cc}" in py.arch_list:
        return Check("torch arch list", OK, f"sm_{cc} for {py.gpu_name} is built in")
    ptx = [a for a in py.arch_list if a.startswith("compute_") and int(a[8:]) <= int(cc)]
    if ptx:
        return Check("torch arch list", WARN,
                     f"no sm_{cc} kernels, only PTX {ptx[-1]}: JIT-compiled at first start",
                     f"install a torch build whose arch list has sm_{cc}")
    return Check("torch arch list", FAIL,
                 f"{', '.join(py.arch_list) or 'no archs'} cannot run on sm_{cc}",
                 f"install a torch build for sm_{cc}")


def evaluate(f: Facts) -> list[Check]:
    """The rows of the doctor table, in a fixed order."""
    from edgeseg.artifacts.sidecar import DLA_CORES

    py = f.python
    gpu_box = f.jetson or py.gpu_name is not None
    rows: list[Check] = []

    # Board / L4T / JetPack
    if f.jetson:
        board = f.board or "a Jetson (module name unreadable)"
        if f.l4t is None:
            rows.append(Check("L4T / JetPack", WARN, f"{board}, /etc/nv_tegra_release unreadable",
                              "check the JetPack install (cat /etc/nv_tegra_release)"))
        else:
            l4t = ".".join(map(str, f.l4t))
            jp = jetpack_of(f.l4t)
            shipped = f"JetPack {jp[0]}, TensorRT {jp[1]}" if jp else "JetPack unknown"
            status, fix = (OK, "") if f.l4t[0] >= 36 else (FAIL, _JETPACK6_FIX)
            rows.append(Check("L4T / JetPack", status, f"{board}: L4T R{l4t} ({shipped}); "
                              f"profile {f.profile} (from {f.profile_source})", fix))
        if f.profile is None:
            rows.append(Check("profile", WARN, "no edgeseg profile fits this board",
                              "copy profiles/jetson-orin-nano.yaml, edit it, pass --profile PATH"))
    else:
        where = f"{f.machine}, GPU {py.gpu_name}" if py.gpu_name else f"{f.machine}, no NVIDIA GPU"
        rows.append(Check("machine", OK, f"not a Jetson ({where}); profile {f.profile} "
                          f"(from {f.profile_source})"))

    # TensorRT
    if py.tensorrt:
        v = _version_tuple(py.tensorrt)
        if v < (8, 6):
            rows.append(Check("TensorRT", FAIL, f"{py.tensorrt} is older than 8.6",
                              _JETPACK6_FIX if f.jetson else _TRT_FIX_X86))
        else:
            rows.append(Check("TensorRT", OK, py.tensorrt))
    else:
        why = py.tensorrt_error or "not installed"
        if f.jetson:
            rows.append(Check("TensorRT", FAIL, why, _TRT_FIX_JETSON))
        elif py.gpu_name:
            rows.append(Check("TensorRT", WARN, f"{why} (engines need it)", _TRT_FIX_X86))
        else:
            rows.append(Check("TensorRT", WARN, f"{why}; no NVIDIA GPU here, so only "
                              "onnxruntime / torch on the CPU run", "a TensorRT engine needs an "
                              "NVIDIA GPU: build it on the Jetson with `edgeseg export --format engine`"))

    # torch + CUDA
    if py.torch is None:
        rows.append(Check("torch", FAIL, "not installed", "make setup (or pip install -e .)"))
    elif gpu_box and not py.cuda_available:
        what = "a CPU-only build" if py.torch_cuda is None else f"CUDA {py.torch_cuda}, no GPU visible"
        rows.append(Check("torch CUDA", FAIL, f"torch {py.torch}: {what}",
                          _TORCH_FIX_JETSON if f.jetson else _TORCH_FIX_X86))
    elif gpu_box:
        rows.append(Check("torch CUDA", OK, f"torch {py.torch}, CUDA {py.torch_cuda}, "
                          f"{py.gpu_name} (sm_{(py.gpu_cc or '?').replace('.', '')})"))
        arch = _arch_check(py)
        if arch:
            rows.append(arch)
    else:
        rows.append(Check("torch", OK, f"torch {py.torch} on the CPU (no NVIDIA GPU here)"))

    # OpenCV GStreamer (CSI cameras through nvarguscamerasrc)
    if py.opencv is None:
        rows.append(Check("OpenCV", FAIL, "not installed", "pip install opencv-python-headless"))
    elif py.gstreamer:
        rows.append(Check("OpenCV GStreamer", OK, f"OpenCV {py.opencv} with GStreamer"))
    elif f.jetson:
        rows.append(Check("OpenCV GStreamer", WARN, f"OpenCV {py.opencv} without GStreamer: "
                          "CSI cameras (csi://0) cannot open",
                          "use JetPack's OpenCV: pip uninstall opencv-python; sudo apt install "
                          "python3-opencv"))
    else:
        rows.append(Check("OpenCV GStreamer", OK, f"OpenCV {py.opencv} without GStreamer (only "
                          "CSI cameras on a Jetson need it)"))

    # Jetson-only rows
    if f.jetson:
        rows.append(Check("jtop service", OK, "/run/jtop.sock present (power readings in bench)")
                    if f.jtop_socket else
                    Check("jtop service", WARN, "jtop is not running: bench reports no power",
                          "sudo pip3 install -U jetson-stats && sudo systemctl restart jtop.service"))
        want = _profile_power(f.profile)
        if f.nvpmodel_id is None:
            rows.append(Check("nvpmodel", WARN, "power mode unknown (/var/lib/nvpmodel/status)",
                              "sudo nvpmodel -q"))
        else:
            mode = f"mode {f.nvpmodel_id}" + (f" ({f.nvpmodel_name})" if f.nvpmodel_name else "")
            if want and want[0] != f.nvpmodel_id:
                rows.append(Check("nvpmodel", WARN, f"{mode}; profile {f.profile} is measured "
                                  f"at mode {want[0]} ({want[1]})", f"sudo nvpmodel -m {want[0]}"))
            else:
                rows.append(Check("nvpmodel", OK, mode))
        if f.clocks_pinned is None:
            rows.append(Check("jetson_clocks", WARN, "CPU frequency limits unreadable",
                              "sudo jetson_clocks --show"))
        elif f.clocks_pinned:
            rows.append(Check("jetson_clocks", OK, "clocks pinned at maximum"))
        else:
            rows.append(Check("jetson_clocks", WARN, "clocks float (benchmarks vary run to run)",
                              "sudo jetson_clocks"))
        dla = _dla_cores(f.board, f.compatible, DLA_CORES)
        if dla is None:
            rows.append(Check("DLA cores", WARN, "unknown for this module", "see the module's data sheet"))
        elif dla == 0:
            rows.append(Check("DLA cores", OK, "0 (this module has no DLA: GPU engines only)"))
        else:
            rows.append(Check("DLA cores", OK, f"{dla} (--dla-core 0..{dla - 1})"))

    # ModulatedDeformConv2d plugin (only knowable with TensorRT)
    if py.tensorrt:
        if py.deform_plugin:
            rows.append(Check("DeformConv plugin", OK, "ModulatedDeformConv2d registered"))
        else:
            rows.append(Check("DeformConv plugin", FAIL, "ModulatedDeformConv2d not registered "
                              "(libnvinfer_plugin missing)", "install TensorRT's plugin library "
                              "(libnvinfer-plugin*), or export with --dcn portable"))

    # torch2trt (optional: --format torch2trt). It subclasses trt.IInt8Calibrator and sets
    # trt.BuilderFlag.FP16, both gone in TensorRT 11: no torch2trt build can work there.
    if py.tensorrt and _version_tuple(py.tensorrt)[:1] >= (11,):
        if py.torch2trt is not None or py.torch2trt_error or gpu_box:
            rows.append(Check("torch2trt", WARN, "torch2trt does not support TensorRT 11; use "
                              "--format engine", "edgeseg export --format engine"))
    elif py.torch2trt_error:
        rows.append(Check("torch2trt", WARN, f"import fails: {py.torch2trt_error}", _T2T_FIX))
    elif py.torch2trt is None:
        if gpu_box:
            rows.append(Check("torch2trt", WARN, "not installed (optional: --format torch2trt)",
                              _T2T_FIX))
    else:
        v = _version_tuple(py.torch2trt)
        old = py.torch2trt != "unknown" and v < MIN_TORCH2TRT
        rows.append(Check("torch2trt", WARN, f"{py.torch2trt} predates TensorRT 10 support",
                          _T2T_FIX) if old else Check("torch2trt", OK, py.torch2trt))

    # onnxruntime
    if py.onnxruntime is None:
        rows.append(Check("onnxruntime", FAIL, "not installed", "pip install onnxruntime"))
    else:
        prov = ", ".join(p.removesuffix("ExecutionProvider") for p in py.ort_providers) or "none"
        gpu_ep = {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(py.ort_providers)
        if gpu_box and not gpu_ep:
            rows.append(Check("onnxruntime", WARN, f"{py.onnxruntime}: {prov} (CPU only)",
                              "Jetson: onnxruntime-gpu from pypi.jetson-ai-lab.io; x86: pip "
                              "install onnxruntime-gpu"))
        else:
            rows.append(Check("onnxruntime", OK, f"{py.onnxruntime}: {prov}"))
    return rows


def _profile_power(profile: str | None) -> tuple[int, str] | None:
    if profile is None:
        return None
    try:
        from edgeseg.profiles import load_profile

        p = load_profile(profile)
    except EdgesegError:
        return None
    return (p.power.nvpmodel, p.power.nvpmodel_name) if p.power else None


# Orin NX / Nano modules by device-tree part number (the model string does not say 8 or 16 GB).
_P3767_DLA = {"p3767-0000": 2, "p3767-0001": 1, "p3767-0003": 0, "p3767-0004": 0,
              "p3767-0005": 0}


def _dla_cores(board: str | None, compatible: str, table: dict[str, int]) -> int | None:
    for part, n in _P3767_DLA.items():
        if part in compatible:
            return n
    low = (board or "").lower().replace(" ", "").replace("-", "")
    for name, n in sorted(table.items(), key=lambda kv: -len(kv[0])):
        if name.lower().replace(" ", "").removesuffix("16gb").removesuffix("8gb") in low:
            if "orinnx" in low:
                return None  # an Orin NX whose part number is unknown: 8 GB has 1, 16 GB 2
            return n
    if "jetsonagx" in low or "p2888" in compatible:  # L4T R32 spelling of AGX Xavier
        return table["Jetson AGX Xavier"]
    return None


def doctor(root: str | Path = "/", python: PythonFacts | None = None,
           machine: str | None = None) -> dict[str, Any]:
    """Library entry of `edgeseg doctor`: the report ``--json`` prints."""
    facts = gather(root, python, machine)
    checks = evaluate(facts)
    summary = {s: sum(c.status == s for c in checks) for s in (OK, WARN, FAIL)}
    return {"checks": [asdict(c) for c in checks], "summary": summary, "facts": facts.to_dict()}
