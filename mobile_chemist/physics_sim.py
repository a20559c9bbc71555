"""Headless physics simulation of the lab and the mobile base with MuJoCo.

The MJCF model is built here, in memory, from the two sources of truth: config/lab.yaml
(walls, obstacles and station benches as boxes, with heights from config/sim.yaml) and
urdf/mobile_chemist.urdf (the base's collision box, mass and inertia, the laser mounts, the
arm and gripper chain). No second hand-written robot model exists.

The base moves on three planar joints (x, y in the map, yaw), driven by velocity
actuators that track the commanded body-frame twist after clamping to lab.yaml's speed
limits and ramping at sim.yaml's acceleration limits; the base box collides with the lab.
The arm and gripper joints are present and held at their home positions by position
servos (gravity-compensated) until the manipulation issue gives them commands.

Sensors: wheel odometry with configurable systematic scale error and random walk, and
planar safety-scanner scans cast with mj_multiRay against the lab (the robot's own body is
not seen), with Gaussian range noise and REP-117 range limits (+inf: no return within
range_max, -inf: closer than range_min).

Importable without ROS; the node is mobile_chemist.ros.physics_sim_node.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from mobile_chemist.config import (LabConfig, Pose2D, Reader, default_config_path, load_lab,
                                   load_yaml)
from mobile_chemist.lab_map import occupied_rects, wall_rects
from mobile_chemist.robot_description import ARM_HOME, DEFAULT_URDF

# Geom groups: rays see only the lab (group 0), never the robot itself.
LAB_GROUP = 0
ROBOT_GROUP = 3


# --------------------------------------------------------------------------- config ----

@dataclass(frozen=True)
class SimConfig:
    """config/sim.yaml: what the simulation adds to the lab layout and the URDF."""

    timestep: float = 0.004
    control_period: float = 0.02
    seed: int = 0
    wall_height: float = 2.5
    obstacle_height: float = 0.9
    station_height: float = 0.9
    height_overrides: dict = field(default_factory=dict)
    max_linear_accel: float = 0.5
    max_angular_accel: float = 1.0
    cmd_vel_timeout: float = 0.5
    at_rest_speed: float = 1e-3
    initial_station: str | None = None
    initial_pose: Pose2D | None = None
    odom_scale: tuple[float, float, float] = (0.0, 0.0, 0.0)       # x, y, yaw
    odom_walk_translation: float = 0.0
    odom_walk_yaw: float = 0.0
    odom_origin: str = "start"
    laser_range_min: float = 0.1
    laser_range_max: float = 30.0
    laser_angle_increment: float = math.radians(0.5)
    laser_fov: float = math.radians(270.0)
    laser_noise_sigma: float = 0.0
    laser_rate_hz: float = 12.5
    laser_frames: tuple[str, ...] = ("laser_front", "laser_rear")
    odom_hz: float = 50.0
    joint_states_hz: float = 20.0
    ground_truth_hz: float = 50.0
    source: str = ""

    def without_errors(self) -> "SimConfig":
        """The same simulation with perfect odometry and noise-free lasers (for tests)."""
        from dataclasses import replace

        return replace(self, odom_scale=(0.0, 0.0, 0.0), odom_walk_translation=0.0,
                       odom_walk_yaw=0.0, laser_noise_sigma=0.0)


def parse_sim_config(data: Mapping, source: str = "sim.yaml") -> SimConfig:
    """Validate a parsed sim.yaml."""
    root = Reader(data, source)

    def opt(reader: Reader, key: str, default, **bounds) -> float:
        return reader.child(key, required=False, default=default).number(**bounds)

    phys = root.child("physics", required=False, default={})
    heights = root.child("heights", required=False, default={})
    base = root.child("base", required=False, default={})
    odom = root.child("odometry", required=False, default={})
    lasers = root.child("lasers", required=False, default={})
    pub = root.child("publish", required=False, default={})
    timestep = opt(phys, "timestep", 0.004, low=1e-4, high=0.05)
    period = opt(phys, "control_period", 0.02, low=timestep, high=1.0)
    initial = base.child("initial", required=False, default={}).mapping()
    station, pose = initial.get("station"), None
    if "pose" in initial:
        p = Reader(initial["pose"], f"{source}.base.initial.pose")
        pose = Pose2D(p.child("x").number(), p.child("y").number(), p.child("yaw").number())
    scale = odom.child("scale_error", required=False, default={})
    walk = odom.child("random_walk", required=False, default={})
    origin = str(odom.child("origin", required=False, default="start").data)
    if origin not in ("start", "map"):
        raise odom.child("origin").error(f"must be 'start' or 'map', got {origin!r}")
    return SimConfig(
        timestep=timestep,
        control_period=period,
        seed=phys.child("seed", required=False, default=0).integer(low=0),
        wall_height=opt(heights, "wall", 2.5, low=0.01),
        obstacle_height=opt(heights, "obstacle", 0.9, low=0.01),
        station_height=opt(heights, "station", 0.9, low=0.01),
        height_overrides={k: r.number(low=0.01) for k, r in
                          heights.child("overrides", required=False, default={}).items()},
        max_linear_accel=opt(base, "max_linear_accel", 0.5, low=1e-3),
        max_angular_accel=opt(base, "max_angular_accel", 1.0, low=1e-3),
        cmd_vel_timeout=opt(base, "cmd_vel_timeout", 0.5, low=0.0),
        at_rest_speed=opt(base, "at_rest_speed", 1e-3, low=0.0),
        initial_station=str(station) if station else None,
        initial_pose=pose,
        odom_scale=(opt(scale, "x", 0.0, low=-0.5, high=0.5),
                    opt(scale, "y", 0.0, low=-0.5, high=0.5),
                    opt(scale, "yaw", 0.0, low=-0.5, high=0.5)),
        odom_walk_translation=opt(walk, "translation", 0.0, low=0.0),
        odom_walk_yaw=opt(walk, "yaw", 0.0, low=0.0),
        odom_origin=origin,
        laser_range_min=opt(lasers, "range_min", 0.1, low=0.0),
        laser_range_max=opt(lasers, "range_max", 30.0, low=0.1),
        laser_angle_increment=math.radians(opt(lasers, "angle_increment_deg", 0.5, low=0.01)),
        laser_fov=math.radians(opt(lasers, "fov_deg", 270.0, low=1.0, high=360.0)),
        laser_noise_sigma=opt(lasers, "range_noise_sigma", 0.0, low=0.0),
        laser_rate_hz=opt(lasers, "rate_hz", 12.5, low=0.1),
        laser_frames=tuple(str(f) for f in lasers.child(
            "frames", required=False, default=["laser_front", "laser_rear"]).list()),
        odom_hz=opt(pub, "odom_hz", 50.0, low=0.1),
        joint_states_hz=opt(pub, "joint_states_hz", 20.0, low=0.1),
        ground_truth_hz=opt(pub, "ground_truth_hz", 50.0, low=0.1),
        source=source,
    )


def load_sim_config(path: str | Path | None = None) -> SimConfig:
    """Load and validate config/sim.yaml (or another simulation settings file)."""
    path = Path(path) if path else default_config_path("sim.yaml")
    return parse_sim_config(load_yaml(path), str(path))


# ----------------------------------------------------------------------------- URDF ----

def rpy_to_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """URDF's fixed-axis roll-pitch-yaw: R = Rz(yaw) Ry(pitch) Rx(roll)."""
    cr, sr, cp, sp, cy, sy = (math.cos(roll), math.sin(roll), math.cos(pitch),
                              math.sin(pitch), math.cos(yaw), math.sin(yaw))
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


