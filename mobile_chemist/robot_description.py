"""The robot description (URDF) of the mobile chemist, generated from config/lab.yaml.

A base in the spirit of the KUKA KMR iiwa (omnidirectional mecanum platform, two SICK
S300-class safety scanners on diagonally opposite corners), a 7-DOF iiwa 14 R820-like arm
with a parallel gripper, and an RGB-D camera on the wrist. The footprint comes from
lab.yaml's robot.footprint; every other dimension is a constant below, so the URDF stays
the single description that the physics simulation (mobile_chemist.physics_sim) reads.

    python -m mobile_chemist.robot_description            # writes urdf/mobile_chemist.urdf
    python -m mobile_chemist.robot_description --check    # exit 1 if the file is stale

Frames follow REP-103 (x forward, y left, z up), REP-105 (base_footprint on the floor below
base_link) and REP-144 (base_footprint, base_link); the camera's optical frame is z forward,
x right, y down.
"""

from __future__ import annotations

import argparse
import math
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from mobile_chemist.config import LabConfig, load_lab

#: Where the generated file is committed.
DEFAULT_URDF = Path(__file__).resolve().parent.parent / "urdf" / "mobile_chemist.urdf"

# --- Base (KMR 200-like platform) -------------------------------------------------------
BASE_MASS = 390.0            # kg, platform without the arm
BASE_LINK_HEIGHT = 0.125     # base_link origin above the floor: the mecanum wheel axles
BASE_CLEARANCE = 0.03        # body underside above the floor
BASE_TOP = 0.70              # platform top surface above the floor
WHEEL_RADIUS = 0.125
WHEEL_WIDTH = 0.10

# --- Safety laser scanners (SICK S300-like), on diagonal corners -------------------------
LASER_HEIGHT = 0.20          # scan plane above the floor
LASER_INSET = 0.07           # scanner centre inside the footprint corner (x and y)
LASER_FOV = math.radians(270.0)

# --- Arm (iiwa 14 R820): (child origin xyz, rpy) in the parent link, and its limits -----
ARM_MOUNT_XY = (0.363, -0.184)   # link_0 on the platform top, as on the KMR iiwa
ARM_JOINTS = [
    # name, xyz, rpy, lower/upper (deg), velocity (deg/s), effort (Nm)
    ("iiwa_joint_1", (0.0, 0.0, 0.1575), (0.0, 0.0, 0.0), 170.0, 85.0, 320.0),
    ("iiwa_joint_2", (0.0, 0.0, 0.2025), (math.pi / 2, 0.0, math.pi), 120.0, 85.0, 320.0),
    ("iiwa_joint_3", (0.0, 0.2045, 0.0), (math.pi / 2, 0.0, math.pi), 170.0, 100.0, 176.0),
    ("iiwa_joint_4", (0.0, 0.0, 0.2155), (math.pi / 2, 0.0, 0.0), 120.0, 75.0, 176.0),
    ("iiwa_joint_5", (0.0, 0.1845, 0.0), (-math.pi / 2, math.pi, 0.0), 170.0, 130.0, 110.0),
    ("iiwa_joint_6", (0.0, 0.0, 0.2155), (math.pi / 2, 0.0, 0.0), 120.0, 135.0, 40.0),
    ("iiwa_joint_7", (0.0, 0.081, 0.0), (-math.pi / 2, math.pi, 0.0), 175.0, 135.0, 40.0),
]
ARM_LINK_MASSES = [5.0, 4.0, 4.0, 3.0, 2.7, 1.7, 1.8, 0.3]   # iiwa_link_0..7, kg
ARM_LINK_RADIUS = 0.07
FLANGE_LENGTH = 0.045        # iiwa_link_7 origin to the flange (tool0)
#: A tucked pose for driving: the arm folded over the platform.
ARM_HOME = [0.0, -0.52, 0.0, 1.75, 0.0, -0.87, 0.0]

