"""Vision checks of a rack: what a workflow's `inspect` step expects, and how it decides.

An inspection takes one or more looks (an image each, read by the vision node) at the rack
at a station. Each look's vials are matched to the rack's slots by their position in the
image, and every slot that holds a vial still in the experiment is judged against the
step's expectation. Vision is not perfect (cap accuracy about 0.99, content class about
0.89 on MuJoCo renders), so one look never fails a vial: a vial fails when `confirm` looks
saw it miss the expectation and more looks saw it fail than pass; the inspection looks
again (a fresh image) until every vial is settled, up to `looks` images. A vial that no
look could see is recorded as unverified (kept), or failed when the step says so.

Library code without ROS; the planner's Dispatcher supplies the looks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from mobile_chemist.vision.classes import Phase


@dataclass(frozen=True)
class Expectation:
    """What every inspected vial should look like; None / empty = not checked."""

    capped: bool | None = None
    absent_phases: frozenset[Phase] = frozenset()

    def describe(self) -> str:
        parts = []
        if self.capped is not None:
            parts.append("capped" if self.capped else "uncapped")
        parts += [f"no {p.label} phase" for p in sorted(self.absent_phases)]
        return ", ".join(parts) or "nothing"


@dataclass(frozen=True)
class SeenVial:
    """One vial as vision read it in one image."""

    box: tuple[float, float, float, float]        # x1, y1, x2, y2 in pixels
    confidence: float = 1.0
    cap_present: bool = False
    cap_confidence: float = 0.0
    content: Phase = Phase.EMPTY
    phases: tuple[Phase, ...] = ()                # layers, top to bottom
    fill_level: float = float("nan")

    @property
    def centre_x(self) -> float:
        return (self.box[0] + self.box[2]) / 2

    def describe(self) -> str:
        layers = "/".join(p.label for p in self.phases) or "no layers"
        return (f"{'capped' if self.cap_present else 'no cap'}, {self.content.label} "
                f"({layers}), fill {self.fill_level:.2f}")


@dataclass
class Look:
    """What one image showed (a Dispatcher's answer to `look`)."""

    success: bool
    message: str = ""
    vials: list[SeenVial] = field(default_factory=list)
    image_width: int = 0
    # What the vision node said makes the image unlike its models' training frames
    # (config/vision.yaml frame_limits); the image is still read, the record says so.
    caution: str = ""


def violations(seen: SeenVial, expect: Expectation) -> list[str]:
    """Why `seen` does not meet `expect` (empty: it does)."""
    out = []
    if expect.capped is True and not seen.cap_present:
        out.append("no cap seen")
    elif expect.capped is False and seen.cap_present:
        out.append("a cap seen")
    for phase in sorted(expect.absent_phases):
        if phase in seen.phases or seen.content == phase:
            out.append(f"{phase.label} phase seen")
    return out


def assign_slots(vials: Sequence[SeenVial], n_slots: int, image_width: float) -> dict[int, SeenVial]:
    """Match the vials of one image to the slots of a rack of `n_slots` (left to right).

    The slots are evenly spaced along the image's x axis. The pitch is the typical gap
    between neighbouring vials; a vial's slot is its distance from the leftmost in pitches.
    When fewer vials than slots were found and the leftmost slot is therefore unknown, the
    rack is taken as centred in the image (the camera is aimed at the rack's centre).
    Vials that fit no slot are left out; an inconsistent image matches nothing. With gaps
    that are all several pitches wide (most vials missed) the pitch is overestimated.
    """
    if not vials or n_slots <= 0:
        return {}
    ordered = sorted(vials, key=lambda v: v.centre_x)
    if len(ordered) == n_slots:
        return dict(enumerate(ordered))
    xs = [v.centre_x for v in ordered]
    gaps = [b - a for a, b in zip(xs, xs[1:])]
    if not gaps:
        # One vial: only the centred-rack assumption and its width can place it.
        return {}
    smallest = min(g for g in gaps if g > 0) if any(g > 0 for g in gaps) else 0.0
    if smallest <= 0:
        return {}
    near = sorted(g for g in gaps if g < 1.5 * smallest)
    pitch = near[len(near) // 2]
    index = [round((x - xs[0]) / pitch) for x in xs]
    span = index[-1]
    if span > n_slots - 1:
        # More positions than slots (false detections or a wrong pitch): trust none.
        return {}
    offsets = range(0, n_slots - span)
    centre = image_width / 2
    best = min(offsets, key=lambda o: abs(xs[0] + pitch * ((n_slots - 1) / 2 - o) - centre))
    out: dict[int, SeenVial] = {}
    for k, v in zip(index, ordered):
        slot = k + best
        if slot not in out or v.confidence > out[slot].confidence:
            out[slot] = v
    return out


@dataclass
class VialVerdict:
    passes: int = 0
    fails: list[str] = field(default_factory=list)   # the reasons, one per failing look
    last_seen: SeenVial | None = None
    cap_seen: int = 0
    solid_seen: int = 0
    fill_sum: float = 0.0

    @property
    def seen(self) -> int:
        return self.passes + len(self.fails)


@dataclass
class VialOutcome:
    success: bool
    message: str
    measurements: dict[str, float]


class Inspection:
    """Accumulates looks at a rack and decides each vial (see the module docstring)."""

    def __init__(self, expect: Expectation, slots: Mapping[int, str], n_slots: int, *,
                 looks: int = 3, confirm: int = 2, fail_unseen: bool = False):
        if confirm < 1 or looks < confirm:
            raise ValueError("need 1 <= confirm <= looks")
        self.expect = expect
        self.slots = dict(slots)            # slot -> vial id, the vials to judge
        self.n_slots = n_slots
        self.max_looks = looks
        self.confirm = confirm
        self.fail_unseen = fail_unseen
        self.verdicts = {s: VialVerdict() for s in self.slots}
        self.looks = 0
        self.failed_looks: list[str] = []
        self.counts: list[int] = []         # vials found per image
        self.cautions: list[str] = []       # Look.caution of each image that had one

    def add(self, look: Look) -> None:
        self.looks += 1
        if not look.success:
            self.failed_looks.append(look.message)
            return
        self.counts.append(len(look.vials))
        if look.caution:
            self.cautions.append(look.caution)
        matched = assign_slots(look.vials, self.n_slots, look.image_width)
        for slot, verdict in self.verdicts.items():
            seen = matched.get(slot)
            if seen is None:
                continue
            why = violations(seen, self.expect)
            if why:
                verdict.fails.append("; ".join(why))
            else:
                verdict.passes += 1
            verdict.last_seen = seen
            verdict.cap_seen += seen.cap_present
            verdict.solid_seen += Phase.SOLID in seen.phases or seen.content == Phase.SOLID
            verdict.fill_sum += seen.fill_level if seen.fill_level == seen.fill_level else 0.0

    def _settled(self, v: VialVerdict) -> bool:
        return v.passes > 0 or len(v.fails) >= self.confirm

    def done(self) -> bool:
        """No further look can change a decision, or no look is left (failed looks, that
        gave no image, have a budget of their own)."""
        return (len(self.counts) >= self.max_looks or len(self.failed_looks) >= self.max_looks
                or all(self._settled(v) for v in self.verdicts.values()))

    def any_image(self) -> bool:
        return bool(self.counts)

    def outcomes(self) -> dict[str, VialOutcome]:
        """Per vial id: passed or not, why, and what vision saw (as numbers)."""
        out = {}
        for slot, vial_id in self.slots.items():
            v = self.verdicts[slot]
            data = {"vision_looks": float(len(self.counts)), "vision_seen": float(v.seen),
                    "vision_passes": float(v.passes), "vision_fails": float(len(v.fails))}
            if v.seen:
                data.update(cap_seen=v.cap_seen / v.seen, solid_seen=v.solid_seen / v.seen,
                            content=float(int(v.last_seen.content)),
                            fill_level=v.fill_sum / v.seen)
            if len(v.fails) >= self.confirm and len(v.fails) > v.passes:
                reason = max(set(v.fails), key=v.fails.count)
                out[vial_id] = VialOutcome(False, f"{reason} (expected {self.expect.describe()})",
                                           data)
            elif v.seen:
                note = "" if not v.fails else f"; {len(v.fails)} look(s) disagreed: {v.fails[0]}"
                out[vial_id] = VialOutcome(True, f"as expected: {v.last_seen.describe()}{note}", data)
            elif self.fail_unseen:
                out[vial_id] = VialOutcome(False, "not seen by vision", data)
            else:
                out[vial_id] = VialOutcome(
                    True, f"not seen by vision in {len(self.counts)} image(s): unverified", data)
        return out

    def summary(self) -> str:
        outs = self.outcomes().values()
        failed = sum(not o.success for o in outs)
        unseen = sum(o.measurements["vision_seen"] == 0 for o in outs)
        text = (f"expected {self.expect.describe()}: {len(self.slots)} vials, "
                f"{len(self.counts)} image(s) ({'/'.join(map(str, self.counts))} vials found of "
                f"{self.n_slots}), {failed} failed")
        if unseen:
            text += f", {unseen} not seen"
        if self.cautions:
            text += f"; {len(self.cautions)} image(s) with a caution: {self.cautions[-1]}"
        if self.failed_looks:
            text += f"; {len(self.failed_looks)} look(s) failed: {self.failed_looks[-1]}"
        return text
