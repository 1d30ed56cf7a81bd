"""`edgeseg doctor`: one table of what this machine can do for edgeseg and how to fix the rest."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeseg.cli._util import JsonOpt, command, console, emit_json

_STYLE = {"OK": "green", "WARN": "yellow", "FAIL": "red"}
RootOpt = typer.Option(Path("/"), "--root", hidden=True,
                       help="Read system files under this folder (tests).")


@command("doctor", help="Check this machine: JetPack, TensorRT, CUDA torch, camera, power, DLA.")
def doctor_cli(
    root: Path = RootOpt,
    json_: bool = JsonOpt,
) -> None:
    from edgeseg.doctor import doctor

    report = doctor(root)
    if json_:
        emit_json(report)
        return
    from rich.table import Table

    table = Table(title="edgeseg doctor")
    for col in ("check", "status", "detail", "fix"):
        table.add_column(col, overflow="fold")
    for c in report["checks"]:
        style = _STYLE.get(c["status"], "")
        table.add_row(c["name"], f"[{style}]{c['status']}[/]", c["detail"], c["fix"])
    console.print(table)
    s = report["summary"]
    console.print(f"{s['OK']} OK, {s['WARN']} WARN, {s['FAIL']} FAIL")
