"""The builtin navigation stack against a small 2-D simulator of the lab (no ROS).

The simulator casts the scanners' rays against the exact rectangles of lab.yaml (plus
optional unmapped boxes), adds range noise, and integrates velocity commands into a true
pose and a drifting odometry. Navigation never sees the true pose.
"""

import collections
import math

import numpy as np
import pytest

from mobile_chemist.config import Rect
from mobile_chemist.navigation import (FollowStatus, NavError, NavigationConfig,
                                       NavigationRefused, Navigator, OccupancyMap,
                                       ParticleFilterLocaliser, PathFollower, Phase,
                                       PlanningError, GridPlanner, laser_mounts_from_description,
                                       scan_to_points)
from mobile_chemist.navigation.geometry import (as_array, between, compose, lab_rects,
                                                raycast_segments, segments_of, wrap_angle)
from mobile_chemist.navigation.nav2_backend import (TASK_CANCELED, TASK_FAILED,
                                                    TASK_SUCCEEDED, Nav2Backend)

FOV = math.radians(270.0)
BEAMS = 541                       # 0.5 deg, as config/sim.yaml's scanners


class RaySim:
    """True pose, drifting odometry and noisy scans of both scanners."""

    def __init__(self, lab, pose, *, noise=0.01, seed=1, drift=(0.015, 0.01, 0.01),
                 actuation=1.0):
        self.lab = lab
        self.mounts = list(laser_mounts_from_description(lab.robot.footprint).values())
        self.unmapped: list[Rect] = []
        self.pose = as_array(pose)
        self.odom = np.zeros(3)
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        self.drift = drift            # scale error of translation, of rotation; yaw per m
        self.actuation = actuation    # the base does this fraction of what it is told

    def ranges(self, mount, segments) -> tuple[np.ndarray, np.ndarray]:
        """(beam angles, noisy ranges) of one scanner at the true pose."""
        angles = -FOV / 2 + FOV / (BEAMS - 1) * np.arange(BEAMS)
        laser = compose(self.pose, np.array(mount.pose))
        ranges = raycast_segments(laser[:2], laser[2] + angles, segments, 30.0)
        return angles, ranges + self.rng.normal(0, self.noise, ranges.size)

    def scan(self) -> np.ndarray:
        segments = segments_of(lab_rects(self.lab) + self.unmapped)
        points = []
        for mount in self.mounts:
            angles, ranges = self.ranges(mount, segments)
            points.append(scan_to_points(ranges, angles[0], angles[1] - angles[0], 0.1, 30.0,
                                         mount))
        return np.vstack(points)

    def move(self, cmd, dt):
        d = np.asarray(cmd, dtype=float) * dt * self.actuation
        self.pose = compose(self.pose, d)
        s_t, s_r, yaw_per_m = self.drift
        seen = np.array([d[0] * (1 + s_t), d[1] * (1 + s_t),
                         d[2] * (1 + s_r) + yaw_per_m * math.hypot(d[0], d[1])])
        self.odom = compose(self.odom, seen)


def run_leg(nav, sim, station, t=0.0, dt=0.1, max_steps=3000, between_steps=None):
    nav.localise(sim.odom, sim.scan(), force=True)
    leg = nav.start_leg(station, t, sim.odom)
    errors = []
    for _ in range(max_steps):
        if leg.done:
            break
        points = sim.scan()
        nav.localise(sim.odom, points)
        errors.append(math.hypot(*(nav.pose[:2] - sim.pose[:2])))
        out = leg.step(t, sim.odom, points)
        if between_steps:
            between_steps(leg, out, t)
        sim.move(out.cmd, dt)
        t += dt
    return leg, errors, t


@pytest.fixture(scope="module")
def occupancy(lab):
    return OccupancyMap.from_lab(lab)


@pytest.fixture(scope="module")
def config(lab):
    return NavigationConfig.load(lab)


