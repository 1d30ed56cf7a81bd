"""Model artifacts on disk: what kind a file is, the metadata it carries, atomic writes.

Three kinds of artifact carry a model, each with its :class:`~edgeseg.artifacts.meta.ModelMeta`:

* ``checkpoint`` (``.pt``/``.pth``/``.ckpt``): ``meta`` inside the torch file;
* ``onnx`` (``.onnx``): ONNX ``metadata_props``, written by :func:`onnx_metadata_props`;
* ``engine`` (``.engine``/``.plan``/``.trt``): the JSON sidecar next to it
  (:mod:`edgeseg.artifacts.sidecar`).

ONNX layout: one property ``edgeseg.meta`` holds the whole ModelMeta as JSON (written first, so
:func:`edgeseg.deploy.tensorrt.onnx_model_meta` finds it), followed by one readable property per
field (``variant``, ``classes``, ``input_hw`` ...) with JSON-encoded values, for Netron and
``onnx.load(...).metadata_props`` readers. Readers prefer ``edgeseg.meta``.

This module imports neither torch nor onnx at import time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from edgeseg import __version__
from edgeseg.artifacts.meta import ModelMeta
from edgeseg.errors import EdgesegError

__all__ = [
    "ARTIFACT_SUFFIXES",
    "META_KEY",
    "artifact_kind",
    "atomic_output",
    "meta_from_props",
    "onnx_metadata_props",
    "read_artifact_meta",
    "read_onnx_metadata",
    "write_onnx_metadata",
]

META_KEY = "edgeseg.meta"

# suffix -> artifact kind
ARTIFACT_SUFFIXES: dict[str, str] = {
    ".pt": "checkpoint",
    ".pth": "checkpoint",
    ".ckpt": "checkpoint",
    ".onnx": "onnx",
    ".engine": "engine",
    ".plan": "engine",
    ".trt": "engine",
}

# The readable per-field properties (besides the whole ModelMeta under META_KEY).
_FIELDS = ("variant", "classes", "palette", "mean", "std", "input_hw", "precision")


def artifact_kind(path: str | Path) -> str:
    """``checkpoint``, ``onnx`` or ``engine`` from the file name; EdgesegError otherwise."""
    p = Path(path)
    kind = ARTIFACT_SUFFIXES.get(p.suffix.lower())
    if kind is None:
        known = ", ".join(sorted(ARTIFACT_SUFFIXES))
        raise EdgesegError(f"{p.name}: unknown model file type '{p.suffix}' (expected one of {known})")
    return kind


# ---------------------------------------------------------------------------------------------
# ONNX metadata_props


def onnx_metadata_props(meta: ModelMeta, **extra: Any) -> dict[str, str]:
    """Property key -> JSON string: ``edgeseg.meta`` first, then readable per-field keys.

    ``extra`` (e.g. ``dcn="portable"``, ``outputs=["labels"]``) goes into ``meta.extra`` and
    gets its own key too. ``edgeseg_version`` is always stamped.
    """
    d = meta.to_dict()
    d["extra"] = {**d.get("extra", {}), **extra, "edgeseg_version": __version__}
    props = {META_KEY: json.dumps(d, sort_keys=True)}
    for key in _FIELDS:
        props[key] = json.dumps(d[key])
    for key, value in sorted(d["extra"].items()):
        props.setdefault(key, json.dumps(value, default=str))
    return props


def write_onnx_metadata(model: Any, meta: ModelMeta, **extra: Any) -> None:
    """Replace the metadata_props of an ``onnx.ModelProto`` in place with ``meta`` (+ extra)."""
    props = onnx_metadata_props(meta, **extra)
    keep = [(p.key, p.value) for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    for key, value in [*props.items(), *keep]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def meta_from_props(props: Mapping[str, str], source: str = "ONNX model") -> ModelMeta:
    """ModelMeta from a metadata_props mapping (``edgeseg.meta``, or the per-field keys)."""
    try:
        if META_KEY in props:
            return ModelMeta.from_dict(json.loads(props[META_KEY]))
        if all(k in props for k in _FIELDS[:-1]):
            d: dict[str, Any] = {k: json.loads(props[k]) for k in _FIELDS if k in props}
            return ModelMeta.from_dict(d)
    except (ValueError, KeyError, TypeError) as e:
        raise EdgesegError(f"{source}: unreadable edgeseg metadata ({type(e).__name__}: {e})") from None
    raise EdgesegError(
        f"{source} has no edgeseg metadata (property '{META_KEY}'): export it with `edgeseg export`"
    )


def read_onnx_metadata(path: str | Path) -> ModelMeta:
    """ModelMeta of an ONNX file (weights are not loaded)."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise EdgesegError(f"ONNX file not found: {p}")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - truncated or foreign files
        raise EdgesegError(f"{p}: not a readable ONNX file ({type(e).__name__})") from None
    return meta_from_props({e.key: e.value for e in model.metadata_props}, source=str(p))


def read_artifact_meta(path: str | Path) -> ModelMeta:
    """The ModelMeta of any artifact, without building the model or a runtime session."""
    p = Path(path)
    kind = artifact_kind(p)
    if not p.is_file():
        raise EdgesegError(f"{kind} not found: {p}")
    if kind == "onnx":
        return read_onnx_metadata(p)
    if kind == "engine":
        from edgeseg.artifacts.sidecar import EngineSidecar, meta_from_sidecar

        return meta_from_sidecar(EngineSidecar.read(p))
    from edgeseg.artifacts.checkpoint import load_checkpoint

    try:
        return ModelMeta.from_dict(load_checkpoint(p)["meta"])
    except (KeyError, TypeError, ValueError) as e:
        raise EdgesegError(f"{p}: checkpoint has no usable model metadata ({e})") from None


# ---------------------------------------------------------------------------------------------
# Atomic output


def atomic_output(path: str | Path) -> AbstractContextManager[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success, with
    the umask's normal file mode (:func:`edgeseg.atomic.atomic_path`).

    On any exception (including Ctrl-C) the temporary file is removed and ``path`` is left as it
    was, so a failed export never leaves a half-written artifact behind.
    """
    from edgeseg.atomic import atomic_path

    return atomic_path(path)