def matrix_to_quat(r: np.ndarray) -> tuple[float, float, float, float]:
    """Rotation matrix -> unit quaternion (w, x, y, z), w >= 0."""
    t = np.trace(r)
    if t > 0:
        s = math.sqrt(t + 1.0) * 2
        q = (0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s)
    else:
        i = int(np.argmax(np.diag(r)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = math.sqrt(1.0 + r[i, i] - r[j, j] - r[k, k]) * 2
        v = [0.0, 0.0, 0.0]
        v[i] = 0.25 * s
        v[j] = (r[j, i] + r[i, j]) / s
        v[k] = (r[k, i] + r[i, k]) / s
        q = ((r[k, j] - r[j, k]) / s, *v)
    q = np.array(q) / np.linalg.norm(q)
    if q[0] < 0:
        q = -q
    return tuple(float(v) for v in q)


def yaw_to_quat(yaw: float) -> tuple[float, float, float, float]:
    """(w, x, y, z) of a rotation about z."""
    return (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))


def _floats(text: str | None, n: int = 3, default: float = 0.0) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split()) if text else (default,) * n


@dataclass(frozen=True)
class UrdfGeom:
    kind: str                       # box | cylinder
    size: tuple[float, ...]         # box: full sizes; cylinder: radius, length
    xyz: tuple[float, float, float]
    rpy: tuple[float, float, float]


