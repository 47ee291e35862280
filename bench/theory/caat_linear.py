"""CAAT Case I in closed form: the optimal robust linear classifier when one class is harder (CAAT Fig. 1).

Why this exists: CAAT (Zhou, Yang & Wu, AAAI 2023) argues from a toy model that perturbing the two classes
with *different* bounds (and directions) tunes the gap between their errors. Everything here is computed
from formulas, nothing is trained, so the figure and the tests are exact and fast.

Model (CAAT Eq. 3, the setting of Xu et al. 2021): y uniform on {-1, +1}, θ = η·1 ∈ R^d,
x | y=+1 ~ N(θ, (Kσ)² I), x | y=-1 ~ N(-θ, σ² I), K ≥ 1 (class +1 is the harder one). During training
class -1 is perturbed within ρ₋·ε and class +1 within ρ₊·ε; a negative ρ means an anti-adversarial
perturbation (CAAT Eq. 2, the loss is minimised instead of maximised). Theorem 1 is ρ₋ = 1, ρ₊ = ρ;
Corollary 2 is ρ₋ = -1, ρ₊ = ρ; the caption of Fig. 1 allows -η/ε < ρ± < η/ε.

Derivation (our own; the paper defers its proofs to online material we do not have):

* The optimal weight direction is w ∝ 1 (Xu et al. 2021 by symmetry; `tests/test_theory_caat.py` checks it
  against a grid over every direction in d = 2, anti-adversaries included). Take w = 1/√d and
  f(x) = sign(w·x − σz): z is the boundary's signed offset from the origin along θ/‖θ‖, in units of σ.
* In units of σ, w·x has mean ±m, m = √d·η/σ, and standard deviation K (class +1) or 1 (class -1).
  A worst-case perturbation of norm ε moves w·x by ε‖w‖_* (dual norm), i.e. by κ = √d·ε/σ under L∞
  (‖w‖₁ = √d; this is the √d in Eq. 4) and κ = ε/σ under L2. So the perturbed class means sit at
  a₊ = m − ρ₊κ and −a₋ = −(m − ρ₋κ).
* The balanced training risk ½Φ((z − a₊)/K) + ½Φ(−z − a₋) is stationary where the two weighted densities
  meet: K²(z + a₋)² − (z − a₊)² = 2K² ln K. With y = z + a₋ and S = a₊ + a₋ this is
  (K² − 1)y² + 2Sy − S² − 2K² ln K = 0; the root between the means (a minimum; the other root is a
  maximum) is y = −B + K√(B² + q), B = S/(K² − 1), q(K) = 2 ln K/(K² − 1) — the B and q of Theorem 1,
  where S = 2√d(η − ε(1 + ρ)/2)/σ. We evaluate it in the cancellation-free form
  y = (S² + 2K² ln K)/(S + √(K²S² + 2(K² − 1)K² ln K)), which tends to S/2 as K → 1.
* Class-wise errors of that classifier (Eq. 4 and its robust companions):
  R_nat(−1) = Φ(−z − m) = Φ(B − K√(B² + q) − ρ₋κ),
  R_nat(+1) = Φ((z − m)/K) = Φ(−KB + √(B² + q) − ρ₊κ/K),
  R_rob(−1; ε_t) = Φ(−z − m + κ_t),  R_rob(+1; ε_t) = Φ((z − m + κ_t)/K),
  and at each class's own training bound Φ(B − K√(B² + q)) and Φ(−KB + √(B² + q)).

Choices where the paper is not explicit, marked [AMBIG]:

* [AMBIG] Eq. (4) prints √(dρ)·ε/(Kσ) in R_nat(+1); the derivation gives ρ·√d·ε/(Kσ) (the two agree only
  at ρ ∈ {0, 1}). We implement ρ·√d; the Monte-Carlo test confirms it and rejects the printed form.
* [AMBIG] The robust errors are "in the online material". We report them under one common test bound ε_t
  (default ε, the R_rob of the paper's Notation) — the reading under which Corollary 1 ("robust error of
  +1 decreases with ρ") holds; the training-bound versions are returned too (`rob_train_*`).
* [AMBIG] Fig. 1 gives K = 2, η = 2, ε = 0.2, σ = 1 but no d: we take d = 2 so that panels (c) and (d) can be
  drawn in the input plane with the same distribution as (a) and (b). Threat model: L∞ (the √d of Eq. 4).
* [AMBIG] Panels (c), (d) show logistic-regression boundaries trained on simulated data in the paper; we draw
  the closed-form optimal boundaries over a fixed simulated sample instead (computed, not trained).
* [AMBIG] Panel (b) compares "scopes" of boundaries. The open ρ range (-η/ε, η/ε) is sampled up to
  `RHO_EDGE`·η/ε; TRADES is the linear 0-1 TRADES risk R_nat + β·R_bdy with β ∈ [0, 6] (6 = TRADES's usual value).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.stats import norm as _gauss

Norm = Literal["linf", "l2"]

RHO_EDGE = 0.99  # [AMBIG] fraction of the open bound η/ε used for the ends of ρ ranges
TRADES_BETA_MAX = 6.0  # [AMBIG] TRADES β range [0, 6] in panel (b)
FIG1_RHOS = (1.0, 3.0, 6.0, 9.0)  # ρ₊ values whose boundaries panels (c) and (d) draw


@dataclass(frozen=True)
class CaseI:
    """Distribution of CAAT Eq. (3) plus the threat model; defaults are the values of CAAT Fig. 1.

    K: σ₊/σ₋ (≥ 1; class +1 is harder); eta: each coordinate of θ; sigma: σ₋; d: dimension ([AMBIG] 2);
    eps: the base perturbation bound ε; norm: the threat model ('linf' as in the paper, or 'l2').
    """

    K: float = 2.0
    eta: float = 2.0
    sigma: float = 1.0
    d: int = 2
    eps: float = 0.2
    norm: Norm = "linf"

    def __post_init__(self) -> None:
        if not self.K >= 1:
            raise ValueError(f"K must be >= 1 (class +1 is the harder class), got {self.K}")
        if not (self.eta > 0 and self.sigma > 0 and self.d >= 1 and self.eps >= 0):
            raise ValueError(f"need eta > 0, sigma > 0, d >= 1, eps >= 0: {self}")
        if self.norm not in ("linf", "l2"):
            raise ValueError(f"norm must be 'linf' or 'l2', got {self.norm!r}")

    @property
    def theta(self) -> np.ndarray:
        return np.full(self.d, float(self.eta))

    @property
    def m(self) -> float:
        """Distance of each class mean from the origin along θ/‖θ‖, in units of σ: √d·η/σ."""
        return math.sqrt(self.d) * self.eta / self.sigma

    def shift(self, bound: float) -> float:
        """How far a perturbation of norm `bound` moves w·x (w = 1/√d), in units of σ: bound·‖w‖_*/σ."""
        dual = math.sqrt(self.d) if self.norm == "linf" else 1.0
        return bound * dual / self.sigma

    @property
    def kappa(self) -> float:
        """κ = shift(ε): √d·ε/σ under L∞, ε/σ under L2."""
        return self.shift(self.eps)

    @property
    def rho_max(self) -> float:
        """Largest |ρ| keeping a perturbed mean on its own side: η/ε under L∞ (Fig. 1 caption)."""
        return math.inf if self.kappa == 0 else self.m / self.kappa


@dataclass(frozen=True)
class LinearClassifier:
    """f(x) = +1 if w·x + b > 0 else -1."""

    w: np.ndarray
    b: float

    def score(self, x: np.ndarray) -> np.ndarray:
        return x @ self.w + self.b

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.where(self.score(x) > 0, 1, -1)


@dataclass(frozen=True)
class ClasswiseErrors:
    """Class-wise errors of the optimal robust linear classifier (floats, or arrays broadcast over ρ).

    nat_*: clean; rob_*: under the common test bound ε_t; rob_train_*: under each class's training bound
    (the quantities the classifier minimises).
    """

    nat_minus: np.ndarray
    nat_plus: np.ndarray
    rob_minus: np.ndarray
    rob_plus: np.ndarray
    rob_train_minus: np.ndarray
    rob_train_plus: np.ndarray

    @property
    def nat_gap(self) -> np.ndarray:
        """R_nat(+1) − R_nat(−1): the performance gap of Fig. 1(a)."""
        return self.nat_plus - self.nat_minus

    @property
    def rob_gap(self) -> np.ndarray:
        return self.rob_plus - self.rob_minus


def _margins(p: CaseI, rho_plus, rho_minus) -> tuple[np.ndarray, np.ndarray]:
    """Perturbed means' distances a₊, a₋ from the origin (units of σ); both must stay > 0."""
    a_plus = p.m - np.asarray(rho_plus, float) * p.kappa
    a_minus = p.m - np.asarray(rho_minus, float) * p.kappa
    if np.any(a_plus <= 0) or np.any(a_minus <= 0):
        raise ValueError(f"|rho|·eps must stay below eta (rho range is (-{p.rho_max:.3g}, {p.rho_max:.3g}))")
    return a_plus, a_minus


