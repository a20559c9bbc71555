"""Batch Bayesian optimisation of formulations: the planner's core, usable without ROS.

:class:`BatchBayesianOptimizer` follows the ask/tell contract of scikit-optimize's
``Optimizer`` (``suggest`` = ask, ``observe`` = tell) for *maximisation* of a noisy
objective over a :class:`~mobile_chemist.space.FormulationSpace`.

What it does
------------
* **Initial design.**  Until ``n_initial`` observations exist, suggestions come from one
  feasible Latin-hypercube design of ``n_initial`` points
  (:meth:`FormulationSpace.latin_hypercube`, seeded by ``seed``), in order, skipping points
  already observed (topped up with uniform feasible samples when it runs out).
* **Surrogate.**  scikit-optimize's ``GaussianProcessRegressor`` with the kernel of
  ``skopt.utils.cook_estimator("GP")``: ``ConstantKernel * Matern(nu=2.5, ARD) +
  WhiteKernel`` on unit-scaled amounts, ``normalize_y=True`` (standardised objective),
  ``noise="gaussian"``.  The hyperparameters are chosen by maximising the log marginal
  likelihood (L-BFGS-B on an analytic gradient written for this kernel, several times
  faster than the generic one; the skopt regressor is then fitted with those values
  fixed).  Warm start: the fit at ``n`` observations starts from the fit at the last
  *checkpoint* ``c(n) <= n`` (checkpoints grow geometrically: ``n_initial``, x1.25, ...),
  and each checkpoint's fit starts from the previous checkpoint's and, as a safeguard
  against a stale local optimum, from the default and ``gp_restarts`` random
  hyperparameters (these extra starts only up to 300 observations, where they are cheap).
  The chain depends only on the observation history, never on when ``suggest`` was called,
  so an optimizer rebuilt by replaying ``observe`` is in exactly the same state (replay
  costs one short fit per checkpoint passed, about 15 for a 688-vial campaign).
* **Candidates.**  Every round scores a finite set of feasible grid points, all generated
  on the grid by construction: ``n_candidates`` samples (half uniform over the feasible
  set, half "sparse", on faces of the constraints), ``n_local`` points near the incumbents
  (the best observed points by posterior mean: all their grid neighbours and random
  walks of 2-4 neighbour moves), and then a local refinement: steepest-ascent hill
  climbing on the grid neighbourhood under the acquisition from the best candidates.
  Observed points are never candidates (unless the space is exhausted).
* **Acquisition: expected improvement**, computed as log-EI (stable for far-below-incumbent
  candidates, where EI underflows to 0 and plain EI could not rank them), with the
  incumbent ``f*`` = the best posterior mean among observed points (robust to noise: a
  lucky noisy measurement does not become the bar) and margin ``xi`` in standardised
  units.  EI was chosen because it needs no tuned exploration schedule (unlike UCB's
  beta), balances exploitation near the incumbent against uncertainty automatically and
  has a closed form, so thousands of candidates and the batch updates below cost
  milliseconds.
* **Batch: kriging believer, done exactly.**  Points are picked greedily; after picking
  ``b`` the model "believes" the fantasy ``y_b = mu(b)``: the posterior mean is unchanged,
  the incumbent becomes ``max(f*, mu(b))``, and the posterior covariance gets the rank-1
  update ``cov'(x, x') = cov(x, x') - cov(x, b) cov(b, x') / (var(b) + noise)``.  With
  ``V = L^-1 K(X, C)`` computed once for the candidates ``C``, each pick costs
  ``O(n m)`` (one column ``cov(C, b)``), the whole batch ``O(n m q)``, against one GP
  refit per point for scikit-optimize's constant liar.

Cost
----
Profile of ``suggest(16)`` (single BLAS thread, see :data:`BLAS_THREADS`; the
benchmark's numbers are in ``bench/planner.py``'s output): at 700 observations about
1 s is the warm-started hyperparameter fit (~25 likelihood evaluations of ~40 ms: Cholesky,
inverse and a few n x n element-wise passes), 0.2 s the posterior of ~5000 candidates
(``V = L^-1 K(X, C)``, a 700 x 700 x 5000 triangular solve), 0.1 s generating candidates
and under 0.1 s each the refinement and the batch selection.  At 100-300 observations a
round takes 0.2-0.4 s.

Determinism
-----------
The random stream of a round is derived from ``(seed, number of observations)`` and the
GP state from the observation history alone, so the same seed and the same history (same
order) give the same suggestions, however often ``suggest`` was called before.  Calling
``suggest`` twice without new observations returns the same points.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.linalg import cho_solve, cholesky, solve_triangular
from scipy.linalg.lapack import dpotri
from scipy.optimize import minimize
from scipy.special import erfcx, log_ndtr

from mobile_chemist.errors import ConfigError
from mobile_chemist.space import Formulation, FormulationSpace

# hyperparameter bounds (standardised objective, unit-scaled inputs)
_AMP_BOUNDS = (0.01, 100.0)          # signal variance
_LS_BOUNDS = (0.01, 100.0)           # Matern length scales (as skopt's cook_estimator)
_NOISE_BOUNDS = (1e-6, 2.0)          # white-noise variance
_JITTER = 1e-10                      # sklearn's default alpha
_CHECKPOINT_GROWTH = 1.25
_RESTART_LIMIT = 300                 # random restarts only at checkpoints up to this size
_SQRT5 = math.sqrt(5.0)
_LOG_2PI = math.log(2.0 * math.pi)

_OPTIMIZER_KEYS = {
    "seed": int, "n_initial": int, "acquisition": str, "xi": float, "n_candidates": int,
    "n_local": int, "gp_restarts": int,
}


#: BLAS threads used inside suggest(): the matrices are small (n <= ~1000), where one
#: thread is nearly as fast as several and, on a shared machine, far more predictable
#: (spinning BLAS threads that compete for busy cores can slow a fit down many-fold).
BLAS_THREADS = 1


def _blas_threads():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(BLAS_THREADS, user_api="blas")


# --------------------------------------------------------------------------- GP internals
def _matern52(Xa: np.ndarray, Xb: np.ndarray, ls: np.ndarray, amp: float) -> np.ndarray:
    """amp * Matern-5/2(|xa - xb| / ls) for all pairs."""
    A = Xa / ls
    B = Xb / ls
    d2 = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * A @ B.T
    r = np.sqrt(np.maximum(d2, 0.0))
    s = _SQRT5 * r
    return amp * (1.0 + s + s * s / 3.0) * np.exp(-s)


def _neg_lml(theta: np.ndarray, X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Negative log marginal likelihood of amp*Matern52(ARD) + noise, and its gradient in
    theta = log([amp, ls_1..ls_d, noise]).

    With W = alpha alpha^T - K^-1 the gradient is 0.5 tr(W dK/dtheta); for the length
    scales dK/dlog(ls_k) = amp 5/3 (1 + s) exp(-s) (x_k - x'_k)^2 / ls_k^2 (s = sqrt5 r),
    so all d of them come from one n x n matrix M and the product M @ X (O(n^2 d)), not
    from an n x n x d tensor.  In-place arithmetic keeps it to a few n x n buffers."""
    n, d = X.shape
    p = np.exp(theta)
    amp, ls, noise = p[0], p[1:1 + d], p[1 + d]
    Xs = X / ls
    sq = (Xs * Xs).sum(1)
    s = Xs @ Xs.T
    s *= -2.0
    s += sq[:, None]
    s += sq[None, :]
    np.maximum(s, 0.0, out=s)
    np.sqrt(s, out=s)
    s *= _SQRT5                                # s = sqrt(5) r
    e = np.negative(s)
    np.exp(e, out=e)                           # exp(-s)
    Kf = s * s
    Kf *= 1.0 / 3.0
    Kf += s
    Kf += 1.0
    Kf *= e
    Kf *= amp                                  # signal covariance
    K = Kf.copy()
    K.flat[::n + 1] += noise + _JITTER
    try:
        L = cholesky(K, lower=True, overwrite_a=True, check_finite=False)
    except np.linalg.LinAlgError:
        return 1e25, np.zeros_like(theta)
    alpha = cho_solve((L, True), y, check_finite=False)
    lml = -0.5 * y @ alpha - np.log(np.diag(L)).sum() - 0.5 * n * _LOG_2PI
    W, info = dpotri(L, lower=1, overwrite_c=1)   # lower triangle of K^-1, upper is 0
    if info != 0 or not np.isfinite(lml):
        return 1e25, np.zeros_like(theta)
    diag = W.diagonal().copy()
    W += W.T
    W.flat[::n + 1] = diag                     # full K^-1
    W *= -1.0
    W += np.outer(alpha, alpha)                # W = alpha alpha^T - K^-1
    grad = np.empty_like(theta)
    grad[0] = 0.5 * float(np.vdot(W, Kf))
    grad[1 + d] = 0.5 * noise * float(np.trace(W))
    s += 1.0
    s *= e
    s *= amp * 5.0 / 3.0
    s *= W                                     # M
    rs = s.sum(1)
    MX = s @ Xs
    grad[1:1 + d] = (Xs * Xs * rs[:, None]).sum(0) - (Xs * MX).sum(0)
    return -float(lml), -grad


