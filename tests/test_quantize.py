"""int8 exports: written beside the fp32 one, scored against PyTorch on the run's own splits, refused past the
allowed drop with nothing left behind, measured for size and speed, and runnable by predict."""

from __future__ import annotations

import json

import pytest

import hftransfer
import hftransfer.artifacts.quantize as quantize
import hftransfer.cli.main as cli
from hftransfer.artifacts.export_card import record_in_card
from hftransfer.artifacts.run_dir import INT8_FILE, ONNX_DIR

pytest.importorskip("onnxruntime")


def test_bad_quantize_options_are_refused_before_any_work(text_run, capsys):
    with pytest.raises(hftransfer.HftransferError, match="unknown quantize 'int4'; valid: int8, fp16"):
        hftransfer.export(text_run, quantize="int4")
    with pytest.raises(hftransfer.HftransferError, match=r"max_accuracy_drop must be in \[0, 1\), got 5"):
        hftransfer.export(text_run, quantize="int8", max_accuracy_drop=5)
    assert cli.main(["export", str(text_run), "--quantize", "fp4"]) == 2  # the same validator, one line
    assert "unknown quantize 'fp4'; valid: int8, fp16" in capsys.readouterr().err
    assert not (text_run / ONNX_DIR).exists()


@pytest.mark.e2e
def test_int8_export_is_checked_measured_and_predicts(text_run, tmp_path, capsys):
    out = hftransfer.export(text_run, output=tmp_path / "onnx", quantize="int8", max_accuracy_drop=0.5)
    report = json.loads((out / "export_report.json").read_text())["quantized"]
    assert report["quantization"].startswith("dynamic int8") and report["metric"] == "accuracy"
    variants = report["variants"]
    assert set(variants) == {"pytorch", "onnx_fp32", "onnx_int8"}
    for figures in variants.values():
        assert 0 <= figures["accuracy"]["validation"] <= 1 and figures["file_mb"] > 0
        assert 0 < figures["latency_ms_p50"] <= figures["latency_ms_p95"] and figures["throughput_per_s"] > 0
        assert 0 < figures["model_ms_p50"] <= figures["model_ms_p95"]
    assert variants["onnx_int8"]["file_mb"] < variants["onnx_fp32"]["file_mb"]
    assert abs(variants["onnx_fp32"]["accuracy"]["validation"] - variants["pytorch"]["accuracy"]["validation"]) < 1e-9
    predictions = hftransfer.predict(out, ["a wonderful film", "a dull mess"], onnx="int8", top_k=1)
    assert [len(p.labels) for p in predictions] == [1, 1]
    assert cli.main(["predict", str(out), "--onnx", "int8", "a wonderful film", "--top_k", "1"]) == 0
    assert cli.main(["predict", str(text_run), "--onnx", "a wonderful film"]) == 2  # the run's own onnx/ has none
    assert "has no model.onnx" in capsys.readouterr().err
    # the card lists each variant with its measured figures
    section = (text_run / "README.md").read_text().split("<!-- hftransfer:exports -->")[1]
    assert section.count("| ONNX int8 |") == 1 and f"{variants['onnx_int8']['file_mb']:.1f}" in section
    # eval scores the int8 model the gate scored, on the same split, with the same figure
    report = hftransfer.evaluate(out, onnx="int8")
    assert report["summary"]["accuracy"] == pytest.approx(variants["onnx_int8"]["accuracy"]["validation"])
    assert report["source"]["model"].endswith(INT8_FILE) and report["report_dir"].endswith("-onnx-int8")
    assert cli.main(["eval", str(out), "--onnx", "int8", "--overwrite"]) == 0


def test_a_new_export_replaces_the_cards_section_and_keeps_the_rest(tmp_path):
    card = tmp_path / "README.md"
    card.write_text("# my model\n\nnotes the user wrote\n")
    report = {"max_abs_diff": 2e-6, "inputs": "16 examples", "onnxruntime": "1.x"}
    record_in_card(tmp_path, tmp_path / "onnx", report)
    record_in_card(tmp_path, tmp_path / "onnx", {**report, "max_abs_diff": 3e-6})
    text = card.read_text()
    assert text.startswith("# my model\n\nnotes the user wrote\n") and text.count("## Exported models") == 1
    assert "`onnx/model.onnx`: ONNX fp32, its logits within 3.0e-06" in text


@pytest.mark.e2e
def test_an_int8_model_that_loses_accuracy_is_refused_and_nothing_stays(text_run, tmp_path, monkeypatch):
    real = quantize.onnx_logits

    def flipped_int8(path):  # a quantization that broke the model: every prediction inverted
        logits_of = real(path)
        return (lambda inputs: -logits_of(inputs)) if path.name == INT8_FILE else logits_of

    monkeypatch.setattr(quantize, "onnx_logits", flipped_int8)
    target = tmp_path / "onnx"
    accuracy = json.loads((text_run / "eval_results.json").read_text())["eval_accuracy"]  # PyTorch's, on validation
    if accuracy <= 0.51:  # two classes: inverted predictions score 1 - accuracy
        pytest.skip("the tiny run is at chance: inverting its predictions does not lower its accuracy")
    with pytest.raises(
        hftransfer.HftransferError,
        match=r"int8 export refused: validation accuracy .* against "
        r"PyTorch's .*, past max_accuracy_drop 0.01",
    ):
        hftransfer.export(text_run, output=target, quantize="int8")
    assert not target.exists() or not any(target.iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".onnx-")]  # no staging folder left


@pytest.mark.e2e
def test_fp16_export_halves_the_file_keeps_the_scores_and_predicts(text_run, tmp_path):
    out = hftransfer.export(text_run, output=tmp_path / "onnx", quantize="fp16")
    report = json.loads((out / "export_report.json").read_text())["quantized"]
    assert report["kind"] == "fp16" and set(report["variants"]) == {"pytorch", "onnx_fp32", "onnx_fp16"}
    fp16, fp32 = report["variants"]["onnx_fp16"], report["variants"]["onnx_fp32"]
    assert 0.4 < fp16["file_mb"] / fp32["file_mb"] < 0.6
    assert abs(fp16["accuracy"]["validation"] - fp32["accuracy"]["validation"]) <= 0.01
    assert not (out / INT8_FILE).exists() and (out / "model_fp16.onnx").is_file()
    assert [len(p.labels) for p in hftransfer.predict(out, ["a wonderful film"], onnx="fp16", top_k=1)] == [1]
    with pytest.raises(
        hftransfer.HftransferError, match=r"has no model_int8.onnx; run `hftransfer export .* --quantize int8`"
    ):
        hftransfer.predict(out, ["a wonderful film"], onnx="int8")


@pytest.mark.e2e
def test_a_run_with_a_carved_validation_split_is_checked_on_that_split(tiny_bert, files, tmp_path):
    """The gate rebuilds the run's splits as it read them: a validation split carved from train is carved again."""
    from conftest import tiny_run_flags

    from hftransfer.training.recipe import main

    run = tmp_path / "run"
    main(tiny_run_flags(tiny_bert, run, train=files["train"]))
    out = hftransfer.export(run, quantize="int8", max_accuracy_drop=0.5)
    scores = json.loads((out / "export_report.json").read_text())["quantized"]["variants"]["pytorch"]["accuracy"]
    validation = json.loads((run / "eval_results.json").read_text())["eval_accuracy"]
    assert list(scores) == ["validation"] and scores["validation"] == pytest.approx(validation)
