"""Cluster profiles: one small TOML file per cluster under `slurm/clusters/`, chosen with `--cluster NAME`
(or a path to a .toml file). Every key is documented in `slurm/clusters/example.toml`."""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path

CLUSTERS_DIR = Path(__file__).resolve().parents[2] / "slurm" / "clusters"


@dataclass(frozen=True)
class ClusterProfile:
    name: str
    partition: str = ""
    account: str = ""
    qos: str = ""
    gpus_per_job: int = 1
    cpus_per_job: int = 8
    mem_gb: int = 32
    time_limit_min: int = 0  # 0: from each array's estimated cost (×2, ≥ min_time_min); else every job gets this
    min_time_min: int = 30
    max_time_min: int = 2880  # the partition's longest job; a run that needs longer is requeued from its checkpoint
    array_parallelism: int = 64  # array tasks running at once
    max_array_size: int = 1000  # the cluster's MaxArraySize: bigger submissions are split
    max_requeues: int = 3  # preemptions / time-outs a job may be requeued for (it resumes from its last epoch)
    lease_hours: float = 72.0  # a submitted run is taken for this long when SLURM cannot be asked about its job
    extra_sbatch: tuple[str, ...] = ()  # e.g. ("--constraint=h100", "--exclude=node7")
    setup: tuple[str, ...] = ()  # shell lines run before the job, e.g. module loads, `source venv/bin/activate`
    python: str = ""  # interpreter on the nodes; "": the one running `bench run`
    signal_delay_s: int = 120  # SLURM warns a job this long before its time limit, to checkpoint and requeue

    def __post_init__(self) -> None:
        for name in ("cpus_per_job", "mem_gb", "min_time_min", "max_time_min", "array_parallelism", "max_array_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"cluster profile {self.name!r}: {name}={getattr(self, name)} must be ≥ 1")
        for line in self.extra_sbatch:
            if not line.startswith("--") or "=" not in line:
                raise ValueError(f"cluster profile {self.name!r}: extra_sbatch line {line!r}; write '--option=value'")

    def sbatch_parameters(self) -> dict[str, str]:
        return dict(line[2:].split("=", 1) for line in self.extra_sbatch)


def load_cluster(name_or_path: str, directory: Path = CLUSTERS_DIR) -> ClusterProfile:
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = directory / f"{name_or_path}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.toml"))
        raise FileNotFoundError(f"no cluster profile {name_or_path!r} ({path}); profiles in {directory}: "
                                f"{', '.join(known) or 'none'} — copy example.toml to add one")
    values = tomllib.loads(path.read_text())
    known_keys = {f.name for f in dataclasses.fields(ClusterProfile)} - {"name"}
    unknown = sorted(set(values) - known_keys)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; allowed: {sorted(known_keys)}")
    for key in ("extra_sbatch", "setup"):
        if key in values:
            values[key] = tuple(values[key])
    return ClusterProfile(name=path.stem, **values)
