"""How to quantize: calibration method, activation/weight types per backend, ops kept in float.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from edgeseg.errors import EdgesegError

__all__ = [
    "DEFAULT_EXCLUDE", "DEFAULT_METHOD", "LOGITS", "METHODS", "QuantSettings", "excluded_nodes",
    "parse_exclude",
]

METHODS = ("percentile", "entropy", "minmax")
# percentile agreed best with FP32 on the trained test model (0.981 vs entropy 0.976-0.980 and
# minmax 0.977-0.979 at 64 and 160 images) and is stable in the image count; onnxruntime's
# entropy histograms grow unevenly when later chunks widen a range.
DEFAULT_METHOD = "percentile"
LOGITS = "logits"  # pseudo op type: the classifier conv and what follows it to the output
DEFAULT_EXCLUDE = ("DeformConv", "GridSample", LOGITS)


@dataclass(frozen=True)
class QuantSettings:
    """How to quantize; :meth:`for_target` picks the measured defaults for a backend."""

    target: str  # onnxruntime | tensorrt
    method: str = DEFAULT_METHOD
    activation_type: str = "uint8"  # uint8 (asymmetric) | int8 (symmetric)
    weight_type: str = "int8"
    per_channel: bool = True
    reduce_range: bool = False
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE

    @property
    def symmetric_activations(self) -> bool:
        return self.activation_type == "int8"

    @classmethod
    def for_target(
        cls, target: str, method: str = DEFAULT_METHOD, exclude: Sequence[str] = DEFAULT_EXCLUDE,
        machine: str | None = None, cpu_flags: set[str] | None = None,
    ) -> QuantSettings:
        if method not in METHODS:
            raise EdgesegError(f"unknown calibration method {method!r}: choose one of "
                               f"{', '.join(METHODS)}")
        exclude = tuple(exclude)
        if target == "tensorrt":
            return cls("tensorrt", method, "int8", "int8", True, False, exclude)
        machine = (machine or platform.machine()).lower()
        if machine in ("aarch64", "arm64") or machine.startswith("arm"):
            return cls("onnxruntime", method, "int8", "int8", True, False, exclude)
        flags = cpu_flags if cpu_flags is not None else _cpu_flags()
        vnni = bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
        return cls("onnxruntime", method, "uint8", "int8", True, not vnni, exclude)


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def parse_exclude(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"DeformConv,GridSample,logits"`` -> canonical ONNX op types (and ``logits``);
    ``none``/empty -> ()."""
    if text is None:
        return DEFAULT_EXCLUDE
    items = text.split(",") if isinstance(text, str) else list(text)
    names = [s.strip() for s in items if s.strip()]
    if [n.lower() for n in names] in (["none"], []):
        return ()
    import onnx.defs

    known = {s.name.lower(): s.name for s in onnx.defs.get_all_schemas_with_history()}
    out: list[str] = []
    known[LOGITS] = LOGITS
    for n in names:
        canon = known.get(n.lower())
        if canon is None:
            raise EdgesegError(f"--exclude: {n!r} is not an ONNX op type (e.g. DeformConv, "
                               f"GridSample, Resize, Sigmoid) or {LOGITS}")
        if canon not in out:
            out.append(canon)
    return tuple(out)


def excluded_nodes(model: Any, op_types: Iterable[str]) -> list[str]:
    """Names of the nodes to keep in float: every node of an excluded op type; for
    ``GridSample`` also the nodes computing its sampling grid (back to the nearest Conv); for
    ``logits`` the nodes from each graph output back to and including the first Conv (the
    classifier, the upsampling to the input size, an argmax)."""
    types = set(op_types)
    producer = {o: n for n in model.graph.node for o in n.output}
    names: list[str] = []
    seen: set[str] = set()

    def add(node: Any) -> None:
        if node.name not in seen:
            seen.add(node.name)
            names.append(node.name)

    if LOGITS in types:
        for out in model.graph.output:
            node = producer.get(out.name)
            while node is not None:
                add(node)
                if node.op_type == "Conv" or not node.input:
                    break
                node = producer.get(node.input[0])

    for node in model.graph.node:
        if node.op_type not in types:
            continue
        add(node)
        if node.op_type == "GridSample" and len(node.input) > 1:
            stack = [node.input[1]]
            while stack:
                src = producer.get(stack.pop())
                if src is None or src.op_type == "Conv" or src.name in seen:
                    continue
                add(src)
                stack.extend(src.input)
    return names
