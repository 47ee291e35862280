"""BiLAW's weight figures (Fig. 3, 5, 6), all drawn from one run: Table 2's BiLAW on CIFAR-10, Small-CNN,
ε = 0.031 (the paper does not name the network of these figures; its Fig. 4 uses a small-CNN trained with
BiLAW [AMBIG]), so they cost no training of their own.

* Fig. 5 reads the run's epoch records: ω_μ's predictions for a fixed subset of training samples, clean and
  adversarial (`methods.bilaw.bilaw_weight_log`).
* Fig. 3(a) reads the per-class quantiles of the last epoch's training weights (relative to uniform).
* Fig. 3(b–d) and Fig. 6 need one look at the final network and its final ω_μ (`last.pt`): a probe of the first
  test images — PGD-20 predictions, and the training attack (CE-PGD-K, uniform start, eval mode) with GAIRAT's
  κ counted on the way — and the weight BiLAW's ω_μ, MAIL's and GAIRAT's formulas (Table 2's MAIL and GAIRAT
  hyperparameters) give each adversarial example. MAIL's and GAIRAT's distributions are thus taken on the BiLAW
  network, as the scatter plots (c, e) require [AMBIG]. Weights are shown relative to their mean over the
  probe images. The probe is cached as JSON in the run folder, so redrawing is cheap.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import atomic
from bench.attacks import pgd
from bench.checkpoint_io import load_checkpoint
from bench.data import DATASETS, load_dataset
from bench.experiments.base import Figure, FigureInput, PlannedRun, register
from bench.papers.bilaw.tables import TABLE2_METHODS, table2_run
from bench.experiments.plotting import footer, new_figure, save
from bench.store import RunDir
from bench.training.assemble import Runtime, attack_budget, make_model, resolve_device
from methods import resolved_hparams
from methods.bilaw.bilaw import weighting_net_state
from methods.bilaw.bilaw_meta import WeightingNet, input_size, parse_widths, weight_inputs
from methods.reweighting.gairat import geometry_weights, pgd_counting_correct
from methods.reweighting.mail import mail_weights

SOURCE = ("Small-CNN", "ε = 0.031", "BiLAW (ours)")
PROBE_N = 1000  # test images probed (fewer when the run evaluates fewer, as smoke runs do)
PROBE_BATCH = 250
SHOWN_IMAGES = 8
HEURISTICS = ("MAIL", "GAIRAT")
CIFAR10_CLASSES = ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def plan(profile: str) -> list[PlannedRun]:
    return [table2_run(profile, *SOURCE)]


def _source_run(inputs: FigureInput) -> RunDir | None:
    runs = inputs.runs.get(plan(inputs.profile)[0].key, [])
    return runs[0] if runs else None


def _class_names(dataset: str) -> list[str]:
    classes = DATASETS.get(dataset).num_classes
    if dataset.startswith("cifar10") and classes == 10:
        return list(CIFAR10_CLASSES)
    return [str(c) for c in range(classes)]


def _say(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=8, wrap=True)
    ax.set_axis_off()


# ---------------------------------------------------------------------------------------------- probe


def weight_probe(run: RunDir) -> dict[str, Any]:
    """The probe of the run's final network (see the module docstring), computed once and cached."""
    path = run.extra("bilaw_weight_probe")
    if path.exists():
        return json.loads(path.read_text())
    probe = _compute_probe(run)
    atomic.write_json(path, probe)
    return probe


