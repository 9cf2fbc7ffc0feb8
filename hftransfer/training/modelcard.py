"""The model card (``README.md`` of the output directory), built with huggingface_hub's ModelCard.

Metadata (base model, datasets, pipeline tag, model-index evaluation results) goes through
``ModelCardData``/``EvalResult`` so the Hub parses it; the body is rendered from the template below.
"""

from __future__ import annotations

import platform
import re
from importlib import metadata
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from hftransfer.backbones.checkpoints import looks_like_path
from hftransfer.evaluation.report import CURVES_FILE, confusion_png_name, pr_png_name
from hftransfer.files.atomic import write_text_atomically

CARD_FILE = "README.md"
CARD_METRICS = (
    ("accuracy", "accuracy", "Accuracy"),
    ("f1_micro", "f1", "F1 (micro)"),
    ("map", "map", "mAP"),
    ("f1_macro", "f1", "F1 (macro)"),
    ("precision_macro", "precision", "Precision (macro)"),
    ("recall_macro", "recall", "Recall (macro)"),
    ("top_5_accuracy", "accuracy", "Top-5 accuracy"),
    ("worst_class_recall", "recall", "Recall of the weakest class"),
)
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")

TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

{{ description }}

## How to use

```python
from transformers import pipeline

classifier = pipeline("{{ pipeline_tag }}", model="{{ repo_hint }}"{{ remote_code }})
print(classifier({{ example_input }}))
```

Or with hftransfer: `hftransfer predict {{ repo_hint }} {{ cli_example }}`.

## Labels

{{ num_labels }} classes: {{ labels }}.
{% if multi_label %}
Multi-label: each label has its own sigmoid score (`pipeline(..., top_k=None)` returns them all), and a label is
predicted when its score reaches its threshold ({{ threshold_note }}; saved as `label_thresholds` in
`config.json`, applied by `hftransfer predict` and `hftransfer eval`).
{% endif %}

## Training data

{{ data_description }}

## Transfer strategy and hyperparameters

| setting | value |
|---|---|
{% for key, value in hyperparameters %}| {{ key }} | {{ value }} |
{% endfor %}

## Evaluation
{% for split in splits %}
### {{ split.name }} ({{ split.num_examples }} examples)

| metric | value |
|---|---|
{% for key, value in split.summary %}| {{ key }} | {{ value }} |
{% endfor %}

Per class:

| class | precision | recall | F1 | support |{% if multi_label %} threshold | average precision |{% endif %}
|---|---|---|---|---|{% if multi_label %}---|---|{% endif %}
{% for row in split.per_class %}| {{ row.name }} | {{ row.precision }} | {{ row.recall }} | {{ row.f1 }} | {{ row.support }} |{% if multi_label %} {{ row.threshold }} | {{ row.ap }} |{% endif %}
{% endfor %}
{% if split.confused %}
Most confused (true → predicted): {{ split.confused }}.
{% endif %}
{% if split.image %}
![{{ "Precision-recall curves" if multi_label else "Confusion matrix" }}, {{ split.name }}]({{ split.image }})
{% endif %}
{% endfor %}
{% if curves %}
![Training curves]({{ curves }})
{% endif %}

## Limitations

- The scores above come from {{ eval_source }}; they estimate performance on data like it. {{ inputs_word }} from
  another source ({{ shift_examples }}) or of classes outside the {{ num_labels }} above will be scored worse,
{% if multi_label %}  and a label's threshold was chosen on the validation split: on other data it may be too high or too low.
- The score of each label is a sigmoid output, not calibrated; do not read it as a probability without checking
  calibration on your own data.{% else %}  and every input is assigned to one of these classes, however unrelated it is.
- The confidence a prediction reports is a softmax score{{ calibration_note }}; do not read it as a probability
  without checking calibration on your own data.{% endif %}
- The model inherits the biases of its pretrained backbone ({{ base_model_text }}) and of the training data.

## Training procedure

