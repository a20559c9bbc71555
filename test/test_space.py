"""Tests of mobile_chemist.space: validation, grids, exact sampling, designs, neighbours."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from mobile_chemist.errors import ConfigError, InfeasibleFormulationError
from mobile_chemist.space import FormulationSpace, find_optimum

ROOT = Path(__file__).resolve().parent.parent
LIQUIDS = ["L_cysteine", "NaOH", "NaCl", "sodium_silicate", "PVP", "SDS", "rhodamine_B",
           "acid_red_87", "methylene_blue"]


@pytest.fixture(scope="module")
def campaign() -> dict:
    return yaml.safe_load((ROOT / "config" / "campaign.yaml").read_text())["campaign"]


@pytest.fixture(scope="module")
def space(campaign) -> FormulationSpace:
    return FormulationSpace.from_config(campaign)


def small_campaign(**over) -> dict:
    """Three liquids (0..1 mL on 0.25, sharing 1.5 mL) and one solid (0.1..0.5 on 0.1)."""
    c = {
        "components": [
            {"name": "a", "unit": "mL", "low": 0.0, "high": 1.0, "step": 0.25},
            {"name": "b", "unit": "mL", "low": 0.25, "high": 1.0, "step": 0.25},
            {"name": "c", "unit": "mL", "low": 0.0, "high": 1.0, "step": 0.25},
            {"name": "s", "unit": "mg", "low": 0.1, "high": 0.5, "step": 0.1},
        ],
        "constraints": [{"name": "vol", "components": ["a", "b", "c"], "max": 1.5}],
    }
    c.update(over)
    return c


@pytest.fixture(scope="module")
def small() -> FormulationSpace:
    return FormulationSpace.from_config(small_campaign())


def base_formulation(**amounts) -> dict:
    f = {"P10": 5.0, **{n: 0.0 for n in LIQUIDS}}
    f.update(amounts)
    return f


def on_grid(space: FormulationSpace, X: np.ndarray) -> bool:
    K = X / space.steps
    return bool(np.all(np.abs(K - np.rint(K)) < 1e-9))


def all_feasible(space: FormulationSpace, X: np.ndarray) -> bool:
    return all(space.is_feasible(dict(zip(space.names, row))) for row in X.tolist())


# ----------------------------------------------------------------------------- config
def test_from_config_of_the_campaign(space):
    assert space.dimension == 10
    assert space.names == ("P10", *LIQUIDS)
    assert space.units[0] == "mg" and set(space.units[1:]) == {"mL"}
    # 21 catalyst amounts x 9 liquids on 0.25 mL summing to at most 20 steps: C(29, 9)
    assert space.count() == 21 * math.comb(29, 9)


def _mutate(campaign, path, value):
    c = copy.deepcopy(campaign)
    target = c
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return c


@pytest.mark.parametrize("path, value, words", [
    (("components",), KeyError, ["missing key 'components'"]),
    (("components",), [], ["non-empty list"]),
    (("components", 2, "step"), KeyError, ["components[2]", "NaOH", "missing key 'step'"]),
    (("components", 2, "high"), KeyError, ["NaOH", "'high'"]),
    (("components", 2, "unit"), KeyError, ["NaOH", "'unit'"]),
    (("components", 0, "low"), 6.0, ["P10", "low (6.0) > high (5.0)"]),
    (("components", 3, "step"), 0.0, ["NaCl", "step", "must be > 0"]),
    (("components", 3, "step"), -0.25, ["NaCl", "step", "must be > 0"]),
    (("components", 3, "high"), 4.9, ["NaCl", "high", "not on the step grid"]),
    (("components", 0, "low"), 1.1, ["P10", "low", "not on the step grid"]),
    (("components", 3, "low"), -0.25, ["NaCl", "negative"]),
    (("components", 3, "low"), "zero", ["NaCl", "low", "expected a number"]),
    (("components", 3, "high"), float("nan"), ["NaCl", "high", "finite"]),
    (("components", 4, "name"), "NaCl", ["duplicate component name 'NaCl'"]),
    (("components", 4, "name"), "", ["components[4]", "name"]),
    (("constraints", 0, "components", 0), "water", ["vial_liquid_volume", "unknown", "water"]),
    (("constraints", 0, "max"), KeyError, ["vial_liquid_volume", "missing key 'max'"]),
    (("constraints", 0, "max"), "full", ["vial_liquid_volume", "max"]),
    (("constraints", 0, "maximum"), 5.0, ["vial_liquid_volume", "unknown key", "maximum"]),
    (("constraints", 0, "components"), [], ["vial_liquid_volume", "non-empty list"]),
    (("constraints", 0, "components"), ["NaOH", "NaOH"], ["more than once"]),
    (("constraints", 0, "components"), ["P10", "NaOH"], ["'NaOH'", "mL", "'P10'", "mg",
                                                        "unit"]),
])
def test_config_errors_are_precise(campaign, path, value, words):
    bad = _mutate(campaign, path, value)
    with pytest.raises(ConfigError) as err:
        FormulationSpace.from_config(bad)
    for w in words:
        assert w in str(err.value), (w, str(err.value))


def test_config_error_mixed_steps_and_empty_space_and_overlap():
    c = small_campaign()
    c["components"][2]["step"] = 0.5
    with pytest.raises(ConfigError, match=r"'c' has step 0.5 .*share the step"):
        FormulationSpace.from_config(c)
    c = small_campaign()
    c["constraints"][0]["max"] = 0.0      # b has low 0.25
    with pytest.raises(ConfigError, match=r"vol.*below the sum of the components' lower"):
        FormulationSpace.from_config(c)
    c = small_campaign()
    c["constraints"].append({"name": "two", "components": ["a", "c"], "max": 1.0})
    with pytest.raises(ConfigError, match=r"'a' is already in constraint 'vol'"):
        FormulationSpace.from_config(c)
    with pytest.raises(ConfigError, match="expected a mapping"):
        FormulationSpace.from_config([1, 2])


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("change, words", [
    ({"water": 1.0}, ["unknown component", "water"]),
    ({"NaOH": float("nan")}, ["NaOH", "not finite"]),
    ({"NaOH": float("inf")}, ["NaOH", "not finite"]),
    ({"NaOH": 0.3}, ["NaOH", "not on its dispensing grid", "0.25"]),
    ({"P10": 5.2}, ["P10", "outside its bounds"]),
    ({"P10": 0.8}, ["P10", "outside its bounds"]),
    ({"NaOH": -0.25}, ["NaOH", "outside its bounds"]),
    ({"NaOH": 3.0, "NaCl": 2.25}, ["vial_liquid_volume", "5.25", "max 5"]),
    ({"NaOH": "1"}, ["NaOH", "must be a number"]),
])
def test_validate_reasons(space, change, words):
    f = base_formulation(**change)
    with pytest.raises(InfeasibleFormulationError) as err:
        space.validate(f)
    for w in words:
        assert w in str(err.value), (w, str(err.value))
    assert not space.is_feasible(f)


def test_validate_missing_component(space):
    f = base_formulation()
    del f["SDS"]
    with pytest.raises(InfeasibleFormulationError, match=r"missing component.*SDS"):
        space.validate(f)


def test_validate_accepts_float_noise_and_full_vial(space):
    f = base_formulation(L_cysteine=0.1 + 0.15, NaOH=4.75)   # 0.25 with float noise, 5 mL
    space.validate(f)
    assert space.is_feasible(f)
    x = space.to_array(f)
    assert x[1] == 0.25 and x[2] == 4.75


def test_grid_snapping_never_moves_to_another_value():
    c = small_campaign()
    c["components"][3]["step"] = 0.1
    sp = FormulationSpace.from_config(c)
    x = np.array([0.5, 0.25, 0.0, 0.1 + 0.2])          # 0.30000000000000004
    f = sp.from_array(x)
    assert f["s"] == 0.3 and repr(f["s"]) == "0.3"
    assert sp.to_array(f)[3] == 0.3
    with pytest.raises(InfeasibleFormulationError, match="not on its dispensing grid"):
        sp.from_array(np.array([0.5, 0.25, 0.0, 0.3 + 1e-4]))
    # every grid value round-trips to the float of its decimal value
    G = sp.enumerate_grid()
    A = sp.from_grid(G)
    for g, a in zip(G[:, 3].tolist(), A[:, 3].tolist()):
        assert a == float(f"{g / 10:.1f}")


def test_to_unit_and_round_trip(space):
    rng = np.random.default_rng(0)
    X = space.sample(500, rng)
    U = space.to_unit(X)
    assert U.min() >= 0.0 and U.max() <= 1.0
    assert np.allclose(space.to_unit(space.lows), 0.0)
    F = space.from_array(X)
    assert np.array_equal(space.to_array(F), X)


# ----------------------------------------------------------------------------- sampling
def test_samples_are_feasible_and_on_grid(space):
    rng = np.random.default_rng(1)
    for draw in (space.sample, space.sample_sparse, space.latin_hypercube):
        X = draw(300, rng)
        assert X.shape == (300, 10)
        assert on_grid(space, X)
        assert all_feasible(space, X)
    G = space.sample_grid(50_000, rng)
    assert space.is_feasible_grid(G).all()
    G = space.sample_sparse_grid(50_000, rng)
    assert space.is_feasible_grid(G).all()


def test_sample_total_volume_matches_exact_distribution(space):
    rng = np.random.default_rng(2)
    G = space.sample_grid(60_000, rng)
    totals = G[:, 1:].sum(axis=1)
    emp = np.bincount(totals, minlength=21) / len(G)
    exact = space.total_distribution("vial_liquid_volume")
    assert exact.sum() == pytest.approx(1.0)
    # the uniform law puts ~31% of the points at exactly 5 mL; rejection from the box
    # would never get here, a biased sampler would not match
    assert exact[20] == pytest.approx(math.comb(28, 8) / math.comb(29, 9))
    assert np.abs(emp - exact).max() < 0.01
    # catalyst: uniform over its 21 values, independent of the liquids
    p10 = np.bincount(G[:, 0] - space.grid_low[0], minlength=21) / len(G)
    assert np.abs(p10 - 1 / 21).max() < 0.01


def test_sample_is_uniform_on_a_small_space(small):
    pts = small.enumerate_grid()
    assert len(pts) == small.count()
    rng = np.random.default_rng(3)
    n = 40 * len(pts)
    G = small.sample_grid(n, rng)
    index = {p.tobytes(): i for i, p in enumerate(pts)}
    counts = np.bincount([index[g.tobytes()] for g in G], minlength=len(pts))
    expected = n / len(pts)
    chi2 = ((counts - expected) ** 2 / expected).sum()
    dof = len(pts) - 1
    assert counts.min() > 0
    assert chi2 < dof + 5 * math.sqrt(2 * dof)


def test_sparse_samples_sit_on_faces(space):
    rng = np.random.default_rng(4)
    G = space.sample_sparse_grid(5000, rng)
    at_low = G[:, 1:] == 0
    assert at_low.any(axis=1).all()            # every point has a switched-off component
    assert at_low.all(axis=1).mean() < 0.03    # at least one stays free (may draw 0)
    uniform_zeros = (space.sample_grid(5000, rng)[:, 1:] == 0).mean()
    assert at_low.mean() > uniform_zeros + 0.2


def test_candidates_are_uniform_then_sparse_draws_from_one_stream(space):
    G = space.sample_candidates_grid(7, np.random.default_rng(5))
    rng = np.random.default_rng(5)
    # the first 4 from the uniform sampler, the last 3 from the sparse one, in that order
    assert np.array_equal(G[:4], space.sample_grid(4, rng))
    assert np.array_equal(G[4:], space.sample_sparse_grid(3, rng))
    assert space.is_feasible_grid(G).all()
    assert space.sample_candidates_grid(1, rng).shape == (1, 10)


def test_latin_hypercube_is_stratified_and_feasible(space, small):
    rng = np.random.default_rng(5)
    G = space.latin_hypercube_grid(21, rng)
    assert space.is_feasible_grid(G).all()
    # the free catalyst dimension: 21 strata over 21 grid values, each exactly once
    assert sorted(G[:, 0].tolist()) == list(range(5, 26))
    G = space.latin_hypercube_grid(200, rng)
    assert space.is_feasible_grid(G).all()
    assert len(np.unique(G, axis=0)) >= 195
    # per-component upper bounds bind in the small space: rounding must respect them
    for seed in range(20):
        H = small.latin_hypercube_grid(37, np.random.default_rng(seed), n_tries=1)
        assert small.is_feasible_grid(H).all()
    assert np.array_equal(space.latin_hypercube_grid(16, np.random.default_rng(9)),
                          space.latin_hypercube_grid(16, np.random.default_rng(9)))


def test_latin_hypercube_totals_fill_the_range(space):
    G = space.latin_hypercube_grid(100, np.random.default_rng(6))
    totals = G[:, 1:].sum(axis=1)
    assert totals.max() == 20 and totals.min() <= 12


# ----------------------------------------------------------------------------- neighbours
def test_neighbours_are_single_moves(space):
    rng = np.random.default_rng(7)
    for g in np.vstack([space.sample_grid(100, rng), space.sample_sparse_grid(100, rng)]):
        nb = space.neighbours_grid(g)
        assert len(nb) > 0
        assert space.is_feasible_grid(nb).all()
        diff = nb - g
        l1 = np.abs(diff).sum(axis=1)
        assert set(l1.tolist()) <= {1, 2}
        two = diff[l1 == 2]
        assert (two[:, 0] == 0).all() and (two.sum(axis=1) == 0).all()   # transfers
        assert len(np.unique(nb, axis=0)) == len(nb)


def test_neighbours_of_a_full_vial(space):
    f = base_formulation(L_cysteine=0.5, NaOH=4.5)               # 5 mL, P10 at its top
    nb = space.neighbours(f)
    totals = nb[:, 1:].sum(axis=1)
    assert totals.max() == 5.0                          # no liquid can be added
    # P10 down; L-cysteine or NaOH down; 2 x 8 transfers from them + 1 between them
    assert len(nb) == 1 + 2 + 2 * 8
    assert all_feasible(space, nb)


# ----------------------------------------------------------------------------- find_optimum
def test_find_optimum_matches_enumeration_on_small_space(small):
    pts = small.enumerate_grid()
    A = small.from_grid(pts)

    def f(formulation):
        a, b, c, s = (formulation[k] for k in "abcs")
        return (math.sin(3 * a) + math.cos(2 * b - 1) + 0.5 * c * s
                - (a + b + c - 1.2) ** 2 + 0.3 * math.sin(7 * s))

    truth = max(f(dict(zip("abcs", row))) for row in A.tolist())
    x, v = find_optimum(f, small, np.random.default_rng(0), n_starts=4, n_samples=200)
    assert v == pytest.approx(truth)
    assert small.is_feasible(x)
    x2, v2 = find_optimum(f, small, np.random.default_rng(0), n_starts=4, n_samples=200)
    assert x2 == x and v2 == v


def test_find_optimum_on_a_concave_function(space):
    target = space.to_array(base_formulation(P10=3.0, NaOH=1.0, NaCl=2.0, PVP=0.5))

    class Quadratic:
        def __call__(self, formulation):
            return float(self.evaluate_array(space.to_array(formulation)[None, :])[0])

        def evaluate_array(self, X, names=None):
            return -((np.atleast_2d(X) - target) ** 2).sum(axis=1)

    x, v = find_optimum(Quadratic(), space, np.random.default_rng(1), n_starts=3,
                        n_samples=500)
    assert v == 0.0
    assert np.array_equal(space.to_array(x), target)
