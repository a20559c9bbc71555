"""The closed loop without ROS: planning, recording, failures, and resuming after a crash."""

import copy
import dataclasses

import pytest

from lab_fakes import Crash, InProcessLab, RandomOptimizer
from mobile_chemist.campaign import CampaignRunner
from mobile_chemist.database import CampaignDatabase


def make_runner(tmp_path, lab, campaign, workflow, space, inproc, optimizer=None, name="c.db"):
    db = CampaignDatabase(tmp_path / name)
    return CampaignRunner(db=db, campaign=campaign, lab=lab, workflow=workflow, space=space,
                          optimizer=optimizer or RandomOptimizer(space), dispatcher=inproc,
                          log=lambda *_: None)


def test_short_campaign_records_everything(tmp_path, lab, campaign, workflow, space):
    inproc = InProcessLab(lab)
    runner = make_runner(tmp_path, lab, campaign, workflow, space, inproc)
    summary = runner.run(n_batches=3)
    records = runner.db.experiments()
    assert len(records) == 3 * campaign.batch_size
    assert {r.status for r in records} <= {"done", "failed"}
    assert sum(r.is_control for r in records) == 3 * campaign.controls_per_batch
    assert summary.experiments_done + summary.experiments_failed == len(records)
    # Every finished experiment went through every workflow step, with its own parameters.
    done = next(r for r in records if r.status == "done" and not r.is_control)
    steps = runner.db.experiment_steps(done.id)
    assert [s.step_index for s, _ in steps] == list(range(len(workflow.steps)))
    dispense = [p for s, p in steps if s.operation == "dispense_liquids"][0]
    assert dispense == {k: done.parameters[k] for k in dispense}
    assert all(s.end_time >= s.start_time for s, _ in steps)
    # Simulated time is realistic: hours per batch.
    assert 2 * 3600 < summary.simulated_duration_s / 3 < 8 * 3600
    # The optimizer was told every measurement, controls included, and nothing else.
    assert len(runner.optimizer.observed) == summary.experiments_done
    # Controls measure the baseline: about 3.4 umol/h.
    assert 2.5 < summary.baseline_mean < 4.5


def test_station_failure_fails_the_batch_and_returns_the_rack(tmp_path, lab, campaign, workflow,
                                                              space):
    broken = copy.deepcopy(lab)
    photolysis = broken.stations["photolysis"]
    op = photolysis.operations["irradiate"]
    photolysis.operations["irradiate"] = dataclasses.replace(op, failure_per_operation=1.0)
    inproc = InProcessLab(broken)
    runner = make_runner(tmp_path, broken, campaign, workflow, space, inproc)
    summary = runner.run(n_batches=2)
    batches = runner.db.batches()
    assert [b["status"] for b in batches] == ["failed", "failed"]
    assert "photolysis/irradiate" in batches[0]["failure_reason"]
    assert summary.experiments_done == 0
    # (Before the lamp, the capper's inspection may already have failed an open vial.)
    assert all("device fault" in r.failure_reason or "inspect at capper" in r.failure_reason
               for r in runner.db.experiments())
    # The step was retried once (retries: 1) and the rack went back to storage each time.
    attempts = [s for s in runner.db.steps(0) if s.operation == "irradiate"]
    assert len(attempts) == 2
    assert inproc.robot.racks[batches[1]["rack_id"]] == "rack_storage/rack_1"
    assert runner.optimizer.observed == []