# --- Parallel gripper (Robotiq 2F-85-like) and wrist camera (RealSense D435-like) ------
GRIPPER_MASS = 0.9
GRIPPER_LENGTH = 0.12        # flange to finger base
GRIPPER_STROKE = 0.0425      # per finger, m
TCP_OFFSET = 0.16            # flange to the grasp centre between the fingertips
CAMERA_OFFSET = (0.0, -0.075, 0.03)   # camera_link in tool0
CAMERA_SIZE = (0.025, 0.09, 0.025)
CAMERA_MASS = 0.072
CAMERA_COLOR_Y = 0.015       # colour imager offset along camera_link y


@dataclass(frozen=True)
class LaserMount:
    """A scanner's pose in base_link and its field of view (from the URDF)."""

    name: str
    xyz: tuple[float, float, float]
    yaw: float


def laser_mounts(footprint: tuple[float, float]) -> list[LaserMount]:
    """Front-right and rear-left scanners, each looking out of its corner (KMR layout)."""
    hx = footprint[0] / 2 - LASER_INSET
    hy = footprint[1] / 2 - LASER_INSET
    z = LASER_HEIGHT - BASE_LINK_HEIGHT
    return [LaserMount("laser_front", (hx, -hy, z), -math.pi / 4),
            LaserMount("laser_rear", (-hx, hy, z), 3 * math.pi / 4)]


