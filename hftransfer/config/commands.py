"""The options of the commands besides ``train`` (predict, eval, export, rank), one dataclass each: the one
definition of each option's default, help, range and choices, from which the CLI flags are made
(``cli/command_options.py``) and against which the Python API's keywords are checked, so the two cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hftransfer.config.limits import AT_LEAST_ONE, FRACTION, POSITIVE, check_fields, option

EXPORT_FORMATS = ("onnx",)
QUANTIZATIONS = ("int8", "fp16")
RANK_SCORES = ("logme", "knn_accuracy", "linear_probe_accuracy", "h_score")
ATOL = 1e-4  # max |logit difference| accepted between ONNX Runtime and PyTorch (fp32; typically ~1e-6)
MAX_ACCURACY_DROP = 0.01  # a quantized model is kept within one point of PyTorch's score


@dataclass(frozen=True)
class PredictOptions:
    """``hftransfer predict`` / ``hftransfer.predict``."""

    top_k: int = field(
        default=3,
        metadata=option("the k most probable classes (multi-label: every label above its threshold)", AT_LEAST_ONE),
    )
    batch_size: int = field(default=32, metadata=option("inputs per forward pass", AT_LEAST_ONE))

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class EvalOptions:
    """``hftransfer eval`` / ``hftransfer.evaluate``."""

    batch_size: int = field(default=64, metadata=option("examples per forward pass", AT_LEAST_ONE))
    max_samples: int | None = field(default=None, metadata=option("evaluate a seeded random subset", AT_LEAST_ONE))

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class ExportOptions:
    """``hftransfer export`` / ``hftransfer.export``."""

    format: str = field(default="onnx", metadata=option("the export format", choices=EXPORT_FORMATS))
    atol: float = field(
        default=ATOL, metadata=option("largest accepted |logit difference| between ONNX and PyTorch", POSITIVE)
    )
    quantize: str | None = field(
        default=None,
        metadata=option(
            "also write a quantized model (int8: ONNX Runtime's int8, calibrated on training examples for images; "
            "fp16: half-precision weights), kept only within --max_accuracy_drop of PyTorch",
            choices=QUANTIZATIONS,
        ),
    )
    max_accuracy_drop: float = field(
        default=MAX_ACCURACY_DROP,
        metadata=option("largest accepted score loss of the quantized model, a fraction (0.01 is one point)", FRACTION),
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class RankOptions:
    """``hftransfer rank`` / ``hftransfer.rank``."""

    sample_size: int = field(default=500, metadata=option("training examples scored (validation: half)", AT_LEAST_ONE))
    by: str = field(default="logme", metadata=option("the score that ranks", choices=RANK_SCORES))

    def __post_init__(self) -> None:
        check_fields(self)


COMMAND_OPTIONS = (PredictOptions, EvalOptions, ExportOptions, RankOptions)
