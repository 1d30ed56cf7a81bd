"""Profile files: where they are found, strict YAML reading, lookup by name or path, and
command-line overrides.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from edgeseg.errors import EdgesegError
from edgeseg.profiles.detection import detect_profile
from edgeseg.profiles.schema import ENV_PROFILES_DIR, Profile, build_profile, display_path
from edgeseg.profiles.validate import Invalid, validate_data

__all__ = [
    "OVERRIDABLE",
    "apply_overrides",
    "list_profiles",
    "load_profile",
    "profile_path",
    "profiles_dirs",
    "validate_profile",
]


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml(path: Path) -> Any:
    shown = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EdgesegError(f"profile file not found: {shown}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise EdgesegError(f"{shown}: cannot read: {e}") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{shown}:{mark.line + 1}:{mark.column + 1}" if mark else shown
        problem = " ".join(str(e.problem or e.context or "invalid YAML").split())
        ctx = e.context_mark
        if e.problem and e.context and ctx and mark and ctx.line != mark.line:
            problem += f" ({' '.join(e.context.split())} at line {ctx.line + 1})"
        raise EdgesegError(f"{where}: malformed YAML: {problem}") from None
    except yaml.YAMLError as e:
        raise EdgesegError(f"{shown}: malformed YAML: {' '.join(str(e).split())}") from None


def _builtin_dir() -> Path | None:
    import sys

    repo = Path(__file__).resolve().parents[2]  # <repo>/edgeseg/profiles/store.py
    # source checkout / editable install, then a wheel install (pyproject data-files)
    installed = Path(sys.prefix) / "share" / "edgeseg" / "profiles"
    for candidate in (repo / "profiles", installed):
        if candidate.is_dir():
            return candidate
    return None


def profiles_dirs() -> list[Path]:
    """Directories searched for profiles, in order: $EDGESEG_PROFILES_DIR, then the shipped one."""
    dirs: list[Path] = []
    for entry in os.environ.get(ENV_PROFILES_DIR, "").split(os.pathsep):
        if not entry.strip():
            continue
        d = Path(entry).expanduser()
        if not d.is_dir():
            raise EdgesegError(f"{ENV_PROFILES_DIR}: not a directory: {d}")
        dirs.append(d)
    builtin = _builtin_dir()
    if builtin is not None and all(builtin.resolve() != d.resolve() for d in dirs):
        dirs.append(builtin)
    return dirs


def _profile_files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in profiles_dirs():
        for f in sorted(d.iterdir()):
            if f.suffix in (".yaml", ".yml") and f.is_file():
                found.setdefault(f.stem, f)
    return found


def list_profiles() -> list[str]:
    """Names of all profiles found (see the module docstring for where), sorted."""
    return sorted(_profile_files())


def profile_path(name: str) -> Path:
    """The file behind a profile name; EdgesegError naming the known ones if there is none."""
    files = _profile_files()
    if name not in files:
        known = ", ".join(sorted(files)) or "none"
        raise EdgesegError(
            f"unknown profile {name!r}; known: {known} (or 'auto', or a path to a .yaml file)"
        )
    return files[name]


def _looks_like_path(s: str) -> bool:
    return "/" in s or os.sep in s or s.endswith((".yaml", ".yml"))


def validate_profile(path: str | Path) -> Profile:
    """Load and check one profile file; returns it, or raises a one-line EdgesegError."""
    p = Path(path)
    return Profile.from_dict(_read_yaml(p), name=p.stem, source=p)


def load_profile(name_or_path: str | Path | Profile) -> Profile:
    """A profile by name (``jetson-orin-nano``), by path (``my/board.yaml``) or ``"auto"``; a
    :class:`Profile` already loaded is returned as it is, so a job reads its file once and
    hands the object down."""
    if isinstance(name_or_path, Profile):
        return name_or_path
    s = str(name_or_path)
    if isinstance(name_or_path, Path) or _looks_like_path(s):
        return validate_profile(Path(s))
    if s == "auto":
        return validate_profile(profile_path(detect_profile()))
    return validate_profile(profile_path(s))


# --------------------------------------------------------------------------------------------
# Command-line overrides

# flag (keyword argument) -> (section, key)
OVERRIDABLE: dict[str, tuple[str, str]] = {
    "backend": ("deploy", "backend"),
    "precision": ("deploy", "precision"),
    "height": ("deploy", "height"),
    "width": ("deploy", "width"),
    "workspace_mib": ("deploy", "workspace_mib"),
    "dla_core": ("deploy", "dla_core"),
    "gpu_fallback": ("deploy", "gpu_fallback"),
    "calibration_images": ("calibration", "images"),
    "nvpmodel": ("power", "nvpmodel"),
    "jetson_clocks": ("power", "jetson_clocks"),
    "warmup_s": ("bench", "warmup_s"),
    "duration_s": ("bench", "duration_s"),
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def apply_overrides(profile: Profile, **flags: Any) -> Profile:
    """A copy of ``profile`` with command-line values applied; ``None`` keeps the profile's.

    Keywords are the keys of :data:`OVERRIDABLE`. ``dla_core=-1`` means "GPU only" (null).
    The result is validated like a file; an error names the flag, e.g.
    ``--precision: expected one of fp32, fp16, int8, got 'fp64'``.
    """
    unknown = sorted(set(flags) - set(OVERRIDABLE))
    if unknown:
        raise TypeError(f"apply_overrides() got unknown flags: {', '.join(unknown)}")
    given = {k: v for k, v in flags.items() if v is not None}
    if not given:
        return profile
    data = profile.to_dict()
    by_path: dict[str, str] = {}
    for flag, value in given.items():
        section, key = OVERRIDABLE[flag]
        if flag == "dla_core" and value == -1:
            value = None
        if data.get(section) is None:
            raise EdgesegError(
                f"{_flag(flag)}: applies to Jetson profiles only; profile {profile.name!r} is a "
                f"{profile.device.kind} device"
            )
        if flag == "nvpmodel" and profile.power is not None and value != profile.power.nvpmodel:
            data[section]["nvpmodel_name"] = f"mode {value}"
        data[section][key] = value
        by_path[f"{section}.{key}"] = flag
    try:
        clean = validate_data(data)
    except Invalid as e:
        if e.path in by_path:
            raise EdgesegError(f"{_flag(by_path[e.path])}: {e.message}") from None
        where = display_path(profile.source) if profile.source else f"profile {profile.name!r}"
        flags_s = ", ".join(_flag(f) for f in given)
        raise EdgesegError(f"{where} with {flags_s}: {e}") from None
    return build_profile(clean, name=profile.name, source=profile.source)