def _theta_bounds(d: int) -> np.ndarray:
    return np.log(np.array([_AMP_BOUNDS] + [_LS_BOUNDS] * d + [_NOISE_BOUNDS]))


def _default_theta(d: int) -> np.ndarray:
    return np.log(np.concatenate(([1.0], np.full(d, 0.5), [0.05])))


def _random_theta(d: int, rng: np.random.Generator) -> np.ndarray:
    """A random, reasonably conditioned starting point for the hyperparameter search."""
    return np.concatenate((rng.uniform(math.log(0.3), math.log(3.0), 1),
                           rng.uniform(math.log(0.05), math.log(5.0), d),
                           rng.uniform(math.log(1e-3), math.log(0.3), 1)))


def _optimise_theta(X: np.ndarray, y: np.ndarray, starts: Sequence[np.ndarray],
                    maxiter: int = 100, maxfun: int = 150) -> tuple[np.ndarray, float]:
    bounds = _theta_bounds(X.shape[1])
    best_t, best_f = None, math.inf
    for t0 in starts:
        t0 = np.clip(t0, bounds[:, 0], bounds[:, 1])
        try:
            res = minimize(_neg_lml, t0, args=(X, y), jac=True, method="L-BFGS-B",
                           bounds=bounds, options={"maxiter": maxiter, "maxfun": maxfun,
                                                   "ftol": 1e-6})
            t, f = res.x, float(res.fun)
        except (ValueError, np.linalg.LinAlgError, FloatingPointError):
            t, f = t0, _neg_lml(t0, X, y)[0]
        if f < best_f:
            best_t, best_f = t, f
    return best_t, best_f


