"""Tests of the simulated hydrogen-evolution response (mobile_chemist.response)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from mobile_chemist import response as R
from mobile_chemist.response import (
    BASELINE,
    COMPONENTS,
    OPTIMUM_REFERENCE,
    hydrogen_evolution_rate,
    hydrogen_evolution_rate_array,
    response_factors,
)

CAMPAIGN = Path(__file__).resolve().parents[1] / "config" / "campaign.yaml"

# The feasible grid of config/campaign.yaml in integer steps: P10 = 1 + 0.2 k (k = 0..20),
# liquid i = 0.25 n_i (n_i = 0..20), sum(n_i) <= 20 (5 mL).
P10_STEPS, LIQ_STEPS, LIQ_CAP = 20, 20, 20


def to_amounts(Z: np.ndarray) -> np.ndarray:
    Z = np.atleast_2d(Z)
    A = np.empty(Z.shape, dtype=float)
    A[:, 0] = 1.0 + 0.2 * Z[:, 0]
    A[:, 1:] = 0.25 * Z[:, 1:]
    return A


def from_formulation(f: dict) -> np.ndarray:
    z = np.zeros(len(COMPONENTS), dtype=int)
    for name, value in f.items():
        i = COMPONENTS.index(name)
        z[i] = round((value - 1.0) / 0.2) if i == 0 else round(value / 0.25)
    return z


def grid_rate(Z: np.ndarray) -> np.ndarray:
    return hydrogen_evolution_rate_array(to_amounts(Z))


def feasible(Z: np.ndarray) -> np.ndarray:
    return (
        (Z >= 0).all(axis=1)
        & (Z[:, 0] <= P10_STEPS)
        & (Z[:, 1:] <= LIQ_STEPS).all(axis=1)
        & (Z[:, 1:].sum(axis=1) <= LIQ_CAP)
    )


def neighbours(z: np.ndarray) -> np.ndarray:
    """Feasible grid neighbours: one component +-1 step, or 1 step moved between liquids."""
    d = len(z)
    moves = []
    for i in range(d):
        for s in (-1, 1):
            m = np.zeros(d, dtype=int)
            m[i] = s
            moves.append(m)
    for i in range(1, d):
        for j in range(1, d):
            if i != j:
                m = np.zeros(d, dtype=int)
                m[i], m[j] = 1, -1
                moves.append(m)
    N = z[None, :] + np.array(moves)
    return N[feasible(N)]


def hill_climb(z: np.ndarray) -> tuple[np.ndarray, float]:
    """Steepest-ascent hill climbing on the grid to a local optimum."""
    z = np.array(z, dtype=int)
    fz = float(grid_rate(z)[0])
    while True:
        N = neighbours(z)
        fn = grid_rate(N)
        k = int(np.argmax(fn))
        if fn[k] <= fz * (1.0 + 1e-12):
            return z, fz
        z, fz = N[k], float(fn[k])


def random_feasible(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random feasible grid points: random total volume split over a random subset."""
    Z = np.zeros((n, len(COMPONENTS)), dtype=int)
    Z[:, 0] = rng.integers(0, P10_STEPS + 1, n)
    for r in range(n):
        k = int(rng.integers(1, len(COMPONENTS)))
        idx = rng.choice(np.arange(1, len(COMPONENTS)), k, replace=False)
        total = int(rng.integers(0, LIQ_CAP + 1))
        Z[r, idx] = np.floor(rng.dirichlet(np.ones(k)) * total).astype(int)
    assert feasible(Z).all()
    return Z


@pytest.fixture(scope="module")
def baseline() -> float:
    return hydrogen_evolution_rate(BASELINE)


@pytest.fixture(scope="module")
def global_search():
    """Multi-start search: 20000 random feasible points, hill climbs from the best 40."""
    rng = np.random.default_rng(0)
    Z = random_feasible(rng, 20000)
    fz = grid_rate(Z)
    optima = {}
    for z in Z[np.argsort(-fz)[:40]]:
        zo, fo = hill_climb(z)
        optima[tuple(zo)] = fo
    best = max(optima, key=optima.get)
    return np.array(best), optima[best], optima


# ------------------------------------------------------------------ configuration agreement
def test_components_and_baseline_match_campaign_config():
    cfg = yaml.safe_load(CAMPAIGN.read_text())["campaign"]
    assert tuple(c["name"] for c in cfg["components"]) == COMPONENTS
    assert cfg["controls"]["formulation"] == BASELINE
    liquids = [c["name"] for c in cfg["components"] if c["kind"] == "liquid"]
    assert tuple(liquids) == R.LIQUIDS
    (constraint,) = cfg["constraints"]
    assert set(constraint["components"]) == set(R.LIQUIDS) and constraint["max"] == 5.0


