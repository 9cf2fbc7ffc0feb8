"""``hftransfer distill TEACHER_RUN``: a smaller student trained on the teacher's soft targets and the labels.

The student trains on the teacher's own data (the data section of the teacher's saved config: the same files, the
same validation split, rebuilt the same way) with everything else decided afresh for the student, as for any run
(learning rate for its width, schedule for the data, strategy ``full``); any ``hftransfer train`` option given
overrides. The loss is ``engine/distillation.py``'s; unlabelled data joins the training split labelled by the teacher
(``unlabeled.py``). The output is an ordinary run folder (it loads with ``pipeline``, evaluates, exports and
quantizes); its notes, saved config and card name the teacher, how the student was made and the accuracy gap.
"""

from __future__ import annotations

import argparse
import json
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from hftransfer.artifacts.run_dir import FinishedRun, open_run
from hftransfer.backbones.blocks import head_parameter_names
from hftransfer.backbones.in_memory import model_folder
from hftransfer.config.limits import AT_LEAST_ONE, POSITIVE, Range, check_fields, option
from hftransfer.distillation.student import StudentError, check_same_inputs, cut_teacher
from hftransfer.distillation.unlabeled import add_to_train, read_unlabeled, teacher_labels
from hftransfer.engine.distillation import DistillationTrainer
from hftransfer.engine.imbalance import undo_prior_adjustment
from hftransfer.files.output_policy import Input, Output, check_output
from hftransfer.training.parse import parse_config
from hftransfer.training.recipe import FineTuning, RunResult, run
from hftransfer.training.run_files import RUN_WRITES


@dataclass
class DistillOptions:
    """What ``hftransfer distill`` adds to ``hftransfer train``'s options."""

    student: str | None = field(
        default=None, metadata=option("another checkpoint (same tokenizer / image preprocessing as the teacher)")
    )
    student_layers: int | None = field(
        default=None, metadata=option("cut the teacher to this many layers (default: half of them)", AT_LEAST_ONE)
    )
    unlabeled_file: str | None = field(default=None, metadata=option("texts: .txt one per line, or .csv/.tsv"))
    unlabeled_dir: str | None = field(default=None, metadata=option("images: a folder (searched recursively)"))
    distill_temperature: float = field(default=2.0, metadata=option("softmax temperature of the targets", POSITIVE))
    distill_alpha: float = field(
        default=0.5, metadata=option("the soft targets' share of the loss; the labels have the rest", Range(0, 1))
    )

    def __post_init__(self) -> None:
        if self.student and self.student_layers is not None:
            raise StudentError("give --student MODEL or --student_layers N, not both")
        if self.unlabeled_file and self.unlabeled_dir:
            raise StudentError("give --unlabeled_file (texts) or --unlabeled_dir (images), not both")
        check_fields(self)


@dataclass
class Distillation(FineTuning):
    """A ``FineTuning`` whose Trainer learns from ``teacher`` too, and whose training split may hold unlabelled
    examples (``unlabeled``: payloads, labelled by the teacher once the run's checks have passed)."""

    teacher: Any = None  # the teacher's FinishedRun
    teacher_model: Any = None
    teacher_processor: Any = None
    options: DistillOptions | None = None
    unlabeled: list | None = None
    unlabeled_source: str = ""

    def read_data(self):
        data = super().read_data()
        if self.unlabeled:
            run = self.teacher
            encode = run.task.prediction_encoder(self.teacher_processor)
            labels = teacher_labels(
                self.teacher_model, encode, self.unlabeled, run.thresholds() if run.multi_label else None
            )
            column = data.columns["image" if run.task.pixel_key else "text"]
            add_to_train(data, column, self.unlabeled, labels, self.unlabeled_source)
        return data

    def make_trainer(self, trainer_class=DistillationTrainer, **extra):
        options = self.options
        return super().make_trainer(
            trainer_class,
            teacher=self.teacher_model,
            temperature=options.distill_temperature,
            alpha=options.distill_alpha,
            multi_label=self.data.multi_label,
            **extra,
        )

    def evaluate(self):
        metrics, reports = super().evaluate()
        self.config.outcomes.append(gap_note(self.teacher, metrics))
        return metrics, reports


def gap_note(teacher: FinishedRun, metrics: dict) -> str:
    """The student's score beside the teacher's on each split both were scored on (the teacher's run records)."""
    recorded = _teacher_metrics(teacher.path)
    compared = []
    for key in ("eval_accuracy", "test_accuracy", "eval_f1_micro", "test_f1_micro"):
        if key in metrics and key in recorded:
            split = "validation" if key.startswith("eval") else "test"
            name = key.split("_", 1)[1]
            gap = (metrics[key] - recorded[key]) * 100
            compared.append(
                f"{split} {name} {metrics[key]:.4f} against the teacher's {recorded[key]:.4f} ({gap:+.1f} points)"
            )
    return f"distillation: teacher {teacher.path}; " + ("; ".join(compared) or "the teacher's scores were not recorded")


