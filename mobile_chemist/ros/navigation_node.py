"""navigation node: serves /robot/navigate_to_station on the physics simulation (or a real
base) with the builtin navigation stack or Nav2, and docks without contact from the scans.

Subscribes /odom, /scan/front, /scan/rear (and /initialpose); publishes /cmd_vel,
/robot/pose (latched), /amcl_pose, /plan, map->odom on /tf (builtin backend) and the
station the base is docked at on /robot/docked_at (latched; "" while undocked).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from geometry_msgs.msg import Pose2D as Pose2DMsg
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped, Twist
from nav_msgs.msg import Odometry, Path
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import LaserScan
from std_msgs.msg import String

from mobile_chemist.action import NavigateToStation
from mobile_chemist.config import Pose2D, load_lab
from mobile_chemist.ledger import RequestLedger, UnknownRequest
from mobile_chemist.navigation import (LaserMount, NavError, NavigationConfig,
                                       NavigationRefused, Navigator, Phase,
                                       laser_mounts_from_description, scan_to_points)
from mobile_chemist.navigation.geometry import as_array, between, compose, transform_points
from mobile_chemist.ros.common import end_goal, spin_node, LATCHED_QOS, declare, from_time_msg, now_s, to_time_msg

try:  # tf2_msgs is not among the pip-installed ROS 2 core packages everywhere
    from tf2_msgs.msg import TFMessage
except ImportError:  # pragma: no cover - depends on the install
    TFMessage = None


@dataclass
class NavOutcome:
    """What the ledger remembers of a goal: the result fields."""

    success: bool
    error_code: int = 0
    message: str = ""
    pose: np.ndarray = field(default_factory=lambda: np.zeros(3))
    correction: np.ndarray = field(default_factory=lambda: np.zeros(3))
    residual: float = 0.0
    distance: float = 0.0


def yaw_of(q) -> float:
    """Yaw of a geometry_msgs/Quaternion."""
    return math.atan2(2 * (q.w * q.z + q.x * q.y), 1 - 2 * (q.y * q.y + q.z * q.z))


class NavigationNode(Node):
    """Navigation server of the mobile base (backend: builtin or nav2)."""

    def __init__(self, **kwargs):
        super().__init__("navigation", **kwargs)
        lab_path = declare(self, "lab_config", "", "lab layout file; empty = the package's")
        nav_path = declare(self, "navigation_config", "",
                           "navigation tunables; empty = the package's config/navigation.yaml")
        self.backend_name = declare(self, "backend", "builtin", "builtin | nav2")
        initial = declare(self, "initial_station", "",
                          "station whose approach pose is the start guess; empty = home")
        self.base_frame = declare(self, "base_frame", "base_footprint", "robot base frame")
        self.odom_frame = declare(self, "odom_frame", "odom", "odometry frame")
        self.sensor_timeout_s = declare(self, "sensor_timeout_s", 10.0,
                                        "wall seconds without scans (with odometry of their "
                                        "time) before a goal fails")
        seed = declare(self, "seed", 0, "random seed of the particle filter")
        if self.backend_name not in ("builtin", "nav2"):
            raise ValueError(f"parameter backend must be 'builtin' or 'nav2', "
                             f"got {self.backend_name!r}")
        self.lab = load_lab(lab_path or None)
        self.navigator = Navigator(self.lab, NavigationConfig.load(self.lab, nav_path or None),
                                   seed=int(seed))
        self.mounts: dict[str, LaserMount] = laser_mounts_from_description(
            self.lab.robot.footprint)
        self.initial_station = initial or self.lab.robot.home_station
        self.navigator.set_initial_pose(as_array(self.lab.station(self.initial_station).approach))
        self.publish_tf = declare(self, "publish_tf", self.backend_name == "builtin",
                                  "publish map->odom on /tf (AMCL does it under nav2)")
        self.nav2 = None
        self._nav2_active = False
        if self.backend_name == "nav2":
            from mobile_chemist.navigation.nav2_backend import Nav2Backend
            self.nav2 = Nav2Backend(self.lab)

        self.ledger: RequestLedger[NavOutcome] = RequestLedger()
        self.started_wall = time.time()
        self.motion = threading.Lock()       # one goal moves the base at a time
        self._lock = threading.Lock()        # navigator, leg and sensor state
        self._odom: np.ndarray | None = None
        self._odom_history: deque = deque(maxlen=50)   # (t, pose): odometry at scan time
        self._odometer = 0.0                 # m driven, from odometry
        self._scans: dict[str, tuple[float, np.ndarray]] = {}
        self._waiting_scan: float | None = None   # primary scan time not yet covered by /odom
        self._last_t = 0.0                   # graph time of the last processed scan set
        self._last_scan_wall = 0.0
        self._leg = None
        self._checked_home = False
        self._last_pose_pub = -math.inf
        self._warned_tf = False

        sensors = MutuallyExclusiveCallbackGroup()
        self.create_subscription(Odometry, "/odom", self._on_odom, qos_profile_sensor_data,
                                 callback_group=sensors)
        self._primary = "/scan/front"
        # Depth 1: when the simulation runs faster than we process, use the newest scan
        # rather than work through a queue of old ones.
        latest_only = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT,
                                 history=HistoryPolicy.KEEP_LAST)
        for topic in ("/scan/front", "/scan/rear"):
            self.create_subscription(LaserScan, topic, lambda m, t=topic: self._on_scan(t, m),
                                     latest_only, callback_group=sensors)
        self.create_subscription(PoseWithCovarianceStamped, "/initialpose", self._on_initial,
                                 10, callback_group=sensors)
        self.cmd_pub = self.create_publisher(Twist, "/cmd_vel", 10)
        self.pose_pub = self.create_publisher(PoseStamped, "/robot/pose", LATCHED_QOS)
        self.amcl_pub = self.create_publisher(PoseWithCovarianceStamped, "/amcl_pose", LATCHED_QOS)
        self.plan_pub = self.create_publisher(Path, "/plan", LATCHED_QOS)
        self.docked_pub = self.create_publisher(String, "/robot/docked_at", LATCHED_QOS)
        self.tf_pub = self.create_publisher(TFMessage, "/tf", 10) if TFMessage else None
        self._nav = ActionServer(self, NavigateToStation, "/robot/navigate_to_station",
                                 execute_callback=self._navigate,
                                 goal_callback=lambda _r: GoalResponse.ACCEPT,
                                 cancel_callback=lambda _h: CancelResponse.ACCEPT,
                                 callback_group=ReentrantCallbackGroup())
        # Under the physics simulation the clock jumps ahead while the base is at rest;
        # during a goal (docking stands still) a wake-up just ahead of now prevents that.
        self._schedule = None
        if self.get_parameter("use_sim_time").value:
            from mobile_chemist.srv import ScheduleWakeup
            self._schedule = self.create_client(ScheduleWakeup, "/sim_clock/schedule",
                                                callback_group=ReentrantCallbackGroup())
            self._wakeup = ScheduleWakeup.Request
        self._publish_docked("")

    # -- sensors and the control cycle ------------------------------------------------
    def _on_odom(self, msg: Odometry) -> None:
        p = msg.pose.pose
        pose = np.array([p.position.x, p.position.y, yaw_of(p.orientation)])
        t = from_time_msg(msg.header.stamp)
        with self._lock:
            if self._odom is not None:
                self._odometer += float(np.hypot(*(pose[:2] - self._odom[:2])))
            self._odom = pose
            v = msg.twist.twist
            self._odom_history.append((t, pose, np.array([v.linear.x, v.linear.y, v.angular.z])))
        waiting = self._waiting_scan
        if waiting is not None and t >= waiting:
            self._waiting_scan = None
            self._cycle(waiting)

    def _on_initial(self, msg: PoseWithCovarianceStamped) -> None:
        p = msg.pose.pose
        cov = msg.pose.covariance
        with self._lock:
            self.navigator.set_initial_pose(
                (p.position.x, p.position.y, yaw_of(p.orientation)),
                math.sqrt(max(cov[0], 1e-4)) if cov[0] > 0 else None,
                math.sqrt(max(cov[35], 1e-4)) if cov[35] > 0 else None)

    def _on_scan(self, topic: str, msg: LaserScan) -> None:
        mount = self.mounts.get(msg.header.frame_id) or self.mounts.get(
            "laser_front" if topic.endswith("front") else "laser_rear")
        points = scan_to_points(msg.ranges, msg.angle_min, msg.angle_increment,
                                msg.range_min, msg.range_max, mount)
        t = from_time_msg(msg.header.stamp)
        self._scans[topic] = (t, points)
        if topic != self._primary and self._primary in self._scans:
            return  # the front scanner's message drives the cycle; the rear joins it
        # Fuse a scan only with the odometry of its own time. /odom can lag behind: it is
        # queued while only the newest scan is kept, so when the node falls behind the
        # newest scan may be newer than every /odom processed. Paired with that older pose
        # the scan shifts the estimate by the distance driven in between; wait for /odom.
        with self._lock:
            covered = bool(self._odom_history) and self._odom_history[-1][0] >= t
        if covered:
            self._waiting_scan = None
            self._cycle(t)
        else:
            self._waiting_scan = t

    def _cycle(self, t: float) -> None:
        with self._lock:
            if self._odom is None:
                return
            odom = self._odom_at(t)
            # The other scanner's latest scan may be a cycle older: move its points into
            # the base frame at t by the odometry in between (exact enough over 0.1 s).
            sets = []
            for ts, p in self._scans.values():
                if abs(ts - t) > 0.2:
                    continue
                if abs(ts - t) > 1e-6:
                    p = transform_points(between(odom, self._odom_at(ts)), p)
                sets.append(p)
            points = np.vstack(sets)
            self._last_t, self._last_scan_wall = t, time.monotonic()
            if not self._checked_home:
                self._check_docked_at_start(odom, points)
            self.navigator.localise(odom, points)
            leg = self._leg
            if leg is not None and not leg.done:
                self._hold_clock(t)
                phase = leg.phase
                out = leg.step(t, odom, points)
                if out.phase is not phase:
                    self.get_logger().debug(f"{leg.station}: {phase.value} -> {out.phase.value} "
                                           f"at t={t:.2f} ({out.message})")
                self._publish_cmd(out.cmd)
                if leg.done:
                    self._publish_cmd((0.0, 0.0, 0.0))
            pose = self.navigator.pose
            m2o = self.navigator.localiser.map_to_odom(odom)
        if t - self._last_pose_pub >= 0.2 or (leg is not None and leg.done):
            self._last_pose_pub = t
            self._publish_pose(pose, t)
        if self.publish_tf:
            self._publish_map_to_odom(m2o, t)

    def _hold_clock(self, t: float) -> None:
        """Ask the simulated clock for a wake-up at the next cycle (fire and forget)."""
        if self._schedule is not None and self._schedule.service_is_ready():
            self._schedule.call_async(self._wakeup(time=to_time_msg(t + 0.1)))

    def _odom_at(self, t: float) -> np.ndarray:
        """Odometry at a scan's time: interpolated between /odom messages, or extrapolated
        with the last twist when the scan is newer than the last /odom processed."""
        history = self._odom_history
        if not history:
            return self._odom.copy()
        last_t, last_pose, last_twist = history[-1]
        if t >= last_t:
            return compose(last_pose, last_twist * min(t - last_t, 0.1))
        times = np.array([h[0] for h in history])
        k = int(np.searchsorted(times, t))
        if k == 0:
            return history[0][1].copy()
        (ta, pa, _), (tb, pb, _) = history[k - 1], history[k]
        w = (t - ta) / (tb - ta) if tb > ta else 1.0
        return compose(pa, between(pa, pb) * w)

    def _check_docked_at_start(self, odom: np.ndarray, points: np.ndarray) -> None:
        """At start-up: register at the initial station; docked there if it fits."""
        self._checked_home = True
        c = self.navigator.config.docking
        fix = self.navigator.registration(self.initial_station).register(points,
                                                                        self.navigator.pose)
        if (fix.station_points >= c.min_station_points and fix.residual <= c.max_residual
                and np.hypot(*fix.error[:2]) < 0.05 and abs(fix.error[2]) < 0.05):
            self.navigator.localiser.initialise(fix.pose, 0.02, 0.01)
            self.navigator.docked_at = self.initial_station
            self._publish_docked(self.initial_station)
        else:
            self.get_logger().warning(f"not docked at {self.initial_station} at start-up "
                                      f"({fix.station_points} bench points, residual "
                                      f"{fix.residual:.3f} m)")

    # -- publishing -------------------------------------------------------------------
    def _publish_cmd(self, cmd) -> None:
        msg = Twist()
        msg.linear.x, msg.linear.y, msg.angular.z = (float(v) for v in cmd)
        self.cmd_pub.publish(msg)

    def _pose_msg(self, pose: np.ndarray, t: float) -> PoseStamped:
        msg = PoseStamped()
        msg.header.frame_id = self.lab.frame_id
        msg.header.stamp = to_time_msg(t)
        msg.pose.position.x, msg.pose.position.y = float(pose[0]), float(pose[1])
        msg.pose.orientation.z = math.sin(pose[2] / 2)
        msg.pose.orientation.w = math.cos(pose[2] / 2)
        return msg

    def _publish_pose(self, pose: np.ndarray, t: float) -> None:
        stamped = self._pose_msg(pose, t)
        self.pose_pub.publish(stamped)
        amcl = PoseWithCovarianceStamped()
        amcl.header = stamped.header
        amcl.pose.pose = stamped.pose
        cov = self.navigator.localiser.state.covariance
        full = np.zeros((6, 6))
        full[np.ix_([0, 1, 5], [0, 1, 5])] = cov
        amcl.pose.covariance = [float(v) for v in full.ravel()]
        self.amcl_pub.publish(amcl)

    def _publish_map_to_odom(self, m2o: np.ndarray, t: float) -> None:
        if self.tf_pub is None:
            if not self._warned_tf:
                self._warned_tf = True
                self.get_logger().warning("tf2_msgs is not installed: map->odom not published")
            return
        from geometry_msgs.msg import TransformStamped

        tf = TransformStamped()
        tf.header.frame_id = self.lab.frame_id
        tf.header.stamp = to_time_msg(t)
        tf.child_frame_id = self.odom_frame
        tf.transform.translation.x, tf.transform.translation.y = float(m2o[0]), float(m2o[1])
        tf.transform.rotation.z = math.sin(m2o[2] / 2)
        tf.transform.rotation.w = math.cos(m2o[2] / 2)
        self.tf_pub.publish(TFMessage(transforms=[tf]))

    def _publish_path(self, path: np.ndarray, t: float) -> None:
        msg = Path()
        msg.header.frame_id = self.lab.frame_id
        msg.header.stamp = to_time_msg(t)
        msg.poses = [self._pose_msg(np.array([x, y, 0.0]), t) for x, y in path]
        self.plan_pub.publish(msg)

    def _publish_docked(self, station: str) -> None:
        self.docked_pub.publish(String(data=station))

    # -- the action -------------------------------------------------------------------
    def _navigate(self, goal_handle):
        req = goal_handle.request

        def locked() -> NavOutcome:
            if not self.motion.acquire(blocking=False):
                return NavOutcome(False, NavError.BUSY, "the robot is executing another motion")
            try:
                return self._drive(goal_handle, req.station)
            finally:
                self.motion.release()

        try:
            out = self.ledger.run(req.request_id, locked, recover_only=req.recover_only)
        except UnknownRequest:
            out = NavOutcome(False, NavError.UNKNOWN_REQUEST,
                             f"no record of request {req.request_id!r}")
        result = NavigateToStation.Result(success=out.success, error_code=out.error_code,
                                          message=out.message, docking_residual=out.residual,
                                          distance_travelled=out.distance)
        result.server_started = to_time_msg(self.started_wall)
        result.pose = self._pose_msg(out.pose, now_s(self))
        result.docking_correction = Pose2DMsg(x=float(out.correction[0]),
                                              y=float(out.correction[1]),
                                              theta=float(out.correction[2]))
        end_goal(goal_handle, success=out.success, canceled=out.error_code == NavError.CANCELED,
                 logger=self.get_logger(), message=out.message)
        return result

    def _wait_for_sensors(self) -> str | None:
        deadline = time.monotonic() + self.sensor_timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self._odom is not None and self._last_scan_wall > 0:
                    return None
            time.sleep(0.05)
        return "no odometry and laser scans: is the base (or its simulation) running?"

    def _drive(self, goal_handle, station: str) -> NavOutcome:
        canceled = lambda: goal_handle.is_cancel_requested  # noqa: E731
        try:
            self.navigator.check_goal(station)
        except NavigationRefused as exc:
            return NavOutcome(False, exc.code, exc.message, self.navigator.pose)
        problem = self._wait_for_sensors()
        if problem:
            return NavOutcome(False, NavError.NAVIGATION_FAILED, problem, self.navigator.pose)
        with self._lock:
            odometer_start = self._odometer
        if self.nav2 is not None:
            self._publish_docked("")
            try:
                if not self._nav2_active:
                    # AMCL starts from our estimate; BasicNavigator waits for the lifecycle.
                    pose = self.navigator.pose
                    self.nav2.activate(Pose2D(float(pose[0]), float(pose[1]), float(pose[2])))
                    self._nav2_active = True
                drive = self.nav2.drive_to_station(station, canceled,
                                                   self._nav2_feedback(goal_handle))
            except RuntimeError as exc:   # Nav2 missing or not coming up
                return NavOutcome(False, NavError.NAVIGATION_FAILED, str(exc),
                                  self.navigator.pose)
            if not drive.success:
                with self._lock:
                    pose = self.navigator.pose
                    distance = self._odometer - odometer_start
                return NavOutcome(False, drive.error_code, drive.message, pose, distance=distance)
        try:
            with self._lock:
                if self.nav2 is not None:
                    leg = self.navigator.start_docking(station, self._last_t, self._odom)
                else:
                    leg = self.navigator.start_leg(station, self._last_t, self._odom)
                self._leg = leg
        except NavigationRefused as exc:
            return NavOutcome(False, exc.code, exc.message, self.navigator.pose)
        self._publish_docked("")
        self._publish_path(leg.path, self._last_t)
        last_feedback = 0.0
        try:
            while True:
                with self._lock:
                    if leg.done:
                        break
                    if canceled():
                        leg.cancel()
                        self._publish_cmd((0.0, 0.0, 0.0))
                        break
                    if time.monotonic() - self._last_scan_wall > self.sensor_timeout_s:
                        leg.cancel()
                        leg.result.error_code = NavError.NAVIGATION_FAILED
                        leg.result.message = "laser scans or odometry stopped; the base stopped"
                        self._publish_cmd((0.0, 0.0, 0.0))
                        break
                    pose = self.navigator.pose
                    remaining = leg.follower.distance_remaining(pose) \
                        if leg.phase in (Phase.FOLLOWING, Phase.BLOCKED) else 0.0
                    t = self._last_t
                if time.monotonic() - last_feedback > 0.5:
                    last_feedback = time.monotonic()
                    fb = NavigateToStation.Feedback(current_pose=self._pose_msg(pose, t),
                                                    distance_remaining=float(remaining))
                    eta = remaining / self.lab.robot.max_linear_speed
                    fb.estimated_time_remaining.sec = int(eta)
                    goal_handle.publish_feedback(fb)
                time.sleep(0.02)
        finally:
            with self._lock:
                self._leg = None
                distance = self._odometer - odometer_start
        r = leg.result
        if r.success:
            self._publish_docked(station)
            self._publish_pose(r.pose, self._last_t)
        return NavOutcome(r.success, r.error_code, r.message, r.pose, r.docking_correction,
                          r.docking_residual, distance)

    def _nav2_feedback(self, goal_handle):
        def forward(feedback) -> None:
            fb = NavigateToStation.Feedback()
            fb.current_pose = feedback.current_pose
            fb.distance_remaining = float(feedback.distance_remaining)
            fb.estimated_time_remaining = feedback.estimated_time_remaining
            goal_handle.publish_feedback(fb)
        return forward


def main(args=None):
    spin_node(NavigationNode, args, num_threads=4)
