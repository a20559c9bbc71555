"""The project's simulated photocatalytic hydrogen-evolution response.

The simulated gas chromatograph (``config/lab.yaml``, station ``gc``) measures
:func:`hydrogen_evolution_rate` plus noise.  The function is a closed-form, noise-free
model of the campaign of Burger et al., "A mobile robotic chemist", Nature 583, 237-241
(2020): the conjugated polymer photocatalyst P10 (mg) suspended in a mixture of nine
aqueous stock solutions (mL, see ``config/campaign.yaml``), irradiated; the result is the
hydrogen evolution rate in umol/h.  It is not a fit to the paper's data; it reproduces the
paper's qualitative findings so that the optimiser faces a realistic, non-trivial
landscape:

* the baseline control (5 mg P10 + 0.5 mL L-cysteine stock, :data:`BASELINE`) gives
  3.40 umol/h;
* the best feasible formulation gives 20.99 umol/h, 6.17x the baseline (Burger found ~6x).
  It lies in the interior of the liquid-volume simplex and uses P10, L-cysteine, NaOH,
  NaCl, sodium silicate and PVP together, with no SDS and no dye (:data:`OPTIMUM_REFERENCE`);
* the landscape is multi-modal (two promotion routes, below), smooth and cheap to
  evaluate (vectorised: :func:`hydrogen_evolution_rate_array`).

Vial composition
----------------
There is no water component: the vial liquid is the dispensed stock solutions, total
volume ``V = sum(liquid mL)`` (<= 5 mL by the campaign's constraint).  Solution chemistry
acts through concentrations in the vial, ``[i] = stock_i * v_i / V`` (0 in an empty vial),
so adding one stock dilutes all the others.  The catalyst acts through its amount (mg).

Factors (multiplicative, each smooth; :func:`response_factors` returns them)
-------------------------------------------------------------------------------
``rate = R0 * illumination(V) * catalyst(P10) * scavenger([cys]) * routes
         * hydroxide_stress([NaOH]) * salt([NaCl]) * dispersion([PVP], [silicate], P10)
         * sds([SDS], [PVP]) * dyes([dyes])``,  ``R0 = 6.1 umol/h``.

illumination
    The lamp lights the liquid column; a thin film of slurry at the bottom of the vial
    intercepts and mixes less, and a dry vial makes nothing: ``V / (V + 0.25 mL)``, which
    takes the rate continuously to 0 as ``V -> 0`` (0.67 at 0.5 mL, 0.95 at 5 mL).
catalyst (P10, mg)
    Light-limited: more P10 absorbs more of the lamp's photons but the suspension becomes
    optically thick, so the gain saturates, ``1 - exp(-m / 2 mg)`` (0.92 at 5 mg).
scavenger (L-cysteine, 100 g/L stock)
    Sacrificial hole scavenger, strongly positive and saturating: Michaelis-Menten in the
    vial concentration, ``0.02 + 0.98 [cys] / ([cys] + 10 g/L)``; without it P10 makes
    almost no hydrogen.
routes: the two modes
    Two alternative ways to speed up the rate-limiting hole transfer, combined by a smooth
    maximum, ``routes = 1 + (g_A^4 + g_B^4)^(1/4)``, so a vial profits from one route or
    the other, hardly from both:

    *A, pH route* (NaOH, 1 M stock), the global mode: hydroxide deprotonates the thiol of
    L-cysteine (pKa ~8.3) and the thiolate is a much faster hole scavenger.  The gain
    ``g_A = 1.9 * (u exp(1 - u))^5``, ``u = [NaOH] / c_opt``, peaks at an NaOH
    concentration that grows with the cysteine it has to deprotonate,
    ``c_opt = 0.1 M + 0.5 [cys] (mol/L)``, with a slow onset and a fall-off beyond.

    *B, ionic-strength/silicate route*, a secondary local mode: silicate adsorbed on the
    polymer makes its surface hydrophilic and helps charge separation; adsorption needs
    the electrostatic repulsion screened by salt and is suppressed by free hydroxide,
    which charges both surfaces negatively:
    ``g_B = 1.8 * (s exp(1 - s))^3 * [NaCl] / ([NaCl] + 0.3 M) / (1 + ([NaOH] / 0.04 M)^2)``
    with ``s = [silicate] / 0.3 wt%``.

    The hydroxide suppression of B and the slow onset of A separate the modes: from the
    best silicate-route vial (14.78 umol/h, 4.35x: 5 mg P10, 2.25 mL L-cysteine, 1.25 mL
    NaCl, 1.25 mL silicate, 0.25 mL PVP, no NaOH) one, two or three 0.25 mL steps of NaOH
    all lower the rate (9.9, 8.3, 11.4 umol/h) before the pH route takes over, and no
    single grid move improves it.
hydroxide_stress
    Strongly alkaline vials (above ~0.5 M OH-) degrade the scavenger and the catalyst,
    ``exp(-([NaOH] / 0.7 M)^4)``: too much NaOH ends below the rate without NaOH.
salt (NaCl, 3 M stock)
    A modest effect with an optimum: moderate ionic strength helps (salting-out of H2,
    screening of the charged polymer), ``exp(ln(1.25) (2u - u^2))`` with
    ``u = [NaCl] / 0.6 M``: +25 % at 0.6 M, harmful above 1.2 M.
dispersion (PVP 1 wt%, sodium silicate 1 wt%)
    Small amounts disperse the hydrophobic polymer and expose more of it to light:
    ``1 + catalyst * (0.20 b_PVP + 0.12 b_sil + 0.10 b_PVP b_sil)`` with
    ``b = x exp(1 - x)``, ``x = [.] / 0.07 wt%``: mildly positive in small amounts, a
    synergy between the two, fading at higher loading (excess polymer coats the
    catalyst); it matters more the more catalyst there is to disperse.
sds (SDS 1 wt%)
    Harmful: the surfactant adsorbs on the catalyst and competes for holes; PVP binds SDS
    (polymer-surfactant complex) and softens the harm,
    ``exp(-[SDS] / (0.25 wt% * (1 + [PVP] / 0.1 wt%)))``.
dyes (rhodamine B 1 g/L, acid red 87 1 g/L, methylene blue 250 mg/L)
    Harmful: they absorb the lamp's light in competition with P10 (inner filter) and
    quench its excited state; methylene blue, a strong absorber and redox mediator, is the
    worst per mg (0.016 L/mg against 0.002 and 0.0015) and per mL of stock:
    ``1 / (1 + sum_i k_i [dye_i])``.

The feasible-set optimum (P10 1-5 mg on 0.2 mg, liquids on 0.25 mL, total <= 5 mL) was
found by multi-start neighbour hill climbing on the grid (``test/test_response.py``) and
confirmed by enumerating every grid vial with 5 mg P10 and no dye.  Random search is not
enough: the best of 688 random feasible vials is typically only 3-5x the baseline.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

#: Component names in the order of ``config/campaign.yaml``.
COMPONENTS: tuple[str, ...] = (
    "P10",
    "L_cysteine",
    "NaOH",
    "NaCl",
    "sodium_silicate",
    "PVP",
    "SDS",
    "rhodamine_B",
    "acid_red_87",
    "methylene_blue",
)

#: The liquid components (mL of stock solution); their sum is the vial's liquid volume.
LIQUIDS: tuple[str, ...] = COMPONENTS[1:]

#: Stock concentrations of the liquids, in the unit each factor uses.
STOCK: dict[str, float] = {
    "L_cysteine": 100.0,  # g/L
    "NaOH": 1.0,  # mol/L
    "NaCl": 3.0,  # mol/L
    "sodium_silicate": 1.0,  # wt%
    "PVP": 1.0,  # wt%
    "SDS": 1.0,  # wt%
    "rhodamine_B": 1000.0,  # mg/L
    "acid_red_87": 1000.0,  # mg/L
    "methylene_blue": 250.0,  # mg/L
}

#: The baseline control formulation of the campaign (unlisted components are 0).
BASELINE: dict[str, float] = {"P10": 5.0, "L_cysteine": 0.5}

#: The best feasible formulation known (grid of config/campaign.yaml); see the module doc.
OPTIMUM_REFERENCE: dict[str, float] = {
    "P10": 5.0,
    "L_cysteine": 2.0,
    "NaOH": 1.25,
    "NaCl": 0.75,
    "sodium_silicate": 0.25,
    "PVP": 0.25,
}

_INDEX = {name: i for i, name in enumerate(COMPONENTS)}

# ----------------------------------------------------------------------------- parameters
R0 = 6.1  # umol/h scale
V_ILLUM = 0.25  # mL, half-volume of the illuminated-liquid factor
P10_SAT = 2.0  # mg, catalyst light-saturation scale
CYS_K = 10.0  # g/L, scavenger half-saturation
CYS_FLOOR = 0.02  # relative rate without scavenger
CYS_MOLAR_MASS = 121.16  # g/mol
ROUTE_A_GAIN = 1.9
ROUTE_A_SHARPNESS = 5.0
ROUTE_A_C0 = 0.10  # mol/L NaOH optimum without cysteine
ROUTE_A_PER_CYS = 0.5  # mol NaOH per mol cysteine added to the optimum
ROUTE_B_GAIN = 1.8
ROUTE_B_SHARPNESS = 3.0
ROUTE_B_SILICATE = 0.30  # wt% silicate optimum
ROUTE_B_SALT_K = 0.3  # mol/L NaCl half-saturation of the silicate route
ROUTE_B_OH_K = 0.04  # mol/L NaOH that halves silicate adsorption
ROUTE_NORM = 4.0  # p of the smooth maximum
OH_STRESS = 0.7  # mol/L
SALT_OPT = 0.6  # mol/L
SALT_GAIN = math.log(1.25)
PVP_OPT = 0.07  # wt%
SIL_OPT = 0.07  # wt%
PVP_GAIN = 0.20
SIL_GAIN = 0.12
DISP_SYNERGY = 0.10
SDS_SCALE = 0.25  # wt%
SDS_PVP_RELIEF = 0.10  # wt%
DYE_K = {"rhodamine_B": 0.002, "acid_red_87": 0.0015, "methylene_blue": 0.016}  # L/mg


def _peak(u: np.ndarray) -> np.ndarray:
    """Smooth unimodal bump on u >= 0: 0 at 0, 1 at u = 1, decaying to 0 as u grows."""
    return u * np.exp(1.0 - u)


def _peak_k(u: np.ndarray, k: float) -> np.ndarray:
    """Sharper bump u^k exp(k (1 - u)): 1 at u = 1, slow (order k) onset from 0."""
    return (u * np.exp(1.0 - u)) ** k


def _validate_array(X: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Return the (n, len(COMPONENTS)) matrix in canonical order; raise ValueError."""
    names = list(names)
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2:
        raise ValueError(f"expected an (n, d) array of amounts, got shape {X.shape}")
    if X.shape[1] != len(names):
        raise ValueError(f"array has {X.shape[1]} columns but {len(names)} names were given")
    unknown = [n for n in names if n not in _INDEX]
    if unknown:
        raise ValueError(
            f"unknown component(s) {unknown}; known components: {list(COMPONENTS)}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate component names in {names}")
    if np.isnan(X).any():
        bad = sorted({names[j] for j in np.argwhere(np.isnan(X))[:, 1]})
        raise ValueError(f"amount is NaN for component(s) {bad}")
    if np.isinf(X).any():
        bad = sorted({names[j] for j in np.argwhere(np.isinf(X))[:, 1]})
        raise ValueError(f"amount is infinite for component(s) {bad}")
    if (X < 0).any():
        bad = sorted({names[j] for j in np.argwhere(X < 0)[:, 1]})
        raise ValueError(f"negative amount for component(s) {bad}; amounts must be >= 0")
    full = np.zeros((X.shape[0], len(COMPONENTS)))
    for j, name in enumerate(names):
        full[:, _INDEX[name]] = X[:, j]
    return full


