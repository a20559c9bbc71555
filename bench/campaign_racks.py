"""Vision on the simulated campaign's own racks, as the campaign's inspect steps see them.

    python bench/campaign_racks.py [--racks 4] [--looks 3] [--renderers mujoco 2d] [--worst N]
                                   [--config config/vision.yaml] [--against C]

Racks of one campaign batch each (20 mL headspace vials; the controls of
config/campaign.yaml and formulations drawn like the optimizer's candidates, solid and
liquid amounts as the simulated dispensers put them in) are imaged by the simulated rack
camera (`vision/rack_camera.py`, config/vision.yaml `sim_camera`) at two workflow points:

* after the capper: solid under clear liquid, capped, except one open vial in eight;
* after the sonicator: the solid dispersed, a turbid suspension (`heterogeneous`).

Each image is read by the deployed pipeline (or by the one a `--config` copy of
config/vision.yaml names) and scored against the renderer's labels: vials found, caps
read right, the content class read for each state, "solid seen" (what an `expect:
{no_phase: [solid]}` check judges: a solid layer or a solid content class, split by
whether the vial holds a solid layer in truth) and the fill-level error, split by sample
volume (the campaign's 0.5-5 mL fill a 20 mL vial only 2-25 %). These figures decide
which inspections config/workflow.yaml can afford (README, "Vision checks in the
campaign").

Each fill-error p95 comes with a 95 % interval with vials resampled (a vial's looks share
its contents, so they are one draw). `--against C` reads every image also with the
pipeline that the vision config C names and prints, for each fill figure, the difference
(this config's minus C's) with its paired interval: two detectors are compared on the same
images, as bench/compare_models.py does on the validation scenes.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mobile_chemist.config import load_campaign, load_lab  # noqa: E402
from mobile_chemist.space import FormulationSpace  # noqa: E402
from mobile_chemist.stations import VialState  # noqa: E402
from mobile_chemist.vision.classes import Phase, Row  # noqa: E402
from mobile_chemist.vision.rack_camera import RackCamera, load_sim_camera_settings  # noqa: E402

#: Where the fill-error figures split the samples: the campaign's smallest (controls:
#: 0.5 mL) fill a 20 mL vial to a few %.
SMALL_ML = 1.0


def amounts_by_kind(lab) -> dict[str, str]:
    """Component name -> "solid" or "liquid", from the dispensers that dispense it."""
    kinds = {}
    for station in lab.stations.values():
        kind = {"solid_dispenser": "solid", "liquid_dispenser": "liquid"}.get(station.type)
        if kind is None:
            continue
        for op in station.operations.values():
            for name in op.vial_parameters:
                kinds[name] = kind
    return kinds


def campaign_racks(n_racks: int, seed: int = 0) -> list[list[tuple[str, VialState]]]:
    """Vial states after the dispensers, one campaign batch per rack: the campaign's
    controls, then formulations drawn like the optimizer's candidates (half uniform on the
    feasible grid, half sparse: most components at zero, so small volumes occur)."""
    lab, campaign = load_lab(), load_campaign()
    space = FormulationSpace.from_config(campaign.campaign_section)
    kinds = amounts_by_kind(lab)
    rng = np.random.default_rng(seed)
    n = campaign.suggestions_per_batch
    racks = []
    for r in range(n_racks):
        drawn = space.sample_candidates_grid(n, rng)
        formulations = ([dict(campaign.control_formulation)] * campaign.controls_per_batch
                        + space.grid_to_formulations(drawn))
        rack = []
        for i, f in enumerate(formulations):
            state = VialState(contents=dict(f))
            state.solid_mg = sum(v for k, v in f.items() if kinds.get(k) == "solid")
            state.liquid_ml = sum(v for k, v in f.items() if kinds.get(k) == "liquid")
            rack.append((f"r{r}_v{i:02d}", state))
        racks.append(rack)
    return racks


def after(rack, point: str, rng: np.random.Generator):
    """The rack after the capper (one vial in eight left open) or after the sonicator."""
    out = []
    for vial_id, s in rack:
        if point == "capper":
            state = VialState(contents=s.contents, solid_mg=s.solid_mg, liquid_ml=s.liquid_ml,
                              capped=bool(rng.random() >= 1 / 8))
        else:
            state = VialState(contents=s.contents, solid_mg=s.solid_mg, liquid_ml=s.liquid_ml,
                              capped=True, dispersed=s.liquid_ml > 0)
        out.append((vial_id, state))
    return out


def measure(renderer: str, racks, looks: int, seed: int,
            configs: Sequence[str | None] = (None,)) -> list[dict]:
    """One tally per vision config (None: the deployed one), all read on the same images."""
    cfg = dataclasses.replace(load_sim_camera_settings(), renderer=renderer)
    camera = RackCamera(cfg)
    pipelines = None
    rng = np.random.default_rng(seed)
    tallies = [{"vials": 0, "found": 0, "cap_ok": 0, "content": {}, "fill_err": {},
                "fill_vial": {}, "solid_seen": {}, "readings": []} for _ in configs]
    try:
        for k, rack in enumerate(racks):
            for point in ("capper", "sonicator"):
                vials = after(rack, point, rng)
                for _ in range(looks):
                    scene = camera.capture(vials, point)
                    if pipelines is None:  # torch only after the first MuJoCo worker exists
                        from mobile_chemist.vision.pipeline import VisionPipeline
                        pipelines = [VisionPipeline(c) for c in configs]
                    for pipeline, tally in zip(pipelines, tallies):
                        _score(pipeline(scene.image), scene, vials, point, tally)
    finally:
        camera.close()
    return tallies


def _score(dets, scene, vials, point: str, tally: dict) -> None:
    """Add one image's detections, matched to the renderer's labels, to `tally`."""
    from mobile_chemist.vision.metrics import match

    tally["vials"] += len(scene.vials)
    for i, j in match(dets, scene.vials):
        d, v = dets[i], scene.vials[j]
        vial_id, state = vials[scene.slots[j]]
        tally["found"] += 1
        tally["cap_ok"] += d.cap_present == v.cap
        key = (point, Phase(v.content).label)
        read = Phase(int(d.content))
        tally["content"].setdefault(key, Counter())[read.label] += 1
        # What an `expect: {no_phase: [solid]}` check would judge.
        seen = read == Phase.SOLID or Phase.SOLID in [l.phase for l in d.layers]
        there = any(Row(r) == Row.SOLID for *_, r in v.segments)
        tally["solid_seen"].setdefault((point, there), Counter())[seen] += 1
        ml = state.liquid_ml
        low = f"liquid {'<' if ml < SMALL_ML else '>='} {SMALL_ML:g} mL"
        err = abs(d.fill_level - v.fill_level) if np.isfinite(d.fill_level) else 1.0
        tally["fill_err"].setdefault((point, low), []).append(err)
        tally["fill_vial"].setdefault((point, low), []).append(vial_id)
        tally["readings"].append((err, point, vial_id, ml, v.fill_level, d.fill_level,
                                  read.label))


def fill_p95_difference(a: dict, b: dict, key) -> tuple[float, list[float]]:
    """p95 of b's fill errors minus a's for one (point, volume) figure, and its 95 %
    interval with the vials resampled together (paired: both read the same images)."""
    from mobile_chemist.vision.metrics import p95, paired_scene_bootstrap

    ids = sorted(set(a["fill_vial"].get(key, [])) | set(b["fill_vial"].get(key, [])))
    index = {v: n for n, v in enumerate(ids)}
    ea, eb = a["fill_err"].get(key, []), b["fill_err"].get(key, [])
    if not ea or not eb:
        return float("nan"), [float("nan"), float("nan")]
    ka = [index[v] for v in a["fill_vial"][key]]
    kb = [index[v] for v in b["fill_vial"][key]]
    return p95(eb) - p95(ea), paired_scene_bootstrap(ea, ka, eb, kb, len(ids), p95)


def report(renderer: str, t: dict, worst: int = 0) -> str:
    from mobile_chemist.vision.metrics import p95, scene_bootstrap

    lines = [f"{renderer}: {t['found']}/{t['vials']} vials found, caps right "
             f"{t['cap_ok']}/{t['found']}"]
    for (point, truth), got in sorted(t["content"].items()):
        n = sum(got.values())
        read = ", ".join(f"{c} {m / n:.0%}" for c, m in got.most_common())
        lines.append(f"  after {point:<9} truth {truth:<13} n {n:3d}: read {read}")
    for (point, there), seen in sorted(t["solid_seen"].items()):
        n = seen[True] + seen[False]
        lines.append(f"  after {point:<9} solid {'there' if there else 'absent':<7} n {n:3d}: "
                     f"solid seen {seen[True] / n:.1%}")
    for key, errs in sorted(t["fill_err"].items()):
        e = np.asarray(errs)
        lo, hi = scene_bootstrap(e, t["fill_vial"][key], p95)
        lines.append(f"  after {key[0]:<9} {key[1]:<12} n {len(e):3d}: fill error median "
                     f"{np.median(e):.3f}, p95 {p95(e):.3f} ({lo:.3f}-{hi:.3f})")
    if worst:
        lines.append(f"  the {worst} largest fill errors (one line per look):")
    for err, point, vial_id, ml, truth, read, content in sorted(t["readings"],
                                                                reverse=True)[:worst]:
        lines.append(f"    after {point:<9} {vial_id} {ml:.2f} mL: fill {truth:.3f} read "
                     f"{read:.3f} (error {err:.3f}) as {content}")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--racks", type=int, default=4)
    p.add_argument("--looks", type=int, default=3, help="images per rack and workflow point")
    p.add_argument("--renderers", nargs="+", default=["mujoco", "2d"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worst", type=int, default=0, metavar="N",
                   help="also list the N looks with the largest fill-level error")
    p.add_argument("--config", help="a vision config naming other weights (default: the "
                   "deployed config/vision.yaml)")
    p.add_argument("--against", metavar="C", help="also read every image with the vision "
                   "config C and print the paired fill differences")
    args = p.parse_args()
    racks = campaign_racks(args.racks, args.seed)
    for renderer in args.renderers:
        configs = [args.config] + ([args.against] if args.against else [])
        tallies = measure(renderer, racks, args.looks, args.seed, configs)
        print(report(renderer, tallies[0], args.worst), flush=True)
        if args.against:
            print(report(f"{renderer}, {args.against} on the same images", tallies[1]))
            print(f"  fill p95, this config minus {args.against} (paired, vials resampled):")
            for key in sorted(tallies[0]["fill_err"]):
                diff, (lo, hi) = fill_p95_difference(tallies[1], tallies[0], key)
                print(f"    after {key[0]:<9} {key[1]:<12} {diff:+.3f} ({lo:+.3f} to {hi:+.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