def _compute_probe(run: RunDir) -> dict[str, Any]:
    cfg = run.config()
    info = DATASETS.get(cfg.dataset)
    eps, step = attack_budget(cfg, info)
    device = resolve_device("auto")
    state = load_checkpoint(run.last_ckpt, device)
    model = make_model(cfg, info, Runtime(device))
    model.load_state_dict(state["model"])
    model.eval()
    hp = resolved_hparams(cfg.method, cfg.hp_dict)
    net = WeightingNet(input_size(hp["weight_input"], info.num_classes), parse_widths(hp["hidden"])).to(device)
    net.load_state_dict(weighting_net_state(state["method"]))
    mail = resolved_hparams("mail_at", dict(TABLE2_METHODS["MAIL"][1]))
    gairat = resolved_hparams("gairat", dict(TABLE2_METHODS["GAIRAT"][1]))
    _, test = load_dataset(cfg.dataset)
    n = min(PROBE_N, len(test), cfg.eval_n or PROBE_N)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("labels", "pred_pgd20", "kappa", "BiLAW", "MAIL")}
    for start in range(0, n, PROBE_BATCH):
        batch = test.subset(torch.arange(start, min(start + PROBE_BATCH, n)))
        x, y = batch.float_images().to(device), batch.y.to(device)
        attack = dict(eps=eps, step_size=step, norm=cfg.norm, init="uniform", bn_mode="eval", generator=generator)
        x_pgd20 = pgd(model, x, y, steps=20, **attack)
        x_adv, kappa = pgd_counting_correct(model, x, y, steps=cfg.attack_steps, **attack)
        with torch.no_grad():
            logits_clean, logits_adv = model(x), model(x_adv)
            parts["pred_pgd20"].append(model(x_pgd20).argmax(1))
            parts["BiLAW"].append(net.raw_weights(weight_inputs(hp["weight_input"], logits_adv, y, logits_clean)))
            parts["MAIL"].append(mail_weights(logits_adv, y, mail["slope"], mail["bias"]))
        parts["labels"].append(y)
        parts["kappa"].append(kappa)
    merged = {k: torch.cat(v).cpu() for k, v in parts.items()}
    weights = {"BiLAW": merged["BiLAW"], "MAIL": merged["MAIL"],
               "GAIRAT": geometry_weights(merged["kappa"], cfg.attack_steps, gairat["lam"])}
    return {
        "run_id": run.path.name, "checkpoint": "last", "epoch": state["epoch"], "n": n, "eps": eps,
        "step_size": step, "train_attack_steps": cfg.attack_steps, "mail_hparams": mail, "gairat_hparams": gairat,
        "labels": merged["labels"].tolist(), "pred_pgd20": merged["pred_pgd20"].tolist(),
        "kappa": merged["kappa"].tolist(),
        "weights": {name: (w / w.mean()).float().tolist() for name, w in weights.items()},  # mean 1
    }


# ---------------------------------------------------------------------------------------------- panels


def _quantile_boxes(ax, run: RunDir, names: list[str]) -> None:
    """Fig. 3(a): the last epoch's per-class training-weight quantiles as boxes (whiskers 5%–95%)."""
    records = [r for r in run.records() if "weight_quantiles" in r]
    if not records:
        _say(ax, "this run did not record weight quantiles")
        return
    last = records[-1]["weight_quantiles"]["per_class"]
    stats = [{"label": names[c], "whislo": q[0], "q1": q[1], "med": q[2], "q3": q[3], "whishi": q[4], "fliers": []}
             for c, q in enumerate(last) if q is not None]
    ax.bxp(stats, showfliers=False)
    ax.axhline(1.0, ls=":", color="0.4", lw=0.8)
    ax.tick_params(axis="x", rotation=45)
    ax.set_ylabel("weight × batch size (1 = uniform)")
    ax.set_title(f"(a) BiLAW weights per class, epoch {records[-1]['epoch'] + 1}")


def _confusion(ax, probe: dict[str, Any], names: list[str]) -> None:
    """Fig. 3(b): PGD-20 predictions per true class, each row normalised to 1."""
    k = len(names)
    counts = np.zeros((k, k))
    np.add.at(counts, (np.array(probe["labels"]), np.array(probe["pred_pgd20"])), 1)
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.figure.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(k), names, rotation=45, fontsize=6)
    ax.set_yticks(range(k), names, fontsize=6)
    ax.set_xlabel("prediction under PGD-20")
    ax.set_ylabel("true class")
    ax.set_title(f"(b) adversarial confusion, {probe['n']} test images")
    ax.grid(False)