@dataclass(frozen=True)
class UrdfLink:
    name: str
    mass: float | None = None
    com: tuple[float, float, float] = (0.0, 0.0, 0.0)
    inertia: tuple[float, float, float] = (0.0, 0.0, 0.0)    # principal, as generated
    collisions: tuple[UrdfGeom, ...] = ()


@dataclass(frozen=True)
class UrdfJoint:
    name: str
    type: str                       # fixed | revolute | prismatic | continuous
    parent: str
    child: str
    xyz: tuple[float, float, float]
    rpy: tuple[float, float, float]
    axis: tuple[float, float, float] = (1.0, 0.0, 0.0)
    lower: float = 0.0
    upper: float = 0.0
    velocity: float = 0.0
    effort: float = 0.0
    mimic: str | None = None
    multiplier: float = 1.0

    @property
    def origin(self) -> np.ndarray:
        """The 4x4 transform of the child link in the parent at zero joint position."""
        t = np.eye(4)
        t[:3, :3] = rpy_to_matrix(*self.rpy)
        t[:3, 3] = self.xyz
        return t

    def transform(self, q: float = 0.0) -> np.ndarray:
        """The 4x4 transform of the child link in the parent at joint position q."""
        t = self.origin
        if self.type in ("revolute", "continuous") and q:
            axis = np.asarray(self.axis) / np.linalg.norm(self.axis)
            k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]],
                          [-axis[1], axis[0], 0]])
            rot = np.eye(3) + math.sin(q) * k + (1 - math.cos(q)) * k @ k
            t[:3, :3] = t[:3, :3] @ rot
        elif self.type == "prismatic" and q:
            t[:3, 3] += t[:3, :3] @ (np.asarray(self.axis) * q)
        return t


class RobotModel:
    """The parts of the URDF the simulation needs: links, joints and the tree."""

    def __init__(self, links: Sequence[UrdfLink], joints: Sequence[UrdfJoint], name: str = ""):
        self.name = name
        self.links = {link.name: link for link in links}
        self.joints = {joint.name: joint for joint in joints}
        children = {j.child for j in joints}
        roots = [n for n in self.links if n not in children]
        if len(roots) != 1:
            raise ValueError(f"URDF must have exactly one root link, found {roots}")
        self.root = roots[0]

    @classmethod
    def from_urdf(cls, path: str | Path = DEFAULT_URDF) -> "RobotModel":
        root = ET.parse(path).getroot()
        links = []
        for link in root.findall("link"):
            inertial = link.find("inertial")
            kwargs = {}
            if inertial is not None:
                inertia = inertial.find("inertia").attrib
                kwargs = dict(mass=float(inertial.find("mass").get("value")),
                              com=_floats(inertial.find("origin").get("xyz")),
                              inertia=(float(inertia["ixx"]), float(inertia["iyy"]),
                                       float(inertia["izz"])))
            geoms = []
            for col in link.findall("collision"):
                origin = col.find("origin")
                g = col.find("geometry")[0]
                size = (_floats(g.get("size")) if g.tag == "box"
                        else (float(g.get("radius")), float(g.get("length"))))
                geoms.append(UrdfGeom(g.tag, size, _floats(origin.get("xyz")),
                                      _floats(origin.get("rpy"))))
            links.append(UrdfLink(link.get("name"), collisions=tuple(geoms), **kwargs))
        joints = []
        for j in root.findall("joint"):
            origin = j.find("origin")
            axis = j.find("axis")
            limit = j.find("limit")
            mimic = j.find("mimic")
            lim = limit.attrib if limit is not None else {}
            joints.append(UrdfJoint(
                name=j.get("name"), type=j.get("type"), parent=j.find("parent").get("link"),
                child=j.find("child").get("link"),
                xyz=_floats(origin.get("xyz") if origin is not None else None),
                rpy=_floats(origin.get("rpy") if origin is not None else None),
                axis=_floats(axis.get("xyz")) if axis is not None else (1.0, 0.0, 0.0),
                lower=float(lim.get("lower", 0.0)), upper=float(lim.get("upper", 0.0)),
                velocity=float(lim.get("velocity", 0.0)), effort=float(lim.get("effort", 0.0)),
                mimic=mimic.get("joint") if mimic is not None else None,
                multiplier=float(mimic.get("multiplier", 1.0)) if mimic is not None else 1.0))
        return cls(links, joints, root.get("name", ""))

    def child_joints(self, link: str) -> list[UrdfJoint]:
        return [j for j in self.joints.values() if j.parent == link]

    def movable_joints(self) -> list[UrdfJoint]:
        """Joints with a degree of freedom, in tree order (mimic joints included)."""
        out: list[UrdfJoint] = []

        def walk(link: str) -> None:
            for j in self.child_joints(link):
                if j.type != "fixed":
                    out.append(j)
                walk(j.child)

        walk(self.root)
        return out

    def fixed_joints(self) -> list[UrdfJoint]:
        return [j for j in self.joints.values() if j.type == "fixed"]

    def transform(self, parent: str, child: str, q: Mapping[str, float] | None = None
                  ) -> np.ndarray:
        """The 4x4 pose of link `child` in link `parent` (an ancestor), at positions q."""
        q = q or {}
        by_child = {j.child: j for j in self.joints.values()}
        t = np.eye(4)
        link = child
        while link != parent:
            if link not in by_child:
                raise ValueError(f"{parent!r} is not an ancestor of {child!r}")
            j = by_child[link]
            t = j.transform(q.get(j.name, 0.0)) @ t
            link = j.parent
        return t


