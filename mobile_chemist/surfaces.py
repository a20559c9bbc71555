"""Response surfaces for benchmarking the planner, the project's own and randomised ones.

Why random surfaces
-------------------
The planner (Bayesian optimiser) must not be tuned to :mod:`mobile_chemist.response`, the
one surface the project simulates.  The benchmark therefore also runs it on surfaces it has
never seen, drawn from a seeded family over the same kind of formulation space (amounts of
components, each with bounds), and reports how well it generalises.

The family
----------
Each amount ``x_j`` is scaled to ``u_j = (x_j - low_j) / (high_j - low_j)`` (0..1 on the
bounds).  A surface drawn with seed ``s`` is, with every parameter drawn from
``numpy.random.default_rng(s)``:

``f(u) = b0 * exp(a . u + c * u_p * u_q) + sum_k h_k * K_k(u)``

* *Effective dimensionality*: only a random subset of the components is relevant (between
  a third and all of them); the others have no effect at all, so surfaces differ in how
  many dimensions matter, and an optimiser that wastes effort on irrelevant dimensions is
  penalised.
* *Trend*: a positive log-linear background with one pairwise interaction on relevant
  dimensions (``b0`` in 0.5..1.5, ``a_j ~ N(0, 0.4)``, ``c ~ N(0, 0.4)``): a smooth,
  low-order, everywhere-positive baseline like the bulk effect of a stock solution.
* *Bumps*: 2 to 5 anisotropic bumps, each on 2 to 4 of the relevant dimensions (constant
  along the others), with a Gaussian or Matern-5/2 profile, per-dimension length scales
  0.06..0.25 (in ``u``), and heights: the first ``H`` (4 to 10 times ``b0``), the others
  0.3..0.85 of ``H``.  Their centres are "feasible-ish": on the active dimensions they are
  a Dirichlet split of a total of 0.4..0.95, so their ``u`` sum to less than 1 and a
  formulation at the centre (other components at their lower bound) respects a
  shared-capacity constraint such as the 5 mL vial volume.  Several bumps make the surface
  multi-modal; the global optimum usually lies at or near the tallest bump (overlaps and
  the trend can shift it), and only a search that trades exploration against
  exploitation finds it reliably.

Every surface is positive everywhere (exponential trend plus non-negative bumps), smooth
(at least twice differentiable), deterministic per seed, and cheap: vectorised over an
(n, d) array.

API
---
* :func:`random_surface` ``(seed, components) -> RandomSurface``: components are
  ``(name, low, high)`` tuples; the result is callable on a mapping name -> amount
  (missing components count as 0), has ``evaluate_array(X, names=None)`` for an (n, d)
  array, and ``name == __name__ == "random_surface_<seed>"``.
* :func:`get_surface` ``(name, components=None)``: ``"hydrogen"`` (the project's response,
  :class:`HydrogenSurface`), ``"random:<seed>"`` or ``"random_surface_<seed>"``.
* :data:`SURFACES`: registry of the named (non-random) surfaces, name -> factory.
"""

from __future__ import annotations

import math
import re
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from mobile_chemist import response

Component = tuple[str, float, float]

#: The campaign's components (mirrors ``config/campaign.yaml``): the default space.
DEFAULT_COMPONENTS: tuple[Component, ...] = (("P10", 1.0, 5.0),) + tuple(
    (name, 0.0, 5.0) for name in response.LIQUIDS
)


def _normalise_components(components: Sequence[Sequence]) -> tuple[Component, ...]:
    out = []
    seen = set()
    for item in components:
        try:
            name, low, high = item
        except (TypeError, ValueError) as exc:
            raise ValueError(f"component must be (name, low, high), got {item!r}") from exc
        name = str(name)
        low, high = float(low), float(high)
        if name in seen:
            raise ValueError(f"duplicate component {name!r}")
        if not (math.isfinite(low) and math.isfinite(high)) or high < low:
            raise ValueError(f"component {name!r}: need finite low <= high, got {low}, {high}")
        seen.add(name)
        out.append((name, low, high))
    if not out:
        raise ValueError("at least one component is needed")
    return tuple(out)


