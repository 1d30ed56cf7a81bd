"""DeepStream: an nvinfer config for semantic segmentation, labels, and a deepstream-app config.

Gst-nvinfer preprocesses with one scalar scale: ``y = net-scale-factor * (x - offsets[c])`` on
0..255 pixels (model-color-format 0 = RGB). edgeseg's normalisation is per channel,
``(x / 255 - mean[c]) / std[c]``, which that form expresses only when the three std values are
equal. So for ImageNet's std, :func:`~edgeseg.deploy.onnx_normalized.export_normalized_onnx`
(``--normalize-in-graph``) exports
an ONNX whose input is 0..255 RGB: a wrapper module divides by 255 and applies mean/std in the
graph, then the network, then a softmax over the classes (nvinfer's segmentation parser keeps a
pixel's class only when its score exceeds ``segmentation-threshold``; probabilities make the
threshold mean what it says). The export is checked against the Segmenter on the same image.

nvinfer (network-type=2) takes the class scores (C, H, W) and attaches NvDsInferSegmentationMeta
(class_map), which nvsegvisual draws; an ONNX with the argmax already in the graph is refused.
Every key written is one of the documented Gst-nvinfer ``[property]`` keys (the tests check them
against tests/data/nvinfer_keys.txt).
"""

from __future__ import annotations

import configparser
import io
import math
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any


from edgeseg.artifacts.meta import ModelMeta
from edgeseg.atomic import publish
from edgeseg.deploy.export_settings import ExportSettings
from edgeseg.deploy.onnx_normalized import PROBS_NAME, export_normalized_onnx
from edgeseg.errors import EdgesegError

__all__ = [
    "APP_CONFIG",
    "INFER_CONFIG",
    "app_config",
    "build_deepstream",
    "nvinfer_properties",
    "scale_and_offsets",
    "write_deepstream",
]

INFER_CONFIG = "config_infer_primary_edgeseg.txt"
APP_CONFIG = "deepstream_app_config.txt"
LABELS_FILE = "labels.txt"
NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}  # nvinfer network-mode
# DeepStream's own sample clip: a working default source on any DeepStream install.
SAMPLE_STREAM = "file:///opt/nvidia/deepstream/deepstream/samples/streams/sample_1080p_h264.mp4"

Step = Callable[[str], None]


# ---------------------------------------------------------------------------------------------
# Preprocessing


def scale_and_offsets(meta: ModelMeta) -> tuple[float, tuple[float, float, float]]:
    """nvinfer's (net-scale-factor, offsets) reproducing the model's normalisation exactly.

    An ONNX normalised in the graph takes 0..255 as is: (1, 0). Otherwise the std must be one
    value for all channels: (x/255 - m)/s == (1/(255 s)) * (x - 255 m).
    """
    if meta.extra.get("normalize_in_graph"):
        return 1.0, (0.0, 0.0, 0.0)
    std = [float(s) for s in meta.std]
    if max(std) - min(std) > 1e-9:
        raise EdgesegError(
            f"nvinfer has one scale factor, and this model's std differs per channel "
            f"({', '.join(f'{s:g}' for s in std)}): export with --normalize-in-graph"
        )
    scale = 1.0 / (255.0 * std[0])
    offsets = tuple(255.0 * float(m) for m in meta.mean)
    return scale, (offsets[0], offsets[1], offsets[2])


# ---------------------------------------------------------------------------------------------
# Config files


def _fmt(v: float) -> str:
    return f"{v:.10g}"


def nvinfer_properties(
    meta: ModelMeta,
    *,
    model_file: str,
    engine: bool,
    output_name: str,
    precision: str = "fp16",
    batch_size: int = 1,
    threshold: float = 0.0,
    plugin_lib: str | None = None,
    gpu_id: int = 0,
) -> dict[str, str]:
    """The ``[property]`` group of an nvinfer config for a segmentation model (ordered)."""
    if precision not in NETWORK_MODE:
        raise EdgesegError(f"precision: expected one of {', '.join(NETWORK_MODE)}, got {precision!r}")
    if precision == "int8" and not engine:
        raise EdgesegError("INT8 in DeepStream needs a calibrated engine: build it with "
                           "`edgeseg calibrate` and export that engine")
    if batch_size < 1:
        raise EdgesegError(f"batch size must be >= 1, got {batch_size}")
    scale, offsets = scale_and_offsets(meta)
    h, w = meta.input_hw
    props = {
        "gpu-id": str(gpu_id),
        "net-scale-factor": _fmt(scale),
        "offsets": ";".join(_fmt(o) for o in offsets),
        "model-color-format": "0",  # RGB
        ("model-engine-file" if engine else "onnx-file"): model_file,
        "labelfile-path": LABELS_FILE,
        "infer-dims": f"3;{h};{w}",
        "batch-size": str(batch_size),
        "network-mode": str(NETWORK_MODE[precision]),
        "num-detected-classes": str(len(meta.classes)),
        "interval": "0",
        "gie-unique-id": "1",
        "process-mode": "1",  # primary: the whole frame
        "network-type": "2",  # segmentation
        "output-blob-names": output_name,
        "segmentation-threshold": _fmt(threshold),
        "maintain-aspect-ratio": "0",  # the Segmenter stretches too
    }
    if plugin_lib:
        props["custom-lib-path"] = plugin_lib
    return props