# ----------------------------------------------------------------------------- MJCF ----

def _v(values) -> str:
    return " ".join(f"{float(v):.9g}" for v in values)


def _box_geom(parent: ET.Element, name: str, cx: float, cy: float, sx: float, sy: float,
              yaw: float, height: float) -> None:
    ET.SubElement(parent, "geom", name=name, type="box", group=str(LAB_GROUP),
                  pos=_v((cx, cy, height / 2)), size=_v((sx / 2, sy / 2, height / 2)),
                  quat=_v(yaw_to_quat(yaw)), rgba="0.7 0.7 0.7 1")


def _robot_body(parent: ET.Element, robot: RobotModel, link_name: str, movable: list) -> None:
    """Add the bodies, geoms and joints of `link_name`'s subtree under element `parent`."""
    link = robot.links[link_name]
    body = parent
    if link.mass is not None:
        ET.SubElement(body, "inertial", pos=_v(link.com), mass=f"{link.mass:.9g}",
                      diaginertia=_v(link.inertia))
    for i, g in enumerate(link.collisions):
        rot = rpy_to_matrix(*g.rpy)
        is_base = link_name == "base_link"
        attrs = dict(name=f"{link_name}_collision_{i}", group=str(ROBOT_GROUP),
                     pos=_v(g.xyz), quat=_v(matrix_to_quat(rot)), rgba="1 0.42 0.04 1",
                     # Only the base collides for now; the arm's contacts come with grasping.
                     contype="2" if is_base else "0", conaffinity="1" if is_base else "0",
                     mass="0")
        if g.kind == "box":
            ET.SubElement(body, "geom", type="box", size=_v(np.asarray(g.size) / 2), **attrs)
        else:
            ET.SubElement(body, "geom", type="cylinder", size=_v((g.size[0], g.size[1] / 2)),
                          **attrs)
    for j in robot.child_joints(link_name):
        child = ET.SubElement(body, "body", name=j.child, pos=_v(j.xyz),
                              quat=_v(matrix_to_quat(rpy_to_matrix(*j.rpy))))
        if j.type in ("revolute", "continuous", "prismatic"):
            kind = "slide" if j.type == "prismatic" else "hinge"
            attrs = dict(name=j.name, type=kind, axis=_v(j.axis), damping="5" if kind ==
                         "hinge" else "20", armature="0.1" if kind == "hinge" else "0.01")
            if j.type != "continuous":
                attrs.update(limited="true", range=_v((j.lower, j.upper)))
            ET.SubElement(child, "joint", **attrs)
            movable.append(j)
        # The servos hold positions without sag; the planar base has no vertical freedom,
        # so compensating every robot body changes nothing else.
        child.set("gravcomp", "1")
        if j.child == "camera_color_optical_frame":
            # MuJoCo cameras look along -z with y up; the optical frame looks along +z, y down.
            ET.SubElement(child, "camera", name="wrist_camera", quat="0 1 0 0", fovy="42")
        _robot_body(child, robot, j.child, movable)


