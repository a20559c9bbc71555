"""The campaign database keeps every experiment and refuses what would corrupt it."""

import math
import sqlite3

import pytest

from mobile_chemist.database import CampaignDatabase


def test_batches_experiments_and_steps_round_trip(tmp_path):
    db = CampaignDatabase(tmp_path / "c.db")
    ids = db.add_batch(0, "rack_0", [("v0", True, {"P10": 5.0}), ("v1", False, {"P10": 1.2})])
    db.set_batch_status(0, "running")
    step = db.start_step(0, 4, 0, "run/b0/s4/a0", "execute", "solid_dispenser", "dispense_solid",
                         {}, 10.0, {ids[0]: {"P10": 5.0}, ids[1]: {"P10": 1.2}})
    db.finish_step(step, success=True, end_time=70.0,
                   vial_outcomes={ids[0]: (True, "", {}), ids[1]: (False, "jammed", {})})
    db.fail_experiments([ids[1]], "dispense_solid: jammed")
    db.complete_experiment(ids[0], 3.3, {"hydrogen_umol_per_h": 3.3})
    db.close()
    again = CampaignDatabase(tmp_path / "c.db")
    e0, e1 = again.experiments()
    assert (e0.status, e0.objective, e0.is_control) == ("done", 3.3, True)
    assert (e1.status, e1.failure_reason) == ("failed", "dispense_solid: jammed")
    (s,), = [again.experiment_steps(e1.id)]
    assert s[0].vial_success[e1.id] is False and s[1] == {"P10": 1.2}
    assert s[0].start_time == 10.0 and s[0].end_time == 70.0
    # A failed experiment cannot later be marked done, nor a done one failed.
    again.complete_experiment(e1.id, 9.9, {})
    again.fail_experiments([e0.id], "late")
    assert [r.status for r in again.experiments()] == ["done", "failed"]


def test_refuses_duplicates_and_non_finite_values(tmp_path):
    db = CampaignDatabase(tmp_path / "c.db")
    db.add_batch(0, "r", [("v0", False, {"P10": 1.0})])
    with pytest.raises(sqlite3.IntegrityError):
        db.add_batch(1, "r", [("v0", False, {"P10": 1.0})])   # vial ids are unique
    assert len(db.batches()) == 1                             # and nothing half-written
    with pytest.raises(ValueError, match="not finite"):
        db.add_batch(2, "r", [("v9", False, {"P10": math.nan})])
    db.set_batch_status(0, "running")
    with pytest.raises(ValueError, match="not finite"):
        db.complete_experiment(1, math.inf, {})


def test_wall_time_by_step_kind_runs_from_dispatch_to_the_next_dispatch(tmp_path):
    from mobile_chemist.campaign import wall_time_by_kind

    db = CampaignDatabase(tmp_path / "c.db")
    for batch, walls in ((0, [100.0, 101.5, 111.5, 112.0]), (1, [200.0, 203.0, 213.0])):
        db.add_batch(batch, f"r{batch}", [(f"v{batch}", False, {"P10": 1.0})])
        kinds = ["inspect", "execute", "inspect", "execute"]
        # Dispatched out of id order in batch 1: the dispatch times decide the order.
        order = range(len(walls)) if batch == 0 else reversed(range(len(walls)))
        for i in order:
            db.start_step(batch, i, 0, f"b{batch}/s{i}", kinds[i], "capper", "op", {}, 0.0, {},
                          dispatched_wall=walls[i])
    db.start_step(1, 9, 0, "old", "inspect", "capper", "op", {}, 0.0, {})  # no dispatch time
    walls = wall_time_by_kind(db.steps())
    # inspect: 1.5 (b0 s0), 0.5 (b0 s2), 3.0 (b1 s0); execute: 10 (b0 s1), 10 (b1 s1);
    # the last step of each batch has no end.
    assert walls["inspect"] == (3, 1.5, 5.0)
    assert walls["execute"] == (2, 10.0, 20.0)
    assert set(walls) == {"inspect", "execute"}
