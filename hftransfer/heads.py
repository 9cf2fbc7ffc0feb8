"""Classification heads: the backbone's own linear head (default), an MLP head, and timm's pooling choice.

An MLP head changes the architecture, so a saved model must say how to rebuild it: hftransfer writes a
small, self-contained modeling file next to the weights (transformers' custom-code mechanism, ``auto_map``)
whose class is the original architecture with the MLP in place of its classifier. It then loads with
``pipeline(..., trust_remote_code=True)``; the default linear head needs no custom code. timm pooling is
stored in the timm wrapper config's ``model_args`` and needs none either.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

HEADS = ("linear", "mlp")
HEAD_ACTIVATIONS = ("gelu", "relu", "silu", "tanh")
DEFAULT_HIDDEN_SIZES = [512]
MODELING_FILE = "modeling_hftransfer_head.py"


class HeadError(ValueError):
    """A head or pooling option this backbone cannot take; names the valid choices."""


def mlp_layers(in_features: int, hidden_sizes: list[int], num_labels: int, activation: str,
               dropout: float) -> nn.Sequential:
    """Dropout → Linear → activation for each hidden size, then Dropout → Linear to the labels."""
    layers, width = [], in_features
    for size in hidden_sizes:
        layers += [nn.Dropout(dropout), nn.Linear(width, size), _ACTIVATIONS[activation]()]
        width = size
    layers += [nn.Dropout(dropout), nn.Linear(width, num_labels)]
    return nn.Sequential(*layers)


_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}


def apply_head(model: nn.Module, transfer) -> str:
    """Set timm pooling and replace the linear classifier with an MLP as asked; returns a one-line summary."""
    from hftransfer.blocks import backbone_of, head_module

    backbone = backbone_of(model)
    if transfer.pooling:
        if not hasattr(backbone, "reset_classifier"):
            raise HeadError(f"pooling={transfer.pooling!r} needs a timm backbone; {type(model).__name__} pools "
                            "in its own way (leave pooling unset)")
        try:
            backbone.reset_classifier(model.config.num_labels, global_pool=transfer.pooling)
        except (AssertionError, ValueError, KeyError, TypeError) as err:
            raise HeadError(f"pooling {transfer.pooling!r} is not valid for {type(backbone).__name__}: {err}; "
                            "valid for most CNNs: avg, max, avgmax, catavgmax; for ViTs: token, avg") from None
        model.config.model_args = {**(getattr(model.config, "model_args", None) or {}),
                                   "global_pool": transfer.pooling}
    if transfer.head == "linear":
        return "linear head" + (f", {transfer.pooling} pooling" if transfer.pooling else "")
    linear = head_module(model)
    if not isinstance(linear, nn.Linear):
        raise HeadError(f"head: mlp replaces a linear classifier; {type(model).__name__}'s is a "
                        f"{type(linear).__name__}")
    path = next(name for name, module in model.named_modules() if module is linear)
    hidden = list(transfer.head_hidden_sizes or DEFAULT_HIDDEN_SIZES)
    spec = {"path": path, "in_features": linear.in_features, "hidden_sizes": hidden,
            "activation": transfer.head_activation, "dropout": transfer.head_dropout}
    model.set_submodule(path, mlp_layers(linear.in_features, hidden, linear.out_features,
                                         transfer.head_activation, transfer.head_dropout))
    model.config.hftransfer_head = spec
    return f"mlp head {linear.in_features} → {' → '.join(map(str, hidden))} → {linear.out_features}"


def write_head_code(model: nn.Module, output_dir: str | Path) -> bool:
    """For an MLP head: write the modeling file and point ``config.json``'s ``auto_map`` at it."""
    if hasattr(model, "get_base_model"):  # a peft model saved as an adapter: its base holds the head
        model = model.get_base_model()
    spec = getattr(model.config, "hftransfer_head", None)
    if not spec:
        return False
    out = Path(output_dir)
    base = type(model).__name__
    auto_class = _auto_class_for(model)
    (out / MODELING_FILE).write_text(_MODELING_TEMPLATE.format(base=base), encoding="utf-8")
    config_path = out / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["auto_map"] = {auto_class: f"{MODELING_FILE[:-3]}.HftransferMLP{base}"}
    config["architectures"] = [f"HftransferMLP{base}"]
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return True


def _auto_class_for(model: nn.Module) -> str:
    name = type(model).__name__
    if name.endswith("ForImageClassification"):
        return "AutoModelForImageClassification"
    if name.endswith("ForSequenceClassification"):
        return "AutoModelForSequenceClassification"
    raise HeadError(f"head: mlp cannot be saved for {name} (no matching Auto class)")


_MODELING_TEMPLATE = '''"""{base} with the MLP classification head hftransfer trained (written by hftransfer).

Load with: pipeline(..., model=THIS_FOLDER, trust_remote_code=True) or
AutoModelFor...from_pretrained(THIS_FOLDER, trust_remote_code=True). The head is described by
config.hftransfer_head: path of the replaced linear layer, sizes, activation and dropout.
"""

from torch import nn
from transformers import {base}

_ACTIVATIONS = {{"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}}


def mlp_layers(in_features, hidden_sizes, num_labels, activation, dropout):
    layers, width = [], in_features
    for size in hidden_sizes:
        layers += [nn.Dropout(dropout), nn.Linear(width, size), _ACTIVATIONS[activation]()]
        width = size
    layers += [nn.Dropout(dropout), nn.Linear(width, num_labels)]
    return nn.Sequential(*layers)


class HftransferMLP{base}({base}):
    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        head = config.hftransfer_head
        self.set_submodule(head["path"], mlp_layers(head["in_features"], head["hidden_sizes"], config.num_labels,
                                                    head["activation"], head["dropout"]))
'''
