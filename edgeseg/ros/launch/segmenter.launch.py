"""ROS 2 launch file for the edgeseg segmentation node.

    ros2 launch "$(python3 -c 'import edgeseg.ros, os; print(os.path.dirname(edgeseg.ros.__file__))')/launch/segmenter.launch.py" \
        model:=/models/desanet.engine input_topic:=/camera/image_raw

edgeseg is a pip package, not an ament package, so the node starts as the `edgeseg ros2 run`
process (parameters from the YAML, then the launch arguments).
"""

from __future__ import annotations

from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess
from launch.substitutions import LaunchConfiguration

CONFIG = Path(__file__).resolve().parent.parent / "config" / "segmenter.yaml"


def generate_launch_description() -> LaunchDescription:
    args = {
        "model": "",
        "input_topic": "/camera/image_raw",
        "mask_size": "input",
        "outputs": "class_mask,color_mask,overlay,label_info",
        "params_file": str(CONFIG),
        "namespace": "/",
    }
    declared = [DeclareLaunchArgument(k, default_value=v) for k, v in args.items()]
    cmd = ["edgeseg", "ros2", "run", "--params-file", LaunchConfiguration("params_file")]
    for key in ("model", "input_topic", "mask_size", "outputs"):
        cmd += ["--" + key.replace("_", "-"), LaunchConfiguration(key)]
    cmd += ["--", "-r", ["__ns:=", LaunchConfiguration("namespace")]]
    return LaunchDescription([*declared, ExecuteProcess(cmd=cmd, output="screen")])
