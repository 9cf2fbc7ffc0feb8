"""What a run writes into its output_dir and what it reads from disk: the names the output policy protects
(``files/output_policy.py``) and the inputs an output_dir must stay apart from."""

from __future__ import annotations

from pathlib import Path

from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from hftransfer.config.recipes import CONFIG_FILE
from hftransfer.files.output_policy import Input
from hftransfer.files.written import WORKING_DIR_PREFIX

# Every top-level name a run writes into output_dir: the saved model and its preprocessing files (whatever the
# tokenizer or image processor saves), hftransfer's config, card, reports and plots, the Trainer's results and
# checkpoints, working folders. A file of the user's under one of these names is never replaced (tests/e2e check
# that a run writes nothing outside this list).
RUN_WRITES = (
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "pytorch_model*.bin",
    "pytorch_model.bin.index.json",
    "adapter_*",
    "tokenizer*",
    "vocab*",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "spiece.model",
    "sentencepiece*",
    "*.tiktoken",
    "chat_template*",
    "*preprocessor_config.json",
    "processor_config.json",
    "training_args.bin",
    "README.md",
    CONFIG_FILE,
    "*_results.json",
    TRAINER_STATE_NAME,
    "*.png",
    "*_report.json",
    "modeling_*.py",
    "label_names.json",
    f"{PREFIX_CHECKPOINT_DIR}-[0-9]*",  # what transformers' checkpoint rotation takes for a checkpoint
    f"{WORKING_DIR_PREFIX}*",
    ".model.partial",
    "runs",
)


def run_inputs(config) -> list[Input]:
    """What a run reads from disk: its backbone and weights, its data, its exclude list."""
    model, data = config.model, config.data
    files = {
        "weights": model.weights,
        "train_file": data.train_file,
        "validation_file": data.validation_file,
        "test_file": data.test_file,
        "exclude_file": data.exclude_file,
    }
    return [
        *([Input("model", model.model)] if model.model and _is_model_folder(model.model) else []),
        *([Input("data_dir", data.data_dir, file=False)] if data.data_dir else []),
        *(Input(name, path, file=True) for name, path in files.items() if path),
    ]


def _is_model_folder(name: str) -> bool:
    """A local model folder (a Hub id, or a folder that is no model, is left to the model's own checks)."""
    return (Path(name).expanduser() / "config.json").is_file()