# ------------------------------------------------------------------ calibration
def test_baseline_is_3_to_4_umol_per_h(baseline):
    assert 3.0 <= baseline <= 4.0


def test_global_optimum_is_5_to_8_times_baseline(baseline, global_search):
    z, value, _ = global_search
    ratio = value / baseline
    assert 5.0 <= ratio <= 8.0, ratio
    # the search finds the documented reference optimum
    ref = hydrogen_evolution_rate(OPTIMUM_REFERENCE)
    assert value == pytest.approx(ref, rel=1e-9)
    amounts = dict(zip(COMPONENTS, to_amounts(z)[0]))
    for name, v in OPTIMUM_REFERENCE.items():
        assert amounts[name] == pytest.approx(v)


def test_reference_optimum_beats_every_grid_vial_of_its_subspace():
    """Enumerate every grid vial with 5 mg P10, no dye, six liquids (230230 vials)."""
    n = 6
    comps = np.zeros((1, 0), dtype=int)  # all compositions of <= LIQ_CAP steps, built up
    for _ in range(n):
        new = []
        for k in range(LIQ_CAP + 1):
            ok = comps.sum(axis=1) + k <= LIQ_CAP
            new.append(np.hstack([comps[ok], np.full((ok.sum(), 1), k)]))
        comps = np.vstack(new)
    assert len(comps) == math.comb(LIQ_CAP + n, n)
    X = np.zeros((len(comps), len(COMPONENTS)))
    X[:, 0] = 5.0
    X[:, 1 : 1 + n] = 0.25 * comps
    values = hydrogen_evolution_rate_array(X)
    assert values.max() == pytest.approx(hydrogen_evolution_rate(OPTIMUM_REFERENCE), rel=1e-12)


def test_optimum_is_interior_and_uses_the_papers_components(global_search):
    z, _, _ = global_search
    a = dict(zip(COMPONENTS, to_amounts(z)[0]))
    for name in ("L_cysteine", "NaOH", "NaCl", "sodium_silicate", "PVP"):
        assert 0.0 < a[name] < 5.0, (name, a[name])
    for name in ("SDS", "rhodamine_B", "acid_red_87", "methylene_blue"):
        assert a[name] == 0.0
    assert sum(a[n] for n in R.LIQUIDS) <= 5.0 + 1e-12


def test_optimum_is_not_found_by_naive_search(global_search, baseline):
    _, best, _ = global_search
    # no vertex of the feasible set (one liquid at 5 mL or none, P10 at a bound) comes close
    vertices = []
    for p10 in (1.0, 5.0):
        vertices.append({"P10": p10})
        for name in R.LIQUIDS:
            vertices.append({"P10": p10, name: 5.0})
    assert max(hydrogen_evolution_rate(v) for v in vertices) < 0.5 * best
    # nor does the best of a campaign's worth (688) of random feasible vials
    rng = np.random.default_rng(1)
    assert grid_rate(random_feasible(rng, 688)).max() < 0.9 * best


# ------------------------------------------------------------------ multi-modality
def test_two_hill_climbs_reach_distinct_local_optima(baseline):
    start_ph = from_formulation({"P10": 5.0, "L_cysteine": 2.0, "NaOH": 1.0})
    start_silicate = from_formulation(
        {"P10": 5.0, "L_cysteine": 2.0, "NaCl": 1.0, "sodium_silicate": 1.5}
    )
    za, fa = hill_climb(start_ph)
    zb, fb = hill_climb(start_silicate)
    a = dict(zip(COMPONENTS, to_amounts(za)[0]))
    b = dict(zip(COMPONENTS, to_amounts(zb)[0]))
    # both are local optima: no neighbour improves
    assert grid_rate(neighbours(za)).max() <= fa
    assert grid_rate(neighbours(zb)).max() <= fb
    # clearly different compositions: pH route vs silicate route
    assert a["NaOH"] >= 0.75 and b["NaOH"] == 0.0
    assert b["sodium_silicate"] >= 0.75 and a["sodium_silicate"] <= 0.5
    assert np.abs(to_amounts(za) - to_amounts(zb)).sum() >= 2.0
    # the silicate route is a genuine, lower mode
    assert 3.0 * baseline < fb < 0.85 * fa
    # the pH route's climb ends at (or, on the grid, within 2 % of) the global optimum
    assert fa >= 0.98 * hydrogen_evolution_rate(OPTIMUM_REFERENCE)


def test_route_factors_separate_the_modes():
    X = np.array(
        [
            [OPTIMUM_REFERENCE.get(n, 0.0) for n in COMPONENTS],
            [5.0, 2.25, 0.0, 1.25, 1.25, 0.25, 0, 0, 0, 0],
        ]
    )
    f = response_factors(X)
    assert f["route_a"][0] > 1.5 and f["route_b"][0] < 0.05
    assert f["route_b"][1] > 1.0 and f["route_a"][1] == 0.0


