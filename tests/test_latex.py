"""The .tex table: symbols escaped for LaTeX (no raw ε, ℓ, ∞, ±) and booktabs with grouped column headers."""
import math

import pandas as pd

from bench.experiments.render import to_latex


def test_latex_escapes_symbols_and_groups_headers_with_cmidrule():
    columns = [f"Tiny-CNN / perturbation: {n} / ε = {e} / {m}" for n, e in (("ℓ∞", 0.1), ("ℓ2", 0.3))
               for m in ("Clean", "PGD")]
    cells = pd.DataFrame([{"row": "F-MNIST / AT", "column": c, "ours": 70.0 + i, "ours_std": 1.0 if i == 0 else math.nan,
                           "published": 80.0} for i, c in enumerate(columns)])
    tex = to_latex(cells)
    assert tex.isascii()
    assert r"\multicolumn{4}{c}{Tiny-CNN} \\" in tex and r"\cmidrule(lr){2-5}" in tex
    assert r"\multicolumn{2}{c}{perturbation: \ensuremath{\ell_\infty}}" in tex and r"\cmidrule(lr){4-5}" in tex
    assert r"\multicolumn{2}{c}{\ensuremath{\varepsilon} = 0.1}" in tex
    assert r" & Clean & PGD & Clean & PGD \\" in tex
    assert r"F-MNIST / AT & 70.0\ensuremath{\pm}1.0 (80) & 71.0 (80)" in tex
    assert [line for line in tex.splitlines() if line.startswith("\\") and "rule" in line and "cmid" not in line] == \
        [r"\toprule", r"\midrule", r"\bottomrule"]
