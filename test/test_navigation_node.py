"""The navigation node over a real ROS 2 graph (own ROS_DOMAIN_ID, loopback discovery).

The node runs as its executable (nodes/navigation) on simulated time. The base it drives
is a small kinematic simulator in this process: it publishes /clock, /odom and both
scanners' /scan topics from the 2-D ray caster of test_navigation, and integrates
/cmd_vel, three times faster than real time. Like a real base (and nodes/physics_sim) it
applies each velocity command as it comes and stops when they stop coming.
"""

import math
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

rclpy = pytest.importorskip("rclpy")

from geometry_msgs.msg import Twist  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import HistoryPolicy, QoSProfile  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import LaserScan  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from mobile_chemist.action import NavigateToStation  # noqa: E402
from mobile_chemist.graph import NodeSpec  # noqa: E402
from mobile_chemist.local_launch import LocalLaunch  # noqa: E402
from mobile_chemist.navigation.geometry import (as_array, between, compose,  # noqa: E402
                                                lab_rects, segments_of)
from mobile_chemist.physics_sim import load_sim_config  # noqa: E402
from mobile_chemist.ros.common import LATCHED_QOS, HandoffExecutor, to_time_msg  # noqa: E402
from test_navigation import RaySim  # noqa: E402

START = "rack_storage"
PERIOD = 0.08           # s of simulated time per scan (12.5 Hz)
SPEED_UP = 3.0
LATEST = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST)


class KinematicBase(Node):
    """/clock, /odom, /scan/front, /scan/rear from RaySim; integrates /cmd_vel."""

    def __init__(self, sim: RaySim):
        super().__init__("kinematic_base")
        self.sim = sim
        self.t = 1000.0
        self.cmd = (0.0, 0.0, 0.0)
        self.cmd_count = 0
        self.cmd_t = -math.inf
        # As the simulated KMR's controller: no command for this long (simulated) stops it.
        self.cmd_timeout = load_sim_config().cmd_vel_timeout
        self.lock = threading.Lock()
        self.clock_pub = self.create_publisher(Clock, "/clock", 10)
        self.odom_pub = self.create_publisher(Odometry, "/odom", 10)
        self.scan_pubs = {m.frame_id: self.create_publisher(
            LaserScan, f"/scan/{m.frame_id.split('_')[1]}", 10) for m in sim.mounts}
        # The newest command, in its own callback group: a base applies the latest set
        # point. In the timer's group, with the timer overdue whenever this process is
        # starved, commands queued up and the base drove on ones a second old.
        self.create_subscription(Twist, "/cmd_vel", self._on_cmd, LATEST,
                                 callback_group=MutuallyExclusiveCallbackGroup())
        self.segments = segments_of(lab_rects(sim.lab))
        self.create_timer(PERIOD / SPEED_UP, self._tick)

    def _on_cmd(self, msg: Twist):
        with self.lock:
            self.cmd = (msg.linear.x, msg.linear.y, msg.angular.z)
            self.cmd_t = self.t
            self.cmd_count += 1

    def _tick(self):
        with self.lock:
            cmd = self.cmd if self.t - self.cmd_t <= self.cmd_timeout else (0.0, 0.0, 0.0)
            before = self.sim.odom.copy()
            self.sim.move(cmd, PERIOD)
            self.t += PERIOD
        stamp = to_time_msg(self.t)
        self.clock_pub.publish(Clock(clock=stamp))
        self.odom_pub.publish(odom_msg(self.sim, stamp, between(before, self.sim.odom) / PERIOD))
        for frame, msg in scan_msgs(self.sim, stamp, self.segments):
            self.scan_pubs[frame].publish(msg)


def odom_msg(sim: RaySim, stamp, velocity) -> Odometry:
    """The simulator's odometry pose and its velocity (base frame), as wheel odometry."""
    odom = Odometry()
    odom.header.stamp, odom.header.frame_id = stamp, "odom"
    odom.child_frame_id = "base_footprint"
    o = sim.odom
    odom.pose.pose.position.x, odom.pose.pose.position.y = float(o[0]), float(o[1])
    odom.pose.pose.orientation.z = math.sin(o[2] / 2)
    odom.pose.pose.orientation.w = math.cos(o[2] / 2)
    odom.twist.twist.linear.x, odom.twist.twist.linear.y = float(velocity[0]), float(velocity[1])
    odom.twist.twist.angular.z = float(velocity[2])
    return odom