def response_factors(
    X: np.ndarray, names: Sequence[str] = COMPONENTS
) -> dict[str, np.ndarray]:
    """The multiplicative factors of the model for an (n, d) array of amounts.

    Returns a dict factor name -> (n,) array; :func:`hydrogen_evolution_rate_array` is
    ``R0`` times their product.  Keys: ``illumination``, ``catalyst``, ``scavenger``,
    ``routes`` (1 + smooth maximum of the two route gains), ``route_a``, ``route_b`` (the
    gains themselves, not factors), ``hydroxide_stress``, ``salt``, ``dispersion``,
    ``sds``, ``dyes``.  Same arguments and errors as
    :func:`hydrogen_evolution_rate_array`.
    """
    A = _validate_array(X, names)
    m = A[:, 0]
    V = A[:, 1:].sum(axis=1)
    Vs = np.where(V > 0.0, V, 1.0)
    # vial concentrations (0 in an empty vial)
    c = {name: STOCK[name] * A[:, _INDEX[name]] / Vs for name in LIQUIDS}

    illumination = V / (V + V_ILLUM)
    catalyst = 1.0 - np.exp(-m / P10_SAT)

    cys = c["L_cysteine"]
    scavenger = CYS_FLOOR + (1.0 - CYS_FLOOR) * cys / (cys + CYS_K)

    oh = c["NaOH"]
    oh_opt = ROUTE_A_C0 + ROUTE_A_PER_CYS * cys / CYS_MOLAR_MASS
    route_a = ROUTE_A_GAIN * _peak_k(oh / oh_opt, ROUTE_A_SHARPNESS)
    salt = c["NaCl"]
    sil = c["sodium_silicate"]
    route_b = (
        ROUTE_B_GAIN
        * _peak_k(sil / ROUTE_B_SILICATE, ROUTE_B_SHARPNESS)
        * salt
        / (salt + ROUTE_B_SALT_K)
        / (1.0 + (oh / ROUTE_B_OH_K) ** 2)
    )
    p = ROUTE_NORM
    routes = 1.0 + (route_a**p + route_b**p) ** (1.0 / p)

    hydroxide_stress = np.exp(-((oh / OH_STRESS) ** 4))
    u = salt / SALT_OPT
    salt_factor = np.exp(SALT_GAIN * (2.0 * u - u * u))

    pvp = c["PVP"]
    bp = _peak(pvp / PVP_OPT)
    bs = _peak(sil / SIL_OPT)
    dispersion = 1.0 + catalyst * (PVP_GAIN * bp + SIL_GAIN * bs + DISP_SYNERGY * bp * bs)

    sds = np.exp(-c["SDS"] / (SDS_SCALE * (1.0 + pvp / SDS_PVP_RELIEF)))
    dyes = 1.0 / (1.0 + sum(k * c[name] for name, k in DYE_K.items()))

    return {
        "illumination": illumination,
        "catalyst": catalyst,
        "scavenger": scavenger,
        "routes": routes,
        "route_a": route_a,
        "route_b": route_b,
        "hydroxide_stress": hydroxide_stress,
        "salt": salt_factor,
        "dispersion": dispersion,
        "sds": sds,
        "dyes": dyes,
    }


