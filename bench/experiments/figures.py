"""Drawing a figure from the run store: gather the finished runs of its plan, hand them to its `draw`."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from bench.experiments.base import Figure, FigureInput
from bench.experiments.render import group_runs
from bench.store import RunStore


def figure_input(figure: Figure, store: RunStore, profile: str,
                 substitutions: Mapping[str, str] | None = None) -> FigureInput:
    runs, missing, by_id = {}, [], {}
    for key, planned in group_runs(figure.runs(profile, substitutions)).items():
        finished = [store.run_dir(run.config) for run in planned
                    if run.config is not None and store.run_dir(run.config).status() == "done"]
        by_id.update({run.config.run_id(): run for run in planned if run.config is not None})
        if finished:
            runs[key] = finished
        else:
            missing.append(key)
    return FigureInput(profile, runs, missing, by_id)


def draw(figure: Figure, runs_dir: str | None, profile: str, out_dir: Path,
         substitutions: Mapping[str, str] | None = None) -> tuple[list[Path], list[str]]:
    """Write <out_dir>/<profile>/<id>.png and .pdf (one folder per profile, as tables, so a smoke drawing never
    replaces a fast or paper one); returns their paths and the keys of runs not finished yet."""
    inputs = figure_input(figure, RunStore(runs_dir), profile, substitutions)
    return list(figure.draw(inputs, out_dir / profile / figure.id)), inputs.missing
