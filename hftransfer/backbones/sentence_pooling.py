"""Read a sentence encoder as it was trained: its pooling, inside a standard transformers classifier.

A sentence-transformers checkpoint (``modules.json`` with a ``Pooling`` module, e.g. all-MiniLM-L6-v2) was
trained so that the *mean* of its last hidden states (or its first token, as ``1_Pooling/config.json`` says)
is the sentence's vector. ``AutoModelForSequenceClassification`` reads neither: BERT's head input is its pooler
(first token → dense → tanh), which a sentence encoder never trained. Measured on TREC-50 with 8 questions per
class (MiniLM, logistic regression on the frozen vectors, 500 test questions): the pooler 0.230, the mean as
sentence-transformers computes it 0.482.

The classifier is made to pool as the encoder was trained *without custom code*, so that ``pipeline()``, ONNX,
int8 and distillation keep working on a plain ``BertForSequenceClassification``:

- ``mean``: one encoder layer is appended whose attention is uniform over the real tokens (query and key
  weights zero, so every score is equal and the padding mask leaves the average of the values; value the
  identity, output ``SCALE`` × identity, which drowns the residual before the scale-free LayerNorm) and whose
  feed-forward adds nothing (zero weights). Its first-token output is LayerNorm(mean of the last hidden states)
  to a cosine of 0.999999 (MiniLM, TREC). Its zero weights get zero gradients (a saddle), so fine-tuning keeps
  it a pooling layer; the value and output maps may learn a linear change.
- ``mean`` and ``cls`` both set the pooler's dense layer to ``POOLER_GAIN`` × identity: tanh of a small
  multiple is nearly linear, so the head reads the pooled vector itself (TREC, 8 per class: 0.496 against
  0.470 with gain 1, where tanh bends the vector).

Costs: one more layer of compute (MiniLM-L6: 7 layers instead of 6) and 1.8 M parameters. Only encoders whose
layers have BERT's structure (``encoder.layer[i].attention.self.query`` …, a ``pooler.dense``: BERT, RoBERTa,
XLM-R, ELECTRA-style MiniLM) are rewritten; another encoder keeps its own head input and the run says so.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import torch
from torch import nn

from hftransfer.errors import HftransferError

logger = logging.getLogger("hftransfer")

SCALE = 1000.0
POOLER_GAIN = 0.1
CONFIG_KEY = "hftransfer_pooling"  # in config.json: {"mode": ..., "source": ...}: what was done, for the card
# sentence-transformers' Pooling config keys → hftransfer's pooling modes (the modes it can build)
TRAINED_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
OTHER_MODES = ("pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens")


class PoolingError(HftransferError):
    """A sentence encoder's pooling files could not be read."""


def trained_pooling(model_folder: str | Path | None, fetch=None) -> tuple[str | None, str]:
    """(mode, reason): how the checkpoint's sentence vectors were pooled, ``mean`` or ``cls``; None when it is no
    sentence-transformers checkpoint (the model's own head input is then kept) or pools another way.

    ``fetch(name) -> path | None`` finds a file of a Hub checkpoint (None: a local folder only)."""
    from hftransfer.files.readers import FileReadError, json_object

    modules_file = _find(model_folder, "modules.json", fetch)
    if modules_file is None:
        return None, "no modules.json: not a sentence-transformers checkpoint"
    try:
        modules = json.loads(Path(modules_file).read_text(encoding="utf-8"))
    except (ValueError, OSError) as err:
        raise PoolingError(f"{modules_file} is not a readable modules.json ({err})") from None
    if not isinstance(modules, list):
        raise PoolingError(f"{modules_file} holds a JSON {type(modules).__name__}, not the list of modules")
    pooling = [m for m in modules if isinstance(m, dict) and str(m.get("type", "")).endswith("Pooling")]
    if not pooling:
        return None, "modules.json lists no Pooling module"
    config_file = _find(model_folder, f"{pooling[0].get('path', '')}/config.json", fetch)
    if config_file is None:
        return None, "modules.json names a Pooling module without its config.json"
    try:
        config = json_object(config_file, what="pooling config")
    except FileReadError as err:
        raise PoolingError(str(err)) from None
    chosen = [mode for key, mode in TRAINED_MODES.items() if config.get(key)]
    others = [key for key in OTHER_MODES if config.get(key)]
    if len(chosen) != 1 or others:
        return None, f"pooling {config} is not a single mean or cls pooling (the model's own head input is kept)"
    return chosen[0], f"{Path(config_file).parent.name}/config.json: trained with {chosen[0]} pooling"


