"""The classes the vision stack knows, and how each backend's classes map onto them.

The numeric values equal the constants of msg/VialPhase.msg and msg/VialDetection.msg
(test_vision_messages checks this).
"""

from __future__ import annotations

from enum import IntEnum


class Phase(IntEnum):
    """What a layer, or a whole vial, contains."""

    EMPTY = 0
    HOMOGENEOUS = 1
    HETEROGENEOUS = 2
    SOLID = 3
    TWO_LIQUID = 4
    RESIDUE = 5
    FOAM = 6

    @property
    def label(self) -> str:
        return self.name.lower()


class VialType(IntEnum):
    UNKNOWN = 0
    GC_2ML = 1
    VIAL_4ML = 2
    HEADSPACE_20ML = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class Row(IntEnum):
    """What one image row of a vial crop shows: the per-row labels of the phase segmenter.

    A two-phase vial has LIQUID_UPPER over LIQUID_LOWER, so the segmenter must tell a
    phase boundary from a single liquid; LIQUID is a liquid with nothing under or over it
    but solid, foam or headspace.
    """

    OUTSIDE = 0        # background above the cap or below the glass
    CAP = 1
    HEADSPACE = 2      # clean glass over the contents
    RESIDUE = 3        # headspace with material on the wall
    FOAM = 4
    LIQUID = 5
    TURBID = 6
    SOLID = 7
    LIQUID_UPPER = 8
    LIQUID_LOWER = 9


#: The layer class reported for each row label (None: not a layer).
ROW_TO_PHASE: dict[Row, Phase | None] = {
    Row.OUTSIDE: None, Row.CAP: None, Row.HEADSPACE: None,
    Row.RESIDUE: Phase.RESIDUE, Row.FOAM: Phase.FOAM, Row.LIQUID: Phase.HOMOGENEOUS,
    Row.TURBID: Phase.HETEROGENEOUS, Row.SOLID: Phase.SOLID,
    Row.LIQUID_UPPER: Phase.HOMOGENEOUS, Row.LIQUID_LOWER: Phase.HOMOGENEOUS,
}

#: Rows that count for the fill level: the bulk contents (foam and wall residue do not).
BULK_ROWS = frozenset({Row.LIQUID, Row.TURBID, Row.SOLID, Row.LIQUID_UPPER, Row.LIQUID_LOWER})
#: Rows inside the glass (the glass height is measured over these).
GLASS_ROWS = frozenset(Row) - {Row.OUTSIDE, Row.CAP}


def content_of(rows: set[Row] | frozenset[Row]) -> Phase:
    """The class of a whole vial from the row labels it contains (most telling first)."""
    if Row.LIQUID_UPPER in rows or Row.LIQUID_LOWER in rows:
        return Phase.TWO_LIQUID
    if Row.FOAM in rows:
        return Phase.FOAM
    if Row.TURBID in rows:
        return Phase.HETEROGENEOUS
    if Row.LIQUID in rows:
        return Phase.HOMOGENEOUS
    if Row.SOLID in rows:
        return Phase.SOLID
    if Row.RESIDUE in rows:
        return Phase.RESIDUE
    return Phase.EMPTY


#: Detector classes of the project's own model (index = YOLO class id).
DETECTOR_CLASSES: tuple[VialType, ...] = (VialType.GC_2ML, VialType.VIAL_4ML,
                                          VialType.HEADSPACE_20ML)

#: HeinSight (best_content.pt) classes onto ours. HeinSight boxes each layer; "Empty" is
#: its headspace (our HEADSPACE rows, not a layer), so a vial with only "Empty" is EMPTY.
HEINSIGHT_CONTENT: dict[str, Phase | None] = {
    "Homo": Phase.HOMOGENEOUS,
    "Hetero": Phase.HETEROGENEOUS,
    "Residue": Phase.RESIDUE,
    "Solid": Phase.SOLID,
    "Empty": None,
}
#: HeinSight (best_vessel.pt) has one class, "vessel": a vial of unknown type.
HEINSIGHT_VESSEL = {"vessel": VialType.UNKNOWN}
#: Classes HeinSight cannot output at all (scored as misses in the benchmark).
HEINSIGHT_BLIND = frozenset({Phase.TWO_LIQUID, Phase.FOAM})
