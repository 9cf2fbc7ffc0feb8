"""transformers' Trainer, as every part of hftransfer trains and evaluates with it.

``ClassificationTrainer`` keeps classification losses per-example means across processes; ``TransferTrainer``
builds the optimizer from the strategy's parameter groups. Trainer's own ``create_optimizer`` gives every
trainable parameter one learning rate and skips frozen ones, which would drop layer-wise rates, the head's
own rate and every block ``gradual`` unfreezes later. The optimizer class and its settings still come from
``TrainingArguments`` (``optim``, betas, eps …), and the scheduler scales each group's own rate, so warmup and
decay apply to all of them alike. ``ClassificationTrainer`` also loads checkpoints whose weights transformers
renames on save (ViT) whole, where Trainer's own loading restored only the head (``renamed_on_save``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

from safetensors import safe_open
from transformers import PreTrainedModel, Trainer
from transformers.trainer_utils import has_length
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

from hftransfer.engine.progress import readable_callbacks

logger = logging.getLogger("hftransfer")


def saved_weight_names(folder: str | Path) -> set[str] | None:
    """The tensor names a checkpoint's safetensors file (or shard index) holds; None when it has neither."""
    folder = Path(folder)
    if (folder / SAFE_WEIGHTS_INDEX_NAME).is_file():
        return set(json.loads((folder / SAFE_WEIGHTS_INDEX_NAME).read_text())["weight_map"])
    if (folder / SAFE_WEIGHTS_NAME).is_file():
        with safe_open(folder / SAFE_WEIGHTS_NAME, "pt") as weights:
            return set(weights.keys())
    return None


def renamed_on_save(model, folder: str | Path) -> bool:
    """True when ``folder`` holds ``model``'s weights under other names than the model's own.

    transformers 5 renames some architectures' weights when it loads them and renames them back when it saves
    (ViT: ``vit.layers.0.attention.q_proj`` in the model, ``vit.encoder.layer.0.attention.attention.query`` on
    disk). Trainer loads its checkpoints (the best one at the end, the one a run resumes from) with a plain
    ``load_state_dict(..., strict=False)``, so for those models only the head's weights matched: the run ended with
    the last epoch's body under the best epoch's head, and a resumed run went on from the pretrained body.
    """
    names = saved_weight_names(folder) if isinstance(model, PreTrainedModel) else None
    return names is not None and not names <= set(model.state_dict())


def load_renamed(model, folder: str | Path) -> None:
    """Loads ``folder``'s weights into ``model`` in place through ``from_pretrained``, which knows the renaming."""
    saved = type(model).from_pretrained(folder, config=model.config)
    model.load_state_dict(saved.state_dict())  # strict: every weight or an error, never a silent partial load


class ClassificationTrainer(Trainer):
    """Trainer for losses that are a mean over examples, as every classification head's is.

    Trainer multiplies the loss by the number of processes whenever the model's ``forward`` takes
    ``**kwargs``, assuming the model then divides by the token count of the whole distributed batch.
    transformers' sequence-classification models take ``**kwargs`` but compute a per-process mean, so under
    DDP the loss (and so the gradient) came out world_size times too large: 2x the eval loss and 2x the
    effective learning rate on 2 processes. Declaring that the model takes no loss kwargs keeps the per-example
    mean that DDP's gradient averaging expects.
    """

    def __init__(self, *args, train_sampler: Callable | None = None, **kwargs):
        """``train_sampler(dataset, batch_size) -> Sampler | None``: the task's order of training examples (None:
        random batches)."""
        self.train_sampler = train_sampler
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False
        readable_callbacks(self)  # no raw log dicts; one line per evaluation (engine/progress.py)

    def _get_train_sampler(self, train_dataset=None):
        dataset = self.train_dataset if train_dataset is None else train_dataset
        # the user's own choice (group_by_length, …) wins over the task's
        if self.train_sampler is not None and has_length(dataset) and self.args.train_sampling_strategy == "random":
            sampler = self.train_sampler(dataset, self._train_batch_size)
            if sampler is not None:
                return sampler
        return super()._get_train_sampler(train_dataset)

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        batches, items = super().get_batch_samples(epoch_iterator, num_batches, device)
        if not batches:
            # A data loader without a length (a stream) counts its epoch as max_steps long; once the stream is
            # read, transformers 5.24 still walks the rest of that range with empty batches (about 10 µs each:
            # 10 s per pass under a time budget's 1,000,000-step plan). An empty batch ends the pass instead.
            self.control.should_epoch_stop = True
        return batches, items

    def _loads_renamed(self, model, folder) -> bool:
        """Whether ``folder`` is loaded by ``load_renamed`` (DeepSpeed and FSDP load their own sharded states)."""
        return not (self.is_deepspeed_enabled or self.is_fsdp_enabled) and renamed_on_save(model, folder)

    def _load_best_model(self) -> None:
        folder = self.state.best_model_checkpoint
        if not self._loads_renamed(self.model, folder):
            return super()._load_best_model()
        logger.info(
            "loading the best checkpoint, %s (%s %s)", folder, self.args.metric_for_best_model, self.state.best_metric
        )
        return load_renamed(self.model, folder)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        target = self.model if model is None else model
        if not self._loads_renamed(target, resume_from_checkpoint):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        return load_renamed(target, resume_from_checkpoint)


class TransferTrainer(ClassificationTrainer):
    """``param_groups(model, learning_rate=, weight_decay=) -> [{"params", "lr", "weight_decay"}]`` shapes the
    optimizer."""

    def __init__(self, *args, param_groups: Callable[..., list[dict]], **kwargs):
        self.param_groups = param_groups
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            groups = self.param_groups(
                opt_model, learning_rate=self.args.learning_rate, weight_decay=self.args.weight_decay
            )
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer
