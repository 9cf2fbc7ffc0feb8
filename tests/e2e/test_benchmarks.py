"""The benchmarks' own machinery: the GPU benchmark's dry run on a CPU, and per-process peak memory."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO, subprocess_env

sys.path.insert(0, str(REPO / "benchmarks"))

import deploy
from gpu import peak_flops
from process_stats import run_measured

pytestmark = pytest.mark.e2e  # end to end: trains or starts processes, seconds each


def test_gpu_benchmark_dry_run_measures_every_arm(offline_checkpoints, tmp_path):
    """``benchmarks/gpu.py --dry``: tiny config-built BERT and ViT, the transformers-script arm and hftransfer's,
    each in its own process; the figures the GPU table is made of are all there and consistent."""
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu.py", "--dry", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert set(results) == {"bert-base", "vit-b16"}
    for workload, run in results.items():
        assert set(run["arms"]) == {"transformers", "fp32"}, run["arms"]
        flops = run["arms"]["transformers"]["flops_per_sample"]
        assert flops > 0
        for arm, figures in run["arms"].items():
            assert figures["samples_per_second"] > 0 and figures["timed_steps"] == 2, (workload, arm)
            assert figures["tflops"] == pytest.approx(flops * figures["samples_per_second"] / 1e12)
            assert figures["mfu"] is None and figures["peak_gpu_memory_gib"] is None  # a CPU has no peak figure
    assert "vs plain" in done.stdout and "bert-base" in done.stdout


def test_peak_flops_by_gpu_name_and_precision():
    assert peak_flops("NVIDIA H100 80GB HBM3", "bf16") == pytest.approx(989.4e12)
    assert peak_flops("NVIDIA H100 PCIe", "fp32") == pytest.approx(51.2e12)  # the PCIe card, not the SXM one
    assert peak_flops("NVIDIA H200", "bf16_compile") == pytest.approx(989.4e12)
    assert peak_flops("NVIDIA A100-SXM4-80GB", "transformers") == pytest.approx(19.5e12)  # fp32
    assert peak_flops("Some Future GPU", "bf16") is None


def test_peak_memory_is_measured_per_child_process():
    """Arms run one after another from one parent: each one's peak is its own, not the largest so far."""
    grow = "import numpy, time; a = numpy.ones(64 * 2**20); time.sleep(1); print(a.sum())"  # 512 MiB, touched
    big = run_measured([sys.executable, "-c", grow])
    small = run_measured([sys.executable, "-c", "import time; time.sleep(1); print(1)"])
    assert big.returncode == 0 and big.stdout.strip() == str(float(64 * 2**20))
    assert big.peak_rss_mib > 512
    assert small.peak_rss_mib < 100 < big.peak_rss_mib


def test_deploy_table_ratios_are_against_the_teachers_pytorch_row():
    def figures(scale: float) -> dict:
        found = {"file_mb": 80 * scale, "latency_ms_p50": 10 * scale, "latency_ms_p95": 12 * scale}
        return found | {"model_ms_p50": 8 * scale, "throughput_per_s": 100 / scale, "accuracy": {"test": 0.9}}

    def measured(*scales: float) -> dict:
        return {"metric": "accuracy", "variants": dict(zip(deploy.VARIANTS, map(figures, scales)))}

    teacher = deploy.rows("text", "teacher", measured(1.0, 0.5, 0.25), None)  # PyTorch, ONNX fp32, ONNX int8
    student = deploy.rows("text", "student", measured(0.5, 0.25, 0.125), teacher[0])
    assert [r["size_ratio"] for r in teacher] == [1.0, 0.5, 0.25] and teacher[2]["speedup_batch1"] == 4.0
    assert student[0]["size_ratio"] == 0.5 and student[2]["speedup_batch1"] == 8.0
    assert student[0]["throughput_ratio"] == 2.0 and student[0]["split"] == "test"
    refused = deploy.rows("image", "student", {"refused": "no layers to cut"}, None)
    table = deploy.markdown({"text": {"rows": teacher + student}, "image": {"rows": refused}})
    assert "| text | student | ONNX int8 | 0.9000 (test) | 10.0 | 0.12 | 1.2 / 1.5 | 8.0× |" in table
    assert "refused: no layers to cut" in table
