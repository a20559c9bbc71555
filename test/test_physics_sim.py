"""The MuJoCo lab: scans against analytic geometry, odometry drift, velocity commands, node."""

import dataclasses
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mujoco")

from mobile_chemist.config import Pose2D  # noqa: E402
from mobile_chemist.lab_map import occupied_rects, wall_rects  # noqa: E402
from mobile_chemist.physics_sim import PhysicsLab, load_sim_config, parse_sim_config  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sim_cfg():
    return load_sim_config()


@pytest.fixture(scope="module")
def exact(sim_cfg):
    """Noise- and drift-free settings."""
    return sim_cfg.without_errors()


def pose_of(frame_xyz_yaw, base: Pose2D):
    x, y, yaw = frame_xyz_yaw
    c, s = math.cos(base.yaw), math.sin(base.yaw)
    return base.x + c * x - s * y, base.y + s * x + c * y, base.yaw + yaw


def analytic_ranges(lab, ox, oy, angles):
    """2-D ray casting against walls, obstacles and benches (all taller than the scan plane)."""
    out = np.full(len(angles), np.inf)
    for rect in wall_rects(lab) + occupied_rects(lab):
        c, s = math.cos(rect.yaw), math.sin(rect.yaw)
        px, py = ox - rect.center[0], oy - rect.center[1]
        lx, ly = c * px + s * py, -s * px + c * py           # origin in the rect frame
        dx, dy = np.cos(angles - rect.yaw), np.sin(angles - rect.yaw)
        hx, hy = rect.size[0] / 2, rect.size[1] / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            t1x, t2x = (-hx - lx) / dx, (hx - lx) / dx
            t1y, t2y = (-hy - ly) / dy, (hy - ly) / dy
        tmin = np.maximum(np.minimum(t1x, t2x), np.minimum(t1y, t2y))
        tmax = np.minimum(np.maximum(t1x, t2x), np.maximum(t1y, t2y))
        hit = (tmax >= tmin) & (tmin > 0)
        out[hit] = np.minimum(out[hit], tmin[hit])
    return out


def laser_in_base(robot, frame):
    t = robot.transform("base_footprint", frame)
    return t[0, 3], t[1, 3], math.atan2(t[1, 0], t[0, 0])


def test_sim_config_validates():
    with pytest.raises(Exception, match="origin"):
        parse_sim_config({"odometry": {"origin": "elsewhere"}})
    cfg = parse_sim_config({})
    assert cfg.laser_range_max == 30.0 and cfg.odom_scale == (0.0, 0.0, 0.0)


def test_model_has_the_lab_and_the_robot(lab, exact):
    sim = PhysicsLab(lab, exact)
    import mujoco

    names = {mujoco.mj_id2name(sim.model, mujoco.mjtObj.mjOBJ_GEOM, i)
             for i in range(sim.model.ngeom)}
    for rect in wall_rects(lab) + occupied_rects(lab):
        assert rect.name in names
    gid = mujoco.mj_name2id(sim.model, mujoco.mjtObj.mjOBJ_GEOM, "solid_dispenser")
    assert 2 * sim.model.geom_size[gid][2] == pytest.approx(exact.station_height)
    assert sim.joint_names[:7] == [f"iiwa_joint_{i}" for i in range(1, 8)]
    assert sim.laser_frames == ["laser_front", "laser_rear"]


@pytest.mark.parametrize("pose", [Pose2D(2.0, 4.0, 0.0), Pose2D(9.3, 5.2, 2.4),
                                  Pose2D(5.0, 2.2, -1.2)])
def test_scans_match_analytic_geometry(lab, exact, pose):
    sim = PhysicsLab(lab, exact, initial_pose=pose)
    for frame in sim.laser_frames:
        scan = sim.scan(frame)
        assert len(scan.ranges) == 541 and scan.angle_max == pytest.approx(math.radians(135))
        ox, oy, oyaw = pose_of(laser_in_base(sim.robot, frame), pose)
        expected = analytic_ranges(lab, ox, oy, oyaw + scan.angles)
        assert np.all(np.isfinite(expected))                  # a closed room: every beam hits
        np.testing.assert_allclose(scan.ranges, expected, atol=1e-6)


def test_wall_at_known_distance_within_noise(lab, sim_cfg):
    cfg = dataclasses.replace(sim_cfg, laser_noise_sigma=0.02)
    pose = Pose2D(8.5, 6.0, 0.0)                              # facing the east wall
    sim = PhysicsLab(lab, cfg, initial_pose=pose, seed=3)
    lx, ly, lyaw = laser_in_base(sim.robot, "laser_front")
    scan = sim.scan("laser_front")
    # The beam along the base's +x: at laser angle -lyaw.
    i = int(round((-lyaw - scan.angle_min) / scan.angle_increment))
    assert scan.angles[i] == pytest.approx(-lyaw)
    assert abs(scan.ranges[i] - (lab.size[0] - (pose.x + lx))) < 5 * 0.02
    # Over the whole scan, the noise has the configured sigma and no bias.
    ox, oy, oyaw = pose_of((lx, ly, lyaw), pose)
    err = scan.ranges - analytic_ranges(lab, ox, oy, oyaw + scan.angles)
    assert abs(err.mean()) < 0.01 and 0.015 < err.std() < 0.025


