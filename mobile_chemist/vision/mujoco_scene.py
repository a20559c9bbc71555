"""Synthetic vial scenes rendered in 3-D with MuJoCo, with exact labels.

`render_mujoco_scene(seed)` is a drop-in replacement for `synthetic.render_scene(seed)`:
same arguments, same `Scene` / `VialTruth` types and label conventions, and a pure
function of its arguments. Instead of compositing 2-D shapes it builds an MJCF world (a
bench, one or two racks of real-size vials, a textured wall, clutter, random lights) and
renders it offscreen through MuJoCo, the renderer the simulation uses for the robot's
camera, so models trained on these images see the same kind of world the simulated robot
does.

Labels come from projecting the same 3-D geometry through the camera (pinhole model from
fovy and the image size, pose from MjData after mj_forward), so they are exact up to the
rasteriser's sub-pixel rounding:

* box: bounding box of the projected vial outline (rings of the glass profile and cap);
* glass_bottom: the box bottom; glass_top: the lowest image row of the cap's lower rim
  (capped) or the box top (bare neck), so the first non-cap row of a vial crop is the glass
  top, as in render_scene;
* layer boundaries: the lowest image row of the content surface's rim at that height,
  i.e. where the surface meets the front wall when the camera looks down on it;
* fill_level: (glass_bottom - top of the bulk contents) / (glass_bottom - glass_top) in
  image rows, exactly as render_scene defines it.

Vials that would project partly outside the image, or be hidden by more than 10 % of their
width behind a nearer vial, are left out of the world altogether (never rendered
unlabelled); nothing else is placed between the camera and the racks.

MuJoCo needs an OpenGL context: on a headless machine set MUJOCO_GL=egl (the default
chosen here when it is unset).
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import cv2
import numpy as np

from mobile_chemist.vision.classes import DETECTOR_CLASSES, Row, VialType
from mobile_chemist.vision.synthetic import (
    CONTENT_CLASSES,
    GEOMETRY,
    RackView,
    Scene,
    VialSpec,
    VialTruth,
    _colour,
    _contents,
    _paint_labels,
    camera_effects,
    label_rows,
    liquid_colour,
    variant_rng,
)

#: Angular resolution of the lathe meshes and of the label rings.
N_SEG = 32
N_RING = 64
#: Glass wall and floor (floor as a fraction of the height, as render_scene's inner bottom).
WALL_MM = 0.8
FLOOR_FRAC = 0.05
#: A vial hidden behind a nearer one by more than this fraction of its width is left out.
MAX_OCCLUSION = 0.10
#: Shadow-map size and multisampling: enough for sub-millimetre vial edges at these scales
#: while keeping a software (llvmpipe) render near a few hundred ms.
SHADOW_SIZE = 1024
OFFSAMPLES = 4


# ---------------------------------------------------------------------------------------
# Vial geometry (mm, z up from the glass bottom)
# ---------------------------------------------------------------------------------------

def _outer_profile(g: dict, bare_neck: bool, screw: bool) -> list[tuple[float, float]]:
    """(z, r) of the outer glass surface, bottom to top, in mm.

    Same shape as render_scene's `_half_widths`: a body of diameter d, a shoulder tapering
    to the neck (neck_w * d) over `shoulder` mm, a neck of `neck_h` mm, and for the 20 mL
    type a rounded bottom of height 0.35 d. A bare neck gets a rim bead and, on screw
    vials, thread ridges (rings: a lathe cannot make a helix, and at these sizes the
    difference is a fraction of a pixel).
    """
    r, h = g["d"] / 2, g["h"]
    rn = r * g["neck_w"]
    neck0 = h - g["neck_h"]
    shoulder0 = neck0 - g["shoulder"]
    pts: list[tuple[float, float]] = []
    if g["round_bottom"]:
        rb = 0.35 * g["d"]
        for z in np.linspace(0.0, rb, 10):
            pts.append((float(z), r * float(np.sqrt(np.clip(1 - ((rb - z) / rb) ** 2, 0.05, 1)))))
    else:
        pts += [(0.0, r - 0.6), (0.6, r)]
    pts += [(shoulder0, r), (neck0, rn)]
    if bare_neck and screw:
        n_thread = max(2, int(g["neck_h"] / 1.6))
        for i in range(n_thread):
            z0 = neck0 + (i + 0.3) * g["neck_h"] / (n_thread + 0.5)
            pts += [(z0, rn), (z0 + 0.35, rn + 0.35), (z0 + 0.7, rn)]
    if bare_neck:
        pts += [(h - 1.8, rn), (h - 1.4, rn + 0.6), (h - 0.3, rn + 0.6), (h, rn - 0.2)]
    else:
        pts += [(h, rn)]
    return pts


def _outer_radius(g: dict, z: np.ndarray) -> np.ndarray:
    """Outer radius of the plain glass (no thread or bead) at heights z (mm)."""
    prof = np.array(_outer_profile(g, bare_neck=False, screw=False))
    return np.interp(z, prof[:, 0], prof[:, 1])


def _inner_radius(g: dict, z: np.ndarray) -> np.ndarray:
    """Radius of the glass interior at heights z, i.e. of a content layer's surface."""
    z = np.asarray(z, dtype=float)
    r_in = _outer_radius(g, z) - WALL_MM
    if g["round_bottom"]:
        # The inner bottom is the outer ellipse shrunk by the wall.
        rb = 0.35 * g["d"]
        low = z < rb
        ri = g["d"] / 2 - WALL_MM
        rz = max(rb - WALL_MM, 1e-3)
        r_in = np.where(low, ri * np.sqrt(np.clip(1 - ((rb - z) / rz) ** 2, 0.05, 1)), r_in)
    return np.maximum(r_in, 0.2)


