"""lab_description node: what RViz needs, from the one lab layout file.

Publishes (all transient-local, so RViz gets them whenever it starts):
- /map (nav_msgs/OccupancyGrid): the grid of mobile_chemist.lab_map, the same cells as
  maps/lab.pgm (on a robot Nav2's map_server serves that file instead: set publish_map false);
- /lab/stations (visualization_msgs/MarkerArray): each station's bench, name and approach pose;
- /robot_description (std_msgs/String): urdf/mobile_chemist.urdf, for RViz's RobotModel.
"""

from __future__ import annotations

import math
from pathlib import Path

from geometry_msgs.msg import Point, Pose
from nav_msgs.msg import OccupancyGrid
from rclpy.node import Node
from std_msgs.msg import ColorRGBA, String
from visualization_msgs.msg import Marker, MarkerArray

from mobile_chemist.config import LabConfig, load_lab
from mobile_chemist.lab_map import occupancy_grid
from mobile_chemist.ros.common import LATCHED_QOS, declare, spin_node

URDF = Path(__file__).resolve().parent.parent.parent / "urdf" / "mobile_chemist.urdf"


def _yaw_pose(x: float, y: float, z: float, yaw: float) -> Pose:
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = x, y, z
    pose.orientation.z, pose.orientation.w = math.sin(yaw / 2), math.cos(yaw / 2)
    return pose


def map_message(lab: LabConfig) -> OccupancyGrid:
    """The lab's occupancy grid as a ROS map (100 = occupied, 0 = free; row 0 at min y)."""
    grid, resolution, origin = occupancy_grid(lab)
    msg = OccupancyGrid()
    msg.header.frame_id = lab.frame_id
    msg.info.resolution = float(resolution)
    msg.info.height, msg.info.width = int(grid.shape[0]), int(grid.shape[1])
    msg.info.origin = _yaw_pose(origin[0], origin[1], 0.0, 0.0)
    msg.data = [100 if c else 0 for c in grid.astype(bool).ravel()]
    return msg


def station_markers(lab: LabConfig) -> MarkerArray:
    """Bench boxes, name labels and approach arrows for every station."""
    markers = MarkerArray()
    for i, st in enumerate(lab.stations.values()):
        fp, ap = st.footprint, st.approach
        bench = Marker(ns="benches", id=i, type=Marker.CUBE, action=Marker.ADD)
        bench.pose = _yaw_pose(fp.center[0], fp.center[1], 0.45, fp.yaw)
        bench.scale.x, bench.scale.y, bench.scale.z = fp.size[0], fp.size[1], 0.9
        bench.color = ColorRGBA(r=0.6, g=0.6, b=0.7, a=0.8)
        label = Marker(ns="names", id=i, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD, text=st.name)
        label.pose = _yaw_pose(fp.center[0], fp.center[1], 1.2, 0.0)
        label.scale.z = 0.25
        label.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
        arrow = Marker(ns="approach", id=i, type=Marker.ARROW, action=Marker.ADD)
        arrow.points = [Point(x=ap.x, y=ap.y, z=0.05),
                        Point(x=ap.x + 0.4 * math.cos(ap.yaw), y=ap.y + 0.4 * math.sin(ap.yaw), z=0.05)]
        arrow.scale.x, arrow.scale.y, arrow.scale.z = 0.05, 0.1, 0.1
        arrow.color = ColorRGBA(r=0.1, g=0.8, b=0.2, a=1.0)
        for m in (bench, label, arrow):
            m.header.frame_id = lab.frame_id
            markers.markers.append(m)
    return markers


class LabDescriptionNode(Node):
    def __init__(self):
        super().__init__("lab_description")
        lab_path = declare(self, "lab_config", "", "lab layout file; empty = the package's")
        publish_map = declare(self, "publish_map", True,
                              "publish /map from the layout (false where map_server runs)")
        lab = load_lab(lab_path or None)
        self._pubs = []
        if publish_map:
            self._publish(OccupancyGrid, "/map", map_message(lab))
        self._publish(MarkerArray, "/lab/stations", station_markers(lab))
        if URDF.exists():
            self._publish(String, "/robot_description", String(data=URDF.read_text()))

    def _publish(self, kind, topic, msg):
        pub = self.create_publisher(kind, topic, LATCHED_QOS)
        pub.publish(msg)
        self._pubs.append(pub)


def main(args=None):
    spin_node(LabDescriptionNode, args, num_threads=1)
