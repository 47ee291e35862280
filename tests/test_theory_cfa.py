"""CFA toy model (bench.theory.cfa_toy): the closed forms against a Monte-Carlo simulation of the same distribution.

The simulator here is written independently of the module (its own sampler and its own attack), so a shared
mistake would have to be made twice. Tolerances: an accuracy estimated from n i.i.d. samples has standard error
SE = sqrt(q(1-q)/n) <= 0.5/sqrt(n) (1.1e-3 at n = 2e5 per class); each comparison allows 5 SE, whose two-sided
false-alarm probability is 5.7e-7, so even a union over a few thousand comparisons stays below 1e-2, and the
fixed seed makes every run identical anyway.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from bench.theory import cfa_toy
from bench.theory.cfa_toy import CFAToyConfig

N = 200_000  # samples per class
Z = 5.0  # tolerance in standard errors

CONFIGS = {
    "fig1": CFAToyConfig(),  # the Fig. 1 defaults (d = 1)
    "d3": CFAToyConfig(p_pos=0.8, p_neg=0.6, eta=0.3, sigma2=1.0, d=3),  # exercises the sqrt(d) scaling
}


# ---------------------------------------------------------------- independent simulator
def simulate(cfg: CFAToyConfig, n: int, seed: int) -> dict[int, np.ndarray]:
    """Per class y: an (n, d+1) array drawn from Eq. 5 (column 0 is the robust feature x_1)."""
    rng = np.random.default_rng(seed)
    out = {}
    for y, p_y in ((+1, cfg.p_pos), (-1, cfg.p_neg)):
        flip = rng.random(n) >= p_y
        x1 = np.where(flip, -y, y).astype(float)
        rest = y * cfg.eta + cfg.sigma * rng.standard_normal((n, cfg.d))
        out[y] = np.column_stack([x1, rest])
    return out


def theta_of(w: float, d: int) -> np.ndarray:
    """Weights of f_w: (w, 1, ..., 1), or (1, 0, ..., 0) for w = inf (sign(x_1), same decisions up to scale)."""
    return np.r_[1.0, np.zeros(d)] if math.isinf(w) else np.r_[w, np.ones(d)]


def attack(x: np.ndarray, y: int, theta: np.ndarray, eps: float) -> np.ndarray:
    """Worst case of the threat model for a linear classifier: every non-robust coordinate moves by eps against
    y*theta_i (this minimises y*theta.x' over the l_inf box, coordinate by coordinate); x_1 stays in {-1,+1}."""
    x_adv = x.copy()
    x_adv[:, 1:] -= eps * y * np.sign(theta[1:])
    return x_adv


def mc_accuracy(x: np.ndarray, y: int, theta: np.ndarray, eps: float) -> float:
    return float(np.mean(np.sign(attack(x, y, theta, eps) @ theta) == y))


def tol(q: float, n: int = N) -> float:
    return Z * math.sqrt(max(q * (1.0 - q), 1.0 / n) / n)


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def cfg_and_data(request):
    cfg = CONFIGS[request.param]
    return cfg, simulate(cfg, N, seed=12345)


# ---------------------------------------------------------------- formulas vs simulation
def test_attack_is_worst_case_over_box_corners():
    """The simulator's attack is no weaker than random corners of the l_inf box (the extreme points, where a
    linear margin is minimised), so 'robust' below means what the threat model says."""
    cfg = CFAToyConfig(d=3)
    rng = np.random.default_rng(1)
    x = simulate(cfg, 200, seed=2)[-1]
    theta = np.r_[0.7, 1.0, -0.5, 2.0]
    worst = (-1) * attack(x, -1, theta, 0.4) @ theta
    for _ in range(200):
        corner = x.copy()
        corner[:, 1:] += 0.4 * rng.choice([-1.0, 1.0], size=(len(x), 3))
        assert np.all(worst <= (-1) * corner @ theta + 1e-12)


@pytest.mark.parametrize("eps", [0.0, 0.3, 0.6, 1.0])
def test_clean_and_robust_accuracy_match_monte_carlo(cfg_and_data, eps):
    """acc_y(w, eps) of Eqs. 13-16 equals the simulated accuracy on attacked points, for several w and budgets
    (eps = 0 is clean accuracy; eps = 2*eta = 1.0 is the Fig. 1(b) robust evaluation for the defaults)."""
    cfg, data = cfg_and_data
    ws = [0.0, 0.4, cfa_toy.best_clean_w(-1, cfg), 1.5, 3.0, math.inf]
    for y in (+1, -1):
        for w in ws:
            q = float(cfa_toy.class_accuracy(w, y, eps, cfg))
            emp = mc_accuracy(data[y], y, theta_of(w, cfg.d), eps)
            assert abs(emp - q) <= tol(q), (y, w, eps, emp, q)
    if math.isclose(eps, cfg.eps_robust):
        assert float(cfa_toy.robust_accuracy(1.5, -1, cfg)) == float(cfa_toy.class_accuracy(1.5, -1, eps, cfg))
    if eps == 0.0:
        assert float(cfa_toy.clean_accuracy(1.5, +1, cfg)) == float(cfa_toy.class_accuracy(1.5, +1, 0.0, cfg))


@pytest.mark.parametrize("budgets", [(0.0, 0.4), (0.4, 0.0), (0.2, 0.8), (0.3, 0.3)])
def test_classwise_training_accuracy_matches_monte_carlo(cfg_and_data, budgets):
    """J(w) with one budget per class (Eq. 19 generalised) equals the simulated accuracy on data attacked with
    eps_{+1} on class +1 and eps_{-1} on class -1."""
    cfg, data = cfg_and_data
    eps = dict(zip((+1, -1), budgets))
    for w in (0.2, 1.0, 2.5, math.inf):
        theta = theta_of(w, cfg.d)
        emp = 0.5 * sum(mc_accuracy(data[y], y, theta, eps[y]) for y in (+1, -1))
        qs = [float(cfa_toy.class_accuracy(w, y, eps[y], cfg)) for y in (+1, -1)]
        q = float(cfa_toy.train_accuracy(w, *budgets, cfg))
        assert q == pytest.approx(0.5 * sum(qs), abs=1e-15)
        se = 0.5 * math.sqrt(sum(max(v * (1 - v), 1 / N) for v in qs) / N)
        assert abs(emp - q) <= Z * se, (w, budgets, emp, q)


# ---------------------------------------------------------------- optimality vs grid search
def _sorted_margins(cfg: CFAToyConfig, eps: dict[int, float], seed: int):
    """Training data of the adversarial-training problem for classifiers with positive weights on the x_i:
    per class, y*sum_i x'_i of the attacked points, split by u = y*x_1 and sorted. f_w is correct on a point
    iff u*w + y*sum x'_i > 0, i.e. iff the sorted value exceeds -w (u = +1) or w (u = -1), which lets a
    whole grid of w be scored by binary search."""
    data = simulate(cfg, N, seed)
    out = {}
    for y in (+1, -1):
        x_adv = attack(data[y], y, np.ones(cfg.d + 1), eps[y])
        u = y * x_adv[:, 0]
        v = y * x_adv[:, 1:].sum(axis=1)
        out[y] = (np.sort(v[u > 0]), np.sort(v[u < 0]))
    return out, data


def _correct_counts(sorted_v, w: np.ndarray) -> np.ndarray:
    v_pos, v_neg = sorted_v
    above = lambda arr, t: len(arr) - np.searchsorted(arr, t, side="right")  # noqa: E731
    return above(v_pos, -w) + above(v_neg, w)


def _disagreements(sorted_v, w: np.ndarray, w_star: float) -> np.ndarray:
    """Points where f_w and f_{w*} decide differently: those with v between the two thresholds."""
    v_pos, v_neg = sorted_v
    lo, hi = np.minimum(w, w_star), np.maximum(w, w_star)
    def between(arr: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:  # count of a < v <= b
        return np.searchsorted(arr, b, side="right") - np.searchsorted(arr, a, side="right")

    return between(v_pos, -hi, -lo) + between(v_neg, lo, hi)


@pytest.mark.parametrize(
    "budgets", [(0.0, 0.0), (0.2, 0.2), (0.4, 0.4), (0.6, 0.6), (0.0, 0.4), (0.4, 0.0), (0.8, 0.2)]
)
def test_formula_optimum_no_worse_than_grid_search(budgets):
    """The w that Thm. 2 (uniform budgets) or `optimal_w` (class-wise budgets) calls optimal attains, on a
    simulated adversarial training set, at least the accuracy of every w of a fine grid search over [0, 12]
    and w = inf, up to noise. The comparison is paired (same samples), so for each grid w the tolerance is
    5 SE of the difference, whose per-sample variance is at most the disagreement rate of f_w and f_{w*}."""
    cfg = CONFIGS["fig1"]
    eps = dict(zip((+1, -1), budgets))
    w_star = (cfa_toy.optimal_w_uniform(budgets[0], cfg) if budgets[0] == budgets[1]
              else cfa_toy.optimal_w(*budgets, cfg))
    margins, data = _sorted_margins(cfg, eps, seed=777)

    grid = np.r_[np.linspace(0.0, 12.0, 4801), np.inf]
    acc = 0.5 * sum(_correct_counts(margins[y], grid) for y in (+1, -1)) / N
    acc_star = 0.5 * sum(_correct_counts(margins[y], np.array([w_star])) for y in (+1, -1))[0] / N
    rate = sum(_disagreements(margins[y], grid, w_star) for y in (+1, -1)) / N
    tolerance = Z * np.sqrt(rate / (4 * N)) + 1e-12
    worst = int(np.argmin(acc_star - acc + tolerance))
    assert np.all(acc_star >= acc - tolerance), (budgets, w_star, grid[worst], acc_star, acc[worst])

    # the binary-search scoring agrees with scoring the attacked points one by one
    for w in (w_star, grid[int(np.argmax(acc))], 0.7):
        direct = 0.5 * sum(mc_accuracy(data[y], y, theta_of(float(w), cfg.d), eps[y]) for y in (+1, -1))
        idx = np.array([w])
        assert direct == pytest.approx(0.5 * sum(_correct_counts(margins[y], idx) for y in (+1, -1))[0] / N,
                                       abs=1e-12)


@pytest.mark.parametrize("budgets", [(0.2, 0.2), (0.8, 0.2)])
def test_positive_weights_lose_nothing_against_all_directions(budgets):
    """Sec. 2.2 restricts to w >= 0 with positive weights on the x_i; a coarse search over every direction
    (theta_1, theta_r) of the plane, each attacked by its own worst case, finds nothing better. Unpaired
    bound: each simulated J is within 5 SE <= 5*sqrt(1/(8n)) of its truth, so the slack is 10 of those."""
    cfg = CONFIGS["fig1"]
    eps = dict(zip((+1, -1), budgets))
    w_star = (cfa_toy.optimal_w_uniform(budgets[0], cfg) if budgets[0] == budgets[1]
              else cfa_toy.optimal_w(*budgets, cfg))
    data = simulate(cfg, N, seed=4242)
    score = lambda theta: 0.5 * sum(mc_accuracy(data[y], y, theta, eps[y]) for y in (+1, -1))  # noqa: E731
    best = score(theta_of(w_star, cfg.d))
    slack = 2 * Z * math.sqrt(1 / (8 * N))
    for phi in np.linspace(-math.pi, math.pi, 48, endpoint=False):
        assert score(np.r_[math.cos(phi), math.sin(phi)]) <= best + slack, phi


# ---------------------------------------------------------------- formulas among themselves and the theorems
def test_optimizer_matches_closed_form_and_formula_grid():
    """Equal budgets: the numeric class-wise optimiser reproduces Thm. 2's closed form, and no point of a dense
    formula grid beats the returned w (for any budgets)."""
    cfg = CONFIGS["fig1"]
    for e in (0.0, 0.1, 0.2, 0.3, 0.4):
        assert cfa_toy.optimal_w(e, e, cfg) == pytest.approx(cfa_toy.optimal_w_uniform(e, cfg), rel=1e-9)
        assert abs(cfa_toy.train_accuracy_slope(cfa_toy.optimal_w_uniform(e, cfg), e, e, cfg)) < 1e-12
    for e in (0.5, 0.7, 1.0):
        assert cfa_toy.optimal_w_uniform(e, cfg) == math.inf == cfa_toy.optimal_w(e, e, cfg)
    grid = np.linspace(0.0, 30.0, 30001)
    for budgets in [(0.0, 0.4), (0.4, 0.0), (0.8, 0.2), (0.2, 0.8), (0.1, 0.3)]:
        w = cfa_toy.optimal_w(*budgets, cfg)
        best = float(cfa_toy.train_accuracy(w, *budgets, cfg))
        assert best >= float(np.max(cfa_toy.train_accuracy(grid, *budgets, cfg))) - 1e-13, budgets
        assert best >= 0.5 * (cfg.p_pos + cfg.p_neg) - 1e-13


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_paper_theorems_hold_for_the_formulas(name):
    cfg = CONFIGS[name]
    w = np.linspace(0.0, 6.0, 601)
    # Thm. 1: class +1 is at least as accurate as class -1, clean and robust, for every w (strictly for w > 0)
    assert np.all(cfa_toy.clean_accuracy(w[1:], +1, cfg) > cfa_toy.clean_accuracy(w[1:], -1, cfg))
    assert np.all(cfa_toy.robust_accuracy(w[1:], +1, cfg) > cfa_toy.robust_accuracy(w[1:], -1, cfg))
    # Thm. 2: w*(eps) increases on [0, eta)
    ws = [cfa_toy.optimal_w_uniform(e, cfg) for e in np.linspace(0.0, 0.99 * cfg.eta, 50)]
    assert np.all(np.diff(ws) > 0)
    # Thm. 3: the hard class peaks earlier in clean accuracy; each closed-form peak is the grid argmax
    assert cfa_toy.best_clean_w(-1, cfg) < cfa_toy.best_clean_w(+1, cfg)
    fine = np.linspace(0.0, 6.0, 60001)
    for y in (+1, -1):
        assert fine[np.argmax(cfa_toy.clean_accuracy(fine, y, cfg))] == pytest.approx(
            cfa_toy.best_clean_w(y, cfg), abs=2e-4)


def test_module_sampler_follows_eq5():
    """`sample` (used for Fig. 1(a)) draws x_1 = y with prob. p_y and x_i with mean eta*y, variance sigma^2."""
    cfg = CONFIGS["d3"]
    x, y = cfa_toy.sample(N, cfg, np.random.default_rng(5))
    for label in (+1, -1):
        xs = x[y == label]
        p = cfg.p(label)
        assert abs(np.mean(xs[:, 0] == label) - p) <= tol(p)
        assert np.all(np.abs(xs[:, 1:].mean(axis=0) - cfg.eta * label) <= Z * cfg.sigma / math.sqrt(N))
        assert np.all(np.abs(xs[:, 1:].var(axis=0) / cfg.sigma2 - 1) <= Z * math.sqrt(2 / N))


def test_draw_fig1_writes_png_and_pdf(tmp_path):
    png, pdf = cfa_toy.draw_fig1(tmp_path / "sub" / "fig1")
    assert png.suffix == ".png" and pdf.suffix == ".pdf"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pdf.read_bytes()[:5] == b"%PDF-"
