"""`edgeseg calibrate` as a function: sample, calibrate once, write the Q/DQ ONNX, the cache and
the FP32 vs INT8 report, all or nothing.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeseg.artifacts.job import resolve_job
from edgeseg.atomic import publish
from edgeseg.deploy.quantize.compare import DEFAULT_RUNS, compare_models
from edgeseg.deploy.quantize.images import (
    DEFAULT_HOLDOUT,
    CalibrationReader,
    ImageSet,
    check_image_sizes,
    find_images,
    find_label,
    sample_images,
)
from edgeseg.deploy.quantize.qdq import (
    cache_scales,
    check_fp32_onnx,
    compute_ranges,
    ensure_node_names,
    quantize_qdq,
)
from edgeseg.deploy.quantize.settings import (
    DEFAULT_METHOD,
    LOGITS,
    QuantSettings,
    excluded_nodes,
    parse_exclude,
)
from edgeseg.errors import EdgesegError

if TYPE_CHECKING:
    from edgeseg.artifacts.meta import ModelMeta

__all__ = [
    "CACHE_NAME", "DEFAULT_CACHE_TRT_VERSION", "FP32_NAME", "QDQ_NAME", "RECOMMENDED_IMAGES",
    "REPORT_NAME", "cache_trt_version", "calibrate", "default_holdout", "latency_note",
]

RECOMMENDED_IMAGES = 300
# TensorRT releases that read an implicit-INT8 calibration cache: 8.6 (JetPack 6.0) needs it;
# 10.1+ deprecate it in favour of Q/DQ. The header's version when no TensorRT is installed.
DEFAULT_CACHE_TRT_VERSION = "8.6.2"

QDQ_NAME = "model.int8.onnx"
FP32_NAME = "model.fp32.onnx"
CACHE_NAME = "calibration.cache"
REPORT_NAME = "calibration.json"

Log = Callable[[str], None]


def cache_trt_version(explicit: str | None) -> str:
    """TensorRT version written in the cache header: the one it is *for*, never the installed one.

    The cache serves implicit INT8 builds on the target (TensorRT 8.6, JetPack 6.0), which is
    rarely the machine that calibrates; an x86 box with TensorRT 10.13 would otherwise stamp its
    own version on a cache meant for a Jetson. Default: :data:`DEFAULT_CACHE_TRT_VERSION`.
    """
    from edgeseg.deploy.trt_compat import parse_trt_version

    return str(parse_trt_version(explicit or DEFAULT_CACHE_TRT_VERSION))


def default_holdout(num: int) -> int:
    """Held-out images when ``--holdout`` is not given: a quarter of the calibration count, at
    least 2 and at most :data:`DEFAULT_HOLDOUT` (``--num 16`` compares on 4, not 50)."""
    return max(2, min(DEFAULT_HOLDOUT, -(-num // 4)))


def latency_note(target: str, where: str) -> str:
    """What the FP32 vs INT8 latency figures measure, said next to them."""
    if target == "tensorrt":
        return (f"measured with onnxruntime on {where}, not TensorRT on the target: it says "
                "nothing about INT8 speed there (build the engine and run `edgeseg bench` on it)")
    return f"measured with onnxruntime on {where}"


def calibrate(
    *,
    images: str | Path,
    out: str | Path,
    model: str | Path | None = None,
    weights: str | Path | None = None,
    onnx: str | Path | None = None,
    profile: str = "auto",
    num: int | None = None,
    method: str = DEFAULT_METHOD,
    labels: str | Path | None = None,
    exclude: str | Sequence[str] | None = None,
    seed: int = 0,
    holdout: int | None = None,
    runs: int = DEFAULT_RUNS,
    height: int | None = None,
    width: int | None = None,
    dcn: str = "auto",
    trt_version: str | None = None,
    threads: int | None = None,
    log: Log | None = None,
    progress: Callable[[str, int], Callable[[], None]] | None = None,
) -> dict[str, Any]:
    """Library entry of `edgeseg calibrate`: calibrate, quantize, compare, write ``out/``.

    Args:
        images: folder, quoted glob, manifest file, or Cityscapes root.
        out: output folder; gets ``model.int8.onnx``, ``calibration.cache``,
            ``calibration.json`` (this report plus the image lists) and, from a checkpoint,
            ``model.fp32.onnx``. Written in a temporary folder and moved in at the end.
        model: a checkpoint (exported here at the profile's size) or an FP32 ONNX path;
            ``weights`` / ``onnx`` are the legacy keywords for the same, one model in all:
            a checkpoint (exported here at the profile's size) or an
            FP32 ONNX written by `edgeseg export`.
        profile: profile name or path: its backend picks the quantization settings, its
            ``calibration.images`` the default ``num``, its size the export size.
        num: calibration images (default: the profile's).
        method: ``percentile`` (99.999th), ``entropy`` (KL) or ``minmax`` (see
            :data:`DEFAULT_METHOD`).
        labels: label folder for the held-out images (train-id PNGs; see :func:`find_label`).
        exclude: op types kept in float (default :data:`DEFAULT_EXCLUDE`; ``none``: nothing).
        seed: sampling seed. holdout: held-out images for the report (0: no comparison;
            default :func:`default_holdout` of ``num``).
        runs: latency runs per model (0: no latency).
        height, width: export size of a checkpoint (default: the profile's).
        dcn: deformable conv for a checkpoint export: ``native`` (DeformConv), ``portable``
            (GridSample) or ``auto`` (portable for TensorRT, which before 10.1 cannot import
            DeformConv; native for onnxruntime, as fast there and simpler).
        trt_version: TensorRT release the cache is for, written in its header (default 8.6.2,
            the JetPack 6.0 release that still needs a cache; see :func:`cache_trt_version`).
        threads: onnxruntime threads for calibration and comparison (default: physical cores).
        log: one-line messages (warnings, stages). progress: ``progress(stage, total)``
            returns a callable advanced once per image.
    """
    say = log or (lambda _m: None)
    tick = progress or (lambda _stage, _total: (lambda: None))
    warnings: list[str] = []

    def warn(msg: str) -> None:  # printed once the inputs are known to be good
        warnings.append(msg)

    # 1. Everything that can be checked cheaply, before any heavy work.
    # the model, the profile with --height/--width applied, and the impossible combinations
    # (a size flag for a fixed-size ONNX) in one place
    job = resolve_job("calibrate", model=model, weights=weights, onnx=onnx,
                      accepts=("checkpoint", "onnx"), profile=profile, height=height,
                      width=width)
    weights = job.path if job.kind == "checkpoint" else None
    onnx = job.path if job.kind == "onnx" else None
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EdgesegError(f"--out must be a folder, {out} is a file")
    prof = job.profile
    target = "tensorrt" if prof.deploy.backend == "tensorrt" else "onnxruntime"
    settings = QuantSettings.for_target(target, method, parse_exclude(exclude))
    if dcn not in ("auto", "native", "portable"):
        raise EdgesegError(f"--dcn: expected auto, native or portable, got {dcn!r}")
    if runs < 0:
        raise EdgesegError(f"--runs must be 0 or more, got {runs}")
    n_wanted = prof.calibration.images if num is None else num
    if holdout is None:
        holdout = default_holdout(n_wanted)
    cache_version = cache_trt_version(trt_version)
    image_set = find_images(images)
    cal, held = sample_images(image_set, n_wanted, holdout, seed)
    check_image_sizes(sorted(cal + held), image_set)
    label_map = dict(image_set.labels)
    if labels is not None:
        labels_dir = Path(labels)
        if not labels_dir.is_dir():
            raise EdgesegError(f"--labels folder not found: {labels_dir}")
        label_map = {}
        for p in held:
            found = find_label(p, labels_dir, image_set.root)
            if found is None:
                raise EdgesegError(
                    f"no label for held-out image {image_set.rel(p)} in {labels_dir} "
                    f"(looked for {p.stem}.png or Cityscapes *_gtFine_label(Train)Ids.png)"
                )
            label_map[p] = found
    if len(cal) < RECOMMENDED_IMAGES:
        warn(f"{len(cal)} calibration images: use about {RECOMMENDED_IMAGES} or more "
             "representative frames from the target camera (calibration/README.md)")
    if len(cal) < n_wanted:
        warn(f"asked for {n_wanted} calibration images, {image_set.source} had {len(cal)} "
             f"left after {len(held)} held-out images")
    fp32_meta_onnx = None
    if onnx is not None:
        fp32_meta_onnx = check_fp32_onnx(onnx)
        if dcn != "auto":
            warn("--dcn applies to a checkpoint only; the ONNX keeps its deformable conv")
    for msg in warnings:
        say(f"warning: {msg}")
    say(f"will calibrate on {len(cal)} images and compare FP32 with INT8 on {len(held)} "
        f"held-out images" + (f" ({runs} latency runs each)" if runs and held else ""))

    from edgeseg.atomic import staging_dir

    staging = staging_dir(out)  # mkdtemp's 0700 would become the output folder's mode
    work = Path(tempfile.mkdtemp(prefix="edgeseg-calibrate-"))
    try:
        report = _run(
            settings=settings, prof=prof, image_set=image_set, cal=cal, held=held,
            label_map=label_map, weights=weights, onnx=onnx, onnx_checked=fp32_meta_onnx,
            dcn=dcn, trt_version=cache_version, threads=threads, runs=runs, seed=seed,
            staging=staging, work=work, out=out, say=say, tick=tick, warnings=warnings,
        )
        _commit(staging, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
    return report


def _run(
    *, settings: QuantSettings, prof: Any, image_set: ImageSet, cal: list[Path],
    held: list[Path], label_map: dict[Path, tuple[Path, bool]], weights: Any, onnx: Any,
    onnx_checked: tuple[Any, ModelMeta] | None, dcn: str, trt_version: str,
    threads: int | None, runs: int, seed: int, staging: Path, work: Path, out: Path, say: Log,
    tick: Callable[[str, int], Callable[[], None]], warnings: list[str],
) -> dict[str, Any]:
    import onnx as onnx_lib

    from edgeseg.artifacts.files import write_onnx_metadata
    from edgeseg.deploy.trt_compat import write_calibration_cache
    from edgeseg.runtime import open_segmenter

    t_start = time.perf_counter()
    outputs: dict[str, str] = {}
    # 2. The FP32 ONNX: exported from the checkpoint, or the given file.
    if weights is not None:
        from edgeseg.artifacts.checkpoint import load_model
        from edgeseg.deploy.onnx import export_onnx

        impl = dcn if dcn != "auto" else ("portable" if settings.target == "tensorrt" else "native")
        model, meta = load_model(weights)
        fp32_path = staging / FP32_NAME
        say(f"exporting {meta.variant} at {prof.deploy.height}x{prof.deploy.width} ({impl} DCN)")
        export_onnx(model, meta, fp32_path, height=prof.deploy.height, width=prof.deploy.width,
                    dcn=impl, threads=threads)
        del model
        proto, meta = check_fp32_onnx(fp32_path)
        outputs["fp32_onnx"] = str(out / FP32_NAME)
        fp32_ref = fp32_path
    else:
        assert onnx_checked is not None
        proto, meta = onnx_checked
        fp32_ref = Path(onnx)
        outputs["fp32_onnx"] = str(fp32_ref)
    ensure_node_names(proto)
    model_path = work / "model.onnx"
    onnx_lib.save(proto, str(model_path))
    fp32 = open_segmenter(model_path, threads=threads)
    input_name = fp32.input_name  # type: ignore[attr-defined]

    # 3. One calibration pass: ranges for the Q/DQ model and for the TensorRT cache.
    say(f"calibrating on {len(cal)} images ({settings.method})")
    reader = CalibrationReader(cal, fp32, input_name, on_image=tick("calibrate", len(cal)))
    t0 = time.perf_counter()
    ranges = compute_ranges(model_path, reader, settings, work)
    calib_s = time.perf_counter() - t0

    # 4. The Q/DQ ONNX, with the metadata of the FP32 one (precision int8).
    float_nodes = excluded_nodes(proto, settings.exclude)
    present = {n.op_type for n in proto.graph.node}
    missing = [t for t in settings.exclude if t not in present and t != LOGITS]
    if settings.target == "tensorrt" and "DeformConv" in present:
        msg = ("this graph has ONNX DeformConv, which TensorRT's parser imports only from 10.1: "
               "the calibration cache (for TensorRT 8.6) needs a portable export (--dcn portable)")
        warnings.append(msg)
        say(f"warning: {msg}")
    say("writing the Q/DQ model")
    qdq_raw = work / "qdq.onnx"
    quantize_qdq(model_path, qdq_raw, ranges, settings, float_nodes, work)
    qdq = onnx_lib.load(str(qdq_raw))
    int8_meta = type(meta).from_dict({**meta.to_dict(), "precision": "int8"})
    quant_info = {
        "method": settings.method, "activations": settings.activation_type,
        "weights": settings.weight_type, "per_channel": settings.per_channel,
        "reduce_range": settings.reduce_range, "target": settings.target,
        "excluded_ops": list(settings.exclude), "calibration_images": len(cal), "seed": seed,
    }
    int8_meta.extra.update(quantization=quant_info, fp32_source=Path(fp32_ref).name)
    write_onnx_metadata(qdq, int8_meta)
    qdq.producer_name = "edgeseg"
    qdq_path = staging / QDQ_NAME
    onnx_lib.save(qdq, str(qdq_path))
    outputs["qdq_onnx"] = str(out / QDQ_NAME)
    op_counts: dict[str, int] = {}
    for n in qdq.graph.node:
        op_counts[n.op_type] = op_counts.get(n.op_type, 0) + 1

    # 5. The TensorRT calibration cache (always: it is just a file).
    skip = {o for n in proto.graph.node if n.name in set(float_nodes) for o in n.output}
    version = trt_version
    scales = cache_scales(proto, ranges, skip)
    write_calibration_cache(staging / CACHE_NAME, version, scales)
    outputs["calibration_cache"] = str(out / CACHE_NAME)

    # 6. FP32 vs INT8 on the held-out images.
    int8 = open_segmenter(qdq_path, threads=threads)
    if held:
        say(f"comparing FP32 and INT8 on {len(held)} held-out images")
    cmp = compare_models(fp32, int8, held, label_map, runs=runs,
                         on_image=tick("compare", len(held)) if held else None)

    outputs["report"] = str(out / REPORT_NAME)
    report: dict[str, Any] = {
        **{k: cmp[k] for k in ("agreement", "miou_fp32", "miou_int8", "iou_delta_per_class",
                               "latency_ms_fp32", "latency_ms_int8", "speedup")},
        "calibration_images": len(cal),
        "method": settings.method,
        "excluded_ops": list(settings.exclude),
        "outputs": outputs,
        "agreement_min_image": cmp["agreement_min_image"],
        "miou_delta": cmp["miou_delta"],
        "iou_per_class_fp32": cmp["iou_per_class_fp32"],
        "iou_per_class_int8": cmp["iou_per_class_int8"],
        "held_out_images": len(held),
        "labelled_images": cmp["labelled_images"],
        "latency_runs": cmp.get("latency_runs", 0),
        "profile": prof.name,
        "settings": asdict(settings),
        "float_nodes": len(float_nodes),
        "excluded_ops_absent": missing,
        "op_counts": dict(sorted(op_counts.items())),
        "cache": {"trt_version": version, "tensors": len(scales),
                  "for": "TensorRT < 10.1 implicit INT8 with the FP32 ONNX in outputs.fp32_onnx"},
        "model": {"variant": meta.variant, "input_hw": list(meta.input_hw),
                  "fp32": str(fp32_ref), "dcn": meta.extra.get("dcn")},
        "images": {"source": image_set.source, "kind": image_set.kind, "seed": seed,
                   "splits": list(image_set.splits) if image_set.splits else None},
        "runtime": {**int8.describe(), "model": str(out / QDQ_NAME)},
        "latency_measured_on": _where_measured(int8),
        "latency_note": latency_note(settings.target, _where_measured(int8)),
        "target_backend": settings.target,
        "calibration_s": round(calib_s, 1),
        "seconds": round(time.perf_counter() - t_start, 1),
        "warnings": warnings,
    }
    record = {**report, "calibration_list": [image_set.rel(p) for p in cal],
              "held_out_list": [image_set.rel(p) for p in held]}
    (staging / REPORT_NAME).write_text(json.dumps(record, indent=2, default=str) + "\n")
    return report


def _where_measured(seg: Any) -> str:
    """``'onnxruntime CPUExecutionProvider, AMD EPYC 7B13 (2 threads)'``-like, from this machine."""
    import platform

    d = seg.describe()
    providers = d.get("providers") or d.get("provider") or ""
    if isinstance(providers, (list, tuple)):
        providers = providers[0] if providers else ""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       cpu)
    except OSError:
        pass
    return f"this machine ({' '.join(str(p) for p in (providers, cpu) if p)})"


def _commit(staging: Path, out: Path) -> None:
    """Move the finished files into ``out``: the whole folder at once when ``out`` is new,
    else file by file (each an atomic rename, replacing an earlier run's file)."""
    if not out.exists():
        publish(staging, out)
        return
    for f in sorted(staging.iterdir()):
        publish(f, out / f.name)
