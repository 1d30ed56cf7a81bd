"""INT8 post-training quantization: calibration images -> a Q/DQ ONNX and a TensorRT
calibration cache, plus what INT8 costs in accuracy and gains in speed.

One calibration pass over the images feeds both outputs:

* ``model.int8.onnx``: QuantizeLinear/DequantizeLinear (Q/DQ) nodes written by onnxruntime's
  ``quantize_static``. It runs in onnxruntime on the CPU, and TensorRT 10+ builds it with
  explicit quantization (TensorRT 11 has no other INT8 path). Its ``metadata_props`` carry the
  model's :class:`~edgeseg.runtime.base.ModelMeta` with ``precision="int8"``, so later commands
  need no flags.
* ``calibration.cache``: per-tensor scales (``amax / 127``) of every float activation, in
  TensorRT's EntropyCalibration2 text format (:func:`edgeseg.deploy.trt_compat.
  write_calibration_cache`), for the implicit INT8 builds of TensorRT < 10.1 and the
  ``IInt8EntropyCalibrator2`` of :mod:`edgeseg.deploy.tensorrt`, which reads it instead of
  calibrating. It names ONNX tensors, so it belongs to the FP32 ONNX it was computed on
  (``model.fp32.onnx`` when calibrating a checkpoint). It is always written: it is just a file.

Activation ranges come from ``--method``: ``percentile`` (default: the 99.999th percentile,
per tail for asymmetric ranges), ``entropy`` (KL divergence, as TensorRT's own calibrator) or
``minmax``. The cache header names EntropyCalibration2 whatever the method: that is the
calibrator class that reads it back.

Quantization settings follow the profile's backend (measured in ``docs/benchmarks.md``):

* ``onnxruntime`` (CPU): uint8 asymmetric activations, int8 symmetric per-channel weights
  (U8S8, the VNNI/AVX2 integer GEMM path; int8 activations run *slower* than FP32 on x86
  onnxruntime). ``reduce_range`` (7-bit weights) only on x86 CPUs without VNNI, where 8-bit
  products can saturate; int8 symmetric activations on ARM.
* ``tensorrt``: int8 symmetric activations and per-channel weights: TensorRT accepts only
  zero-point-0 INT8 Q/DQ.

Kept in float by default (``--exclude``): ``DeformConv`` (neither onnxruntime nor TensorRT's
plugin has an INT8 kernel), ``GridSample`` of the portable deformable conv *with the
arithmetic that computes its sampling grid* (pixel coordinates up to the image width do not
survive 8 bits), and ``logits``, a pseudo op type for the classifier conv and the upsampling
to the input size after it: rounding the logits to 8 bits (one scale for all classes) flips
the argmax wherever two classes are close, and that head is a small part of the cost
(measured in ``docs/benchmarks.md``). Excluded nodes' outputs are also left out of the
TensorRT cache, so TensorRT cannot run them in INT8 either.

Preprocessing is :meth:`Segmenter.preprocess` of the FP32 model, the code inference runs, on
frames read with ``cv2.imread`` (BGR), as the camera pipeline delivers them.

Modules: :mod:`.images` (finding, sampling and reading calibration frames), :mod:`.settings`
(what to quantize and how), :mod:`.qdq` (ranges, Q/DQ ONNX, cache scales), :mod:`.compare`
(FP32 vs INT8) and :mod:`.command` (:func:`calibrate`, the whole command).
"""

from edgeseg.deploy.quantize.command import (
    CACHE_NAME,
    DEFAULT_CACHE_TRT_VERSION,
    FP32_NAME,
    QDQ_NAME,
    RECOMMENDED_IMAGES,
    REPORT_NAME,
    calibrate,
)
from edgeseg.deploy.quantize.compare import DEFAULT_RUNS, compare_models
from edgeseg.deploy.quantize.images import (
    DEFAULT_HOLDOUT,
    IMAGE_SUFFIXES,
    MANIFEST_NAME,
    CalibrationReader,
    ImageSet,
    check_image_sizes,
    find_images,
    find_label,
    image_size,
    read_bgr,
    read_manifest,
    sample_images,
)
from edgeseg.deploy.quantize.qdq import (
    cache_scales,
    check_fp32_onnx,
    compute_ranges,
    quantize_qdq,
    quiet_ort,
)
from edgeseg.deploy.quantize.settings import (
    DEFAULT_EXCLUDE,
    DEFAULT_METHOD,
    LOGITS,
    METHODS,
    QuantSettings,
    excluded_nodes,
    parse_exclude,
)

__all__ = [
    "CACHE_NAME", "DEFAULT_CACHE_TRT_VERSION", "DEFAULT_EXCLUDE", "DEFAULT_HOLDOUT",
    "DEFAULT_METHOD", "DEFAULT_RUNS", "FP32_NAME", "IMAGE_SUFFIXES", "LOGITS", "MANIFEST_NAME",
    "METHODS", "QDQ_NAME", "RECOMMENDED_IMAGES", "REPORT_NAME", "CalibrationReader", "ImageSet",
    "QuantSettings", "cache_scales", "calibrate", "check_fp32_onnx", "check_image_sizes",
    "compare_models", "compute_ranges", "excluded_nodes", "find_images", "find_label",
    "image_size", "parse_exclude", "quantize_qdq", "quiet_ort", "read_bgr", "read_manifest",
    "sample_images",
]