def test_map_matches_lab_layout(lab, occupancy):
    # A point in an aisle is free, the island and a bench are occupied, walls bound the room.
    assert occupancy.distance_at(np.array([2.0, 2.5])) > 0.5
    for x, y in [(6.0, 4.0), (4.0, 0.4), (-0.05, 4.0), (12.05, 4.0)]:
        assert occupancy.distance_at(np.array([x, y])) == pytest.approx(0.0, abs=1e-9)


def test_localisation_converges_from_wrong_initial_pose(lab, occupancy, config):
    true = np.array([2.5, 2.4, 0.3])
    sim = RaySim(lab, true, seed=3)
    loc = ParticleFilterLocaliser(occupancy, config.localisation, seed=4)
    guess = true + np.array([0.3, -0.25, 0.15])        # 39 cm and 8.6 deg off
    loc.initialise(guess, sigma_xy=0.3, sigma_yaw=0.2)
    loc.update(sim.odom, sim.scan(), force=True)
    for _ in range(40):                                  # 2 m east at 0.5 m/s
        sim.move((0.5, 0.0, 0.0), 0.1)
        loc.update(sim.odom, sim.scan())
    error = loc.pose - sim.pose
    assert math.hypot(error[0], error[1]) < 0.05
    assert abs(wrap_angle(error[2])) < math.radians(1.0)


def test_planner_goes_around_an_obstacle(lab, occupancy):
    planner = GridPlanner(occupancy, lab.robot.footprint)
    start, goal = np.array([3.0, 4.0]), np.array([9.0, 4.0])   # either side of the island
    path = planner.plan(start, goal)
    assert np.allclose(path[0], start) and np.allclose(path[-1], goal)
    island = lab.obstacles[0]
    inside = ((np.abs(path[:, 0] - island.center[0]) < island.size[0] / 2)
              & (np.abs(path[:, 1] - island.center[1]) < island.size[1] / 2))
    assert not inside.any()
    assert occupancy.distance_at(path).min() >= planner.lethal_radius - 1e-6
    # Smoothing keeps few corners: consecutive headings change rarely.
    headings = np.arctan2(*np.diff(path, axis=0).T[::-1])
    assert (np.abs(wrap_angle(np.diff(headings))) > 0.01).sum() <= 8
    assert 6.0 < len(path) * 0.1 < 10.0


def test_unreachable_goals_are_rejected_with_reasons(lab, occupancy, config):
    planner = GridPlanner(occupancy, lab.robot.footprint)
    with pytest.raises(PlanningError, match="does not fit"):
        planner.plan([2.0, 2.5], [6.0, 4.0])          # inside the island
    with pytest.raises(PlanningError, match="outside the map"):
        planner.plan([2.0, 2.5], [30.0, 4.0])
    # Wall the goal in with a ring of occupied cells: no path.
    walled = OccupancyMap(occupancy.occupied.copy(), occupancy.resolution, occupancy.origin)
    row, col = walled.world_to_cell(np.array([10.5, 4.0]))
    ring = walled.occupied[row - 20:row + 21, col - 20:col + 21]
    ring[0, :] = ring[-1, :] = ring[:, 0] = ring[:, -1] = True
    walled = OccupancyMap(walled.occupied, walled.resolution, walled.origin)
    with pytest.raises(PlanningError, match="enclosed"):
        GridPlanner(walled, lab.robot.footprint).plan([2.0, 2.5], [10.5, 4.0])
    nav = Navigator(lab, config, occupancy=occupancy)
    nav.set_initial_pose(lab.stations["charger"].approach)
    with pytest.raises(NavigationRefused) as refused:
        nav.plan("kitchen")
    assert refused.value.code == NavError.UNKNOWN_STATION and "kitchen" in refused.value.message