def _to_matrix(
    X: np.ndarray, names: Optional[Sequence[str]], order: Sequence[str]
) -> np.ndarray:
    """(n, len(order)) matrix of amounts; columns named by `names` (default `order`)."""
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2:
        raise ValueError(f"expected an (n, d) array of amounts, got shape {X.shape}")
    names = list(order) if names is None else [str(n) for n in names]
    if X.shape[1] != len(names):
        raise ValueError(f"array has {X.shape[1]} columns but {len(names)} names were given")
    index = {n: i for i, n in enumerate(order)}
    unknown = [n for n in names if n not in index]
    if unknown:
        raise ValueError(f"unknown component(s) {unknown}; known components: {list(order)}")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate component names in {names}")
    if not np.isfinite(X).all():
        bad = sorted({names[j] for j in np.argwhere(~np.isfinite(X))[:, 1]})
        raise ValueError(f"amount is NaN or infinite for component(s) {bad}")
    if (X < 0).any():
        bad = sorted({names[j] for j in np.argwhere(X < 0)[:, 1]})
        raise ValueError(f"negative amount for component(s) {bad}; amounts must be >= 0")
    full = np.zeros((X.shape[0], len(order)))
    for j, n in enumerate(names):
        full[:, index[n]] = X[:, j]
    return full


def _mapping_to_row(formulation: Mapping[str, float]) -> tuple[list[str], np.ndarray]:
    if not isinstance(formulation, Mapping):
        raise ValueError(
            f"formulation must be a mapping of component name to amount, got "
            f"{type(formulation).__name__}"
        )
    names = [str(n) for n in formulation.keys()]
    try:
        row = np.array([[float(formulation[n]) for n in formulation.keys()]])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"amounts must be numbers: {dict(formulation)!r}") from exc
    return names, row.reshape(1, len(names))


class RandomSurface:
    """One member of the seeded random family (see the module docstring).

    Call it on a mapping name -> amount (missing components count as 0), or use
    :meth:`evaluate_array` on an (n, d) array.  Attributes: ``name``/``__name__``
    (``random_surface_<seed>``), ``seed``, ``components``, ``relevant`` (names of the
    components that matter) and ``bump_centres`` (amounts at each bump's centre, the
    irrelevant and inactive components at their lower bound).
    """

    def __init__(self, seed: int, components: Sequence[Sequence]):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.seed = int(seed)
        self.components = _normalise_components(components)
        self.names = tuple(c[0] for c in self.components)
        self.name = f"random_surface_{self.seed}"
        self.__name__ = self.name
        d = len(self.components)
        self._low = np.array([c[1] for c in self.components])
        span = np.array([c[2] - c[1] for c in self.components])
        self._span = np.where(span > 0, span, 1.0)

        rng = np.random.default_rng(self.seed)
        n_rel = int(rng.integers(max(1, math.ceil(d / 3)), d + 1))
        rel = np.sort(rng.choice(d, size=n_rel, replace=False))
        self._relevant = rel
        self.relevant = tuple(self.names[j] for j in rel)

        # trend: b0 * exp(a . u + c u_p u_q) on relevant dimensions
        self._b0 = float(rng.uniform(0.5, 1.5))
        self._a = np.zeros(d)
        self._a[rel] = rng.normal(0.0, 0.4, size=n_rel)
        if n_rel >= 2:
            p, q = rng.choice(rel, size=2, replace=False)
            self._pq = (int(p), int(q))
            self._c = float(rng.normal(0.0, 0.4))
        else:
            self._pq = (int(rel[0]), int(rel[0]))
            self._c = 0.0

        # bumps
        n_bumps = int(rng.integers(2, 6))
        top = self._b0 * float(rng.uniform(4.0, 10.0))
        self._bumps = []
        for k in range(n_bumps):
            n_act = int(rng.integers(min(2, n_rel), min(4, n_rel) + 1))
            act = np.sort(rng.choice(rel, size=n_act, replace=False))
            total = rng.uniform(0.4, 0.95)
            centre = rng.dirichlet(np.ones(n_act + 1))[:n_act] * total
            length = np.exp(rng.uniform(math.log(0.06), math.log(0.25), size=n_act))
            kernel = "gauss" if rng.random() < 0.5 else "matern52"
            height = top if k == 0 else top * float(rng.uniform(0.3, 0.85))
            self._bumps.append((act, centre, length, kernel, height))
        centres = []
        for act, centre, _, _, _ in self._bumps:
            x = self._low.copy()
            x[act] = self._low[act] + centre * self._span[act]
            centres.append(dict(zip(self.names, x.tolist())))
        self.bump_centres = tuple(centres)

    def __repr__(self) -> str:
        return (
            f"RandomSurface(seed={self.seed}, d={len(self.names)}, "
            f"relevant={len(self.relevant)})"
        )

    def evaluate_array(self, X: np.ndarray, names: Optional[Sequence[str]] = None) -> np.ndarray:
        """Values for an (n, d) array of amounts (columns: `names`, default the components
        in order; unnamed components count as 0).  Raises ValueError on unknown names,
        NaN/inf or negative amounts."""
        A = _to_matrix(X, names, self.names)
        U = (A - self._low) / self._span
        p, q = self._pq
        value = self._b0 * np.exp(U @ self._a + self._c * U[:, p] * U[:, q])
        for act, centre, length, kernel, height in self._bumps:
            r = np.sqrt((((U[:, act] - centre) / length) ** 2).sum(axis=1))
            if kernel == "gauss":
                k = np.exp(-0.5 * r * r)
            else:
                s = math.sqrt(5.0) * r
                k = (1.0 + s + s * s / 3.0) * np.exp(-s)
            value = value + height * k
        return value

    array = evaluate_array

    def __call__(self, formulation: Mapping[str, float]) -> float:
        names, row = _mapping_to_row(formulation)
        return float(self.evaluate_array(row, names)[0])


