"""CAAT Case I closed forms (bench/theory/caat_linear.py) against Monte-Carlo simulation and grid searches.

Tolerances: an empirical class-wise error over N i.i.d. points is a binomial proportion with standard error
√(p(1 − p)/N) ≤ 1.2e-3 at N = 2e5; we allow 5 standard errors (a false alarm has probability < 1e-6 per
comparison; the seed is fixed anyway, so the outcome is deterministic).
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import norm

from bench.theory.caat_linear import (
    CaseI, classwise_errors, eq4_natural_errors, linear_classwise_errors, optimal_offset,
    optimal_robust_classifier, sample, theorem1_B_q, trades_offset, worst_case_perturbation,
)

N = 200_000
SEED = 20230207
P = CaseI()  # Fig. 1: K = 2, η = 2, ε = 0.2, σ = 1; d = 2; L∞
P_L2 = replace(P, norm="l2", eps=0.5)  # same distribution, L2 ball (larger ε so the shift is not tiny)


@pytest.fixture(scope="module")
def data():
    x_minus, x_plus = sample(P, N, np.random.default_rng(SEED))  # the threat model does not change the data
    return x_minus, x_plus


def _se_tol(p: float, n: int = N) -> float:
    return 5 * math.sqrt(max(p * (1 - p), 1 / n) / n)


def _empirical(p: CaseI, clf, x_minus, x_plus, bound_minus: float, bound_plus: float) -> tuple[float, float]:
    """Class-wise errors on the sample after each class's worst-case (or anti-adversarial) perturbation."""
    xm = x_minus + worst_case_perturbation(p, clf.w, -1, bound_minus)
    xp = x_plus + worst_case_perturbation(p, clf.w, +1, bound_plus)
    return float(np.mean(clf.predict(xm) != -1)), float(np.mean(clf.predict(xp) != 1))


CASES = [  # (threat model, ρ₊, ρ₋)
    (P, 0.0, 0.0),    # natural classifier
    (P, 0.0, 1.0),
    (P, 1.0, 1.0),    # standard AT
    (P, 4.0, 1.0),    # Theorem 1
    (P, 9.0, 1.0),
    (P, 4.0, -1.0),   # Corollary 2: anti-adversarial class −1
    (P, -5.0, 2.0),   # anti-adversarial class +1 (Fig. 1 caption allows ρ₊ < 0)
    (P_L2, 1.0, 1.0),
    (P_L2, 4.0, 1.0),
    (P_L2, 3.0, -1.0),
]


@pytest.mark.parametrize("p, rho, rho_minus", CASES, ids=[f"{p.norm}-rho{r:g}-rhominus{rm:g}" for p, r, rm in CASES])
def test_classwise_errors_match_monte_carlo(data, p, rho, rho_minus):
    x_minus, x_plus = data
    clf = optimal_robust_classifier(p, rho, rho_minus)
    theory = classwise_errors(p, rho, rho_minus)
    checks = {
        "nat": (_empirical(p, clf, x_minus, x_plus, 0.0, 0.0), (theory.nat_minus, theory.nat_plus)),
        "rob@eps": (_empirical(p, clf, x_minus, x_plus, p.eps, p.eps), (theory.rob_minus, theory.rob_plus)),
        "rob@train": (_empirical(p, clf, x_minus, x_plus, rho_minus * p.eps, rho * p.eps),
                      (theory.rob_train_minus, theory.rob_train_plus)),
    }
    for name, (emp, th) in checks.items():
        for cls, e, t in zip(("-1", "+1"), emp, th):
            assert e == pytest.approx(float(t), abs=_se_tol(float(t))), f"{name} class {cls}: MC {e} vs {float(t)}"


def test_worst_case_perturbation_is_in_the_ball_and_worst():
    rng = np.random.default_rng(1)
    w = np.array([0.3, -1.2, 0.5])
    for p, dual in ((replace(P, d=3), np.abs(w).sum()), (replace(P, d=3, norm="l2"), np.linalg.norm(w))):
        for y in (-1, 1):
            delta = worst_case_perturbation(p, w, y, p.eps)
            ball = np.abs(delta).max() if p.norm == "linf" else np.linalg.norm(delta)
            assert ball == pytest.approx(p.eps)
            assert y * (w @ delta) == pytest.approx(-p.eps * dual)  # Hölder's bound, attained
            u = rng.uniform(-1, 1, (1000, 3))
            u *= p.eps / (np.abs(u).max(1, keepdims=True) if p.norm == "linf" else np.linalg.norm(u, axis=1, keepdims=True))
            assert np.all(y * (u @ w) >= y * (w @ delta) - 1e-12)  # no point of the ball does worse
            assert np.allclose(worst_case_perturbation(p, w, y, -p.eps), -delta)  # anti-adversary