@pytest.mark.parametrize("crash_at", [1, 9, 25, 31])
def test_crash_and_resume_loses_nothing_and_repeats_nothing(tmp_path, lab, campaign, workflow,
                                                           space, crash_at):
    inproc = InProcessLab(lab)
    inproc.crash_after_calls = crash_at
    runner = make_runner(tmp_path, lab, campaign, workflow, space, inproc)
    with pytest.raises(Crash):
        runner.run(n_batches=2)
    runner.db.close()
    # A new planner process: same database, same lab (whose stations survived).
    resumed = make_runner(tmp_path, lab, campaign, workflow, space, inproc)
    resumed.run(n_batches=2)
    records = resumed.db.experiments()
    assert len(records) == 2 * campaign.batch_size
    assert len({r.vial_id for r in records}) == len(records)
    assert all(r.status == "done" for r in records if not r.is_control) or \
        all("simulated" in r.failure_reason or "no cap seen" in r.failure_reason
            for r in records if r.status == "failed")
    # No station request was executed twice.
    request_ids = [rid for rid, _ in inproc.calls]
    assert len(request_ids) == len(set(request_ids))
    # And the result equals an uninterrupted run of the same campaign.
    reference_lab = InProcessLab(lab)
    reference = make_runner(tmp_path, lab, campaign, workflow, space, reference_lab, name="r.db")
    reference.run(n_batches=2)
    got = [(r.vial_id, r.status, r.objective) for r in records]
    want = [(r.vial_id, r.status, r.objective) for r in reference.db.experiments()]
    assert got == want


def test_resume_after_station_restart_fails_only_the_interrupted_batch(tmp_path, lab, campaign,
                                                                      workflow, space):
    inproc = InProcessLab(lab)
    inproc.crash_after_calls = len(workflow.steps) + 8   # inside batch 1
    runner = make_runner(tmp_path, lab, campaign, workflow, space, inproc)
    with pytest.raises(Crash):
        runner.run(n_batches=3)
    runner.db.close()
    inproc.restart_servers()
    resumed = make_runner(tmp_path, lab, campaign, workflow, space, inproc)
    resumed.run(n_batches=3)
    batches = resumed.db.batches()
    assert [b["status"] for b in batches] == ["done", "failed", "done"]
    assert "no record of request" in batches[1]["failure_reason"]
    assert len(resumed.db.experiments()) == 3 * campaign.batch_size


def test_crash_between_recording_and_sending_resends_the_step(tmp_path, lab, campaign,
                                                               workflow, space):
    inproc = InProcessLab(lab)
    inproc.crash_after_calls = 20
    runner = make_runner(tmp_path, lab, campaign, workflow, space, inproc)
    with pytest.raises(Crash):
        runner.run(n_batches=2)
    inproc.crash_before_send = True      # the next dispatch is recorded but never sent
    with pytest.raises(Crash):
        make_runner(tmp_path, lab, campaign, workflow, space, inproc).run(n_batches=2)
    resumed = make_runner(tmp_path, lab, campaign, workflow, space, inproc)
    resumed.run(n_batches=2)
    assert [b["status"] for b in resumed.db.batches()] == ["done", "done"]
    request_ids = [rid for rid, _ in inproc.calls]
    assert len(request_ids) == len(set(request_ids))


def test_resume_rebuilds_the_optimizer_from_the_database(tmp_path, lab, campaign, workflow, space):
    inproc = InProcessLab(lab)
    runner = make_runner(tmp_path, lab, campaign, workflow, space, inproc)
    runner.run(n_batches=2)
    observed = list(runner.optimizer.observed)
    runner.db.close()
    fresh_optimizer = RandomOptimizer(space)
    make_runner(tmp_path, lab, campaign, workflow, space, inproc, optimizer=fresh_optimizer)
    assert fresh_optimizer.observed == observed


def test_database_of_another_campaign_is_refused(tmp_path, lab, campaign, workflow, space):
    inproc = InProcessLab(lab)
    make_runner(tmp_path, lab, campaign, workflow, space, inproc).run(n_batches=1)
    other = dataclasses.replace(campaign, name="something_else")
    with pytest.raises(ValueError, match="records campaign"):
        make_runner(tmp_path, lab, other, workflow, space, inproc)


def test_minimising_campaign_tells_the_optimizer_the_negation(tmp_path, lab, campaign, workflow,
                                                              space):
    minimise = dataclasses.replace(campaign, maximize=False)
    runner = make_runner(tmp_path, lab, minimise, workflow, space, InProcessLab(lab))
    runner.run(n_batches=1)
    measured = sorted(r.objective for r in runner.db.experiments() if r.status == "done")
    told = sorted(-v for _, v in runner.optimizer.observed)
    assert told == measured and measured[-1] > 0
    assert runner.summary().best_value == measured[0]