def hub_fetcher(model_id: str, revision: str | None, cache_dir: str | None):
    """``fetch`` for a Hub checkpoint: a file's local path (downloaded or cached), None when it has no such file or
    the Hub cannot be reached (offline, the checkpoint's own loading then says what is wrong)."""

    def fetch(name: str) -> str | None:
        from huggingface_hub import hf_hub_download

        try:
            return hf_hub_download(model_id, name, revision=revision, cache_dir=cache_dir)
        except Exception:  # noqa: BLE001 - absent file, offline, gated: all mean "no pooling files to read"
            return None

    return fetch


def _find(folder, name: str, fetch) -> str | None:
    if folder is not None and Path(folder).is_dir():
        path = Path(folder) / name.lstrip("/")
        return str(path) if path.is_file() else None
    return fetch(name.lstrip("/")) if fetch else None


def bert_like_parts(model: nn.Module) -> tuple[nn.ModuleList, nn.Linear] | None:
    """(the encoder's layer list, the pooler's dense layer) when the model has BERT's layer structure, else None."""
    base = getattr(model, "base_model", None)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    pooler = getattr(getattr(base, "pooler", None), "dense", None)
    if not isinstance(layers, nn.ModuleList) or not len(layers) or not isinstance(pooler, nn.Linear):
        return None
    layer = layers[-1]
    needed = (
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
        "attention.output.LayerNorm",
        "intermediate.dense",
        "output.dense",
        "output.LayerNorm",
    )
    names = dict(layer.named_modules())
    if not all(name in names for name in needed):
        return None
    return layers, pooler


@torch.no_grad()
def pool_as_trained(model: nn.Module, mode: str, source: str) -> str | None:
    """Rewrite ``model`` (a fresh classifier on the encoder) to pool by ``mode``; returns what was done, or None
    when the model's structure is not BERT's (it is then left as it was)."""
    parts = bert_like_parts(model)
    if parts is None:
        logger.info(
            "pooling %s: %s has no BERT-style layers to rewrite; its head input is kept", mode, type(model).__name__
        )
        return None
    layers, pooler = parts
    width = pooler.in_features
    if mode == "mean":
        layers.append(_averaging_layer(layers[-1], width))
        model.config.num_hidden_layers = len(layers)
        _renumber(layers)
    pooler.weight.copy_(POOLER_GAIN * torch.eye(width, dtype=pooler.weight.dtype))
    pooler.bias.zero_()
    setattr(model.config, CONFIG_KEY, {"mode": mode, "source": source})
    if mode == "mean":
        return f"{mode} pooling as the encoder was trained ({source}): an averaging layer is appended"
    return f"{mode} pooling as the encoder was trained ({source})"


def _averaging_layer(last: nn.Module, width: int) -> nn.Module:
    layer = copy.deepcopy(last)
    eye = torch.eye(width)
    attention = layer.attention
    for linear in (attention.self.query, attention.self.key, layer.intermediate.dense, layer.output.dense):
        linear.weight.zero_()
        linear.bias.zero_()
    attention.self.value.weight.copy_(eye)
    attention.self.value.bias.zero_()
    attention.output.dense.weight.copy_(SCALE * eye)
    attention.output.dense.bias.zero_()
    for norm in (attention.output.LayerNorm, layer.output.LayerNorm):
        norm.weight.fill_(1.0)
        norm.bias.zero_()
    return layer


def _renumber(layers: nn.ModuleList) -> None:
    """Layers that know their index (a key/value cache's slot) get the appended one's."""
    for index, layer in enumerate(layers):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = index
