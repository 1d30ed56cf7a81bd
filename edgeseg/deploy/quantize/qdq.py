"""The FP32 ONNX in, activation ranges from onnxruntime's calibrators, the Q/DQ ONNX and the
TensorRT cache scales out.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeseg.deploy.quantize.images import CalibrationReader
from edgeseg.deploy.quantize.settings import QuantSettings
from edgeseg.errors import EdgesegError

if TYPE_CHECKING:
    from edgeseg.artifacts.meta import ModelMeta

__all__ = [
    "MIN_AMAX",
    "cache_scales",
    "check_fp32_onnx",
    "compute_ranges",
    "ensure_node_names",
    "installed_trt_version",
    "qdq_extra_options",
    "quantize_qdq",
    "quiet_ort",
]

MIN_AMAX = 1e-5  # floor for all-zero tensors (a zero scale is not a usable dynamic range)
_CHUNK = 2  # images per calibrator pass: every activation of every image is held in memory


def check_fp32_onnx(path: str | Path) -> tuple[Any, ModelMeta]:
    """Load an FP32 ONNX to calibrate; return (ModelProto, ModelMeta).

    Refuses (one line each) a missing or unreadable file, one without edgeseg metadata, one
    already quantized, and one whose input is not a single float32 1x3xHxW tensor (H and W may
    be symbolic; static ones must match the metadata's input size).
    """
    import onnx

    from edgeseg.artifacts.files import meta_from_props

    p = Path(path)
    if not p.is_file():
        raise EdgesegError(f"ONNX file not found: {p}")
    try:
        model = onnx.load(str(p))
    except Exception as e:  # noqa: BLE001 - truncated or foreign files
        raise EdgesegError(f"{p}: not a readable ONNX file ({type(e).__name__})") from None
    meta = meta_from_props({e.key: e.value for e in model.metadata_props}, source=str(p))
    ops = {n.op_type for n in model.graph.node}
    if meta.precision == "int8" or ops & {"QuantizeLinear", "DequantizeLinear"}:
        raise EdgesegError(f"{p.name} is already quantized (INT8): calibrate the FP32 ONNX")
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    want = "one float32 input of shape 1x3xHxW"
    if len(inputs) != 1:
        raise EdgesegError(f"{p.name} has {len(inputs)} inputs; calibrate expects {want}")
    tt = inputs[0].type.tensor_type
    dims: list[int | str] = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?")
                             for d in tt.shape.dim]
    shown = "x".join(str(d) for d in dims) or "scalar"
    if tt.elem_type != onnx.TensorProto.FLOAT:
        dtype = onnx.TensorProto.DataType.Name(tt.elem_type).lower()
        raise EdgesegError(f"{p.name}: input '{inputs[0].name}' is {dtype} {shown}; calibrate "
                           f"expects {want} (an FP32 export)")
    batch_ok = len(dims) == 4 and (dims[0] == 1 or isinstance(dims[0], str))
    if not batch_ok or dims[1] != 3:
        raise EdgesegError(f"{p.name}: input '{inputs[0].name}' has shape {shown}; calibrate "
                           f"expects {want}")
    static = isinstance(dims[2], int) and isinstance(dims[3], int)
    if static and (dims[2], dims[3]) != tuple(meta.input_hw):
        raise EdgesegError(
            f"{p.name}: input is {dims[2]}x{dims[3]} but its metadata says input_hw "
            f"{meta.input_hw[0]}x{meta.input_hw[1]}: re-export it"
        )
    return model, meta


def ensure_node_names(model: Any) -> None:
    used = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)


@contextlib.contextmanager
def quiet_ort() -> Iterator[None]:
    """onnxruntime.quantization prints to stdout and logs warnings: keep stdout for --json."""
    buf = io.StringIO()
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(buf):
            yield
    finally:
        logging.disable(previous)


def _ort_method(method: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    return {"entropy": CalibrationMethod.Entropy, "minmax": CalibrationMethod.MinMax,
            "percentile": CalibrationMethod.Percentile}[method]


def compute_ranges(
    model_path: Path, reader: CalibrationReader, settings: QuantSettings, workdir: Path,
) -> Any:
    """Activation ranges (onnxruntime ``TensorsData``) of every float tensor of the model.

    Images go through the calibrator a few at a time: onnxruntime holds every intermediate
    tensor of a pass in memory (hundreds of MB per 512x1024 frame).
    """
    from onnxruntime.quantization.calibrate import create_calibrator

    options = {"symmetric": settings.symmetric_activations}
    with quiet_ort():
        calibrator = create_calibrator(
            model_path, None, augmented_model_path=str(workdir / "augmented.onnx"),
            calibrate_method=_ort_method(settings.method), extra_options=options,
        )
        if hasattr(calibrator, "num_bins"):  # entropy / percentile: histogram calibrators
            calibrator.collector = _range_safe_collector(calibrator)
        try:
            for chunk in reader.chunks(_CHUNK):
                calibrator.collect_data(chunk)
            ranges = calibrator.compute_data()
        finally:
            del calibrator
    return ranges


def _range_safe_collector(calibrator: Any) -> Any:
    """onnxruntime's HistogramCollector, except that a tensor whose values span (almost) a
    single value gets its min/max as range instead of crashing.

    numpy cannot make 2048 finite-sized bins over a range of a few float32 ulps ("Too many bins
    for data range"); an untrained or freshly fine-tuned model (zero-initialised offset conv,
    saturated sigmoids) has such tensors. They are collected one at a time so that one of them
    leaves the histograms of the others untouched.
    """
    from onnxruntime.quantization.calibrate import HistogramCollector

    class RangeSafeHistogramCollector(HistogramCollector):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(
                method=calibrator.method, symmetric=calibrator.symmetric,
                num_bins=calibrator.num_bins, num_quantized_bins=calibrator.num_quantized_bins,
                percentile=calibrator.percentile, scenario=calibrator.scenario,
            )
            self.flat: dict[str, tuple[float, float]] = {}

        def collect(self, name_to_arr: dict[str, Any]) -> None:
            for name, arr in name_to_arr.items():
                try:
                    super().collect({name: arr})
                except ValueError:
                    parts = arr if isinstance(arr, list) else [arr]
                    lo = min(float(np.min(a)) for a in parts)
                    hi = max(float(np.max(a)) for a in parts)
                    if not (np.isfinite(lo) and np.isfinite(hi)):
                        raise EdgesegError(
                            f"calibration: tensor {name!r} has non-finite values (inf/nan) on "
                            "the calibration images: the FP32 model overflows there"
                        ) from None
                    old = self.flat.get(name, (lo, hi))
                    self.flat[name] = (min(lo, old[0]), max(hi, old[1]))

        def compute_collection_result(self) -> dict[str, Any]:
            result = dict(super().compute_collection_result()) if self.histogram_dict else {}
            for name, (lo, hi) in self.flat.items():
                if self.symmetric:
                    lo, hi = -max(abs(lo), abs(hi)), max(abs(lo), abs(hi))
                if name in result:  # other chunks made a histogram: also cover this value
                    r = result[name]
                    lo, hi = min(lo, float(r[0])), max(hi, float(r[1]))
                    result[name] = (np.float32(lo), np.float32(hi), *r[2:])
                else:
                    result[name] = (np.float32(lo), np.float32(hi), np.array([1], np.int64),
                                    np.array([lo, hi], np.float32))
            return result

    return RangeSafeHistogramCollector()


def qdq_extra_options(settings: QuantSettings) -> dict[str, Any]:
    """``quantize_static`` extra options for ``settings``.

    For TensorRT: no bias quantization (onnxruntime's default ``QuantizeBias=True`` writes INT32
    biases, and TensorRT's DequantizeLinear accepts only INT8/FP8/INT4 inputs, so the ONNX would
    not parse: TensorRT fuses the float bias into the INT8 conv itself), symmetric INT8 with
    zero points 0 everywhere, weights per output channel (axis 0 of Conv weights).
    """
    options: dict[str, Any] = {
        "ActivationSymmetric": settings.symmetric_activations,
        "WeightSymmetric": True,
    }
    if settings.target == "tensorrt":
        options.update(QuantizeBias=False, ActivationSymmetric=True, WeightSymmetric=True,
                       QDQOpTypePerChannelSupportToAxis={"Conv": 0, "ConvTranspose": 1})
    return options


def quantize_qdq(
    model_path: Path, out: Path, ranges: Any, settings: QuantSettings, nodes_to_exclude: list[str],
    workdir: Path,
) -> None:
    """Write the Q/DQ ONNX of ``model_path`` from precomputed ``ranges``."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    cache = workdir / "ranges.json"
    save_tensors_data(ranges, cache)
    qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    with quiet_ort():
        quantize_static(
            str(model_path), str(out), None,
            quant_format=QuantFormat.QDQ,
            per_channel=settings.per_channel,
            reduce_range=settings.reduce_range,
            activation_type=qtype[settings.activation_type],
            weight_type=qtype[settings.weight_type],
            nodes_to_exclude=list(nodes_to_exclude),
            calibrate_method=_ort_method(settings.method),
            calibration_cache_path=str(cache),
            extra_options=qdq_extra_options(settings),
        )


def cache_scales(model: Any, ranges: Any, skip: Iterable[str] = ()) -> dict[str, float]:
    """TensorRT per-tensor scales ``max(|min|, |max|) / 127`` of the calibrated activations,
    in graph order (input, then node outputs), leaving out the tensors named in ``skip``."""
    skip = set(skip)
    order = [i.name for i in model.graph.input] + [o for n in model.graph.node for o in n.output]
    scales: dict[str, float] = {}
    for name in order:
        if name in skip or name not in ranges.data or name in scales:
            continue
        lo, hi = (np.asarray(v, np.float64) for v in ranges.data[name].range_value)
        amax = float(max(np.abs(lo).max(initial=0.0), np.abs(hi).max(initial=0.0)))
        if np.isfinite(amax):
            scales[name] = max(amax, MIN_AMAX) / 127.0
    return scales


def installed_trt_version() -> str | None:
    """The installed TensorRT's version, None when it is absent or does not load.

    A broken libnvinfer raises OSError (or RuntimeError) on import, not ImportError; the type
    stubs import as an empty namespace package without ``__version__``.
    """
    try:
        import tensorrt
    except (ImportError, OSError, RuntimeError):
        return None
    version = getattr(tensorrt, "__version__", None)
    return str(version) if version else None
