"""Simulated instruments, station goal validation, event clock, request ledger, robot model."""

import math
import threading
import time

import pytest

from mobile_chemist.ledger import RequestLedger, UnknownRequest
from mobile_chemist.robot_sim import DiscreteEventRobot, MotionRefused, RobotError
from mobile_chemist.sim_clock import EventClock
from mobile_chemist.stations import (GoalRejected, OperationGoal, SimulatedLab, StationError,
                                     load_callable, make_driver, validate_goal)


def test_event_clock_stands_still_when_idle_and_jumps_to_wakeups():
    clock = EventClock(start=100.0)
    assert clock.advance(10.0) == 100.0          # nobody waits: time stands still
    clock.schedule(160.0)
    clock.schedule(130.0)
    assert clock.advance(0.001) == 130.0         # the earliest wake-up first
    assert clock.advance(0.001) == 160.0
    assert clock.advance(1.0) == 160.0 and clock.pending == 0
    slow = EventClock(start=0.0, rate=10.0)
    slow.schedule(100.0)
    assert slow.advance(2.0) == pytest.approx(20.0)
    with pytest.raises(ValueError):
        slow.schedule(math.nan)


def test_ledger_runs_each_request_once_even_concurrently():
    ledger = RequestLedger()
    calls = []

    def work():
        calls.append(1)
        time.sleep(0.05)
        return len(calls)

    threads = [threading.Thread(target=ledger.run, args=("r1", work)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1] and ledger.run("r1", work) == 1
    with pytest.raises(UnknownRequest):
        ledger.run("r2", work, recover_only=True)
    assert ledger.run("", work) == 2             # no request id: no de-duplication


def _goal(**kw):
    base = dict(station="liquid_dispenser", operation="dispense_liquids", rack_id="r",
                vial_ids=["a", "b"], parameters={}, vial_parameters=[{"NaOH": 1.0}, {"NaCl": 2.0}])
    base.update(kw)
    return OperationGoal(**base)


@pytest.mark.parametrize("change, code", [
    (dict(station="kitchen"), StationError.UNKNOWN_STATION),
    (dict(operation="shake"), StationError.UNKNOWN_OPERATION),
    (dict(vial_ids=[]), StationError.INVALID_PARAMETER),
    (dict(vial_ids=["a", "a"]), StationError.INVALID_PARAMETER),
    (dict(vial_parameters=[{"NaOH": 1.0}]), StationError.INVALID_PARAMETER),
    (dict(vial_parameters=[{"NaOH": math.nan}, {}]), StationError.INVALID_PARAMETER),
    (dict(vial_parameters=[{"gold": 1.0}, {}]), StationError.INVALID_PARAMETER),
    (dict(vial_parameters=[{"NaOH": 3.0, "NaCl": 2.5}, {}]), StationError.CAPACITY),
    (dict(vial_ids=[f"v{i}" for i in range(17)], vial_parameters=[{}] * 17), StationError.CAPACITY),
])
def test_goal_validation(lab, change, code):
    with pytest.raises(GoalRejected) as err:
        validate_goal(lab.stations, _goal(**change))
    assert err.value.code == code and err.value.message


def test_defaults_filled_in(lab):
    params = validate_goal(lab.stations, _goal(station="photolysis", operation="irradiate",
                                               vial_parameters=[]))
    assert params == {"duration_s": 3600.0}


def test_sim_instruments_measure_what_was_dispensed(lab):
    from mobile_chemist.response import hydrogen_evolution_rate

    world = SimulatedLab()
    # Seed 2: the capper's silent faults (1 % a vial) leave both vials capped.
    drivers = {n: make_driver(s, world, seed=2) for n, s in lab.stations.items()}
    elapsed = []

    def sleep(s):
        elapsed.append(s)
        return True

    def run(station, operation, vial_parameters=(), **params):
        spec = lab.stations[station].operations[operation]
        goal = OperationGoal(station, operation, "r", ["good", "plain"], params,
                             list(vial_parameters))
        p = validate_goal(lab.stations, goal)
        return drivers[station].execute(spec, goal, p, lambda *a: None, sleep)

    formulation = {"P10": 5.0, "L_cysteine": 2.0, "NaOH": 1.25, "NaCl": 0.75}
    run("solid_dispenser", "dispense_solid", [{"P10": 5.0}, {"P10": 5.0}])
    run("liquid_dispenser", "dispense_liquids",
        [{k: v for k, v in formulation.items() if k != "P10"}, {"L_cysteine": 0.5}])
    run("capper", "cap_and_inertise")
    run("photolysis", "irradiate")
    values = []
    for _ in range(30):
        res = run("gc", "measure_hydrogen")
        values.append([v.measurements.get("hydrogen_umol_per_h", math.nan) for v in res.vials])
    good = [v[0] for v in values if not math.isnan(v[0])]
    true = hydrogen_evolution_rate(formulation)
    assert abs(sum(good) / len(good) - true) < 0.1 * true          # unbiased ...
    assert 0 < (max(good) - min(good))                               # ... and noisy
    assert sum(elapsed) > 3600                                       # took simulated time
    # A vial nothing was dispensed into fails at the GC with a clear message.
    spec = lab.stations["gc"].operations["measure_hydrogen"]
    res = drivers["gc"].execute(spec, OperationGoal("gc", "measure_hydrogen", "r", ["ghost"]), {},
                                lambda *a: None, sleep)
    assert not res.vials[0].success and "nothing was dispensed" in res.vials[0].message


def test_silent_capper_fault_leaves_the_vial_open_and_its_hydrogen_escapes(lab):
    import copy
    import dataclasses

    leaky = copy.deepcopy(lab)
    capper = leaky.stations["capper"]
    capper.operations["cap_and_inertise"] = dataclasses.replace(
        capper.operations["cap_and_inertise"], failure_silent_per_vial=1.0)
    world = SimulatedLab()
    drivers = {n: make_driver(s, world, seed=2) for n, s in leaky.stations.items()}

    def run(station, operation, vial_parameters=()):
        spec = leaky.stations[station].operations[operation]
        goal = OperationGoal(station, operation, "rack_a", ["v0", "v1"], {}, list(vial_parameters))
        return drivers[station].execute(spec, goal, validate_goal(leaky.stations, goal),
                                        lambda *a: None, lambda s: True)

    run("solid_dispenser", "dispense_solid", [{"P10": 5.0}] * 2)
    run("liquid_dispenser", "dispense_liquids", [{"L_cysteine": 2.0, "NaOH": 1.25}] * 2)
    assert run("capper", "cap_and_inertise").success            # it reports success ...
    rack = world.rack("rack_a")
    assert [v for v, _ in rack] == ["v0", "v1"]
    assert not any(state.capped for _, state in rack)            # ... but capped nothing
    assert all(state.solid_mg == 5.0 and state.liquid_ml == 3.25 for _, state in rack)
    run("sonicator", "sonicate")
    assert all(state.dispersed for _, state in world.rack("rack_a"))
    run("photolysis", "irradiate")
    measured = [v.measurements["hydrogen_umol_per_h"] for v in run("gc", "measure_hydrogen").vials]
    assert max(measured) < 0.5                                   # only the GC's noise


def test_response_is_pluggable_by_dotted_path():
    assert load_callable("mobile_chemist.response.hydrogen_evolution_rate")({"P10": 5.0}) >= 0
    assert load_callable("math:sqrt")(4.0) == 2.0
    with pytest.raises(ValueError, match="cannot import"):
        load_callable("mobile_chemist.response.no_such_function")


def test_robot_model_times_and_refusals(lab):
    robot = DiscreteEventRobot(lab)
    plan = robot.plan_navigation("gc")
    a, b = lab.stations[lab.robot.home_station].approach, lab.stations["gc"].approach
    assert plan.distance_m == pytest.approx(math.hypot(a.x - b.x, a.y - b.y))
    assert plan.duration_s > plan.distance_m / lab.robot.max_linear_speed + lab.robot.docking_s - 1e-9
    robot.complete_navigation("gc", plan)
    with pytest.raises(MotionRefused) as err:
        robot.plan_transfer("rack", "r1", "rack_storage/rack_0", "robot/deck")
    assert err.value.code == RobotError.TRANSFER_NOT_AT_STATION
    robot.complete_navigation("rack_storage", robot.plan_navigation("rack_storage"))
    robot.complete_transfer("r1", "robot/deck")
    with pytest.raises(MotionRefused) as err:
        robot.plan_transfer("rack", "r2", "rack_storage/rack_0", "robot/deck")
    assert err.value.code == RobotError.TRANSFER_TARGET_OCCUPIED
    with pytest.raises(MotionRefused) as err:
        robot.plan_navigation("moon")
    assert err.value.code == RobotError.NAV_UNKNOWN_STATION
