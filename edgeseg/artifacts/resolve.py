"""One way in: what ``--model`` names, resolved once for every command.

``--model`` takes a checkpoint (``.pt``), an ONNX file, a TensorRT engine (``.engine``/
``.plan``), a model on a Triton server (``triton://HOST:PORT/NAME``) or a variant name
(``desanet-hn``, ``desanet-rn``; an untrained network with ``--random-init``), like
Ultralytics' ``model=x.pt|x.onnx|x.engine`` and spaCy's "name or path". :data:`MODEL_KINDS` is
the one dispatch table (scheme, then suffix, then name); :func:`resolve_model` is the one check
that exactly one model was given, in a form the command takes. The library keeps its keyword
API (``weights=``, ``onnx=``, ``engine=``, ``model=``): each entry point calls this function.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from edgeseg.artifacts.files import ARTIFACT_SUFFIXES
from edgeseg.errors import EdgesegError

__all__ = [
    "MODEL_KINDS", "ModelRef", "TRITON_SCHEME", "parse_model", "resolve_model", "triton_endpoint",
]

TRITON_SCHEME = "triton"

# kind -> (how --model names it, the backend that runs it by default)
MODEL_KINDS: dict[str, tuple[str, str]] = {
    "checkpoint": ("a .pt/.pth/.ckpt file", "torch"),
    "onnx": ("a .onnx file", "onnxruntime"),
    "engine": ("a .engine/.plan/.trt file", "tensorrt"),
    "triton": (f"{TRITON_SCHEME}://HOST:PORT/NAME", "triton"),
    "variant": ("desanet-hn or desanet-rn (with --random-init)", "torch"),
}

# the legacy per-kind keyword (and its hidden CLI flag) -> the kind it names
LEGACY: dict[str, str] = {"weights": "checkpoint", "onnx": "onnx", "engine": "engine"}


@dataclass(frozen=True)
class ModelRef:
    """The one model of a job: a file of ``kind``, a variant, or a model on a Triton server."""

    kind: str
    path: Path | None = None
    variant: str | None = None
    url: str | None = None  # triton: HOST:PORT
    name: str | None = None  # triton: the server's model name (None: its one edgeseg model)
    random_init: bool = False

    @property
    def backend(self) -> str:
        """The backend that runs this kind unless the user picks another."""
        return MODEL_KINDS[self.kind][1]

    @property
    def label(self) -> str:
        if self.kind == "triton":
            return f"{TRITON_SCHEME}://{self.url}/{self.name or ''}"
        if self.kind == "variant":
            return f"untrained {self.variant}"
        return str(self.path)


def _variants() -> tuple[str, ...]:
    from edgeseg.models.desanet import VARIANTS  # torch: only once a name is not a file

    return tuple(VARIANTS)


def parse_model(spec: str | Path) -> ModelRef:
    """A :class:`ModelRef` from one ``--model`` value, by scheme, then suffix, then name."""
    text = str(spec).strip()
    if not text:
        raise EdgesegError("--model is empty: give a checkpoint, ONNX, engine or variant name")
    split = urlsplit(text)
    if split.scheme == TRITON_SCHEME:
        if not split.netloc:
            raise EdgesegError(f"--model {text}: expected {TRITON_SCHEME}://HOST:PORT/NAME")
        name = split.path.strip("/") or None
        return ModelRef("triton", url=split.netloc, name=name)
    kind = ARTIFACT_SUFFIXES.get(Path(text).suffix.lower())
    if kind is not None:
        return ModelRef(kind, path=Path(text))
    if text in _variants():
        return ModelRef("variant", variant=text)
    known = "; ".join(how for how, _ in MODEL_KINDS.values())
    raise EdgesegError(f"--model {text}: not a model file or a variant name (expected {known})")


def resolve_model(
    model: str | Path | ModelRef | None = None,
    *,
    weights: str | Path | None = None,
    onnx: str | Path | None = None,
    engine: str | Path | None = None,
    random_init: bool = False,
    accepts: Collection[str] = ("checkpoint", "onnx", "engine"),
    command: str = "edgeseg",
    required: bool = True,
) -> ModelRef | None:
    """The one model a command was given, checked against the kinds it ``accepts``.

    ``model`` is ``--model`` (any kind); ``weights``/``onnx``/``engine`` are the legacy keywords
    (hidden CLI aliases), each of its own kind. Exactly one may be given (none when not
    ``required``: then None). ``random_init`` goes with a variant name and only there. Files
    must exist; a Triton model needs no file.
    """
    given: list[tuple[str, ModelRef]] = []
    if model is not None:
        ref = model if isinstance(model, ModelRef) else parse_model(model)
        given.append(("--model", ref))
    for key, value in (("weights", weights), ("onnx", onnx), ("engine", engine)):
        if value is not None:
            ref = parse_model(value) if str(value).strip() else ModelRef(LEGACY[key], Path())
            if ref.kind != LEGACY[key]:
                raise EdgesegError(f"--{key} {value}: expected {MODEL_KINDS[LEGACY[key]][0]}")
            given.append((f"--{key}", ref))
    if len(given) > 1:
        raise EdgesegError(f"{command}: give one model, with --model (got "
                           f"{' and '.join(flag for flag, _ in given)})")
    if not given:
        if random_init:
            raise EdgesegError(f"{command}: --random-init needs --model desanet-hn or desanet-rn")
        if required:
            wanted = "; ".join(MODEL_KINDS[k][0] for k in MODEL_KINDS if k in accepts)
            raise EdgesegError(f"{command}: no model: give --model ({wanted})")
        return None
    ref = given[0][1]
    if ref.kind not in accepts:
        wanted = "; ".join(MODEL_KINDS[k][0] for k in MODEL_KINDS if k in accepts)
        raise EdgesegError(f"{command} takes {wanted}, not {ref.label}")
    if ref.kind == "variant":
        if not random_init:
            raise EdgesegError(f"--model {ref.variant} is a variant, not a trained model: add "
                               "--random-init for an untrained network, or give a checkpoint")
        return ModelRef("variant", variant=ref.variant, random_init=True)
    if random_init:
        raise EdgesegError(f"--random-init goes with a variant name, not {ref.label}")
    if ref.path is not None and not ref.path.is_file():
        what = {"checkpoint": "checkpoint", "onnx": "ONNX file", "engine": "engine"}[ref.kind]
        problem = "is a folder" if ref.path.is_dir() else "not found"
        raise EdgesegError(f"{what} {problem}: {ref.path}")
    return ref


def triton_endpoint(
    model: str | Path | None, url: str | None, triton_model: str | None
) -> tuple[str, str | None] | None:
    """``(url, model name)`` when ``model`` names a Triton model (``triton://HOST:PORT/NAME``),
    which then stands for ``--url`` and ``--triton-model``; None for any other model."""
    if model is None or not str(model).startswith(f"{TRITON_SCHEME}://"):
        return None
    ref = parse_model(model)
    if url is not None or triton_model is not None:
        raise EdgesegError(f"--model {model} names the server and its model: leave out --url "
                           "and --triton-model")
    return str(ref.url), ref.name
