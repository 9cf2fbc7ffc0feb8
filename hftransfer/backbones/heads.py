"""Classification heads: the backbone's own linear head (default), an MLP head, and timm's pooling choice.

An MLP head changes the architecture, so a saved model must say how to rebuild it. ``config.json`` holds the
head's description (``hftransfer_head``: which linear layer it replaces, sizes, activation, dropout), from
which hftransfer rebuilds the model with its own code (``load_classifier``) and never imports a file from
the folder. For ``pipeline`` users, hftransfer also writes a small modeling file (transformers' custom-code
mechanism, ``auto_map``) that does the same; it loads with ``pipeline(..., trust_remote_code=True)``. The
default linear head needs no custom code; timm pooling is stored in the timm wrapper config's
``model_args`` and needs none either.
"""

from __future__ import annotations

import json
from pathlib import Path

import transformers
from torch import nn
from transformers import PreTrainedModel

from hftransfer.config.options import HEAD_ACTIVATIONS
from hftransfer.errors import HftransferError
from hftransfer.files.atomic import write_text_atomically

DEFAULT_HIDDEN_SIZES = [512]
MODELING_FILE = "modeling_hftransfer_head.py"
CLASS_PREFIX = "HftransferMLP"
HEAD_CONFIG_KEYS = ("hftransfer_head", "auto_map")  # what a new head must not inherit from an earlier output


class HeadError(HftransferError):
    """A head or pooling option this backbone cannot take; names the valid choices."""


