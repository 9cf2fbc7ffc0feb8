"""Distillation: the soft-target loss, the student cut from the teacher, refusals before any work, and a student run
that is an ordinary run folder naming its teacher."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, pipeline

import hftransfer
import hftransfer.cli.main as cli
from hftransfer.distillation.student import check_same_inputs, cut_teacher, keep_layers
from hftransfer.engine.distillation import distillation_loss


def test_the_soft_loss_is_zero_only_where_the_student_matches_the_teacher():
    teacher = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.2, 0.1]])
    assert distillation_loss(teacher, teacher, 2.0, multi_label=False).item() == pytest.approx(0, abs=1e-6)
    assert distillation_loss(torch.zeros(2, 3), teacher, 2.0, multi_label=False).item() > 0.01
    # T² keeps the gradient's size comparable across high temperatures (Hinton et al.: it tends to (s - t) / N);
    # without it, doubling T would divide it by four
    student = torch.zeros(2, 3, requires_grad=True)
    sizes = []
    for temperature in (5.0, 10.0):
        (grad,) = torch.autograd.grad(distillation_loss(student, teacher, temperature, False), student)
        sizes.append(grad.abs().sum().item())
    assert 0.8 < sizes[1] / sizes[0] < 1.25
    # multi-label: each label's sigmoid is matched; its gradient vanishes at the teacher's logits
    student = teacher.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(distillation_loss(student, teacher, 2.0, multi_label=True), student)
    assert grad.abs().max().item() < 1e-6


def test_a_cut_student_keeps_evenly_spaced_layers_with_the_first_and_last():
    assert keep_layers(6, 3) == [0, 2, 5] and keep_layers(12, 6) == [0, 2, 4, 7, 9, 11] and keep_layers(4, 1) == [0]
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32)
    teacher = BertForSequenceClassification(config)
    teacher.config.hftransfer_calibration = {"temperature": 1.3}  # the teacher's own measurement
    student, kept = cut_teacher(teacher, 2)
    assert kept == [0, 3] and student.config.num_hidden_layers == 2 and len(student.bert.encoder.layer) == 2
    assert torch.equal(
        student.bert.encoder.layer[1].output.dense.weight, teacher.bert.encoder.layer[3].output.dense.weight
    )
    assert torch.equal(student.classifier.weight, teacher.classifier.weight)  # the fine-tuned head comes along
    assert not hasattr(student.config, "hftransfer_calibration") and len(teacher.bert.encoder.layer) == 4
    ids = torch.tensor([[1, 2, 3]])
    assert student(input_ids=ids).logits.shape == teacher(input_ids=ids).logits.shape


def test_a_student_with_another_vocabulary_is_refused():
    class Tokenizer:
        def __init__(self, vocab):
            self.vocab = vocab

        def get_vocab(self):
            return self.vocab

    check_same_inputs(Tokenizer({"a": 0}), Tokenizer({"a": 0}), "same")
    with pytest.raises(hftransfer.HftransferError, match="'other' tokenizes text differently from the teacher"):
        check_same_inputs(Tokenizer({"a": 0}), Tokenizer({"b": 0}), "other")


def test_bad_distillation_options_are_refused_before_any_work(text_run, tmp_path, capsys):
    out = tmp_path / "student"
    (tmp_path / "unlabeled").mkdir()
    cases = [
        ({"student_layers": 2}, "--student_layers 2: the teacher has 2 layers; a student keeps 1 to 1"),
        (
            {"unlabeled_dir": str(tmp_path / "unlabeled")},
            "the teacher is a text-classification model; give its unlabelled texts",
        ),
        ({"unlabeled_file": str(tmp_path / "x.pdf")}, r"valid kinds are \.txt, \.csv, \.tsv"),
        ({"student": "a", "student_layers": 1}, "not both"),
        ({"distill_alpha": 1.5}, r"in \[0, 1\], got 1.5"),
    ]
    for options, message in cases:
        with pytest.raises(hftransfer.HftransferError, match=message):
            hftransfer.distill(text_run, output_dir=str(out), **options)
    with pytest.raises(hftransfer.HftransferError, match="is not an hftransfer run|not a model folder|no config.json"):
        hftransfer.distill(tmp_path, output_dir=str(out))
    assert cli.main(["distill", str(text_run), "--student_layers", "7", "--output_dir", str(out)]) == 2
    assert "a student keeps 1 to 1" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.e2e
def test_a_distilled_student_is_a_run_that_names_its_teacher(text_run, tmp_path):
    unlabeled = tmp_path / "more.txt"
    unlabeled.write_text("a wonderful film\na dull mess\nfunny and moving\n")
    result = hftransfer.distill(
        text_run,
        student_layers=1,
        unlabeled_file=str(unlabeled),
        output_dir=str(tmp_path / "student"),
        num_train_epochs=1,
    )
    out = result.output_dir
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 1
    saved = (out / "hftransfer_config.yaml").read_text()
    assert "distillation: student the teacher cut to 1 of its 2 layers" in saved and "3 unlabelled examples" in saved
    assert f"distillation: teacher {text_run}; validation accuracy" in saved
    assert "against the teacher's" in (out / "README.md").read_text()
    assert len(result.trainer.train_dataset) == 64 + 3  # the teacher's 64 training rows and the unlabelled texts
    classifier = pipeline("text-classification", model=str(out), device="cpu")
    assert classifier("a wonderful film")[0]["label"] in {"negative", "positive"}


@pytest.mark.e2e
def test_a_checkpoint_sharing_the_tokenizer_can_be_the_student(text_run, tiny_bert, tmp_path):
    result = hftransfer.distill(text_run, student=str(tiny_bert), output_dir=str(tmp_path / "s"), num_train_epochs=1)
    saved = (result.output_dir / "hftransfer_config.yaml").read_text()
    assert f"distillation: student {tiny_bert} (a checkpoint)" in saved and 0 <= result.metrics["eval_accuracy"] <= 1


@pytest.mark.e2e
def test_an_image_teacher_is_cut_and_learns_on_an_unlabelled_folder(tiny_vit, tmp_path):
    from conftest import make_class_folder
    from test_image import flags

    from hftransfer.training.recipe import main

    data = tmp_path / "images"
    make_class_folder(data / "train", 8)
    make_class_folder(data / "val", 3)
    make_class_folder(tmp_path / "unlabelled", 4)  # class folders too, but read as plain images: 8 of them
    teacher = tmp_path / "teacher"
    main(flags(teacher, model=tiny_vit, data_dir=data))
    with pytest.raises(hftransfer.HftransferError, match="the teacher is an image-classification model"):
        hftransfer.distill(teacher, unlabeled_file=str(tmp_path / "texts.txt"))
    result = hftransfer.distill(
        teacher,
        student_layers=1,
        unlabeled_dir=str(tmp_path / "unlabelled"),
        output_dir=str(tmp_path / "student"),
        num_train_epochs=1,
        dataloader_num_workers=0,
    )
    assert json.loads((result.output_dir / "config.json").read_text())["num_hidden_layers"] == 1
    assert len(result.trainer.train_dataset) == 16 + 8
    classifier = pipeline("image-classification", model=str(result.output_dir), device="cpu")
    assert classifier(str(data / "val" / "red" / "red_0.png"))[0]["label"] in {"blue", "red"}