Fine-tuned with hftransfer {{ versions }}. The exact configuration is
in `hftransfer_config.yaml`; `hftransfer train hftransfer_config.yaml` repeats the run.
"""


def _hub_id(name: str | None) -> str | None:
    """``name`` when it is a Hub repository id (not a local path), else None: metadata must point at the Hub."""
    if not name or looks_like_path(name) or Path(name).exists():
        return None
    name = name.removeprefix("hf-hub:")
    return name if _HUB_ID.match(name) else None


def base_model_id(config, model_config: dict) -> str | None:
    """The Hub id of the pretrained backbone, when it came from the Hub."""
    return _hub_id(config.model.model)


def data_source(config) -> tuple[str, str]:
    """(dataset type for model-index, human description)."""
    data = config.data
    if data.dataset:
        return data.dataset, f"the Hub dataset [{data.dataset}](https://huggingface.co/datasets/{data.dataset})" + (
            f" (config `{data.dataset_config}`)" if data.dataset_config else ""
        )
    if data.data_dir:
        return "imagefolder", f"a local image folder (`{Path(data.data_dir).name}`)"
    name = Path(data.train_file).name if data.train_file else "local files"
    return "local", f"local files (`{name}`)"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _setting(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _versions() -> str:
    parts = []
    for package in ("hftransfer", "transformers", "torch", "timm", "peft"):
        try:
            parts.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return "(" + ", ".join(parts) + f"; Python {platform.python_version()})"


def hyperparameters(config, task, strategy, strategy_description: str) -> list[tuple[str, str]]:
    args, transfer = config.training, config.transfer
    rows = [
        ("base model", config.model.model or f"{config.model.timm_arch} (timm, weights {config.model.weights})"),
        ("strategy", f"`{transfer.strategy}` — {strategy_description}"),
        ("learning rate", args.learning_rate),
        ("epochs", args.num_train_epochs),
        ("batch size (per device)", args.per_device_train_batch_size),
        ("gradient accumulation", args.gradient_accumulation_steps),
        ("optimizer", args.optim.value if hasattr(args.optim, "value") else args.optim),
        ("weight decay", args.weight_decay),
        ("warmup", args.warmup_steps),
        ("scheduler", getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
        ("label smoothing", args.label_smoothing_factor),
        ("mixed precision", "bf16" if args.bf16 else "fp16" if args.fp16 else "no (fp32)"),
        ("best checkpoint by", args.metric_for_best_model),
        ("early stopping", f"after {transfer.early_stopping_patience} evaluations without improvement")
        if transfer.early_stopping_patience
        else ("early stopping", "no"),
        ("imbalance", transfer.imbalance),
        ("seed", args.seed),
    ]
    for key in ("layer_decay", "head_learning_rate", "head", "head_hidden_sizes", "pooling"):
        value = getattr(transfer, key, None)
        if value not in (None, [], "linear"):
            rows.append((key.replace("_", " "), value))
    if strategy.card_rows is not None:
        rows += strategy.card_rows(config.options_for(strategy))
    rows += [("chosen for this data", note) for note in config.all_notes()]
    if task.training_augmentation is not None:
        rows.append(("training augmentation", task.training_augmentation(config) or "none"))
    return [(key, _setting(value)) for key, value in rows]


def _eval_results(config, task_name: str, reports: dict, dataset_type: str) -> list[EvalResult]:
    """The evaluation metrics as model-index entries (what the Hub shows as the model's results)."""
    results = []
    for split, report in reports.items():
        for key, metric_type, metric_name in CARD_METRICS:
            if key in report["summary"]:
                results.append(
                    EvalResult(
                        task_type=task_name,
                        dataset_type=dataset_type,
                        dataset_name=dataset_type,
                        dataset_split=split,
                        metric_type=metric_type,
                        metric_name=metric_name,
                        metric_value=round(report["summary"][key], 4),
                        dataset_config=config.data.dataset_config,
                    )
                )
    return results


def _split_sections(reports: dict, out: Path) -> list[dict]:
    """Per split: its metric summary, per-class table, most confused pairs and confusion-matrix image."""
    splits = []
    for split, report in reports.items():
        summary = [(k.replace("_", " "), _fmt(v)) for k, v in report["summary"].items()]
        per_class = [
            {
                "name": name,
                "precision": _fmt(s["precision"]),
                "recall": _fmt(s["recall"]),
                "f1": _fmt(s["f1-score"]),
                "support": int(s["support"]),
                "threshold": _fmt(s.get("threshold")),
                "ap": _fmt(s.get("average_precision")),
            }
            for name, s in (report.get("per_class") or report.get("per_label") or {}).items()
        ]
        confused = ", ".join(
            f"{p['true']} → {p['predicted']} ({p['count']})" for p in report.get("most_confused", [])[:5]
        )
        image = pr_png_name(split) if report.get("multi_label") else confusion_png_name(split)
        splits.append(
            {
                "name": split,
                "num_examples": report["num_examples"],
                "summary": summary,
                "per_class": per_class,
                "confused": confused,
                "image": image if (out / image).is_file() else None,
            }
        )
    return splits


def _calibration_note(reports: dict) -> str:
    """How calibrated the scores are: the temperature folded into the model and the ECE before and after."""
    if not reports:
        return ""
    split, report = next(iter(reports.items()))
    summary = report["summary"]
    if summary.get("expected_calibration_error") is None:
        return ""
    after = f"expected calibration error {summary['expected_calibration_error']:.3f} on {split}"
    if "temperature" not in report:
        return f" ({after})"
    return (
        f", calibrated by temperature scaling on the validation split (T = {report['temperature']:.3f}; "
        f"{after}, {summary['expected_calibration_error_before']:.3f} before)"
    )


def build_model_card(
    config,
    task,
    strategy,
    label_names: list[str],
    reports: dict,
    strategy_description: str,
    model_config: dict,
    output_dir: str | Path,
    num_train: int | None = None,
    written_in: str | Path | None = None,
) -> ModelCard:
    """The card for a finished run (metadata + body), not yet written; ``written_in``: where the run's figures are
    while the card is made (its staging folder), when not yet in ``output_dir``."""
    out = Path(output_dir)
    figures = Path(written_in or out)
    model_name = config.training.hub_model_id or out.name
    dataset_type, data_text = data_source(config)
    base_model = base_model_id(config, model_config)
    card_data = _card_data(config, task, reports, model_config, model_name, base_model, dataset_type)
    source = (
        f"[{base_model}](https://huggingface.co/{base_model})"
        if base_model
        else f"`{config.model.model or config.model.timm_arch}`"
    )
    article = "An" if task.name[0] in "aeiou" else "A"
    words = task.words
    return ModelCard.from_template(
        card_data,
        template_str=TEMPLATE,
        model_name=model_name,
        description=(
            f"{article} {task.name} model fine-tuned from {source} on {data_text} with hftransfer "
            f"(strategy `{config.transfer.strategy}`)."
        ),
        repo_hint=config.training.hub_model_id or str(out),
        pipeline_tag=task.name,
        remote_code=", trust_remote_code=True" if model_config.get("auto_map") else "",
        example_input=words.pipeline_example,
        cli_example=words.cli_example,
        num_labels=len(label_names),
        labels=", ".join(f"`{n}`" for n in label_names[:50]) + (" …" if len(label_names) > 50 else ""),
        data_description=data_text[0].upper()
        + data_text[1:]
        + (f"; {num_train} training examples" if num_train else "")
        + ".",
        inputs_word=words.inputs,
        shift_examples=words.shift_examples,
        hyperparameters=hyperparameters(config, task, strategy, strategy_description),
        splits=_split_sections(reports, figures),
        curves=CURVES_FILE if (figures / CURVES_FILE).is_file() else None,
        eval_source=", ".join(f"the {s} split" for s in reports) or "no evaluation",
        calibration_note=_calibration_note(reports),
        multi_label=model_config.get("problem_type") == "multi_label_classification",
        threshold_note=next((r["thresholds"] for r in reports.values() if "thresholds" in r), "0.5"),
        base_model_text=base_model or str(config.model.model or config.model.timm_arch),
        versions=_versions(),
    )


def _card_data(
    config, task, reports: dict, model_config: dict, model_name: str, base_model: str | None, dataset_type: str
) -> ModelCardData:
    """The card's metadata block (what the Hub indexes: base model, datasets, task, results, tags)."""
    return ModelCardData(
        model_name=model_name,
        base_model=base_model,
        datasets=[config.data.dataset] if config.data.dataset else None,
        pipeline_tag=task.name,
        library_name="transformers",
        eval_results=_eval_results(config, task.name, reports, dataset_type) or None,
        tags=["hftransfer", task.name, f"strategy-{config.transfer.strategy}"]
        + (["timm"] if model_config.get("model_type") == "timm_wrapper" else []),
    )


def write_model_card(card: ModelCard, output_dir: str | Path) -> Path:
    return write_text_atomically(Path(output_dir) / CARD_FILE, str(card))
