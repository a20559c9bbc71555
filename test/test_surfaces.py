"""Tests of the benchmark response surfaces (mobile_chemist.surfaces)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from mobile_chemist import response
from mobile_chemist.surfaces import (
    DEFAULT_COMPONENTS,
    SURFACES,
    HydrogenSurface,
    RandomSurface,
    get_surface,
    random_surface,
    random_surface_array,
)

CAMPAIGN = Path(__file__).resolve().parents[1] / "config" / "campaign.yaml"
NAMES = [c[0] for c in DEFAULT_COMPONENTS]
SEEDS = range(12)


def feasible_points(n: int, seed: int = 0) -> np.ndarray:
    """Random points of the campaign space: P10 in [1, 5], liquids summing to <= 5 mL."""
    rng = np.random.default_rng(seed)
    X = np.zeros((n, len(NAMES)))
    X[:, 0] = rng.uniform(1.0, 5.0, n)
    X[:, 1:] = rng.dirichlet(np.ones(len(NAMES)), n)[:, :-1] * 5.0  # last share: slack
    return X


def test_default_components_mirror_campaign_config():
    cfg = yaml.safe_load(CAMPAIGN.read_text())["campaign"]
    expected = tuple((c["name"], c["low"], c["high"]) for c in cfg["components"])
    assert DEFAULT_COMPONENTS == expected


def test_deterministic_per_seed():
    X = feasible_points(200)
    for seed in SEEDS:
        a = random_surface(seed, DEFAULT_COMPONENTS)
        b = random_surface(seed, list(DEFAULT_COMPONENTS))
        np.testing.assert_array_equal(a.evaluate_array(X), b.evaluate_array(X))
        assert a.relevant == b.relevant


def test_different_seeds_differ():
    X = feasible_points(200)
    values = [random_surface(s, DEFAULT_COMPONENTS).evaluate_array(X) for s in SEEDS]
    for i in range(len(values)):
        for j in range(i + 1, len(values)):
            assert not np.allclose(values[i], values[j], rtol=1e-3), (i, j)
    # and they differ in effective dimensionality
    dims = {len(random_surface(s, DEFAULT_COMPONENTS).relevant) for s in range(40)}
    assert len(dims) >= 3 and min(dims) < len(NAMES)


def test_positive_everywhere_including_the_box_corners():
    rng = np.random.default_rng(5)
    X = np.vstack([feasible_points(500), rng.uniform(0.0, 10.0, (500, len(NAMES)))])
    for seed in SEEDS:
        v = random_surface(seed, DEFAULT_COMPONENTS).evaluate_array(X)
        assert np.all(np.isfinite(v)) and np.all(v > 0)


def test_vectorised_equals_scalar():
    X = feasible_points(50, seed=2)
    for seed in (0, 7, 11):
        s = random_surface(seed, DEFAULT_COMPONENTS)
        vec = s.evaluate_array(X)
        assert s.array is not None
        for row, v in zip(X, vec):
            assert s(dict(zip(NAMES, row))) == pytest.approx(v, rel=1e-12)
        np.testing.assert_allclose(random_surface_array(seed, DEFAULT_COMPONENTS, X), vec)
        np.testing.assert_allclose(s.evaluate_array(X[:, ::-1], NAMES[::-1]), vec, rtol=1e-12)
        # missing components count as 0
        assert s({"P10": 3.0}) == pytest.approx(
            s.evaluate_array(np.array([[3.0] + [0.0] * (len(NAMES) - 1)]))[0]
        )


def test_best_random_point_is_clearly_above_the_median():
    X = feasible_points(2000, seed=1)
    for seed in range(20):
        v = random_surface(seed, DEFAULT_COMPONENTS).evaluate_array(X)
        assert v.max() > 1.4 * np.median(v), seed


def test_multimodal_bumps_at_feasible_ish_centres():
    for seed in SEEDS:
        s = random_surface(seed, DEFAULT_COMPONENTS)
        assert len(s.bump_centres) >= 2
        for centre in s.bump_centres:
            liquid = sum(v for k, v in centre.items() if k != "P10")
            assert liquid <= 5.0 + 1e-9
        # irrelevant components have no effect at all
        irrelevant = [n for n in NAMES if n not in s.relevant]
        X = feasible_points(20, seed=seed)
        base = s.evaluate_array(X)
        for name in irrelevant:
            Y = X.copy()
            Y[:, NAMES.index(name)] += 0.5
            np.testing.assert_allclose(s.evaluate_array(Y), base, rtol=1e-12)


def test_smooth():
    X = feasible_points(100, seed=3) + 0.01
    s = random_surface(4, DEFAULT_COMPONENTS)
    for j in range(len(NAMES)):
        grads = []
        for h in (1e-4, 1e-5):
            E = np.zeros_like(X)
            E[:, j] = h
            grads.append((s.evaluate_array(X + E) - s.evaluate_array(X - E)) / (2 * h))
        np.testing.assert_allclose(grads[0], grads[1], rtol=1e-3, atol=1e-5)


def test_names():
    s = random_surface(7, DEFAULT_COMPONENTS)
    assert s.name == s.__name__ == "random_surface_7"
    assert isinstance(get_surface("random:7"), RandomSurface)
    assert get_surface("random:7").name == "random_surface_7"
    assert get_surface("random_surface_7", DEFAULT_COMPONENTS).name == "random_surface_7"


def test_get_surface_hydrogen_is_the_project_response():
    assert "hydrogen" in SURFACES
    h = get_surface("hydrogen")
    assert isinstance(h, HydrogenSurface) and h.name == "hydrogen"
    assert h(response.BASELINE) == response.hydrogen_evolution_rate(response.BASELINE)
    X = feasible_points(20)
    np.testing.assert_allclose(h.evaluate_array(X), response.hydrogen_evolution_rate_array(X))
    with pytest.raises(ValueError):
        get_surface("hydrogen", [("glucose", 0.0, 1.0)])


def test_other_component_spaces():
    comps = [("a", 0.0, 1.0), ("b", 10.0, 20.0), ("c", 0.0, 0.0)]
    s = random_surface(3, comps)
    X = np.array([[0.5, 15.0, 0.0], [0.1, 12.0, 0.0]])
    v = s.evaluate_array(X)
    assert v.shape == (2,) and np.all(v > 0)
    assert s({"a": 0.5, "b": 15.0}) == pytest.approx(v[0])


@pytest.mark.parametrize(
    "call",
    [
        lambda: get_surface("nonsense"),
        lambda: get_surface("random:abc"),
        lambda: random_surface("7", DEFAULT_COMPONENTS),
        lambda: random_surface(1, []),
        lambda: random_surface(1, [("a", 1.0, 0.0)]),
        lambda: random_surface(1, [("a", 0.0, 1.0), ("a", 0.0, 1.0)]),
        lambda: random_surface(1, DEFAULT_COMPONENTS)({"water": 1.0}),
        lambda: random_surface(1, DEFAULT_COMPONENTS)({"P10": float("nan")}),
        lambda: random_surface(1, DEFAULT_COMPONENTS)({"P10": -1.0}),
        lambda: random_surface(1, DEFAULT_COMPONENTS).evaluate_array(np.zeros((2, 3))),
    ],
)
def test_invalid_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()