def _image_strip(ax, run: RunDir, probe: dict[str, Any], names: list[str], highest: bool) -> None:
    """Fig. 3(c, d): the probed test images BiLAW weighs least / most, with their class and relative weight."""
    weights = np.array(probe["weights"]["BiLAW"])
    order = np.argsort(weights, kind="stable")
    chosen = (order[::-1] if highest else order)[:SHOWN_IMAGES]
    _, test = load_dataset(run.config().dataset)
    images = test.x[torch.as_tensor(chosen.copy())].permute(0, 2, 3, 1).numpy()
    strip = np.concatenate(list(images), axis=1)
    ax.imshow(strip.squeeze(-1) if strip.shape[-1] == 1 else strip, cmap="gray")
    side = images.shape[2]
    labels = [f"{names[probe['labels'][i]]}\n{weights[i]:.3g}" for i in chosen]
    ax.set_xticks([side * (j + 0.5) for j in range(len(chosen))], labels, fontsize=6)
    ax.set_yticks([])
    ax.grid(False)
    ax.set_title("(d) highest BiLAW weight" if highest else "(c) lowest BiLAW weight")


def _per_class(ax, probe: dict[str, Any], method: str, names: list[str], title: str) -> None:
    """Fig. 6(a, b, d): a method's relative weights of the probed test images, per class."""
    labels, weights = np.array(probe["labels"]), np.array(probe["weights"][method])
    present = [c for c in range(len(names)) if (labels == c).any()]
    ax.boxplot([weights[labels == c] for c in present], positions=range(len(present)), showfliers=False)
    ax.set_xticks(range(len(present)), [names[c] for c in present], rotation=45, fontsize=6)
    ax.set_ylabel(f"{method} weight (mean 1)")
    ax.set_title(title)


def _scatter(ax, probe: dict[str, Any], method: str, title: str) -> None:
    """Fig. 6(c, e): a heuristic's weight against BiLAW's for each probed test image, with Pearson's r."""
    x, y = np.array(probe["weights"]["BiLAW"]), np.array(probe["weights"][method])
    ax.scatter(x, y, s=4, alpha=0.4)
    r = np.corrcoef(x, y)[0, 1] if x.std() > 0 and y.std() > 0 else float("nan")
    ax.set_xlabel("BiLAW weight (mean 1)")
    ax.set_ylabel(f"{method} weight (mean 1)")
    ax.set_title(f"{title}, r = {r:.2f}")


# ---------------------------------------------------------------------------------------------- figures


def draw_fig3(inputs: FigureInput, path_stem: Path) -> tuple[Path, Path]:
    fig, axes = new_figure(ncols=2, nrows=2, width=4.8, height=3.6)
    run = _source_run(inputs)
    if run is None:
        for ax in axes:
            _say(ax, "the BiLAW run has not finished")
    else:
        names = _class_names(run.config().dataset)
        probe = weight_probe(run)
        _quantile_boxes(axes[0], run, names)
        _confusion(axes[1], probe, names)
        _image_strip(axes[2], run, probe, names, highest=False)
        _image_strip(axes[3], run, probe, names, highest=True)
    footer(fig, inputs)
    return save(fig, path_stem)