def _teacher_metrics(path: Path) -> dict:
    for name in ("all_results.json", "eval_results.json"):
        if (path / name).is_file():
            return json.loads((path / name).read_text())
    return {}


def check_student_output(teacher, options: DistillOptions, argv: list[str] | None, keywords: dict | None) -> None:
    """The student's output_dir checked before the teacher loads: never the teacher's folder, inside it or around
    it (the student would replace the teacher it learns from), nor the unlabelled data."""
    peek = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    peek.add_argument("--output_dir", default=None)
    flagged = peek.parse_known_args(argv or [])[0].output_dir
    out = flagged or (keywords or {}).get("output_dir") or f"{teacher.path}-student"
    inputs = [
        Input("the teacher run", teacher.path),
        Input("--unlabeled_file", options.unlabeled_file),
        Input("--unlabeled_dir", options.unlabeled_dir),
    ]
    check_output(Output("output_dir", out, writes=RUN_WRITES), inputs)


def distill_run(
    teacher_dir: str | Path,
    options: DistillOptions,
    argv: list[str] | None = None,
    keywords: dict | None = None,
) -> RunResult:
    """Distil the finished run ``teacher_dir`` into a student; ``argv`` / ``keywords``: ``hftransfer train``
    options for the student's run (flags over keywords over the teacher's data section)."""
    teacher = open_run(teacher_dir)
    check_student_output(teacher, options, argv, keywords)
    if teacher.config is None:
        raise StudentError(
            f"{str(teacher.path)!r} is not an hftransfer run (no hftransfer_config.yaml): distillation trains on the "
            "teacher's data, which its saved config names"
        )
    if teacher.trained_in_memory:
        raise StudentError(
            f"{str(teacher.path)!r} was trained on data given in memory (Python API): its saved config cannot name "
            "the data to distil on"
        )
    unlabeled = (
        read_unlabeled(teacher.task, options.unlabeled_file, options.unlabeled_dir)
        if (options.unlabeled_file or options.unlabeled_dir)
        else None
    )
    teacher_model, processor = teacher.load_model(), teacher.load_processor()
    # the student learns the teacher's trained scores; its own run adjusts for its own training priors
    undo_prior_adjustment(teacher_model, set(head_parameter_names(teacher_model)), teacher_model.config.num_labels)
    with ExitStack() as stack:
        student, description = _student(teacher, teacher_model, processor, options, stack)
        config = parse_config(argv or [], options={**_teacher_options(teacher, student), **(keywords or {})})
        config.notes.append(
            f"distillation: student {description}; teacher {teacher.path}; soft targets at temperature "
            f"{options.distill_temperature:g}, weight {options.distill_alpha:g}"
            + (f"; {len(unlabeled):,} unlabelled examples" if unlabeled else "")
        )
        recipe = partial(
            Distillation,
            teacher=teacher,
            teacher_model=teacher_model,
            teacher_processor=processor,
            options=options,
            unlabeled=unlabeled,
            unlabeled_source=options.unlabeled_file or options.unlabeled_dir or "",
        )
        return run(config, recipe)


def _student(teacher: FinishedRun, teacher_model, processor, options: DistillOptions, stack: ExitStack):
    """(the student's folder or checkpoint name, how it was made)."""
    if options.student:
        try:
            theirs = teacher.task.auto_processor.from_pretrained(options.student)
        except (OSError, ValueError) as err:
            raise StudentError(
                f"--student {options.student!r}: no tokenizer or image processor found ({err})"
            ) from None
        check_same_inputs(processor, theirs, options.student)
        return options.student, f"{options.student} (a checkpoint)"
    cut, kept = cut_teacher(teacher_model, options.student_layers)
    folder = stack.enter_context(model_folder(cut, processor, teacher.task.auto_processor))
    total, shown = teacher_model.config.num_hidden_layers, ", ".join(map(str, kept))
    pooled = (
        "; the last is the averaging layer of its mean pooling" if hasattr(cut.config, "hftransfer_pooling") else ""
    )
    return (
        str(folder),
        f"the teacher cut to {len(kept)} of its {total} layers (kept: {shown}{pooled}; this file alone cannot repeat "
        "the run)",
    )


def _teacher_options(teacher: FinishedRun, student: str) -> dict:
    """The student run's starting options: the teacher's task, data and seed, the student model, strategy full."""
    saved = teacher.config.to_dict()
    return {
        **{k: v for k, v in saved["data"].items() if v is not None},
        "task": teacher.task.name,
        "model": student,
        "strategy": "full",
        "seed": saved["training"].get("seed"),
        "output_dir": f"{teacher.path}-student",
    }
