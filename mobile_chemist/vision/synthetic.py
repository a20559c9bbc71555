"""Deterministic synthetic vial scenes with exact labels (2-D numpy/OpenCV compositing).

A scene is one or two racks of up to 16 vials in total, seen from the side: the vial
type (2 mL GC, 4 mL, 20 mL headspace) with its real proportions, glass with wall shading
and a specular stripe, a cap or a bare threaded neck, and contents from one of seven
classes (empty, clear liquid, turbid liquid, powder, two liquid phases, residue on the
wall, foam on a liquid) with random colours, transparencies and fill levels, over random
backgrounds, lighting, camera distance, blur, noise and JPEG compression.

`render_scene(seed)` is a pure function of the seed, so a data set is the list of its
seeds: training uses seeds from TRAIN_SEED_BASE up, held-out evaluation EVAL_SEED_BASE up.
Labels are exact because every pixel is drawn from the geometry the labels describe.
"""

from __future__ import annotations

import colorsys
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mobile_chemist.vision.classes import BULK_ROWS, DETECTOR_CLASSES, Phase, Row, VialType

#: Seed ranges: the benchmark uses seeds that training never sees.
TRAIN_SEED_BASE = 0
VAL_SEED_BASE = 5_000_000
EVAL_SEED_BASE = 10_000_000
SEG_SEED_BASE = 20_000_000
#: The stream (with the scene's seed) of `render_scene`'s edge_rows: which edge, how close.
EDGE_STREAM = 17


def scoring_seed_base(validation: bool) -> int:
    """First seed of the scenes models are scored on: validation (where settings and models
    are chosen) or held-out (which only reports)."""
    return VAL_SEED_BASE if validation else EVAL_SEED_BASE

#: Real proportions in mm: outer diameter, glass height (cap excluded), neck width as a
#: fraction of the diameter, neck and shoulder heights, cap height and width fraction.
GEOMETRY = {
    VialType.GC_2ML: dict(d=12.0, h=29.0, neck_w=0.70, neck_h=4.5, shoulder=1.8, cap_h=6.5,
                          cap_w=0.95, round_bottom=False),
    VialType.VIAL_4ML: dict(d=15.0, h=45.0, neck_w=0.88, neck_h=6.0, shoulder=0.8, cap_h=9.5,
                            cap_w=1.02, round_bottom=False),
    VialType.HEADSPACE_20ML: dict(d=23.0, h=75.0, neck_w=0.87, neck_h=7.0, shoulder=5.0,
                                  cap_h=7.0, cap_w=0.90, round_bottom=True),
}
CONTENT_CLASSES = tuple(Phase)


@dataclass
class VialTruth:
    """Exact labels of one vial."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2 (cap included)
    vial_type: int
    cap: bool
    content: int
    glass_top: float
    glass_bottom: float
    fill_level: float
    # (top, bottom, Row) in image rows, top to bottom, from the cap (or glass) to the bottom.
    segments: list[tuple[float, float, int]] = field(default_factory=list)

    def layers(self) -> list[tuple[float, float, Phase]]:
        """Layers (top, bottom, Phase) from top to bottom, as the node reports them."""
        from mobile_chemist.vision.classes import ROW_TO_PHASE

        out: list[tuple[float, float, Phase]] = []
        for top, bottom, row in self.segments:
            phase = ROW_TO_PHASE[Row(row)]
            if phase is None:
                continue
            if out and out[-1][2] == phase and Row(row) not in (Row.LIQUID_LOWER,):
                out[-1] = (out[-1][0], bottom, phase)
            else:
                out.append((top, bottom, phase))
        return out


@dataclass
class Scene:
    image: np.ndarray                # H x W x 3 uint8, BGR
    vials: list[VialTruth]
    seed: int
    # Rendered from a given RackView: the rack slot of each entry of `vials` (else empty).
    slots: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class VialSpec:
    """One vial of a given arrangement: whether it is capped and what it holds."""

    cap: bool
    # (bottom, top) fractions of the interior height with their Row, bottom up, as
    # _contents() draws them; () = an empty vial.
    layers: tuple[tuple[float, float, int], ...] = ()
    # Seeds the colours and textures of this vial's contents and cap, so that a sample
    # looks the same in every image taken of it.
    appearance_seed: int = 0

    @property
    def content(self) -> Phase:
        from mobile_chemist.vision.classes import content_of

        return content_of({Row(r) for _, _, r in self.layers})


@dataclass(frozen=True)
class RackView:
    """A given rack of vials seen from the side: what the generators render on request
    (`render_rack` here, `mujoco_scene.render_mujoco_rack`) instead of drawing it from a
    seed. The look's seed only moves the camera a little and adds the camera effects."""

    vial_type: VialType
    slots: tuple[VialSpec | None, ...]     # left to right; None = an empty slot
    room_seed: int = 0       # the station's backdrop, bench, rack colour and lights
    pitch: float = 1.3       # slot pitch / vial diameter
    fill: float = 0.85       # fraction of the image width (or height) the rack may take
    fovy_deg: float = 50.0   # MuJoCo camera
    yaw_deg: float = 0.0
    elevation_deg: float = 8.0
    jitter_deg: float = 0.5  # camera pose noise per look (1 sigma)
    jitter_px: float = 4.0   # 2-D: rack position noise per look (1 sigma)