def _lathe(profile: list[tuple[float, float]], close_bottom: bool, close_top: bool,
           v_scale: float) -> dict[str, np.ndarray]:
    """Surface of revolution about z as MJCF mesh arrays (metres).

    Vertices carry their own normals (smooth around, following the profile slope) and
    texture coordinates (u around, v up, `v_scale` mm per texture height), so textured
    layers are mapped without stretching. End discs get their own vertices so their edges
    stay sharp.
    """
    prof = np.asarray(profile, dtype=float)
    z, r = prof[:, 0], prof[:, 1]
    dz, dr = np.gradient(z), np.gradient(r)
    nrad, nz = dz, -dr
    nl = np.hypot(nrad, nz) + 1e-12
    nrad, nz = nrad / nl, nz / nl
    ang = np.linspace(0, 2 * np.pi, N_SEG + 1)
    ca, sa = np.cos(ang), np.sin(ang)
    verts = [np.stack([r[:, None] * ca, r[:, None] * sa, np.repeat(z[:, None], N_SEG + 1, 1)], -1)]
    norms = [np.stack([nrad[:, None] * ca, nrad[:, None] * sa,
                       np.repeat(nz[:, None], N_SEG + 1, 1)], -1)]
    arc = np.concatenate([[0], np.cumsum(np.hypot(np.diff(z), np.diff(r)))])
    tex = [np.stack([np.broadcast_to(ang / (2 * np.pi), (len(z), N_SEG + 1)),
                     np.repeat((arc / v_scale)[:, None], N_SEG + 1, 1)], -1)]
    n_rows = len(z)
    faces = []
    for j in range(n_rows - 1):
        a = j * (N_SEG + 1) + np.arange(N_SEG)
        b, c = a + 1, a + N_SEG + 1
        d = c + 1
        faces += [np.stack([a, b, d], 1), np.stack([a, d, c], 1)]
    verts = [v.reshape(-1, 3) for v in verts]
    norms = [n.reshape(-1, 3) for n in norms]
    tex = [t.reshape(-1, 2) for t in tex]
    count = n_rows * (N_SEG + 1)
    for end, zz, rr, sign in ((close_bottom, z[0], r[0], -1.0), (close_top, z[-1], r[-1], 1.0)):
        if not end or rr <= 0:
            continue
        ring = np.stack([rr * ca[:-1], rr * sa[:-1], np.full(N_SEG, zz)], -1)
        verts.append(np.vstack([[0, 0, zz], ring]))
        norms.append(np.tile([0, 0, sign], (N_SEG + 1, 1)))
        tex.append(np.vstack([[0.5, 0.5], np.stack([0.5 + 0.5 * ca[:-1], 0.5 + 0.5 * sa[:-1]], -1)]))
        k = np.arange(N_SEG)
        centre, p, q = count, count + 1 + k, count + 1 + (k + 1) % N_SEG
        tri = np.stack([centre + 0 * k, p, q], 1) if sign > 0 else np.stack([centre + 0 * k, q, p], 1)
        faces.append(tri)
        count += N_SEG + 1
    return dict(vertex=np.vstack(verts) / 1000.0, normal=np.vstack(norms),
                texcoord=np.vstack(tex), face=np.vstack(faces).astype(int))


# ---------------------------------------------------------------------------------------
# Textures (generated from the scene's rng, embedded as in-memory PNG assets)
# ---------------------------------------------------------------------------------------

def _png(img_bgr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.clip(img_bgr, 0, 255).astype(np.uint8))
    assert ok
    return buf.tobytes()


def _noise(rng: np.random.Generator, h: int, w: int, sigma: float) -> np.ndarray:
    """Smoothed unit noise that tiles horizontally well enough for a vial texture."""
    n = rng.normal(0, 1, (h, w)).astype(np.float32)
    if sigma > 0.3:
        k = int(3 * sigma) + 1  # wrap around by hand: OpenCV has no wrapping blur
        n = cv2.GaussianBlur(np.pad(n, k, mode="wrap"), (0, 0), sigma)[k:-k, k:-k]
    return n / (n.std() + 1e-6)


def _tex_turbid(rng, colour):
    n = _noise(rng, 64, 128, rng.uniform(0.6, 2.0))
    return colour[None, None] * (1 + 0.12 * n[..., None])


def _tex_solid(rng, colour):
    grain = _noise(rng, 96, 192, rng.uniform(0.0, 1.0)) * rng.uniform(15, 40)
    clumps = cv2.resize(rng.normal(0, 1, (6, 12)).astype(np.float32), (192, 96)) * rng.uniform(5, 20)
    return colour[None, None] * (0.9 + 0.1 * clumps[..., None] / 20) + (grain + clumps)[..., None]


def _tex_foam(rng):
    img = np.full((96, 192), rng.uniform(200, 245), np.float32)
    for _ in range(int(rng.integers(60, 160))):
        c = (int(rng.integers(0, 192)), int(rng.integers(0, 96)))
        rad = int(rng.integers(2, 8))
        cv2.circle(img, c, rad, float(rng.uniform(120, 190)), 1, cv2.LINE_AA)
    img += _noise(rng, 96, 192, 1.0) * 8
    return np.repeat(img[..., None], 3, 2)