def build_mjcf(lab: LabConfig, robot: RobotModel, sim: SimConfig) -> str:
    """The MJCF text of the lab with the robot, base at the origin (set qpos to place it)."""
    mj = ET.Element("mujoco", model=f"{lab.name}_{robot.name}")
    ET.SubElement(mj, "compiler", angle="radian", autolimits="true")
    ET.SubElement(mj, "option", timestep=f"{sim.timestep:.9g}", integrator="implicitfast")
    world = ET.SubElement(mj, "worldbody")
    ET.SubElement(world, "light", pos=_v((lab.size[0] / 2, lab.size[1] / 2, 4.0)),
                  dir="0 0 -1", directional="true")
    ET.SubElement(world, "geom", name="floor", type="plane", group=str(LAB_GROUP),
                  pos=_v((lab.size[0] / 2, lab.size[1] / 2, 0.0)),
                  size=_v((lab.size[0] / 2 + 1, lab.size[1] / 2 + 1, 0.1)),
                  contype="0", conaffinity="0", rgba="0.85 0.85 0.8 1")
    heights = sim.height_overrides
    for rect in wall_rects(lab):
        _box_geom(world, rect.name, *rect.center, *rect.size, rect.yaw,
                  heights.get(rect.name, sim.wall_height))
    station_names = set(lab.stations)
    for rect in occupied_rects(lab):
        default = sim.station_height if rect.name in station_names else sim.obstacle_height
        _box_geom(world, rect.name, *rect.center, *rect.size, rect.yaw,
                  heights.get(rect.name, default))

    # The base: three planar joints on a massless carrier at the floor (base_footprint).
    base = ET.SubElement(world, "body", name=robot.root, pos="0 0 0")
    for name, kind, axis in (("base_x", "slide", "1 0 0"), ("base_y", "slide", "0 1 0"),
                             ("base_yaw", "hinge", "0 0 1")):
        ET.SubElement(base, "joint", name=name, type=kind, axis=axis, damping="0")
    movable: list[UrdfJoint] = []
    _robot_body(base, robot, robot.root, movable)

    # Velocity gains from the robot's mass and yaw inertia (URDF, arm at zero), so the
    # base tracks commands with the same time constant whatever the payload.
    total_mass = yaw_inertia = 0.0
    for link in robot.links.values():
        if link.mass:
            t = robot.transform(robot.root, link.name)
            com = t[:3, :3] @ np.asarray(link.com) + t[:3, 3]
            total_mass += link.mass
            yaw_inertia += link.inertia[2] + link.mass * (com[0] ** 2 + com[1] ** 2)
    act = ET.SubElement(mj, "actuator")
    tau = 0.05   # s, velocity tracking time constant of the base's wheel controllers
    for name, gain, limit in (("base_x", total_mass / tau, 3000.0),
                              ("base_y", total_mass / tau, 3000.0),
                              ("base_yaw", yaw_inertia / tau, 1500.0)):
        ET.SubElement(act, "velocity", name=f"{name}_vel", joint=name, kv=f"{gain:.9g}",
                      forcerange=_v((-limit, limit)))
    equality = ET.SubElement(mj, "equality")
    for j in movable:
        if j.mimic:
            ET.SubElement(equality, "joint", joint1=j.name, joint2=j.mimic,
                          polycoef=_v((0.0, j.multiplier, 0.0, 0.0, 0.0)))
            continue
        kp = 2000.0 if j.type != "prismatic" else 500.0
        ET.SubElement(act, "position", name=f"{j.name}_pos", joint=j.name, kp=f"{kp:.9g}",
                      dampratio="1", forcerange=_v((-j.effort, j.effort)),
                      ctrlrange=_v((j.lower, j.upper)))
    if len(equality) == 0:
        mj.remove(equality)
    ET.indent(mj, space="  ")
    return ET.tostring(mj, encoding="unicode")


# ------------------------------------------------------------------------ simulator ----

@dataclass
class LaserScan:
    """One scan in the laser frame: ranges[i] at angle_min + i * angle_increment."""

    frame_id: str
    angle_min: float
    angle_max: float
    angle_increment: float
    range_min: float
    range_max: float
    scan_time: float
    ranges: np.ndarray

    @property
    def angles(self) -> np.ndarray:
        return self.angle_min + np.arange(len(self.ranges)) * self.angle_increment


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


