"""`edgeseg data synth`: write a synthetic street-scene dataset in the Cityscapes layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edgeseg.cli._util import JsonOpt, app, command, console, emit_json, progress

data_app = typer.Typer(
    no_args_is_help=True,
    help="Datasets: synthetic Cityscapes-layout street scenes for tests, demos and smoke runs.",
)
app.add_typer(
    data_app,
    name="data",
    help="Datasets: write synthetic street scenes in the Cityscapes layout.",
)



@command(
    "synth", on=data_app,
    help="Generate procedural street scenes with Cityscapes labels, in the Cityscapes layout "
    "(leftImg8bit/, gtFine/ with labelIds, labelTrainIds and color PNGs). Deterministic per "
    "--seed; written to a temporary folder and renamed, so OUT is never half-written.",
)
def synth_cli(
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset root to create.")],
    train: int = typer.Option(200, "--train", min=1, help="Training images."),
    val: int = typer.Option(50, "--val", min=0, help="Validation images."),
    height: int = typer.Option(256, "--height", min=16, help="Image height."),
    width: int = typer.Option(512, "--width", min=16, help="Image width."),
    seed: int = typer.Option(0, "--seed", help="Random seed; same seed, same dataset."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace OUT if it holds an earlier synthetic dataset."
    ),
    json_: bool = JsonOpt,
) -> None:
    from edgeseg.data.synthetic import write_synthetic_cityscapes

    with progress("synth", train + val) as bar:
        summary = write_synthetic_cityscapes(
            out,
            train=train,
            val=val,
            height=height,
            width=width,
            seed=seed,
            progress_cb=lambda split, done, total: bar(1, split),
            overwrite=overwrite,
        )
    if json_:
        emit_json(summary)
        return
    _print_summary(summary)


def _print_summary(s: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"synthetic Cityscapes at {s['out']}")
    table.add_column("split")
    table.add_column("images", justify="right")
    table.add_column("cities")
    for split, n in s["splits"].items():
        table.add_row(split, str(n), ", ".join(s["cities"].get(split, [])))
    console.print(table)
    classes = Table(title="pixels per train class")
    classes.add_column("class")
    classes.add_column("share", justify="right")
    for name, frac in sorted(s["class_fraction"].items(), key=lambda kv: -kv[1]):
        classes.add_row(name, f"{100 * frac:.2f}%")
    classes.add_row("[dim](ignored)[/]", f"{100 * s['ignored_fraction']:.2f}%")
    console.print(classes)
    console.print(
        f"{s['width']}x{s['height']}, seed {s['seed']}: {s['seconds']:.1f} s "
        f"({s['ms_per_scene']:.1f} ms per scene to generate)"
    )
