"""The GPU benchmark (bench/benchmarks/gpu.py) at its tiny CPU size: every row is measured, the JSON is complete,
and the cost model reads its throughput from it."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from bench import cost
from bench.benchmarks import gpu


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "gpu_benchmark.json"
    torch.manual_seed(0)
    result = gpu.run(gpu.TINY, torch.device("cpu"), out)
    return result, out


def test_tiny_run_measures_every_loop_and_writes_one_json(tiny_result, capsys):
    result, out = tiny_result
    assert json.loads(out.read_text()) == result
    rows = {(r["loop"], r["precision"], r["compiled"]) for r in result["rows"]}
    assert rows == {("bench", p, False) for p in gpu.PRECISIONS} | {("hand", p, False) for p in gpu.PRECISIONS} \
        | {("official", "fp32", False), ("official", "default", False)}  # compiled rows only at full size
    for r in result["rows"]:
        assert r["ms_per_step"] > 0
        assert r["epoch_seconds"] == pytest.approx(r["ms_per_step"] / 1000 * math.ceil(50_000 / gpu.TINY.batch))
    assert set(result["method_ms_per_step"]) == {"trades", "caat", "bilaw"}
    assert all(v > 0 for v in result["method_ms_per_step"].values())
    assert result["autoattack"]["images"] == gpu.TINY.aa_images and result["autoattack"]["images_per_s"] > 0
    assert result["data"] == "synthetic" and result["cost_model_flops_per_s"] > 0 and result["skipped"] == []
    gpu.print_table(result)
    assert "bench     bf16" in capsys.readouterr().out


def test_cost_model_takes_the_measured_gpu_throughput(tiny_result, monkeypatch):
    result, out = tiny_result
    monkeypatch.setenv("BENCH_GPU_BENCHMARK", str(out))
    throughput = cost.gpu_throughput()
    assert throughput.flops_per_s == result["cost_model_flops_per_s"]
    assert str(out) in throughput.source and result["device"] in throughput.source
    monkeypatch.setenv("BENCH_GPU_BENCHMARK", str(out.parent / "missing.json"))
    assert cost.gpu_throughput().flops_per_s == cost.GPU_FLOPS and "assumed" in cost.gpu_throughput().source


def test_compiled_rows_past_the_time_budget_are_listed_as_skipped(tmp_path):
    result = gpu.run(replace(gpu.TINY, compile=True), torch.device("cpu"), tmp_path / "g.json", budget_s=0)
    assert result["skipped"] == ["bench_loop bf16 compiled", "bench_loop tf32 compiled", "hand_loop bf16 compiled",
                                 "hand_loop tf32 compiled"]
    assert not any(r["compiled"] for r in result["rows"])