def _colour(rng: np.random.Generator, sat=(0.0, 1.0), val=(0.25, 1.0)) -> np.ndarray:
    h, s, v = rng.random(), rng.uniform(*sat), rng.uniform(*val)
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return np.array([b, g, r], dtype=np.float32) * 255.0


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    base = _colour(rng, sat=(0.0, 0.5), val=(0.15, 0.95))
    other = np.clip(base + rng.normal(0, 40, 3), 0, 255)
    t = np.linspace(0, 1, h if rng.random() < 0.5 else w, dtype=np.float32)
    grad = t[:, None, None] if len(t) == h else t[None, :, None]
    img = np.broadcast_to(base * (1 - grad) + other * grad, (h, w, 3)).copy()
    for _ in range(rng.integers(0, 6)):  # clutter: panels, shelves, equipment edges
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        x1, y1 = x0 + rng.integers(20, w // 2), y0 + rng.integers(10, h // 2)
        img[y0:y1, x0:x1] = np.clip(img[y0:y1, x0:x1] * rng.uniform(0.6, 1.3)
                                    + rng.normal(0, 25, 3), 0, 255)
    noise = cv2.resize(rng.normal(0, 1, (h // 16 + 1, w // 16 + 1)).astype(np.float32), (w, h))
    img += noise[..., None] * rng.uniform(0, 12)
    return img


def _half_widths(g: dict, s: float, yt: float, yb: float, ys: np.ndarray) -> np.ndarray:
    """Outer half-width of the glass at image rows `ys` (0 outside the glass)."""
    r = g["d"] * s / 2
    neck_end = yt + g["neck_h"] * s
    shoulder_end = neck_end + g["shoulder"] * s
    hw = np.full(ys.shape, r, dtype=np.float32)
    hw[ys < shoulder_end] = r * g["neck_w"] + (r - r * g["neck_w"]) * np.clip(
        (ys[ys < shoulder_end] - neck_end) / max(g["shoulder"] * s, 1e-3), 0, 1)
    if g["round_bottom"]:
        rb = 0.35 * g["d"] * s
        low = ys > yb - rb
        hw[low] = r * np.sqrt(np.clip(1 - ((ys[low] - (yb - rb)) / rb) ** 2, 0.05, 1))
    hw[(ys < yt) | (ys > yb)] = 0
    return hw


#: Bumped when the same seed draws a different scene (keys the training-crop caches).
#: v4: the VARIANTS below. v5: MuJoCo suspensions have a liquid's gloss and meniscus; a
#: liquid over a settled bed is at least MIN_LAYER deep. v6: MuJoCo clutter stands wholly
#: behind the racks (deep boxes used to reach in front and hide labelled vials).
GENERATOR_VERSION = 6
#: Fill (fraction of the interior height) of a single liquid or suspension, lowest to highest.
LIQUID_FILL_RANGE = (0.12, 0.82)
#: Generator v4's variants of a single liquid or suspension: a low fill, as a few mL in a
#: 20 mL vial; a settled solid bed under the liquid, as a powder before sonication disperses
#: it. Whether a vial gets one is drawn from the scene's own `variant_rng`; with all rates
#: at zero a 2-D scene is generator v3's, draw for draw.
LOW_FILL_RANGE = (0.02, 0.12)
#: The thinnest liquid layer drawn over a settled bed (fraction of the interior height).
MIN_LAYER = 0.05
VARIANTS = {"low_fill": 0.2, "settled_solid": {Phase.HOMOGENEOUS: 0.35, Phase.HETEROGENEOUS: 0.2},
            "settled_height": (0.03, 0.3)}


def variant_rng(seed: int, variants: bool = True) -> np.random.Generator | None:
    """The random stream of a scene's v4 variants (see VARIANTS); None without them."""
    return np.random.default_rng([seed, 4]) if variants else None


def _contents(rng: np.random.Generator, content: Phase,
              variants: np.random.Generator | None) -> list[tuple[float, float, Row]]:
    """Layers as (bottom, top) fractions of the interior height, bottom up, with their row.

    `variants` (the scene's variant_rng) draws the v4 variants of a liquid or a suspension;
    None draws none (generator v3's contents: `rng` draws the same either way).
    """
    f = rng.uniform(*LIQUID_FILL_RANGE)
    if content in (Phase.HOMOGENEOUS, Phase.HETEROGENEOUS):
        bulk = Row.LIQUID if content == Phase.HOMOGENEOUS else Row.TURBID
        layers = [(0.0, f, bulk)]
        if content == Phase.HOMOGENEOUS and rng.random() < 0.2:
            layers.append((f, min(0.95, f + rng.uniform(0.05, 0.2)), Row.RESIDUE))
        if variants is None:
            return layers
        low, settle, bed = variants.random(3)
        top = f
        if low < VARIANTS["low_fill"]:
            top = LOW_FILL_RANGE[0] + (LOW_FILL_RANGE[1] - LOW_FILL_RANGE[0]) * variants.random()
        out = [(0.0, top, bulk)]
        if settle < VARIANTS["settled_solid"][content]:
            lo, hi = VARIANTS["settled_height"]
            b = lo + (hi - lo) * bed
            # At least MIN_LAYER of liquid stands above the bed: a thinner film is not a
            # layer any camera resolves, and the label would name what cannot be seen.
            out = [(0.0, b, Row.SOLID), (b, max(top, b + MIN_LAYER), bulk)]
        if len(layers) > 1:  # the residue ring stays just above the (new) surface
            r0 = out[-1][1]
            out.append((r0, min(0.95, r0 + layers[1][1] - layers[1][0]), Row.RESIDUE))
        return out
    if content == Phase.SOLID:
        f = rng.uniform(0.08, 0.5)
        layers = [(0.0, f, Row.SOLID)]
        if rng.random() < 0.2:
            layers.append((f, min(0.95, f + rng.uniform(0.05, 0.2)), Row.RESIDUE))
        return layers
    if content == Phase.TWO_LIQUID:
        f = rng.uniform(0.3, 0.85)
        f1 = rng.uniform(0.35, 0.65) * f
        return [(0.0, f1, Row.LIQUID_LOWER), (f1, f, Row.LIQUID_UPPER)]
    if content == Phase.RESIDUE:
        r0 = rng.uniform(0.0, 0.4)
        return [(r0, min(0.95, r0 + rng.uniform(0.15, 0.45)), Row.RESIDUE)]
    if content == Phase.FOAM:
        f = rng.uniform(0.15, 0.7)
        return [(0.0, f, Row.LIQUID), (f, min(0.95, f + rng.uniform(0.06, 0.2)), Row.FOAM)]
    return []


def _draw_vial(img: np.ndarray, rng: np.random.Generator, vtype: VialType, cx: float,
               yb: float, s: float, cap: bool, content: Phase,
               layers: list[tuple[float, float, Row]] | None = None,
               variants: np.random.Generator | None = None) -> VialTruth:
    g = GEOMETRY[vtype]
    h_img, w_img = img.shape[:2]
    yt = yb - g["h"] * s
    r = g["d"] * s / 2
    cap_h = g["cap_h"] * s
    y0, y1 = int(np.floor(yt - cap_h)) - 1, int(np.ceil(yb)) + 2
    x0, x1 = int(np.floor(cx - r)) - 2, int(np.ceil(cx + r)) + 2
    y0c, y1c, x0c, x1c = max(y0, 0), min(y1, h_img), max(x0, 0), min(x1, w_img)
    ys = np.arange(y0c, y1c, dtype=np.float32) + 0.5
    xs = np.arange(x0c, x1c, dtype=np.float32) + 0.5
    patch = img[y0c:y1c, x0c:x1c]
    hw = _half_widths(g, s, yt, yb, ys)[:, None]
    dx = np.abs(xs[None, :] - cx)
    glass = dx <= hw
    wall = max(1.0, 0.07 * 2 * r)
    hw_in = np.maximum(hw - wall, 0)
    inner = dx <= hw_in
    inner_bottom = yb - max(1.0, 0.05 * g["h"] * s)

    # Glass: the background shows through, slightly lighter, darker at the walls.
    tint = rng.uniform(0.85, 1.0)
    lift = rng.uniform(5, 30)
    glassy = patch * tint + lift
    edge = glass & ~inner
    glassy[edge] = patch[edge] * rng.uniform(0.45, 0.75) + rng.uniform(0, 40)
    patch[glass] = glassy[glass]

    # Contents, bottom up, in fractions of the interior height.
    layers = _contents(rng, content, variants) if layers is None else layers
    inner_h = inner_bottom - yt
    rel = np.clip(dx / np.maximum(hw_in, 1e-3), 0, 1)
    shade = (0.7 + 0.3 * np.sqrt(1 - rel ** 2))[..., None]  # cylindrical shading
    row_bg = patch.mean(axis=1, keepdims=True)  # what a liquid lens shows: a smeared background
    prev_colour = None
    for lo, hi, row in layers:
        y_lo, y_hi = inner_bottom - lo * inner_h, inner_bottom - hi * inner_h
        # The bottom layer also fills the glass bottom below the inner floor.
        sel_rows = (ys >= y_hi) & (ys < (yb if lo == 0.0 else y_lo))
        m = inner & sel_rows[:, None]
        if row == Row.SOLID:
            m = glass & sel_rows[:, None] & (dx <= hw - 0.5)
        if not m.any():
            continue
        n = int(m.sum())
        if row in (Row.LIQUID, Row.LIQUID_UPPER, Row.LIQUID_LOWER):
            colour, alpha = liquid_colour(rng, prev_colour)
            prev_colour = colour
            base = np.broadcast_to(row_bg, patch.shape) * 0.9
            val = (1 - alpha) * base + alpha * colour[None, None] * shade
            patch[m] = val[m]
            # Meniscus: a dark curved line at the top surface.
            top_row = int(np.clip(np.floor(y_hi) - y0c, 0, patch.shape[0] - 1))
            lm = inner[top_row] & (ys[top_row] >= y_hi - 1.5)
            patch[top_row, lm] *= rng.uniform(0.4, 0.7)
        elif row == Row.TURBID:
            colour = _colour(rng, sat=(0.0, 0.6), val=(0.45, 1.0))
            alpha = rng.uniform(0.75, 0.98)
            noise = cv2.GaussianBlur(rng.normal(0, 1, patch.shape[:2]).astype(np.float32),
                                     (0, 0), rng.uniform(0.7, 2.0))[..., None]
            val = (1 - alpha) * patch + alpha * colour * shade + noise * rng.uniform(6, 18)
            patch[m] = val[m]
            top_row = int(np.clip(np.floor(y_hi) - y0c, 0, patch.shape[0] - 1))
            patch[top_row, inner[top_row]] *= rng.uniform(0.5, 0.8)
        elif row == Row.SOLID:
            colour = _colour(rng, sat=(0.0, 0.7), val=(0.2, 1.0))
            grain = rng.normal(0, rng.uniform(15, 40), (n, 1)).astype(np.float32)
            patch[m] = np.clip(colour[None] * shade[m] + grain, 0, 255)
        elif row == Row.FOAM:
            base = rng.uniform(190, 245)
            noise = rng.normal(0, 1, patch.shape[:2]).astype(np.float32)
            bubbles = cv2.GaussianBlur(noise, (0, 0), rng.uniform(0.6, 1.5))
            val = (base + bubbles * 35)[..., None] * shade * np.ones(3, np.float32)
            patch[m] = val[m]
        elif row == Row.RESIDUE:
            colour = _colour(rng, sat=(0.0, 0.8), val=(0.2, 0.9))
            blot = cv2.resize(rng.random((max(2, patch.shape[0] // 4), max(2, patch.shape[1] // 3))
                                         ).astype(np.float32), patch.shape[1::-1])
            cover = (blot > rng.uniform(0.2, 0.5))
            mm = m & cover | (m & (dx > hw_in * 0.8))
            alpha = rng.uniform(0.5, 0.85)
            val = (1 - alpha) * patch + alpha * colour
            patch[mm] = val[mm]

    # Specular stripe on the glass (over the contents), left of the axis.
    sx = cx - rng.uniform(0.2, 0.45) * r
    stripe = glass & (np.abs(xs[None, :] - sx) < max(0.6, 0.06 * 2 * r))
    patch[stripe] = patch[stripe] * 0.5 + rng.uniform(120, 240) * 0.5

    # Cap, or the bare neck with its rim and thread.
    cap_w = g["cap_w"] * r
    if cap:
        crimp = vtype == VialType.HEADSPACE_20ML or (vtype == VialType.GC_2ML and rng.random() < 0.4)
        cm = (ys[:, None] >= yt - cap_h) & (ys[:, None] < yt) & (dx <= cap_w)
        if crimp:  # aluminium: vertical metallic gradient
            grey = rng.uniform(120, 220)
            val = (grey * (0.6 + 0.4 * np.cos(np.clip(dx / cap_w, 0, 1) * 1.4)))[..., None] \
                * np.array([1.0, 1.0, 1.03], np.float32) * np.ones((len(ys), 1, 1), np.float32)
        else:  # plastic screw cap with ridges
            colour = _colour(rng, sat=(0.0, 1.0), val=(0.1, 0.95))
            ridges = 0.8 + 0.2 * (np.floor((xs - cx) / max(1.5, 0.12 * r)) % 2)
            val = colour[None, None] * ridges[None, :, None] * np.ones((len(ys), 1, 1), np.float32)
            val = val * (0.75 + 0.25 * np.cos(np.clip(dx / cap_w, 0, 1) * 1.3))[..., None]
        patch[cm] = val[cm]
        # Dark seam where the cap meets the glass.
        seam = int(np.clip(np.floor(yt) - y0c, 0, patch.shape[0] - 1))
        patch[seam, dx[0] <= cap_w] *= 0.6
    else:
        rim = int(np.clip(np.floor(yt) - y0c, 0, patch.shape[0] - 1))
        patch[rim, glass[min(rim + 1, len(ys) - 1)]] = rng.uniform(180, 250)
        if vtype != VialType.HEADSPACE_20ML:  # thread on screw necks
            neck_rows = (ys > yt + 1) & (ys < yt + g["neck_h"] * s * 0.9)
            period = max(2.0, 1.2 * s)
            thread = neck_rows[:, None] & glass & (((ys[:, None] + 0.3 * dx) % period) < period / 3)
            patch[thread] *= 0.7

    # Labels: rows from the cap to the glass bottom.
    bounds: list[tuple[float, float, Row]] = []
    for lo, hi, row in layers:
        y_lo = yb if lo == 0.0 else inner_bottom - lo * inner_h
        bounds.append((inner_bottom - hi * inner_h, y_lo, row))
    segs, fill = label_rows(yt, yb, bounds, yt - cap_h if cap else None)
    box = (cx - max(r, cap_w if cap else 0.0), yt - (cap_h if cap else 0.0),
           cx + max(r, cap_w if cap else 0.0), yb)
    return VialTruth(box=tuple(float(v) for v in box), vial_type=int(vtype), cap=bool(cap),
                     content=int(content), glass_top=float(yt), glass_bottom=float(yb),
                     fill_level=float(fill), segments=segs)


def camera_effects(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Lighting and camera: gain, colour cast, vignetting, blur, sensor noise, JPEG.

    `img` is an H x W x 3 float32 BGR image in 0..255; returns uint8. Shared with the
    MuJoCo renderer (mujoco_scene.py) so both generators degrade images the same way.
    """
    height, width = img.shape[:2]
    img = img * rng.uniform(0.65, 1.3) + rng.uniform(-25, 25)
    img *= (1 + rng.normal(0, 0.06, 3)).astype(np.float32)
    if rng.random() < 0.5:
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        r2 = ((xx - width / 2) / width) ** 2 + ((yy - height / 2) / height) ** 2
        img *= (1 - rng.uniform(0, 0.8) * r2)[..., None]
    sigma = rng.uniform(0, 1.1)
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    img += rng.normal(0, rng.uniform(0, 6), img.shape).astype(np.float32)
    out = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        _, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(45, 95))])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out


def liquid_colour(rng: np.random.Generator, above: np.ndarray | None
                  ) -> tuple[np.ndarray, float]:
    """A liquid's colour (BGR) and alpha; the second of two phases must look different
    from the one `above` it."""
    colour = _colour(rng, sat=(0.0, 1.0), val=(0.3, 1.0))
    alpha = rng.uniform(0.25, 0.9)
    if above is not None:
        for _ in range(20):
            if np.abs(colour - above).sum() > 150:
                break
            colour = _colour(rng, sat=(0.0, 1.0), val=(0.3, 1.0))
    return colour, alpha


def label_rows(glass_top: float, glass_bottom: float,
               layers: Iterable[tuple[float, float, Row]], cap_top: float | None = None
               ) -> tuple[list[tuple[float, float, int]], float]:
    """A vial's per-row segments and fill level from its layers' (top, bottom, Row) image rows.

    Rows from the cap (if `cap_top` is given) to the glass bottom; a row belongs to the
    layer containing it, glass above and between layers is headspace.
    """
    segs: list[tuple[float, float, int]] = []
    if cap_top is not None:
        segs.append((cap_top, glass_top, int(Row.CAP)))
    bounds = sorted(layers)
    cursor = glass_top
    for top, bottom, row in bounds:
        if top > cursor:
            segs.append((cursor, top, int(Row.HEADSPACE)))
        segs.append((top, bottom, int(row)))
        cursor = bottom
    if cursor < glass_bottom:
        # Empty (or residue-only) vials: the glass floor counts as headspace.
        segs.append((cursor, glass_bottom, int(Row.HEADSPACE)))
    bulk_tops = [top for top, _, row in bounds if row in BULK_ROWS]
    fill = (glass_bottom - min(bulk_tops)) / (glass_bottom - glass_top) if bulk_tops else 0.0
    return segs, fill


def render_scene(seed: int, width: int = 640, height: int = 480,
                 max_vials: int = 16, n_vials: int | None = None,
                 variants: bool = True, labels: tuple[str, float] | None = None,
                 edge_rows: bool = False) -> Scene:
    """One random scene, a pure function of its arguments.

    `n_vials` forces one rack with exactly that many vials (the latency benchmark's
    16-vial rack); otherwise one or two racks of random size hold up to `max_vials`.
    `variants=False` leaves out the v4 variants (VARIANTS); every other draw is the same.
    `labels` (style, fraction) paints paper labels before the camera effects
    (paper_labels.add_paper_labels); every other draw is the same.
    `edge_rows` moves each rack sideways until its first vial stands 3-11 px (beyond its
    slot's jitter: the vial stays whole) from the frame's left edge or its last from the
    right edge, side and gap from a stream of their own; 1 end slot in 10 is empty, as any.
    A moved vial covers other pixels, which changes the draws after it: such a scene is one
    of its own, not the plain scene moved.
    """
    rng = np.random.default_rng(seed)
    variants = variant_rng(seed, variants)
    edge = np.random.default_rng([seed, EDGE_STREAM]) if edge_rows else None
    img = _background(rng, width, height)
    n_racks = 1 if rng.random() < 0.6 or n_vials else 2
    vials: list[VialTruth] = []
    band = height / n_racks
    for k in range(n_racks):
        vtype = DETECTOR_CLASSES[rng.integers(0, len(DETECTOR_CLASSES))]
        g = GEOMETRY[vtype]
        n = int(rng.integers(1, (max_vials if n_racks == 1 else max_vials // 2) + 1))
        n = n_vials or n
        pitch_f = rng.uniform(1.12, 1.7)
        s_fit = min(0.94 * width / (n * g["d"] * pitch_f),
                    0.85 * band / (g["h"] + g["cap_h"] + 4))
        s = min(rng.uniform(0.9, 3.2), s_fit)
        s = max(s, min(0.9, s_fit))
        pitch = g["d"] * s * pitch_f
        row_w = n * pitch
        x_start = rng.uniform(0, max(width - row_w, 0)) + pitch / 2
        if edge is not None:
            gap, r = 3 + 0.03 * pitch + edge.uniform(0, 8), g["d"] * s / 2
            x_start = gap + r if edge.random() < 0.5 else width - gap - r - (n - 1) * pitch
        tall = (g["h"] + g["cap_h"]) * s
        yb = k * band + rng.uniform(tall + 4, band - 4) if band - 4 > tall + 4 else (k + 1) * band - 4
        # Rack: a back panel behind the lower part of the vials and a shelf under them.
        rack_col = _colour(rng, sat=(0.0, 0.6), val=(0.1, 0.9))
        if rng.random() < 0.8:
            ry0 = int(yb - rng.uniform(0.2, 0.6) * g["h"] * s)
            rx0, rx1 = int(max(0, x_start - pitch / 2 - 5)), int(min(width, x_start + row_w))
            img[max(ry0, 0):int(yb), rx0:rx1] = img[max(ry0, 0):int(yb), rx0:rx1] * 0.3 + rack_col * 0.7
        shelf_h = int(rng.uniform(3, 12))
        img[int(yb):min(height, int(yb) + shelf_h)] = rack_col * rng.uniform(0.5, 1.0)
        for i in range(n):
            if rng.random() < 0.1 and not n_vials:  # an empty slot
                continue
            cx = x_start + i * pitch + rng.uniform(-0.03, 0.03) * pitch
            content = CONTENT_CLASSES[rng.integers(0, len(CONTENT_CLASSES))]
            cap = bool(rng.random() < 0.6)
            vials.append(_draw_vial(img, rng, vtype, cx, yb, s, cap, content, variants=variants))
    vials.sort(key=lambda v: (round(v.box[3] / 40), v.box[0]))
    if labels:
        img = _paint_labels(img, vials, seed, "2d", labels)
    return Scene(image=camera_effects(img, rng), vials=vials, seed=seed)


def _paint_labels(img: np.ndarray, vials: list[VialTruth], seed: int, renderer: str,
                  labels: tuple[str, float]) -> np.ndarray:
    """`img` (float32, before the camera effects) with paper labels of (style, fraction)."""
    from mobile_chemist.vision.paper_labels import add_paper_labels, label_seed

    style, fraction = labels
    return add_paper_labels(img, vials, label_seed(seed, renderer), fraction, style)


def render_rack(view: RackView, seed: int, width: int = 640, height: int = 480) -> Scene:
    """A given rack (`view`) rendered by the 2-D compositor, a pure function of its arguments.

    The station (backdrop, rack colour) comes from `view.room_seed`, each vial's look from
    its `appearance_seed`; `seed` only shifts the rack by `jitter_px` and draws the camera
    effects, so two seeds are two photographs of the same rack. `Scene.slots` says which
    slot each vial is in.
    """
    rng = np.random.default_rng(seed)
    room = np.random.default_rng([view.room_seed])
    img = _background(room, width, height)
    vtype = VialType(view.vial_type)
    g = GEOMETRY[vtype]
    n = max(len(view.slots), 1)
    tall = g["h"] + g["cap_h"]
    s = min(view.fill * width / (n * g["d"] * view.pitch), view.fill * height / (tall + 4))
    pitch = g["d"] * s * view.pitch
    row_w = n * pitch
    x_start = (width - row_w) / 2 + pitch / 2 + rng.normal(0, view.jitter_px)
    yb = (height + tall * s) / 2 + rng.normal(0, view.jitter_px)
    rack_col = _colour(room, sat=(0.0, 0.6), val=(0.1, 0.9))
    ry0 = int(yb - 0.4 * g["h"] * s)
    rx0, rx1 = int(max(0, x_start - pitch / 2 - 5)), int(min(width, x_start + row_w))
    img[max(ry0, 0):int(yb), rx0:rx1] = img[max(ry0, 0):int(yb), rx0:rx1] * 0.3 + rack_col * 0.7
    img[int(yb):min(height, int(yb) + 8)] = rack_col * 0.8
    vials, slots = [], []
    for i, spec in enumerate(view.slots):
        if spec is None:
            continue
        look = np.random.default_rng([spec.appearance_seed])
        cx = x_start + i * pitch
        layers = [(lo, hi, Row(r)) for lo, hi, r in spec.layers]
        vials.append(_draw_vial(img, look, vtype, cx, yb, s, spec.cap, spec.content, layers))
        slots.append(i)
    return Scene(image=camera_effects(img, rng), vials=vials, seed=seed, slots=slots)


def random_rack_view(seed: int, variants: bool = True) -> RackView:
    """A random rack as a station's camera shows it (`RackView`), a pure function of `seed`.

    The random scenes put one or two racks anywhere in the frame, before clutter, from
    any angle; a station camera (the campaign's `rack_camera`) looks at one rack filling
    the frame on a clear bench. These views cover that framing for training, with every
    content class drawn as in the random scenes.
    """
    rng = np.random.default_rng([seed, 7])
    variants = variant_rng(seed, variants)
    vtype = DETECTOR_CLASSES[rng.integers(0, len(DETECTOR_CLASSES))]
    slots: list[VialSpec | None] = []
    for _ in range(int(rng.integers(4, 17))):
        if rng.random() < 0.1:
            slots.append(None)
            continue
        content = CONTENT_CLASSES[rng.integers(0, len(CONTENT_CLASSES))]
        layers = tuple((lo, hi, int(r)) for lo, hi, r in _contents(rng, content, variants))
        slots.append(VialSpec(cap=bool(rng.random() < 0.6), layers=layers,
                              appearance_seed=int(rng.integers(0, 2**31))))
    return RackView(vial_type=vtype, slots=tuple(slots), room_seed=int(rng.integers(0, 2**31)),
                    pitch=float(rng.uniform(1.15, 1.6)), fill=float(rng.uniform(0.6, 0.92)),
                    fovy_deg=float(rng.uniform(40, 60)), yaw_deg=float(rng.uniform(-10, 10)),
                    elevation_deg=float(rng.uniform(0, 15)))


def write_yolo_dataset(root: Path, train_seeds: Iterable[int], val_seeds: Iterable[int],
                       renderer: str = "2d", workers: int = 1, kind: str = "random",
                       variants: bool = True) -> Path:
    """Write images + YOLO labels + data.yaml under `root`; returns data.yaml.

    Calls with different renderers or kinds may fill the same `root` (file names
    differ), for a data set that mixes them. `variants`: see `render_scene`.
    """
    from mobile_chemist.vision.scenes import iter_scenes

    root = Path(root)
    prefix = {("2d", "random"): "s", ("mujoco", "random"): "m",
              ("2d", "rack"): "r", ("mujoco", "rack"): "k"}[renderer, kind]
    for split, seeds in (("train", train_seeds), ("val", val_seeds)):
        # Both splits exist even without seeds: data.yaml names them.
        for part in ("images", "labels"):
            (root / part / split).mkdir(parents=True, exist_ok=True)
        for scene in iter_scenes(seeds, renderer, workers=workers, kind=kind,
                                 variants=variants):
            write_yolo_frame(root, split, f"{prefix}{scene.seed:09d}", scene.image, scene.vials)
    data = root / "data.yaml"
    names = {i: t.label for i, t in enumerate(DETECTOR_CLASSES)}
    data.write_text(json.dumps({"path": str(root.resolve()), "train": "images/train",
                                "val": "images/val", "names": names}, indent=1))
    return data


def write_yolo_frame(root: Path, split: str, name: str, image: np.ndarray,
                     vials: Iterable[VialTruth]) -> None:
    """One YOLO training frame: root/images/split/name.png and its label file (empty for a
    frame without vials), the layout every detector data set here shares."""
    root = Path(root)
    for part in ("images", "labels"):
        (root / part / split).mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "images" / split / f"{name}.png"), image)
    h, w = image.shape[:2]
    (root / "labels" / split / f"{name}.txt").write_text(yolo_label_lines(vials, w, h))


def yolo_label_lines(vials: Iterable[VialTruth], width: int, height: int) -> str:
    """A YOLO label file's text for `vials` in a width x height image (boxes clipped to
    the image; slivers under 2 pixels left out; empty when none is left)."""
    lines = []
    for v in vials:
        x1, y1, x2, y2 = np.clip(v.box, 0, [width, height, width, height])
        if x2 - x1 < 2 or y2 - y1 < 2:
            continue
        cls = DETECTOR_CLASSES.index(VialType(v.vial_type))
        lines.append(f"{cls} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
                     f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}")
    return "".join(line + "\n" for line in lines)


def scene_truth_json(scene: Scene) -> str:
    return json.dumps({"seed": scene.seed, "vials": [asdict(v) for v in scene.vials]})
