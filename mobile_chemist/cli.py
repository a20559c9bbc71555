"""mobile-chemist: the command line.

    mobile-chemist campaign [--database runs/x.db] [--batches N] [--fresh] ...
        Start the simulated lab and the planner (the same nodes as
        `ros2 launch mobile_chemist sim_campaign.launch.py`) and run a campaign to its end.
    mobile-chemist report --database runs/x.db
        Summarise a campaign database, batch by batch.
    mobile-chemist vision train|eval
        Reproduce the vision models and their metrics (models/README.md).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path


def _campaign(args) -> int:
    from mobile_chemist.graph import physics_lab_graph, planner_node, sim_lab_graph
    from mobile_chemist.local_launch import LocalLaunch

    db = Path(args.database)
    if args.fresh:
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
    start_time = 0.0
    if db.exists():
        from mobile_chemist.database import CampaignDatabase

        record = CampaignDatabase(db)
        times = [t for s in record.steps() for t in (s.start_time, s.end_time) if t]
        record.close()
        start_time = max(times, default=0.0)
        print(f"[campaign] resuming the campaign recorded in {db}")
    db.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("RCUTILS_CONSOLE_OUTPUT_FORMAT", "[{severity}] [{name}] {message}")
    # A domain of its own, so that two campaigns on one machine do not talk to each other.
    env["ROS_DOMAIN_ID"] = str(args.domain_id if args.domain_id is not None
                               else env.get("ROS_DOMAIN_ID") or random.randint(1, 100))
    lab_graph = physics_lab_graph if args.physics else sim_lab_graph
    lab = lab_graph(lab_config=args.lab, real_time_factor=args.real_time_factor,
                    seed=args.seed, start_time=start_time, vision=not args.no_vision)
    planner = planner_node(database=str(db.resolve()), lab_config=args.lab,
                           campaign_config=args.campaign, workflow_config=args.workflow,
                           batches=args.batches, vision=not args.no_vision)
    print(f"[campaign] ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}: starting "
          f"{', '.join(s.name for s in lab)} and the planner", flush=True)
    with LocalLaunch(env) as launch:
        launch.start_all(lab)
        proc = launch.start(planner)
        try:
            while proc.poll() is None:
                launch.check_alive()
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("[campaign] interrupted; the database keeps what was done: run again to resume")
            return 130
    return proc.returncode


def _report(args) -> int:
    from mobile_chemist.campaign import summarize, wall_time_by_kind
    from mobile_chemist.config import load_campaign
    from mobile_chemist.database import CampaignDatabase

    if not Path(args.database).exists():
        print(f"no database at {args.database}", file=sys.stderr)
        return 2
    campaign = load_campaign(args.campaign or None)
    db = CampaignDatabase(args.database)
    print(f"{'batch':>5} {'status':>7} {'done':>5} {'failed':>6} {'best':>8} {'controls':>9}")
    for b in db.batches():
        rec = db.experiments(b["batch"])
        done = [r.objective for r in rec if r.status == "done" and not r.is_control]
        ctrl = [r.objective for r in rec if r.status == "done" and r.is_control]
        print(f"{b['batch']:>5} {b['status']:>7} {sum(r.status == 'done' for r in rec):>5} "
              f"{sum(r.status == 'failed' for r in rec):>6} "
              f"{max(done) if done else float('nan'):>8.3f} "
              f"{sum(ctrl) / len(ctrl) if ctrl else float('nan'):>9.3f}")
    print(summarize(db, campaign).format(campaign.objective).split("; wall time")[0])
    walls = wall_time_by_kind(db.steps())
    if walls:
        print("wall time by step kind (dispatch to the next dispatch in the batch): " + "; ".join(
            f"{kind} {n} steps, median {median:.1f} s, {total:.0f} s in all"
            for kind, (n, median, total) in walls.items()))
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["vision"]:  # its own parser: mobile_chemist/vision/cli.py
        from mobile_chemist.vision.cli import main as vision_main

        return vision_main(argv[1:])
    parser = argparse.ArgumentParser(prog="mobile-chemist", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("campaign", help="run a simulated autonomous campaign")
    c.add_argument("--database", default="runs/campaign.db",
                   help="campaign record; an existing one is resumed (default %(default)s)")
    c.add_argument("--fresh", action="store_true", help="delete the database first")
    c.add_argument("--batches", type=int, default=0,
                   help="batches to run (default: n_batches of the campaign file, 43)")
    c.add_argument("--lab", default="", help="lab layout file (default config/lab.yaml)")
    c.add_argument("--campaign", default="", help="campaign file (default config/campaign.yaml)")
    c.add_argument("--workflow", default="", help="workflow file (default config/workflow.yaml)")
    c.add_argument("--real-time-factor", type=float, default=0.0,
                   help="simulated seconds per wall second; 0 = as fast as possible")
    c.add_argument("--seed", type=int, default=0, help="seed of the simulated instruments")
    c.add_argument("--physics", action="store_true",
                   help="drive the MuJoCo base with the builtin navigation (nodes/physics_sim, "
                        "nodes/navigation) instead of the discrete-event robot")
    c.add_argument("--no-vision", action="store_true",
                   help="no simulated camera and vision node; the workflow's inspect steps are "
                        "skipped")
    c.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: random)")
    c.set_defaults(func=_campaign)
    r = sub.add_parser("report", help="summarise a campaign database")
    r.add_argument("--database", default="runs/campaign.db")
    r.add_argument("--campaign", default="", help="campaign file (default config/campaign.yaml)")
    r.set_defaults(func=_report)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
