"""An ONNX export as a ``torch.nn.Module``, so ``hftransfer eval --onnx [fp32|int8|fp16]`` scores it with the same
Trainer pass, metrics, calibration figures and report as the PyTorch model, and the two reports compare line by
line.

The module has no weights: ``forward`` hands the tensors to ONNX Runtime (on the CPU, where the exports are meant to
run) and returns the logits with the loss the PyTorch head computes (cross-entropy, or binary cross-entropy for a
multi-label model), so the report's loss means the same in both.
"""

from __future__ import annotations

import torch
from transformers.modeling_outputs import SequenceClassifierOutput

from hftransfer.artifacts.predict import OnnxBackend, PredictError

# the inputs of the tasks' exports; the Trainer keeps the dataset columns ``forward`` names
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "pixel_values")


class OnnxClassifier(torch.nn.Module):
    def __init__(self, path, multi_label: bool):
        super().__init__()
        self.backend = OnnxBackend(path)
        unknown = [name for name in self.backend.names if name not in ONNX_INPUTS]
        if unknown:
            raise PredictError(
                f"{str(path)!r} takes inputs {', '.join(unknown)} that evaluation does not feed; it feeds "
                f"{', '.join(ONNX_INPUTS)}"
            )
        self.multi_label = multi_label

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, pixel_values=None, labels=None):
        if token_type_ids is None and input_ids is not None:
            # single texts are prepared without segment ids (all zeros, the PyTorch model's default); the export
            # takes them as an input
            token_type_ids = torch.zeros_like(input_ids)
        given = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": token_type_ids,
            "pixel_values": None if pixel_values is None else pixel_values.float(),
        }
        missing = [name for name in self.backend.names if given[name] is None]
        if missing:
            raise PredictError(f"the evaluation batch has no {', '.join(missing)} for the ONNX model")
        inputs = {name: given[name].detach().cpu() for name in self.backend.names}
        logits = torch.from_numpy(self.backend.logits(inputs))
        loss = None
        if labels is not None:
            labels = labels.cpu()
            loss = (
                torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.float())
                if self.multi_label
                else torch.nn.functional.cross_entropy(logits, labels.long())
            )
        return SequenceClassifierOutput(loss=loss, logits=logits)