def scan_msgs(sim: RaySim, stamp, segments) -> list[tuple[str, LaserScan]]:
    """(frame, LaserScan) of each scanner at the simulator's true pose."""
    out = []
    for mount in sim.mounts:
        angles, ranges = sim.ranges(mount, segments)
        msg = LaserScan(angle_min=float(angles[0]), angle_max=float(angles[-1]),
                        angle_increment=float(angles[1] - angles[0]), range_min=0.1,
                        range_max=30.0, ranges=[float(r) for r in ranges])
        msg.header.stamp, msg.header.frame_id = stamp, mount.frame_id
        out.append((mount.frame_id, msg))
    return out


def test_a_scan_waits_for_the_odometry_of_its_time(lab):
    """/odom is queued while only the newest scan is kept, so under load a scan can be
    newer than every /odom the node has processed. It is fused only once the odometry of
    its time is in: with the older odometry it would put the robot where it was."""
    from mobile_chemist.ros.navigation_node import NavigationNode

    # A domain of its own: its action server, once gone, must not be taken for the real one
    # by the graph below (under load a client did, and its first goal went unanswered).
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=(int(os.environ["ROS_DOMAIN_ID"]) + 5) % 230)
    node = NavigationNode(context=context,
                          parameter_overrides=[Parameter("initial_station", value=START)])
    try:
        sim = RaySim(lab, as_array(lab.stations[START].approach), seed=9)
        segments = segments_of(lab_rects(lab))
        topics = {m.frame_id: f"/scan/{m.frame_id.split('_')[1]}" for m in sim.mounts}

        def scans(t):
            for frame, msg in scan_msgs(sim, to_time_msg(t), segments):
                node._on_scan(topics[frame], msg)

        velocity = np.array([0.0, 0.5, 0.0])          # sideways along the benches
        node._on_odom(odom_msg(sim, to_time_msg(10.0), velocity))
        scans(10.0)
        estimate = node.navigator.pose
        for _ in range(10):                           # 0.4 m on; the scans come first
            sim.move(velocity, PERIOD)
        scans(10.8)
        assert np.array_equal(node.navigator.pose, estimate)    # not fused yet
        node._on_odom(odom_msg(sim, to_time_msg(10.8), velocity))
        error = between(node.navigator.pose, sim.pose)
        assert math.hypot(error[0], error[1]) < 0.01 and abs(error[2]) < 0.01
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)


@pytest.fixture(scope="class")
def graph(lab, tmp_path_factory):
    start = as_array(lab.stations[START].approach)
    sim = RaySim(lab, compose(start, np.array([0.02, -0.015, 0.01])), seed=5)
    # The shipped lab plus a station whose approach pose lies inside the centre island.
    data = yaml.safe_load(Path(lab.source).read_text())
    data["stations"]["walled_in"] = {
        "type": "storage", "approach": {"x": 6.0, "y": 4.0, "yaw": 0.0},
        "footprint": {"center": [6.0, 4.0], "size": [0.2, 0.2]}, "slots": [],
        "driver": {"type": "sim"}, "operations": {}}
    lab_file = tmp_path_factory.mktemp("lab") / "lab.yaml"
    lab_file.write_text(yaml.safe_dump(data))
    spec = NodeSpec("navigation", "navigation", {"use_sim_time": True, "backend": "builtin",
                                                 "initial_station": START,
                                                 "lab_config": str(lab_file)})
    with LocalLaunch() as launch:
        launch.start(spec)
        rclpy.init()
        base = KinematicBase(sim)
        client = Node("navigation_test_client",
                      parameter_overrides=[Parameter("use_sim_time", value=True)])
        docked = []
        client.create_subscription(String, "/robot/docked_at", lambda m: docked.append(m.data),
                                   LATCHED_QOS)
        action = ActionClient(client, NavigateToStation, "/robot/navigate_to_station")
        executor = HandoffExecutor(num_threads=3)
        executor.add_node(base)
        executor.add_node(client)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        assert action.wait_for_server(timeout_sec=30.0), "navigation node did not come up"
        yield sim, base, action, docked, launch
        executor.shutdown()             # first: a spinning executor trips over destroyed parts
        spinner.join(10.0)
        action.destroy()
        base.destroy_node()
        client.destroy_node()
        rclpy.shutdown()


