"""Where the benchmarked model comes from, and the segmenters that run it.

:func:`_resolve_source` turns ``--model`` (or the legacy ``--weights`` / ``--onnx`` / ``--engine``) into
a :class:`_Source`; :class:`_Artifacts` exports the ONNX files a configuration needs during the
run (and quantizes INT8 ones, :func:`_quantize`, on :data:`INT8_CALIBRATION_FRAMES` synthetic
street scenes); :func:`_open_segmenter` opens one configuration's backend.
:func:`synthetic_frame` is the input frame of the timed loops and of that calibration.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.atomic import publish
from edgeseg.bench.configs import DEFAULT_HW, BenchConfig, Step
from edgeseg.errors import EdgesegError

__all__ = ["INT8_CALIBRATION_FRAMES", "synthetic_frame"]

INT8_CALIBRATION_FRAMES = 8


def synthetic_frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A BGR uint8 street scene (the synthetic generator), else smooth noise."""
    rng = np.random.default_rng(seed)
    try:
        from edgeseg.data.synthetic import generate_scene

        rgb, _ = generate_scene(rng, height, width)
        return np.ascontiguousarray(rgb[:, :, ::-1])
    except (ImportError, EdgesegError):
        return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


@dataclass
class _Source:
    """Where the model comes from, and (lazily) its torch module."""

    kind: str  # checkpoint | random | onnx | engine
    path: Path | None
    meta: Any  # ModelMeta
    model: Any = None  # nn.Module when loaded / built
    rebuilt: bool = False  # model is the architecture rebuilt untrained from metadata

    @property
    def variant(self) -> str:
        return str(self.meta.variant)

    @property
    def description(self) -> str:
        if self.kind == "random":
            return f"random-init {self.variant}"
        return f"{self.path} ({self.kind}, {self.variant})"

    def torch_model(self) -> Any:
        """The torch module: trained weights for a checkpoint, else an untrained network."""
        if self.model is None:
            from edgeseg.models.desanet import build_model

            self.model = build_model(
                self.variant, num_classes=len(self.meta.classes), aux=False
            ).eval()
            self.rebuilt = True
        return self.model


def _resolve_source(
    model: str | Path | None, weights: Path | None, onnx: Path | None, engine: Path | None,
    random_init: bool, step: Step, cost_only: bool = False,
) -> _Source:
    from edgeseg.artifacts.meta import ModelMeta
    from edgeseg.artifacts.resolve import resolve_model

    ref = resolve_model(model, weights=weights, onnx=onnx, engine=engine,
                        random_init=random_init, command="bench",
                        accepts=("checkpoint", "onnx", "engine", "variant"))
    assert ref is not None
    if ref.kind == "variant":
        from edgeseg.artifacts.checkpoint import default_meta
        from edgeseg.models.desanet import build_model

        step(f"building an untrained {ref.variant}")
        return _Source("random", None, default_meta(str(ref.variant), DEFAULT_HW),
                       build_model(str(ref.variant), aux=False).eval())
    path = Path(str(ref.path))
    if ref.kind == "checkpoint":
        from edgeseg.artifacts.checkpoint import load_model

        step(f"loading {path.name}")
        loaded, ckpt_meta = load_model(path)
        return _Source("checkpoint", path, ckpt_meta, loaded)
    if ref.kind == "onnx":
        from edgeseg.artifacts.files import read_onnx_metadata

        return _Source("onnx", path, read_onnx_metadata(path))
    # An engine: to run it TensorRT must be importable before anything else is worth doing;
    # its cost needs only the sidecar's metadata.
    if not cost_only:
        from edgeseg.deploy.tensorrt import require_tensorrt

        require_tensorrt()
    from edgeseg.artifacts.sidecar import EngineSidecar, meta_from_sidecar

    engine_meta: ModelMeta = meta_from_sidecar(EngineSidecar.read(path))
    return _Source("engine", path, engine_meta)


