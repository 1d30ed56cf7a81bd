"""Device profiles: shipped files, schema errors, auto-detection, overrides, the CLI."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from edgeseg import profiles as prof
from edgeseg.errors import EdgesegError
from edgeseg.profiles import (
    Profile,
    ProfileWarning,
    apply_overrides,
    detect,
    detect_profile,
    detection,
    list_profiles,
    load_profile,
    validate_profile,
)

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ["gtx1080ti", "jetson-agx-orin", "jetson-agx-xavier", "jetson-orin-nano", "x86-cpu"]


@pytest.fixture(autouse=True)
def _no_user_dirs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(prof.ENV_PROFILES_DIR, raising=False)


def _raw(name: str) -> dict:
    return yaml.safe_load((REPO / "profiles" / f"{name}.yaml").read_text())


def _write(tmp_path: Path, data: object, name: str = "x.yaml") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return p


# ------------------------------------------------------------------------------- shipped files


def test_shipped_profiles_are_all_listed() -> None:
    assert list_profiles() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_validates_and_round_trips(name: str, tmp_path: Path) -> None:
    p = validate_profile(REPO / "profiles" / f"{name}.yaml")
    assert p.name == name
    assert p.to_dict() == _raw(name)  # nothing dropped or renamed on the way in
    again = validate_profile(_write(tmp_path, p.to_dict(), f"{name}.yaml"))
    assert again.to_dict() == p.to_dict()
    assert (again.device, again.deploy, again.power, again.bench) == (
        p.device,
        p.deploy,
        p.power,
        p.bench,
    )


# Independent arithmetic: CUDA cores x 2 FLOP (FMA) x clock (GHz) -> FP32 TFLOP/s.
@pytest.mark.parametrize(
    ("name", "cores", "ghz"),
    [
        ("gtx1080ti", 3584, 1.582),
        ("jetson-agx-xavier", 512, 1.377),
        ("jetson-agx-orin", 2048, 1.3),
        ("jetson-orin-nano", 1024, 0.625),
    ],
)
def test_fp32_peak_matches_cores_times_clock(name: str, cores: int, ghz: float) -> None:
    peak = load_profile(name).device.peak_tflops["fp32"]
    assert peak == pytest.approx(cores * 2 * ghz / 1000, rel=0.01)


def test_device_figures_from_datasheets() -> None:
    orin, nano, xavier, ti = (
        load_profile(n).device
        for n in ("jetson-agx-orin", "jetson-orin-nano", "jetson-agx-xavier", "gtx1080ti")
    )
    # Bus width (bits) / 8 x transfer rate (GT/s).
    assert orin.dram_gbs == pytest.approx(256 / 8 * 6.4)
    assert xavier.dram_gbs == pytest.approx(256 / 8 * 4.266, rel=0.001)
    assert ti.dram_gbs == pytest.approx(352 / 8 * 11.0)
    assert nano.dram_gbs == 68.0
    # Datasheet sparse INT8 TOPS / 2 = dense.
    assert orin.peak_tflops["int8"] == 170 / 2 and nano.peak_tflops["int8"] == 40 / 2
    assert orin.dla_peak_tflops == {"fp16": None, "int8": 105 / 2}
    assert (orin.dla_cores, xavier.dla_cores, nano.dla_cores, ti.dla_cores) == (2, 2, 0, 0)
    assert ti.peak_tflops["fp16"] == pytest.approx(ti.peak_tflops["fp32"] / 64, rel=0.01)
    assert orin.compute_capability_tuple == (8, 7) and ti.compute_capability == "6.1"


def test_deployment_defaults() -> None:
    ti, nano, cpu = (load_profile(n) for n in ("gtx1080ti", "jetson-orin-nano", "x86-cpu"))
    assert ti.deploy.input_hw == (1024, 2048) and ti.power is None
    assert (nano.deploy.backend, nano.deploy.precision, nano.deploy.input_hw) == (
        "tensorrt",
        "fp16",
        (512, 1024),
    )
    assert nano.power is not None and nano.power.jetson_clocks is True
    assert (cpu.deploy.backend, cpu.deploy.precision, cpu.deploy.input_hw) == (
        "onnxruntime",
        "fp32",
        (512, 1024),
    )
    assert cpu.device.peak_tflops == {"fp32": None, "fp16": None, "int8": None}
    assert cpu.device.compute_capability is None and cpu.deploy.workspace_mib is None


# ----------------------------------------------------------------------------- schema errors


def _set(d: dict, path: str, value: object) -> None:
    *parents, last = path.split(".")
    for k in parents:
        d = d[k]
    if value is _DELETE:
        del d[last]
    else:
        d[last] = value


_DELETE = object()


@pytest.mark.parametrize(
    ("base", "path", "value", "message"),
    [
        (
            "jetson-orin-nano",
            "deploy.precision",
            "fp64",
            "deploy.precision: expected one of fp32, fp16, int8, got 'fp64'",
        ),
        (
            "jetson-orin-nano",
            "deploy.backend",
            "tflite",
            "deploy.backend: expected one of tensorrt, onnxruntime, torch, got 'tflite'",
        ),
        (
            "jetson-orin-nano",
            "deploy.turbo",
            True,
            "deploy.turbo: unknown key; expected one of backend, precision, height",
        ),
        (
            "jetson-orin-nano",
            "device.peak_tflops.bf16",
            10.0,
            "device.peak_tflops.bf16: unknown key; expected one of fp32, fp16, int8",
        ),
        ("jetson-orin-nano", "extras", {}, "extras: unknown key"),
        (
            "jetson-orin-nano",
            "deploy.height",
            "512",
            "deploy.height: expected an integer in 16..16384, got '512'",
        ),
        (
            "jetson-orin-nano",
            "calibration.images",
            True,  # bool is an int to Python
            "calibration.images: expected an integer in 1..100000, got True",
        ),
        (
            "jetson-orin-nano",
            "deploy.width",
            10.5,
            "deploy.width: expected an integer in 16..16384, got 10.5",
        ),
        (
            "jetson-orin-nano",
            "deploy.gpu_fallback",
            "yes",
            "deploy.gpu_fallback: expected true or false, got 'yes'",
        ),
        (
            "jetson-orin-nano",
            "device.dram_gbs",
            "fast",
            "device.dram_gbs: expected a number in (0, 100000] or null, got 'fast'",
        ),
        (
            "jetson-orin-nano",
            "deploy.height",
            0,
            "deploy.height: expected an integer in 16..16384, got 0",
        ),
        (
            "jetson-orin-nano",
            "calibration.images",
            0,
            "calibration.images: expected an integer in 1..100000, got 0",
        ),
        (
            "jetson-orin-nano",
            "bench.duration_s",
            0,
            "bench.duration_s: expected a number in (0, 3600], got 0",
        ),
        (
            "jetson-orin-nano",
            "bench.warmup_s",
            -1.0,
            "bench.warmup_s: expected a number in [0, 600], got -1.0",
        ),
        (
            "jetson-orin-nano",
            "device.compute_capability",
            "sm87",
            'device.compute_capability: expected a compute capability such as "8.7" or null',
        ),
        (
            "jetson-orin-nano",
            "deploy",
            [1, 2],
            "deploy: expected a mapping with keys backend, precision",
        ),
        (
            "jetson-orin-nano",
            "deploy.precision",
            _DELETE,
            "deploy.precision: missing; expected one of fp32, fp16, int8",
        ),
        ("jetson-orin-nano", "power", _DELETE, "power: missing"),
        (
            "jetson-orin-nano",
            "device.peak_tflops.fp16",
            None,
            "device.peak_tflops.fp16: expected a number > 0 for a jetson GPU",
        ),
        (
            "jetson-orin-nano",
            "deploy.dla_core",
            0,
            "deploy.dla_core: expected null (the device has no DLA), got 0",
        ),
        (
            "jetson-agx-xavier",
            "deploy.dla_core",
            2,
            "deploy.dla_core: expected null or 0..1 (the device has 2 DLA cores), got 2",
        ),
        (
            "gtx1080ti",
            "power",
            {"nvpmodel": 0, "nvpmodel_name": "MAXN", "jetson_clocks": True},
            "power: expected no power section for a discrete device",
        ),
        (
            "x86-cpu",
            "deploy.backend",
            "tensorrt",
            "deploy.backend: expected onnxruntime or torch on a cpu device",
        ),
        (
            "x86-cpu",
            "device.dla_peak_tflops",
            {"fp16": 1.0, "int8": 2.0},
            "device.dla_peak_tflops: expected null when device.dla_cores is 0",
        ),
    ],
)
def test_broken_profile_names_file_key_and_expectation(
    tmp_path: Path, base: str, path: str, value: object, message: str
) -> None:
    data = _raw(base)
    _set(data, path, value)
    f = _write(tmp_path, data, "broken.yaml")
    with pytest.raises(EdgesegError) as e:
        validate_profile(f)
    text = str(e.value)
    assert text.startswith(f"{f}: ")
    assert message in text
    assert "\n" not in text


def test_dla_core_needs_a_dla_precision(tmp_path: Path) -> None:
    data = _raw("jetson-agx-xavier")
    data["deploy"]["dla_core"] = 1
    assert validate_profile(_write(tmp_path, data)).deploy.dla_core == 1  # fp16: fine
    data["deploy"]["precision"] = "fp32"
    with pytest.raises(EdgesegError, match=r"deploy\.precision: expected fp16 or int8 when "):
        validate_profile(_write(tmp_path, data))


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("device:\n  name: x\ndeploy:\n  precision: [fp16\n", 5, "expected ',' or ']'"),
        ("device:\n  name: x\n   kind: jetson\n", 3, "mapping values are not allowed"),
        ("bench:\n  warmup_s: 1\n  warmup_s: 2\n", 3, "duplicate key 'warmup_s'"),
    ],
)
def test_malformed_yaml_names_file_and_line(
    tmp_path: Path, text: str, line: int, problem: str
) -> None:
    f = _write(tmp_path, text)
    with pytest.raises(EdgesegError) as e:
        validate_profile(f)
    msg = str(e.value)
    assert msg.startswith(f"{f}:{line}:") and "malformed YAML" in msg and problem in msg
    assert "\n" not in msg


def test_empty_and_non_mapping_documents(tmp_path: Path) -> None:
    with pytest.raises(EdgesegError, match="got an empty document"):
        validate_profile(_write(tmp_path, ""))
    with pytest.raises(EdgesegError, match=r"\(top level\): expected a mapping .*got \['a'\]"):
        validate_profile(_write(tmp_path, "- a\n"))


def test_unknown_name_and_missing_file() -> None:
    with pytest.raises(EdgesegError, match="unknown profile 'jetson-tx2'; known: gtx1080ti, "):
        load_profile("jetson-tx2")
    with pytest.raises(EdgesegError, match="profile file not found: no/such.yaml"):
        load_profile("no/such.yaml")


def test_env_dir_adds_and_shadows_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = _raw("jetson-orin-nano")
    mine["deploy"]["height"] = 256
    _write(tmp_path, mine, "my-board.yaml")
    _write(tmp_path, mine, "gtx1080ti.yaml")  # shadows the shipped one (a nano in disguise)
    monkeypatch.setenv(prof.ENV_PROFILES_DIR, str(tmp_path))
    assert list_profiles() == sorted([*SHIPPED, "my-board"])
    assert load_profile("my-board").deploy.height == 256
    assert load_profile("gtx1080ti").device.kind == "jetson"
    assert load_profile("x86-cpu").source == REPO / "profiles" / "x86-cpu.yaml"
    monkeypatch.setenv(prof.ENV_PROFILES_DIR, str(tmp_path / "missing"))
    with pytest.raises(EdgesegError, match="EDGESEG_PROFILES_DIR: not a directory"):
        list_profiles()


# ---------------------------------------------------------------------------------- overrides


def test_overrides_change_only_what_is_given() -> None:
    base = load_profile("jetson-agx-xavier")
    before = copy.deepcopy(base.to_dict())
    p = apply_overrides(
        base,
        precision="int8",
        height=256,
        width=None,
        dla_core=1,
        calibration_images=64,
        duration_s=1.5,
    )
    assert (p.deploy.precision, p.deploy.height, p.deploy.dla_core) == ("int8", 256, 1)
    assert p.deploy.width == base.deploy.width == 1024
    assert p.calibration.images == 64 and p.bench.duration_s == 1.5
    assert p.device == base.device and p.power == base.power
    assert base.to_dict() == before  # the input profile is untouched
    assert apply_overrides(p, dla_core=-1).deploy.dla_core is None
    assert apply_overrides(base) is base
    assert apply_overrides(base, nvpmodel=3).power.nvpmodel_name == "mode 3"


@pytest.mark.parametrize(
    ("name", "flags", "message"),
    [
        (
            "jetson-orin-nano",
            {"precision": "fp64"},
            "--precision: expected one of fp32, fp16, int8, got 'fp64'",
        ),
        ("jetson-orin-nano", {"height": 8}, "--height: expected an integer in 16..16384, got 8"),
        ("jetson-orin-nano", {"dla_core": 0}, "--dla-core: expected null (the device has no DLA)"),
        ("x86-cpu", {"backend": "tensorrt"}, "--backend: expected onnxruntime or torch"),
        ("x86-cpu", {"jetson_clocks": True}, "--jetson-clocks: applies to Jetson profiles only"),
        (
            "jetson-agx-xavier",
            {"dla_core": 0, "precision": "fp32"},
            "--precision: expected fp16 or int8 when deploy.dla_core is set",
        ),
    ],
)
def test_bad_override_names_the_flag(name: str, flags: dict, message: str) -> None:
    with pytest.raises(EdgesegError) as e:
        apply_overrides(load_profile(name), **flags)
    assert str(e.value).startswith(message)


def test_override_conflict_with_file_value_names_the_file() -> None:
    # --dla-core is fine on its own; the profile's precision fp32 (from the file) is not.
    p = apply_overrides(load_profile("jetson-agx-xavier"), precision="fp32")
    with pytest.raises(
        EdgesegError,
        match=r"jetson-agx-xavier\.yaml with --dla-core: deploy\."
        r"precision: expected fp16 or int8",
    ):
        apply_overrides(p, dla_core=0)


def test_unknown_override_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match="precison"):
        apply_overrides(load_profile("x86-cpu"), precison="fp16")


# ----------------------------------------------------------------------------- auto-detection


def _detect(
    tmp_path: Path,
    model: str | None = None,
    compatible: str | None = None,
    release: str | None = None,
    gpus: list[str] | None = None,
    mounted: str | None = None,
    env: dict[str, str] | None = None,
) -> prof.Detection:
    paths = {}
    for key, content in (
        ("model_path", model),
        ("compatible_path", compatible),
        ("release_path", release),
        ("mounted_model_path", mounted),
    ):
        p = tmp_path / key
        if content is not None:
            p.write_bytes(content.encode())
        paths[key] = p  # a path that does not exist = not a Jetson
    return detect(**paths, environ=dict(env or {}), gpu_names=lambda: list(gpus or []))


@pytest.mark.parametrize(
    ("model", "expected", "warned"),
    [
        ("NVIDIA Jetson AGX Orin Developer Kit\x00", "jetson-agx-orin", False),
        ("Jetson AGX Orin\x00", "jetson-agx-orin", False),
        ("NVIDIA Jetson Orin Nano Developer Kit\x00", "jetson-orin-nano", False),
        (
            "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super\x00",
            "jetson-orin-nano",
            False,
        ),
        ("NVIDIA Jetson Orin NX Engineering Reference Developer Kit\x00", "jetson-orin-nano", True),
        ("Jetson-AGX\x00", "jetson-agx-xavier", False),
        ("NVIDIA Jetson AGX Xavier Developer Kit\x00", "jetson-agx-xavier", False),
        ("NVIDIA Jetson Xavier NX Developer Kit\x00", "jetson-agx-xavier", True),
    ],
)
def test_detect_jetson_from_device_tree_model(
    tmp_path: Path, model: str, expected: str, warned: bool
) -> None:
    # A GPU name is offered too: the device tree must win on a Jetson.
    found = _detect(tmp_path, model=model, gpus=["NVIDIA GeForce GTX 1080 Ti"])
    assert found.profile == expected
    assert bool(found.warnings) is warned
    assert "model" in found.reason


def test_detect_from_compatible_when_model_is_missing(tmp_path: Path) -> None:
    orin = _detect(
        tmp_path,
        compatible="nvidia,p3737-0000+p3701-0005\x00nvidia,p3701-0005\x00nvidia,tegra234\x00",
    )
    assert (orin.profile, orin.warnings) == ("jetson-agx-orin", ())
    nx = _detect(tmp_path, compatible="nvidia,p3768-0000+p3767-0000\x00nvidia,tegra234\x00")
    assert nx.profile == "jetson-orin-nano" and "Orin NX" in nx.warnings[0]


def test_detect_agx_orin_32gb_warns(tmp_path: Path) -> None:
    found = _detect(
        tmp_path,
        model="NVIDIA Jetson AGX Orin\x00",
        compatible="nvidia,p3737-0000+p3701-0004\x00nvidia,tegra234\x00",
    )
    assert found.profile == "jetson-agx-orin" and "32GB" in found.warnings[0]


def test_detect_release_file_only(tmp_path: Path) -> None:
    r36 = "# R36 (release), REVISION: 4.0, GCID: 1, BOARD: generic, EABI: aarch64, DATE: x\n"
    found = _detect(tmp_path, release=r36)
    assert found.profile == "jetson-orin-nano" and "smallest Orin" in found.warnings[0]
    r35 = r36.replace("R36", "R35")
    with pytest.raises(EdgesegError, match=r"this is a Jetson \(# R35 .*module is unknown"):
        _detect(tmp_path, release=r35)


@pytest.mark.parametrize("model", ["NVIDIA Jetson Nano Developer Kit\x00", "quill\x00"])
def test_detect_old_jetson_has_no_profile(tmp_path: Path, model: str) -> None:
    compat = "nvidia,p3449-0000-b00+p3448-0000-b00\x00nvidia,jetson-nano\x00nvidia,tegra210\x00"
    if model.startswith("quill"):
        compat = "nvidia,quill\x00nvidia,tegra186\x00"
    with pytest.raises(EdgesegError, match="has no edgeseg profile"):
        _detect(tmp_path, model=model, compatible=compat)


def test_detect_discrete_gpus_and_cpu(tmp_path: Path) -> None:
    for name in ("NVIDIA GeForce GTX 1080 Ti", "GeForce GTX 1080 Ti"):
        assert _detect(tmp_path, gpus=[name]) == prof.Detection(
            "gtx1080ti", f"NVIDIA GPU 0: {name!r}", (), "gpu-name"
        )
    other = _detect(tmp_path, gpus=["NVIDIA H100 80GB HBM3"])
    assert other.profile == "x86-cpu" and "'NVIDIA H100 80GB HBM3' has no" in other.warnings[0]
    # A non-Jetson ARM board's device tree is not mistaken for a Jetson.
    assert _detect(tmp_path, model="Raspberry Pi 4 Model B Rev 1.4\x00").profile == "x86-cpu"


def test_detect_profile_warns_and_auto_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson Orin NX Engineering Reference Developer Kit\x00")
    monkeypatch.setattr(detection, "DEVICE_TREE_MODEL", model)
    monkeypatch.setattr(detection, "DEVICE_TREE_COMPATIBLE", tmp_path / "none")
    monkeypatch.setattr(detection, "TEGRA_RELEASE", tmp_path / "none")
    monkeypatch.setattr(detection, "MOUNTED_MODEL", tmp_path / "none")
    for var in (detection.ENV_BOARD, detection.ENV_PROFILE):
        monkeypatch.delenv(var, raising=False)
    with pytest.warns(ProfileWarning, match="Orin NX"):
        assert detect_profile() == "jetson-orin-nano"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProfileWarning)
        assert load_profile("auto").name == "jetson-orin-nano"


# Inside a container: Docker masks /proc/device-tree and L4T images have an empty release file.
AGX_ORIN_MODEL = "NVIDIA Jetson AGX Orin Developer Kit\x00"
R36_RELEASE = "# R36 (release), REVISION: 4.0, GCID: 1, BOARD: generic, EABI: aarch64, DATE: x\n"


def test_detect_in_a_container_without_the_host_files_misses_the_jetson(tmp_path: Path) -> None:
    # What issue 20 found: masked device tree + empty release file -> the CPU fallback.
    found = _detect(tmp_path, release="")
    assert (found.profile, found.source) == ("x86-cpu", "fallback")
    # The host's release file mounted read-only: an Orin, but which one is a guess (warned).
    guessed = _detect(tmp_path, release=R36_RELEASE)
    assert (guessed.profile, guessed.source) == ("jetson-orin-nano", "nv_tegra_release")
    assert detection.ENV_BOARD in guessed.warnings[0]


def test_detect_board_variable_and_mounted_model(tmp_path: Path) -> None:
    dirs = iter(tmp_path / str(i) for i in range(5))  # one fresh directory per case
    for d in (tmp_path / str(i) for i in range(5)):
        d.mkdir()
    board = {detection.ENV_BOARD: AGX_ORIN_MODEL.rstrip("\x00")}
    found = _detect(next(dirs), release=R36_RELEASE, env=board)
    assert (found.profile, found.source) == ("jetson-agx-orin", "env:EDGESEG_BOARD")
    assert found.warnings == () and "$EDGESEG_BOARD" in found.reason
    # The variable beats a readable device tree (explicit wins), as NUL-terminated text too.
    nano = {detection.ENV_BOARD: "NVIDIA Jetson Orin Nano Developer Kit\x00"}
    assert _detect(next(dirs), model=AGX_ORIN_MODEL, env=nano).profile == "jetson-orin-nano"
    # jetson-containers' copy of the model file at /tmp/nv_jetson_model.
    mounted = _detect(next(dirs), mounted=AGX_ORIN_MODEL, release="")
    assert (mounted.profile, mounted.source) == ("jetson-agx-orin", "mounted-model")
    # An empty variable (the README's run line on a host without the file) counts as absent.
    empty = _detect(next(dirs), model=AGX_ORIN_MODEL, env={detection.ENV_BOARD: ""})
    assert (empty.profile, empty.source) == ("jetson-agx-orin", "device-tree-model")
    # An old Jetson named by the variable has no profile, as from the file.
    with pytest.raises(EdgesegError, match=r"Jetson Nano.*\$EDGESEG_BOARD.*has no edgeseg"):
        _detect(next(dirs), env={detection.ENV_BOARD: "NVIDIA Jetson Nano Developer Kit"})


def test_detect_profile_variable_wins(tmp_path: Path) -> None:
    env = {detection.ENV_PROFILE: " jetson-agx-xavier ", detection.ENV_BOARD: AGX_ORIN_MODEL}
    found = _detect(tmp_path, model=AGX_ORIN_MODEL, env=env, gpus=["NVIDIA GeForce GTX 1080 Ti"])
    assert (found.profile, found.source) == ("jetson-agx-xavier", "env:EDGESEG_PROFILE")
    with pytest.raises(EdgesegError, match=r"EDGESEG_PROFILE=auto: name a profile"):
        _detect(tmp_path, env={detection.ENV_PROFILE: "auto"})


def test_detect_with_source_names_every_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = {
        "env:EDGESEG_PROFILE": {"env": {detection.ENV_PROFILE: "x86-cpu"}},
        "env:EDGESEG_BOARD": {"env": {detection.ENV_BOARD: AGX_ORIN_MODEL}},
        "device-tree-model": {"model": AGX_ORIN_MODEL},
        "mounted-model": {"mounted": AGX_ORIN_MODEL},
        "device-tree-compatible": {"compatible": "nvidia,p3701-0005\x00nvidia,tegra234\x00"},
        "nv_tegra_release": {"release": R36_RELEASE},
        "gpu-name": {"gpus": ["NVIDIA GeForce GTX 1080 Ti"]},
        "fallback": {},
    }
    assert tuple(cases) == detection.SOURCES
    for source, kwargs in cases.items():
        sub = tmp_path / source.replace(":", "_")
        sub.mkdir()
        assert _detect(sub, **kwargs).source == source
    # detect_with_source: the (profile, source) pair, from the real module paths.
    for name in ("DEVICE_TREE_MODEL", "DEVICE_TREE_COMPATIBLE", "TEGRA_RELEASE"):
        monkeypatch.setattr(detection, name, tmp_path / "none")
    monkeypatch.setattr(detection, "MOUNTED_MODEL", tmp_path / "device-tree-model" / "model_path")
    monkeypatch.delenv(detection.ENV_PROFILE, raising=False)
    monkeypatch.setenv(detection.ENV_BOARD, "")
    assert detection.detect_with_source() == ("jetson-agx-orin", "mounted-model")
    monkeypatch.setenv(detection.ENV_PROFILE, "gtx1080ti")
    assert detection.detect_with_source() == ("gtx1080ti", "env:EDGESEG_PROFILE")


def test_from_dict_without_source() -> None:
    p = Profile.from_dict(_raw("x86-cpu"), name="mine")
    assert p.name == "mine" and p.source is None
    with pytest.raises(EdgesegError, match=r"^profile 'mine': deploy: missing"):
        Profile.from_dict({k: v for k, v in _raw("x86-cpu").items() if k != "deploy"}, name="mine")


# ---------------------------------------------------------------------------------------- CLI


def _cli(*args: str):
    from typer.testing import CliRunner

    from edgeseg.cli import app

    return CliRunner().invoke(app, list(args))


def test_cli_list_json() -> None:
    r = _cli("profiles", "list", "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [x["name"] for x in rows] == SHIPPED
    nano = rows[SHIPPED.index("jetson-orin-nano")]
    assert (nano["backend"], nano["precision"], nano["height"], nano["width"]) == (
        "tensorrt",
        "fp16",
        512,
        1024,
    )


def test_cli_list_table_and_show() -> None:
    r = _cli("profiles", "list")
    assert r.exit_code == 0 and "jetson-agx-xavier" in r.stderr and "512x1024" in r.stderr
    r = _cli("profiles", "show", "jetson-agx-orin", "--json")
    assert r.exit_code == 0
    shown = json.loads(r.stdout)
    assert shown["name"] == "jetson-agx-orin" and shown["device"]["dram_gbs"] == 204.8
    assert {k: shown[k] for k in prof.SECTIONS} == _raw("jetson-agx-orin")
    r = _cli("profiles", "show", "x86-cpu")
    assert r.exit_code == 0 and "deploy.backend" in r.stderr and "onnxruntime" in r.stderr


def test_cli_show_auto_reports_reason() -> None:
    r = _cli("profiles", "show", "auto", "--json")
    assert r.exit_code == 0
    out = json.loads(r.stdout)
    assert out["name"] in SHIPPED and out["detected"]["reason"]


def test_cli_validate_ok_and_errors(tmp_path: Path) -> None:
    r = _cli("profiles", "validate", str(REPO / "profiles" / "gtx1080ti.yaml"), "--json")
    assert r.exit_code == 0 and json.loads(r.stdout) == {
        "file": str(REPO / "profiles" / "gtx1080ti.yaml"),
        "valid": True,
        "name": "gtx1080ti",
    }
    data = _raw("jetson-orin-nano")
    data["deploy"]["precision"] = "fp64"
    bad = _write(tmp_path, data, "bad.yaml")
    r = _cli("profiles", "validate", str(bad), "--json")
    assert r.exit_code == 2
    assert json.loads(r.stdout)["error"].endswith(
        "deploy.precision: expected one of fp32, fp16, int8, got 'fp64'"
    )
    r = _cli("profiles", "show", "no-such-board")
    assert r.exit_code == 2 and r.stderr.startswith("error: unknown profile 'no-such-board'")


def test_cli_subprocess_error_is_one_line(tmp_path: Path) -> None:
    bad = _write(tmp_path, "deploy:\n  precision: fp16\n precision: fp32\n", "bad.yaml")
    r = subprocess.run(
        [sys.executable, "-m", "edgeseg", "profiles", "validate", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}:3:") and r.stdout == ""


def test_cli_import_stays_light() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from edgeseg.cli import app\n"
        "r = CliRunner().invoke(app, ['profiles', 'list', '--json'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print([m for m in ('torch', 'cv2', 'onnxruntime') if m in sys.modules])\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
