"""Tests of mobile_chemist.optimizer.BatchBayesianOptimizer (ask/tell batch BO)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.stats import norm

from mobile_chemist.errors import ConfigError, InfeasibleFormulationError
from mobile_chemist.optimizer import (BatchBayesianOptimizer, kriging_believer_batch,
                                      log_expected_improvement)
from mobile_chemist.space import FormulationSpace

ROOT = Path(__file__).resolve().parent.parent
FAST = dict(n_candidates=512, n_local=128, gp_restarts=1)


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load((ROOT / "config" / "campaign.yaml").read_text())


@pytest.fixture(scope="module")
def space(config) -> FormulationSpace:
    return FormulationSpace.from_config(config["campaign"])


def control(space) -> dict:
    f = {n: 0.0 for n in space.names}
    f.update({"P10": 5.0, "L_cysteine": 0.5})
    return f


def smooth(space):
    """A smooth unimodal surface with its peak inside the feasible set."""
    centre = space.to_unit(space.to_array({**control(space), "P10": 3.6, "L_cysteine": 1.5,
                                           "NaOH": 1.0, "NaCl": 0.75, "PVP": 0.5}))

    def f(X):
        U = space.to_unit(np.atleast_2d(X))
        return 1.0 + 9.0 * np.exp(-0.5 * (((U - centre) / 0.3) ** 2).sum(axis=1))
    return f


def run(opt, f, rounds, batch, rng, with_control=True):
    """Suggest/measure/observe `rounds` batches; return all suggested points."""
    seen = []
    for _ in range(rounds):
        F = opt.suggest(batch)
        seen.extend(F)
        if with_control:
            F = F + [control(opt.space)]
        y = f(opt.space.to_array(F))
        y = y * (1 + 0.05 * rng.standard_normal(len(y))) + 0.05 * rng.standard_normal(len(y))
        opt.observe(F, y.tolist())
    return seen


def keys(space, F):
    return [space.to_grid(f).tobytes() for f in F]


# ----------------------------------------------------------------------------- config
def test_from_config(config, space):
    opt = BatchBayesianOptimizer.from_config(space, config["optimizer"])
    assert (opt.seed, opt.n_initial, opt.xi, opt.n_candidates, opt.n_local,
            opt.gp_restarts) == (0, 32, 0.01, 4096, 1024, 2)
    assert BatchBayesianOptimizer.from_config(space, None).n_initial == 32


@pytest.mark.parametrize("section, words", [
    ({"seeed": 1}, ["unknown key", "seeed"]),
    ({"n_initial": 0}, ["n_initial", ">= 1"]),
    ({"n_initial": 3.5}, ["n_initial", "integer"]),
    ({"n_candidates": True}, ["n_candidates", "integer"]),
    ({"xi": -0.1}, ["xi", ">= 0"]),
    ({"xi": float("nan")}, ["xi", "finite"]),
    ({"acquisition": "ucb"}, ["acquisition", "expected_improvement"]),
    ({"gp_restarts": -1}, ["gp_restarts"]),
])
def test_from_config_errors(space, section, words):
    with pytest.raises(ConfigError) as err:
        BatchBayesianOptimizer.from_config(space, section)
    for w in words:
        assert w in str(err.value)


# ----------------------------------------------------------------------------- suggestions
def test_initial_design_is_the_latin_hypercube(space):
    opt = BatchBayesianOptimizer(space, seed=4, n_initial=20, **FAST)
    F = opt.suggest(14)
    design = space.latin_hypercube_grid(20, np.random.default_rng([4, 0, 3]))
    assert keys(space, F) == [g.tobytes() for g in design[:14]]
    opt.observe(F[:10], [1.0] * 10)
    G = opt.suggest(14)        # rest of the design first, then fresh uniform samples
    assert keys(space, G)[:10] == [g.tobytes() for g in design[10:]]
    assert len(set(keys(space, G))) == 14
    assert not set(keys(space, G)) & set(keys(space, F[:10]))


def test_suggestions_feasible_distinct_and_new(space):
    opt = BatchBayesianOptimizer(space, seed=1, n_initial=16, **FAST)
    f = smooth(space)
    observed = set()
    for _ in range(5):
        F = opt.suggest(14)
        assert len(F) == 14
        k = keys(space, F)                       # validates feasibility and the grids
        assert len(set(k)) == 14
        assert not set(k) & observed
        for x in F:
            assert set(x) == set(space.names)
            for name, amount in x.items():
                step = space.steps[space.names.index(name)]
                assert amount == round(round(amount / step) * step, 6)
        F = F + [control(space)] * 2
        opt.observe(F, f(space.to_array(F)).tolist())
        observed |= set(keys(space, F))
    assert opt.n_observations == 5 * 16


def test_determinism_replay_and_suggest_calls(space):
    f = smooth(space)
    a = BatchBayesianOptimizer(space, seed=7, n_initial=16, **FAST)
    rng = np.random.default_rng(1)
    history_F, history_y = [], []
    for _ in range(3):
        a.suggest(5)                                  # extra calls must not matter
        F = a.suggest(14) + [control(space)]
        y = (f(space.to_array(F)) + 0.1 * rng.standard_normal(len(F))).tolist()
        a.observe(F, y)
        history_F += F
        history_y += y
    nxt = a.suggest(14)
    assert a.suggest(14) == nxt
    b = BatchBayesianOptimizer(space, seed=7, n_initial=16, **FAST)
    b.observe(history_F, history_y)                   # crash recovery: one replay
    assert b.suggest(14) == nxt
    c = BatchBayesianOptimizer(space, seed=7, n_initial=16, **FAST)
    for i in range(0, len(history_F), 4):             # replay in other chunks
        c.observe(history_F[i:i + 4], history_y[i:i + 4])
    c.predict(history_F[:2])                          # touching the model first is fine
    assert c.suggest(14) == nxt
    d = BatchBayesianOptimizer(space, seed=8, n_initial=16, **FAST)
    d.observe(history_F, history_y)
    assert d.suggest(14) != nxt


def test_observe_rejects_bad_input_without_state_change(space):
    opt = BatchBayesianOptimizer(space, seed=2, n_initial=8, **FAST)
    F = opt.suggest(8)
    opt.observe(F, list(range(8)))
    before = opt.suggest(6)
    good = control(space)
    bad_cases = [
        ([good, good], [1.0, float("nan")], ValueError),
        ([good, good], [1.0, float("inf")], ValueError),
        ([good, good], [1.0, None], ValueError),
        ([good], [1.0, 2.0], ValueError),
        ([good, {**good, "NaOH": 4.75}], [1.0, 2.0], InfeasibleFormulationError),
        ([good, {**good, "NaOH": 0.1}], [1.0, 2.0], InfeasibleFormulationError),
        ([good, {**good, "P10": float("nan")}], [1.0, 2.0], InfeasibleFormulationError),
        ([good, {"P10": 5.0}], [1.0, 2.0], InfeasibleFormulationError),
        ([good, {**good, "water": 1.0}], [1.0, 2.0], InfeasibleFormulationError),
    ]
    for formulations, values, exc in bad_cases:
        with pytest.raises(exc):
            opt.observe(formulations, values)
        assert opt.n_observations == 8
    assert opt.suggest(6) == before
    assert opt.best() == (F[7], 7.0)


def test_repeated_observations_and_best(space):
    opt = BatchBayesianOptimizer(space, seed=3, n_initial=4, **FAST)
    c = control(space)
    opt.observe([c] * 5, [3.4, 3.5, 3.3, 3.6, 3.4])
    F = opt.suggest(3)
    opt.observe(F, [1.0, 5.0, 2.0])
    assert opt.n_observations == 8
    assert opt.best() == (F[1], 5.0)
    opt.observe(c, 3.45)                                   # single formulation form
    assert opt.n_observations == 9
    G = opt.suggest(10)                                    # GP phase, control known
    assert space.to_grid(c).tobytes() not in keys(space, G)
    with pytest.raises(ValueError, match="no observations"):
        BatchBayesianOptimizer(space).best()


def test_exhausted_space():
    sp = FormulationSpace.from_config({
        "components": [
            {"name": "x", "unit": "mL", "low": 0.0, "high": 0.5, "step": 0.25},
            {"name": "y", "unit": "mL", "low": 0.0, "high": 0.5, "step": 0.25},
        ],
        "constraints": [{"name": "v", "components": ["x", "y"], "max": 0.5}],
    })
    assert sp.count() == 6
    opt = BatchBayesianOptimizer(sp, seed=0, n_initial=2, n_candidates=16, n_local=8)
    seen = set()
    while len(seen) < 6:
        F = opt.suggest(2)
        k = keys(sp, F)
        assert not set(k) & seen and len(set(k)) == len(k)
        seen |= set(k)
        opt.observe(F, [x["x"] - (x["y"] - 0.25) ** 2 for x in F])
    F = opt.suggest(4)                  # nothing new left: repeats, still feasible
    assert len(F) == 4 and all(sp.is_feasible(x) for x in F)


def test_gp_beats_random_on_a_smooth_surface(space):
    f = smooth(space)
    optimum = 10.0
    budget_rounds, batch, n_initial = 6, 8, 16          # 64 experiments in all
    for seed in (0, 1):
        opt = BatchBayesianOptimizer(space, seed=seed, n_initial=n_initial, n_candidates=1024,
                                     n_local=256, gp_restarts=1)
        rng = np.random.default_rng(seed)
        run(opt, f, 2, 8, rng, with_control=False)             # the design
        pts = run(opt, f, budget_rounds, batch, rng, with_control=False)
        X, _ = opt.observations()
        best_bo = f(space.to_array(X)).max()
        n_total = opt.n_observations
        best_random = np.median([f(space.sample(n_total, np.random.default_rng([seed, r])))
                                 .max() for r in range(5)])
        assert len(pts) == budget_rounds * batch
        assert best_bo > best_random + 1.0, (best_bo, best_random)
        assert best_bo > 0.85 * optimum, best_bo


# ----------------------------------------------------------------------------- internals
def test_log_expected_improvement_is_accurate_and_stable():
    mu = np.linspace(-4, 4, 41)
    sigma = np.full_like(mu, 0.7)
    z = (mu - 0.5 - 0.01) / sigma
    ei = sigma * (z * norm.cdf(z) + norm.pdf(z))
    assert np.allclose(np.exp(log_expected_improvement(mu, sigma, 0.5, 0.01)), ei,
                       rtol=1e-9, atol=0)
    far = log_expected_improvement(np.array([-30.0, -40.0, -400.0, -5e4]), np.ones(4), 0.0)
    assert np.isfinite(far).all() and (np.diff(far) < 0).all()


def test_rank_one_fantasy_update_is_exact(space):
    opt = BatchBayesianOptimizer(space, seed=5, n_initial=12, **FAST)
    f = smooth(space)
    rng = np.random.default_rng(2)
    run(opt, f, 2, 8, rng)
    post = opt._posterior()
    Z = space.grid_to_unit(space.sample_grid(300, np.random.default_rng(3)))
    mu, var, V = post.mean_var_V(Z)
    picks, var_after = kriging_believer_batch(post, Z, mu, var, V, float(mu.max()), 0.01, 4)
    assert len(set(picks)) == 4
    # the same variances from scratch: the GP with the picks added as noisy observations
    Xa = np.vstack([post.X, Z[picks]])
    K = post.kernel(Xa, Xa) + (post.noise + 1e-10) * np.eye(len(Xa))
    Ks = post.kernel(Xa, Z)
    expected = post.amp - (Ks * np.linalg.solve(K, Ks)).sum(axis=0)
    assert np.allclose(var_after, np.maximum(expected, 1e-12), rtol=1e-6, atol=1e-9)
    # and the GP agrees with scikit-optimize's predictions
    m_sk, s_sk = post.gp.predict(Z[:20], return_std=True)
    assert np.allclose(mu[:20] * post.y_std + post.y_mean, m_sk)
    assert np.allclose(np.sqrt(var[:20]) * post.y_std, s_sk, rtol=1e-6)
