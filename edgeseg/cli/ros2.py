"""`edgeseg ros2 run|params|topics`: the ROS 2 segmentation node and bag helpers.

`run` needs rclpy from a ROS 2 install (source /opt/ros/humble/setup.bash); `params` and
`topics` do not, and neither does `--help`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgeseg.cli._util import JsonOpt, app, command, console, emit_json

HELP = ("ROS 2: the segmentation node (needs rclpy: source /opt/ros/humble/setup.bash) and "
        "bag helpers (rosbags, no ROS needed).")
ros2_app = typer.Typer(no_args_is_help=True, help=HELP)
app.add_typer(ros2_app, name="ros2", help=HELP)


def config_file() -> Path:
    """The shipped params YAML (package data)."""
    return Path(__file__).resolve().parent.parent / "ros" / "config" / "segmenter.yaml"


@command(
    "run",
    on=ros2_app,
    help="Run the segmentation node: subscribes to an Image/CompressedImage topic, publishes "
    "~/class_mask, ~/color_mask, ~/overlay, ~/confidence, ~/label_info and ~/stats. Needs "
    "rclpy and vision_msgs from ROS 2 (source /opt/ros/humble/setup.bash). Extra arguments "
    "after -- go to rclpy (e.g. -- -r __ns:=/robot).",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def run_cli(
    ctx: typer.Context,
    model: str | None = typer.Option(None, "--model", "-m", help="Checkpoint, ONNX or engine."),
    params_file: Path | None = typer.Option(
        None, "--params-file", help="ROS 2 params YAML (default: the shipped config/segmenter.yaml)."
    ),
    input_topic: str | None = typer.Option(None, "--input-topic", "-i", help="Camera topic."),
    profile: str | None = typer.Option(None, "--profile", "-p", help="Device profile."),
    mask_size: str | None = typer.Option(None, "--mask-size", help="input, network or HxW."),
    outputs: str | None = typer.Option(None, "--outputs", help="Comma list of outputs."),
) -> None:
    from edgeseg.cli._util import existing_file
    from edgeseg.ros.node import load_rclpy_api, main, ros_args

    load_rclpy_api()  # fail in one line before anything else when ROS 2 is not sourced
    params = existing_file(params_file, "params file") if params_file else config_file()
    args = ros_args({"model": model, "input_topic": input_topic, "profile": profile,
                     "mask_size": mask_size, "outputs": outputs}, str(params), ctx.args)
    main(args)


@command("params", on=ros2_app, help="The node's parameters, defaults and meaning.")
def params_cli(json_: bool = JsonOpt) -> None:
    from rich.table import Table

    from edgeseg.ros.node import PARAMETERS

    if json_:
        emit_json({k: {"default": d, "help": h} for k, (d, h) in PARAMETERS.items()})
        return
    table = Table(title="edgeseg ros2 node parameters")
    for col in ("parameter", "default", "meaning"):
        table.add_column(col)
    for name, (default, desc) in PARAMETERS.items():
        table.add_row(name, str(default), desc)
    console.print(table)
    console.print(f"params YAML: {config_file()}")


@command("topics", on=ros2_app, help="Topics of a bag (ROS 2 folder, .mcap, .db3, ROS 1 .bag).")
def topics_cli(
    bag: Path = typer.Argument(..., help="Bag folder or file."),
    json_: bool = JsonOpt,
) -> None:
    from rich.table import Table

    from edgeseg.ros.bag import list_topics

    rows: list[dict[str, Any]] = list_topics(bag)
    if json_:
        emit_json(rows)
        return
    table = Table(title=str(bag))
    for col in ("topic", "type", "messages"):
        table.add_column(col, justify="right" if col == "messages" else "left")
    for r in rows:
        table.add_row(r["topic"], r["type"], str(r["messages"]))
    console.print(table)