def test_box_obstacle_appears_where_it_should(lab, exact):
    island = next(o for o in lab.obstacles if o.name == "centre_island")
    west_face = island.center[0] - island.size[0] / 2
    pose = Pose2D(2.0, island.center[1], 0.0)
    with_island = PhysicsLab(lab, exact, initial_pose=pose)
    lx, _, lyaw = laser_in_base(with_island.robot, "laser_front")
    scan = with_island.scan("laser_front")
    i = int(round((-lyaw - scan.angle_min) / scan.angle_increment))
    assert scan.ranges[i] == pytest.approx(west_face - (pose.x + lx), abs=1e-6)
    # Without the island the same beam reaches the east wall.
    bare = dataclasses.replace(lab, obstacles=())
    scan = PhysicsLab(bare, exact, initial_pose=pose).scan("laser_front")
    assert scan.ranges[i] == pytest.approx(lab.size[0] - (pose.x + lx), abs=1e-6)


def test_range_limits_follow_rep_117(lab, exact):
    cfg = dataclasses.replace(exact, laser_range_max=3.0, laser_range_min=0.5)
    pose = Pose2D(0.6, 6.0, math.pi / 2)    # rear laser 0.36 m from the west wall
    sim = PhysicsLab(lab, cfg, initial_pose=pose)
    for frame in sim.laser_frames:
        ranges = sim.scan(frame).ranges
        ox, oy, oyaw = pose_of(laser_in_base(sim.robot, frame), pose)
        true = analytic_ranges(lab, ox, oy, oyaw + sim.scan(frame).angles)
        assert np.all(ranges[true > 3.0] == np.inf)
        assert np.all(ranges[true < 0.5] == -np.inf)
        ok = (true >= 0.5) & (true <= 3.0)
        np.testing.assert_allclose(ranges[ok], true[ok], atol=1e-6)
    assert any(np.any(sim.scan(f).ranges == -np.inf) for f in sim.laser_frames)


def drive(sim, twists, seconds_each):
    for twist in twists:
        sim.set_cmd_vel(*twist)
        sim.step(seconds_each)


def test_zero_drift_odometry_equals_ground_truth(lab, exact):
    start = Pose2D(3.0, 6.0, 0.4)
    sim = PhysicsLab(lab, exact, initial_pose=start)
    drive(sim, [(0.3, 0.0, 0.0), (0.2, 0.1, 0.3), (0.0, -0.2, -0.4), (0.0, 0.0, 0.0)], 2.0)
    gt, odom = sim.ground_truth_pose(), sim.odom_pose()
    assert math.hypot(gt.x - start.x, gt.y - start.y) > 1.0
    # REP-105 odom starts at the start pose: map pose = start * odom pose.
    c, s = math.cos(start.yaw), math.sin(start.yaw)
    assert start.x + c * odom.x - s * odom.y == pytest.approx(gt.x, abs=1e-9)
    assert start.y + s * odom.x + c * odom.y == pytest.approx(gt.y, abs=1e-9)
    assert math.remainder(start.yaw + odom.yaw - gt.yaw, 2 * math.pi) == pytest.approx(0, abs=1e-9)
    # With origin `map`, odom is the map pose itself.
    sim = PhysicsLab(lab, dataclasses.replace(exact, odom_origin="map"), initial_pose=start)
    drive(sim, [(0.3, 0.1, 0.2)], 3.0)
    gt, odom = sim.ground_truth_pose(), sim.odom_pose()
    assert (odom.x, odom.y, odom.yaw) == pytest.approx((gt.x, gt.y, gt.yaw), abs=1e-9)