class _Artifacts:
    """ONNX files exported / quantized during this run, cached by (precision, size)."""

    def __init__(
        self, source: _Source, dcn: str, onnx_int8: Path | None, threads: int | None, step: Step,
    ) -> None:
        self.source, self.dcn, self.onnx_int8, self.step = source, dcn, onnx_int8, step
        self.threads = threads
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._files: dict[tuple[str, int, int], Path] = {}

    @property
    def workdir(self) -> Path:
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="edgeseg-bench-")
        return Path(self._dir.name)

    def close(self) -> None:
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def _given_onnx(self, precision: str, hw: tuple[int, int]) -> Path | None:
        src = self.source
        if src.kind != "onnx" or src.path is None or src.meta.precision != precision:
            return None
        dynamic = bool(src.meta.extra.get("dynamic"))
        if tuple(src.meta.input_hw) != hw and not dynamic:
            raise EdgesegError(
                f"{src.path.name} is fixed at {src.meta.input_hw[0]}x{src.meta.input_hw[1]}; "
                f"to bench {hw[0]}x{hw[1]} give a checkpoint --model or --random-init (exported here), or "
                "export the ONNX with --dynamic"
            )
        return src.path

    def onnx(self, precision: str, hw: tuple[int, int]) -> Path:
        """An ONNX of the model at ``precision`` and ``hw``: given, or made here."""
        given = self._given_onnx(precision, hw)
        if given is not None:
            return given
        key = (precision, *hw)
        if key in self._files:
            return self._files[key]
        if precision == "int8":
            path = self._int8(hw)
        else:
            if self.source.kind in ("onnx", "engine"):
                raise EdgesegError(
                    f"onnxruntime {precision} at {hw[0]}x{hw[1]} needs an ONNX of that precision "
                    f"and size; {self.source.path} is not one: give a checkpoint --model or --random-init "
                    "to export it here"
                )
            from edgeseg.deploy.onnx import export_onnx

            path = self.workdir / f"{self.source.variant}-{precision}-{hw[0]}x{hw[1]}.onnx"
            self.step(f"exporting {path.name} (dcn {self.dcn})")
            export_onnx(
                self.source.torch_model(), self.source.meta, path, height=hw[0], width=hw[1],
                dcn=self.dcn, fp16=precision == "fp16", parity=False,
            )
        self._files[key] = path
        return path

    def _int8(self, hw: tuple[int, int]) -> Path:
        if self.onnx_int8 is not None:
            from edgeseg.artifacts.files import read_onnx_metadata

            m = read_onnx_metadata(self.onnx_int8)
            if tuple(m.input_hw) != hw and not m.extra.get("dynamic"):
                raise EdgesegError(
                    f"--onnx-int8 {self.onnx_int8.name} is fixed at "
                    f"{m.input_hw[0]}x{m.input_hw[1]}, not {hw[0]}x{hw[1]}"
                )
            return self.onnx_int8
        fp32 = self.onnx("fp32", hw)
        out = self.workdir / f"{self.source.variant}-int8-{hw[0]}x{hw[1]}.onnx"
        self.step(f"quantizing {out.name} ({INT8_CALIBRATION_FRAMES} synthetic frames)")
        _quantize(fp32, out, hw, self.workdir, self.threads)
        return out


