"""The formulation search space: components on dispensing grids under capacity constraints.

A *formulation* is a ``dict[str, float]``: component name -> amount in the component's unit
(``config/campaign.yaml``, section ``campaign.components``).  Every amount must lie on the
component's dispensing grid, the integer multiples of its ``step`` between ``low`` and
``high``; linear capacity constraints (``campaign.constraints``) cap the summed amount of a
group of components that share unit and step (the 5 mL of liquid a vial holds).

Integer grid coordinates
------------------------
Internally a formulation is an integer vector ``g`` with ``amount_i = g_i * step_i``; the
bounds become ``lo_i <= g_i <= hi_i`` and a constraint ``sum_{i in S} g_i <= cap_S`` with
``cap_S = floor(max_S / step_S)``.  All sampling, designs and neighbourhoods are generated in
these coordinates, so every point they produce is feasible and on the grids *by
construction*: nothing is ever clipped or rounded after the fact.  Amounts are produced from
``g`` as the float nearest to the decimal value ``g * step`` (``3 * 0.1`` gives ``0.3``, not
``0.30000000000000004``).  Conversions from floats snap float noise (``|amount/step - k| <=
1e-6``) to the grid value ``k`` and reject anything further away: a point is never moved to
a different grid value.

Each component belongs to at most one constraint, so the feasible set is a product of
independent *blocks*: one per constraint (integer vectors with per-component bounds under a
shared capacity) and one per unconstrained component (an integer interval).

Sampling
--------
:meth:`FormulationSpace.sample` draws points *uniformly* from the feasible grid set.  The
liquid constraint of the default campaign keeps about 1e-5 of the bounding box, so rejection
sampling is hopeless; instead each constrained block is sampled exactly by dynamic
programming: with ``y_j = g_j - lo_j`` in ``[0, u_j]`` and the shifted capacity
``C = cap - sum lo``, let ``N_j(c)`` be the number of completions ``y_j..y_m`` with sum
``<= c``; ``N_{m+1}(c) = 1`` and ``N_j(c) = sum_{y=0}^{min(u_j, c)} N_{j+1}(c - y)``.
Drawing ``y_1, y_2, ...`` in turn with ``P(y_j = y | c) ∝ N_{j+1}(c - y)`` gives every
feasible vector the same probability ``1 / N_1(C)``.  The tables are kept row-normalised in
floating point for sampling (exact Python integers for :meth:`count`).

:meth:`FormulationSpace.sample_sparse` does the same after switching a random, non-empty
subset of each constraint's components to their lower bound (optima often sit on such faces,
e.g. harmful additives at 0): per point it picks how many to switch off (uniform in 1..m-1,
at least one stays free), which ones (uniform), and samples the rest uniformly as above.

Latin hypercube design
----------------------
:meth:`FormulationSpace.latin_hypercube` stratifies a bijective reparametrisation of each
block instead of the box (where almost every point would violate the constraint):

* a constraint block of ``m`` components gets ``m`` unit coordinates: the first sets the
  continuous total ``T = C * U^(1/m)`` (the law of the total under the uniform measure on the
  simplex ``{z >= 0, sum z <= C}``), the other ``m - 1`` set stick-breaking proportions with
  the inverse CDF of ``Beta(1, m - k)``, which makes the proportions uniform on the simplex;
  ``z_j = T * p_j``, then ``z_j = min(z_j, u_j)`` (per-component upper bounds; lowering an
  amount never breaks the capacity);
* the continuous ``z`` is mapped to integers by *largest-remainder rounding*: ``floor(z)``
  plus one unit to the ``round(sum z) - sum floor(z)`` components with the largest
  fractional parts.  The result sums to ``round(sum z) <= C`` (C is an integer and
  ``sum z <= C``), and only components with a non-zero fractional part are raised, to at
  most ``ceil(z_j) <= u_j``: the point is feasible and on the grid by construction;
* an unconstrained component gets one coordinate mapped to ``lo + floor(U * (hi - lo + 1))``.

Stratification (one point per ``1/n`` slice in every coordinate) with a random jitter, the
best of a few random designs by the maximin distance in unit-scaled amounts.

Neighbourhoods
--------------
:meth:`FormulationSpace.neighbours` lists every feasible grid point one move away: one
component up or down by one step, or one step of amount moved from one component of a
constraint to another (the total stays the same, so moves along a full vial are possible).
:func:`find_optimum` uses them for multi-start steepest-ascent hill climbing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from mobile_chemist.errors import ConfigError, InfeasibleFormulationError

Formulation = dict[str, float]

#: Relative tolerance (in steps) within which a float counts as lying on a grid value.
GRID_TOL = 1e-6

_COMPONENT_REQUIRED = ("name", "unit", "low", "high", "step")
_CONSTRAINT_KEYS = {"name", "components", "max", "description"}


@dataclass(frozen=True)
class Component:
    """One dispensable component: amounts ``low..high`` in ``unit`` on multiples of ``step``."""

    name: str
    unit: str
    low: float
    high: float
    step: float
    kind: str = ""
    meta: dict = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Constraint:
    """``sum(amount of components) <= max`` (the components share unit and step)."""

    name: str
    components: tuple[str, ...]
    max: float


def _rng(rng: Any) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def _decimals(step: float) -> int:
    """Number of decimals needed to write `step` exactly (capped at 12)."""
    for d in range(13):
        if round(step, d) == step:
            return d
    return 12


class _Block:
    """Components coupled by one capacity constraint (or a single free component)."""

    def __init__(self, index: np.ndarray, lo: np.ndarray, hi: np.ndarray, cap: int | None,
                 name: str):
        self.index = np.asarray(index, dtype=np.intp)
        self.lo = np.asarray(lo, dtype=np.int64)
        self.hi = np.asarray(hi, dtype=np.int64)
        self.u = self.hi - self.lo                      # shifted upper bounds
        self.name = name
        self.constrained = cap is not None
        # shifted capacity; for a free component the constraint is never binding
        self.cap = int(cap - self.lo.sum()) if cap is not None else int(self.u.sum())
        self._rows_cache: dict[tuple[bool, ...], list[np.ndarray]] = {}
        self._count: int | None = None

    @property
    def size(self) -> int:
        return len(self.index)

    # -- counting ------------------------------------------------------------------------
    def count(self) -> int:
        """Exact number of feasible integer vectors of this block."""
        if self._count is None:
            C = self.cap
            row = [1] * (C + 1)                  # N_{m+1}(c)
            for j in range(self.size - 1, -1, -1):
                prefix = [0]
                for v in row:
                    prefix.append(prefix[-1] + v)
                u = int(self.u[j])
                row = [prefix[c + 1] - prefix[max(0, c - u)] for c in range(C + 1)]
            self._count = row[C]
        return self._count

    def total_distribution(self) -> np.ndarray:
        """Exact P(sum of shifted coordinates = t), t = 0..cap, under the uniform law."""
        C = self.cap
        # number of vectors with sum exactly t: polynomial product of (1 + x + ... + x^u_j)
        poly = [1] + [0] * C
        for u in self.u:
            u = int(u)
            prefix = [0]
            for v in poly:
                prefix.append(prefix[-1] + v)
            poly = [prefix[t + 1] - prefix[max(0, t - u)] for t in range(C + 1)]
        total = sum(poly)
        return np.array([p / total for p in poly])

    # -- uniform sampling ----------------------------------------------------------------
    def _rows(self, active: tuple[bool, ...]) -> list[np.ndarray]:
        """Prefix sums (with a leading 0) of the normalised counting rows N_{j+1}, j = 0..m-1.

        `active[j]` False pins component j at its lower bound (u_j = 0)."""
        rows = self._rows_cache.get(active)
        if rows is not None:
            return rows
        C = self.cap
        u = np.where(np.array(active, dtype=bool), self.u, 0)
        row = np.ones(C + 1)
        prefixes: list[np.ndarray] = [None] * self.size  # type: ignore[list-item]
        for j in range(self.size - 1, -1, -1):
            pext = np.concatenate(([0.0], np.cumsum(row)))
            prefixes[j] = pext
            c = np.arange(C + 1)
            row = pext[c + 1] - pext[np.maximum(0, c - u[j])]
            row = row / row.max()
        if len(self._rows_cache) < 4096:
            self._rows_cache[active] = prefixes
        return prefixes

    def sample(self, n: int, rng: np.random.Generator,
               active: tuple[bool, ...] | None = None) -> np.ndarray:
        """n uniform feasible vectors (absolute grid units), shape (n, size)."""
        if active is None:
            active = (True,) * self.size
        if not self.constrained:
            out = rng.integers(self.lo, self.hi + 1, size=(n, self.size))
            return np.where(np.array(active), out, self.lo)
        prefixes = self._rows(active)
        u = np.where(np.array(active, dtype=bool), self.u, 0)
        y = np.zeros((n, self.size), dtype=np.int64)
        c = np.full(n, self.cap, dtype=np.int64)
        for j in range(self.size):
            pext = prefixes[j]
            ymax = np.minimum(u[j], c)
            top = pext[c + 1]
            total = top - pext[c - ymax]
            t = top - rng.random(n) * total
            i = np.searchsorted(pext, t, side="left")
            yj = np.clip(c - (i - 1), 0, ymax)
            y[:, j] = yj
            c = c - yj
        return y + self.lo

    # -- LHS mapping ---------------------------------------------------------------------
    @property
    def lhs_dims(self) -> int:
        return self.size

    def from_unit_design(self, U: np.ndarray) -> np.ndarray:
        """Map (n, size) unit coordinates to feasible grid vectors (see module doc)."""
        n = U.shape[0]
        if not self.constrained:
            g = self.lo + np.floor(U * (self.u + 1)).astype(np.int64)
            return np.minimum(g, self.hi)
        m, C = self.size, self.cap
        T = C * U[:, 0] ** (1.0 / m)
        p = np.empty((n, m))
        rest = np.ones(n)
        for k in range(m - 1):
            # Beta(1, m-1-k) inverse CDF: stick-breaking proportions uniform on the simplex
            v = 1.0 - (1.0 - U[:, k + 1]) ** (1.0 / (m - 1 - k))
            p[:, k] = rest * v
            rest = rest * (1.0 - v)
        p[:, m - 1] = rest
        z = np.minimum(T[:, None] * p, self.u[None, :].astype(float))
        z = np.maximum(z, 0.0)
        base = np.floor(z).astype(np.int64)
        frac = z - base
        target = np.minimum(np.floor(z.sum(axis=1) + 0.5).astype(np.int64), C)
        extra = target - base.sum(axis=1)
        # largest remainders first (stable: ties by component order)
        order = np.argsort(-frac, axis=1, kind="stable")
        rank = np.empty_like(order)
        rows = np.arange(n)[:, None]
        rank[rows, order] = np.arange(m)[None, :]
        bump = (rank < extra[:, None]) & (frac > 0)
        y = base + bump
        return y + self.lo


class FormulationSpace:
    """Components on dispensing grids under linear capacity constraints.

    Build it with :meth:`from_config` from the ``campaign`` section of campaign.yaml.  Arrays
    of amounts have one column per component, in :attr:`names` order.
    """

    def __init__(self, components: Sequence[Component], constraints: Sequence[Constraint] = ()):
        self.components: tuple[Component, ...] = tuple(components)
        self.constraints: tuple[Constraint, ...] = tuple(constraints)
        self.names: tuple[str, ...] = tuple(c.name for c in self.components)
        self._index = {n: i for i, n in enumerate(self.names)}
        self.dimension = len(self.names)
        self.lows = np.array([c.low for c in self.components], dtype=float)
        self.highs = np.array([c.high for c in self.components], dtype=float)
        self.steps = np.array([c.step for c in self.components], dtype=float)
        self.units = tuple(c.unit for c in self.components)
        self._decimals = np.array([_decimals(c.step) for c in self.components])
        self.grid_low = np.array([int(round(c.low / c.step)) for c in self.components],
                                 dtype=np.int64)
        self.grid_high = np.array([int(round(c.high / c.step)) for c in self.components],
                                  dtype=np.int64)
        span = self.highs - self.lows
        self._span = np.where(span > 0, span, 1.0)
        blocks = []
        in_constraint = np.full(self.dimension, -1)
        self._caps = []
        for k, con in enumerate(self.constraints):
            idx = np.array([self._index[n] for n in con.components], dtype=np.intp)
            step = self.steps[idx[0]]
            cap = int(math.floor(con.max / step + GRID_TOL))
            in_constraint[idx] = k
            self._caps.append((idx, cap))
            blocks.append(_Block(idx, self.grid_low[idx], self.grid_high[idx], cap, con.name))
        for i in range(self.dimension):
            if in_constraint[i] < 0:
                blocks.append(_Block(np.array([i]), self.grid_low[[i]], self.grid_high[[i]],
                                     None, self.names[i]))
        self._blocks = blocks
        self._moves = self._build_moves()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, campaign: Mapping, where: str = "campaign") -> "FormulationSpace":
        """Build and validate the space from the parsed ``campaign:`` section.

        Raises ConfigError naming the component/constraint and key that is wrong.
        """
        if not isinstance(campaign, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(campaign).__name__}")
        if "components" not in campaign:
            raise ConfigError(f"{where}: missing key 'components'")
        raw_components = campaign["components"]
        if not isinstance(raw_components, (list, tuple)) or not raw_components:
            raise ConfigError(f"{where}.components: expected a non-empty list of components")
        components: list[Component] = []
        seen: dict[str, int] = {}
        for i, raw in enumerate(raw_components):
            loc = f"{where}.components[{i}]"
            if not isinstance(raw, Mapping):
                raise ConfigError(f"{loc}: expected a mapping, got {type(raw).__name__}")
            name = raw.get("name")
            if not isinstance(name, str) or not name.strip():
                raise ConfigError(f"{loc}: 'name' must be a non-empty string, got {name!r}")
            loc = f"{loc} ({name})"
            if name in seen:
                raise ConfigError(f"{loc}: duplicate component name {name!r} "
                                  f"(also components[{seen[name]}])")
            seen[name] = i
            for key in _COMPONENT_REQUIRED:
                if key not in raw:
                    raise ConfigError(f"{loc}: missing key {key!r}")
            unit = raw["unit"]
            if not isinstance(unit, str) or not unit.strip():
                raise ConfigError(f"{loc}.unit: expected a non-empty string, got {unit!r}")
            nums = {}
            for key in ("low", "high", "step"):
                v = raw[key]
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise ConfigError(f"{loc}.{key}: expected a number, got {v!r}")
                if not math.isfinite(float(v)):
                    raise ConfigError(f"{loc}.{key}: expected a finite number, got {v!r}")
                nums[key] = float(v)
            low, high, step = nums["low"], nums["high"], nums["step"]
            if step <= 0:
                raise ConfigError(f"{loc}.step: must be > 0, got {step}")
            if low < 0:
                raise ConfigError(f"{loc}.low: amounts cannot be negative, got {low}")
            if low > high:
                raise ConfigError(f"{loc}: low ({low}) > high ({high})")
            for key, v in (("low", low), ("high", high)):
                k = v / step
                if abs(k - round(k)) > GRID_TOL:
                    raise ConfigError(
                        f"{loc}.{key}: {v} is not on the step grid (multiples of {step} "
                        f"{unit}); nearest grid values {math.floor(k) * step:g} and "
                        f"{math.ceil(k) * step:g}")
            kind = raw.get("kind", "")
            if kind is not None and not isinstance(kind, str):
                raise ConfigError(f"{loc}.kind: expected a string, got {kind!r}")
            meta = {k: v for k, v in raw.items() if k not in _COMPONENT_REQUIRED}
            components.append(Component(name, unit, low, high, step, kind or "", meta))

        raw_constraints = campaign.get("constraints", []) or []
        if not isinstance(raw_constraints, (list, tuple)):
            raise ConfigError(f"{where}.constraints: expected a list, got "
                              f"{type(raw_constraints).__name__}")
        by_name = {c.name: c for c in components}
        constraints: list[Constraint] = []
        owner: dict[str, str] = {}
        cnames: set[str] = set()
        for k, raw in enumerate(raw_constraints):
            loc = f"{where}.constraints[{k}]"
            if not isinstance(raw, Mapping):
                raise ConfigError(f"{loc}: expected a mapping, got {type(raw).__name__}")
            cname = raw.get("name", f"constraint_{k}")
            if not isinstance(cname, str) or not cname.strip():
                raise ConfigError(f"{loc}.name: expected a non-empty string, got {cname!r}")
            loc = f"{loc} ({cname})"
            if cname in cnames:
                raise ConfigError(f"{loc}: duplicate constraint name {cname!r}")
            cnames.add(cname)
            unknown_keys = sorted(set(raw) - _CONSTRAINT_KEYS)
            if unknown_keys:
                raise ConfigError(f"{loc}: unknown key(s) {unknown_keys}; allowed: "
                                  f"{sorted(_CONSTRAINT_KEYS)}")
            for key in ("components", "max"):
                if key not in raw:
                    raise ConfigError(f"{loc}: missing key {key!r}")
            members = raw["components"]
            if (not isinstance(members, (list, tuple)) or not members
                    or not all(isinstance(m, str) for m in members)):
                raise ConfigError(f"{loc}.components: expected a non-empty list of component "
                                  f"names, got {members!r}")
            dup = sorted({m for m in members if list(members).count(m) > 1})
            if dup:
                raise ConfigError(f"{loc}.components: lists {dup} more than once")
            unknown = [m for m in members if m not in by_name]
            if unknown:
                raise ConfigError(f"{loc}.components: unknown component(s) {unknown}; "
                                  f"known: {list(by_name)}")
            for m in members:
                if m in owner:
                    raise ConfigError(
                        f"{loc}.components: {m!r} is already in constraint {owner[m]!r}; a "
                        f"component may belong to at most one constraint")
            first = by_name[members[0]]
            for m in members[1:]:
                c = by_name[m]
                if c.unit != first.unit:
                    raise ConfigError(
                        f"{loc}.components: {m!r} is in {c.unit!r} but {first.name!r} is in "
                        f"{first.unit!r}; components of one constraint must share the unit")
                if c.step != first.step:
                    raise ConfigError(
                        f"{loc}.components: {m!r} has step {c.step} but {first.name!r} has "
                        f"step {first.step}; components of one constraint must share the step")
            mx = raw["max"]
            if isinstance(mx, bool) or not isinstance(mx, (int, float)) or not math.isfinite(
                    float(mx)):
                raise ConfigError(f"{loc}.max: expected a finite number, got {mx!r}")
            mx = float(mx)
            if mx < 0:
                raise ConfigError(f"{loc}.max: must be >= 0, got {mx}")
            low_sum = sum(Decimal(repr(by_name[m].low)) for m in members)
            cap = math.floor(mx / first.step + GRID_TOL)
            low_units = sum(int(round(by_name[m].low / first.step)) for m in members)
            if low_units > cap:
                raise ConfigError(
                    f"{loc}.max: {mx:g} {first.unit} is below the sum of the components' "
                    f"lower bounds ({float(low_sum):g} {first.unit}): no formulation is "
                    f"feasible")
            for m in members:
                owner[m] = cname
            constraints.append(Constraint(cname, tuple(members), mx))
        return cls(components, constraints)

    # ------------------------------------------------------------------ description
    def __repr__(self) -> str:
        return (f"FormulationSpace({self.dimension} components, "
                f"{len(self.constraints)} constraint(s))")

    def count(self) -> int:
        """Exact number of feasible grid points."""
        total = 1
        for b in self._blocks:
            total *= b.count()
        return total

    def total_distribution(self, constraint: str | int = 0) -> np.ndarray:
        """Exact distribution of a constraint's summed grid units above its lower bounds
        (index t: ``sum g - sum lo = t``) under the uniform law on the feasible set."""
        if isinstance(constraint, str):
            names = [c.name for c in self.constraints]
            constraint = names.index(constraint)
        return self._blocks[constraint].total_distribution()

    # ------------------------------------------------------------------ conversions
    def _grid_from_matrix(self, X: np.ndarray, what: str = "point") -> np.ndarray:
        """Amounts (n, d) -> integer grid coordinates; raise if off grid or non-finite."""
        X = np.asarray(X, dtype=float)
        if not np.isfinite(X).all():
            r, c = np.argwhere(~np.isfinite(X))[0]
            raise InfeasibleFormulationError(
                f"{what}: amount of {self.names[c]!r} is {X[r, c]} (not finite)")
        K = X / self.steps
        G = np.rint(K)
        off = np.abs(K - G) > GRID_TOL
        if off.any():
            r, c = np.argwhere(off)[0]
            raise InfeasibleFormulationError(
                f"{what}: {self.names[c]} = {X[r, c]!r} {self.units[c]} is not on its "
                f"dispensing grid (multiples of {self.steps[c]:g} {self.units[c]})")
        return G.astype(np.int64)

    def _grid_violation(self, g: np.ndarray) -> str | None:
        """Reason why integer vector g is infeasible, or None."""
        for i in range(self.dimension):
            if g[i] < self.grid_low[i] or g[i] > self.grid_high[i]:
                amount = self._amounts(g[None, :])[0, i]
                return (f"{self.names[i]} = {amount:g} {self.units[i]} is outside its bounds "
                        f"[{self.lows[i]:g}, {self.highs[i]:g}]")
        for con, (idx, cap) in zip(self.constraints, self._caps):
            s = int(g[idx].sum())
            if s > cap:
                step = self.steps[idx[0]]
                total = float(Decimal(s) * Decimal(repr(float(step))))
                return (f"constraint {con.name!r} violated: total {total:g} "
                        f"{self.units[idx[0]]} > max {con.max:g}")
        return None

    def _matrix_from_mapping(self, formulation: Any, what: str) -> np.ndarray:
        if not isinstance(formulation, Mapping):
            raise InfeasibleFormulationError(
                f"{what}: expected a mapping of component name to amount, got "
                f"{type(formulation).__name__}")
        unknown = [k for k in formulation if k not in self._index]
        if unknown:
            raise InfeasibleFormulationError(
                f"{what}: unknown component(s) {unknown}; known: {list(self.names)}")
        missing = [n for n in self.names if n not in formulation]
        if missing:
            raise InfeasibleFormulationError(f"{what}: missing component(s) {missing}")
        row = np.empty(self.dimension)
        for n, i in self._index.items():
            v = formulation[n]
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise InfeasibleFormulationError(
                    f"{what}: amount of {n!r} must be a number, got {v!r}")
            row[i] = float(v)
        return row

    def to_grid(self, x: Any, what: str = "formulation") -> np.ndarray:
        """Feasible formulation (mapping) or amounts (1-d/2-d array) -> integer grid
        coordinates (``amount = g * step``).  Raises InfeasibleFormulationError."""
        if isinstance(x, Mapping):
            row = self._matrix_from_mapping(x, what)
            return self._check_grid(self._grid_from_matrix(row[None, :], what), what)[0]
        X = np.asarray(x, dtype=float)
        single = X.ndim == 1
        X = np.atleast_2d(X)
        if X.ndim != 2 or X.shape[1] != self.dimension:
            raise InfeasibleFormulationError(
                f"{what}: expected amounts with {self.dimension} columns ({list(self.names)}), "
                f"got shape {np.shape(x)}")
        G = self._check_grid(self._grid_from_matrix(X, what), what)
        return G[0] if single else G

    def _check_grid(self, G: np.ndarray, what: str) -> np.ndarray:
        ok = self.is_feasible_grid(G)
        if not ok.all():
            r = int(np.argmin(ok))
            prefix = what if G.shape[0] == 1 else f"{what} (row {r})"
            raise InfeasibleFormulationError(f"{prefix}: {self._grid_violation(G[r])}")
        return G

    def _amounts(self, G: np.ndarray) -> np.ndarray:
        """Integer grid coordinates -> the floats nearest to the decimal amounts."""
        G = np.asarray(G, dtype=np.int64)
        out = np.empty(G.shape, dtype=float)
        for i in range(self.dimension):
            out[..., i] = np.round(G[..., i] * self.steps[i], self._decimals[i])
        return out

    def from_grid(self, G: np.ndarray) -> np.ndarray:
        """Integer grid coordinates (1-d or 2-d) -> exact amounts (same shape)."""
        return self._amounts(G)

    def validate(self, formulation: Mapping[str, float]) -> None:
        """Raise InfeasibleFormulationError (with the reason) unless `formulation` is a
        feasible grid point: known and complete components, finite amounts, on the grids
        (within float tolerance), within bounds and constraints."""
        self.to_grid(formulation)

    def is_feasible(self, formulation: Any) -> bool:
        """True if `formulation` (mapping or 1-d amounts) is a feasible grid point."""
        try:
            self.to_grid(formulation)
        except InfeasibleFormulationError:
            return False
        return True

    def is_feasible_grid(self, G: np.ndarray) -> np.ndarray:
        """Vectorised feasibility of integer grid vectors (n, d) -> bool (n,)."""
        G = np.atleast_2d(np.asarray(G))
        ok = ((G >= self.grid_low) & (G <= self.grid_high)).all(axis=1)
        for idx, cap in self._caps:
            ok &= G[:, idx].sum(axis=1) <= cap
        return ok

    def to_array(self, formulation: Any) -> np.ndarray:
        """Formulation (mapping) -> 1-d amounts; a sequence of formulations -> (n, d).

        Amounts are the exact grid values (float noise snapped).  Raises
        InfeasibleFormulationError for an infeasible or off-grid formulation."""
        if isinstance(formulation, Mapping):
            return self._amounts(self.to_grid(formulation))
        rows = [self.to_grid(f, f"formulation[{i}]") for i, f in enumerate(formulation)]
        if not rows:
            return np.empty((0, self.dimension))
        return self._amounts(np.vstack(rows))

    def from_array(self, x: Any) -> Formulation | list[Formulation]:
        """1-d amounts -> formulation dict; (n, d) amounts -> list of dicts.

        Float noise is snapped to the grid value; anything off the grid or infeasible
        raises InfeasibleFormulationError."""
        X = np.asarray(x, dtype=float)
        G = self.to_grid(X, "array")
        A = self._amounts(G)
        if A.ndim == 1:
            return dict(zip(self.names, A.tolist()))
        return [dict(zip(self.names, row)) for row in A.tolist()]

    def grid_to_formulations(self, G: np.ndarray) -> list[Formulation]:
        """Integer grid vectors (n, d) -> list of formulation dicts (exact amounts)."""
        A = self._amounts(np.atleast_2d(G))
        return [dict(zip(self.names, row)) for row in A.tolist()]

    def to_unit(self, X: np.ndarray) -> np.ndarray:
        """Amounts (1-d or (n, d)) -> [0, 1] per component (``(x - low) / (high - low)``;
        a component with low == high maps to 0)."""
        X = np.asarray(X, dtype=float)
        return (X - self.lows) / self._span

    def grid_to_unit(self, G: np.ndarray) -> np.ndarray:
        """Integer grid vectors -> unit-scaled coordinates."""
        return self.to_unit(self._amounts(G))

    # ------------------------------------------------------------------ sampling
    def sample_grid(self, n: int, rng: Any = None) -> np.ndarray:
        """n points (integer grid coordinates) uniform over the feasible grid set."""
        rng = _rng(rng)
        G = np.empty((int(n), self.dimension), dtype=np.int64)
        for b in self._blocks:
            G[:, b.index] = b.sample(int(n), rng)
        return G

    def sample(self, n: int, rng: Any = None) -> np.ndarray:
        """(n, d) amounts drawn uniformly from the feasible grid set (exact, no rejection)."""
        return self._amounts(self.sample_grid(n, rng))

    def sample_sparse_grid(self, n: int, rng: Any = None) -> np.ndarray:
        """Like :meth:`sample_grid`, but per point and per constraint a random non-empty
        subset of the constraint's components is pinned to its lower bound (how many:
        uniform in 1..m-1, at least one stays free; for m = 1: pinned) and the others are
        uniform on what remains."""
        rng = _rng(rng)
        n = int(n)
        G = np.empty((n, self.dimension), dtype=np.int64)
        for b in self._blocks:
            if not b.constrained:
                G[:, b.index] = b.sample(n, rng)
                continue
            m = b.size
            masks = np.ones((n, m), dtype=bool)
            if m == 1:
                masks[:] = False
            else:
                n_off = rng.integers(1, m, size=n)
                keys = rng.random((n, m))
                order = np.argsort(keys, axis=1)
                rank = np.empty_like(order)
                rank[np.arange(n)[:, None], order] = np.arange(m)[None, :]
                masks = rank >= n_off[:, None]
            # group by mask, sample each group from its own exact table
            codes = masks.astype(np.int64) @ (1 << np.arange(m, dtype=np.int64))
            out = np.empty((n, m), dtype=np.int64)
            for code in np.unique(codes):
                rows = np.flatnonzero(codes == code)
                active = tuple(bool(v) for v in masks[rows[0]])
                out[rows] = b.sample(len(rows), rng, active)
            G[:, b.index] = out
        return G

    def sample_sparse(self, n: int, rng: Any = None) -> np.ndarray:
        """(n, d) amounts: :meth:`sample_sparse_grid` (points on faces of the constraints)."""
        return self._amounts(self.sample_sparse_grid(n, rng))

    def sample_candidates_grid(self, n: int, rng: Any = None) -> np.ndarray:
        """n grid points as the optimizer draws its candidates: the first n - n // 2 from
        :meth:`sample_grid`, the rest from :meth:`sample_sparse_grid` (uniform points seldom
        leave a component at zero; an optimum often does)."""
        rng = _rng(rng)
        n = int(n)
        return np.vstack([self.sample_grid(n - n // 2, rng), self.sample_sparse_grid(n // 2, rng)])

    def latin_hypercube_grid(self, n: int, rng: Any = None, n_tries: int = 8) -> np.ndarray:
        """Space-filling design of n feasible grid points (integer coordinates); see the
        module docstring for the construction.  The best of `n_tries` random Latin
        hypercubes by the maximin distance of the unit-scaled points."""
        rng = _rng(rng)
        n = int(n)
        if n <= 0:
            return np.empty((0, self.dimension), dtype=np.int64)
        n_dims = sum(b.lhs_dims for b in self._blocks)
        best, best_score = None, None
        for _ in range(max(1, int(n_tries))):
            U = (np.argsort(rng.random((n_dims, n)), axis=1).T + rng.random((n, n_dims))) / n
            G = np.empty((n, self.dimension), dtype=np.int64)
            col = 0
            for b in self._blocks:
                G[:, b.index] = b.from_unit_design(U[:, col:col + b.lhs_dims])
                col += b.lhs_dims
            if n == 1:
                return G
            Z = self.grid_to_unit(G)
            sq = (Z * Z).sum(axis=1)
            D = sq[:, None] + sq[None, :] - 2.0 * Z @ Z.T
            np.fill_diagonal(D, np.inf)
            n_dup = len(G) - len({r.tobytes() for r in G})
            score = (-n_dup, float(D.min()))
            if best_score is None or score > best_score:
                best, best_score = G, score
        return best

    def latin_hypercube(self, n: int, rng: Any = None, n_tries: int = 8) -> np.ndarray:
        """(n, d) amounts of a feasible, on-grid Latin-hypercube design (see module doc)."""
        return self._amounts(self.latin_hypercube_grid(n, rng, n_tries))

    # ------------------------------------------------------------------ neighbourhoods
    def _build_moves(self) -> np.ndarray:
        d = self.dimension
        moves = []
        for i in range(d):
            for s in (1, -1):
                m = np.zeros(d, dtype=np.int64)
                m[i] = s
                moves.append(m)
        for idx, _ in self._caps:
            for a in idx:
                for b in idx:
                    if a != b:
                        m = np.zeros(d, dtype=np.int64)
                        m[a] = -1
                        m[b] = 1
                        moves.append(m)
        return np.array(moves, dtype=np.int64).reshape(-1, d)

    def neighbours_grid(self, g: np.ndarray) -> np.ndarray:
        """All feasible grid vectors one move away from integer vector g: one component
        +/- one step, or one step moved between two components of a constraint."""
        N = np.asarray(g, dtype=np.int64)[None, :] + self._moves
        return N[self.is_feasible_grid(N)]

    def neighbours(self, x: Any) -> np.ndarray:
        """(k, d) amounts of all feasible grid neighbours of `x` (a formulation mapping or
        1-d amounts); see :meth:`neighbours_grid`."""
        return self._amounts(self.neighbours_grid(self.to_grid(x)))

    def enumerate_grid(self, limit: int = 1_000_000) -> np.ndarray:
        """Every feasible grid point (integer coordinates), if there are at most `limit`."""
        total = self.count()
        if total > limit:
            raise ValueError(f"the space has {total} feasible points (> limit {limit})")
        parts = []
        for b in self._blocks:
            ranges = [np.arange(lo, hi + 1) for lo, hi in zip(b.lo, b.hi)]
            mesh = np.array(np.meshgrid(*ranges, indexing="ij")).reshape(b.size, -1).T
            if b.constrained:
                mesh = mesh[(mesh - b.lo).sum(axis=1) <= b.cap]
            parts.append((b.index, mesh))
        G = np.zeros((1, self.dimension), dtype=np.int64)
        for index, mesh in parts:
            rep = np.repeat(G, len(mesh), axis=0)
            rep[:, index] = np.tile(mesh, (len(G), 1))
            G = rep
        return G


# ---------------------------------------------------------------------------------- search
def _evaluator(f: Callable, space: FormulationSpace) -> Callable[[np.ndarray], np.ndarray]:
    """Vectorised evaluation of f on integer grid vectors (uses f.evaluate_array if any)."""
    vec = getattr(f, "evaluate_array", None)
    if callable(vec):
        def run(G: np.ndarray) -> np.ndarray:
            if len(G) == 0:
                return np.empty(0)
            return np.asarray(vec(space.from_grid(G), list(space.names)), dtype=float)
        return run

    def run_scalar(G: np.ndarray) -> np.ndarray:
        return np.array([float(f(dict(zip(space.names, row))))
                         for row in space.from_grid(G).tolist()])
    return run_scalar


def find_optimum(f: Callable[[Mapping[str, float]], float], space: FormulationSpace,
                 rng: Any = None, n_starts: int = 16, n_samples: int = 20000,
                 max_steps: int = 1000) -> tuple[Formulation, float]:
    """Best feasible grid point of `f` (maximisation) found by multi-start hill climbing.

    Evaluates `f` on `n_samples` feasible points (half uniform, half sparse: on faces of the
    constraints), then runs steepest-ascent hill climbing on :meth:`~FormulationSpace.
    neighbours_grid` (move to the best neighbour while it improves) from the `n_starts`
    best distinct samples, and returns ``(formulation, value)`` of the best local maximum.
    Deterministic for a given rng.  `f` takes a formulation mapping; if it has an
    ``evaluate_array(X, names)`` method it is used to evaluate many points at once.

    This is a *search*, not a proof of optimality: a narrow global peak that no sample
    falls into the basin of is missed.  It is what the benchmark calls "the optimum".
    """
    rng = _rng(rng)
    evaluate = _evaluator(f, space)
    G = space.sample_candidates_grid(n_samples, rng)
    G = np.unique(G, axis=0)
    vals = evaluate(G)
    order = np.argsort(-vals, kind="stable")
    starts = G[order[:n_starts]]
    best_g, best_v = G[order[0]], float(vals[order[0]])
    seen: dict[bytes, float] = {}
    for g in starts:
        cur = g.copy()
        cur_v = float(evaluate(cur[None, :])[0])
        for _ in range(max_steps):
            nb = space.neighbours_grid(cur)
            if len(nb) == 0:
                break
            nv = evaluate(nb)
            k = int(np.argmax(nv))
            if nv[k] <= cur_v:
                break
            cur, cur_v = nb[k], float(nv[k])
            key = cur.tobytes()
            if key in seen:          # joined a path already climbed
                cur_v = seen[key]
                break
            seen[key] = cur_v
        if cur_v > best_v:
            best_g, best_v = cur.copy(), cur_v
    # the value of a joined path's end is the end of that path, recorded in best already
    return dict(zip(space.names, space.from_grid(best_g).tolist())), float(
        evaluate(best_g[None, :])[0])


__all__ = [
    "Component",
    "Constraint",
    "Formulation",
    "FormulationSpace",
    "GRID_TOL",
    "find_optimum",
]
