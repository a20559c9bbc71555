"""Streams of synthetic scenes from either generator: the 2-D compositor or MuJoCo.

Training, evaluation and the benchmark take their scenes from here, so one flag
(`renderer`) chooses the generator everywhere.

MuJoCo renders through EGL (Mesa's software rasteriser on a machine without a GPU), and
that crashes the process once torch's libraries are loaded too (segmentation fault in
either import order, measured with torch 2.14.1 here). MuJoCo scenes are therefore
rendered in worker processes started with "spawn" that never import torch.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterable, Iterator
from functools import partial

from mobile_chemist.vision.synthetic import (Scene, random_rack_view, render_rack, render_scene,
                                             scoring_seed_base)

RENDERERS = ("2d", "mujoco")


#: "random": racks anywhere in a cluttered frame; "rack": one rack filling the frame, as a
#: station's camera shows it (`synthetic.random_rack_view`); "edge": the random scenes with
#: each row moved to the frame's left or right edge (`render_scene`'s edge_rows), 2-D only.
SCENE_KINDS = ("random", "rack", "edge")


def _edge_scene(seed: int, n_vials: int | None, variants: bool) -> Scene:
    return render_scene(seed, n_vials=n_vials, variants=variants, edge_rows=True)


def _mujoco_scene(seed: int, n_vials: int | None, variants: bool,
                  labels: tuple[str, float] | None = None) -> Scene:
    from mobile_chemist.vision.mujoco_scene import render_mujoco_scene

    return render_mujoco_scene(seed, n_vials=n_vials, variants=variants, labels=labels)


def _rack_scene(seed: int, n_vials: int | None, variants: bool) -> Scene:
    return render_rack(random_rack_view(seed, variants), seed)


def _mujoco_rack_scene(seed: int, n_vials: int | None, variants: bool) -> Scene:
    from mobile_chemist.vision.mujoco_scene import render_mujoco_rack

    return render_mujoco_rack(random_rack_view(seed, variants), seed)


_RENDER = {("2d", "random"): render_scene, ("mujoco", "random"): _mujoco_scene,
           ("2d", "rack"): _rack_scene, ("mujoco", "rack"): _mujoco_rack_scene,
           ("2d", "edge"): _edge_scene}


def iter_scenes(seeds: Iterable[int], renderer: str = "2d", n_vials: int | None = None,
                workers: int = 1, kind: str = "random", variants: bool = True,
                labels: tuple[str, float] | None = None) -> Iterator[Scene]:
    """The scenes of `seeds`, in order (a pure function of seed, renderer, kind, variants
    and labels).

    MuJoCo scenes always come from `workers` spawned processes, 2-D scenes only when
    `workers` > 1. `n_vials` applies to random and edge scenes only; `variants=False` leaves out
    generator v4's variants (synthetic.VARIANTS); `labels` (paper label style, fraction of
    vials) paints labels before the camera effects, random scenes only.
    """
    if renderer not in RENDERERS:
        raise ValueError(f"renderer must be one of {RENDERERS}, not {renderer!r}")
    if kind not in SCENE_KINDS:
        raise ValueError(f"scene kind must be one of {SCENE_KINDS}, not {kind!r}")
    if (renderer, kind) not in _RENDER:
        raise ValueError(f"the {renderer} renderer draws no {kind!r} scenes")
    if labels and kind != "random":
        raise ValueError(f"labels under the camera are painted on random scenes only, not {kind!r}")
    render = partial(_RENDER[renderer, kind], n_vials=n_vials, variants=variants,
                     **({"labels": labels} if labels else {}))
    seeds = [int(s) for s in seeds]
    if renderer == "2d" and workers <= 1:
        for s in seeds:
            yield render(s)
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(max(1, workers)) as pool:
        yield from pool.imap(render, seeds, chunksize=4)


def add_scene_arguments(parser, scenes: int = 100) -> None:
    """The scene choice the vision diagnostics in bench/ share: how many, which seeds, which kind."""
    parser.add_argument("--scenes", type=int, default=scenes, help="scenes of each generator")
    parser.add_argument("--held-out", action="store_true",
                        help="bench/vision.py's held-out scenes (10 000 000 up) instead of "
                             "validation (a diagnosis, never a model choice)")
    parser.add_argument("--kind", choices=SCENE_KINDS, default="random",
                        help="random scenes, rack-camera views of one rack, or random "
                             "scenes with their rows at the frame's edge (2-D only)")
    parser.add_argument("--vials", type=int, metavar="N",
                        help="random and edge scenes hold one rack of exactly N vials "
                             "(16: the latency benchmark's frames)")
    from mobile_chemist.vision.cli import add_skip_argument

    add_skip_argument(parser)


def scene_sets(args, workers: int = 2,
               labels: tuple[str, float] | None = None) -> dict[str, list[Scene]]:
    """Both generators' scenes as `add_scene_arguments` chose them, rendered up front (MuJoCo's
    workers must finish before torch loads: EGL and torch crash in one process); `labels`
    as `iter_scenes` takes them. Only the generators that draw `args.kind`."""
    base = scoring_seed_base(validation=not args.held_out) + args.skip
    seeds = range(base, base + args.scenes)
    return {r: list(iter_scenes(seeds, r, workers=workers, kind=args.kind, labels=labels,
                                n_vials=getattr(args, "vials", None)))
            for r in RENDERERS if (r, args.kind) in _RENDER}