def _log_h(z: np.ndarray) -> np.ndarray:
    """log(phi(z) + z Phi(z)), stable for very negative z (log-EI of Ament et al. 2023)."""
    z = np.asarray(z, dtype=float)
    out = np.empty_like(z)
    big = z > -1.0
    zb = z[big]
    out[big] = np.log(np.exp(-0.5 * zb * zb) / math.sqrt(2 * math.pi)
                      + zb * np.exp(log_ndtr(zb)))
    zs = -z[~big]                      # > 1
    log_phi = -0.5 * zs * zs - 0.5 * _LOG_2PI
    mid = zs < 1e3
    val = np.empty_like(zs)
    t = zs[mid] * math.sqrt(math.pi / 2.0) * erfcx(zs[mid] / math.sqrt(2.0))
    val[mid] = np.log(np.maximum(1.0 - t, 1e-300))
    zl = zs[~mid]
    val[~mid] = np.log(1.0 / zl ** 2 - 3.0 / zl ** 4)
    out[~big] = log_phi + val
    return out


def log_expected_improvement(mu: np.ndarray, sigma: np.ndarray, best: float,
                             xi: float = 0.0) -> np.ndarray:
    """log EI for maximisation: log E[max(f - best - xi, 0)], f ~ N(mu, sigma^2)."""
    sigma = np.maximum(sigma, 1e-12)
    z = (mu - best - xi) / sigma
    return np.log(sigma) + _log_h(z)