def draw_fig5(inputs: FigureInput, path_stem: Path) -> tuple[Path, Path]:
    fig, axes = new_figure(ncols=2, width=4.6, height=3.4)
    run = _source_run(inputs)
    records = [] if run is None else run.records()
    tracked = [r for r in records if "weight_tracked" in r]
    if not tracked:
        for ax in axes:
            _say(ax, "the BiLAW run has not finished" if run is None else "this run did not record tracked weights")
    else:
        epochs = [r["epoch"] + 1 for r in tracked]
        series = {part: np.array([[np.nan if v is None else v for v in r["weight_tracked"][part]] for r in tracked])
                  for part in ("clean", "adv")}
        both = np.concatenate([s.ravel() for s in series.values()])
        low, high = np.nanmin(both), np.nanmax(both)
        used_lr = [r["lr"] for r in records]  # the lr each epoch started at
        drops = [epoch for epoch in range(1, len(used_lr)) if used_lr[epoch] < used_lr[epoch - 1]]  # 0-based
        titles = {"clean": "(a) clean training samples", "adv": "(b) their adversarial examples"}
        for ax, (part, values), colour in zip(axes, series.items(), ("C0", "C3")):
            ax.plot(epochs, values, color=colour, alpha=0.3, lw=0.8, marker="." if len(epochs) == 1 else None)
            ax.plot(epochs, np.nanmedian(values, axis=1), color="k", lw=2, marker="o" if len(epochs) == 1 else None,
                    label=f"median of {values.shape[1]} samples")
            for epoch in drops:
                ax.axvline(epoch + 0.5, ls=":", color="0.5", lw=0.8)  # between 1-based epochs `epoch` and +1
            margin = 0.05 * (high - low) or 1e-3
            ax.set_ylim(low - margin, high + margin)
            ax.set_xlabel("epoch (dotted: learning-rate drops)")
            ax.set_ylabel(r"raw predicted weight $\omega_\mu(\Delta)$")
            ax.set_title(titles[part])
            ax.legend(fontsize=7)
    footer(fig, inputs)
    return save(fig, path_stem)


def draw_fig6(inputs: FigureInput, path_stem: Path) -> tuple[Path, Path]:
    fig, axes = new_figure(ncols=3, nrows=2, width=4.0, height=3.2)
    run = _source_run(inputs)
    if run is None:
        for ax in axes:
            _say(ax, "the BiLAW run has not finished")
    else:
        names = _class_names(run.config().dataset)
        probe = weight_probe(run)
        _per_class(axes[0], probe, "BiLAW", names, "(a) BiLAW weights per class")
        _per_class(axes[1], probe, "MAIL", names, "(b) MAIL weights per class")
        _scatter(axes[2], probe, "MAIL", "(c) MAIL vs BiLAW")
        _per_class(axes[3], probe, "GAIRAT", names, "(d) GAIRAT weights per class")
        _scatter(axes[4], probe, "GAIRAT", "(e) GAIRAT vs BiLAW")
        axes[5].set_axis_off()
    footer(fig, inputs)
    return save(fig, path_stem)


FIG3 = register(Figure(
    id="fig3_bilaw", paper="bilaw",
    title="BiLAW Fig. 3: per-class weights, adversarial confusion matrix, test images of low and high weight",
    plan=plan, draw=draw_fig3,
    notes="From Table 2's BiLAW Small-CNN ε = 0.031 run: (a) last-epoch training weights per class; (b–d) a probe "
          "of its final network on the first test images (PGD-20 confusion; images BiLAW's ω_μ weighs least/most)."))
FIG5 = register(Figure(
    id="fig5_bilaw", paper="bilaw",
    title="BiLAW Fig. 5: ω_μ's predicted weights of tracked training samples over epochs, clean and adversarial",
    plan=plan, draw=draw_fig5,
    notes="The first 32 training samples, measured at the end of each epoch in eval mode (the training attack "
          "for the adversarial panel), from Table 2's BiLAW Small-CNN ε = 0.031 run."))
FIG6 = register(Figure(
    id="fig6_bilaw", paper="bilaw",
    title="BiLAW Fig. 6: BiLAW, MAIL and GAIRAT weights per class and against each other",
    plan=plan, draw=draw_fig6,
    notes="All three weightings evaluated on the final network of Table 2's BiLAW Small-CNN ε = 0.031 run, on the "
          "training adversaries of the first test images; MAIL/GAIRAT with Table 2's hyperparameters [AMBIG]."))
