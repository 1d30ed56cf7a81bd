"""`edgeseg info`: parameters per component and GFLOPs of a DESANet variant."""

from __future__ import annotations

import typer

from edgeseg.cli._util import JsonOpt, command, console, emit_json

MODEL_HELP = "Model variant: desanet-hn (HarDNet-68ds) or desanet-rn (ResNet-18)."


@command("info", help="Parameters per component and GFLOPs of a DESANet variant.")
def info_cli(
    model: str = typer.Option("desanet-hn", "--model", "-m", help=MODEL_HELP),
    height: int = typer.Option(512, "--height", min=32, help="Input height."),
    width: int = typer.Option(1024, "--width", min=32, help="Input width."),
    json_: bool = JsonOpt,
) -> None:
    from edgeseg.models.summary import model_summary

    report = model_summary(model, height, width)
    if json_:
        emit_json(report)
        return
    from rich.table import Table

    table = Table(title=f"{model} at {height}x{width}")
    table.add_column("component")
    table.add_column("parameters", justify="right")
    for comp, n in report["params_by_component"].items():
        table.add_row(comp, f"{n:,}")
    table.add_row("[bold]inference total[/] (no aux head)", f"[bold]{report['params_total']:,}")
    console.print(table)
    console.print(f"GFLOPs (multiply-add = 2): {report['gflops']:.1f}")
