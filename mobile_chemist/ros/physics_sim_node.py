"""physics_sim node: the MuJoCo lab (mobile_chemist.physics_sim) on the ROS graph.

Publishes
  /clock                  rosgraph_msgs/Clock; this node is the time source in physics mode
  /odom                   nav_msgs/Odometry, odom -> base_footprint (wheel odometry, drifts)
  /tf                     odom -> base_footprint, and the arm's moving links
  /tf_static              the URDF's fixed joints (base_footprint -> base_link -> lasers, ...)
  /joint_states           arm and gripper joints
  /scan/front, /scan/rear sensor_msgs/LaserScan (sensor-data QoS), frames laser_front/_rear
  /ground_truth/pose      geometry_msgs/PoseStamped in `map`: the exact base_footprint pose,
                          for benchmarks and tests only; navigation must not use it
Subscribes
  /cmd_vel                geometry_msgs/Twist in base_footprint (stops after a timeout)
Serves
  /sim_clock/schedule     mobile_chemist/srv/ScheduleWakeup, the sim_clock contract: while
                          the base stands still and no /cmd_vel has arrived for
                          `jump_after_idle_wall_s` wall seconds, the clock jumps straight to
                          the earliest scheduled wake-up; otherwise physics steps at
                          `real_time_factor` (0 = as fast as the machine allows). A controller
                          that is active keeps publishing /cmd_vel (zeros too) so that the
                          clock does not jump under it.
"""

from __future__ import annotations

import array
import math
import sys
import threading
import time

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped, TransformStamped, Twist
from nav_msgs.msg import Odometry
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import JointState, LaserScan

try:  # not in the pip-installed ROS 2 core; scripts/setup.sh builds it (see the README)
    from tf2_msgs.msg import TFMessage
except ImportError:  # pragma: no cover - depends on the installation
    TFMessage = None

from mobile_chemist.config import load_lab
from mobile_chemist.physics_sim import PhysicsLab, RobotModel, load_sim_config, matrix_to_quat
from mobile_chemist.ros.common import declare, from_time_msg, make_executor, to_time_msg
from mobile_chemist.sim_clock import EventClock
from mobile_chemist.srv import ScheduleWakeup

TF_STATIC_QOS = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                           reliability=ReliabilityPolicy.RELIABLE)

#: Topic of each laser frame.
SCAN_TOPICS = {"laser_front": "/scan/front", "laser_rear": "/scan/rear"}


def _transform(parent: str, child: str, t: np.ndarray, stamp) -> TransformStamped:
    msg = TransformStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = parent
    msg.child_frame_id = child
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = (
        float(v) for v in t[:3, 3])
    w, x, y, z = matrix_to_quat(t[:3, :3])
    r = msg.transform.rotation
    r.w, r.x, r.y, r.z = w, x, y, z
    return msg


def _planar(parent: str, child: str, x: float, y: float, yaw: float, stamp) -> TransformStamped:
    msg = TransformStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = parent
    msg.child_frame_id = child
    msg.transform.translation.x, msg.transform.translation.y = x, y
    msg.transform.rotation.z, msg.transform.rotation.w = math.sin(yaw / 2), math.cos(yaw / 2)
    return msg


class Every:
    """Fires once per `period` of simulated time (catching up after a clock jump)."""

    def __init__(self, hz: float):
        self.period = 1.0 / hz
        self.next = -math.inf

    def due(self, now: float) -> bool:
        if now + 1e-9 < self.next:
            return False
        # Keep the phase while stepping; restart it after a clock jump.
        lagging = now - self.next > self.period
        self.next = now + self.period if lagging else self.next + self.period
        return True


