"""CFA (Wei et al., CVPR 2023), Sec. 2.2-2.3 and App. A-B: the binary toy model behind Fig. 1, in closed form.

Why: the paper argues from this model that a class whose robust feature is less reliable ("hard" class,
y=-1) loses more clean accuracy and gains less robustness as the attack strength grows (Thms. 1-4); that is
the motivation for class-wise budgets. Everything here is computed from the formulas, nothing is trained.

The model (Eq. 5; d=1 case Eq. 9), with y uniform on {-1,+1}:
    x_1 = +y with prob. p_y, else -y                (robust feature, p_{+1} > p_{-1} > 1/2)
    x_2..x_{d+1} ~ N(eta*y, sigma^2) i.i.d.         (non-robust features)
Hypothesis (Sec. 2.2, Eq. 12): f_w(x) = sign(w*x_1 + sum_{i>=2} x_i), w >= 0 (equal weights on the x_i, scale removed);
w = inf is the robust-feature-only classifier sign(x_1).
Threat model (App. B.1, Eq. 15): l_inf ball of radius eps, intersected with the data domain, so x_1 in {-1,+1}
cannot move (eps < 2), and the worst case moves every x_i by -eps*y: the perturbed x_i ~ N((eta-eps)*y, sigma^2).

With s = sqrt(d)*sigma and Phi the standard normal cdf, the accuracy of f_w on class y when the non-robust
features are shifted by eps against the label is (Eqs. 13-14 for eps=0, Eq. 16 for eps>0)
    acc_y(w, eps) = p_y * Phi((d*(eta-eps) + w)/s) + (1-p_y) * Phi((d*(eta-eps) - w)/s).
Clean accuracy is acc_y(w, 0); robust accuracy under budget eps is acc_y(w, eps) (Fig. 1(b) evaluates at
Tsipras et al.'s bound, read as eps = 2*eta: [AMBIG] below). Adversarial training with class-wise budgets
(eps_{+1}, eps_{-1}) maximises the training accuracy on the perturbed distribution (Eqs. 18-19, generalised to
one eps per class):
    J(w) = (acc_{+1}(w, eps_{+1}) + acc_{-1}(w, eps_{-1})) / 2.
For a uniform budget eps < eta the maximiser is closed form (Thm. 2, Eq. 21), with p = (p_{+1}+p_{-1})/2:
    w*(eps) = sigma^2 * ln(p/(1-p)) / (2*(eta - eps)),
and w*(eps) = inf for eps >= eta (the shifted x_i no longer favour y, so J increases in w). Thm. 3 is the
eps=0, per-class instance: w_y^clean = sigma^2 * ln(p_y/(1-p_y)) / (2*eta), so w_{-1}^clean < w_{+1}^clean.
Class-wise budgets have no closed form; `optimal_w` maximises J numerically (dense grid, then bisection on dJ/dw).

[AMBIG] The extracted paper text (/work/shared/papers/cfa.txt) lost its mathematics. It states sigma^2 = 0.6 for
the toy example "for better visualisation" (the proofs use sigma = 1) and 100 samples per class in Fig. 1(a).
Inferred, not stated: d = 1 (Fig. 1(a) is a 2-D scatter of (x_1, x_2)) and robust evaluation at eps = 2*eta
(the text only says the bound follows Tsipras et al., whose bound is 2*eta). Not recoverable, so chosen:
p_{+1} = 0.9, p_{-1} = 0.7, eta = 0.5 (so eps = 1 < 2 keeps x_1 unattackable), sigma^2 = 0.6 for both panels,
and the w-range [0, 4] of Fig. 1(b), which covers both clean optima of Thm. 3. All are `CFAToyConfig` fields.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

CLASSES: tuple[int, int] = (+1, -1)
"""Labels of the toy task: +1 is the easy class, -1 the hard one (its robust feature is noisier)."""


@dataclass(frozen=True)
class CFAToyConfig:
    """Settings of the toy model and of the Fig. 1 drawing; defaults are the Fig. 1 choices ([AMBIG] above).

    p_pos, p_neg: P(x_1 = y | y) for y=+1 and y=-1 (p_pos > p_neg > 1/2, Sec. 2.2).
    eta, sigma2, d: mean magnitude, variance and number of the non-robust features.
    eps_eval: budget of the robust evaluation; None means 2*eta (App. A, after Tsipras et al.).
    """

    p_pos: float = 0.9
    p_neg: float = 0.7
    eta: float = 0.5
    sigma2: float = 0.6
    d: int = 1
    eps_eval: float | None = None
    w_max_plot: float = 4.0
    n_scatter: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        if not (0.5 < self.p_neg < self.p_pos < 1.0):
            raise ValueError(f"need 1/2 < p_neg < p_pos < 1 (Sec. 2.2); got p_pos={self.p_pos}, p_neg={self.p_neg}")
        if self.eta <= 0 or self.sigma2 <= 0 or self.d < 1:
            raise ValueError(f"need eta > 0, sigma2 > 0, d >= 1; got {self.eta}, {self.sigma2}, {self.d}")
        if self.eps_eval is not None and not (0 <= self.eps_eval < 2):
            raise ValueError(f"eps_eval must lie in [0, 2) so that x_1 stays unattackable; got {self.eps_eval}")

    @property
    def sigma(self) -> float:
        return math.sqrt(self.sigma2)

    @property
    def eps_robust(self) -> float:
        """The evaluation budget actually used: eps_eval, or 2*eta when unset."""
        return 2.0 * self.eta if self.eps_eval is None else float(self.eps_eval)

    def p(self, y: int) -> float:
        """P(x_1 = y | y)."""
        if y == +1:
            return self.p_pos
        if y == -1:
            return self.p_neg
        raise ValueError(f"class must be +1 or -1; got {y}")


_erfc = np.vectorize(math.erfc, otypes=[float])


def normal_cdf(z: np.ndarray | float) -> np.ndarray:
    """Phi(z), via math.erfc (no scipy dependency); exact limits at +-inf."""
    return 0.5 * _erfc(-np.asarray(z, dtype=float) / math.sqrt(2.0))


def class_accuracy(w: np.ndarray | float, y: int, eps: float, cfg: CFAToyConfig) -> np.ndarray:
    """acc_y(w, eps): accuracy of f_w on class y after the worst-case l_inf shift eps (Eq. 13-14 at eps=0, Eq. 16).

    Why one formula: the worst case against f_w (w >= 0) is the label-dependent shift of Eq. 15, so robust
    accuracy is clean accuracy on the shifted Gaussian. w may be an array and may contain inf (sign(x_1)).
    """
    w = np.asarray(w, dtype=float)
    if np.any(w < 0):
        raise ValueError("the hypothesis space is w >= 0 (Sec. 2.2)")
    if not (0 <= eps < 2):
        raise ValueError(f"eps must lie in [0, 2) (x_1 unattackable); got {eps}")
    a = cfg.d * (cfg.eta - eps)
    s = math.sqrt(cfg.d) * cfg.sigma
    p_y = cfg.p(y)
    return p_y * normal_cdf((a + w) / s) + (1.0 - p_y) * normal_cdf((a - w) / s)


def clean_accuracy(w: np.ndarray | float, y: int, cfg: CFAToyConfig) -> np.ndarray:
    """A_y(f_w): clean accuracy of class y (Eqs. 13-14)."""
    return class_accuracy(w, y, 0.0, cfg)


def robust_accuracy(w: np.ndarray | float, y: int, cfg: CFAToyConfig, eps: float | None = None) -> np.ndarray:
    """R_y(f_w): robust accuracy of class y under budget eps (default cfg.eps_robust = 2*eta) (Eq. 16)."""
    return class_accuracy(w, y, cfg.eps_robust if eps is None else eps, cfg)


def train_accuracy(w: np.ndarray | float, eps_pos: float, eps_neg: float, cfg: CFAToyConfig) -> np.ndarray:
    """J(w): adversarial-training accuracy with class-wise budgets, the objective of Thm. 2 (Eq. 19) per class."""
    return 0.5 * (class_accuracy(w, +1, eps_pos, cfg) + class_accuracy(w, -1, eps_neg, cfg))


def optimal_w_uniform(eps: float, cfg: CFAToyConfig) -> float:
    """w*(eps), the adversarial-training optimum for one budget eps for both classes (Thm. 2, Eq. 21).

    Why inf past eta: with eps >= eta the shifted non-robust features carry no (or reversed) evidence, J is
    increasing in w, and the supremum is the robust-feature-only classifier.
    """
    if eps >= cfg.eta:
        return math.inf
    p = 0.5 * (cfg.p_pos + cfg.p_neg)
    return cfg.sigma2 * math.log(p / (1.0 - p)) / (2.0 * (cfg.eta - eps))


def best_clean_w(y: int, cfg: CFAToyConfig) -> float:
    """w_y^clean, the w of best clean accuracy of class y (Thm. 3): sigma^2 ln(p_y/(1-p_y)) / (2 eta)."""
    p_y = cfg.p(y)
    return cfg.sigma2 * math.log(p_y / (1.0 - p_y)) / (2.0 * cfg.eta)


def train_accuracy_slope(w: float, eps_pos: float, eps_neg: float, cfg: CFAToyConfig) -> float:
    """dJ/dw, the left-hand side of the stationarity condition (Eq. 20, one term per class and budget)."""
    s = math.sqrt(cfg.d) * cfg.sigma
    total = 0.0
    for y, eps in ((+1, eps_pos), (-1, eps_neg)):
        a = cfg.d * (cfg.eta - eps)
        p_y = cfg.p(y)
        total += p_y * math.exp(-0.5 * ((a + w) / s) ** 2) - (1.0 - p_y) * math.exp(-0.5 * ((a - w) / s) ** 2)
    return total / (2.0 * s * math.sqrt(2.0 * math.pi))


def optimal_w(eps_pos: float, eps_neg: float, cfg: CFAToyConfig, n_grid: int = 4001) -> float:
    """argmax_{w in [0, inf]} J(w) for class-wise budgets (eps_{+1}, eps_{-1}); may return inf.

    Why numeric: with eps_{+1} != eps_{-1} the stationarity condition of Eq. 20 mixes two Gaussians and has
    no closed form. J is within 1e-30 of its limit (p_{+1}+p_{-1})/2 = J(inf) once w exceeds every
    |d(eta-eps_y)| by 12 s, so a grid on [0, max|a_y| + 12 s] plus the point w = inf brackets the maximiser,
    and bisection on dJ/dw inside the best grid cell refines it. w = inf is returned when no finite w beats
    J(inf) by more than 1e-12 (near eps = eta the finite optimum of Thm. 2 is huge and worth less than that).
    Equal budgets reproduce `optimal_w_uniform` (tested).
    """
    s = math.sqrt(cfg.d) * cfg.sigma
    a_max = max(abs(cfg.d * (cfg.eta - eps_pos)), abs(cfg.d * (cfg.eta - eps_neg)))
    grid = np.linspace(0.0, a_max + 12.0 * s, n_grid)
    k = int(np.argmax(train_accuracy(grid, eps_pos, eps_neg, cfg)))
    slope = lambda t: train_accuracy_slope(t, eps_pos, eps_neg, cfg)  # noqa: E731
    candidates = [float(grid[k])]
    for lo, hi in ((grid[max(k - 1, 0)], grid[k]), (grid[k], grid[min(k + 1, n_grid - 1)])):
        if lo < hi and slope(lo) > 0.0 > slope(hi):  # a stationary maximum inside this grid cell
            for _ in range(200):
                mid = 0.5 * (lo + hi)
                if mid in (lo, hi):
                    break
                lo, hi = (mid, hi) if slope(mid) > 0.0 else (lo, mid)
            candidates.append(0.5 * (lo + hi))
    w = max(candidates, key=lambda t: float(train_accuracy(t, eps_pos, eps_neg, cfg)))
    if 0.5 * (cfg.p_pos + cfg.p_neg) >= float(train_accuracy(w, eps_pos, eps_neg, cfg)) - 1e-12:
        return math.inf
    return w


def classwise_curves(w: np.ndarray, cfg: CFAToyConfig) -> dict[str, np.ndarray]:
    """The four curves of Fig. 1(b): clean and robust accuracy of each class along w."""
    return {
        "clean_pos": clean_accuracy(w, +1, cfg),
        "clean_neg": clean_accuracy(w, -1, cfg),
        "robust_pos": robust_accuracy(w, +1, cfg),
        "robust_neg": robust_accuracy(w, -1, cfg),
    }


def curves_vs_budget(eps: Sequence[float], cfg: CFAToyConfig) -> dict[str, np.ndarray]:
    """The same four curves along the uniform training budget, through w*(eps) of Thm. 2 (not a paper panel)."""
    w = np.array([optimal_w_uniform(float(e), cfg) for e in eps])
    return {"w": w, **classwise_curves(w, cfg)}


def sample(n_per_class: int, cfg: CFAToyConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n_per_class draws of each class from Eq. 5 (Eq. 9 for d=1): x of shape (2n, d+1), y in {+1,-1}."""
    xs, ys = [], []
    for y in CLASSES:
        x1 = np.where(rng.random(n_per_class) < cfg.p(y), y, -y).astype(float)
        xr = rng.normal(cfg.eta * y, cfg.sigma, size=(n_per_class, cfg.d))
        xs.append(np.column_stack([x1, xr]))
        ys.append(np.full(n_per_class, y))
    return np.concatenate(xs), np.concatenate(ys)