def test_implementation_is_eq4_and_the_printed_sqrt_rho_is_not(data):
    rho = np.linspace(0, 9.5, 39)
    th = classwise_errors(P, rho, 1.0)
    nat_minus, nat_plus = eq4_natural_errors(P, rho)
    np.testing.assert_allclose(nat_minus, th.nat_minus, rtol=1e-12)
    np.testing.assert_allclose(nat_plus, th.nat_plus, rtol=1e-12)
    B, q = theorem1_B_q(P, rho)
    np.testing.assert_allclose(th.rob_train_minus, norm.cdf(B - P.K * np.sqrt(B * B + q)), rtol=1e-12)
    np.testing.assert_allclose(th.rob_train_plus, norm.cdf(-P.K * B + np.sqrt(B * B + q)), rtol=1e-12)
    # Eq. (4) prints √(dρ)·ε/(Kσ); at ρ = 4 that is far from the simulated natural error of class +1.
    x_minus, x_plus = data
    clf = optimal_robust_classifier(P, 4.0, 1.0)
    emp_plus = float(np.mean(clf.predict(x_plus) != 1))
    printed = float(eq4_natural_errors(P, 4.0, printed_sqrt_d_rho=True)[1])
    derived = float(eq4_natural_errors(P, 4.0)[1])
    assert abs(emp_plus - derived) < _se_tol(derived) < abs(emp_plus - printed) / 4
    # ... and the two readings coincide at ρ = 1 (the setting of Xu et al. 2021).
    assert eq4_natural_errors(P, 1.0, True)[1] == pytest.approx(float(eq4_natural_errors(P, 1.0)[1]), abs=1e-15)


def test_stable_root_matches_paper_form_and_k_to_one_limit():
    for K in (1.5, 2.0, 4.0):
        p = replace(P, K=K)
        for rho, rho_minus in ((0.0, 0.0), (3.0, 1.0), (6.0, -1.0)):
            B, q = theorem1_B_q(p, rho, rho_minus)
            a_minus = p.m - rho_minus * p.kappa
            assert optimal_offset(p, rho, rho_minus) == pytest.approx(-B + K * math.sqrt(B * B + q) - a_minus, abs=1e-12)
    p1 = replace(P, K=1.0)  # equal variances: the midpoint of the perturbed means
    for rho, rho_minus in ((1.0, 1.0), (5.0, 1.0), (5.0, -1.0)):
        a_plus, a_minus = p1.m - rho * p1.kappa, p1.m - rho_minus * p1.kappa
        assert optimal_offset(p1, rho, rho_minus) == pytest.approx((a_plus - a_minus) / 2, abs=1e-12)
        assert optimal_offset(replace(P, K=1 + 1e-7), rho, rho_minus) == pytest.approx((a_plus - a_minus) / 2, abs=1e-6)


def test_corollaries_1_and_2_monotonicity():
    assert P.K < math.exp(P.d * (P.eta - P.eps) ** 2 / (2 * P.sigma ** 2))  # the corollaries' condition
    rho = np.linspace(0, 0.99 * P.rho_max, 100)
    for rho_minus in (1.0, -1.0):  # Corollary 1 (adversaries), Corollary 2 (anti-adversarial class −1)
        e = classwise_errors(P, rho, rho_minus)
        for up in (e.nat_minus, e.rob_minus):
            assert np.all(np.diff(up) > 0)
        for down in (e.nat_plus, e.rob_plus, np.abs(e.nat_gap[: np.argmin(np.abs(e.nat_gap)) + 1])):
            assert np.all(np.diff(down) < 0)
        # [AMBIG] check: at its own training bound ρε, class +1's robust error *rises* with ρ, so the
        # corollary's robust error must be the one under the common test bound ε.
        assert np.all(np.diff(e.rob_train_plus) > 0)
    # The boundary moves toward the easy class −1 as ρ grows (Fig. 1(c)), and further with anti-adversaries.
    z_adv, z_comb = optimal_offset(P, rho, 1.0), optimal_offset(P, rho, -1.0)
    assert np.all(np.diff(z_adv) < 0) and np.all(z_comb < z_adv)