class PhysicsLab:
    """The lab and the robot in MuJoCo: velocity-commanded base, odometry, laser scans."""

    def __init__(self, lab: LabConfig | None = None, sim: SimConfig | None = None,
                 urdf: str | Path | RobotModel | None = None, seed: int | None = None,
                 initial_pose: Pose2D | None = None):
        import mujoco

        self._mj = mujoco
        self.lab = lab or load_lab()
        self.sim = sim or load_sim_config()
        self.robot = urdf if isinstance(urdf, RobotModel) else RobotModel.from_urdf(
            urdf or DEFAULT_URDF)
        self.mjcf = build_mjcf(self.lab, self.robot, self.sim)
        self.model = mujoco.MjModel.from_xml_string(self.mjcf)
        self.data = mujoco.MjData(self.model)
        self.rng = np.random.default_rng(self.sim.seed if seed is None else seed)
        m = self.model
        jid = lambda n: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n)  # noqa: E731
        self._base_q = [int(m.jnt_qposadr[jid(n)]) for n in ("base_x", "base_y", "base_yaw")]
        self._base_v = [int(m.jnt_dofadr[jid(n)]) for n in ("base_x", "base_y", "base_yaw")]
        self._base_act = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, f"{n}_vel")
                          for n in ("base_x", "base_y", "base_yaw")]
        #: Arm and gripper joints (URDF names) -> qpos address; position actuator id or None.
        self.joint_names = [j.name for j in self.robot.movable_joints()]
        self._joint_q = {n: int(m.jnt_qposadr[jid(n)]) for n in self.joint_names}
        self._joint_v = {n: int(m.jnt_dofadr[jid(n)]) for n in self.joint_names}
        self._joint_act = {n: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, f"{n}_pos")
                           for n in self.joint_names}
        home = dict(zip([f"iiwa_joint_{i}" for i in range(1, 8)], ARM_HOME))
        for name in self.joint_names:
            self.data.qpos[self._joint_q[name]] = home.get(name, 0.0)
            if self._joint_act[name] >= 0:
                self.data.ctrl[self._joint_act[name]] = home.get(name, 0.0)

        # Lasers: body ids and beam directions in the laser frame.
        s = self.sim
        n_beams = int(round(s.laser_fov / s.laser_angle_increment)) + 1
        self._beam_angles = -s.laser_fov / 2 + np.arange(n_beams) * s.laser_angle_increment
        self._beam_dirs = np.stack([np.cos(self._beam_angles), np.sin(self._beam_angles),
                                    np.zeros(n_beams)], axis=1)
        self.laser_frames = list(s.laser_frames)
        self._laser_body = {}
        for frame in self.laser_frames:
            bid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, frame)
            if bid < 0:
                raise ValueError(f"laser frame {frame!r} is not a link of the URDF")
            self._laser_body[frame] = bid
        self._geomgroup = np.zeros(6, dtype=np.uint8)
        self._geomgroup[LAB_GROUP] = 1
        self._ray_geomid = np.zeros(n_beams, dtype=np.int32)
        self._ray_dist = np.zeros(n_beams, dtype=np.float64)

        # Commands: target twist (body frame) and the ramped twist actually applied.
        self._cmd_target = np.zeros(3)
        self._cmd = np.zeros(3)
        self.set_pose(initial_pose or self._initial_pose())
        self._odom_rng = self.rng

    # --- state -----------------------------------------------------------------------

    def _initial_pose(self) -> Pose2D:
        if self.sim.initial_pose is not None:
            return self.sim.initial_pose
        station = self.sim.initial_station or self.lab.robot.home_station
        return self.lab.station(station).approach

    def set_pose(self, pose: Pose2D) -> None:
        """Teleport the base to `pose` at rest and restart odometry there."""
        q = self.data.qpos
        q[self._base_q[0]], q[self._base_q[1]], q[self._base_q[2]] = pose.x, pose.y, pose.yaw
        for i in self._base_v:
            self.data.qvel[i] = 0.0
        self._cmd[:] = 0.0
        self._cmd_target[:] = 0.0
        self._mj.mj_forward(self.model, self.data)
        self.odom_origin = (Pose2D(0.0, 0.0, 0.0) if self.sim.odom_origin == "map"
                            else self.ground_truth_pose())
        gt = self.ground_truth_pose()
        if self.sim.odom_origin == "map":
            self._odom = np.array([gt.x, gt.y, gt.yaw])
        else:
            self._odom = np.zeros(3)
        self._odom_vel = np.zeros(3)
        self._last_gt = np.array([gt.x, gt.y, gt.yaw])
        self.distance_travelled = 0.0

    @property
    def time(self) -> float:
        """Simulated seconds stepped so far (the node's clock adds idle jumps to this)."""
        return float(self.data.time)

    def ground_truth_pose(self) -> Pose2D:
        """base_footprint in the map frame, exact (for benchmarks and tests only)."""
        q = self.data.qpos
        return Pose2D(float(q[self._base_q[0]]), float(q[self._base_q[1]]),
                      _wrap(float(q[self._base_q[2]])))

    def ground_truth_velocity(self) -> tuple[float, float, float]:
        """Exact body-frame twist (vx, vy, wz) of base_footprint."""
        v = self.data.qvel
        vx_w, vy_w, wz = (float(v[i]) for i in self._base_v)
        yaw = float(self.data.qpos[self._base_q[2]])
        c, s = math.cos(yaw), math.sin(yaw)
        return (c * vx_w + s * vy_w, -s * vx_w + c * vy_w, wz)

    def odom_pose(self) -> Pose2D:
        """base_footprint in the odom frame, as wheel odometry estimates it."""
        return Pose2D(float(self._odom[0]), float(self._odom[1]), _wrap(float(self._odom[2])))

    def odom_velocity(self) -> tuple[float, float, float]:
        """Body-frame twist as wheel odometry measures it."""
        return tuple(float(v) for v in self._odom_vel)

    def joint_positions(self) -> dict[str, float]:
        """Arm and gripper joint positions by URDF joint name."""
        return {n: float(self.data.qpos[a]) for n, a in self._joint_q.items()}

    def joint_velocities(self) -> dict[str, float]:
        """Arm and gripper joint velocities by URDF joint name."""
        return {n: float(self.data.qvel[a]) for n, a in self._joint_v.items()}

    def set_joint_targets(self, targets: Mapping[str, float]) -> None:
        """Position targets for the arm/gripper servos (clamped to the URDF limits)."""
        for name, value in targets.items():
            act = self._joint_act.get(name, -1)
            if act < 0:
                raise KeyError(f"no position-controlled joint {name!r}")
            lo, hi = self.model.actuator_ctrlrange[act]
            self.data.ctrl[act] = min(max(float(value), lo), hi)

    def at_rest(self) -> bool:
        """No motion commanded and the base (practically) still."""
        speed = max(abs(float(self.data.qvel[i])) for i in self._base_v)
        return (not self._cmd_target.any() and not self._cmd.any()
                and speed < self.sim.at_rest_speed)

    # --- commands and stepping ---------------------------------------------------------

    def set_cmd_vel(self, vx: float, vy: float, wz: float) -> None:
        """Command a body-frame twist; clamped to lab.yaml's robot speed limits."""
        vals = [float(v) if math.isfinite(v) else 0.0 for v in (vx, vy, wz)]
        lin = math.hypot(vals[0], vals[1])
        vmax = self.lab.robot.max_linear_speed
        if lin > vmax:
            vals[0] *= vmax / lin
            vals[1] *= vmax / lin
        wmax = self.lab.robot.max_angular_speed
        vals[2] = min(max(vals[2], -wmax), wmax)
        self._cmd_target[:] = vals

    @property
    def cmd_vel(self) -> tuple[float, float, float]:
        """The twist the base controller applies now (after the acceleration ramp)."""
        return tuple(float(v) for v in self._cmd)

    def step(self, duration: float | None = None) -> None:
        """Advance the physics by `duration` (default: one control period)."""
        s = self.sim
        duration = s.control_period if duration is None else duration
        n_periods = max(1, int(round(duration / s.control_period)))
        steps = max(1, int(round(s.control_period / s.timestep)))
        for _ in range(n_periods):
            self._ramp(s.control_period)
            c = math.cos(float(self.data.qpos[self._base_q[2]]))
            sn = math.sin(float(self.data.qpos[self._base_q[2]]))
            vx, vy, wz = self._cmd
            ctrl = self.data.ctrl
            ctrl[self._base_act[0]] = c * vx - sn * vy
            ctrl[self._base_act[1]] = sn * vx + c * vy
            ctrl[self._base_act[2]] = wz
            # The world-frame target follows the yaw within the period; the 0.02 s lag is
            # far below the velocity loop's own time constant.
            self._mj.mj_step(self.model, self.data, nstep=steps)
            self._update_odometry(s.control_period)

    def _ramp(self, dt: float) -> None:
        s = self.sim
        d = self._cmd_target - self._cmd
        lin = math.hypot(d[0], d[1])
        max_lin = s.max_linear_accel * dt
        if lin > max_lin:
            d[:2] *= max_lin / lin
        d[2] = min(max(d[2], -s.max_angular_accel * dt), s.max_angular_accel * dt)
        self._cmd += d

    def _update_odometry(self, dt: float) -> None:
        q = self.data.qpos
        gt = np.array([q[self._base_q[0]], q[self._base_q[1]], q[self._base_q[2]]])
        dxw, dyw = gt[0] - self._last_gt[0], gt[1] - self._last_gt[1]
        dth = gt[2] - self._last_gt[2]
        mid = self._last_gt[2] + dth / 2
        c, s = math.cos(mid), math.sin(mid)
        body = np.array([c * dxw + s * dyw, -s * dxw + c * dyw, dth])
        self._last_gt = gt
        sim = self.sim
        meas = body * (1.0 + np.asarray(sim.odom_scale))
        dist = math.hypot(body[0], body[1])
        self.distance_travelled += dist
        if sim.odom_walk_translation > 0 and dist > 0:
            meas[:2] += self._odom_rng.normal(0.0, sim.odom_walk_translation * math.sqrt(dist), 2)
        if sim.odom_walk_yaw > 0 and (dist > 0 or dth != 0):
            meas[2] += self._odom_rng.normal(0.0, sim.odom_walk_yaw
                                             * math.sqrt(dist + abs(dth)))
        mid_odom = self._odom[2] + meas[2] / 2
        c, s = math.cos(mid_odom), math.sin(mid_odom)
        self._odom += (c * meas[0] - s * meas[1], s * meas[0] + c * meas[1], meas[2])
        self._odom_vel = meas / dt

    # --- sensors -------------------------------------------------------------------

    def laser_pose(self, frame: str) -> tuple[np.ndarray, np.ndarray]:
        """World position (3,) and rotation (3, 3) of a laser frame, current."""
        self._mj.mj_kinematics(self.model, self.data)
        bid = self._laser_body[frame]
        return self.data.xpos[bid].copy(), self.data.xmat[bid].reshape(3, 3).copy()

    def scan(self, frame: str, noise: bool = True) -> LaserScan:
        """Cast one scan of the named laser from the current state."""
        s = self.sim
        pos, rot = self.laser_pose(frame)
        vec = (self._beam_dirs @ rot.T).ravel()
        n = len(self._beam_angles)
        self._mj.mj_multiRay(self.model, self.data, pos, vec, self._geomgroup, 1, -1,
                             self._ray_geomid, self._ray_dist, None, n, s.laser_range_max)
        dist = self._ray_dist.copy()
        hit = dist >= 0
        if noise and s.laser_noise_sigma > 0:
            dist[hit] += self.rng.normal(0.0, s.laser_noise_sigma, int(hit.sum()))
        ranges = np.full(n, np.inf)
        ranges[hit] = dist[hit]
        ranges[hit & (dist > s.laser_range_max)] = np.inf
        ranges[hit & (dist < s.laser_range_min)] = -np.inf
        return LaserScan(frame_id=frame, angle_min=float(self._beam_angles[0]),
                         angle_max=float(self._beam_angles[-1]),
                         angle_increment=s.laser_angle_increment,
                         range_min=s.laser_range_min, range_max=s.laser_range_max,
                         scan_time=1.0 / s.laser_rate_hz, ranges=ranges)