def test_odometry_drift_as_configured(lab, exact):
    start = Pose2D(3.0, 6.0, 0.0)
    cfg = dataclasses.replace(exact, odom_scale=(0.05, 0.0, 0.0))
    sim = PhysicsLab(lab, cfg, initial_pose=start)
    drive(sim, [(0.4, 0.0, 0.0), (0.0, 0.0, 0.0)], 5.0)
    travelled = sim.ground_truth_pose().x - start.x
    assert travelled > 1.5
    assert sim.odom_pose().x == pytest.approx(1.05 * travelled, rel=1e-3)
    # Random walk: errors grow with distance, spread as configured, reproducible per seed.
    cfg = dataclasses.replace(exact, odom_walk_translation=0.02, odom_walk_yaw=0.01)
    finals = []
    for seed in range(12):
        sim = PhysicsLab(lab, cfg, initial_pose=start, seed=seed)
        drive(sim, [(0.4, 0.0, 0.0)], 4.0)
        finals.append(sim.odom_pose().yaw - (sim.ground_truth_pose().yaw - start.yaw))
    dist = sim.distance_travelled
    expected = 0.01 * math.sqrt(dist)          # yaw walk sigma after `dist` metres
    assert 0.4 * expected < np.std(finals) < 2.0 * expected
    again = PhysicsLab(lab, cfg, initial_pose=start, seed=11)
    drive(again, [(0.4, 0.0, 0.0)], 4.0)
    assert again.odom_pose() == sim.odom_pose()
    # Standing still, odometry does not drift.
    still = PhysicsLab(lab, cfg, initial_pose=start)
    still.step(3.0)
    assert still.odom_pose() == Pose2D(0.0, 0.0, 0.0) or \
        max(abs(still.odom_pose().x), abs(still.odom_pose().y)) < 1e-4


def test_cmd_vel_moves_the_base_as_commanded(lab, exact):
    start = Pose2D(3.0, 6.0, math.pi / 2)       # facing north: body +x is map +y
    sim = PhysicsLab(lab, exact, initial_pose=start)
    sim.set_cmd_vel(0.0, -0.3, 0.0)             # body -y: map +x
    sim.step(0.2)
    assert math.hypot(*sim.ground_truth_velocity()[:2]) <= 0.5 * 0.2 + 1e-3   # accel limit
    sim.step(2.8)
    vx, vy, wz = sim.ground_truth_velocity()
    assert (vx, vy, wz) == pytest.approx((0.0, -0.3, 0.0), abs=5e-3)
    gt = sim.ground_truth_pose()
    # 0.6 s ramp (0.09 m) then 2.4 s at 0.3 m/s, less the velocity loop's lag.
    assert gt.x - start.x == pytest.approx(0.09 + 0.72, abs=0.03)
    assert abs(gt.y - start.y) < 0.01 and abs(gt.yaw - start.yaw) < 0.01
    sim.set_cmd_vel(0.0, 0.0, 0.4)
    sim.step(3.0)
    assert sim.ground_truth_velocity()[2] == pytest.approx(0.4, abs=5e-3)
    sim.set_cmd_vel(5.0, 0.0, 9.0)              # clamped to lab.yaml's limits
    sim.step(3.0)
    vx, vy, wz = sim.ground_truth_velocity()
    assert math.hypot(vx, vy) == pytest.approx(lab.robot.max_linear_speed, abs=5e-3)
    assert wz == pytest.approx(lab.robot.max_angular_speed, abs=5e-3)
    sim.set_cmd_vel(0.0, 0.0, 0.0)
    sim.step(3.0)
    assert sim.at_rest()
    # The arm stayed at its held pose throughout.
    home = PhysicsLab(lab, exact).joint_positions()
    for name, value in sim.joint_positions().items():
        assert value == pytest.approx(home[name], abs=0.02), name


def test_base_stops_at_a_wall(lab, exact):
    start = Pose2D(10.5, 5.5, 0.0)               # 1.5 m from the east wall, driving into it
    sim = PhysicsLab(lab, exact, initial_pose=start)
    sim.set_cmd_vel(0.5, 0.0, 0.0)
    sim.step(8.0)
    front = sim.ground_truth_pose().x + lab.robot.footprint[0] / 2
    assert lab.size[0] - 0.02 < front < lab.size[0] + 0.02


# ------------------------------------------------------------------ ROS 2 graph ----

def _tf_message():
    try:
        from tf2_msgs.msg import TFMessage
    except ImportError:
        return None
    return TFMessage