# ------------------------------------------------------------------ chemistry
GOOD = {"P10": 5.0, "L_cysteine": 1.0, "NaOH": 0.75, "NaCl": 0.5, "sodium_silicate": 0.25,
        "PVP": 0.25}  # 3 mL of liquid: room to add up to 2 mL


@pytest.mark.parametrize("harmful", ["SDS", "rhodamine_B", "acid_red_87", "methylene_blue"])
def test_sds_and_dyes_harm_monotonically(harmful):
    for start in (GOOD, OPTIMUM_REFERENCE):
        room = 5.0 - sum(v for k, v in start.items() if k != "P10")
        amounts = np.arange(0.0, room + 1e-9, 0.25)
        rates = [hydrogen_evolution_rate({**start, harmful: x}) for x in amounts]
        assert len(rates) >= 3
        assert all(b < a for a, b in zip(rates, rates[1:])), (harmful, rates)


def test_methylene_blue_is_the_worst_dye():
    rates = {d: hydrogen_evolution_rate({**GOOD, d: 0.5})
             for d in ("rhodamine_B", "acid_red_87", "methylene_blue")}
    assert rates["methylene_blue"] < min(rates["rhodamine_B"], rates["acid_red_87"])


def test_cysteine_is_strongly_positive_and_saturating(baseline):
    base = {"P10": 5.0, "PVP": 0.25, "NaCl": 0.75}
    x = np.arange(0.0, 4.01, 0.25)
    rates = np.array([hydrogen_evolution_rate({**base, "L_cysteine": v}) for v in x])
    assert rates[0] < 0.05 * baseline  # no hole scavenger: almost no hydrogen
    assert rates[2] - rates[0] > 2.5  # the first 0.5 mL gains a lot
    assert (rates[4] - rates[2]) < 0.7 * (rates[2] - rates[0])  # diminishing returns
    assert rates[16] < 1.1 * rates[8]  # doubling 2 -> 4 mL gains < 10 %
    # the factor itself is Michaelis-Menten in the vial concentration
    c = np.linspace(0.0, 100.0, 201)
    X = np.zeros((len(c), 3))
    X[:, 0] = 5.0
    X[:, 1] = c / 100.0  # mL of 100 g/L stock in ...
    X[:, 2] = 1.0 - c / 100.0  # ... 1 mL total, the rest NaCl
    s = response_factors(X, ["P10", "L_cysteine", "NaCl"])["scavenger"]
    assert np.all(np.diff(s) > 0) and np.all(np.diff(s, 2) < 0)


def test_naoh_has_an_interior_optimum_and_too_much_harms():
    for cys in (0.5, 1.0, 2.0):
        x = np.arange(0.0, 5.0 - cys + 1e-9, 0.25)
        rates = np.array([hydrogen_evolution_rate({"P10": 5.0, "L_cysteine": cys, "NaOH": v})
                          for v in x])
        k = int(np.argmax(rates))
        assert 0 < k < len(x) - 1, (cys, rates)
        assert rates[-1] < rates[0]
    # at the optimum, NaOH is at its best amount along its feasible line
    room = 5.0 - sum(v for k, v in OPTIMUM_REFERENCE.items() if k not in ("P10", "NaOH"))
    x = np.arange(0.0, room + 1e-9, 0.25)
    rates = [hydrogen_evolution_rate({**OPTIMUM_REFERENCE, "NaOH": v}) for v in x]
    assert x[int(np.argmax(rates))] == OPTIMUM_REFERENCE["NaOH"]


def test_nacl_has_a_modest_interior_optimum():
    start = {k: v for k, v in OPTIMUM_REFERENCE.items() if k != "NaCl"}
    room = 5.0 - sum(v for k, v in start.items() if k != "P10")
    x = np.arange(0.0, room + 1e-9, 0.25)
    rates = np.array([hydrogen_evolution_rate({**start, "NaCl": v}) for v in x])
    k = int(np.argmax(rates))
    assert 0 < k < len(x) - 1
    assert rates[k] < 1.5 * rates[0]  # modest


def test_pvp_and_silicate_help_in_small_amounts():
    for name in ("PVP", "sodium_silicate"):
        start = {k: v for k, v in OPTIMUM_REFERENCE.items() if k != name}
        without = hydrogen_evolution_rate(start)
        with_small = hydrogen_evolution_rate({**start, name: 0.25})
        assert 1.0 < with_small / without < 1.4


