#!/usr/bin/env python3
"""Benchmark the planner (BatchBayesianOptimizer) against random search and a Latin hypercube.

Simulates campaigns the way the robot runs them: racks of ``batch_size`` (16) vials of which
``controls.per_batch`` (2) are the baseline control of config/campaign.yaml, the rest chosen
by the strategy; every vial is measured like the simulated GC (Gaussian noise, 1-sigma
``hypot(0.05 * f, 0.05)``, clipped at 0) and the planner is told the noisy values, controls
included.  Up to 688 experiments (43 racks), as in Burger et al. (2020).

Per strategy and surface, over several seeds: the number of experiments (vials, controls
included) after which the best TRUE (noise-free) value among the evaluated vials first
reaches 90 % and 95 % of the optimum (found by ``mobile_chemist.space.find_optimum``;
">N" when not reached), and the best true value after the whole budget as a fraction of the
optimum.  Surfaces: the project's response (``hydrogen``) and random surfaces the planner
was never tuned on (``random:<seed>``, ``mobile_chemist.surfaces``).  Also: the latency of
``suggest(16)`` at 100, 300 and 700 observations (median of a few repetitions).

    .venv/bin/python bench/planner.py [--seeds 5] [--experiments 688] [--surface NAME ...]
    .venv/bin/python bench/planner.py --quick     # smoke run, about a minute
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from mobile_chemist.optimizer import BatchBayesianOptimizer  # noqa: E402
from mobile_chemist.space import FormulationSpace, find_optimum  # noqa: E402

NOISE_RELATIVE = 0.05
NOISE_ABSOLUTE = 0.05
DEFAULT_SURFACES = ("hydrogen", "random:1", "random:2", "random:3")
STRATEGIES = ("planner", "random", "lhs")


# ------------------------------------------------------------------------------- surfaces
class _FallbackSurface:
    """A smooth unimodal test surface, used only if mobile_chemist.surfaces is missing."""

    def __init__(self, space: FormulationSpace, seed: int):
        rng = np.random.default_rng(seed)
        self.centre = space.to_unit(space.sample(1, rng)[0])
        self.scale = rng.uniform(0.15, 0.4, space.dimension)
        self.space = space
        self.name = f"fallback:{seed}"

    def evaluate_array(self, X, names=None):
        U = self.space.to_unit(np.atleast_2d(X))
        return 1.0 + 9.0 * np.exp(-0.5 * (((U - self.centre) / self.scale) ** 2).sum(1))

    def __call__(self, formulation):
        return float(self.evaluate_array(self.space.to_array(formulation))[0])


def load_surface(name: str, space: FormulationSpace):
    """The named surface as an object with evaluate_array(X, names) (lazy import)."""
    components = [(c.name, c.low, c.high) for c in space.components]
    try:
        from mobile_chemist import surfaces
    except ImportError:
        surfaces = None
    if surfaces is not None and hasattr(surfaces, "get_surface"):
        return surfaces.get_surface(name, components)
    if name == "hydrogen":
        from mobile_chemist import response

        class _Hydrogen:
            def evaluate_array(self, X, names=None):
                return response.hydrogen_evolution_rate_array(X, names or space.names)

            def __call__(self, formulation):
                return response.hydrogen_evolution_rate(formulation)
        return _Hydrogen()
    seed = int(name.split(":")[-1]) if ":" in name else 0
    return _FallbackSurface(space, seed)


def vector_eval(surface, space: FormulationSpace) -> Callable[[np.ndarray], np.ndarray]:
    """Integer grid points (n, d) -> noise-free values."""
    names = list(space.names)
    if hasattr(surface, "evaluate_array"):
        return lambda G: np.asarray(surface.evaluate_array(space.from_grid(G), names), float)
    return lambda G: np.array([surface(dict(zip(names, row)))
                               for row in space.from_grid(G).tolist()])


def measure(true: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    sigma = np.hypot(NOISE_RELATIVE * true, NOISE_ABSOLUTE)
    return np.maximum(0.0, true + rng.normal(0.0, 1.0, len(true)) * sigma)


# ------------------------------------------------------------------------------- campaigns
def run_campaign(strategy: str, f: Callable, space: FormulationSpace, control_g: np.ndarray,
                 seed: int, n_experiments: int, batch_size: int, n_controls: int,
                 optimizer_section: dict) -> dict:
    """One simulated campaign; returns the true values in experiment order and timings."""
    n_batches = math.ceil(n_experiments / batch_size)
    per_batch = batch_size - n_controls
    noise_rng = np.random.default_rng([seed, 7])
    true_all, suggest_s = [], []
    if strategy == "planner":
        section = dict(optimizer_section)
        section["seed"] = seed
        opt = BatchBayesianOptimizer.from_config(space, section)
    elif strategy == "lhs":
        design = space.latin_hypercube_grid(n_batches * per_batch, np.random.default_rng(
            [seed, 11]), n_tries=4)
    rng = np.random.default_rng([seed, 13])
    for b in range(n_batches):
        if strategy == "planner":
            t = time.perf_counter()
            G = space.to_grid(space.to_array(opt.suggest(per_batch)))
            suggest_s.append(time.perf_counter() - t)
        elif strategy == "random":
            G = space.sample_grid(per_batch, rng)
        else:
            G = design[b * per_batch:(b + 1) * per_batch]
        G = np.vstack([np.repeat(control_g[None, :], n_controls, axis=0), G])
        assert space.is_feasible_grid(G).all()
        true = f(G)
        y = measure(true, noise_rng)
        if strategy == "planner":
            opt.observe(space.grid_to_formulations(G), y.tolist())
        true_all.append(true)
    true_all = np.concatenate(true_all)[:n_experiments]
    return {"true": true_all, "suggest_s": suggest_s}


def experiments_to(true: np.ndarray, target: float) -> float:
    hit = np.flatnonzero(np.maximum.accumulate(true) >= target)
    return float(hit[0] + 1) if len(hit) else math.inf


def fmt_needed(values: list[float], budget: int) -> str:
    reached = [v for v in values if math.isfinite(v)]
    med = statistics.median(values) if values else math.inf
    med_s = f"{med:.0f}" if math.isfinite(med) else f">{budget}"
    if len(reached) == len(values):
        return (f"{statistics.mean(values):.0f} (median {med_s}, "
                f"{min(values):.0f}-{max(values):.0f})")
    return f">{budget} (median {med_s}, reached {len(reached)}/{len(values)})"


# ------------------------------------------------------------------------------- latency
def latency(space: FormulationSpace, f: Callable, optimizer_section: dict,
            sizes=(100, 300, 700), reps: int = 3, batch: int = 16) -> dict[int, dict]:
    """Median wall time of suggest(16) right after telling a new batch, at n observations.

    The optimizer holds n - 16 observations and has already suggested once (its GP
    checkpoints are warm, as in a running campaign); then 16 more are observed and the
    timed call refits the GP and selects the batch."""
    out = {}
    rng = np.random.default_rng(123)
    for n in sizes:
        G = np.vstack([space.sample_grid(n // 2, rng), space.sample_sparse_grid(n - n // 2, rng)])
        y = measure(f(G), rng)
        base = BatchBayesianOptimizer.from_config(space, optimizer_section)
        base.observe(space.grid_to_formulations(G[:n - batch]), y[:n - batch].tolist())
        base.suggest(batch)
        times, parts = [], []
        for r in range(reps):
            opt = copy.deepcopy(base)
            opt.seed = opt.seed + r + 1  # different candidates per repetition
            opt.observe(space.grid_to_formulations(G[n - batch:]), y[n - batch:].tolist())
            t = time.perf_counter()
            opt.suggest(batch)
            times.append(time.perf_counter() - t)
            parts.append(dict(opt.last_timings))
        k = int(np.argsort(times)[len(times) // 2])
        out[n] = {"median_s": statistics.median(times), "parts": parts[k]}
    return out


# ------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--experiments", type=int, default=688)
    ap.add_argument("--surface", action="append", default=None,
                    help="surface name: hydrogen or random:<seed> (repeatable)")
    ap.add_argument("--strategy", action="append", choices=STRATEGIES, default=None)
    ap.add_argument("--config", default=str(ROOT / "config" / "campaign.yaml"))
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 2 seeds, 224 experiments, 3 surfaces, latency at 100")
    ap.add_argument("--no-latency", action="store_true")
    args = ap.parse_args(argv)

    cfg = yaml.safe_load(Path(args.config).read_text())
    campaign = cfg["campaign"]
    optimizer_section = dict(cfg.get("optimizer") or {})
    space = FormulationSpace.from_config(campaign)
    batch_size = int(campaign.get("batch_size", 16))
    controls = campaign.get("controls") or {}
    n_controls = int(controls.get("per_batch", 0))
    control = {n: 0.0 for n in space.names}
    control.update(controls.get("formulation") or {})
    control_g = space.to_grid(control)

    seeds = args.seeds
    budget = args.experiments
    surfaces = args.surface or list(DEFAULT_SURFACES)
    sizes = (100, 300, 700)
    if args.quick:
        seeds, budget = 2, min(budget, 224)
        surfaces = args.surface or ["hydrogen", "random:1", "random:2"]
        sizes = (100,)
    strategies = args.strategy or list(STRATEGIES)

    print(f"# Planner benchmark: {seeds} seeds, {budget} experiments, batches of {batch_size} "
          f"({n_controls} controls), noise 5% + 0.05 (1 sigma)\n")
    rows = []
    for sname in surfaces:
        surface = load_surface(sname, space)
        f = vector_eval(surface, space)
        t = time.perf_counter()
        x_opt, v_opt = find_optimum(surface, space, np.random.default_rng(0), n_starts=24,
                                    n_samples=40000)
        active = {k: v for k, v in x_opt.items() if v != space.lows[space.names.index(k)]}
        print(f"- {sname}: optimum {v_opt:.4g} at {active} "
              f"(find_optimum {time.perf_counter() - t:.1f} s); control "
              f"{float(f(control_g[None, :])[0]):.4g}", flush=True)
        for strat in strategies:
            t = time.perf_counter()
            need90, need95, final, lat = [], [], [], []
            for s in range(seeds):
                res = run_campaign(strat, f, space, control_g, s, budget, batch_size,
                                   n_controls, optimizer_section)
                need90.append(experiments_to(res["true"], 0.90 * v_opt))
                need95.append(experiments_to(res["true"], 0.95 * v_opt))
                final.append(float(res["true"].max()) / v_opt)
                lat.extend(res["suggest_s"])
            rows.append((sname, strat, need90, need95, final, lat))
            print(f"  {strat:8s} done in {time.perf_counter() - t:.0f} s", flush=True)

    print("\n| surface | strategy | experiments to 90% | experiments to 95% "
          "| best/optimum after budget (mean, min) | suggest(14) in campaign (mean / max s) |")
    print("|---|---|---|---|---|---|")
    for sname, strat, n90, n95, final, lat in rows:
        lat_s = f"{statistics.mean(lat):.2f} / {max(lat):.2f}" if lat else "-"
        print(f"| {sname} | {strat} | {fmt_needed(n90, budget)} | {fmt_needed(n95, budget)} "
              f"| {statistics.mean(final):.3f}, {min(final):.3f} | {lat_s} |")

    if not args.no_latency and "planner" in strategies:
        f = vector_eval(load_surface("hydrogen", space), space)
        lat = latency(space, f, optimizer_section, sizes=sizes)
        print("\n| observations | suggest(16) median s | fit | candidates | posterior "
              "| refine | select |")
        print("|---|---|---|---|---|---|---|")
        for n, r in lat.items():
            p = r["parts"]
            print(f"| {n} | {r['median_s']:.2f} | " + " | ".join(
                f"{p.get(k, float('nan')):.2f}" for k in
                ("fit", "candidates", "posterior", "refine", "select")) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
