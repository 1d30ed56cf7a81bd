"""Engine cache: one TensorRT engine per (ONNX sha256, TensorRT release, GPU and compute
capability, DLA core, precision, input shape) plus the build facts (:func:`build_facts`: the
edgeseg version, a hash of the whole build plan with its workspace and GPU-fallback options,
the optimisation profile's min/opt/max, the CUDA major of the TensorRT wheel, and the exact
Jetson module, since AGX Orin, Orin NX and Orin Nano all report the GPU "Orin" and sm_87),
reused by ``run`` and ``bench`` and rebuilt with one line saying what changed.

Engine files stay plain serialized plans (trtexec, DeepStream and Triton load them); what they
were built from lives in their sidecar (``<engine>.json``), whose fields are the key. Names
carry the TensorRT version, device and precision, as jetson-inference's cached engines do:
``model.fp16.trt10.3.0.sm87.3f2a9c1d.engine``. The builder's timing cache persists beside them,
one per TensorRT release and GPU architecture.

Pure: nothing here imports TensorRT; the caller passes the build as a function.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgeseg.atomic import atomic_write_text
from edgeseg.errors import EdgesegError

__all__ = [
    "ENV_ENGINE_CACHE",
    "EngineCache",
    "EngineKey",
    "build_facts",
    "cuda_major_from_dists",
    "default_cache_dir",
    "jetson_module",
    "plan_digest",
]

ENV_ENGINE_CACHE = "EDGESEG_ENGINE_CACHE"
_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """``$EDGESEG_ENGINE_CACHE``, else ``$XDG_CACHE_HOME/edgeseg/engines`` (``~/.cache``)."""
    env = os.environ.get(ENV_ENGINE_CACHE)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "edgeseg" / "engines"


def _release(version: str) -> str:
    """``10.3.0.30`` -> ``10.3.0``: engines are portable within major.minor.patch."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", str(version).strip())
    if not m:
        raise EdgesegError(f"not a TensorRT version: {version!r}")
    return f"{m.group(1)}.{m.group(2)}.{m.group(3) or 0}"


def _cc(cc: str) -> str:
    text = str(cc).lower().removeprefix("sm_").removeprefix("sm")
    if "." not in text and text.isdigit() and len(text) >= 2:
        text = f"{text[:-1]}.{text[-1]}"
    if not re.fullmatch(r"\d+\.\d+", text):
        raise EdgesegError(f"not a compute capability: {cc!r}")
    return text


