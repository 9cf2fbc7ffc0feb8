"""transformers' Trainer, as every part of hftransfer trains and evaluates with it.

``ClassificationTrainer`` keeps classification losses per-example means across processes; ``TransferTrainer``
builds the optimizer from the strategy's parameter groups. Trainer's own ``create_optimizer`` gives every
trainable parameter one learning rate and skips frozen ones, which would drop layer-wise rates, the head's
own rate and every block ``gradual`` unfreezes later. The optimizer class and its settings still come from
``TrainingArguments`` (``optim``, betas, eps …), and the scheduler scales each group's own rate, so warmup and
decay apply to all of them alike.
"""

from __future__ import annotations

from typing import Callable

from transformers import Trainer
from transformers.trainer_utils import has_length


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


class TransferTrainer(ClassificationTrainer):
    """``param_groups(model, learning_rate=, weight_decay=) -> [{"params", "lr", "weight_decay"}]`` shapes the optimizer."""

    def __init__(self, *args, param_groups: Callable[..., list[dict]], **kwargs):
        self.param_groups = param_groups
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            groups = self.param_groups(opt_model, learning_rate=self.args.learning_rate,
                                       weight_decay=self.args.weight_decay)
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer
