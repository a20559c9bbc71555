"""The generated interfaces agree with the library, and the launch file builds the graph."""

import importlib.util
import sys
import types
from pathlib import Path

import pytest

from mobile_chemist.graph import executable_path
from mobile_chemist.stations import StationError

REPO = Path(__file__).resolve().parent.parent


def test_station_error_codes_match_the_action_definition():
    action = pytest.importorskip("mobile_chemist.action")
    result = action.ExecuteOperation.Result
    for code in StationError:
        assert getattr(result, f"ERROR_{code.name}") == code.value


def test_robot_error_codes_match():
    action = pytest.importorskip("mobile_chemist.action")
    from mobile_chemist.robot_sim import RobotError

    t, n = action.TransferLabware.Result, action.NavigateToStation.Result
    assert t.ERROR_NOT_AT_STATION == RobotError.TRANSFER_NOT_AT_STATION
    assert t.ERROR_SOURCE_EMPTY == RobotError.TRANSFER_SOURCE_EMPTY
    assert t.ERROR_TARGET_OCCUPIED == RobotError.TRANSFER_TARGET_OCCUPIED
    assert t.ERROR_INVALID_REQUEST == RobotError.TRANSFER_INVALID_REQUEST
    assert n.ERROR_UNKNOWN_STATION == RobotError.NAV_UNKNOWN_STATION


@pytest.mark.parametrize("physics, vision, expected", [
    ("false", "true", {"sim_clock", "station_server", "robot_sim", "lab_description", "vision",
                       "planner"}),
    ("true", "true", {"physics_sim", "navigation", "station_server", "robot_sim",
                      "lab_description", "vision", "planner"}),
    ("false", "false", {"sim_clock", "station_server", "robot_sim", "lab_description",
                        "planner"}),
])
def test_launch_file_starts_every_node_with_its_parameters(monkeypatch, physics, vision,
                                                           expected):
    """Run the launch file against stand-ins for the launch API (not installable here)."""
    created = []

    class Node:
        def __init__(self, **kw):
            created.append(kw)

    class LaunchConfiguration:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return context[self.name]

    launch = types.ModuleType("launch")
    launch.LaunchDescription = lambda entities: entities
    actions = types.ModuleType("launch.actions")
    actions.DeclareLaunchArgument = lambda name, default_value, description: (name, default_value)
    actions.OpaqueFunction = lambda function: function
    subs = types.ModuleType("launch.substitutions")
    subs.LaunchConfiguration = LaunchConfiguration
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")
    ros_actions.Node = Node
    for name, mod in {"launch": launch, "launch.actions": actions, "launch.substitutions": subs,
                      "launch_ros": launch_ros, "launch_ros.actions": ros_actions}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    spec = importlib.util.spec_from_file_location("lf", REPO / "launch" / "sim_campaign.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entities = module.generate_launch_description()
    defaults = dict(e for e in entities if isinstance(e, tuple))
    defaults.update(database="x.db", batches="3", physics=physics, vision=vision)
    entities[-1](defaults)
    names = {kw["name"]: kw for kw in created}
    assert set(names) == expected
    # With vision, the station server is the rack camera and the vision node reads its topic.
    camera = names["station_server"]["parameters"][0]["camera_topic"]
    assert (camera != "") == (vision == "true")
    if vision == "true":
        assert names["vision"]["parameters"][0]["image_topic"] == camera
    assert names["planner"]["parameters"][0]["vision"] is (vision == "true")
    assert names["planner"]["parameters"][0]["batches"] == 3
    assert names["planner"]["parameters"][0]["use_sim_time"] is True
    for kw in created:
        assert kw["package"] == "mobile_chemist"
        assert executable_path(kw["executable"]).exists()


def test_lab_description_map_and_markers_match_the_layout(lab):
    pytest.importorskip("visualization_msgs.msg")
    from mobile_chemist.lab_map import occupancy_grid, read_pgm
    from mobile_chemist.ros.lab_description_node import map_message, station_markers

    msg = map_message(lab)
    grid, resolution, origin = occupancy_grid(lab)
    assert (msg.info.width, msg.info.height) == (grid.shape[1], grid.shape[0])
    assert msg.info.resolution == pytest.approx(resolution)
    assert sum(v == 100 for v in msg.data) == int(grid.sum()) > 0
    # Same cells as the committed map file that map_server would serve (image rows top-down).
    pgm = read_pgm(REPO / "maps" / "lab.pgm")
    assert pgm.shape == grid.shape
    markers = station_markers(lab).markers
    names = {m.text for m in markers if m.ns == "names"}
    assert names == set(lab.stations)
    gc = next(m for m in markers if m.ns == "benches" and m.id == list(lab.stations).index("gc"))
    assert (gc.pose.position.x, gc.pose.position.y) == lab.stations["gc"].footprint.center


def test_rviz_config_shows_topics_the_nodes_publish():
    """Every topic the RViz config subscribes is one a node of this package publishes."""
    import re

    import yaml

    config = yaml.safe_load((REPO / "config" / "mobile_chemist.rviz").read_text())
    topics = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("Topic", "Description Topic") and isinstance(value, dict):
                    topics.add(value["Value"])
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(config)
    published = set()
    for path in (REPO / "mobile_chemist" / "ros").glob("*.py"):
        published |= set(re.findall(r'"(/[a-z_/]+)"', path.read_text()))
    assert topics - {"/initialpose"} <= published, topics - published
    assert config["Visualization Manager"]["Global Options"]["Fixed Frame"] == "map"