def _fmt(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _vec(values) -> str:
    return " ".join(_fmt(v) for v in values)


def _box_inertia(m: float, x: float, y: float, z: float) -> tuple[float, float, float]:
    return (m * (y * y + z * z) / 12, m * (x * x + z * z) / 12, m * (x * x + y * y) / 12)


def _cyl_inertia(m: float, r: float, h: float) -> tuple[float, float, float]:
    side = m * (3 * r * r + h * h) / 12
    return (side, side, m * r * r / 2)


class _Builder:
    def __init__(self, name: str):
        self.root = ET.Element("robot", name=name)

    def material(self, name: str, rgba: str) -> None:
        ET.SubElement(ET.SubElement(self.root, "material", name=name), "color", rgba=rgba)

    def link(self, name: str, *, mass: float | None = None, com=(0.0, 0.0, 0.0),
             inertia=None, geometry: tuple | None = None, origin=(0.0, 0.0, 0.0),
             rpy=(0.0, 0.0, 0.0), material: str | None = None, collision: bool = True):
        link = ET.SubElement(self.root, "link", name=name)
        if mass is not None:
            inert = ET.SubElement(link, "inertial")
            ET.SubElement(inert, "origin", xyz=_vec(com), rpy="0 0 0")
            ET.SubElement(inert, "mass", value=_fmt(mass))
            ixx, iyy, izz = inertia
            ET.SubElement(inert, "inertia", ixx=_fmt(ixx), ixy="0", ixz="0", iyy=_fmt(iyy),
                          iyz="0", izz=_fmt(izz))
        if geometry is not None:
            for tag in ("visual", "collision") if collision else ("visual",):
                elem = ET.SubElement(link, tag)
                ET.SubElement(elem, "origin", xyz=_vec(origin), rpy=_vec(rpy))
                geom = ET.SubElement(elem, "geometry")
                kind, *dims = geometry
                if kind == "box":
                    ET.SubElement(geom, "box", size=_vec(dims))
                else:
                    ET.SubElement(geom, "cylinder", radius=_fmt(dims[0]), length=_fmt(dims[1]))
                if tag == "visual" and material:
                    ET.SubElement(elem, "material", name=material)
        return link

    def joint(self, name: str, kind: str, parent: str, child: str, xyz=(0.0, 0.0, 0.0),
              rpy=(0.0, 0.0, 0.0), axis=None, limit: dict | None = None, mimic=None):
        joint = ET.SubElement(self.root, "joint", name=name, type=kind)
        ET.SubElement(joint, "parent", link=parent)
        ET.SubElement(joint, "child", link=child)
        ET.SubElement(joint, "origin", xyz=_vec(xyz), rpy=_vec(rpy))
        if axis is not None:
            ET.SubElement(joint, "axis", xyz=_vec(axis))
        if limit is not None:
            ET.SubElement(joint, "limit", **{k: _fmt(v) for k, v in limit.items()})
        if mimic is not None:
            ET.SubElement(joint, "mimic", joint=mimic[0], multiplier=_fmt(mimic[1]), offset="0")
        return joint


def build_urdf(lab: LabConfig) -> ET.Element:
    """The robot description as an XML element tree."""
    length, width = lab.robot.footprint
    b = _Builder(lab.robot.name)
    b.material("kuka_orange", "1 0.42 0.04 1")
    b.material("grey", "0.45 0.45 0.45 1")
    b.material("black", "0.1 0.1 0.1 1")
    b.material("yellow", "0.95 0.8 0.1 1")

    # Base: footprint on the floor, body box between clearance and top.
    b.link("base_footprint")
    body_h = BASE_TOP - BASE_CLEARANCE
    body_z = (BASE_TOP + BASE_CLEARANCE) / 2 - BASE_LINK_HEIGHT
    b.link("base_link", mass=BASE_MASS, com=(0.0, 0.0, body_z),
           inertia=_box_inertia(BASE_MASS, length, width, body_h),
           geometry=("box", length, width, body_h), origin=(0.0, 0.0, body_z),
           material="grey")
    b.joint("base_footprint_joint", "fixed", "base_footprint", "base_link",
            xyz=(0.0, 0.0, BASE_LINK_HEIGHT))
    # Mecanum wheels: fixed (the simulation moves the base holonomically), visual only.
    for name, sx, sy in (("front_left", 1, 1), ("front_right", 1, -1),
                         ("rear_left", -1, 1), ("rear_right", -1, -1)):
        b.link(f"wheel_{name}", mass=10.0, inertia=_cyl_inertia(10.0, WHEEL_RADIUS, WHEEL_WIDTH),
               geometry=("cylinder", WHEEL_RADIUS, WHEEL_WIDTH), rpy=(math.pi / 2, 0.0, 0.0),
               material="black", collision=False)
        b.joint(f"wheel_{name}_joint", "fixed", "base_link", f"wheel_{name}",
                xyz=(sx * (length / 2 - 0.2), sy * (width / 2 - WHEEL_WIDTH / 2), 0.0))
    for mount in laser_mounts((length, width)):
        b.link(mount.name, mass=1.2, inertia=_box_inertia(1.2, 0.1, 0.1, 0.15),
               geometry=("cylinder", 0.05, 0.15), material="yellow", collision=False)
        b.joint(f"{mount.name}_joint", "fixed", "base_link", mount.name, xyz=mount.xyz,
                rpy=(0.0, 0.0, mount.yaw))

    # Arm: iiwa_link_0 on the platform top, seven revolute joints about their z axes.
    b.link("iiwa_link_0", mass=ARM_LINK_MASSES[0], com=(0.0, 0.0, 0.07),
           inertia=_cyl_inertia(ARM_LINK_MASSES[0], ARM_LINK_RADIUS + 0.03, 0.15),
           geometry=("cylinder", ARM_LINK_RADIUS + 0.03, 0.15), origin=(0.0, 0.0, 0.075),
           material="grey")
    b.joint("iiwa_base_joint", "fixed", "base_link", "iiwa_link_0",
            xyz=(ARM_MOUNT_XY[0], ARM_MOUNT_XY[1], BASE_TOP - BASE_LINK_HEIGHT))
    for i, (name, xyz, rpy, lim, vel, effort) in enumerate(ARM_JOINTS, start=1):
        mass = ARM_LINK_MASSES[i]
        # Each link's body reaches towards the next joint origin; a cylinder approximates it.
        nxt = ARM_JOINTS[i][1] if i < len(ARM_JOINTS) else (0.0, 0.0, FLANGE_LENGTH)
        reach = max(math.dist((0, 0, 0), nxt), 0.04)
        b.link(f"iiwa_link_{i}", mass=mass, com=tuple(v / 2 for v in nxt),
               inertia=_cyl_inertia(mass, ARM_LINK_RADIUS, reach),
               geometry=("cylinder", ARM_LINK_RADIUS, reach), material="kuka_orange",
               origin=tuple(v / 2 for v in nxt),
               rpy=(math.pi / 2, 0.0, 0.0) if abs(nxt[1]) > abs(nxt[2]) else (0.0, 0.0, 0.0))
        b.joint(name, "revolute", f"iiwa_link_{i - 1}", f"iiwa_link_{i}", xyz=xyz, rpy=rpy,
                axis=(0.0, 0.0, 1.0),
                limit={"lower": -math.radians(lim), "upper": math.radians(lim),
                       "effort": effort, "velocity": math.radians(vel)})

    # Flange (ROS-Industrial tool0: z out of the flange), gripper and its TCP.
    b.link("tool0")
    b.joint("iiwa_joint_flange", "fixed", "iiwa_link_7", "tool0", xyz=(0.0, 0.0, FLANGE_LENGTH))
    b.link("gripper_base_link", mass=GRIPPER_MASS, com=(0.0, 0.0, GRIPPER_LENGTH / 2),
           inertia=_cyl_inertia(GRIPPER_MASS, 0.04, GRIPPER_LENGTH),
           geometry=("cylinder", 0.04, GRIPPER_LENGTH), origin=(0.0, 0.0, GRIPPER_LENGTH / 2),
           material="black")
    b.joint("gripper_mount_joint", "fixed", "tool0", "gripper_base_link")
    for side, sign in (("left", 1.0), ("right", -1.0)):
        b.link(f"gripper_finger_{side}", mass=0.05, com=(0.0, 0.0, 0.02),
               inertia=_box_inertia(0.05, 0.02, 0.01, 0.04),
               geometry=("box", 0.02, 0.01, 0.04), origin=(0.0, 0.0, 0.02), material="grey")
        b.joint(f"gripper_finger_{side}_joint", "prismatic", "gripper_base_link",
                f"gripper_finger_{side}", xyz=(0.0, 0.0, GRIPPER_LENGTH), axis=(0.0, sign, 0.0),
                limit={"lower": 0.0, "upper": GRIPPER_STROKE, "effort": 100.0, "velocity": 0.15},
                mimic=None if side == "left" else ("gripper_finger_left_joint", 1.0))
    b.link("gripper_tcp")
    b.joint("gripper_tcp_joint", "fixed", "tool0", "gripper_tcp", xyz=(0.0, 0.0, TCP_OFFSET))

    # Wrist RGB-D camera: camera_link with x along the tool axis, then the optical frame.
    b.link("camera_link", mass=CAMERA_MASS, inertia=_box_inertia(CAMERA_MASS, *CAMERA_SIZE),
           geometry=("box", *CAMERA_SIZE), material="grey")
    b.joint("camera_mount_joint", "fixed", "tool0", "camera_link", xyz=CAMERA_OFFSET,
            rpy=(0.0, -math.pi / 2, 0.0))
    b.link("camera_color_frame")
    b.joint("camera_color_joint", "fixed", "camera_link", "camera_color_frame",
            xyz=(0.0, CAMERA_COLOR_Y, 0.0))
    b.link("camera_color_optical_frame")
    b.joint("camera_color_optical_joint", "fixed", "camera_color_frame",
            "camera_color_optical_frame", rpy=(-math.pi / 2, 0.0, -math.pi / 2))
    return b.root


def urdf_text(lab: LabConfig) -> str:
    """The URDF as the text committed in urdf/mobile_chemist.urdf."""
    root = build_urdf(lab)
    ET.indent(root, space="  ")
    header = ("<?xml version=\"1.0\"?>\n"
              "<!-- Generated by `python -m mobile_chemist.robot_description` from "
              "config/lab.yaml; do not edit. -->\n")
    return header + ET.tostring(root, encoding="unicode") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", default=None, help="lab layout file (default config/lab.yaml)")
    parser.add_argument("--output", default=str(DEFAULT_URDF), help="URDF file to write")
    parser.add_argument("--check", action="store_true", help="only check the file is current")
    args = parser.parse_args(argv)
    text = urdf_text(load_lab(args.lab))
    out = Path(args.output)
    if args.check:
        current = out.read_text() if out.exists() else ""
        if current != text:
            print(f"{out} is stale: run python -m mobile_chemist.robot_description",
                  file=sys.stderr)
            return 1
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
