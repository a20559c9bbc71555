#!/usr/bin/env python3
"""Benchmark of the builtin navigation in the MuJoCo physics simulation.

Visits every station several times in random order with odometry drift on (config/sim.yaml)
and reports, against the simulator's ground truth (which navigation never reads):
arrivals, docking error (position mm, heading deg: mean and 95th percentile), localisation
error along the route (95th percentile), time per leg, and the real-time factor of the
simulation with navigation running in the same process.

    python bench/navigation.py            # 3 visits per station
    python bench/navigation.py --quick    # 1 visit per station
    python bench/navigation.py --ros      # the same over the ROS 2 graph: nodes/physics_sim
                                          # and nodes/navigation as processes, goals through
                                          # /robot/navigate_to_station
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mobile_chemist.config import load_lab  # noqa: E402
from mobile_chemist.navigation import (NavigationConfig, NavigationRefused, Navigator,  # noqa: E402
                                       laser_mounts_from_description, scan_to_points)
from mobile_chemist.navigation.geometry import as_array, between  # noqa: E402


def visiting_order(stations: list[str], visits: int, start: str, rng) -> list[str]:
    """Each station `visits` times, shuffled, never the same station twice in a row."""
    order, last = [], start
    pool = [s for s in stations for _ in range(visits)]
    while pool:
        rng.shuffle(pool)
        pick = next((i for i, s in enumerate(pool) if s != last), 0)
        last = pool.pop(pick)
        order.append(last)
    return order


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one visit per station")
    parser.add_argument("--visits", type=int, default=3, help="visits per station")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lab", default=None, help="lab layout file (default config/lab.yaml)")
    parser.add_argument("--sim-config", default=None, help="default config/sim.yaml")
    parser.add_argument("--navigation-config", default=None, help="default config/navigation.yaml")
    parser.add_argument("--ros", action="store_true",
                        help="run the nodes as processes and send goals over the action")
    parser.add_argument("--real-time-factor", type=float, default=3.0,
                        help="with --ros: physics_sim's real_time_factor (0 = free-running)")
    args = parser.parse_args(argv)
    if args.ros:
        return run_over_ros(args)
    from mobile_chemist.physics_sim import PhysicsLab, load_sim_config

    lab = load_lab(args.lab)
    sim = PhysicsLab(lab, load_sim_config(args.sim_config), seed=args.seed)
    mounts = laser_mounts_from_description(lab.robot.footprint)
    nav = Navigator(lab, NavigationConfig.load(lab, args.navigation_config), seed=args.seed)
    home = lab.robot.home_station
    nav.set_initial_pose(lab.stations[home].approach)   # a guess: the sim starts near it
    period = 1.0 / sim.sim.laser_rate_hz
    rng = np.random.default_rng(args.seed)
    order = visiting_order(sorted(lab.stations), 1 if args.quick else args.visits, home, rng)

    def sense():
        points = []
        for frame in sim.laser_frames:
            s = sim.scan(frame)
            points.append(scan_to_points(s.ranges, s.angle_min, s.angle_increment,
                                         s.range_min, s.range_max, mounts[frame]))
        return as_array(sim.odom_pose()), np.vstack(points)

    odom, points = sense()
    nav.localise(odom, points, force=True)
    rows, loc_errors = [], []
    wall_start, sim_start = time.perf_counter(), sim.time
    print(f"{len(order)} legs; scans at {sim.sim.laser_rate_hz:g} Hz; "
          f"odometry scale error {sim.sim.odom_scale}")
    for i, station in enumerate(order):
        t0, w0 = sim.time, time.perf_counter()
        try:
            leg = nav.start_leg(station, sim.time, odom)
        except NavigationRefused as exc:
            rows.append((station, False, exc.message, math.nan, math.nan, 0.0, 0.0))
            print(f"{i + 1:3d} {station:17s} REFUSED  {exc.message}")
            continue
        while not leg.done:
            sim.step(period)
            odom, points = sense()
            nav.localise(odom, points)
            truth = as_array(sim.ground_truth_pose())
            loc_errors.append(math.hypot(*(nav.pose[:2] - truth[:2])))
            sim.set_cmd_vel(*leg.step(sim.time, odom, points).cmd)
        sim.set_cmd_vel(0.0, 0.0, 0.0)
        r = leg.result
        err = between(as_array(sim.ground_truth_pose()), as_array(lab.stations[station].approach))
        pos_mm, yaw_deg = math.hypot(err[0], err[1]) * 1000, math.degrees(abs(err[2]))
        rows.append((station, r.success, r.message, pos_mm, yaw_deg, sim.time - t0,
                     time.perf_counter() - w0))
        print(f"{i + 1:3d} {station:17s} {'ok' if r.success else 'FAILED':6s} "
              f"dock {pos_mm:6.2f} mm {yaw_deg:5.3f} deg  "
              f"residual {r.docking_residual * 1000:4.1f} mm"
              f"  attempts {r.docking_attempts}  leg {sim.time - t0:5.1f} s sim "
              f"{time.perf_counter() - w0:5.1f} s wall  {r.message}")
    wall = time.perf_counter() - wall_start
    simulated = sim.time - sim_start
    print(f"odometry            {sim.distance_travelled:.1f} m driven, "
          f"scale error {sim.sim.odom_scale}")
    return summarise(rows, loc_errors, simulated, wall)


def summarise(rows, loc_errors, simulated: float, wall: float) -> int:
    """Print the figures; rows are (station, success, message, mm, deg, sim s, wall s)."""
    ok = [r for r in rows if r[1]]
    pos = np.array([r[3] for r in ok])
    yaw = np.array([r[4] for r in ok])
    legs = np.array([r[5] for r in ok])
    print()
    share = 100.0 * len(ok) / max(1, len(rows))
    print(f"arrivals            {len(ok)}/{len(rows)} ({share:.0f} %)")
    if len(ok):
        print(f"docking position    mean {pos.mean():.2f} mm  p95 {np.percentile(pos, 95):.2f} mm"
              f"  max {pos.max():.2f} mm")
        print(f"docking heading     mean {yaw.mean():.3f} deg  p95 {np.percentile(yaw, 95):.3f} deg"
              f"  max {yaw.max():.3f} deg")
        print(f"time per leg        mean {legs.mean():.1f} s  max {legs.max():.1f} s (simulated)")
    if len(loc_errors):
        print(f"localisation error  p95 {np.percentile(loc_errors, 95) * 100:.2f} cm  "
              f"max {max(loc_errors) * 100:.2f} cm along the route")
    print(f"real-time factor    {simulated / wall:.1f} "
          f"({simulated:.0f} s simulated in {wall:.0f} s)")
    failed = [r for r in rows if not r[1]]
    for station, _, message, *_ in failed:
        print(f"failed: {station}: {message}")
    return 0 if not failed else 1


def run_over_ros(args) -> int:
    """The bench over the ROS 2 graph: physics_sim and navigation as processes."""
    import os
    import threading
    from collections import deque

    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.action import ActionClient
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from mobile_chemist.action import NavigateToStation
    from mobile_chemist.graph import NodeSpec
    from mobile_chemist.local_launch import LocalLaunch
    from mobile_chemist.ros.common import LATCHED_QOS, HandoffExecutor, from_time_msg, now_s
    from mobile_chemist.ros.navigation_node import yaw_of

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    lab = load_lab(args.lab)
    order = visiting_order(sorted(lab.stations), 1 if args.quick else args.visits,
                           lab.robot.home_station, np.random.default_rng(args.seed))
    specs = [NodeSpec("physics_sim", "physics_sim", {
                 "real_time_factor": float(args.real_time_factor), "seed": int(args.seed),
                 "lab_config": args.lab or "", "sim_config": args.sim_config or ""}),
             NodeSpec("navigation", "navigation", {
                 "use_sim_time": True, "lab_config": args.lab or "", "seed": int(args.seed),
                 "navigation_config": args.navigation_config or ""})]

    def pose_of(msg) -> tuple[float, np.ndarray]:
        p = msg.pose
        return from_time_msg(msg.header.stamp), np.array([p.position.x, p.position.y,
                                                          yaw_of(p.orientation)])

    with LocalLaunch() as launch:
        launch.start_all(specs)
        rclpy.init()
        node = Node("navigation_bench", parameter_overrides=[Parameter("use_sim_time", value=True)])
        truth, estimate = deque(maxlen=20000), deque(maxlen=20000)
        node.create_subscription(PoseStamped, "/ground_truth/pose",
                                 lambda m: truth.append(pose_of(m)), 50)
        node.create_subscription(PoseStamped, "/robot/pose",
                                 lambda m: estimate.append(pose_of(m)), LATCHED_QOS)
        action = ActionClient(node, NavigateToStation, "/robot/navigate_to_station")
        executor = HandoffExecutor(num_threads=2)
        executor.add_node(node)
        threading.Thread(target=executor.spin, daemon=True).start()
        if not action.wait_for_server(timeout_sec=60.0):
            print("the navigation node did not come up")
            return 2
        while now_s(node) <= 0 or not truth:
            time.sleep(0.05)
        print(f"{len(order)} legs over ROS 2; physics real_time_factor "
              f"{args.real_time_factor:g} (0 = free-running)")
        rows = []
        sim_start, wall_start = now_s(node), time.perf_counter()
        for i, station in enumerate(order):
            t0, w0 = now_s(node), time.perf_counter()
            done = threading.Event()
            goal = action.send_goal_async(NavigateToStation.Goal(request_id=f"bench-{i}",
                                                                 station=station))
            goal.add_done_callback(lambda _f: done.set())
            done.wait(30.0)
            done.clear()
            result_future = goal.result().get_result_async()
            result_future.add_done_callback(lambda _f: done.set())
            done.wait(600.0)
            r = result_future.result().result
            seen = truth[-1][0]
            while truth[-1][0] <= seen:               # a ground-truth message after the result
                time.sleep(0.01)
            err = between(truth[-1][1], as_array(lab.stations[station].approach))
            pos_mm, yaw_deg = math.hypot(err[0], err[1]) * 1000, math.degrees(abs(err[2]))
            legs = (now_s(node) - t0, time.perf_counter() - w0)
            rows.append((station, r.success, r.message, pos_mm, yaw_deg, *legs))
            print(f"{i + 1:3d} {station:17s} {'ok' if r.success else 'FAILED':6s} "
                  f"dock {pos_mm:6.2f} mm {yaw_deg:5.3f} deg  "
                  f"residual {r.docking_residual * 1000:4.1f} mm  leg {legs[0]:5.1f} s sim "
                  f"{legs[1]:5.1f} s wall  {r.message}")
        simulated, wall = now_s(node) - sim_start, time.perf_counter() - wall_start
        action.destroy()
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown()
    # Localisation error: each published estimate against the ground truth nearest in time.
    t_truth = np.array([t for t, _ in truth])
    p_truth = np.array([p for _, p in truth])
    loc_errors = []
    for t, p in estimate:
        k = int(np.argmin(np.abs(t_truth - t)))
        if abs(t_truth[k] - t) < 0.03 and t >= sim_start:
            loc_errors.append(math.hypot(*(p[:2] - p_truth[k][:2])))
    return summarise(rows, loc_errors, simulated, wall)


if __name__ == "__main__":
    sys.exit(main())