# ---------------------------------------------------------------------------- bench ----

def bench(sim_seconds: float = 60.0, lab: LabConfig | None = None,
          sim: SimConfig | None = None) -> dict:
    """Wall time of driving a circle with both lasers scanning at their configured rate.

    Measures the library alone (no ROS): physics steps, odometry and ray casts.
    """
    import time

    lab_sim = PhysicsLab(lab, sim, initial_pose=Pose2D(3.0, 6.0, 0.0))
    lab_sim.set_cmd_vel(0.3, 0.0, 0.15)
    period = 1.0 / lab_sim.sim.laser_rate_hz
    next_scan, scans = 0.0, 0
    start = time.perf_counter()
    while lab_sim.time < sim_seconds:
        lab_sim.step()
        if lab_sim.time >= next_scan:
            for frame in lab_sim.laser_frames:
                lab_sim.scan(frame)
                scans += 1
            next_scan += period
    wall = time.perf_counter() - start
    return {"sim_s": lab_sim.time, "wall_s": wall, "real_time_factor": lab_sim.time / wall,
            "scans": scans, "scan_hz_per_laser": scans / len(lab_sim.laser_frames) / lab_sim.time}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        description="Benchmark the physics simulation (no ROS), or write its MJCF.")
    parser.add_argument("--seconds", type=float, default=60.0, help="simulated seconds")
    parser.add_argument("--write-mjcf", metavar="PATH",
                        help="only write the generated MJCF (to inspect it in MuJoCo's viewer)")
    args = parser.parse_args(argv)
    if args.write_mjcf:
        lab = load_lab()
        Path(args.write_mjcf).write_text(build_mjcf(lab, RobotModel.from_urdf(),
                                                    load_sim_config()))
        print(f"wrote {args.write_mjcf}")
        return 0
    result = bench(args.seconds)
    print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                   for k, v in result.items()))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