class _Posterior:
    """A fitted GP (standardised objective) with fast posterior pieces for candidates."""

    def __init__(self, gp, X: np.ndarray, theta: np.ndarray):
        self.gp = gp
        self.X = X
        d = X.shape[1]
        p = np.exp(theta)
        self.amp, self.ls, self.noise = float(p[0]), p[1:1 + d], float(p[1 + d])
        self.theta = theta
        self.L = gp.L_
        self.alpha = np.asarray(gp.alpha_).ravel()
        self.y_mean = float(np.ravel(gp._y_train_mean)[0])
        self.y_std = float(np.ravel(gp._y_train_std)[0])

    def kernel(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        return _matern52(A, B, self.ls, self.amp)

    def mean_var_V(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Standardised posterior mean, latent variance and V = L^-1 K(X, Z)."""
        Ks = self.kernel(self.X, Z)
        mu = Ks.T @ self.alpha
        V = solve_triangular(self.L, Ks, lower=True, check_finite=False)
        var = np.maximum(self.amp - (V * V).sum(0), 1e-12)
        return mu, var, V


def kriging_believer_batch(post: "_Posterior", Z: np.ndarray, mu: np.ndarray,
                           var: np.ndarray, V: np.ndarray, f_best: float, xi: float,
                           q: int) -> tuple[list[int], np.ndarray]:
    """Greedy batch of q distinct candidate indices by log-EI under kriging-believer
    fantasies (standardised units).

    ``Z`` are the unit-scaled candidates, ``mu``/``var`` their posterior mean and latent
    variance, ``V = L^-1 K(X, Z)``.  After picking ``b`` the mean is unchanged (the fantasy
    is ``y_b = mu(b)``), the incumbent becomes ``max(f*, mu(b))`` and the covariance of
    every candidate gets the exact rank-1 update for a noisy observation at ``b``:
    ``cov'(x, x') = cov(x, x') - cov(x, b) cov(b, x') / (var(b) + noise)``.  Only the
    column ``cov(., b)`` is ever formed (``k(Z, b) - V^T V_b`` minus the earlier
    updates), so a batch costs ``O(n m q)``.  Returns the indices and the final variances.
    """
    picked: list[int] = []
    W: list[np.ndarray] = []
    var_t = np.array(var, dtype=float, copy=True)
    best_t = float(f_best)
    taken = np.zeros(len(Z), dtype=bool)
    for _ in range(min(q, len(Z))):
        acq = log_expected_improvement(mu, np.sqrt(np.maximum(var_t, 1e-12)), best_t, xi)
        acq[taken] = -np.inf
        b = int(np.argmax(acq))
        picked.append(b)
        taken[b] = True
        cov_b = post.kernel(Z, Z[b:b + 1])[:, 0] - V.T @ V[:, b]
        for w in W:
            cov_b -= w * w[b]
        w = cov_b / math.sqrt(max(var_t[b], 1e-12) + post.noise)
        W.append(w)
        var_t = np.maximum(var_t - w * w, 1e-12)
        best_t = max(best_t, float(mu[b]))
    return picked, var_t


# --------------------------------------------------------------------------- optimizer
class BatchBayesianOptimizer:
    """Batched GP Bayesian optimisation (maximisation) with feasible, on-grid suggestions.

    Parameters
    ----------
    space:
        The formulation space.
    seed:
        Seed of every random choice (design, candidates, hyperparameter restarts).
    n_initial:
        Observations before the GP drives the choice (Latin-hypercube design before).
    xi:
        EI margin in units of the standardised objective.
    n_candidates:
        Feasible samples scored per round (half uniform, half on constraint faces).
    n_local:
        Candidates generated around the incumbents per round.
    gp_restarts:
        Random hyperparameter restarts at each GP checkpoint (see module doc).
    """

    def __init__(self, space: FormulationSpace, *, seed: int = 0, n_initial: int = 32,
                 xi: float = 0.01, n_candidates: int = 4096, n_local: int = 1024,
                 gp_restarts: int = 2):
        if not isinstance(space, FormulationSpace):
            raise TypeError(f"space must be a FormulationSpace, got {type(space).__name__}")
        for name, v, low in (("seed", seed, 0), ("n_initial", n_initial, 1),
                             ("n_candidates", n_candidates, 1), ("n_local", n_local, 0),
                             ("gp_restarts", gp_restarts, 0)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        if isinstance(xi, bool) or not isinstance(xi, (int, float)) or not math.isfinite(xi) \
                or xi < 0:
            raise ValueError(f"xi must be a finite number >= 0, got {xi!r}")
        self.space = space
        self.seed = int(seed)
        self.n_initial = int(n_initial)
        self.xi = float(xi)
        self.n_candidates = int(n_candidates)
        self.n_local = int(n_local)
        self.gp_restarts = int(gp_restarts)
        d = space.dimension
        self._G = np.empty((0, d), dtype=np.int64)     # observed grid points
        self._y = np.empty(0)
        self._theta_cache: dict[int, np.ndarray] = {}  # checkpoint n -> hyperparameters
        self._post: tuple[int, _Posterior] | None = None
        self._design: np.ndarray | None = None
        self.last_timings: dict[str, float] = {}

    @classmethod
    def from_config(cls, space: FormulationSpace, optimizer_section: Mapping | None,
                    where: str = "optimizer") -> "BatchBayesianOptimizer":
        """Build from the ``optimizer:`` section of campaign.yaml; ConfigError if invalid."""
        section = {} if optimizer_section is None else optimizer_section
        if not isinstance(section, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(section).__name__}")
        unknown = sorted(set(section) - set(_OPTIMIZER_KEYS))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: "
                              f"{sorted(_OPTIMIZER_KEYS)}")
        kwargs: dict[str, Any] = {}
        limits = {"seed": 0, "n_initial": 1, "n_candidates": 1, "n_local": 0,
                  "gp_restarts": 0}
        for key, typ in _OPTIMIZER_KEYS.items():
            if key not in section:
                continue
            v = section[key]
            if typ is int:
                if isinstance(v, bool) or not isinstance(v, int):
                    raise ConfigError(f"{where}.{key}: expected an integer, got {v!r}")
                if v < limits[key]:
                    raise ConfigError(f"{where}.{key}: must be >= {limits[key]}, got {v}")
                kwargs[key] = v
            elif typ is float:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or \
                        not math.isfinite(float(v)):
                    raise ConfigError(f"{where}.{key}: expected a finite number, got {v!r}")
                if v < 0:
                    raise ConfigError(f"{where}.{key}: must be >= 0, got {v}")
                kwargs[key] = float(v)
            else:
                if v not in ("expected_improvement", "ei", "EI"):
                    raise ConfigError(f"{where}.{key}: only 'expected_improvement' is "
                                      f"supported, got {v!r}")
        return cls(space, **kwargs)

    # ------------------------------------------------------------------ observations
    @property
    def n_observations(self) -> int:
        return len(self._y)

    def observe(self, formulations: Sequence[Mapping[str, float]] | Mapping[str, float],
                values: Sequence[float] | float) -> None:
        """Tell measured objective values (maximised).  All-or-nothing: NaN/inf values,
        infeasible or off-grid formulations or a length mismatch raise (ValueError /
        InfeasibleFormulationError) and leave the optimizer unchanged.  Repeats allowed."""
        if isinstance(formulations, Mapping):
            formulations = [formulations]
            values = [values]  # type: ignore[list-item]
        formulations = list(formulations)
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
            raise ValueError(f"values must be a sequence of numbers, got {values!r}")
        values = list(values)  # type: ignore[arg-type]
        if len(formulations) != len(values):
            raise ValueError(f"{len(formulations)} formulations but {len(values)} values")
        ys = []
        for i, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise ValueError(f"values[{i}] must be a number, got {v!r}")
            if not math.isfinite(float(v)):
                raise ValueError(f"values[{i}] is {v!r}; only finite values can be observed")
            ys.append(float(v))
        rows = [self.space.to_grid(f, f"formulations[{i}]") for i, f in enumerate(formulations)]
        if not rows:
            return
        self._G = np.vstack([self._G] + [r[None, :] for r in rows])
        self._y = np.concatenate([self._y, ys])

    def best(self) -> tuple[Formulation, float]:
        """(formulation, value) of the best observation (first one on ties)."""
        if not len(self._y):
            raise ValueError("no observations yet")
        i = int(np.argmax(self._y))
        return self.space.grid_to_formulations(self._G[i:i + 1])[0], float(self._y[i])

    def observations(self) -> tuple[list[Formulation], np.ndarray]:
        """All observations, in the order told."""
        return self.space.grid_to_formulations(self._G), self._y.copy()

    # ------------------------------------------------------------------ GP
    def _checkpoints_upto(self, n: int) -> list[int]:
        c = max(self.n_initial, 2)
        out = []
        while c <= n:
            out.append(c)
            c = max(c + 1, int(math.ceil(c * _CHECKPOINT_GROWTH)))
        return out

    def _unit(self, G: np.ndarray) -> np.ndarray:
        return self.space.grid_to_unit(G)

    def _standardise(self, y: np.ndarray) -> np.ndarray:
        sd = y.std()
        return (y - y.mean()) / (sd if sd > 0 else 1.0)

    def _theta_for(self, n: int) -> np.ndarray:
        """Hyperparameters for the first n observations (a function of them alone)."""
        d = self.space.dimension
        cps = self._checkpoints_upto(n)
        prev = None
        for c in cps:
            if c in self._theta_cache:
                prev = self._theta_cache[c]
                continue
            X, y = self._unit(self._G[:c]), self._standardise(self._y[:c])
            starts = [] if prev is None else [prev]
            if prev is None or c <= _RESTART_LIMIT:
                starts.append(_default_theta(d))
                rng = np.random.default_rng([self.seed, c, 1])
                for _ in range(self.gp_restarts):
                    starts.append(_random_theta(d, rng))
            prev, _ = _optimise_theta(X, y, starts)
            self._theta_cache[c] = prev
        if cps and cps[-1] == n:
            return prev
        X, y = self._unit(self._G[:n]), self._standardise(self._y[:n])
        starts = [prev] if prev is not None else [_default_theta(d)]
        theta, _ = _optimise_theta(X, y, starts, maxfun=60)
        return theta

    def _posterior(self) -> _Posterior:
        n = self.n_observations
        if self._post is not None and self._post[0] == n:
            return self._post[1]
        with _blas_threads():      # bitwise-reproducible fits whoever calls first
            return self._fit_posterior(n)

    def _fit_posterior(self, n: int) -> _Posterior:
        from skopt.learning import GaussianProcessRegressor
        from skopt.learning.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        theta = self._theta_for(n)
        d = self.space.dimension
        p = np.exp(theta)
        kernel = (ConstantKernel(p[0], "fixed")
                  * Matern(length_scale=p[1:1 + d], length_scale_bounds="fixed", nu=2.5)
                  + WhiteKernel(p[1 + d], "fixed"))
        gp = GaussianProcessRegressor(kernel=kernel, normalize_y=True, noise="gaussian",
                                      optimizer=None, alpha=_JITTER)
        X = self._unit(self._G)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gp.fit(X, self._y)
        post = _Posterior(gp, X, theta)
        self._post = (n, post)
        return post

    @property
    def gp(self):
        """The fitted scikit-optimize GaussianProcessRegressor (unit-scaled inputs)."""
        if self.n_observations < 2:
            raise ValueError("the GP needs at least 2 observations")
        return self._posterior().gp

    def predict(self, formulations: Sequence[Mapping[str, float]]) -> tuple[np.ndarray,
                                                                            np.ndarray]:
        """Posterior mean and standard deviation (objective units, latent f) of the GP."""
        post = self._posterior()
        G = np.vstack([self.space.to_grid(f) for f in formulations])
        mu, var, _ = post.mean_var_V(self._unit(G))
        return mu * post.y_std + post.y_mean, np.sqrt(var) * post.y_std

    # ------------------------------------------------------------------ suggestions
    def suggest(self, n: int) -> list[Formulation]:
        """n distinct feasible, on-grid formulations to measure next (see module doc)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        n = int(n)
        if n == 0:
            return []
        t0 = time.perf_counter()
        rng = np.random.default_rng([self.seed, self.n_observations, 2])
        with _blas_threads():
            if self.n_observations < max(self.n_initial, 2):
                G = self._suggest_design(n, rng)
            else:
                G = self._suggest_gp(n, rng)
        self.last_timings["total"] = time.perf_counter() - t0
        return self.space.grid_to_formulations(G)

    def _observed_keys(self) -> set[bytes]:
        return {row.tobytes() for row in self._G}

    def _fill(self, chosen: list[np.ndarray], n: int, rng: np.random.Generator,
              exclude: set[bytes]) -> list[np.ndarray]:
        """Top up `chosen` to n distinct points not in `exclude` (uniform samples; an
        exhaustive enumeration for small spaces; observed points once exhausted)."""
        keys = exclude | {g.tobytes() for g in chosen}

        def take(candidates) -> bool:
            """Append the new ones among `candidates`; True once `chosen` holds n."""
            for g in candidates:
                k = g.tobytes()
                if k not in keys:
                    keys.add(k)
                    chosen.append(g)
                    if len(chosen) >= n:
                        return True
            return len(chosen) >= n

        for _ in range(20):
            if len(chosen) >= n:
                return chosen[:n]
            if take(self.space.sample_grid(max(64, 4 * (n - len(chosen))), rng)):
                return chosen
        if self.space.count() <= 2_000_000:
            allg = self.space.enumerate_grid(2_000_000)
            rng.shuffle(allg)
            if take(allg):
                return chosen
            # exhausted: repeat observed points, best measured first
            for i in np.argsort(-self._y, kind="stable"):
                g = self._G[i]
                if g.tobytes() not in {c.tobytes() for c in chosen}:
                    chosen.append(g)
                    if len(chosen) >= n:
                        return chosen
            while len(chosen) < n:                  # fewer points than n in the space
                chosen.append(chosen[len(chosen) % max(1, len(allg))] if chosen else allg[0])
        return chosen[:n]

    def _suggest_design(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self._design is None:
            self._design = self.space.latin_hypercube_grid(
                self.n_initial, np.random.default_rng([self.seed, 0, 3]))
        observed = self._observed_keys()
        chosen, keys = [], set(observed)
        for g in self._design:
            k = g.tobytes()
            if k not in keys:
                keys.add(k)
                chosen.append(g)
                if len(chosen) == n:
                    break
        return np.array(self._fill(chosen, n, rng, observed))

    def _candidates(self, post: _Posterior, rng: np.random.Generator,
                    observed: set[bytes]) -> np.ndarray:
        sp = self.space
        parts = [sp.sample_candidates_grid(self.n_candidates, rng)]
        if self.n_local > 0:
            # incumbents: distinct observed points with the highest posterior mean
            Gu, first = np.unique(self._G, axis=0, return_index=True)
            Gu = self._G[np.sort(first)]
            mu_obs = post.kernel(self._unit(Gu), post.X) @ post.alpha
            order = np.argsort(-mu_obs, kind="stable")
            inc = Gu[order[:8]]
            local = [sp.neighbours_grid(g) for g in inc]
            n_walk = max(0, self.n_local - sum(len(x) for x in local))
            walks = []
            moves = sp._moves
            for w in range(n_walk):
                g = inc[min(int(rng.geometric(0.35)) - 1, len(inc) - 1)].copy()
                for _ in range(int(rng.integers(2, 5))):
                    cand = g[None, :] + moves
                    ok = np.flatnonzero(sp.is_feasible_grid(cand))
                    if len(ok) == 0:
                        break
                    g = cand[ok[int(rng.integers(len(ok)))]]
                walks.append(g)
            parts.extend(local)
            if walks:
                parts.append(np.array(walks))
        C = np.vstack(parts)
        C = np.unique(C, axis=0)            # sorted: deterministic order
        keep = np.array([c.tobytes() not in observed for c in C], dtype=bool)
        return C[keep]

    def _suggest_gp(self, n: int, rng: np.random.Generator) -> np.ndarray:
        times = self.last_timings
        t = time.perf_counter()
        post = self._posterior()
        times["fit"] = time.perf_counter() - t
        observed = self._observed_keys()

        t = time.perf_counter()
        C = self._candidates(post, rng, observed)
        times["candidates"] = time.perf_counter() - t
        if len(C) < n:
            return np.array(self._fill([c for c in C], n, rng, observed))

        t = time.perf_counter()
        mu_obs = post.kernel(post.X, post.X) @ post.alpha
        f_best = float(mu_obs.max())
        mu, var, V = post.mean_var_V(self._unit(C))
        acq = log_expected_improvement(mu, np.sqrt(var), f_best, self.xi)
        times["posterior"] = time.perf_counter() - t

        # local refinement: hill-climb the acquisition from the best candidates
        t = time.perf_counter()
        starts = np.argsort(-acq, kind="stable")[:max(8, n)]
        C, mu, var, V, acq = self._refine(post, C, mu, var, V, acq, f_best, observed,
                                          starts=starts, max_steps=6)
        times["refine"] = time.perf_counter() - t

        # greedy batch: kriging believer with exact rank-1 covariance updates
        t = time.perf_counter()
        picked, _ = kriging_believer_batch(post, self._unit(C), mu, var, V, f_best, self.xi, n)
        times["select"] = time.perf_counter() - t
        return C[np.array(picked)]

    def _refine(self, post: _Posterior, C, mu, var, V, acq, f_best, observed, starts,
                max_steps):
        """Steepest ascent of log-EI over grid neighbours from the best candidates; every
        newly evaluated point joins the candidate set."""
        sp = self.space
        known = {c.tobytes(): i for i, c in enumerate(C)}
        current = [int(i) for i in starts]
        new_G, new_mu, new_var, new_V, new_acq = [], [], [], [], []
        all_acq = list(acq)  # index -> value, grows with new points

        def value(i):
            return all_acq[i]

        active = current
        for _ in range(max_steps):
            if not active:
                break
            # neighbours of all active points, evaluated once
            pending: list[np.ndarray] = []
            pend_keys: dict[bytes, int] = {}
            nbr_lists = []
            for i in active:
                g = C[i] if i < len(C) else new_G[i - len(C)]
                nb = sp.neighbours_grid(g)
                idxs = []
                for h in nb:
                    k = h.tobytes()
                    if k in observed:
                        continue
                    if k in known:
                        idxs.append(known[k])
                    elif k in pend_keys:
                        idxs.append(pend_keys[k])
                    else:
                        j = len(C) + len(new_G) + len(pending)
                        pend_keys[k] = j
                        pending.append(h)
                        idxs.append(j)
                nbr_lists.append(idxs)
            if pending:
                P = np.array(pending)
                m_, v_, V_ = post.mean_var_V(self._unit(P))
                a_ = log_expected_improvement(m_, np.sqrt(v_), f_best, self.xi)
                for r, h in enumerate(P):
                    known[h.tobytes()] = len(C) + len(new_G)
                    new_G.append(h)
                    new_mu.append(m_[r])
                    new_var.append(v_[r])
                    new_V.append(V_[:, r])
                    new_acq.append(a_[r])
                    all_acq.append(a_[r])
            next_active = []
            for i, idxs in zip(active, nbr_lists):
                if not idxs:
                    continue
                j = max(idxs, key=value)
                if value(j) > value(i):
                    next_active.append(j)
            active = sorted(set(next_active))
        if new_G:
            C = np.vstack([C, np.array(new_G)])
            mu = np.concatenate([mu, new_mu])
            var = np.concatenate([var, new_var])
            V = np.hstack([V, np.array(new_V).T])
            acq = np.concatenate([acq, new_acq])
        return C, mu, var, V, acq


__all__ = ["BatchBayesianOptimizer", "kriging_believer_batch", "log_expected_improvement"]
