"""ros2 launch mobile_chemist sim_campaign.launch.py [database:=...] [batches:=N] [physics:=true]
[vision:=false]

The simulated lab (clock, stations, discrete-event robot; with physics:=true the MuJoCo base
and the builtin navigation) and the planner, as described by mobile_chemist.graph (the same
description `mobile-chemist campaign [--physics]` runs without ROS launch).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from mobile_chemist.graph import physics_lab_graph, planner_node, sim_lab_graph

ARGUMENTS = {
    "database": ("campaign.db", "SQLite campaign record; an existing one is resumed"),
    "batches": ("0", "batches to run; 0 = the campaign's n_batches"),
    "lab_config": ("", "lab layout file; empty = the package's config/lab.yaml"),
    "campaign_config": ("", "campaign file; empty = the package's"),
    "workflow_config": ("", "workflow file; empty = the package's"),
    "real_time_factor": ("0.0", "sim seconds per wall second; 0 = as fast as possible"),
    "seed": ("0", "seed of the simulated instruments"),
    "physics": ("false", "drive the MuJoCo base with the builtin navigation"),
    "vision": ("true", "simulated rack camera + vision node; false skips the inspect steps"),
}


def _nodes(context):
    arg = {k: LaunchConfiguration(k).perform(context) for k in ARGUMENTS}
    lab_graph = physics_lab_graph if arg["physics"].lower() == "true" else sim_lab_graph
    vision = arg["vision"].lower() == "true"
    specs = lab_graph(lab_config=arg["lab_config"],
                      real_time_factor=float(arg["real_time_factor"]), seed=int(arg["seed"]),
                      vision=vision)
    specs.append(planner_node(database=arg["database"], lab_config=arg["lab_config"],
                              campaign_config=arg["campaign_config"],
                              workflow_config=arg["workflow_config"], batches=int(arg["batches"]),
                              vision=vision))
    return [Node(package="mobile_chemist", executable=s.executable, name=s.name,
                 parameters=[s.parameters], output="screen") for s in specs]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(k, default_value=d, description=t) for k, (d, t) in ARGUMENTS.items()]
        + [OpaqueFunction(function=_nodes)])
