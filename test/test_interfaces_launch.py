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


@pytest.mark.parametrize("physics, expected", [
    ("false", {"sim_clock", "station_server", "robot_sim", "planner"}),
    ("true", {"physics_sim", "navigation", "station_server", "robot_sim", "planner"}),
])
def test_launch_file_starts_every_node_with_its_parameters(monkeypatch, physics, expected):
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
    defaults.update(database="x.db", batches="3", physics=physics)
    entities[-1](defaults)
    names = {kw["name"]: kw for kw in created}
    assert set(names) == expected
    assert names["planner"]["parameters"][0]["batches"] == 3
    assert names["planner"]["parameters"][0]["use_sim_time"] is True
    for kw in created:
        assert kw["package"] == "mobile_chemist"
        assert executable_path(kw["executable"]).exists()
