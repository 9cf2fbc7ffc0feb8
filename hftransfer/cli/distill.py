"""``hftransfer distill TEACHER_RUN [--student_layers N | --student MODEL] [train options …]``: a smaller student."""

from __future__ import annotations

import argparse

from hftransfer.distillation.recipe import DistillOptions, distill_run

DEFAULTS = DistillOptions()


def distill_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="hftransfer distill",
        allow_abbrev=False,  # the rest of the line is the student run's train options: none is read as ours
        description=(
            "Train a smaller student on a finished run's soft targets and labels, on the run's own data (and on "
            "unlabelled data the teacher labels). Any `hftransfer train` option (--output_dir, --num_train_epochs "
            "…) applies to the student's run; the output is an ordinary run folder."
        ),
    )
    parser.add_argument("teacher_dir", help="output_dir of the hftransfer train run to distil")
    parser.add_argument("--student", default=None, help="a smaller checkpoint sharing the teacher's tokenizer")
    parser.add_argument(
        "--student_layers",
        type=int,
        default=None,
        help="cut the teacher to N transformer layers, evenly spaced, first and last kept (default: half of them)",
    )
    parser.add_argument("--unlabeled_file", default=None, help="unlabelled texts: .txt one per line, .csv or .tsv")
    parser.add_argument("--unlabeled_dir", default=None, help="unlabelled images: a folder, searched recursively")
    parser.add_argument(
        "--distill_temperature", type=float, default=DEFAULTS.temperature, help="softmax temperature of the targets"
    )
    parser.add_argument(
        "--distill_alpha", type=float, default=DEFAULTS.alpha, help="the soft targets' share of the loss, in [0, 1]"
    )
    a, train_argv = parser.parse_known_args(argv)
    options = DistillOptions(
        a.student, a.student_layers, a.unlabeled_file, a.unlabeled_dir, a.distill_temperature, a.distill_alpha
    )
    result = distill_run(a.teacher_dir, options, train_argv)
    print(f"student saved to {result.output_dir}")
    return 0