def test_catalyst_loading_helps_with_diminishing_returns():
    m = np.arange(1.0, 5.01, 0.2)
    rates = np.array([hydrogen_evolution_rate({**OPTIMUM_REFERENCE, "P10": v}) for v in m])
    gains = np.diff(rates)
    assert np.all(gains > 0) and np.all(np.diff(gains) < 0)
    assert hydrogen_evolution_rate({"L_cysteine": 0.5}) == 0.0


def test_dry_vial_gives_no_hydrogen():
    assert hydrogen_evolution_rate({"P10": 5.0}) == 0.0
    assert hydrogen_evolution_rate({}) == 0.0
    # continuous as the liquid vanishes
    assert hydrogen_evolution_rate({"P10": 5.0, "L_cysteine": 1e-6}) < 1e-4
    assert hydrogen_evolution_rate({"P10": 5.0, "L_cysteine": 1e-3, "NaOH": 1e-3}) < 0.1


# ------------------------------------------------------------------ smoothness, API
def test_smooth_finite_differences_are_bounded_and_consistent():
    rng = np.random.default_rng(3)
    Z = random_feasible(rng, 300)
    X = to_amounts(Z)
    X = X[X[:, 1:].sum(axis=1) >= 0.5]
    X = X + rng.uniform(0.001, 0.05, X.shape)  # off the grid, away from exact zeros
    f0 = hydrogen_evolution_rate_array(X)
    for j in range(len(COMPONENTS)):
        grads = []
        for h in (1e-4, 1e-5):
            E = np.zeros_like(X)
            E[:, j] = h
            grads.append((hydrogen_evolution_rate_array(X + E)
                          - hydrogen_evolution_rate_array(X - E)) / (2 * h))
        assert np.all(np.isfinite(grads[0]))
        assert np.abs(grads[0]).max() < 100.0  # umol/h per mg or mL
        np.testing.assert_allclose(grads[0], grads[1], rtol=1e-3, atol=1e-4)
    assert np.all(f0 >= 0)


def test_scalar_equals_vectorised():
    rng = np.random.default_rng(4)
    X = to_amounts(random_feasible(rng, 200))
    vec = hydrogen_evolution_rate_array(X)
    for row, v in zip(X, vec):
        assert hydrogen_evolution_rate(dict(zip(COMPONENTS, row))) == pytest.approx(v, rel=1e-12)
    # named, permuted columns; missing components count as 0
    perm = list(reversed(COMPONENTS))
    np.testing.assert_allclose(hydrogen_evolution_rate_array(X[:, ::-1], perm), vec, rtol=1e-12)
    sub = hydrogen_evolution_rate_array(np.array([[5.0, 0.5]]), ["P10", "L_cysteine"])
    assert sub[0] == pytest.approx(hydrogen_evolution_rate(BASELINE))
    one = hydrogen_evolution_rate_array(X[0])
    assert one.shape == (1,) and one[0] == pytest.approx(vec[0])
    f = response_factors(X)
    prod = R.R0 * np.prod([f[k] for k in R._PRODUCT], axis=0)
    np.testing.assert_allclose(prod, vec, rtol=1e-12)


@pytest.mark.parametrize(
    "formulation, fragment",
    [
        ({"P10": 5.0, "water": 1.0}, "water"),
        ({"P10": 5.0, "NaOH": -0.25}, "NaOH"),
        ({"P10": float("nan"), "L_cysteine": 0.5}, "P10"),
        ({"P10": 5.0, "NaCl": float("inf")}, "NaCl"),
        ({"P10": "five"}, "number"),
    ],
)
def test_invalid_formulations_raise_value_error(formulation, fragment):
    with pytest.raises(ValueError, match=fragment):
        hydrogen_evolution_rate(formulation)


def test_invalid_arrays_raise_value_error():
    with pytest.raises(ValueError, match="columns"):
        hydrogen_evolution_rate_array(np.zeros((2, 3)), ["P10", "NaOH"])
    with pytest.raises(ValueError, match="duplicate"):
        hydrogen_evolution_rate_array(np.zeros((2, 2)), ["P10", "P10"])
    with pytest.raises(ValueError, match="unknown"):
        hydrogen_evolution_rate_array(np.zeros((2, 1)), ["glucose"])
    with pytest.raises(ValueError, match="negative"):
        hydrogen_evolution_rate_array(-np.ones((1, len(COMPONENTS))))
    with pytest.raises(ValueError, match="mapping"):
        hydrogen_evolution_rate([("P10", 5.0)])


def test_documentation_describes_factors_and_modes():
    doc = R.__doc__
    for word in ("pH route", "silicate route", "hole scavenger", "Burger", "methylene blue",
                 "SDS", "PVP", "NaCl", "light"):
        assert word in doc, word
    assert "ValueError" in hydrogen_evolution_rate.__doc__
    assert math.isfinite(hydrogen_evolution_rate(OPTIMUM_REFERENCE))