def plan_digest(plan: Any) -> str:
    """sha256 of a build plan (a dataclass or mapping) as sorted JSON: every builder flag,
    workspace, GPU fallback, network flag; its warnings (words, not build inputs) left out."""
    d = asdict(plan) if hasattr(plan, "__dataclass_fields__") else dict(plan)
    d.pop("warnings", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def cuda_major_from_dists(names: Sequence[str]) -> int | None:
    """The CUDA major the TensorRT wheel targets, from installed distribution names
    (``tensorrt-cu12``, ``tensorrt_cu13_libs``); None where TensorRT is no wheel (JetPack)."""
    majors = {int(m.group(1)) for n in names
              if (m := re.fullmatch(r"tensorrt[-_]cu(\d+)(?:[-_].*)?", n.lower()))}
    return max(majors) if majors else None


def jetson_module(model: str | None, sm_count: int | None = None,
                  total_mem_mib: int | None = None) -> str:
    """The exact module: the device-tree model string (``NVIDIA Jetson Orin NX Engineering
    Reference Developer Kit``), else SM count and memory where known, else ''."""
    text = (model or "").replace("\x00", "").strip()
    if text:
        return text
    if sm_count and total_mem_mib:
        return f"{sm_count} SMs, {round(total_mem_mib / 1024)} GiB"
    return ""


def build_facts(edgeseg_version: str, plan: Any, profile: Mapping[str, Sequence[int]] | None,
                cuda_major: int | None, module: str) -> dict[str, Any]:
    """What else an engine depends on, as the JSON its sidecar keeps (``cache_facts``)."""
    prof = None if profile is None else {k: [int(v) for v in profile[k]]
                                         for k in ("min", "opt", "max")}
    return {"edgeseg_version": str(edgeseg_version), "plan_sha256": plan_digest(plan),
            "profile": prof, "cuda_major": cuda_major, "module": str(module)}


@dataclass(frozen=True)
class EngineKey:
    """What an engine depends on; two engines with equal keys are interchangeable."""

    onnx_sha256: str
    trt_version: str  # major.minor.patch
    gpu_name: str
    compute_capability: str  # "8.7"
    dla_core: int | None
    precision: str
    input_shape: tuple[int, ...]
    facts: str = "{}"  # build_facts() as sorted JSON (hashable, compared whole)

    @classmethod
    def make(cls, onnx_sha256: str, trt_version: str, gpu_name: str, compute_capability: str,
             dla_core: int | None, precision: str, input_shape: Sequence[int],
             facts: Mapping[str, Any] | None = None) -> EngineKey:
        return cls(onnx_sha256, _release(trt_version), str(gpu_name), _cc(compute_capability),
                   None if dla_core is None else int(dla_core), str(precision),
                   tuple(int(v) for v in input_shape),
                   json.dumps(dict(facts or {}), sort_keys=True))

    @classmethod
    def from_sidecar(cls, d: Mapping[str, Any]) -> EngineKey:
        """The key an engine's sidecar (``EngineSidecar.to_dict()``) describes."""
        return cls.make(d.get("onnx_sha256", ""), d["trt_version"], d["gpu_name"],
                        d["compute_capability"], d.get("dla_core"), d["precision"],
                        d["input_shape"], d.get("cache_facts") or {})

    @property
    def fact_dict(self) -> dict[str, Any]:
        return dict(json.loads(self.facts))

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()

    def filename(self, stem: str) -> str:
        dla = "" if self.dla_core is None else f".dla{self.dla_core}"
        sm = "sm" + self.compute_capability.replace(".", "")
        return f"{stem}.{self.precision}.trt{self.trt_version}.{sm}{dla}.{self.digest[:8]}.engine"

    def differences(self, other: EngineKey) -> list[str]:
        """What changed from ``other`` (an older engine) to this key, in words."""
        out = []
        if other.onnx_sha256 != self.onnx_sha256:
            out.append("the ONNX changed")
        if other.trt_version != self.trt_version:
            out.append(f"TensorRT {other.trt_version} -> {self.trt_version}")
        if (other.gpu_name, other.compute_capability) != (self.gpu_name, self.compute_capability):
            out.append(f"GPU {other.gpu_name} (sm_{other.compute_capability.replace('.', '')}) "
                       f"-> {self.gpu_name} (sm_{self.compute_capability.replace('.', '')})")
        if other.dla_core != self.dla_core:
            out.append(f"DLA core {other.dla_core} -> {self.dla_core}")
        if other.precision != self.precision:
            out.append(f"precision {other.precision} -> {self.precision}")
        if other.input_shape != self.input_shape:
            out.append(f"input {'x'.join(map(str, other.input_shape))} -> "
                       f"{'x'.join(map(str, self.input_shape))}")
        mine, theirs = self.fact_dict, other.fact_dict
        for name in sorted(set(mine) | set(theirs)):
            if mine.get(name) != theirs.get(name):
                was, now = theirs.get(name), mine.get(name)
                short = name == "plan_sha256"  # a hash: say that it changed, not the digits
                out.append("build plan changed" if short else f"{name} {was} -> {now}")
        return out


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


class EngineCache:
    """Engines under ``root`` (default :func:`default_cache_dir`), found by key."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def path_for(self, key: EngineKey, stem: str) -> Path:
        return self.root / key.filename(stem)

    def timing_cache_path(self, key: EngineKey) -> Path:
        """One builder timing cache per TensorRT release and GPU architecture."""
        sm = key.compute_capability.replace(".", "")
        return self.root / f"timing.trt{key.trt_version}.sm{sm}.cache"

    def _entries(self, stem: str) -> list[tuple[Path, EngineKey]]:
        found = []
        for p in sorted(self.root.glob(f"{stem}.*.engine")):
            side = p.with_name(p.name + ".json")
            try:
                found.append((p, EngineKey.from_sidecar(json.loads(side.read_text()))))
            except (OSError, ValueError, KeyError, TypeError, EdgesegError):
                continue  # an engine without a readable sidecar is not reusable
        return found

    def lookup(self, key: EngineKey, stem: str) -> tuple[Path | None, str]:
        """(engine to reuse or None, one line saying why)."""
        path = self.path_for(key, stem)
        entries = self._entries(stem)
        for p, k in entries:
            if k == key:
                return p, f"reusing cached engine {p.name}"
        if not entries:
            return None, f"building: no cached engine for {stem} in {self.root}"
        newest = max(entries, key=lambda e: e[0].stat().st_mtime)
        changes = key.differences(newest[1]) or ["its sidecar differs"]
        return None, f"rebuilding {path.name}: {', '.join(changes)} since {newest[0].name}"

    def get_or_build(
        self, key: EngineKey, stem: str, build: Callable[[Path, Path], Any],
        say: Callable[[str], None] | None = None,
    ) -> Path:
        """The cached engine for ``key``, else ``build(engine_path, timing_cache_path)``.

        ``build`` writes the engine and its sidecar; the sidecar must describe ``key``, or the
        engine would never be found again.
        """
        found, reason = self.lookup(key, stem)
        if say:
            say(reason)
        if found is not None:
            return found
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path_for(key, stem)
        build(path, self.timing_cache_path(key))
        side = path.with_name(path.name + ".json")
        try:
            data = json.loads(side.read_text())
            # the builder knows the engine; the cache adds the facts it is keyed on
            data["cache_facts"] = key.fact_dict
            atomic_write_text(side, json.dumps(data, indent=2, sort_keys=True) + "\n")
            built = EngineKey.from_sidecar(data)
        except (OSError, ValueError, KeyError) as e:
            raise EdgesegError(f"build wrote no readable sidecar for {path.name} ({e})") from None
        if built != key:
            raise EdgesegError(
                f"built engine {path.name} does not match its cache key: "
                f"{', '.join(key.differences(built))}"
            )
        return path