def send(action, station, request_id, recover_only=False, cancel_after=None, cancel_when=None,
         timeout=90.0):
    goal = NavigateToStation.Goal(request_id=request_id, station=station,
                                  recover_only=recover_only)
    done = threading.Event()
    future = action.send_goal_async(goal)
    future.add_done_callback(lambda _f: done.set())
    assert done.wait(10.0), "goal not answered"
    handle = future.result()
    assert handle.accepted
    if cancel_after is not None:
        time.sleep(cancel_after)
        handle.cancel_goal_async()
    if cancel_when is not None:
        wait_until(cancel_when, 30.0, "the moment to cancel")
        handle.cancel_goal_async()
    done.clear()
    result_future = handle.get_result_async()
    result_future.add_done_callback(lambda _f: done.set())
    assert done.wait(timeout), f"no result for {station} within {timeout} s"
    return result_future.result().status, result_future.result().result


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class TestWithKinematicBase:
    """Validation, a leg, idempotency and cancel against the kinematic base."""

    def test_rejects_unknown_and_unreachable_stations(self, graph):
        sim, base, action, docked, launch = graph
        R = NavigateToStation.Result
        _, unknown = send(action, "kitchen", "nav-kitchen")
        assert not unknown.success and unknown.error_code == R.ERROR_UNKNOWN_STATION
        assert "kitchen" in unknown.message
        _, blocked = send(action, "walled_in", "nav-walled-in")
        assert not blocked.success and blocked.error_code == R.ERROR_UNREACHABLE
        assert "walled_in" in blocked.message and "does not fit" in blocked.message
        _, never = send(action, "gc", "never-sent", recover_only=True)
        assert never.error_code == R.ERROR_UNKNOWN_REQUEST
        launch.check_alive()

    def test_navigates_and_docks_then_repeats_idempotently(self, graph, lab):
        sim, base, action, docked, launch = graph
        station = "solid_dispenser"
        t0 = time.monotonic()
        _, result = send(action, station, "nav-1")
        assert result.success, result.message
        assert result.error_code == 0
        error = between(sim.pose, as_array(lab.stations[station].approach))
        assert math.hypot(error[0], error[1]) < 0.005 and abs(error[2]) < math.radians(0.5)
        assert 0.0 < result.docking_residual < 0.02
        assert result.distance_travelled > 2.0
        assert result.pose.header.frame_id == "map"
        assert abs(result.pose.pose.position.x - sim.pose[0]) < 0.01
        deadline = time.monotonic() + 5
        while (not docked or docked[-1] != station) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert docked[-1] == station
        # The same request again: its outcome, without driving.
        pose_before = sim.pose.copy()
        t1 = time.monotonic()
        _, again = send(action, station, "nav-1")
        assert again.success and again.distance_travelled == result.distance_travelled
        assert time.monotonic() - t1 < 2.0 < t1 - t0
        assert np.allclose(sim.pose, pose_before)

    def test_busy_then_cancel_mid_route_stops_the_base(self, graph):
        sim, base, action, docked, launch = graph
        R = NavigateToStation.Result
        busy = {}
        start = sim.pose.copy()

        def driving():
            return np.hypot(*(sim.pose[:2] - start[:2])) > 0.15

        def second_goal():                            # while the first one drives
            wait_until(driving, 30.0, "the first goal to drive")
            busy["result"] = send(action, "gc", "nav-busy")[1]

        other = threading.Thread(target=second_goal)
        other.start()
        status, result = send(action, "capper", "nav-cancel",
                              cancel_when=lambda: "result" in busy)
        other.join(15.0)
        assert busy["result"].error_code == R.ERROR_BUSY and not busy["result"].success
        assert result.error_code == R.ERROR_CANCELED and not result.success
        deadline = time.monotonic() + 2                   # the stop command is on its way
        while base.cmd != (0.0, 0.0, 0.0) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert base.cmd == (0.0, 0.0, 0.0)
        assert 0.1 < result.distance_travelled
        pose = sim.pose.copy()
        time.sleep(0.5)
        assert np.allclose(sim.pose, pose)
        deadline = time.monotonic() + 3
        while docked[-1] != "" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert docked[-1] == ""
        launch.check_alive()


