"""The URDF: committed file current, frames other code relies on, kinematics and limits."""

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from mobile_chemist.physics_sim import RobotModel
from mobile_chemist.robot_description import (DEFAULT_URDF, LASER_FOV, laser_mounts,
                                              urdf_text)

#: Frames that navigation, the TF tree, manipulation and vision name.
REQUIRED_LINKS = (["base_footprint", "base_link", "laser_front", "laser_rear", "tool0",
                   "camera_link", "camera_color_optical_frame", "gripper_base_link",
                   "gripper_finger_left", "gripper_finger_right", "gripper_tcp"]
                  + [f"iiwa_link_{i}" for i in range(8)])
# iiwa 14 R820 joint ranges (deg) and speeds (deg/s) from KUKA's data sheet.
IIWA_LIMITS = [(170, 85), (120, 85), (170, 100), (120, 75), (170, 130), (120, 135), (175, 135)]


@pytest.fixture(scope="module")
def root():
    return ET.parse(DEFAULT_URDF).getroot()


@pytest.fixture(scope="module")
def robot():
    return RobotModel.from_urdf(DEFAULT_URDF)


def test_committed_urdf_equals_fresh_generation(lab):
    assert DEFAULT_URDF.read_text() == urdf_text(lab), \
        "urdf/mobile_chemist.urdf is stale: run python -m mobile_chemist.robot_description"


def test_required_frames_and_a_single_tree(root, robot):
    links = [link.get("name") for link in root.findall("link")]
    assert len(links) == len(set(links))
    for name in REQUIRED_LINKS:
        assert name in links, name
    children = [j.find("child").get("link") for j in root.findall("joint")]
    assert len(children) == len(set(children)), "a link with two parents"
    assert robot.root == "base_footprint"
    for name in links:     # every link hangs off base_footprint
        robot.transform("base_footprint", name)


def test_base_geometry_follows_lab_yaml(lab, robot):
    base = robot.links["base_link"]
    (box,) = base.collisions
    assert box.kind == "box"
    assert box.size[:2] == pytest.approx(lab.robot.footprint)
    assert base.mass > 100
    assert all(i > 0 for i in base.inertia)
    t = robot.transform("base_footprint", "base_link")
    assert t[:3, :3] == pytest.approx(np.eye(3))
    assert t[2, 3] > 0                       # REP-105: base_link above the footprint
    assert t[2, 3] + box.xyz[2] - box.size[2] / 2 > 0   # body clear of the floor


def test_lasers_on_diagonal_corners_cover_all_directions(lab, robot):
    length, width = lab.robot.footprint
    poses = {}
    for name in ("laser_front", "laser_rear"):
        t = robot.transform("base_footprint", name)
        assert abs(t[0, 3]) < length / 2 and abs(t[1, 3]) < width / 2   # within the body
        assert t[2, 2] == pytest.approx(1.0)                            # scan plane level
        poses[name] = (t[0, 3], t[1, 3], math.atan2(t[1, 0], t[0, 0]))
    (fx, fy, _), (rx, ry, _) = poses["laser_front"], poses["laser_rear"]
    assert fx > 0 > rx and fx * fy < 0 and rx * ry < 0 and fy * ry < 0   # diagonal
    assert [m.name for m in laser_mounts(lab.robot.footprint)] == ["laser_front", "laser_rear"]
    for bearing in np.linspace(-math.pi, math.pi, 360, endpoint=False):
        px, py = 3.0 * math.cos(bearing), 3.0 * math.sin(bearing)
        seen = [abs((math.atan2(py - y, px - x) - yaw + math.pi) % (2 * math.pi) - math.pi)
                <= LASER_FOV / 2 + 1e-9 for x, y, yaw in poses.values()]
        assert any(seen), f"no scanner sees bearing {math.degrees(bearing):.0f} deg"


def test_arm_joints_have_iiwa_limits(robot):
    for i, (lim, vel) in enumerate(IIWA_LIMITS, start=1):
        j = robot.joints[f"iiwa_joint_{i}"]
        assert j.type == "revolute" and j.axis == (0.0, 0.0, 1.0)
        assert (j.parent, j.child) == (f"iiwa_link_{i - 1}", f"iiwa_link_{i}")
        assert j.lower == pytest.approx(-math.radians(lim), abs=1e-5)
        assert j.upper == pytest.approx(math.radians(lim), abs=1e-5)
        assert j.velocity == pytest.approx(math.radians(vel), abs=1e-5)
        assert j.effort > 0
    for name in ("iiwa_link_%d" % i for i in range(8)):
        link = robot.links[name]
        assert link.mass > 0 and all(v > 0 for v in link.inertia)
    movable = [j.name for j in robot.movable_joints()]
    assert movable[:7] == [f"iiwa_joint_{i}" for i in range(1, 8)]
    left = robot.joints["gripper_finger_left_joint"]
    right = robot.joints["gripper_finger_right_joint"]
    assert left.type == right.type == "prismatic" and 0 < left.upper < 0.1
    assert right.mimic == "gripper_finger_left_joint"


def test_arm_kinematics_match_the_iiwa_14(robot):
    # Stretched upright, the flange is 1.306 m above link_0 (0.36 + 0.42 + 0.4 + 0.126).
    t = robot.transform("iiwa_link_0", "tool0")
    assert t[:3, 3] == pytest.approx([0.0, 0.0, 1.306], abs=1e-6)
    assert t[:3, 2] == pytest.approx([0.0, 0.0, 1.0], abs=1e-5)
    # Joint 2 bends the arm in the x-z plane of link_0; joint 1 turns that plane.
    q = {"iiwa_joint_2": math.pi / 2}
    t = robot.transform("iiwa_link_0", "tool0", q)
    assert abs(t[1, 3]) < 1e-6 and t[2, 3] == pytest.approx(0.36, abs=1e-6)
    assert abs(t[0, 3]) == pytest.approx(0.946, abs=1e-6)
    q["iiwa_joint_1"] = math.pi / 2
    t2 = robot.transform("iiwa_link_0", "tool0", q)
    assert math.hypot(t2[0, 3], t2[1, 3]) == pytest.approx(0.946, abs=1e-6)
    assert abs(t2[0, 3]) < 1e-6


def test_camera_frames_follow_rep_103(robot):
    cam = robot.transform("tool0", "camera_link")
    # camera_link looks (x) along the tool axis (z of tool0), beside the gripper.
    assert cam[:3, 0] == pytest.approx([0.0, 0.0, 1.0], abs=1e-5)
    opt = robot.transform("camera_link", "camera_color_optical_frame")
    r = opt[:3, :3]
    assert r[:, 2] == pytest.approx([1.0, 0.0, 0.0], abs=1e-5)    # optical z = forward
    assert r[:, 0] == pytest.approx([0.0, -1.0, 0.0], abs=1e-5)   # optical x = right
    assert r[:, 1] == pytest.approx([0.0, 0.0, -1.0], abs=1e-5)   # optical y = down