def draw_fig1(path_stem: str | Path, cfg: CFAToyConfig = CFAToyConfig()) -> tuple[Path, Path]:
    """Write `<path_stem>.png` and `<path_stem>.pdf`: the CFA Fig. 1 panels, computed from the formulas.

    (a) 100 samples per class of the d=1 model in the (x_1, x_2) plane, class +1 red, class -1 blue (App. A);
    (b) clean and robust (eps = 2 eta) accuracy of both classes along w, with the per-class clean optima of
        Thm. 3 marked;
    (c) [not in the paper] the same accuracies along a uniform training budget eps, through w*(eps) (Thm. 2).
    Returns the two paths written.
    """
    import seaborn as sns
    from matplotlib.figure import Figure

    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    colors = {+1: "tab:red", -1: "tab:blue"}
    scatter_cfg = cfg if cfg.d == 1 else CFAToyConfig(p_pos=cfg.p_pos, p_neg=cfg.p_neg, eta=cfg.eta,
                                                      sigma2=cfg.sigma2, d=1, seed=cfg.seed)
    x, y = sample(cfg.n_scatter, scatter_cfg, np.random.default_rng(cfg.seed))

    with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.1):
        fig = Figure(figsize=(14.5, 4.3), layout="constrained")
        ax_a, ax_b, ax_c = fig.subplots(1, 3, gridspec_kw={"width_ratios": [0.8, 1.0, 1.0]})

        for label, marker in ((+1, "o"), (-1, "x")):
            m = y == label
            ax_a.scatter(x[m, 0], x[m, 1], s=22, alpha=0.55, marker=marker, color=colors[label],
                         label=f"y = {label:+d}  (p = {cfg.p(label):g})")
        ax_a.set_xticks([-1, 1])
        ax_a.set_xlim(-1.8, 1.8)
        ax_a.set_xlabel("robust feature $x_1$")
        ax_a.set_ylabel("non-robust feature $x_2$")
        ax_a.set_title(f"(a) {cfg.n_scatter} samples per class, d = 1")
        ax_a.legend(loc="lower right", fontsize=8, frameon=True)

        w = np.linspace(0.0, cfg.w_max_plot, 401)
        curves = classwise_curves(w, cfg)
        for label, key in ((+1, "pos"), (-1, "neg")):
            ax_b.plot(w, curves[f"clean_{key}"], color=colors[label], lw=2, label=f"clean, y = {label:+d}")
            ax_b.plot(w, curves[f"robust_{key}"], color=colors[label], lw=2, ls="--",
                      label=f"robust, y = {label:+d}")
            wc = best_clean_w(label, cfg)
            if wc <= cfg.w_max_plot:
                ax_b.axvline(wc, color=colors[label], lw=0.9, ls=":")
                ax_b.annotate(f"$w^{{\\rm clean}}_{{{label:+d}}}$", (wc, 0.02), xycoords=("data", "axes fraction"),
                              color=colors[label], ha="left", fontsize=9)
        ax_b.set_xlim(0, cfg.w_max_plot)
        ax_b.set_ylim(0, 1)
        ax_b.set_xlabel("$w$ (weight on robust feature)")
        ax_b.set_ylabel("class-wise accuracy")
        ax_b.set_title(f"(b) accuracy vs. $w$; robust at $\\epsilon = {cfg.eps_robust:g}$")
        ax_b.legend(loc="lower right", fontsize=8, frameon=True)

        eps = np.linspace(0.0, 1.2 * cfg.eta, 241)
        bud = curves_vs_budget(eps, cfg)
        for label, key in ((+1, "pos"), (-1, "neg")):
            ax_c.plot(eps, bud[f"clean_{key}"], color=colors[label], lw=2, label=f"clean, y = {label:+d}")
            ax_c.plot(eps, bud[f"robust_{key}"], color=colors[label], lw=2, ls="--",
                      label=f"robust, y = {label:+d}")
        ax_c.axvline(cfg.eta, color="0.4", lw=0.9, ls=":")
        ax_c.annotate("$w^* = \\infty$ from $\\epsilon = \\eta$ on ", (cfg.eta, 0.02),
                      xycoords=("data", "axes fraction"), color="0.3", ha="right", fontsize=9)
        ax_c.set_xlim(0, eps[-1])
        ax_c.set_ylim(0, 1)
        ax_c.set_xlabel("training budget $\\epsilon$ (both classes), $w = w^*(\\epsilon)$ of Thm. 2")
        ax_c.set_ylabel("class-wise accuracy")
        ax_c.set_title("(c) [not in paper] accuracy vs. training budget")
        ax_c.legend(loc="lower left", fontsize=8, frameon=True)

        fig.suptitle(f"CFA toy model (Fig. 1), computed: $p_{{+1}}={cfg.p_pos:g}$, $p_{{-1}}={cfg.p_neg:g}$, "
                     f"$\\eta={cfg.eta:g}$, $\\sigma^2={cfg.sigma2:g}$, $d={cfg.d}$", fontsize=11)
        png, pdf = stem.parent / f"{stem.name}.png", stem.parent / f"{stem.name}.pdf"
        fig.savefig(png, dpi=150)
        fig.savefig(pdf)
    return png, pdf