def test_trades_reduces_to_natural_and_standard_at():
    assert trades_offset(P, 0.0) == pytest.approx(float(optimal_offset(P, 0.0, 0.0)), abs=1e-7)
    assert trades_offset(P, 1.0) == pytest.approx(float(optimal_offset(P, 1.0, 1.0)), abs=1e-7)


GRID_CASES = [(0.0, 0.0), (1.0, 1.0), (5.0, 1.0), (9.0, 1.0), (5.0, -1.0), (-5.0, 2.0)]


@pytest.mark.parametrize("rho, rho_minus", GRID_CASES)
def test_optimum_beats_population_grid_over_all_directions(rho, rho_minus):
    """Exact risks of every linear classifier (w at 1° steps around the circle, b at 0.01 steps), so the
    symmetric w ∝ 1 of the derivation is checked too."""
    objective = lambda w, b: 0.5 * sum(linear_classwise_errors(P, w, b, rho, rho_minus))
    th = classwise_errors(P, rho, rho_minus)
    best = 0.5 * (float(th.rob_train_minus) + float(th.rob_train_plus))
    clf = optimal_robust_classifier(P, rho, rho_minus)
    assert objective(clf.w, clf.b) == pytest.approx(best, rel=1e-12)
    phi = np.deg2rad(np.arange(-180, 180, 1.0))
    w = np.stack([np.cos(phi), np.sin(phi)], -1)[:, None, :]
    b = np.arange(-6, 6.005, 0.01)[None, :]
    risk = objective(w, b)
    assert risk.min() >= best - 1e-12
    assert risk.min() <= best + 1e-4  # the grid is fine enough to come close
    i, j = np.unravel_index(np.argmin(risk), risk.shape)
    refined = minimize(lambda v: objective(np.array([math.cos(v[0]), math.sin(v[0])]), v[1]),
                       [phi[i], b[0, j]], method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-14})
    assert refined.fun >= best - 1e-12


@pytest.mark.parametrize("rho, rho_minus", [(1.0, 1.0), (5.0, 1.0), (5.0, -1.0)])
def test_optimum_no_worse_than_grid_search_on_simulated_data(data, rho, rho_minus):
    """Empirical training risk (worst-case perturbed sample) of the closed-form classifier vs the best of a grid
    of 36 directions × 1201 thresholds fitted to the same sample. The grid's minimum is biased low by the
    search. The risk difference of two classifiers is ½Σ_y of a mean of ±1 over the class-y points where they
    disagree, a mass ≤ e_y(f) + e_y(g) ≈ 2e_y, so its standard error is ≤ ½√(2(e₋ + e₊)/N) = √(R/N); we
    allow 4 of them (≈ 2e-3 here, while the population test above checks optimality exactly)."""
    x_minus, x_plus = data
    clf = optimal_robust_classifier(P, rho, rho_minus)
    emp = _empirical(P, clf, x_minus, x_plus, rho_minus * P.eps, rho * P.eps)
    emp_risk = 0.5 * sum(emp)
    thresholds = np.linspace(-6, 6, 1201)
    grid_best = math.inf
    for phi in np.pi / 4 + 2 * np.pi * np.arange(36) / 36:
        w = np.array([math.cos(phi), math.sin(phi)])
        dual = np.abs(w).sum()
        s_minus = np.sort(x_minus @ w + rho_minus * P.eps * dual)  # predicted +1 iff score > t
        s_plus = np.sort(x_plus @ w - rho * P.eps * dual)
        err_minus = 1 - np.searchsorted(s_minus, thresholds, side="right") / N
        err_plus = np.searchsorted(s_plus, thresholds, side="right") / N
        grid_best = min(grid_best, float(np.min(0.5 * (err_minus + err_plus))))
    tol = 4 * math.sqrt(emp_risk / N)
    assert emp_risk <= grid_best + tol, (emp_risk, grid_best, tol)
