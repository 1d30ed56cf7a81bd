"""`edgeseg profiles list|show|validate`: the per-device YAML profiles (see edgeseg.profiles)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edgeseg.cli._util import JsonOpt, app, command, console, emit_json
from edgeseg.errors import EdgesegError

profiles_app = typer.Typer(
    no_args_is_help=True,
    help="List, show and validate per-device profiles (profiles/*.yaml, $EDGESEG_PROFILES_DIR).",
)
app.add_typer(
    profiles_app,
    name="profiles",
    help="List, show and validate per-device profiles (device facts + deployment defaults).",
)



def _summary(profile: Any) -> dict[str, Any]:
    d = profile.deploy
    return {
        "name": profile.name,
        "device": profile.device.name,
        "backend": d.backend,
        "precision": d.precision,
        "height": d.height,
        "width": d.width,
        "source": str(profile.source) if profile.source else None,
    }


@command("list", on=profiles_app, help="All profiles found: device, backend, precision, input size.")
def list_cli(json_: bool = JsonOpt) -> None:
    from edgeseg.profiles import list_profiles, profile_path, validate_profile

    rows: list[dict[str, Any]] = []
    for name in list_profiles():
        try:
            rows.append(_summary(validate_profile(profile_path(name))))
        except EdgesegError as e:  # one broken user profile must not hide the others
            console.print(f"[yellow]warning:[/] skipped {e}", soft_wrap=True)
    if json_:
        emit_json(rows)
        return
    from rich.table import Table

    table = Table(title="edgeseg profiles")
    for col in ("name", "device", "backend", "precision"):
        table.add_column(col)
    table.add_column("input HxW", justify="right")
    for r in rows:
        table.add_row(
            r["name"], r["device"], r["backend"], r["precision"], f"{r['height']}x{r['width']}"
        )
    console.print(table)


@command("show", on=profiles_app, help="Every field of one profile (a name, a .yaml path, or 'auto').")
def show_cli(
    name: Annotated[str, typer.Argument(help="Profile name, path to a .yaml file, or 'auto'.")],
    json_: bool = JsonOpt,
) -> None:
    from edgeseg.profiles import detect, load_profile, profile_path, validate_profile

    detection = None
    if name == "auto":
        detection = detect()
        profile = validate_profile(profile_path(detection.profile))
    else:
        profile = load_profile(name)
    if json_:
        out: dict[str, Any] = {"name": profile.name, "source": profile.source}
        if detection is not None:
            out["detected"] = {"source": detection.source, "reason": detection.reason,
                               "warnings": list(detection.warnings)}
        out.update(profile.to_dict())
        emit_json(out)
        return
    if detection is not None:
        console.print(f"auto -> [bold]{detection.profile}[/] ({detection.reason}; source: "
                      f"{detection.source})", soft_wrap=True)
        for w in detection.warnings:
            console.print(f"[yellow]warning:[/] {w}", soft_wrap=True)
    from rich.table import Table

    table = Table(title=f"{profile.name} ({profile.source})", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for section, values in profile.to_dict().items():
        for key, value in _flatten(values):
            table.add_row(f"{section}.{key}", _show(value))
    console.print(table)


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        if isinstance(v, dict):
            out.extend(_flatten(v, f"{prefix}{k}."))
        else:
            out.append((f"{prefix}{k}", v))
    return out


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


@command("validate", on=profiles_app, help="Check one profile file against the schema; one line per problem.")
def validate_cli(
    file: Annotated[Path, typer.Argument(help="The profile .yaml file to check.")],
    json_: bool = JsonOpt,
) -> None:
    from edgeseg.profiles import validate_profile

    try:
        profile = validate_profile(file)
    except EdgesegError as e:
        if json_:
            emit_json({"file": str(file), "valid": False, "error": str(e)})
        raise
    if json_:
        emit_json({"file": str(file), "valid": True, "name": profile.name})
        return
    d = profile.deploy
    console.print(
        f"ok: {file} ({profile.device.name}; {d.backend} {d.precision} {d.height}x{d.width})",
        soft_wrap=True,
    )