# -- With the MuJoCo physics simulation (nodes/physics_sim) ------------------------------
@pytest.fixture(scope="class")
def physics_graph():
    pytest.importorskip("mujoco")
    from geometry_msgs.msg import PoseStamped
    from mobile_chemist.graph import executable_path

    try:
        executable_path("physics_sim")
    except FileNotFoundError:
        pytest.skip("no physics_sim node")
    specs = [NodeSpec("physics_sim", "physics_sim", {"real_time_factor": 4.0}),
             NodeSpec("navigation", "navigation", {"use_sim_time": True})]
    with LocalLaunch() as launch:
        launch.start_all(specs)
        rclpy.init()
        client = Node("navigation_physics_client",
                      parameter_overrides=[Parameter("use_sim_time", value=True)])
        truth = {}
        client.create_subscription(PoseStamped, "/ground_truth/pose",
                                   lambda m: truth.update(pose=m), 10)
        docked = []
        client.create_subscription(String, "/robot/docked_at", lambda m: docked.append(m.data),
                                   LATCHED_QOS)
        action = ActionClient(client, NavigateToStation, "/robot/navigate_to_station")
        executor = HandoffExecutor(num_threads=2)
        executor.add_node(client)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        assert action.wait_for_server(timeout_sec=30.0), "navigation node did not come up"
        yield action, truth, docked, launch
        executor.shutdown()
        spinner.join(10.0)
        action.destroy()
        client.destroy_node()
        rclpy.shutdown()


def _truth_pose(truth):
    from mobile_chemist.ros.navigation_node import yaw_of
    p = truth["pose"].pose
    return np.array([p.position.x, p.position.y, yaw_of(p.orientation)])


def _truth_stamp(truth) -> float:
    from mobile_chemist.ros.common import from_time_msg
    return from_time_msg(truth["pose"].header.stamp)


def _truth_pose_at(truth, t: float, timeout: float = 30.0):
    """The ground-truth pose once the simulation has reached simulated time `t`."""
    wait_until(lambda: _truth_stamp(truth) >= t, timeout, f"ground truth at t={t:.2f}")
    return _truth_pose(truth)


class TestWithPhysicsSim:
    """One short leg and a cancel on the MuJoCo simulation."""

    def test_physics_navigate_to_a_near_station_and_cancel(self, physics_graph, lab):
        action, truth, docked, launch = physics_graph
        station = "rack_storage"                      # 2.6 m from the charger
        _, result = send(action, station, "phys-1", timeout=120.0)
        assert result.success, result.message
        time.sleep(0.3)                               # a fresh ground-truth message
        error = between(_truth_pose(truth), as_array(lab.stations[station].approach))
        assert math.hypot(error[0], error[1]) < 0.005, error
        assert abs(error[2]) < math.radians(0.5), error
        assert docked[-1] == station
        # Cancel on the way to the next station: the base stops.
        status, canceled = send(action, "gc", "phys-2", cancel_after=2.0, timeout=60.0)
        assert canceled.error_code == NavigateToStation.Result.ERROR_CANCELED
        # Wait in simulated time: on a loaded machine the sim runs slower than its real-time
        # factor, and a wall-clock wait can end while the base is still ramping down.
        sim = load_sim_config()
        stopping = lab.robot.max_linear_speed / sim.max_linear_accel + 0.5
        t = _truth_stamp(truth)
        before = _truth_pose_at(truth, t + stopping)
        after = _truth_pose_at(truth, t + stopping + 1.0)
        assert np.allclose(after[:2], before[:2], atol=1e-3), (before, after)
        assert docked[-1] == ""
        launch.check_alive()