def test_docking_converges_with_noisy_scans(lab, occupancy, config):
    """Arrive a few cm and degrees off, with a base that does 95 % of what it is told:
    docking must end within 5 mm and 0.5 deg of the approach pose (true pose)."""
    rng = np.random.default_rng(7)
    pos_err, yaw_err = [], []
    stations = ["rack_storage", "liquid_dispenser", "sonicator", "gc", "charger"]
    for i, station in enumerate(stations * 2):
        approach = as_array(lab.stations[station].approach)
        offset = np.array([rng.normal(0, 0.02), rng.normal(0, 0.02), rng.normal(0, 0.02)])
        sim = RaySim(lab, compose(approach, offset), seed=i, actuation=0.95)
        nav = Navigator(lab, config, occupancy=occupancy, seed=i)
        nav.set_initial_pose(sim.pose + np.array([0.02, -0.02, 0.01]), 0.02, 0.01)
        nav.localise(sim.odom, sim.scan(), force=True)
        leg = nav.start_docking(station, 0.0, sim.odom)
        t = 0.0
        while not leg.done and t < 60:
            points = sim.scan()
            nav.localise(sim.odom, points)
            sim.move(leg.step(t, sim.odom, points).cmd, 0.08)
            t += 0.08
        assert leg.result.success, leg.result.message
        assert 0 < leg.result.docking_residual < 0.02
        error = between(sim.pose, approach)
        pos_err.append(math.hypot(error[0], error[1]))
        yaw_err.append(abs(error[2]))
    assert np.percentile(pos_err, 95) < 0.005
    assert np.percentile(np.degrees(yaw_err), 95) < 0.5


def test_follower_stops_for_unmapped_obstacle_and_resumes(lab, occupancy, config):
    start, goal = np.array([2.0, 2.4, 0.0]), np.array([5.5, 2.4, 0.0])
    planner = GridPlanner(occupancy, lab.robot.footprint)
    path = planner.plan(start, goal)
    sim = RaySim(lab, start, noise=0.005)
    follower = PathFollower(path, goal, occupancy, lab.robot.footprint, config.follower)
    box = Rect("cart", (3.6, 2.4), (0.4, 0.4))      # a cart nobody put on the map
    sim.unmapped.append(box)
    t, statuses = 0.0, []
    for _ in range(60):
        out = follower.step(sim.pose, t, compose_points(sim))
        statuses.append(out.status)
        sim.move(out.cmd, 0.1)
        t += 0.1
    assert statuses[-1] is FollowStatus.BLOCKED
    assert out.cmd == (0.0, 0.0, 0.0) and "not on the map" in out.message
    assert sim.pose[0] + lab.robot.footprint[0] / 2 < box.center[0] - box.size[0] / 2  # no contact
    sim.unmapped.clear()                              # the cart is pushed away
    for _ in range(200):
        out = follower.step(sim.pose, t, compose_points(sim))
        if out.status is FollowStatus.ARRIVED:
            break
        assert out.status is FollowStatus.FOLLOWING
        sim.move(out.cmd, 0.1)
        t += 0.1
    assert out.status is FollowStatus.ARRIVED
    # An obstacle that stays: the follower gives up after its timeout.
    sim.pose = start.copy()
    sim.unmapped.append(box)
    follower = PathFollower(path, goal, occupancy, lab.robot.footprint, config.follower)
    t0 = t
    while t - t0 < config.follower.blocked_timeout + 15:
        out = follower.step(sim.pose, t, compose_points(sim))
        if out.status is FollowStatus.FAILED:
            break
        sim.move(out.cmd, 0.25)
        t += 0.25
    assert out.status is FollowStatus.FAILED and "blocked" in out.message


def compose_points(sim):
    """Scan points in the map frame at the true pose (the follower test has no localiser)."""
    from mobile_chemist.navigation.geometry import transform_points
    return transform_points(sim.pose, sim.scan())


