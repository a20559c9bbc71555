"""The node graph of the simulated lab, described once.

`launch/sim_campaign.launch.py` turns it into launch_ros Nodes (`ros2 launch` on a ROS
install); `mobile_chemist.local_launch` runs the same executables with the same parameters
as processes where `ros2 launch` is not available (pip-installed ROS 2 core).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_NODES = Path(__file__).resolve().parent.parent / "nodes"


@dataclass(frozen=True)
class NodeSpec:
    executable: str          # in nodes/ (source) or lib/mobile_chemist (ament install)
    name: str
    parameters: dict = field(default_factory=dict)


#: The simulated rack camera's image topic; on the robot the wrist camera's topic.
CAMERA_TOPIC = "/camera/image_raw"


def sim_lab_graph(*, lab_config: str = "", real_time_factor: float = 0.0, seed: int = 0,
                  start_time: float = 0.0, vision: bool = True) -> list[NodeSpec]:
    """The simulated lab: its clock, every station, and the discrete-event robot; with
    `vision`, the station server's simulated rack camera and the vision node.

    `start_time` (s since the epoch, 0 = now) lets a resumed campaign's clock go on from
    where its record ends, so its timeline never runs backwards.
    """
    return [
        NodeSpec("sim_clock", "sim_clock", {"real_time_factor": float(real_time_factor),
                                            "start_time": float(start_time)}),
        station_server_node(lab_config, seed, vision),
        NodeSpec("robot_sim", "robot_sim", {"lab_config": lab_config, "use_sim_time": True}),
        lab_description_node(lab_config),
    ] + ([vision_node()] if vision else [])


def station_server_node(lab_config: str = "", seed: int = 0, camera: bool = True) -> NodeSpec:
    """Every station's action server; with `camera`, also the simulated rack camera."""
    return NodeSpec("station_server", "station_server",
                    {"lab_config": lab_config, "seed": int(seed), "use_sim_time": True,
                     "camera_topic": CAMERA_TOPIC if camera else ""})


def vision_node(image_topic: str = CAMERA_TOPIC) -> NodeSpec:
    """The vision node on the camera's images; in the campaign it runs when the planner
    inspects (rate 0), not on every frame."""
    return NodeSpec("vision", "vision", {"image_topic": image_topic, "rate_hz": 0.0,
                                         "image_reliable": True})


def physics_lab_graph(*, lab_config: str = "", real_time_factor: float = 0.0, seed: int = 0,
                      start_time: float = 0.0, backend: str = "builtin",
                      vision: bool = True) -> list[NodeSpec]:
    """The lab with the MuJoCo base: physics_sim is the clock and the robot, nodes/navigation
    serves /robot/navigate_to_station, robot_sim keeps only transfers and rack bookkeeping.

    `real_time_factor` 0 would let physics_sim run free (about 12x here), faster than the
    navigation node's control loop keeps up with on 2 cores; 0 therefore means 3 here.
    """
    physics_rtf = float(real_time_factor) if real_time_factor > 0 else 3.0
    return [
        NodeSpec("physics_sim", "physics_sim", {"lab_config": lab_config,
                                                "real_time_factor": physics_rtf,
                                                "start_time": float(start_time),
                                                "seed": int(seed)}),
        NodeSpec("navigation", "navigation", {"lab_config": lab_config, "backend": backend,
                                              "seed": int(seed), "use_sim_time": True}),
        station_server_node(lab_config, seed, vision),
        NodeSpec("robot_sim", "robot_sim", {"lab_config": lab_config, "use_sim_time": True,
                                            "serve_navigation": False}),
        lab_description_node(lab_config),
    ] + ([vision_node()] if vision else [])


def lab_description_node(lab_config: str = "") -> NodeSpec:
    """/map, station markers and /robot_description for RViz (config/mobile_chemist.rviz)."""
    return NodeSpec("lab_description", "lab_description", {"lab_config": lab_config})


def planner_node(*, database: str, lab_config: str = "", campaign_config: str = "",
                 workflow_config: str = "", batches: int = 0, vision: bool = True) -> NodeSpec:
    """The planner that runs the campaign over the lab's actions (`vision`: with the
    workflow's inspect steps)."""
    return NodeSpec("planner", "planner", {
        "database": database, "lab_config": lab_config, "campaign_config": campaign_config,
        "workflow_config": workflow_config, "batches": int(batches), "use_sim_time": True,
        "vision": bool(vision)})


def executable_path(executable: str) -> Path:
    """Find a node executable in this checkout's nodes/ or an ament install's lib/."""
    candidate = REPO_NODES / executable
    if candidate.exists():
        return candidate
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        candidate = Path(prefix) / "lib" / "mobile_chemist" / executable
        if prefix and candidate.exists():
            return candidate
    raise FileNotFoundError(f"node executable {executable!r} not found in {REPO_NODES} "
                            "or any AMENT_PREFIX_PATH lib/mobile_chemist")