def _quantize(fp32: Path, out: Path, hw: tuple[int, int], workdir: Path,
              threads: int | None) -> None:
    """INT8 Q/DQ ONNX of ``fp32`` by :func:`edgeseg.deploy.quantize.calibrate` (onnxruntime
    settings for this CPU) on :data:`INT8_CALIBRATION_FRAMES` synthetic street scenes."""
    import cv2

    try:
        from edgeseg.deploy.quantize import QDQ_NAME, calibrate
    except ImportError:
        raise EdgesegError(
            "onnxruntime int8 needs an INT8 Q/DQ ONNX: give --onnx-int8 FILE (this install has "
            "no edgeseg.deploy.quantize to build one)"
        ) from None
    frames = workdir / f"calibration-{hw[0]}x{hw[1]}"
    frames.mkdir(parents=True, exist_ok=True)
    for i in range(INT8_CALIBRATION_FRAMES):
        cv2.imwrite(str(frames / f"scene{i:02d}.png"), synthetic_frame(*hw, seed=100 + i))
    qdir = workdir / f"int8-{hw[0]}x{hw[1]}"
    calibrate(
        images=frames, out=qdir, onnx=fp32, profile="x86-cpu", num=INT8_CALIBRATION_FRAMES,
        holdout=0, runs=0, threads=threads,
    )
    publish(qdir / QDQ_NAME, out)


def _open_segmenter(
    config: BenchConfig, hw: tuple[int, int], source: _Source, arts: _Artifacts,
    threads: int | None, warn: Callable[[str], None], device: Any = None,
) -> Any:
    from edgeseg.runtime import open_segmenter

    if config.backend == "torch":
        from edgeseg.artifacts.meta import ModelMeta
        from edgeseg.runtime.torch_backend import TorchSegmenter

        if config.precision == "int8":
            raise EdgesegError(
                "torch runs fp32 (fp16 on CUDA); INT8 runs in onnxruntime (Q/DQ ONNX) or TensorRT"
            )
        from edgeseg.runtime.devices import parse_device

        device = str(device if device is not None else parse_device("auto"))
        if config.precision == "fp16" and not device.startswith("cuda"):
            raise EdgesegError("torch fp16 needs a CUDA GPU; this machine has none")
        model = source.torch_model()
        if source.rebuilt:
            warn(
                f"torch runs {source.variant} rebuilt untrained from {source.path} metadata "
                "(speed does not depend on the weights)"
            )
        meta = ModelMeta.from_dict(source.meta.to_dict())
        return TorchSegmenter(model, meta, device=device, fp16=config.precision == "fp16",
                              input_hw=hw)
    if config.backend == "onnxruntime":
        path = arts.onnx(config.precision, hw)
        opts: dict[str, Any] = {"threads": threads}
        from edgeseg.artifacts.files import read_onnx_metadata

        if tuple(read_onnx_metadata(path).input_hw) != hw:
            opts["input_hw"] = hw
        return open_segmenter(path, backend="onnxruntime", **opts)
    # tensorrt
    if source.kind == "onnx" and source.path is not None:
        # An ONNX runs through the engine cache: reused when it matches, else built (one line).
        from edgeseg.deploy.engine_export import engine_for_onnx

        if tuple(source.meta.input_hw) != hw:
            raise EdgesegError(
                f"{source.path.name} is exported for {source.meta.input_hw[0]}x"
                f"{source.meta.input_hw[1]}: bench its engine at that size, not {hw[0]}x{hw[1]}"
            )
        return open_segmenter(engine_for_onnx(source.path, config.precision, say=warn),
                              backend="tensorrt")
    if source.kind != "engine" or source.path is None:
        from edgeseg.deploy.tensorrt import require_tensorrt

        require_tensorrt()
        raise EdgesegError(
            "tensorrt runs a built engine: give --model FILE.engine or FILE.onnx (built through the "
            "engine cache), or build one with `edgeseg export --format engine`"
        )
    if source.meta.precision != config.precision:
        raise EdgesegError(
            f"{source.path.name} is a {source.meta.precision} engine, not {config.precision}"
        )
    if tuple(source.meta.input_hw) != hw:
        raise EdgesegError(
            f"{source.path.name} is built for {source.meta.input_hw[0]}x"
            f"{source.meta.input_hw[1]}, not {hw[0]}x{hw[1]}"
        )
    index = getattr(device, "index", None)
    return open_segmenter(source.path, backend="tensorrt",
                          **({"device": index} if index is not None else {}))