class GraphProbe:
    """The physics_sim node as a process, and a subscriber node spun in this process."""

    def __init__(self):
        import rclpy
        from geometry_msgs.msg import Twist
        from nav_msgs.msg import Odometry
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import JointState, LaserScan

        from mobile_chemist.ros.common import LATCHED_QOS
        from mobile_chemist.srv import ScheduleWakeup

        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "nodes" / "physics_sim"), "--ros-args",
             "-p", "start_time:=1000.0", "-p", "real_time_factor:=4.0"],
            start_new_session=True)
        rclpy.init()
        self.rclpy = rclpy
        self.node = node = rclpy.create_node("physics_sim_test")
        self.got = got = {k: [] for k in ("clock", "front", "rear", "odom", "joints", "tf",
                                          "tf_static")}
        node.create_subscription(Clock, "/clock", got["clock"].append, 50)
        node.create_subscription(LaserScan, "/scan/front", got["front"].append,
                                 qos_profile_sensor_data)
        node.create_subscription(LaserScan, "/scan/rear", got["rear"].append,
                                 qos_profile_sensor_data)
        node.create_subscription(Odometry, "/odom", got["odom"].append, 50)
        node.create_subscription(JointState, "/joint_states", got["joints"].append, 10)
        tf = _tf_message()
        if tf is not None:
            node.create_subscription(tf, "/tf", got["tf"].append, 100)
            node.create_subscription(tf, "/tf_static", got["tf_static"].append, LATCHED_QOS)
        self.cmd = node.create_publisher(Twist, "/cmd_vel", 10)
        self.schedule = node.create_client(ScheduleWakeup, "/sim_clock/schedule")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(node)

    def spin_until(self, pred, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not pred():
            self.executor.spin_once(timeout_sec=0.02)
        return pred()

    def close(self):
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.node.destroy_node()
        self.rclpy.shutdown()


@pytest.fixture(scope="module")
def graph():
    pytest.importorskip("rclpy")
    probe = GraphProbe()
    try:
        got = probe.got
        assert probe.spin_until(lambda: all(len(got[k]) >= 3 for k in
                                            ("clock", "front", "rear", "odom", "joints")),
                                20.0), {k: len(v) for k, v in got.items()}
        yield probe
        assert probe.proc.poll() is None, "physics_sim exited"
    finally:
        probe.close()


def test_node_publishes_clock_scans_odom_joint_states(graph):
    from mobile_chemist.ros.common import from_time_msg

    got = graph.got
    scan = got["front"][-1]
    assert scan.header.frame_id == "laser_front" and len(scan.ranges) == 541
    assert scan.range_min == pytest.approx(0.1) and scan.range_max == pytest.approx(30.0)
    assert got["rear"][-1].header.frame_id == "laser_rear"
    odom = got["odom"][-1]
    assert (odom.header.frame_id, odom.child_frame_id) == ("odom", "base_footprint")
    assert from_time_msg(got["clock"][-1].clock) >= 1000.0
    assert got["joints"][-1].name[:7] == [f"iiwa_joint_{i}" for i in range(1, 8)]
    # Both scanners at >= 10 Hz of simulated time.
    graph.spin_until(lambda: len(got["rear"]) >= 10, 5.0)
    for key in ("front", "rear"):
        stamps = [from_time_msg(m.header.stamp) for m in got[key]]
        assert (len(stamps) - 1) / (stamps[-1] - stamps[0]) >= 10.0


@pytest.mark.skipif(_tf_message() is None, reason="tf2_msgs is not installed (see README)")
def test_node_publishes_tf_and_tf_static(graph):
    got = graph.got
    assert graph.spin_until(lambda: got["tf_static"] and got["tf"], 5.0)
    statics = {(t.header.frame_id, t.child_frame_id) for m in got["tf_static"]
               for t in m.transforms}
    assert {("base_footprint", "base_link"), ("base_link", "laser_front"),
            ("base_link", "laser_rear"), ("tool0", "camera_link")} <= statics
    dynamic = {(t.header.frame_id, t.child_frame_id) for m in got["tf"] for t in m.transforms}
    assert ("odom", "base_footprint") in dynamic
    assert ("iiwa_link_0", "iiwa_link_1") in dynamic


def test_node_cmd_vel_moves_odometry(graph):
    from geometry_msgs.msg import Twist

    got = graph.got
    twist = Twist()
    twist.linear.x = -0.3                 # back away from the charger
    x0 = got["odom"][-1].pose.pose.position.x
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        graph.cmd.publish(twist)
        graph.spin_until(lambda: False, 0.02)
    assert got["odom"][-1].pose.pose.position.x < x0 - 0.1
    graph.cmd.publish(Twist())
    assert graph.spin_until(lambda: abs(got["odom"][-1].twist.twist.linear.x) < 1e-3, 10.0)


def test_node_jumps_to_a_wake_up_while_at_rest(graph):
    from geometry_msgs.msg import Twist

    from mobile_chemist.ros.common import from_time_msg, to_time_msg
    from mobile_chemist.srv import ScheduleWakeup

    got = graph.got
    assert graph.schedule.wait_for_service(timeout_sec=5.0)
    now = from_time_msg(got["clock"][-1].clock)
    future = graph.schedule.call_async(ScheduleWakeup.Request(time=to_time_msg(now + 3600.0)))
    assert graph.spin_until(future.done, 5.0)
    # While a controller keeps publishing /cmd_vel (zeros too), time only steps.
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        graph.cmd.publish(Twist())
        graph.spin_until(lambda: False, 0.05)
    assert from_time_msg(got["clock"][-1].clock) < now + 60.0
    # Once it stops, the clock skips to the wake-up: an hour in seconds of wall time.
    start = time.monotonic()
    assert graph.spin_until(lambda: from_time_msg(got["clock"][-1].clock) >= now + 3600.0, 10.0)
    assert time.monotonic() - start < 5.0