_PRODUCT = (
    "illumination",
    "catalyst",
    "scavenger",
    "routes",
    "hydroxide_stress",
    "salt",
    "dispersion",
    "sds",
    "dyes",
)


def hydrogen_evolution_rate_array(
    X: np.ndarray, names: Sequence[str] = COMPONENTS
) -> np.ndarray:
    """Vectorised :func:`hydrogen_evolution_rate` for an (n, d) array of amounts.

    ``names`` gives the component of each column (default: all of :data:`COMPONENTS` in
    campaign order); components not named count as 0.  A 1-d array is one formulation.
    Returns the (n,) rates in umol/h.  Raises ValueError for unknown or duplicate names,
    a column count that does not match ``names``, NaN, infinite or negative amounts.
    """
    factors = response_factors(X, names)
    rate = np.full_like(factors["catalyst"], R0)
    for key in _PRODUCT:
        rate = rate * factors[key]
    return rate


def hydrogen_evolution_rate(formulation: Mapping[str, float]) -> float:
    """Noise-free photocatalytic hydrogen evolution rate (umol/h) of one formulation.

    ``formulation`` maps component name to amount in the units of
    ``config/campaign.yaml``: P10 in mg; the nine stock solutions in mL (L_cysteine
    100 g/L, NaOH 1 M, NaCl 3 M, sodium_silicate 1 wt%, PVP 1 wt%, SDS 1 wt%, rhodamine_B
    1 g/L, acid_red_87 1 g/L, methylene_blue 250 mg/L).  Missing components count as 0.

    The model (see the module docstring for the chemistry of each factor): a light-limited,
    saturating catalyst term; a saturating L-cysteine hole-scavenger term on its vial
    concentration; two alternative promotion routes -- the pH route (NaOH deprotonating
    cysteine, interior optimum) and the ionic-strength/silicate route (silicate adsorption
    helped by NaCl, suppressed by hydroxide) -- which make the landscape bimodal; stress
    from excess hydroxide; a modest NaCl optimum; small dispersion gains from PVP and
    silicate; harm from SDS and, methylene blue worst, from the dyes.  A vial without
    liquid gives 0.

    Raises ValueError for unknown component names, negative, NaN or infinite amounts.
    """
    if not isinstance(formulation, Mapping):
        raise ValueError(
            f"formulation must be a mapping of component name to amount, got "
            f"{type(formulation).__name__}"
        )
    names = list(formulation.keys())
    try:
        values = [float(formulation[n]) for n in names]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"amounts must be numbers: {dict(formulation)!r}") from exc
    if not names:
        return 0.0
    return float(hydrogen_evolution_rate_array(np.array([values]), names)[0])


__all__ = [
    "BASELINE",
    "COMPONENTS",
    "LIQUIDS",
    "OPTIMUM_REFERENCE",
    "STOCK",
    "hydrogen_evolution_rate",
    "hydrogen_evolution_rate_array",
    "response_factors",
]
