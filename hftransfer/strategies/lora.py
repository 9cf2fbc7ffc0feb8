"""``strategy: lora``: low-rank adapters (``peft``) on a frozen backbone, the classifier head trained in full.

Target modules, unless the recipe names them: every linear layer of the backbone (attention projections
and MLPs; QLoRA, Dettmers et al. 2023, found adapting all of them necessary to match full fine-tuning, and
query/value alone, the LoRA paper's choice, reached 0.830 here against 0.873 for full fine-tuning: MiniLM,
20,000 SST-2 phrases, one epoch), else (CNNs) every 1x1 convolution, where most of a modern CNN's weights are.
The output is saved merged (a plain model, loads with ``pipeline``) or as the adapter alone, by ``lora_save``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from hftransfer.backbones.blocks import backbone_of, head_parameter_names
from hftransfer.config.limits import AT_LEAST_ONE, FRACTION, POSITIVE, check_fields, option
from hftransfer.errors import HftransferError
from hftransfer.strategies.base import StrategyPlan

ADAPTABLE = (nn.Linear, nn.Conv2d, nn.Conv1d, nn.Embedding)
LORA_SAVE = ("merged", "adapter")


class LoraTargetError(HftransferError):
    """A lora_target_modules entry that matches no module of the backbone; lists the names that would."""


@dataclass
class LoraOptions:
    """The options of ``lora``."""

    lora_r: int = field(default=8, metadata=option("lora: rank of the adapters.", range=AT_LEAST_ONE))
    lora_alpha: float = field(
        default=16, metadata=option("lora: scaling numerator (adapter output * alpha / r).", range=POSITIVE)
    )
    lora_dropout: float = field(default=0.1, metadata=option("lora: dropout on the adapters' input.", range=FRACTION))
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "lora: module names (or name suffixes) that get adapters; default: chosen for the "
            "architecture (every linear layer of a transformer, every 1x1 convolution of a CNN)."
        },
    )
    lora_save: str = field(
        default="merged",
        metadata=option(
            "lora: save the model with adapters merged (loads with plain pipeline) or the adapter alone.",
            choices=LORA_SAVE,
        ),
    )

    def __post_init__(self) -> None:
        check_fields(self)


def _backbone_modules(model: nn.Module) -> dict[str, nn.Module]:
    backbone = backbone_of(model)
    head_ids = {id(p) for n, p in model.named_parameters() if n in set(head_parameter_names(model))}
    inside = {id(m) for m in backbone.modules()}
    return {
        name: m
        for name, m in model.named_modules()
        if id(m) in inside and isinstance(m, ADAPTABLE) and not any(id(p) in head_ids for p in m.parameters())
    }


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def resolve_targets(model: nn.Module, wanted: list[str] | None) -> list[str]:
    """Full module names that get adapters (see the module docstring for the automatic choice)."""
    modules = _backbone_modules(model)
    if wanted:
        chosen = []
        for target in wanted:
            hits = [name for name in modules if _matches(name, target)]
            if not hits:
                suffixes = sorted({name.rsplit(".", 1)[-1] for name in modules})
                raise LoraTargetError(
                    f"lora_target_modules entry {target!r} matches no adaptable module of the "
                    f"backbone; valid names include: {', '.join(suffixes[:30])}"
                )
            chosen += hits
        return sorted(set(chosen))
    linear = [name for name, m in modules.items() if isinstance(m, nn.Linear)]
    if linear:
        return linear
    pointwise = [
        name for name, m in modules.items() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1
    ]
    if pointwise:
        return pointwise
    raise LoraTargetError(
        f"found no linear or 1x1-convolution layer in {type(model).__name__}'s backbone for "
        "LoRA; name the modules with lora_target_modules"
    )


def add_adapters(model: nn.Module, options: LoraOptions, plan: StrategyPlan):
    """Wrap ``model`` with LoRA adapters (only the adapters and the head train) and say so in ``plan``."""
    from peft import LoraConfig, get_peft_model

    targets = resolve_targets(model, options.lora_target_modules)
    head_modules = sorted({name.rsplit(".", 1)[0] for name in head_parameter_names(model)})
    config = LoraConfig(
        r=options.lora_r,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
        target_modules=targets,
        modules_to_save=head_modules,
    )
    wrapped = get_peft_model(model, config)
    plan.eventually_trainable = {n for n, p in wrapped.named_parameters() if p.requires_grad}
    plan.head_names = {n for n in plan.eventually_trainable if ".modules_to_save." in n}
    plan.summary = f"rank-{options.lora_r} adapters on {len(targets)} modules ({', '.join(_short(targets))}) + head"
    return wrapped


def _short(names: list[str], shown: int = 3) -> list[str]:
    suffixes = sorted({n.rsplit(".", 1)[-1] for n in names})
    return suffixes[:shown] + (["…"] if len(suffixes) > shown else [])


def card_rows(options: LoraOptions) -> list[tuple[str, str]]:
    return [
        ("LoRA r / alpha / dropout", f"{options.lora_r} / {options.lora_alpha} / {options.lora_dropout}"),
        ("LoRA saved as", options.lora_save),
    ]


def save_lora(trainer, output_dir: str | Path, options: LoraOptions) -> None:
    """Replace the adapter the Trainer saved by the merged model (``merged``), or keep it with the run's config."""
    model = trainer.model
    out = Path(output_dir)
    if options.lora_save == "adapter":
        model.base_model.model.config.save_pretrained(out)  # label names, for loading the adapter on its base
        return
    merged = model.merge_and_unload()
    for name in ("adapter_model.safetensors", "adapter_model.bin", "adapter_config.json"):
        (out / name).unlink(missing_ok=True)
    merged.save_pretrained(out)
    trainer.model = merged
    shutil.rmtree(out / "__pycache__", ignore_errors=True)