def theorem1_B_q(p: CaseI, rho=1.0, rho_minus=1.0) -> tuple[np.ndarray, float]:
    """B and q(K) of Theorem 1 (Eq. 4), generalised to ρ₋: B = (a₊ + a₋)/(K² − 1), q = 2 ln K/(K² − 1). K > 1."""
    if p.K == 1:
        raise ValueError("B and q are undefined at K = 1 (use optimal_offset, which handles the limit)")
    a_plus, a_minus = _margins(p, rho, rho_minus)
    k2 = p.K ** 2 - 1
    return (a_plus + a_minus) / k2, 2 * math.log(p.K) / k2


def optimal_offset(p: CaseI, rho=1.0, rho_minus=1.0) -> np.ndarray:
    """z: the optimal robust boundary's offset from the origin along θ/‖θ‖ in units of σ (root of the
    stationarity quadratic, module docstring); negative = shifted toward the easy class −1."""
    a_plus, a_minus = _margins(p, rho, rho_minus)
    s = a_plus + a_minus
    k2, log_k = p.K ** 2, math.log(p.K)
    y = (s * s + 2 * k2 * log_k) / (s + np.sqrt(k2 * s * s + 2 * (k2 - 1) * k2 * log_k))
    return y - a_minus


def optimal_robust_classifier(p: CaseI = CaseI(), rho: float = 1.0, rho_minus: float = 1.0) -> LinearClassifier:
    """The optimal linear classifier for training bounds ρ₊ε (class +1) and ρ₋ε (class −1); ρ = 0 both: natural."""
    z = float(optimal_offset(p, rho, rho_minus))
    return LinearClassifier(w=np.full(p.d, 1 / math.sqrt(p.d)), b=-p.sigma * z)