def _tex_residue(rng, colour):
    """Patchy film: material where a smooth random field exceeds a threshold, a faint
    whitish haze between (the material's alpha applies to the whole shell)."""
    field = cv2.resize(rng.random((8, 16)).astype(np.float32), (128, 64), interpolation=cv2.INTER_CUBIC)
    cover = field > rng.uniform(0.3, 0.55)
    img = np.where(cover[..., None], colour[None, None] * (1 + 0.1 * _noise(rng, 64, 128, 1)[..., None]),
                   255.0)
    return img


def _tex_ridges(rng, colour, n_ridges):
    """Screw-cap knurl: vertical ridges around the cap."""
    u = np.arange(256) / 256 * n_ridges
    ridge = 0.8 + 0.2 * (np.floor(u * 2) % 2)
    img = colour[None, None] * ridge[None, :, None] * np.ones((8, 1, 1), np.float32)
    return img


def _tex_backdrop(rng):
    h, w = 192, 256
    base = _colour(rng, sat=(0.0, 0.5), val=(0.15, 0.95))
    other = np.clip(base + rng.normal(0, 40, 3), 0, 255)
    vertical = rng.random() < 0.5
    t = np.linspace(0, 1, h if vertical else w, dtype=np.float32)
    grad = t[:, None, None] if vertical else t[None, :, None]
    img = np.broadcast_to(base * (1 - grad) + other * grad, (h, w, 3)).copy()
    for _ in range(int(rng.integers(0, 6))):  # panels, tiles, posters
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(8, h // 2))
        img[y0:y1, x0:x1] = np.clip(img[y0:y1, x0:x1] * rng.uniform(0.6, 1.3) + rng.normal(0, 25, 3), 0, 255)
    img += _noise(rng, h, w, rng.uniform(0.5, 6))[..., None] * rng.uniform(0, 12)
    return img


# ---------------------------------------------------------------------------------------
# Camera
# ---------------------------------------------------------------------------------------

class _Camera:
    """Pinhole camera with MuJoCo's conventions: looks along its -z, y up, fovy vertical."""

    def __init__(self, pos: np.ndarray, xmat: np.ndarray, fovy_deg: float, width: int, height: int):
        self.pos = np.asarray(pos, float)
        self.rot = np.asarray(xmat, float).reshape(3, 3)  # columns: camera axes in world
        self.f = (height / 2) / np.tan(np.radians(fovy_deg) / 2)
        self.w, self.h = width, height

    def project(self, pts_m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image (u, v) of world points (metres), pixel centres at +0.5, and their depth."""
        pc = (np.asarray(pts_m, float) - self.pos) @ self.rot
        depth = -pc[..., 2]
        u = self.w / 2 + self.f * pc[..., 0] / depth
        v = self.h / 2 - self.f * pc[..., 1] / depth
        return u, v, depth


def _look_at(target: np.ndarray, yaw: float, elevation: float, dist: float):
    """Camera position and MuJoCo xyaxes looking at `target` from the -y side."""
    fwd = np.array([np.sin(yaw) * np.cos(elevation), np.cos(yaw) * np.cos(elevation), -np.sin(elevation)])
    x_ax = np.cross(fwd, [0, 0, 1.0])
    x_ax /= np.linalg.norm(x_ax)
    y_ax = np.cross(-fwd, x_ax)
    return target - dist * fwd, x_ax, y_ax


# ---------------------------------------------------------------------------------------
# Vials: sampling, placement, labels
# ---------------------------------------------------------------------------------------

def _ring(centre_mm: np.ndarray, z_mm: float, r_mm: float) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, N_RING, endpoint=False)
    return np.stack([centre_mm[0] + r_mm * np.cos(a), centre_mm[1] + r_mm * np.sin(a),
                     np.full(N_RING, centre_mm[2] + z_mm)], -1) / 1000.0


class _Vial:
    """One planned vial: its random draws, position (mm) and, once projected, labels."""

    def __init__(self, rng: np.random.Generator, vtype: VialType, pos_mm: np.ndarray,
                 spec: VialSpec | None = None, variants: np.random.Generator | None = None):
        self.vtype, self.pos = vtype, pos_mm
        self.g = GEOMETRY[vtype]
        self.slot = -1
        # A given vial draws its contents' colours from its own seed (the same sample looks
        # the same in every image); a random one from the scene's rng.
        self.appearance = None
        if spec is not None:
            self.content, self.cap = spec.content, bool(spec.cap)
            self.crimp = self.cap and vtype == VialType.HEADSPACE_20ML
            self.layers = [(lo, hi, Row(r)) for lo, hi, r in spec.layers]
            self.appearance = np.random.default_rng([spec.appearance_seed])
            return
        self.content = CONTENT_CLASSES[rng.integers(0, len(CONTENT_CLASSES))]
        self.cap = bool(rng.random() < 0.6)
        self.crimp = self.cap and (vtype == VialType.HEADSPACE_20ML
                                   or (vtype == VialType.GC_2ML and rng.random() < 0.4))
        self.layers = _contents(rng, self.content, variants)

    @property
    def cap_r(self) -> float:
        return self.g["cap_w"] * self.g["d"] / 2

    def z_of(self, frac: float) -> float:
        """Height (mm above the glass bottom) of a fraction of the interior height."""
        zf = FLOOR_FRAC * self.g["h"]
        return zf + frac * (self.g["h"] - zf)

    def outline(self) -> np.ndarray:
        """World points (m) whose projections bound the vial's silhouette."""
        prof = _outer_profile(self.g, bare_neck=not self.cap, screw=self.vtype != VialType.HEADSPACE_20ML)
        rings = [_ring(self.pos, z, r) for z, r in prof]
        if self.cap:
            rings += [_ring(self.pos, self.g["h"], self.cap_r),
                      _ring(self.pos, self.g["h"] + self.g["cap_h"], self.cap_r)]
        return np.vstack(rings)

    def box(self, cam: _Camera) -> tuple[float, float, float, float]:
        """Bounding box (x1, y1, x2, y2) of the projected outline."""
        u, v, _ = cam.project(self.outline())
        return float(u.min()), float(v.min()), float(u.max()), float(v.max())

    def labels(self, cam: _Camera) -> VialTruth:
        x1, y1, x2, y2 = self.box(cam)
        g = self.g
        gb = y2
        if self.cap:
            gt = float(cam.project(_ring(self.pos, g["h"], self.cap_r))[1].max())
        else:
            gt = y1
        gt = min(max(gt, y1), gb)

        def row(z: float) -> float:
            """Lowest image row of the content surface's rim at height z."""
            r = float(_inner_radius(g, np.array([z]))[0])
            return float(np.clip(cam.project(_ring(self.pos, z, r))[1].max(), gt, gb))

        bounds = [(row(self.z_of(hi)), gb if lo == 0.0 else row(self.z_of(lo)), r)
                  for lo, hi, r in self.layers]
        segs, fill = label_rows(gt, gb, bounds, y1 if self.cap else None)
        return VialTruth(box=(x1, y1, x2, y2), vial_type=int(self.vtype), cap=self.cap,
                         content=int(self.content), glass_top=gt, glass_bottom=gb,
                         fill_level=float(fill), segments=segs)


# ---------------------------------------------------------------------------------------
# MJCF assembly
# ---------------------------------------------------------------------------------------

def _fmt(a) -> str:
    return " ".join(f"{x:.6g}" for x in np.ravel(a))


def _rgb(bgr: np.ndarray) -> np.ndarray:
    return np.asarray(bgr, float)[::-1] / 255.0


class _World:
    """Collects MJCF assets and geoms; names are unique within one scene."""

    def __init__(self):
        self.assets: list[str] = []
        self.geoms: list[str] = []
        self.files: dict[str, bytes] = {}
        self.n = 0

    def name(self, stem: str) -> str:
        self.n += 1
        return f"{stem}{self.n}"

    def texture(self, img_bgr: np.ndarray) -> str:
        name = self.name("tex")
        self.files[f"{name}.png"] = _png(img_bgr)
        self.assets.append(f'<texture name="{name}" type="2d" file="{name}.png"/>')
        return name

    def material(self, rgba, texture: str | None = None, specular=0.3, shininess=0.3,
                 reflectance=0.0, texrepeat=None) -> str:
        name = self.name("mat")
        tex = f' texture="{texture}"' if texture else ""
        rep = f' texrepeat="{_fmt(texrepeat)}"' if texrepeat is not None else ""
        self.assets.append(f'<material name="{name}" rgba="{_fmt(rgba)}"{tex}{rep} specular="{specular:.3g}" '
                           f'shininess="{shininess:.3g}" reflectance="{reflectance:.3g}"/>')
        return name

    def mesh(self, m: dict[str, np.ndarray]) -> str:
        name = self.name("mesh")
        self.assets.append(f'<mesh name="{name}" inertia="shell" vertex="{_fmt(m["vertex"])}" '
                           f'normal="{_fmt(m["normal"])}" texcoord="{_fmt(m["texcoord"])}" '
                           f'face="{_fmt(m["face"])}"/>')
        return name

    def geom(self, **attrs) -> None:
        attrs.setdefault("contype", 0)
        attrs.setdefault("conaffinity", 0)
        body = " ".join(f'{k}="{_fmt(v) if not isinstance(v, str) else v}"' for k, v in attrs.items())
        self.geoms.append(f"<geom {body}/>")

    def box(self, centre_mm, half_mm, material: str) -> None:
        self.geom(type="box", pos=np.asarray(centre_mm) / 1000, size=np.asarray(half_mm) / 1000,
                  material=material)


def _add_vial(world: _World, rng: np.random.Generator, v: _Vial, glass_mat: str) -> None:
    g = v.g
    pos = v.pos / 1000
    screw = v.vtype != VialType.HEADSPACE_20ML
    # Contents first: transparent geoms are drawn sorted by distance, and the layers sit
    # inside the glass either way. Each layer is a solid of revolution of the interior
    # between its heights; the bottom layer fills the glass down to the bottom, as the
    # labels say (bottom layer rows run to the glass bottom).
    prev_colour = None
    for lo, hi, row in v.layers:
        z_hi = v.z_of(hi)
        z_lo = 0.35 if lo == 0.0 else v.z_of(lo)
        zs = np.linspace(z_lo, z_hi, 12 if g["round_bottom"] and lo == 0.0 else 4)
        if g["round_bottom"] and lo == 0.0:
            zs = np.unique(np.concatenate([np.linspace(z_lo, 0.35 * g["d"], 8), zs]))
        inset = 0.15 if row == Row.RESIDUE else 0.0
        prof = [(float(z), float(r) - inset) for z, r in zip(zs, _inner_radius(g, zs))]
        if row in (Row.LIQUID, Row.LIQUID_UPPER, Row.LIQUID_LOWER, Row.TURBID):
            if row == Row.TURBID:
                # A suspension is still a liquid: wet gloss and a meniscus, which a powder
                # (matte, no meniscus) lacks; its particles make it cloudy, not grainy.
                colour = _colour(rng, sat=(0.0, 0.6), val=(0.45, 1.0))
                alpha = rng.uniform(0.75, 0.98)
                mat = world.material([1, 1, 1, alpha], world.texture(_tex_turbid(rng, colour)),
                                     specular=0.5, shininess=0.6)
            else:
                colour, alpha = liquid_colour(rng, prev_colour)
                prev_colour = colour
                mat = world.material([*_rgb(colour), alpha], specular=0.5, shininess=0.6)
            # A meniscus: a thin, darker band of the same liquid just under the surface.
            band = min(0.6, (z_hi - z_lo) * 0.3)
            men = [(z_hi - band, r) for r in _inner_radius(g, np.array([z_hi - band]))]
            men += [(z_hi, float(_inner_radius(g, np.array([z_hi]))[0]) + 0.05)]
            dark = world.material([*(_rgb(colour) * rng.uniform(0.4, 0.7)), min(1.0, alpha + 0.2)])
            world.geom(type="mesh", mesh=world.mesh(_lathe(men, False, False, 10)), material=dark, pos=pos)
        elif row == Row.SOLID:
            colour = _colour(rng, sat=(0.0, 0.7), val=(0.2, 1.0))
            mat = world.material([1, 1, 1, 1], world.texture(_tex_solid(rng, colour)), specular=0.05,
                                 shininess=0.05)
        elif row == Row.FOAM:
            mat = world.material([1, 1, 1, rng.uniform(0.85, 1.0)], world.texture(_tex_foam(rng)),
                                 specular=0.4)
        else:  # Row.RESIDUE: an open shell on the inner wall
            colour = _colour(rng, sat=(0.0, 0.8), val=(0.2, 0.9))
            mat = world.material([1, 1, 1, rng.uniform(0.5, 0.85)], world.texture(_tex_residue(rng, colour)),
                                 specular=0.1)
        closed = row != Row.RESIDUE
        vs = 8.0 if row != Row.RESIDUE else 25.0
        world.geom(type="mesh", mesh=world.mesh(_lathe(prof, closed, closed, vs)), material=mat, pos=pos)

    # Glass: a closed, thin-looking transparent shell with specular highlights.
    glass = _lathe(_outer_profile(g, bare_neck=not v.cap, screw=screw), True, not v.cap, 20)
    world.geom(type="mesh", mesh=world.mesh(glass), material=glass_mat, pos=pos)

    if v.cap:
        prof = [(g["h"] - 0.05, v.cap_r), (g["h"] + g["cap_h"] - 0.6, v.cap_r),
                (g["h"] + g["cap_h"], v.cap_r - 0.6)]
        if v.crimp:  # aluminium crimp with a septum showing through the top
            grey = rng.uniform(120, 220) / 255
            mat = world.material([grey, grey, grey * 1.03, 1], specular=0.9, shininess=0.8)
            world.geom(type="mesh", mesh=world.mesh(_lathe(prof, True, True, 10)), material=mat, pos=pos)
            septum = world.material([*_rgb(_colour(rng, sat=(0.0, 0.6), val=(0.3, 0.9))), 1], specular=0.1)
            world.geom(type="cylinder", size=[v.cap_r * 0.55 / 1000, 0.05 / 1000],
                       pos=pos + [0, 0, (g["h"] + g["cap_h"]) / 1000], material=septum)
        else:  # plastic screw cap with a knurled side
            colour = _colour(rng, sat=(0.0, 1.0), val=(0.1, 0.95))
            tex = world.texture(_tex_ridges(rng, colour, int(rng.integers(24, 48))))
            mat = world.material([1, 1, 1, 1], tex, specular=rng.uniform(0.1, 0.6), shininess=0.4)
            world.geom(type="mesh", mesh=world.mesh(_lathe(prof, True, True, 100)), material=mat, pos=pos)


def _plan(rng: np.random.Generator, width: int, height: int, max_vials: int, n_vials: int | None):
    """Racks, scale and camera: the scene layout before any geometry is built."""
    n_racks = 1 if rng.random() < 0.6 or n_vials else 2
    fovy = float(rng.uniform(40, 70))
    f = (height / 2) / np.tan(np.radians(fovy) / 2)
    racks = []
    for _ in range(n_racks):
        vtype = DETECTOR_CLASSES[rng.integers(0, len(DETECTOR_CLASSES))]
        n = int(rng.integers(1, (max_vials if n_racks == 1 else max_vials // 2) + 1))
        racks.append(dict(vtype=vtype, g=GEOMETRY[vtype], n=n_vials or n, pitch_f=rng.uniform(1.12, 1.7)))
    # Scale in px/mm at the racks, as render_scene chooses it: random, but the racks fit.
    gap = rng.uniform(15, 40)      # between the lower caps and the upper shelf board
    board = rng.uniform(8, 15)
    tall = [r["g"]["h"] + r["g"]["cap_h"] for r in racks]
    total_h = tall[0] + (gap + board + tall[1] if n_racks == 2 else 0)
    s_fit = min(min(0.94 * width / (r["n"] * r["g"]["d"] * r["pitch_f"]) for r in racks),
                0.85 * height / (total_h + 8))
    s = min(rng.uniform(0.9, 3.2), s_fit)
    s = max(s, min(0.9, s_fit))
    z_base = [0.0] + ([tall[0] + gap + board] if n_racks == 2 else [])
    for r, zb in zip(racks, z_base):
        r["pitch"] = r["g"]["d"] * r["pitch_f"]
        r["row_w"] = r["n"] * r["pitch"]
        slack = max(0.94 * width / s - r["row_w"], 0.0)
        r["x0"] = rng.uniform(-slack / 2, slack / 2) - r["row_w"] / 2 + r["pitch"] / 2
        r["z"] = zb
    slack_v = max(0.85 * height / s - total_h, 0.0)
    target = np.array([0.0, 0.0, total_h / 2 + rng.uniform(-0.4, 0.4) * slack_v])
    yaw = np.radians(rng.uniform(-15, 15))
    elev = np.radians(rng.uniform(-5, 20))
    dist = f / s  # mm: the racks are at `s` px/mm
    return racks, dict(fovy=fovy, target=target, yaw=yaw, elev=elev, dist=dist, gap=gap, board=board,
                       total_h=total_h, s=s, z_min=max(r["z"] for r in racks) + 3.0)


def _plan_view(view: RackView, rng: np.random.Generator, width: int, height: int):
    """`_plan` for a given rack: one rack, a frontal camera at the view's pose, jittered."""
    vtype = VialType(view.vial_type)
    g = GEOMETRY[vtype]
    n = max(len(view.slots), 1)
    fovy = float(view.fovy_deg)
    f = (height / 2) / np.tan(np.radians(fovy) / 2)
    tall = g["h"] + g["cap_h"]
    s = min(view.fill * width / (n * g["d"] * view.pitch), view.fill * height / (tall + 8))
    pitch = g["d"] * view.pitch
    rack = dict(vtype=vtype, g=g, n=len(view.slots), pitch_f=view.pitch, pitch=pitch,
                row_w=n * pitch, x0=-n * pitch / 2 + pitch / 2, z=0.0)
    jitter = np.radians(view.jitter_deg)
    target = np.array([0.0, 0.0, tall / 2])
    return [rack], dict(fovy=fovy, target=target,
                        yaw=np.radians(view.yaw_deg) + rng.normal(0, jitter),
                        elev=np.radians(view.elevation_deg) + rng.normal(0, jitter),
                        dist=f / s, gap=0.0, board=0.0, total_h=tall, s=s, z_min=3.0)


def _max_overlap(boxes: np.ndarray) -> float:
    """Largest horizontal overlap of two boxes that also overlap vertically, as a fraction
    of the narrower box's width."""
    worst = 0.0
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            a, b = boxes[i], boxes[j]
            if min(a[3], b[3]) <= max(a[1], b[1]):
                continue
            ov = min(a[2], b[2]) - max(a[0], b[0])
            worst = max(worst, ov / min(a[2] - a[0], b[2] - b[0]))
    return worst


def _stretch_rack(r: dict, vials: list, k: float) -> None:
    """Space a rack's slots k times wider about its centre."""
    xc = r["x0"] - r["pitch"] / 2 + r["row_w"] / 2
    r["pitch"] *= k
    r["row_w"] *= k
    r["x0"] = xc - r["row_w"] / 2 + r["pitch"] / 2
    for v in vials:
        v.pos[0] = xc + (v.pos[0] - xc) * k


def _place_camera(cam: dict, width: int, height: int) -> tuple[_Camera, np.ndarray, np.ndarray, np.ndarray]:
    """The planned camera at cam["dist"]; its pose in mm and MuJoCo xyaxes.

    The camera is kept a little above every rack's base: from below, a rack's base plate
    (or the shelf under it) would hide the vial bottoms, i.e. the labelled glass bottom.
    """
    elev = max(cam["elev"], float(np.arcsin(np.clip((cam["z_min"] - cam["target"][2]) / cam["dist"], -1, 1))))
    pos_mm, x_ax, y_ax = _look_at(cam["target"], cam["yaw"], elev, cam["dist"])
    rot = np.stack([x_ax, y_ax, np.cross(x_ax, y_ax)], 1)
    return _Camera(pos_mm / 1000, rot, cam["fovy"], width, height), pos_mm, x_ax, y_ax


def render_mujoco_scene(seed: int, width: int = 640, height: int = 480,
                        max_vials: int = 16, n_vials: int | None = None,
                        variants: bool = True,
                        labels: tuple[str, float] | None = None) -> Scene:
    """One random scene rendered with MuJoCo, a pure function of its arguments.

    Same contract as `synthetic.render_scene`: `n_vials` forces one rack with exactly that
    many vials (all of which fit in the image); otherwise one or two racks hold up to
    `max_vials`, about 10 % of the slots empty. `variants=False` leaves out the v4 variants;
    `labels` (style, fraction) paints paper labels before the camera effects.
    """
    return _render(seed, width, height, max_vials, n_vials, variants=variants,
                   labels=labels)[0]


def render_mujoco_rack(view: RackView, seed: int, width: int = 640, height: int = 480) -> Scene:
    """A given rack rendered with MuJoCo; the same contract as `synthetic.render_rack`.

    The room (backdrop, bench, rack, lights; no clutter) comes from `view.room_seed`, each
    vial's look from its `appearance_seed`; `seed` jitters the camera pose and draws the
    camera effects. `Scene.slots` gives each rendered vial's slot.
    """
    return _render(seed, width, height, view=view)[0]


def _render(seed: int, width: int = 640, height: int = 480, max_vials: int = 16,
            n_vials: int | None = None, omit: int | None = None,
            plain: bool = False, view: RackView | None = None,
            variants: bool = True,
            labels: tuple[str, float] | None = None) -> tuple[Scene, np.ndarray]:
    """The scene and MuJoCo's raw RGB render (before the camera effects).

    For tests: `omit` leaves the vial with that index in the scene's (sorted) vial list out
    of the world, with every random draw unchanged, so the two renders differ only where
    that vial was; `plain` turns off shadows and reflections, which would spread that
    difference outside the vial.
    """
    import mujoco

    rng = np.random.default_rng(seed)
    # A random scene draws everything from `rng`, in one fixed order; a given view keeps
    # the room apart, so that every look at one station shows the same room.
    room = rng if view is None else np.random.default_rng([view.room_seed])
    variants = variant_rng(seed, variants)
    if view is None:
        racks, cam = _plan(rng, width, height, max_vials, n_vials)
    else:
        racks, cam = _plan_view(view, rng, width, height)

    # Vials: draw every slot's randomness first.
    vials: list[_Vial] = []
    for r in racks:
        for i in range(r["n"]):
            spec = view.slots[i] if view is not None else None
            empty = spec is None if view is not None else rng.random() < 0.1 and not n_vials
            jitter = rng.uniform(-0.03, 0.03) * r["pitch"]
            v = _Vial(rng, r["vtype"], np.array([r["x0"] + i * r["pitch"] + jitter, 0.0, r["z"]]),
                      spec, variants)
            v.rack, v.slot = r, i
            if not empty:
                vials.append(v)
    # The scale fit assumed a frontal view. Yaw and perspective enlarge the near end of a
    # rack: step back until every vial is in view (render_scene keeps all in view). Oblique
    # lines of sight bring neighbours behind one another: turn towards a frontal view, then
    # space the slots wider, until no vial hides behind another (render_scene's vials never
    # overlap either).
    for _ in range(80):
        planned, cam_pos_mm, x_ax, y_ax = _place_camera(cam, width, height)
        boxes = np.array([v.box(planned) for v in vials]).reshape(-1, 4)
        if len(boxes) and (boxes[:, :2].min() < 1 or boxes[:, 2].max() > width - 1
                           or boxes[:, 3].max() > height - 1):
            cam["dist"] *= 1.04
            continue
        if _max_overlap(boxes) <= MAX_OCCLUSION:
            break
        if abs(cam["yaw"]) > np.radians(2):
            cam["yaw"] *= 0.8
        else:
            for r in racks:
                _stretch_rack(r, [v for v in vials if v.rack is r], 1.05)
    # Keep the vials wholly in view and not hidden behind a nearer vial, so no unlabelled
    # vial is ever rendered.
    kept: list[tuple[_Vial, VialTruth, float]] = []
    for v in sorted(vials, key=lambda v: planned.project(v.pos / 1000)[2]):  # nearest first
        t = v.labels(planned)
        x1, y1, x2, y2 = t.box
        if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            continue
        hidden = max([0.0] + [min(x2, k.box[2]) - max(x1, k.box[0]) for _, k, _ in kept
                              if min(y2, k.box[3]) > max(y1, k.box[1])])
        if hidden > MAX_OCCLUSION * (x2 - x1):
            continue
        kept.append((v, t, 0.0))

    world = _World()
    # Room: bench, wall behind, racks, shelf, clutter behind the racks.
    wall_y = room.uniform(60, 400)
    world.geom(type="box", pos=[0, wall_y / 1000 + 0.005, 0.3], size=[3, 0.005, 1.5],
               material=world.material([1, 1, 1, 1], world.texture(_tex_backdrop(room)), specular=0.1))
    bench_col = _colour(room, sat=(0.0, 0.5), val=(0.2, 0.95))
    bench_tex = world.texture(bench_col[None, None] * (1 + 0.08 * _noise(room, 128, 128, room.uniform(0.5, 3))[..., None]))
    bench_mat = world.material([1, 1, 1, 1], bench_tex, specular=room.uniform(0, 0.5),
                               reflectance=room.uniform(0, 0.06) * (not plain), texrepeat=[4, 4])
    bench_front = room.uniform(30, 250)
    world.box([0, (wall_y - bench_front) / 2, -20], [2000, (wall_y + bench_front) / 2, 20], bench_mat)
    for r in racks:
        g = r["g"]
        rack_col = _colour(room, sat=(0.0, 0.6), val=(0.1, 0.9))
        rack_mat = world.material([*_rgb(rack_col), 1], specular=room.uniform(0.05, 0.5))
        xc = r["x0"] - r["pitch"] / 2 + r["row_w"] / 2
        half_w = r["row_w"] / 2 + 4
        plate = room.uniform(3, 12)
        world.box([xc, 0, r["z"] - plate / 2], [half_w, g["d"] * 0.8, plate / 2], rack_mat)
        if room.random() < 0.8:  # back panel behind the lower part of the vials
            ph = room.uniform(0.2, 0.6) * g["h"]
            world.box([xc, g["d"] / 2 + 3, r["z"] + ph / 2], [half_w, 2, ph / 2], rack_mat)
        if r["z"] > 0:  # the upper rack stands on a shelf board spanning the view
            zb = r["z"] - plate
            world.box([0, (wall_y - g["d"]) / 2, zb - cam["board"] / 2],
                      [2000, (wall_y + g["d"]) / 2, cam["board"] / 2], bench_mat)
    # Clutter (boxes and bottles behind the racks); a given view is a station's clear bench.
    # `front` is the object's nearest face, not its centre: every line of sight to a vial
    # ends at y <= d / 2, so an object wholly behind y = d + 10 never hides one (before v6
    # the centre was drawn there and deep objects reached in front of the rack).
    d_max = max(r["g"]["d"] for r in racks)
    for _ in range(int(room.integers(0, 6)) if view is None else 0):
        front = room.uniform(max(d_max + 10, 20), max(wall_y - 10, 25))
        x = room.uniform(-0.7, 0.7) * width / cam["s"]
        size = room.uniform(10, 80, 3)
        mat = world.material([*_rgb(_colour(room)), 1], specular=room.uniform(0, 0.6))
        if room.random() < 0.5:
            world.box([x, front + size[1], size[2]], size, mat)
        else:
            world.geom(type="cylinder", pos=np.array([x, front + size[0] / 2, size[2]]) / 1000,
                       size=np.array([size[0] / 2, size[2]]) / 1000, material=mat)
    tint = room.uniform(0.9, 1.0, 3)
    glass_mat = world.material([*tint, room.uniform(0.08, 0.25)], specular=room.uniform(0.5, 1.0),
                               shininess=room.uniform(0.5, 0.95))
    # The label order is the final sort order; `omit` refers to it.
    order = sorted(range(len(kept)), key=lambda i: (round(kept[i][1].box[3] / 40), kept[i][1].box[0]))
    omitted = order[omit] if omit is not None else None
    for i, (v, _, _) in enumerate(kept):
        # An omitted vial still draws its random numbers, into a world that is thrown away.
        _add_vial(_World() if i == omitted else world, v.appearance or room, v,
                  glass_mat)

    # Lights: a headlight plus one to three lamps from above/front, some casting shadows.
    lights = []
    for _ in range(int(room.integers(1, 4))):
        d = np.array([room.uniform(-1, 1), room.uniform(0.1, 1.0), -room.uniform(0.4, 1.5)])
        d /= np.linalg.norm(d)
        lpos = cam["target"] / 1000 - d * 1.5
        diff = room.uniform(0.25, 0.8) * (1 + room.normal(0, 0.05, 3))
        kind = "directional" if room.random() < 0.6 else "spot"
        lights.append(f'<light type="{kind}" pos="{_fmt(lpos)}" dir="{_fmt(d)}" diffuse="{_fmt(diff)}" '
                      f'specular="0.3 0.3 0.3" castshadow="{"true" if room.random() < 0.5 and not plain else "false"}"'
                      + (' cutoff="60" exponent="2"' if kind == "spot" else "") + "/>")
    amb, head = room.uniform(0.05, 0.4), room.uniform(0.1, 0.6)

    xml = f"""<mujoco model="vial_scene">
  <statistic extent="1" center="0 0 0"/>
  <visual>
    <global offwidth="{width}" offheight="{height}"/>
    <headlight ambient="{amb:.3f} {amb:.3f} {amb:.3f}" diffuse="{head:.3f} {head:.3f} {head:.3f}" specular="0.1 0.1 0.1"/>
    <map znear="0.005" zfar="20"/>
    <quality shadowsize="{SHADOW_SIZE}" offsamples="{OFFSAMPLES}"/>
  </visual>
  <asset>
    {chr(10).join(world.assets)}
  </asset>
  <worldbody>
    {chr(10).join(lights)}
    {chr(10).join(world.geoms)}
    <camera name="cam" pos="{_fmt(cam_pos_mm / 1000)}" xyaxes="{_fmt(x_ax)} {_fmt(y_ax)}" fovy="{cam['fovy']:.6f}"/>
  </worldbody>
</mujoco>"""
    model = mujoco.MjModel.from_xml_string(xml, world.files)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    try:
        renderer = mujoco.Renderer(model, height, width)
    except Exception as e:  # no display, no EGL, no OSMesa
        raise RuntimeError("MuJoCo offscreen rendering unavailable: set MUJOCO_GL=egl (with an EGL-capable "
                           f"driver) or MUJOCO_GL=osmesa before importing mujoco ({e})") from e
    try:
        renderer.update_scene(data, camera="cam")
        rgb = renderer.render()
    finally:
        renderer.close()

    # Labels from the camera MuJoCo actually rendered with.
    cam_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "cam")
    camera = _Camera(data.cam_xpos[cam_id], data.cam_xmat[cam_id], float(model.cam_fovy[cam_id]),
                     width, height)
    img = rgb[..., ::-1].astype(np.float32)
    slots = []
    if view is not None:  # in slot order, with the slots
        shown = sorted((v for i, (v, _, _) in enumerate(kept) if i != omitted), key=lambda v: v.slot)
        truths, slots = [v.labels(camera) for v in shown], [v.slot for v in shown]
    else:
        truths = [v.labels(camera) for i, (v, _, _) in enumerate(kept) if i != omitted]
        truths.sort(key=lambda t: (round(t.box[3] / 40), t.box[0]))
    if labels:
        img = _paint_labels(img, truths, seed, "mujoco", labels)
    return Scene(image=camera_effects(img, rng), vials=truths, seed=seed, slots=slots), rgb
