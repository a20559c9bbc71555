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

from mobile_chemist.vision.synthetic import Scene, render_scene

RENDERERS = ("2d", "mujoco")


def _mujoco_scene(seed: int, n_vials: int | None) -> Scene:
    from mobile_chemist.vision.mujoco_scene import render_mujoco_scene

    return render_mujoco_scene(seed, n_vials=n_vials)


_RENDER = {"2d": render_scene, "mujoco": _mujoco_scene}


def iter_scenes(seeds: Iterable[int], renderer: str = "2d", n_vials: int | None = None,
                workers: int = 1) -> Iterator[Scene]:
    """The scenes of `seeds`, in order (a pure function of seed and renderer).

    MuJoCo scenes always come from `workers` spawned processes, 2-D scenes only when
    `workers` > 1.
    """
    if renderer not in RENDERERS:
        raise ValueError(f"renderer must be one of {RENDERERS}, not {renderer!r}")
    seeds = [int(s) for s in seeds]
    if renderer == "2d" and workers <= 1:
        for s in seeds:
            yield render_scene(s, n_vials=n_vials)
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(max(1, workers)) as pool:
        yield from pool.imap(partial(_RENDER[renderer], n_vials=n_vials), seeds, chunksize=4)