def _ini(groups: dict[str, dict[str, str]], header: str) -> str:
    lines = [f"# {line}" for line in header.splitlines()]
    for name, keys in groups.items():
        lines += ["", f"[{name}]", *(f"{k}={v}" for k, v in keys.items())]
    return "\n".join(lines) + "\n"


def _source(uri: str, gpu_id: int) -> dict[str, str]:
    """deepstream-app source group: V4L2 camera (/dev/videoN) or any URI (file, rtsp)."""
    if uri.startswith("/dev/video") and uri[len("/dev/video"):].isdigit():
        return {"enable": "1", "type": "1", "camera-v4l2-dev-node": uri[len("/dev/video"):],
                "camera-width": "1280", "camera-height": "720", "camera-fps-n": "30",
                "camera-fps-d": "1", "gpu-id": str(gpu_id)}
    if "://" not in uri:
        uri = Path(uri).resolve().as_uri()
    return {"enable": "1", "type": "3", "uri": uri, "num-sources": "1", "gpu-id": str(gpu_id)}


def app_config(
    sources: Sequence[str],
    *,
    infer_config: str = INFER_CONFIG,
    width: int = 1280,
    height: int = 720,
    gpu_id: int = 0,
    sink: str = "egl",
) -> str:
    """A deepstream-app config: sources -> nvstreammux -> nvinfer -> nvsegvisual -> tiler -> sink."""
    if not sources:
        raise EdgesegError("deepstream-app needs at least one source (URI, file or /dev/videoN)")
    sinks = {"egl": "2", "fake": "1"}
    if sink not in sinks:
        raise EdgesegError(f"sink: expected egl or fake, got {sink!r}")
    n = len(sources)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    groups: dict[str, dict[str, str]] = {
        "application": {"enable-perf-measurement": "1", "perf-measurement-interval-sec": "5"},
        "tiled-display": {"enable": "1", "rows": str(rows), "columns": str(cols),
                          "width": str(width), "height": str(height), "gpu-id": str(gpu_id)},
    }
    for i, uri in enumerate(sources):
        groups[f"source{i}"] = _source(uri, gpu_id)
    live = all(s.startswith(("rtsp://", "/dev/video")) for s in sources)
    groups["streammux"] = {"gpu-id": str(gpu_id), "live-source": "1" if live else "0",
                           "batch-size": str(n), "batched-push-timeout": "40000",
                           "width": str(width), "height": str(height)}
    groups["primary-gie"] = {"enable": "1", "gpu-id": str(gpu_id), "batch-size": str(n),
                             "gie-unique-id": "1", "config-file": infer_config}
    groups["segvisual"] = {"enable": "1", "gpu-id": str(gpu_id), "batch-size": str(n),
                           "width": str(width), "height": str(height)}
    groups["osd"] = {"enable": "0"}
    groups["sink0"] = {"enable": "1", "type": sinks[sink], "sync": "0", "gpu-id": str(gpu_id)}
    return _ini(groups, "deepstream-app config written by `edgeseg export --format deepstream`\n"
                        "run: deepstream-app -c " + APP_CONFIG)


def onnx_max_batch(path: Path) -> int:
    """The largest batch an ONNX's first input takes: its fixed batch dim, or unbounded."""
    import onnx

    dim = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]
    return int(dim.dim_value) if dim.HasField("dim_value") else 1 << 30


