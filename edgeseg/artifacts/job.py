"""One job's settings, resolved once: the model, the loaded profile, size and precision.

Every command that runs or converts a model (export, calibrate, run, eval, bench, tune) starts
from :func:`resolve_job`, which builds a frozen :class:`Job` from the ``--model`` value, the
``--profile`` and the flags, by one precedence:

    flag  >  profile  >  the artifact's metadata  >  the command's default

The flags are applied to the profile through :func:`edgeseg.profiles.apply_overrides`, so the
profile every later step reads already holds them (a bad value is an error naming the flag).
``Job.origin`` says where each value came from; reports print it.

Some combinations cannot work, and :data:`IMPOSSIBLE` lists them, each with why; they are
checked here, in one place, before any model loads:

- a size flag that differs from the size a fixed-shape ONNX was exported at (a profile's size
  does not apply to such a file: it is the size checkpoints are exported at);
- a precision flag that differs from an engine's (its precision is built in) or from a Q/DQ
  ONNX's (INT8 is in the graph).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.artifacts.meta import ModelMeta
from edgeseg.artifacts.resolve import ModelRef, resolve_model
from edgeseg.errors import EdgesegError
from edgeseg.precision import PRECISIONS
from edgeseg.sizes import hw_from_flags

__all__ = ["IMPOSSIBLE", "Job", "resolve_job"]

IMPOSSIBLE: dict[str, str] = {
    "size-of-fixed-artifact": "an ONNX exported without --dynamic runs at the size it was "
                              "exported at",
    "precision-of-engine": "a TensorRT engine's precision is fixed when it is built",
    "precision-of-qdq-onnx": "a Q/DQ ONNX is INT8: its quantization is part of the graph",
}


@dataclass(frozen=True)
class Job:
    """What one command runs: the model, the profile (flags applied) and the resolved values."""

    command: str
    model: ModelRef | None
    profile: Any = None  # edgeseg.profiles.Profile, loaded once for the whole job
    meta: ModelMeta | None = None  # the artifact's own metadata (None: a variant, Triton)
    input_hw: tuple[int, int] | None = None
    precision: str | None = None
    origin: Mapping[str, str] = field(default_factory=dict)  # "flag" | "profile" | ...

    @property
    def path(self) -> Path | None:
        return self.model.path if self.model is not None else None

    @property
    def kind(self) -> str | None:
        return self.model.kind if self.model is not None else None

    @property
    def fixed_hw(self) -> tuple[int, int] | None:
        """The size a fixed-shape ONNX was exported at (None: it can be sized). An engine's
        optimisation profile is checked by TensorRT itself when it loads."""
        if self.meta is None or self.kind != "onnx" or self.meta.extra.get("dynamic"):
            return None
        return self.meta.input_hw


def resolve_job(
    command: str,
    *,
    model: str | Path | ModelRef | None = None,
    weights: str | Path | None = None,
    onnx: str | Path | None = None,
    engine: str | Path | None = None,
    random_init: bool = False,
    accepts: Collection[str] = ("checkpoint", "onnx", "engine"),
    required: bool = True,
    profile: Any = None,
    height: int | None = None,
    width: int | None = None,
    precision: str | None = None,
    default_hw: tuple[int, int] | None = None,
    default_precision: str | None = None,
    read_meta: bool = True,
) -> Job:
    """The :class:`Job` of ``command`` (see the module docstring for the precedence).

    ``model``/``weights``/``onnx``/``engine``/``random_init``/``accepts``/``required`` go to
    :func:`~edgeseg.artifacts.resolve.resolve_model`; ``profile`` is a name, a path, ``auto``
    or a loaded ``Profile``; ``height``/``width`` go together. The metadata of an ONNX or
    engine is read here (cheap: ONNX metadata_props, the engine's sidecar); a checkpoint's comes
    with its weights, which the command loads itself (``read_meta=False``: none is read).
    """
    if precision is not None and precision not in PRECISIONS:
        raise EdgesegError(f"--precision: expected one of {', '.join(PRECISIONS)}, "
                           f"got '{precision}'")
    ref = resolve_model(model, weights=weights, onnx=onnx, engine=engine,
                        random_init=random_init, accepts=accepts, command=command,
                        required=required)
    size = hw_from_flags(height, width)
    prof = None
    if profile is not None:
        from edgeseg.profiles import apply_overrides, load_profile

        prof = apply_overrides(load_profile(profile), height=height, width=width,
                               precision=precision)
    meta = None
    if read_meta and ref is not None and ref.kind in ("onnx", "engine") and ref.path is not None:
        from edgeseg.artifacts.files import read_artifact_meta

        meta = read_artifact_meta(ref.path)
    job = Job(command, ref, prof, meta)
    origin: dict[str, str] = {}
    hw, origin["input_hw"] = _pick(
        size, prof.deploy.input_hw if prof is not None and job.fixed_hw is None else None,
        tuple(meta.input_hw) if meta is not None else None, default_hw)
    prec, origin["precision"] = _pick(
        precision, prof.deploy.precision if prof is not None else None,
        meta.precision if meta is not None else None, default_precision)
    _check_possible(job, size, precision)
    return Job(command, ref, prof, meta, hw, prec, origin)  # type: ignore[arg-type]


def _pick(flag: Any, profile: Any, artifact: Any, default: Any) -> tuple[Any, str]:
    for value, origin in ((flag, "flag"), (profile, "profile"), (artifact, "artifact")):
        if value is not None:
            return value, origin
    return default, "default"


def _check_possible(job: Job, size: tuple[int, int] | None, precision: str | None) -> None:
    """The :data:`IMPOSSIBLE` combinations, each one line naming the flag."""
    fixed = job.fixed_hw
    name = job.path.name if job.path is not None else ""
    if size is not None and fixed is not None and size != fixed:
        raise EdgesegError(
            f"--height/--width {size[0]}x{size[1]}: {name} is fixed at {fixed[0]}x{fixed[1]} "
            f"({IMPOSSIBLE['size-of-fixed-artifact']}; give the checkpoint, or export with "
            "--dynamic)")
    if precision is None or job.meta is None:
        return
    if job.kind == "engine" and precision != job.meta.precision:
        raise EdgesegError(f"--precision {precision}: {name} is a {job.meta.precision} engine "
                           f"({IMPOSSIBLE['precision-of-engine']})")
    if job.kind == "onnx" and job.meta.precision == "int8" and precision != "int8":
        raise EdgesegError(f"--precision {precision}: {name} is a Q/DQ ONNX "
                           f"({IMPOSSIBLE['precision-of-qdq-onnx']})")