def classwise_errors(p: CaseI = CaseI(), rho=1.0, rho_minus=1.0, eps_test: float | None = None) -> ClasswiseErrors:
    """Closed-form class-wise natural / robust errors of the optimal robust linear classifier (Eq. 4 and
    companions, module docstring); ρ may be an array. eps_test: test bound ([AMBIG] default ε)."""
    z = optimal_offset(p, rho, rho_minus)
    a_plus, a_minus = _margins(p, rho, rho_minus)
    kappa_t = p.shift(p.eps if eps_test is None else eps_test)
    cdf, m, K = _gauss.cdf, p.m, p.K
    return ClasswiseErrors(
        nat_minus=cdf(-z - m), nat_plus=cdf((z - m) / K),
        rob_minus=cdf(-z - m + kappa_t), rob_plus=cdf((z - m + kappa_t) / K),
        rob_train_minus=cdf(-z - a_minus), rob_train_plus=cdf((z - a_plus) / K),
    )


def eq4_natural_errors(p: CaseI = CaseI(), rho=1.0, printed_sqrt_d_rho: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Eq. (4) exactly as Theorem 1 writes it (ρ₋ = 1, K > 1), in terms of B and q(K).

    printed_sqrt_d_rho=True uses the printed √(dρ)ε/(Kσ) shift in R_nat(+1) instead of the derived ρ√dε/(Kσ)
    ([AMBIG], module docstring) — kept only so a test can show the printed form disagrees with simulation.
    """
    B, q = theorem1_B_q(p, rho, 1.0)
    root = np.sqrt(B * B + q)
    rho = np.asarray(rho, float)
    shift_plus = (np.sqrt(rho) if printed_sqrt_d_rho else rho) * p.kappa / p.K
    return _gauss.cdf(B - p.K * root - p.kappa), _gauss.cdf(-p.K * B + root - shift_plus)


def linear_classwise_errors(p: CaseI, w: np.ndarray, b, rho_plus=0.0, rho_minus=0.0) -> tuple[np.ndarray, np.ndarray]:
    """(err₋, err₊) of any linear classifier(s) w·x + b under signed bounds ρ₋ε, ρ₊ε (0 = natural).

    Exact for Gaussians: w·x is normal and the worst case over the ball moves it by ε‖w‖_* (Hölder).
    w: (..., d), b broadcastable to w.shape[:-1]. Used to check optimality against grids.
    """
    w = np.asarray(w, float)
    l2 = np.linalg.norm(w, axis=-1)
    dual = np.abs(w).sum(-1) if p.norm == "linf" else l2
    signal = w @ p.theta
    err_plus = _gauss.cdf((-b - signal + rho_plus * p.eps * dual) / (p.K * p.sigma * l2))
    err_minus = _gauss.cdf((b - signal + rho_minus * p.eps * dual) / (p.sigma * l2))
    return err_minus, err_plus


def trades_offset(p: CaseI, beta: float) -> float:
    """Offset z minimising the linear 0-1 TRADES risk ½Σ_y [R_nat(y) + β·R_bdy(y)] (equal bound ε), w ∝ 1.

    R_bdy(y) is the mass correctly classified yet within ε of the boundary; β = 1 gives the standard
    robust error, hence the same boundary as ρ₊ = ρ₋ = 1.
    """
    m, K, kap, cdf = p.m, p.K, p.kappa, _gauss.cdf

    def risk(z):
        nat = cdf((z - m) / K) + cdf(-z - m)
        bdy = cdf((z + kap - m) / K) - cdf((z - m) / K) + cdf(-z - m + kap) - cdf(-z - m)
        return 0.5 * (nat + beta * bdy)

    grid = np.linspace(-m - kap, m + kap, 2001)
    i = int(np.argmin(risk(grid)))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    return float(minimize_scalar(risk, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10}).x)


def boundary_scope(p: CaseI = CaseI(), n: int = 41) -> dict[str, tuple[float, float]]:
    """Range (min, max) of the optimal boundary's offset σz along θ/‖θ‖ reachable by each training manner
    (Fig. 1(b)): ρ ranges are sampled up to RHO_EDGE·η/ε ([AMBIG]); TRADES over β ∈ [0, TRADES_BETA_MAX]."""
    r = RHO_EDGE * p.rho_max
    pos, full = np.linspace(0, r, n), np.linspace(-r, r, n)
    offsets = {
        "natural (ε = 0)": optimal_offset(p, 0.0, 0.0),
        "AT, equal bound ε (ρ₊ = ρ₋ = 1)": optimal_offset(p, 1.0, 1.0),
        f"TRADES, β ∈ [0, {TRADES_BETA_MAX:g}]": np.array([trades_offset(p, b) for b in np.linspace(0, TRADES_BETA_MAX, n)]),
        "AT, equal bounds ρε (ρ₊ = ρ₋ ≥ 0)": optimal_offset(p, pos, pos),
        "AT, varied bounds (ρ₊, ρ₋ ≥ 0)": optimal_offset(p, pos[:, None], pos[None, :]),
        "adversaries + anti-adversaries (ρ± ≶ 0)": optimal_offset(p, full[:, None], full[None, :]),
    }
    return {k: (float(np.min(v)) * p.sigma, float(np.max(v)) * p.sigma) for k, v in offsets.items()}


def sample(p: CaseI, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n points of each class from Eq. (3): (x of class −1, x of class +1), each n×d."""
    x_minus = -p.theta + p.sigma * rng.standard_normal((n, p.d))
    x_plus = p.theta + p.K * p.sigma * rng.standard_normal((n, p.d))
    return x_minus, x_plus


def worst_case_perturbation(p: CaseI, w: np.ndarray, y: int, bound: float) -> np.ndarray:
    """δ maximising the loss of label y for the linear score w·x (minimising it if bound < 0), ‖δ‖ ≤ |bound|.

    For a linear score the worst case is the same for every x: −y·|bound|·sign(w) under L∞, −y·|bound|·w/‖w‖₂
    under L2 (sign flipped for anti-adversaries).
    """
    w = np.asarray(w, float)
    direction = np.sign(w) if p.norm == "linf" else w / np.linalg.norm(w)
    return -y * bound * direction


def draw_fig1(path_stem: str | Path, p: CaseI = CaseI(), seed: int = 0) -> tuple[Path, Path]:
    """Draw CAAT Fig. 1 (a)-(d) from the closed forms; writes <path_stem>.png and .pdf, returns both paths.

    (a) class-wise natural/robust errors vs ρ (Theorem 1) and the gaps R(+1) − R(−1) for Theorem 1 and the
    combination of Corollary 2; (b) scope of the boundary offset per training manner; (c) boundaries for
    natural and ρ₊ ∈ FIG1_RHOS (ρ₋ = 1) over a simulated sample; (d) the same with anti-adversarial class −1.
    (c) and (d) need d = 2.
    """
    import seaborn as sns
    from matplotlib.figure import Figure

    path_stem = Path(path_stem)
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    rho = np.linspace(0, RHO_EDGE * p.rho_max, 200)
    thm1, comb = classwise_errors(p, rho, 1.0), classwise_errors(p, rho, -1.0)
    c_minus, c_plus = sns.color_palette("deep")[0], sns.color_palette("deep")[3]

    with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.0):
        fig = Figure(figsize=(17, 4.8), layout="constrained")
        grid = fig.add_gridspec(2, 4, width_ratios=[1.1, 1.1, 1, 1])
        ax_err = fig.add_subplot(grid[0, 0])
        ax_gap = fig.add_subplot(grid[1, 0], sharex=ax_err)
        ax_b, ax_c, ax_d = (fig.add_subplot(grid[:, i]) for i in (1, 2, 3))

        ax_err.plot(rho, thm1.nat_minus, color=c_minus, label="nat, class −1")
        ax_err.plot(rho, thm1.nat_plus, color=c_plus, label="nat, class +1")
        ax_err.plot(rho, thm1.rob_minus, color=c_minus, ls="--", label="rob, class −1")
        ax_err.plot(rho, thm1.rob_plus, color=c_plus, ls="--", label="rob, class +1")
        ax_err.set(ylabel="error", title="(a) class-wise errors vs ρ (Theorem 1, ρ₋ = 1)")
        ax_err.legend(fontsize=7, ncol=2)
        ax_gap.axhline(0, color="0.4", lw=0.8)
        ax_gap.plot(rho, thm1.nat_gap, color="k", label="nat, ρ₋ = 1")
        ax_gap.plot(rho, thm1.rob_gap, color="k", ls="--", label="rob, ρ₋ = 1")
        ax_gap.plot(rho, comb.nat_gap, color="C2", label="nat, ρ₋ = −1 (anti)")
        ax_gap.plot(rho, comb.rob_gap, color="C2", ls="--", label="rob, ρ₋ = −1 (anti)")
        ax_gap.set(xlabel="ρ = ρ₊ (class +1 bound ρε)", ylabel="R(+1) − R(−1)")
        ax_gap.set_title("performance gap (Theorem 1 vs Corollary 2)", fontsize=9)
        ax_gap.legend(fontsize=7, ncol=2)

        scope = boundary_scope(p)
        names = list(scope)
        for i, name in enumerate(names):
            lo, hi = scope[name]
            ax_b.plot([lo, hi], [i, i], lw=6, solid_capstyle="butt", color=f"C{i}")
            ax_b.plot([lo, hi], [i, i], "|", ms=14, mew=2, color=f"C{i}")
        norm_theta = p.m * p.sigma
        for x, c, lab in ((-norm_theta, c_minus, "mean of class −1"), (norm_theta, c_plus, "mean of class +1")):
            ax_b.axvline(x, color=c, ls=":", label=lab)
        ax_b.set_yticks(range(len(names)), names, fontsize=7)
        ax_b.invert_yaxis()
        ax_b.set(xlabel="boundary offset along θ/‖θ‖", title="(b) scope of the boundary per manner")
        ax_b.legend(fontsize=7, loc="upper right")

        if p.d == 2:
            x_minus, x_plus = sample(p, 300, np.random.default_rng(seed))
            lims = (-6.0, 8.0)
            xs = np.array(lims)
            palette = sns.color_palette("flare", len(FIG1_RHOS))
            for ax, rho_minus, title in ((ax_c, 1.0, "(c) boundaries, adversaries (ρ₋ = 1)"),
                                         (ax_d, -1.0, "(d) boundaries, anti-adversaries (ρ₋ = −1)")):
                ax.scatter(*x_minus.T, s=4, alpha=0.35, color=c_minus, label="class −1")
                ax.scatter(*x_plus.T, s=4, alpha=0.35, color=c_plus, label="class +1")
                for rp, rm, color, ls, lab in [(r, rho_minus, palette[i], "-", f"ρ₊ = {r:g}")
                                               for i, r in enumerate(FIG1_RHOS)] + [(0.0, 0.0, "k", "--", "natural")]:
                    clf = optimal_robust_classifier(p, rp, rm)  # w1 x1 + w2 x2 + b = 0
                    ax.plot(xs, -(clf.w[0] * xs + clf.b) / clf.w[1], color=color, ls=ls, lw=1.6, label=lab)
                ax.set(xlim=lims, ylim=lims, aspect="equal", xlabel="x₁", ylabel="x₂", title=title)
                ax.legend(fontsize=7, loc="upper left", markerscale=3)
        fig.suptitle(f"CAAT Fig. 1 (closed form): K = {p.K:g}, η = {p.eta:g}, ε = {p.eps:g}, σ = {p.sigma:g}, "
                     f"d = {p.d}, {p.norm.upper()} threat model", fontsize=10)
        png, pdf = path_stem.with_suffix(".png"), path_stem.with_suffix(".pdf")
        fig.savefig(png, dpi=150)
        fig.savefig(pdf)
    return png, pdf