def write_deepstream(
    out_dir: str | Path,
    artifact: str | Path,
    *,
    sources: Sequence[str] = (),
    precision: str | None = None,
    batch_size: int | None = None,
    threshold: float = 0.0,
    plugin_lib: str | None = None,
    sink: str = "egl",
) -> dict[str, Any]:
    """Write the model, nvinfer config, labels.txt and deepstream-app config into ``out_dir``.

    Args:
        artifact: an ONNX (normalised in the graph, or with one std for all channels) or a
            TensorRT engine with its sidecar.
        sources: deepstream-app sources (default: one sample file URI placeholder).
        precision: nvinfer network-mode (default: the engine's, else fp16 for an ONNX).
        batch_size: nvinfer / streammux batch (default: the number of sources).
        plugin_lib: a TensorRT plugin library the engine needs (custom-lib-path); DeformConv
            maps onto TensorRT's built-in ModulatedDeformConv2d plugin, which nvinfer loads.
    """
    from edgeseg.artifacts.files import artifact_kind, read_artifact_meta

    artifact = Path(artifact)
    kind = artifact_kind(artifact)
    if kind == "checkpoint":
        raise EdgesegError(f"{artifact.name}: DeepStream runs an ONNX or a TensorRT engine; "
                           "export one first (--normalize-in-graph for an ONNX)")
    meta = read_artifact_meta(artifact)
    outputs = list(meta.extra.get("outputs") or ["logits"])
    if "labels" in outputs and len(outputs) == 1:
        raise EdgesegError("nvinfer's segmentation parser takes the class scores (C, H, W), not "
                           "labels: export without --argmax")
    output = PROBS_NAME if PROBS_NAME in outputs else outputs[0]
    engine = kind == "engine"
    precision = precision or (meta.precision if engine else "fp16")
    srcs = list(sources) or [SAMPLE_STREAM]
    batch = batch_size or len(srcs)
    if not engine and batch > (most := onnx_max_batch(artifact)):
        # nvdsinfer: "Backend has maxBatchSize 1 whereas 2 has been requested"
        raise EdgesegError(f"{artifact.name} takes a batch of at most {most}; nvinfer batch-size "
                           f"{batch} needs a batch-dynamic ONNX (`edgeseg export --format "
                           "deepstream` with several --source writes one)")
    model_file = artifact.name
    props = nvinfer_properties(meta, model_file=model_file, engine=engine, output_name=output,
                               precision=precision, batch_size=batch, threshold=threshold,
                               plugin_lib=plugin_lib)
    notes = []
    if meta.extra.get("dcn") == "native" and not plugin_lib:
        notes.append("DeformConv runs on TensorRT's ModulatedDeformConv2d plugin "
                     "(libnvinfer_plugin, loaded by nvinfer): no custom-lib-path")
    if threshold > 0 and not meta.extra.get("output_activation"):
        notes.append("segmentation-threshold applies to raw logits here")
    infer_text = _ini({"property": props},
                      f"nvinfer config for {meta.variant} (semantic segmentation), written by "
                      f"`edgeseg export --format deepstream`\n"
                      f"preprocessing: y = net-scale-factor * (x - offsets), RGB")
    app_text = app_config(srcs, sink=sink)
    for text in (infer_text, app_text):  # both must read back as INI
        configparser.ConfigParser(interpolation=None).read_file(io.StringIO(text))
    from edgeseg.deploy.triton_config import labels_txt

    files: dict[str, str | Path] = {INFER_CONFIG: infer_text, APP_CONFIG: app_text,
                                    LABELS_FILE: labels_txt(meta), model_file: artifact}
    if engine:
        from edgeseg.artifacts.sidecar import sidecar_path

        files[sidecar_path(artifact).name] = sidecar_path(artifact)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".edgeseg-ds-", dir=out_dir))
    try:
        for name, src in files.items():
            if isinstance(src, Path):
                if src.resolve() != (out_dir / name).resolve():
                    shutil.copy2(src, staging / name)
            else:
                (staging / name).write_text(src)
        for f in staging.iterdir():
            publish(f, out_dir / f.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"path": str(out_dir), "format": "deepstream", "infer_config": str(out_dir / INFER_CONFIG),
            "app_config": str(out_dir / APP_CONFIG), "model": str(out_dir / model_file),
            "properties": props, "sources": srcs, "notes": notes, "meta": meta.to_dict()}


def build_deepstream(
    model: Any, meta: ModelMeta, out: Path, settings: ExportSettings | Mapping[str, Any],
    step: Step,
) -> dict[str, Any]:
    """``edgeseg export --format deepstream --out DIR``: the normalised-in-graph ONNX (always:
    nvinfer's scalar scale can't express a per-channel std), checked against the Segmenter,
    then the nvinfer and deepstream-app configs beside it.

    Settings used: height, width, dcn, opset, precision, and the optional ``sources``,
    ``batch_size``, ``segmentation_threshold``, ``plugin_lib``.
    """
    s = ExportSettings.of(settings)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EdgesegError(f"--out {out}: the DeepStream export is a directory")
    if s.argmax:
        raise EdgesegError("nvinfer's segmentation parser takes the class scores: leave out "
                           "--argmax for --format deepstream")
    precision = s.precision
    if precision == "int8":
        raise EdgesegError("INT8 in DeepStream needs a calibrated engine (`edgeseg calibrate`); "
                           "export fp16 or fp32 here")
    if precision not in NETWORK_MODE:
        raise EdgesegError(f"--precision: expected fp32 or fp16, got {precision!r}")
    onnx_path = out / "model.onnx"
    batch = s.batch_size or len(s.sources) or 1
    report = export_normalized_onnx(model, meta, onnx_path, height=s.height, width=s.width,
                                    dcn=s.dcn or "native", opset=s.opset, step=step,
                                    dynamic_batch=batch > 1)  # H and W stay fixed
    step("writing nvinfer and deepstream-app configs")
    ds = write_deepstream(out, onnx_path, sources=s.sources, precision=precision,
                          batch_size=s.batch_size, threshold=s.segmentation_threshold,
                          plugin_lib=s.plugin_lib)
    return {**ds, "onnx": report,
            "parity": report["parity"]}
