"""Deployed accuracy, size and speed: PyTorch fp32, ONNX fp32, ONNX int8 and a distilled student (PyTorch, ONNX fp32
and int8) of the text and image quickstart models, in one run, with ratios against the teacher's PyTorch fp32.

Text: MiniLM-L6 on TREC-50 (50 question types, short sentences: an intent-like set), hftransfer's defaults; its
student is the model cut to 3 of its 6 layers by ``hftransfer distill``. Image: EfficientNet-Lite0 on hymenoptera
(the quickstart recipe); ``distill`` cuts transformer layers only, and no smaller ImageNet checkpoint ships offline, so
its student row records the refusal. Every figure is
what ``hftransfer export --quantize int8`` measures and records (test accuracy where the set has a test split, batch-1
latency p50/p95 with the preprocessing, the model alone, batch-32 throughput) on this machine, one process per step.

    python examples/offline_models.py && python benchmarks/deploy.py            # both sets, about 15 min on 2 cores
    python benchmarks/deploy.py --sets text --work /tmp/deploy --reuse         # keep the runs already in --work
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
SETS = {
    "text": {
        "train": [
            "--model",
            "pretrained/all-MiniLM-L6-v2",
            "--train_file",
            f"{DATA}/trec/train.tsv",
            "--test_file",
            f"{DATA}/trec/test.tsv",
        ],
        "distill": ["--student_layers", "3"],
    },
    "image": {
        "train": ["recipes/image_classification/efficientnet_lite0_hymenoptera.yaml"],
        "distill": ["--student_layers", "8"],
    },
}
VARIANTS = {"pytorch": "PyTorch fp32", "onnx_fp32": "ONNX fp32", "onnx_int8": "ONNX int8"}


def hftransfer(*args: str) -> tuple[float, str]:
    """Run one hftransfer command in its own process; (seconds, its output's last lines); raises when it fails."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "hftransfer.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"hftransfer {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started, done.stderr[-2000:]


def trained(folder: Path, make: list[str], reuse: bool) -> float | None:
    """Train (or distil) into ``folder`` unless ``reuse`` finds it finished; the seconds it took."""
    if reuse and (folder / "model.safetensors").is_file():
        return None
    seconds, _ = hftransfer(*make, "--output_dir", str(folder), "--overwrite_output_dir", "true")
    return seconds


def exported(run: Path) -> dict:
    """The int8 export's measurements (``export_report.json``'s ``quantized``); refusals are figures too."""
    try:
        hftransfer("export", str(run), "--quantize", "int8", "--overwrite")
    except RuntimeError as err:
        return {"refused": _last_error(err)}
    return json.loads((run / "onnx" / "export_report.json").read_text())["quantized"]


def _last_error(err: Exception) -> str:
    """The one line hftransfer printed for a refusal (``hftransfer: error: …``)."""
    return str(err).strip().splitlines()[-1].removeprefix("hftransfer: error: ")


def rows(name: str, model: str, measured: dict, baseline: dict | None) -> list[dict]:
    """One row per variant, with ratios against ``baseline`` (the teacher's PyTorch fp32 row)."""
    if "refused" in measured:
        return [{"set": name, "model": model, "variant": "ONNX int8", "refused": measured["refused"]}]
    metric = measured["metric"]
    found = []
    for variant, shown in VARIANTS.items():
        figures = measured["variants"][variant]
        scores = figures[metric]
        row = {
            "set": name,
            "model": model,
            "variant": shown,
            "split": "test" if "test" in scores else "validation",
            metric: scores.get("test", scores.get("validation")),
            **{
                k: figures[k]
                for k in ("file_mb", "latency_ms_p50", "latency_ms_p95", "model_ms_p50", "throughput_per_s")
            },
        }
        baseline = baseline or row  # the teacher's own rows: against its first, PyTorch fp32
        row["size_ratio"] = row["file_mb"] / baseline["file_mb"]
        row["speedup_batch1"] = baseline["latency_ms_p50"] / row["latency_ms_p50"]
        row["speedup_model_only"] = baseline["model_ms_p50"] / row["model_ms_p50"]
        row["throughput_ratio"] = row["throughput_per_s"] / baseline["throughput_per_s"]
        found.append(row)
    return found


def measure_set(name: str, work: Path, reuse: bool) -> dict:
    spec = SETS[name]
    teacher, student = work / f"{name}-teacher", work / f"{name}-student"
    walls = {"teacher": trained(teacher, ["train", *spec["train"]], reuse)}
    table = rows(name, "teacher", exported(teacher), None)
    baseline = next((r for r in table if r["variant"] == "PyTorch fp32"), None)
    try:
        walls["student"] = trained(student, ["distill", str(teacher), *spec["distill"]], reuse)
        table += rows(name, f"student ({' '.join(spec['distill'])})", exported(student), baseline)
    except RuntimeError as err:  # a teacher distill cannot cut: said in the table, the rest still measured
        table.append({"set": name, "model": "student", "refused": _last_error(err)})
    return {"walls_s": walls, "rows": table}


def markdown(results: dict) -> str:
    lines = [
        "| set | model | variant | accuracy | size (MiB) | × size | batch-1 p50 / p95 (ms) | speed-up "
        "| model alone (ms) | batch-32 (/s) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, result in results.items():
        for r in result["rows"]:
            if "refused" in r:
                lines.append(f"| {name} | {r['model']} | {r.get('variant', '')} | refused: {r['refused']} ||||||| ")
                continue
            score = r.get("accuracy", r.get("micro_f1"))
            lines.append(
                f"| {name} | {r['model']} | {r['variant']} | {score:.4f} ({r['split']}) | {r['file_mb']:.1f} | "
                f"{r['size_ratio']:.2f} | {r['latency_ms_p50']:.1f} / {r['latency_ms_p95']:.1f} | "
                f"{r['speedup_batch1']:.1f}× | {r['model_ms_p50']:.1f} | {r['throughput_per_s']:.0f} |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", choices=sorted(SETS), default=sorted(SETS, reverse=True))
    parser.add_argument("--work", type=Path, default=Path("/tmp/hftransfer-deploy"))
    parser.add_argument("--reuse", action="store_true", help="keep finished runs found in --work")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "deploy.json")
    a = parser.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    results = {name: measure_set(name, a.work, a.reuse) for name in a.sets}
    a.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "sets": results}, indent=2))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