class PhysicsSimNode(Node):
    """Steps the MuJoCo lab and publishes clock, odometry, TF, joint states and scans."""

    def __init__(self):
        super().__init__("physics_sim")
        lab_path = declare(self, "lab_config", "", "lab layout file; '' = config/lab.yaml")
        sim_path = declare(self, "sim_config", "", "simulation settings; '' = config/sim.yaml")
        urdf = declare(self, "robot_description_file", "",
                       "URDF file; '' = urdf/mobile_chemist.urdf")
        self.rtf = declare(self, "real_time_factor", 0.0,
                           "simulated seconds per wall second while physics steps; "
                           "0 = as fast as possible")
        start = declare(self, "start_time", 0.0,
                        "simulated start time (s since the epoch); 0 = the wall time now")
        seed = declare(self, "seed", -1, "noise and drift seed; -1 = sim.yaml's")
        self.jump_after = declare(self, "jump_after_idle_wall_s", 1.0,
                                  "wall seconds without /cmd_vel before the clock may jump "
                                  "to a scheduled wake-up while the base stands still")
        self.map_frame = declare(self, "map_frame", "map", "frame of /ground_truth/pose")
        self.odom_frame = declare(self, "odom_frame", "odom", "odometry frame")
        self.base_frame = declare(self, "base_frame", "base_footprint", "robot base frame")

        lab = load_lab(lab_path or None)
        self.sim_cfg = load_sim_config(sim_path or None)
        robot = RobotModel.from_urdf(urdf) if urdf else None
        self.sim = PhysicsLab(lab, self.sim_cfg, urdf=robot,
                              seed=None if seed < 0 else int(seed))
        if start <= 0:
            start = float(math.floor(time.time()))
        # The discrete-event clock holds simulated time; physics steps advance it too.
        self.clock = EventClock(start=start)

        self._lock = threading.Lock()
        self._cmd = (0.0, 0.0, 0.0)
        self._cmd_time = -math.inf
        self._cmd_wall = -math.inf
        # Commands in the order sent: in a reentrant group two executor threads can take two
        # /cmd_vel messages at once, and a stale velocity could land after the stop.
        self.create_subscription(Twist, "/cmd_vel", self._on_cmd_vel, 10,
                                 callback_group=MutuallyExclusiveCallbackGroup())
        self.create_service(ScheduleWakeup, "/sim_clock/schedule", self._on_schedule,
                            callback_group=ReentrantCallbackGroup())
        self._clock_pub = self.create_publisher(ClockMsg, "/clock", 10)
        self._odom_pub = self.create_publisher(Odometry, "/odom", 10)
        if TFMessage is None:
            self.get_logger().warning("tf2_msgs is not installed: no /tf or /tf_static")
            self._tf_pub = self._tf_static_pub = None
        else:
            self._tf_pub = self.create_publisher(TFMessage, "/tf", 100)
            self._tf_static_pub = self.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
        self._joint_pub = self.create_publisher(JointState, "/joint_states", 10)
        self._gt_pub = self.create_publisher(PoseStamped, "/ground_truth/pose", 10)
        self._scan_pubs = {f: self.create_publisher(LaserScan, SCAN_TOPICS.get(f, f"/scan/{f}"),
                                                    qos_profile_sensor_data)
                           for f in self.sim.laser_frames}
        self._every_odom = Every(self.sim_cfg.odom_hz)
        self._every_joints = Every(self.sim_cfg.joint_states_hz)
        self._every_gt = Every(self.sim_cfg.ground_truth_hz)
        self._every_scan = {f: Every(self.sim_cfg.laser_rate_hz) for f in self.sim.laser_frames}
        self._publish_static()
        self.stats = {"steps": 0, "jumps": 0, "scans": 0, "stepped_s": 0.0, "wall_s": 0.0}
        self._running = True

    # --- callbacks ------------------------------------------------------------------

    def _on_cmd_vel(self, msg: Twist) -> None:
        with self._lock:
            self._cmd = (msg.linear.x, msg.linear.y, msg.angular.z)
            self._cmd_time = self.clock.now
            self._cmd_wall = time.monotonic()

    def _on_schedule(self, request, response):
        self.clock.schedule(from_time_msg(request.time))
        response.now = to_time_msg(self.clock.now)
        return response

    # --- publishing ----------------------------------------------------------------

    def _publish_static(self) -> None:
        if self._tf_static_pub is None:
            return
        stamp = to_time_msg(self.clock.now)
        robot = self.sim.robot
        msg = TFMessage(transforms=[_transform(j.parent, j.child, j.origin, stamp)
                                    for j in robot.fixed_joints()])
        self._tf_static_pub.publish(msg)

    def _publish(self, now: float, force: bool = False) -> None:
        stamp = to_time_msg(now)
        self._clock_pub.publish(ClockMsg(clock=stamp))
        sim = self.sim
        if self._every_odom.due(now) or force:
            pose = sim.odom_pose()
            vx, vy, wz = sim.odom_velocity()
            odom = Odometry()
            odom.header.stamp = stamp
            odom.header.frame_id = self.odom_frame
            odom.child_frame_id = self.base_frame
            odom.pose.pose.position.x, odom.pose.pose.position.y = pose.x, pose.y
            odom.pose.pose.orientation.z = math.sin(pose.yaw / 2)
            odom.pose.pose.orientation.w = math.cos(pose.yaw / 2)
            odom.twist.twist.linear.x, odom.twist.twist.linear.y = vx, vy
            odom.twist.twist.angular.z = wz
            # Diagonal covariances from the configured random walk (x, y, yaw).
            walk_t = max(self.sim_cfg.odom_walk_translation, 1e-3) ** 2
            walk_r = max(self.sim_cfg.odom_walk_yaw, 1e-3) ** 2
            cov = [0.0] * 36
            cov[0] = cov[7] = walk_t * max(sim.distance_travelled, 1e-3)
            cov[14] = cov[21] = cov[28] = 1e6     # z, roll, pitch: not estimated
            cov[35] = walk_r * max(sim.distance_travelled, 1e-3)
            odom.pose.covariance = cov
            tcov = [0.0] * 36
            tcov[0] = tcov[7] = tcov[35] = 1e-4
            tcov[14] = tcov[21] = tcov[28] = 1e6
            odom.twist.covariance = tcov
            self._odom_pub.publish(odom)
            if self._tf_pub is not None:
                self._tf_pub.publish(TFMessage(transforms=[
                        _planar(self.odom_frame, self.base_frame, pose.x, pose.y, pose.yaw,
                            stamp)]))
        if self._every_gt.due(now) or force:
            gt = sim.ground_truth_pose()
            msg = PoseStamped()
            msg.header.stamp = stamp
            msg.header.frame_id = self.map_frame
            msg.pose.position.x, msg.pose.position.y = gt.x, gt.y
            msg.pose.orientation.z, msg.pose.orientation.w = (math.sin(gt.yaw / 2),
                                                              math.cos(gt.yaw / 2))
            self._gt_pub.publish(msg)
        if self._every_joints.due(now) or force:
            q = sim.joint_positions()
            qd = sim.joint_velocities()
            names = list(q)
            self._joint_pub.publish(JointState(
                header=self._header(stamp, ""), name=names, position=[q[n] for n in names],
                velocity=[qd[n] for n in names]))
            # No robot_state_publisher on this machine: publish the moving links' TF here.
            if self._tf_pub is not None:
                self._tf_pub.publish(TFMessage(transforms=[
                    _transform(j.parent, j.child, j.transform(q.get(j.name, 0.0)), stamp)
                    for j in sim.robot.movable_joints()]))
        for frame, every in self._every_scan.items():
            if every.due(now) or force:
                self._publish_scan(frame, stamp)

    @staticmethod
    def _header(stamp, frame_id: str):
        from std_msgs.msg import Header

        return Header(stamp=stamp, frame_id=frame_id)

    def _publish_scan(self, frame: str, stamp) -> None:
        scan = self.sim.scan(frame)
        msg = LaserScan()
        msg.header = self._header(stamp, frame)
        msg.angle_min, msg.angle_max = scan.angle_min, scan.angle_max
        msg.angle_increment = scan.angle_increment
        msg.time_increment = 0.0
        msg.scan_time = scan.scan_time
        msg.range_min, msg.range_max = scan.range_min, scan.range_max
        msg.ranges = array.array("f", scan.ranges.astype(np.float32).tobytes())
        self._scan_pubs[frame].publish(msg)
        self.stats["scans"] += 1

    # --- the simulation loop -------------------------------------------------------

    def run(self) -> None:
        """Step and publish until shutdown (call from a thread other than the executor's)."""
        period = self.sim_cfg.control_period
        timeout = self.sim_cfg.cmd_vel_timeout
        wall0, sim0 = time.monotonic(), self.clock.now
        started = wall0
        self._publish(self.clock.now, force=True)
        while self._running and rclpy.ok():
            now = self.clock.now
            with self._lock:
                cmd = self._cmd if now - self._cmd_time <= timeout else (0.0, 0.0, 0.0)
                idle = time.monotonic() - self._cmd_wall >= self.jump_after
            self.sim.set_cmd_vel(*cmd)
            if self.clock.pending and idle and not any(cmd) and self.sim.at_rest():
                # Nothing moves: skip straight to the wake-up someone waits for.
                now = self.clock.advance(0.0)
                self.stats["jumps"] += 1
                self._publish(now, force=True)
                wall0, sim0 = time.monotonic(), now
                continue
            self.sim.step(period)
            target = now + period
            self.clock.schedule(target)
            while self.clock.now < target:   # passes (and pops) earlier wake-ups on the way
                self.clock.advance(0.0)
            self.stats["steps"] += 1
            self.stats["stepped_s"] += period
            self.stats["wall_s"] = time.monotonic() - started
            self._publish(self.clock.now)
            if self.rtf > 0:
                ahead = (self.clock.now - sim0) / self.rtf - (time.monotonic() - wall0)
                if ahead > 0:
                    time.sleep(ahead)
            else:
                time.sleep(0)   # let the executor thread take the GIL for callbacks

    def stop(self) -> None:
        self._running = False

    def summary(self) -> str:
        """Stepped simulated time against wall time (jumps excluded): the real-time factor."""
        st = self.stats
        rtf = st["stepped_s"] / st["wall_s"] if st["wall_s"] > 0 else 0.0
        return (f"stepped {st['stepped_s']:.1f} s of physics in {st['wall_s']:.1f} s wall "
                f"(real-time factor {rtf:.1f} incl. idle time), {st['jumps']} clock jumps, "
                f"{st['scans']} scans")


def main(args=None):
    rclpy.init(args=args)
    node = PhysicsSimNode()
    executor = make_executor(2)
    executor.add_node(node)

    def spin() -> None:
        try:
            executor.spin()
        except Exception:  # noqa: BLE001 - the context ends under it at shutdown (SIGINT)
            if rclpy.ok():
                raise

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        node.run()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.stop()
        # The context may be shut down already (SIGINT), so not through the node's logger.
        print(f"[physics_sim] {node.summary()}", file=sys.stderr, flush=True)
        executor.shutdown()
        spinner.join(timeout=2.0)
        node.destroy_node()
        rclpy.try_shutdown()
