"""Training configuration: paper section 4.1 defaults, overridable by YAML and flags."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

from edgeseg.errors import EdgesegError

__all__ = ["OPTIMIZERS", "RECIPES", "TrainConfig", "check_values", "load_train_config"]

OPTIMIZERS = ("sgd", "adamw")


@dataclass
class TrainConfig:
    model: str = "desanet-hn"
    data: str = ""
    out: str = "runs/desanet"
    split: str = "trainval"  # the paper trains on fine train + val
    val_split: str = "val"
    iters: int = 640_000
    time_budget_s: float = 0.0  # > 0: iterations that fit this wall time (at most iters)
    batch: int = 3  # per process
    crop: tuple[int, int] = (1024, 1024)
    lr: float = 0.005
    optimizer: str = "sgd"  # the paper's; "adamw" converges faster from scratch on small data
    warmup_iters: int = 0  # linear warm-up before the poly decay
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    scale: tuple[float, float] = (0.5, 2.0)
    gridmask: bool = True
    color_jitter: bool = True
    rmi: bool = True  # L_RMI of eq. (2); off for quick runs on tiny crops
    class_weight: str = "none"  # "enet": CE weighted 1/ln(1.02 + p) (edgeseg.train.class_weight)
    workers: int = 4
    seed: int = 0
    backbone_weights: str | None = None
    ckpt_every: int = 5000
    eval_every: int = 0  # 0: evaluate at the end only
    log_every: int = 10
    amp: bool | None = None  # None: on for CUDA (float16); True on CPU: bfloat16 autocast
    channels_last: bool = True  # cuDNN NHWC convs; CPU: step time within 4% (docs/benchmarks.md)
    sync_bn: bool = False
    tensorboard: bool = False
    device: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["crop"], d["scale"] = list(self.crop), list(self.scale)
        return d


# Named starting points under the YAML and the flags. "paper" is section 4.1 as written (the
# TrainConfig defaults). "cpu-quick" trains on 2 CPU cores on synthetic scenes from random init.
# Recorded in docs/benchmarks.md: AdamW at lr 8e-3 beat SGD at lr 0.05 ("Training recipe",
# 12-class scenes: 0.615 vs 0.457 after 1300 iterations); ENet class weights add 0.02 at the
# demo's length ("Training recipe at the demo's budget"); these 1000 iterations reach 0.375
# over the 19 classes (tests/test_train.py). Other sweeps (batch, lr, augmentation) were not
# recorded. bfloat16 autocast applies only on CPUs with native bf16 (float32 elsewhere).
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {},
    "cpu-quick": dict(
        split="train", iters=1000, batch=4, crop=(128, 256), optimizer="adamw", lr=8e-3,
        warmup_iters=80, scale=(1.0, 1.0), color_jitter=False, gridmask=False, rmi=False,
        class_weight="enet", amp=True, workers=1, ckpt_every=0,
    ),
}


def load_train_config(
    path: str | Path | None, *, recipe: str = "paper", **overrides: Any
) -> TrainConfig:
    """Defaults < recipe < YAML file < flags (None = not given). Unknown keys are an error."""
    import yaml

    if recipe not in RECIPES:
        raise EdgesegError(f"--recipe: expected one of {', '.join(RECIPES)}, got '{recipe}'")
    values: dict[str, Any] = dict(RECIPES[recipe])
    from_file: set[str] = set()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise EdgesegError(f"training config not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise EdgesegError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(loaded, dict):
            raise EdgesegError(f"{path}: expected a mapping of training options")
        values.update(loaded)
        from_file = {str(k) for k in loaded}
    given = {k: v for k, v in overrides.items() if v is not None}
    values.update(given)
    from_file -= set(given)
    known = {f.name for f in fields(TrainConfig)}
    for key in values:
        if key not in known:
            raise EdgesegError(f"{path or 'options'}: unknown training option '{key}'")
    values = check_values(values, {k: (f"{path}: " if k in from_file else "") for k in values})
    cfg = TrainConfig(**values)
    from edgeseg.train.limits import check_crop

    check_crop(cfg)
    return cfg


# -- validation: every key's type (from the dataclass annotations) and range -------------------

_LIMITS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "iters": (lambda v: v >= 1, ">= 1"),
    "batch": (lambda v: v >= 1, ">= 1"),
    "crop": (lambda v: min(v) >= 1, "two sizes >= 1 (HxW)"),
    "lr": (lambda v: 0 < v < float("inf"), "> 0"),
    "warmup_iters": (lambda v: v >= 0, ">= 0"),
    "time_budget_s": (lambda v: v >= 0, ">= 0 (0: no budget)"),
    "momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "weight_decay": (lambda v: v >= 0, ">= 0"),
    "poly_power": (lambda v: v > 0, "> 0"),
    "scale": (lambda v: 0 < v[0] <= v[1], "two factors 0 < min <= max"),
    "workers": (lambda v: v >= 0, ">= 0"),
    "seed": (lambda v: 0 <= v < 2**32, "in [0, 2**32)"),  # numpy's seed range
    "ckpt_every": (lambda v: v >= 0, ">= 0 (0: only at the end)"),
    "eval_every": (lambda v: v >= 0, ">= 0 (0: only at the end)"),
    "log_every": (lambda v: v >= 1, ">= 1"),
}


def _choices() -> dict[str, tuple[str, ...]]:
    from edgeseg.models.desanet import VARIANTS
    from edgeseg.train.class_weight import CLASS_WEIGHTS

    return {"model": tuple(VARIANTS), "optimizer": OPTIMIZERS, "class_weight": CLASS_WEIGHTS}


def check_values(values: dict[str, Any], where: dict[str, str]) -> dict[str, Any]:
    """Type- and range-check training options; ``where[key]`` prefixes the message (the YAML
    file a value came from). Returns the values with pairs as tuples and ints as floats where
    a float is expected."""
    hints = get_type_hints(TrainConfig)
    choices = _choices()
    out = dict(values)
    for key, value in values.items():
        prefix = f"{where.get(key, '')}{key}"
        ok, value, expected = _coerce(value, hints.get(key, Any))
        if not ok:
            raise EdgesegError(f"{prefix}: expected {expected}, got {value!r} ({_kind(value)})")
        if key in choices and value not in choices[key]:
            raise EdgesegError(f"{prefix}: expected one of {', '.join(choices[key])}, got {value!r}")
        if key == "device":
            from edgeseg.runtime.devices import check_device_spec

            check_device_spec(value, prefix)
        limit = _LIMITS.get(key)
        if limit is not None and value is not None and not limit[0](value):
            raise EdgesegError(f"{prefix}: expected {limit[1]}, got {_show(value)}")
        out[key] = value
    return out


def _coerce(value: Any, tp: Any) -> tuple[bool, Any, str]:
    """(ok, value, expected) for ``value`` against the annotation ``tp``."""
    args = get_args(tp)
    if tp is Any:
        return True, value, ""
    if get_origin(tp) in (Union, UnionType):
        if value is None and type(None) in args:
            return True, None, ""
        rest = [a for a in args if a is not type(None)]
        ok, v, expected = _coerce(value, rest[0]) if len(rest) == 1 else (True, value, "")
        return ok, v, f"{expected} or null" if not ok else ""
    if get_origin(tp) is tuple:
        item = args[0]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value, value]
        if isinstance(value, (list, tuple)) and len(value) == len(args):
            coerced = [_coerce(v, item) for v in value]
            if all(c[0] for c in coerced):
                return True, tuple(c[1] for c in coerced), ""
        word = "integers" if item is int else "numbers"
        return False, value, f"two {word} (a list [a, b] or one number for both)"
    if get_origin(tp) is dict or tp is dict:
        return isinstance(value, dict), value, "a mapping"
    if tp is bool:
        return isinstance(value, bool), value, "true or false"
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value, "an integer"
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value), ""
        return False, value, "a number"
    if tp is str:
        return isinstance(value, str), value, "a string"
    return True, value, ""


def _kind(value: Any) -> str:
    return {str: "a string", bool: "a boolean", int: "an integer", float: "a number",
            list: "a list", dict: "a mapping", type(None): "null"}.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    return "x".join(str(v) for v in value) if isinstance(value, tuple) else repr(value)