class HydrogenSurface:
    """The project's response (:func:`mobile_chemist.response.hydrogen_evolution_rate`)
    with the surface interface: callable on a mapping, ``evaluate_array`` on arrays whose
    columns default to ``components`` (all of ``response.COMPONENTS`` by default)."""

    name = "hydrogen"
    __name__ = "hydrogen"

    def __init__(self, components: Optional[Sequence[Sequence]] = None):
        if components is None:
            components = DEFAULT_COMPONENTS
        self.components = _normalise_components(components)
        self.names = tuple(c[0] for c in self.components)
        unknown = [n for n in self.names if n not in response.COMPONENTS]
        if unknown:
            raise ValueError(
                f"the hydrogen response knows no component(s) {unknown}; "
                f"known: {list(response.COMPONENTS)}"
            )

    def __repr__(self) -> str:
        return "HydrogenSurface()"

    def evaluate_array(self, X: np.ndarray, names: Optional[Sequence[str]] = None) -> np.ndarray:
        """Rates (umol/h) for an (n, d) array; columns `names`, default the components."""
        return response.hydrogen_evolution_rate_array(
            X, self.names if names is None else names
        )

    array = evaluate_array

    def __call__(self, formulation: Mapping[str, float]) -> float:
        return response.hydrogen_evolution_rate(formulation)


def random_surface(seed: int, components: Sequence[Sequence]) -> RandomSurface:
    """The random surface number `seed` over `components` ((name, low, high) tuples).

    Deterministic per (seed, components); see the module docstring for the family.
    """
    return RandomSurface(seed, components)


def random_surface_array(
    seed: int, components: Sequence[Sequence], X: np.ndarray, names: Optional[Sequence[str]] = None
) -> np.ndarray:
    """Vectorised form: values of ``random_surface(seed, components)`` on an (n, d) array."""
    return RandomSurface(seed, components).evaluate_array(X, names)


#: Named surfaces: name -> factory(components or None).  Random ones: see get_surface.
SURFACES: dict[str, Callable[..., object]] = {"hydrogen": HydrogenSurface}

_RANDOM = re.compile(r"^(?:random:|random_surface_)(\d+)$")


def get_surface(name: str, components: Optional[Sequence[Sequence]] = None):
    """A surface by name: ``"hydrogen"`` or ``"random:<seed>"`` / ``"random_surface_<seed>"``.

    `components` ((name, low, high) tuples) defaults to the campaign's
    (:data:`DEFAULT_COMPONENTS`).  Raises ValueError for an unknown name.
    """
    if components is None:
        components = DEFAULT_COMPONENTS
    if name in SURFACES:
        return SURFACES[name](components)
    match = _RANDOM.match(str(name).strip())
    if match:
        return RandomSurface(int(match.group(1)), components)
    raise ValueError(
        f"unknown surface {name!r}; use one of {sorted(SURFACES)} or 'random:<seed>'"
    )


__all__ = [
    "DEFAULT_COMPONENTS",
    "HydrogenSurface",
    "RandomSurface",
    "SURFACES",
    "get_surface",
    "random_surface",
    "random_surface_array",
]
