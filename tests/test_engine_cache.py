"""Engine cache (edgeseg/artifacts/engine_cache.py): keys, names, reuse and one-line rebuild
reasons, timing cache beside the engines; the build is a plain function here."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from edgeseg.artifacts.engine_cache import (
    ENV_ENGINE_CACHE,
    EngineCache,
    EngineKey,
    default_cache_dir,
)
from edgeseg.artifacts.sidecar import EngineSidecar
from edgeseg.errors import EdgesegError

KEY = EngineKey.make("ab" * 32, "10.3.0.30", "Orin", "8.7", None, "fp16", [1, 3, 512, 1024])


def _builder(calls: list, key: EngineKey = KEY):
    def build(engine: Path, timing: Path) -> None:
        calls.append((engine, timing))
        engine.write_bytes(b"plan")
        EngineSidecar(trt_version=key.trt_version + ".30", gpu_name=key.gpu_name,
                      compute_capability=key.compute_capability, precision=key.precision,
                      input_shape=list(key.input_shape), onnx_sha256=key.onnx_sha256,
                      dla_core=key.dla_core).write(engine)
    return build


def test_key_normalises_and_names_like_jetson_inference() -> None:
    assert KEY.trt_version == "10.3.0" and KEY.compute_capability == "8.7"
    assert EngineKey.make("ab" * 32, "10.3.0.26", "Orin", "sm_87", None, "fp16",
                          (1, 3, 512, 1024)) == KEY
    name = KEY.filename("model")
    assert name.startswith("model.fp16.trt10.3.0.sm87.") and name.endswith(".engine")
    assert ".dla1." in replace(KEY, dla_core=1).filename("model")
    assert len({replace(KEY, precision=p).digest for p in ("fp16", "int8")}) == 2


def test_key_from_sidecar_round_trip() -> None:
    side = EngineSidecar(trt_version="10.3.0.30", gpu_name="Orin", compute_capability="8.7",
                         precision="fp16", input_shape=[1, 3, 512, 1024], onnx_sha256="ab" * 32)
    assert EngineKey.from_sidecar(side.to_dict()) == KEY


def test_build_then_reuse(tmp_path: Path) -> None:
    cache, calls, said = EngineCache(tmp_path), [], []
    first = cache.get_or_build(KEY, "model", _builder(calls), said.append)
    assert calls == [(first, tmp_path / "timing.trt10.3.0.sm87.cache")]
    assert said[0].startswith("building: no cached engine for model")
    again = cache.get_or_build(KEY, "model", _builder(calls), said.append)
    assert again == first and len(calls) == 1 and said[1] == f"reusing cached engine {first.name}"


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"trt_version": "10.3.1"}, "TensorRT 10.3.0 -> 10.3.1"),
        ({"onnx_sha256": "cd" * 32}, "the ONNX changed"),
        ({"precision": "int8"}, "precision fp16 -> int8"),
        ({"dla_core": 0}, "DLA core None -> 0"),
        ({"input_shape": (1, 3, 256, 512)}, "input 1x3x512x1024 -> 1x3x256x512"),
        ({"gpu_name": "Orin Nano"}, "GPU Orin (sm_87) -> Orin Nano (sm_87)"),
    ],
)
def test_mismatch_rebuilds_with_one_line_reason(tmp_path: Path, change: dict, reason: str) -> None:
    cache, calls, said = EngineCache(tmp_path), [], []
    cache.get_or_build(KEY, "model", _builder(calls))
    new = replace(KEY, **change)
    path = cache.get_or_build(new, "model", _builder(calls, new), said.append)
    assert len(calls) == 2 and path.is_file() and path != calls[0][0]
    assert said[0].startswith(f"rebuilding {path.name}: {reason} since model.fp16")
    assert "\n" not in said[0]


def test_build_with_a_wrong_sidecar_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EdgesegError, match="does not match its cache key: precision int8 -> fp16"):
        EngineCache(tmp_path).get_or_build(KEY, "m", _builder([], replace(KEY, precision="int8")))


def test_engine_without_sidecar_is_not_reused(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    cache.path_for(KEY, "model").write_bytes(b"stray")
    found, reason = cache.lookup(KEY, "model")
    assert found is None and reason.startswith("building")


def test_default_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_ENGINE_CACHE, str(tmp_path / "e"))
    assert default_cache_dir() == tmp_path / "e"
    monkeypatch.delenv(ENV_ENGINE_CACHE)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "edgeseg" / "engines"
    assert json.dumps(os.fspath(default_cache_dir()))


def test_engine_for_onnx_builds_once_then_reuses(monkeypatch, tmp_path: Path) -> None:
    """`run --onnx X --backend tensorrt` / bench: the cache in front of the TensorRT builder."""
    from edgeseg.deploy.engine_export import engine_for_onnx
    from tests.test_int8_export import _meta_onnx
    from tests.test_tensorrt_fakes import Fakes

    fk = Fakes(monkeypatch, tmp_path, version="10.3.0.30")
    onnx_path = _meta_onnx(tmp_path / "model.onnx", qdq=False)
    said: list[str] = []
    first = engine_for_onnx(onnx_path, "fp16", cache_dir=tmp_path / "cache", say=said.append)
    assert fk.events.count("build") == 1 and first.name.startswith("model.fp16.trt10.3.0.sm87.")
    assert (tmp_path / "cache" / "timing.trt10.3.0.sm87.cache").is_file()
    again = engine_for_onnx(onnx_path, "fp16", cache_dir=tmp_path / "cache", say=said.append)
    assert again == first and fk.events.count("build") == 1
    assert said[-1] == f"reusing cached engine {first.name}"
    fk.gpu = ("Orin Nano", "8.7")
    engine_for_onnx(onnx_path, "fp16", cache_dir=tmp_path / "cache", say=said.append)
    assert fk.events.count("build") == 2
    assert any(s.startswith("rebuilding") and "GPU Orin (sm_87) -> Orin Nano (sm_87)" in s
               for s in said)


# --- the whole build in the key (issue 32 item 13) ------------------------------------------------


def _facts(**kw):
    from edgeseg.artifacts.engine_cache import build_facts
    from edgeseg.deploy.trt_compat import plan_build

    plan = plan_build("10.3.0", "fp16", dla_core=kw.pop("dla", None),
                      gpu_fallback=kw.pop("gpu_fallback", True),
                      workspace_mib=kw.pop("workspace", 512))
    args = {"edgeseg_version": "0.1.0", "profile": None, "cuda_major": 12,
            "module": "NVIDIA Jetson AGX Orin Developer Kit"}
    args.update(kw)
    return build_facts(args["edgeseg_version"], plan, args["profile"], args["cuda_major"],
                       args["module"])


def _key(**kw) -> EngineKey:
    return EngineKey.make("ab" * 32, "10.3.0.30", "Orin", "8.7", None, "fp16", [1, 3, 512, 1024],
                          _facts(**kw))


@pytest.mark.parametrize("change, words", [
    ({"edgeseg_version": "0.2.0"}, "edgeseg_version 0.1.0 -> 0.2.0"),
    ({"workspace": 1024}, "build plan changed"),
    ({"gpu_fallback": False, "dla": 0}, "build plan changed"),  # GPU fallback: a DLA option
    ({"profile": {"min": [1, 3, 512, 1024], "opt": [2, 3, 512, 1024], "max": [4, 3, 512, 1024]}},
     "profile None -> "),
    ({"cuda_major": 13}, "cuda_major 12 -> 13"),
    ({"module": "NVIDIA Jetson Orin NX Engineering Reference Developer Kit"},
     "module NVIDIA Jetson AGX Orin"),
    ({"module": "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super"}, "Orin Nano"),
])
def test_key_tells_builds_apart(change: dict, words: str) -> None:
    base = _key(dla=change["dla"]) if "dla" in change else _key()
    other = _key(**change)
    assert other != base and other.digest != base.digest
    assert other.filename("m") != base.filename("m")
    assert any(words in d for d in other.differences(base)), other.differences(base)
    assert _key() == _key()  # the same facts, the same key


def test_facts_survive_the_sidecar_and_old_sidecars_rebuild(tmp_path: Path) -> None:
    key = _key()
    cache, calls = EngineCache(tmp_path), []
    path = cache.get_or_build(key, "m", _builder(calls, key))
    side = json.loads(path.with_name(path.name + ".json").read_text())
    assert side["cache_facts"]["module"] == "NVIDIA Jetson AGX Orin Developer Kit"
    assert EngineKey.from_sidecar(side) == key
    assert cache.get_or_build(key, "m", _builder(calls, key)) == path and len(calls) == 1
    nano = _key(module="NVIDIA Jetson Orin Nano Developer Kit")
    found, why = cache.lookup(nano, "m")
    assert found is None and "module" in why and "Orin Nano" in why


def test_cuda_major_and_module_identity() -> None:
    from edgeseg.artifacts.engine_cache import cuda_major_from_dists, jetson_module

    assert cuda_major_from_dists(["numpy", "tensorrt-cu12", "tensorrt_cu12_libs"]) == 12
    assert cuda_major_from_dists(["tensorrt_cu13_bindings", "tensorrt"]) == 13
    assert cuda_major_from_dists(["tensorrt", "torch"]) is None  # JetPack's, no wheel
    assert jetson_module("NVIDIA Jetson Orin NX Developer Kit\x00") == "NVIDIA Jetson Orin NX Developer Kit"
    assert jetson_module(None, 16, 30_000) == "16 SMs, 29 GiB"
    assert jetson_module(None, 8, 7_600) != jetson_module(None, 8, 15_600)