def test_legs_with_odometry_drift_arrive_and_dock(lab, occupancy, config):
    home = as_array(lab.stations["charger"].approach)
    sim = RaySim(lab, compose(home, np.array([0.01, -0.01, 0.005])), seed=11)
    nav = Navigator(lab, config, occupancy=occupancy, seed=2)
    nav.set_initial_pose(home)
    t = 0.0
    for station in ["sonicator", "solid_dispenser"]:
        leg, errors, t = run_leg(nav, sim, station, t)
        result = leg.result
        assert result.success, result.message
        assert nav.docked_at == station
        error = between(sim.pose, as_array(lab.stations[station].approach))
        assert math.hypot(error[0], error[1]) < 0.005 and abs(error[2]) < math.radians(0.5)
        assert np.percentile(errors, 95) < 0.05
        assert result.distance_travelled > 2.0
        assert np.hypot(*result.docking_correction[:2]) < 0.1
    # Odometry drifted; the estimate did not.
    assert math.hypot(*between(sim.odom, between(home, sim.pose))[:2]) > 0.01


def test_docking_waits_for_a_base_that_stops_late(lab, occupancy, config):
    """A base that does every command 0.64 s late (its controller or this machine busy)
    runs on past the approach pose after the follower's stop. Docking scans only while
    odometry shows it standing still, drives it back, and reports as its correction what
    registration changed in the estimate, not that drive."""
    station = "solid_dispenser"
    approach = as_array(lab.stations[station].approach)
    sim = RaySim(lab, compose(approach, np.array([0.0, 0.6, 0.0])), seed=3)
    nav = Navigator(lab, config, occupancy=occupancy, seed=3)
    nav.set_initial_pose(sim.pose, 0.02, 0.01)
    nav.localise(sim.odom, sim.scan(), force=True)
    leg = nav.start_leg(station, 0.0, sim.odom)
    late = collections.deque([(0.0, 0.0, 0.0)] * 8)
    t, poses, messages, overshoot = 0.0, [], [], 0.0
    while not leg.done and t < 120:
        points = sim.scan()
        nav.localise(sim.odom, points)
        out = leg.step(t, sim.odom, points)
        poses.append(sim.pose.copy())
        messages.append(out.message)
        if out.phase is Phase.DOCKING:
            overshoot = max(overshoot, math.hypot(*between(approach, sim.pose)[:2]))
        late.append(out.cmd)
        sim.move(late.popleft(), 0.08)
        t += 0.08
    assert leg.result.success, leg.result.message
    assert overshoot > 0.1                                  # it did run on
    # The scans stacked for one registration (a "scanning" cycle and the next) are taken
    # standing still, as odometry tells it.
    creep = config.docking.at_rest_speed * 0.08
    stacked = [i for i, message in enumerate(messages) if message == "docking: scanning"]
    assert stacked and all(np.abs(between(poses[i], poses[i + 1])).max() <= creep
                           for i in stacked)
    assert np.hypot(*leg.result.docking_correction[:2]) < 0.02
    error = between(sim.pose, approach)
    assert math.hypot(error[0], error[1]) < 0.005 and abs(error[2]) < math.radians(0.5)


# -- Nav2 backend against a fake of BasicNavigator's documented API ---------------------
class FakeBasicNavigator:
    """goToPose / isTaskComplete / getFeedback / getResult / cancelTask, scripted."""

    class Feedback:
        def __init__(self, remaining):
            from builtin_interfaces.msg import Duration
            from geometry_msgs.msg import PoseStamped
            self.current_pose = PoseStamped()
            self.distance_remaining = remaining
            self.estimated_time_remaining = Duration(sec=int(remaining * 2))

    def __init__(self, result=TASK_SUCCEEDED, polls=3, accept=True):
        self.result, self.polls, self.accept = result, polls, accept
        self.goals, self.canceled, self.initial = [], False, None
        self.active = False

    def setInitialPose(self, pose):
        self.initial = pose

    def waitUntilNav2Active(self, navigator="bt_navigator", localizer="amcl"):
        self.active = True

    def goToPose(self, pose, behavior_tree=""):
        self.goals.append(pose)
        self._left = self.polls
        return self.accept

    def isTaskComplete(self):
        if self.canceled:
            return True
        self._left -= 1
        return self._left < 0

    def getFeedback(self):
        return self.Feedback(remaining=max(self._left, 0) * 1.0)

    def getResult(self):
        return TASK_CANCELED if self.canceled else self.result

    def cancelTask(self):
        self.canceled = True


