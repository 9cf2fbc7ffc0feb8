"""``hftransfer distill TEACHER_RUN [--student_layers N | --student MODEL] [train options …]``: a smaller student."""

from __future__ import annotations

import argparse

from hftransfer.cli.command_options import add_options, options_from
from hftransfer.distillation.recipe import DistillOptions, distill_run


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
    add_options(parser, DistillOptions)
    a, train_argv = parser.parse_known_args(argv)
    options = options_from(a, DistillOptions)
    result = distill_run(a.teacher_dir, options, train_argv)
    print(f"student saved to {result.output_dir}")
    return 0