def mlp_layers(
    in_features: int, hidden_sizes: list[int], num_labels: int, activation: str, dropout: float
) -> nn.Sequential:
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
    from hftransfer.backbones.blocks import backbone_of, head_module

    backbone = backbone_of(model)
    if transfer.pooling:
        if not hasattr(backbone, "reset_classifier"):
            raise HeadError(
                f"pooling={transfer.pooling!r} needs a timm backbone; {type(model).__name__} pools "
                "in its own way (leave pooling unset)"
            )
        try:
            backbone.reset_classifier(model.config.num_labels, global_pool=transfer.pooling)
        except (AssertionError, ValueError, KeyError, TypeError) as err:
            raise HeadError(
                f"pooling {transfer.pooling!r} is not valid for {type(backbone).__name__}: {err}; "
                "valid for most CNNs: avg, max, avgmax, catavgmax; for ViTs: token, avg"
            ) from None
        model.config.model_args = {**(getattr(model.config, "model_args", None) or {}), "global_pool": transfer.pooling}
    trained = getattr(model.config, "hftransfer_pooling", None)  # a sentence encoder's (sentence_pooling.py)
    pooled = f", {transfer.pooling} pooling" if transfer.pooling else ""
    pooled += f", {trained['mode']} pooling as the encoder was trained" if isinstance(trained, dict) else ""
    if transfer.head == "linear":
        return "linear head" + pooled
    linear = head_module(model)
    if not isinstance(linear, nn.Linear):
        raise HeadError(
            f"head: mlp replaces a linear classifier; {type(model).__name__}'s is a {type(linear).__name__}"
        )
    path = next(name for name, module in model.named_modules() if module is linear)
    hidden = list(transfer.head_hidden_sizes or DEFAULT_HIDDEN_SIZES)
    spec = {
        "path": path,
        "in_features": linear.in_features,
        "hidden_sizes": hidden,
        "activation": transfer.head_activation,
        "dropout": transfer.head_dropout,
    }
    model.set_submodule(
        path,
        mlp_layers(linear.in_features, hidden, linear.out_features, transfer.head_activation, transfer.head_dropout),
    )
    model.config.hftransfer_head = spec
    return f"mlp head {linear.in_features} → {' → '.join(map(str, hidden))} → {linear.out_features}{pooled}"


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
    write_text_atomically(out / MODELING_FILE, modeling_code(base))
    config_path = out / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["auto_map"] = {auto_class: f"{MODELING_FILE[:-3]}.{CLASS_PREFIX}{base}"}
    config["architectures"] = [f"{CLASS_PREFIX}{base}"]
    write_text_atomically(config_path, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return True


def _auto_class_for(model: nn.Module) -> str:
    name = type(model).__name__
    if name.endswith("ForImageClassification"):
        return "AutoModelForImageClassification"
    if name.endswith("ForSequenceClassification"):
        return "AutoModelForSequenceClassification"
    raise HeadError(f"head: mlp cannot be saved for {name} (no matching Auto class)")


def modeling_code(base: str) -> str:
    """The modeling file hftransfer writes for an MLP head on the transformers class ``base``."""
    return _MODELING_TEMPLATE.format(base=base)


def head_spec(model_config: dict) -> dict | None:
    """The ``hftransfer_head`` description of a saved model's MLP head, checked; None when it has none."""
    spec = model_config.get("hftransfer_head")
    if spec is None:
        return None
    valid = (
        isinstance(spec, dict)
        and isinstance(spec.get("path"), str)
        and isinstance(spec.get("in_features"), int)
        and isinstance(spec.get("hidden_sizes"), list)
        and all(isinstance(h, int) and h > 0 for h in spec["hidden_sizes"])
        and spec.get("activation") in HEAD_ACTIVATIONS
        and isinstance(spec.get("dropout"), (int, float))
    )
    if not valid:
        raise HeadError(f"config.json has an hftransfer_head entry that hftransfer did not write: {spec!r}")
    return spec


def _base_class_name(model_config: dict) -> str | None:
    architectures = model_config.get("architectures") or []
    if len(architectures) != 1 or not str(architectures[0]).startswith(CLASS_PREFIX):
        return None
    return architectures[0].removeprefix(CLASS_PREFIX)


def own_head_code_entries(folder: Path, model_config: dict) -> set[str]:
    """The ``auto_map`` keys of ``config.json`` that point at hftransfer's own, unmodified MLP-head file."""
    base = _base_class_name(model_config)
    mapping = model_config.get("auto_map") or {}
    code = folder / MODELING_FILE
    if base is None or model_config.get("hftransfer_head") is None or not code.is_file():
        return set()
    if code.read_text(encoding="utf-8") != modeling_code(base):  # changed since hftransfer wrote it: not ours
        return set()
    target = f"{MODELING_FILE[:-3]}.{CLASS_PREFIX}{base}"
    return {key for key, value in mapping.items() if value == target and key.startswith("AutoModelFor")}


def mlp_head_class(base_name: str) -> type:
    """The transformers class ``base_name`` with the MLP head of ``config.hftransfer_head`` (the same class as the
    modeling file's, defined here so that loading never imports code from a model folder)."""
    base = getattr(transformers, base_name, None)
    if not (isinstance(base, type) and issubclass(base, PreTrainedModel)):
        raise HeadError(f"config.json names {CLASS_PREFIX}{base_name}, but {base_name!r} is not a transformers model")

    def __init__(self, config, *args, **kwargs):
        base.__init__(self, config, *args, **kwargs)
        head = config.hftransfer_head
        self.set_submodule(
            head["path"],
            mlp_layers(
                head["in_features"], head["hidden_sizes"], config.num_labels, head["activation"], head["dropout"]
            ),
        )

    return type(f"{CLASS_PREFIX}{base_name}", (base,), {"__init__": __init__})


def load_classifier(auto_model, path: Path, model_config: dict, trust_remote_code: bool):
    """A saved classifier: an hftransfer MLP head rebuilt by hftransfer's own code, anything else by ``auto_model``."""
    base = _base_class_name(model_config)
    if head_spec(model_config) is not None and base is not None:
        config = transformers.AutoConfig.from_pretrained(path)
        return mlp_head_class(base).from_pretrained(path, config=config)
    return auto_model.from_pretrained(path, trust_remote_code=trust_remote_code)


def without_head_code(config):
    """A model config to build a new head from: an earlier MLP head's description and code pointer removed."""
    for key in HEAD_CONFIG_KEYS:
        if hasattr(config, key):
            delattr(config, key)
    return config


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