def test_nav2_backend_success_sends_the_approach_pose(lab):
    fake = FakeBasicNavigator(TASK_SUCCEEDED, polls=3)
    backend = Nav2Backend(lab, fake, sleep=lambda s: None)
    backend.activate(lab.stations["charger"].approach)
    assert fake.active and fake.initial.header.frame_id == "map"
    feedback = []
    out = backend.drive_to_station("gc", on_feedback=feedback.append)
    assert out.success and out.error_code == NavError.NONE
    goal = fake.goals[-1]
    approach = lab.stations["gc"].approach
    assert goal.header.frame_id == "map"
    assert goal.pose.position.x == pytest.approx(approach.x)
    assert 2 * math.atan2(goal.pose.orientation.z, goal.pose.orientation.w) == \
        pytest.approx(approach.yaw)
    assert len(feedback) == 3 and feedback[0].distance_remaining == 2.0


def test_nav2_backend_failure_cancel_and_rejection(lab):
    failed = Nav2Backend(lab, FakeBasicNavigator(TASK_FAILED), sleep=lambda s: None)
    out = failed.drive_to_station("gc")
    assert out.error_code == NavError.NAVIGATION_FAILED and "failed" in out.message
    fake = FakeBasicNavigator(TASK_SUCCEEDED, polls=100)
    polls = []
    canceling = Nav2Backend(lab, fake, sleep=lambda s: polls.append(s))
    out = canceling.drive_to_station("gc", canceled=lambda: len(polls) >= 2)
    assert out.error_code == NavError.CANCELED and fake.canceled
    rejected = Nav2Backend(lab, FakeBasicNavigator(accept=False), sleep=lambda s: None)
    assert rejected.drive_to_station("gc").error_code == NavError.NAVIGATION_FAILED
    unknown = Nav2Backend(lab, FakeBasicNavigator(), sleep=lambda s: None)
    assert unknown.drive_to_station("kitchen").error_code == NavError.UNKNOWN_STATION
    assert not unknown.navigator.goals


def test_nav2_backend_without_nav2_says_so(lab):
    backend = Nav2Backend(lab)
    try:
        import nav2_simple_commander  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="builtin"):
            backend.navigator


def test_navigation_settings_errors_name_file_and_section(tmp_path):
    import yaml

    from mobile_chemist.config import default_config_path, load_lab
    from mobile_chemist.errors import ConfigError
    from mobile_chemist.navigation.navigator import NavigationConfig

    lab = load_lab()
    data = yaml.safe_load(default_config_path("navigation.yaml").read_text())
    data.setdefault("docking", {})["tolerance_furlongs"] = 1
    bad = tmp_path / "navigation.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError,
                       match=r"navigation.yaml: docking: unknown keys \['tolerance_furlongs'\]"):
        NavigationConfig.load(lab, bad)
    data = yaml.safe_load(default_config_path("navigation.yaml").read_text())
    data.setdefault("follower", {})["max_linear_speed"] = 9.0   # lab.yaml's limit, not here
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="follower: unknown keys"):
        NavigationConfig.load(lab, bad)
    data = yaml.safe_load(default_config_path("navigation.yaml").read_text())
    data["navigator"] = {"leg_timeout_factr": 2}
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="navigator: unknown keys"):
        NavigationConfig.load(lab, bad)
    assert NavigationConfig.load(lab).follower.max_linear_speed == lab.robot.max_linear_speed
