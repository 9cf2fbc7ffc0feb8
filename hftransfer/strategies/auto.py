"""``strategy: auto``, the default: linear_probe, lp_ft or full, chosen from the data and the backbone.

What it looks at: the number of training examples, of classes and of examples per class, and how well the
backbone's frozen features already separate the classes: a logistic-regression probe on the features of the
training split, scored on the validation split (the score ``hftransfer rank`` reports as probe accuracy,
computed through the same feature cache, so a probe chosen here reuses the features it measured).

The rules (constants below; the evidence is the table of ``benchmarks/defaults.py`` in docs/training.md):

1. With many training examples (``LARGE_DATA``), fine-tuning everything pays and measuring would cost a pass
   over all of them: ``full``.
   Streamed training data (``streaming: true``) counts as many.
2. When the frozen features already separate the classes, fine-tuning has little to add and costs many times
   a probe: ``linear_probe``. "Separate" is probe accuracy ``>= SEPARABLE``, or not shown to fall short
   of it (a one-sided test at the 5% level: within 1.64 standard errors below): a small validation split
   cannot tell 0.94 from 0.95 (hymenoptera's 49 carved images: a probe at 0.939 chose ``full``, 0.935 on test,
   where ``linear_probe`` scores 0.954), and when the measurement cannot tell, the cheaper strategy, which small
   sets favour anyway, is the better bet.
3. With few examples per class (``FEW_PER_CLASS``): ``lp_ft``, which trains the head first and keeps the probe
   when fine-tuning does not beat it on validation, so a fine-tuned model below the frozen-feature arm is not
   kept. When the body fine-tunes at a small fraction of the head's learning rate (``LP_FT_RATE_RATIO``),
   fine-tuning starts from the probed head: a body that moves slowly stays near its pretrained features, so a
   head fitted to them first is what fine-tuning from a random head lacks (text encoders, body 1e-4 against the
   head's 1e-3: TREC 0.900 against ``full``'s 0.724, 20 Newsgroups 0.600 against 0.417). A body that trains at
   the head's rate (the image recipe: 1e-3 for both) moves far from those features whatever the head's start,
   and starting from the probe gains nothing on average (GTSRB, 21 images per class: ``lp_ft`` with ``full``'s 5
   epochs 0.790-0.812 against ``full``'s 0.797-0.813 over sessions; with 4, 0.758-0.784): there fine-tuning
   starts from a fresh head for ``full``'s epochs (``fine_tune_from_probe: false``) and the probe is only the
   fallback (benchmarks/few_shot.py's image sets).
4. Otherwise ``full``.

With fewer than ``SMALL_VALIDATION`` validation examples the probe of rule 2 is cross-validated over every training
and validation example (a few carved examples cannot tell 0.67 from 0.95). When rule 3 picks ``lp_ft`` for a
sentence encoder read as it was trained, with at most ``CONTRASTIVE_PER_CLASS`` examples per class, ``lp_ft``
fine-tunes the body on pairs of examples first (``contrastive_epochs``: strategies/contrastive.py).

A strategy the user names is always kept; ``auto`` only decides when none is named.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from hftransfer.data.fingerprints import NEAR_RULES, near_copies
from hftransfer.data.labels import LABELS, SMALL_VALIDATION, column_values
from hftransfer.engine.schedule import HEAD_LEARNING_RATE, steps_in_epoch
from hftransfer.evaluation.transferability import cross_validated_probe_accuracy, linear_probe_accuracy
from hftransfer.strategies.features import FeatureCacheUnavailable, frozen_features

logger = logging.getLogger("hftransfer")

LARGE_DATA = 10000
SEPARABLE = 0.95
ONE_SIDED_95 = 1.645  # z of a one-sided test at the 5% level
FEW_PER_CLASS = 50
LP_FT_RATE_RATIO = 1 / 3  # body rate / head rate at most this for rule 3: text 0.02-0.1, images 1.0
# The probe is measured on at most this many training and validation examples (stratified, seeded): enough to
# tell 0.95 from 0.90 (a standard error of 1.3 points at 0.95 on 300 examples), at a cost that stays small
# beside the training it decides (SST-2, 4,000 phrases: with 1,000 + 400 measured, auto then fine-tuning in full
# took 31 s longer than the same fine-tuning alone, 6:08 against 5:37).
# The features of the samples are cached by row (strategies/features.py): a probe strategy chosen next computes
# only the rows they left out, so no example is read twice, and where full follows only the samples were read
# (GTSRB, 1,000 images: 600 + 100 read, the measurement 11.7 s; it read the whole splits, 19.3 s, when a probe
# strategy could only reuse whole splits).
# They are computed in the training's memory format (channels_last on CPU) and allocator.
PROBE_TRAIN, PROBE_VALIDATION = 600, 300
# lp_ft's contrastive phase (strategies/contrastive.py) for a sentence encoder with few examples per class:
# TREC-50 at 8 per class, MiniLM, seed 1: 0.698 test accuracy without it, 0.740 / 0.764 / 0.696 with 5 / 10 / 20
# epochs (SetFit, the library: 0.752 in 545 s); benchmarks/few_shot.py has the sets and seeds behind the defaults.
# Its length: enough passes for each example to meet about 20 partners of its class (SetFit's 20 positive pairs per
# example: 3 per pass in groups of 4) and at least CONTRASTIVE_MIN_STEPS optimiser steps (a set of 30 examples
# is one batch a pass: TREC-6 at 5 per class, 20 steps, 0.486 test accuracy against SetFit's 0.660).
CONTRASTIVE_EPOCHS = 7
CONTRASTIVE_MIN_STEPS = 100
CONTRASTIVE_PER_CLASS = 25  # measured up to 25 per class (benchmarks/few_shot.py); above, lp_ft as before


@dataclass
class Decision:
    """What ``auto`` chose, why, and the numbers behind it (logged, saved with the config, shown in the card)."""

    chosen: str
    reason: str
    numbers: dict = field(default_factory=dict)

    def describe(self) -> str:
        shown = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in self.numbers.items())
        return f"auto chose {self.chosen}: {self.reason} ({shown})"


def decide(
    num_train: int,
    num_classes: int,
    per_class: float,
    probe_accuracy: float | None,
    probe_examples: int | None = None,
    rate_ratio: float = 0.1,
) -> tuple[str, str]:
    """(strategy, reason) by the rules of the module docstring; ``probe_examples``: how many validation examples
    ``probe_accuracy`` was measured on (its standard error); ``rate_ratio``: the body's fine-tuning learning rate
    over the head's."""
    if num_train >= LARGE_DATA:
        return "full", f"{num_train} training examples are enough to fine-tune every layer"
    if (
        probe_accuracy is not None
        and probe_accuracy + ONE_SIDED_95 * standard_error(probe_accuracy, probe_examples) >= SEPARABLE
    ):
        return "linear_probe", "the frozen features already separate the classes"
    if per_class < FEW_PER_CLASS and rate_ratio <= LP_FT_RATE_RATIO:
        return "lp_ft", (
            f"few examples per class (median {per_class:g}) and a body that fine-tunes slowly: "
            "the head is trained first"
        )
    if per_class < FEW_PER_CLASS:
        return "lp_ft", (
            f"few examples per class (median {per_class:g}) and a body that fine-tunes at the head's rate: "
            "fine-tuning from a fresh head, the probe kept if it scores higher"
        )
    return "full", "enough examples per class to fine-tune every layer"


def standard_error(accuracy: float, examples: int | None) -> float:
    """Of an accuracy measured on ``examples`` examples (0 when unknown)."""
    return (accuracy * (1 - accuracy) / examples) ** 0.5 if examples else 0.0


def choose(config, task, model, processor, data, model_config) -> Decision:
    """Measure what the rules need (the probe only when it can change the choice) and decide."""
    if data.streamed:  # data too large to hold: rule 1, without a pass over it to count or probe
        return Decision("full", "streamed training data is taken as large", {"training examples": "streamed"})
    labels = np.asarray(column_values(data.splits["train"], LABELS))
    # multi-label: a label's examples are those that carry it (an example counts for each of its labels)
    counts = dict(enumerate(labels.sum(axis=0).tolist())) if data.multi_label else Counter(labels.tolist())
    per_class = float(statistics.median(counts.values()))
    ratio = body_to_head_rate(config, task, model_config)
    numbers = {
        "training examples": len(labels),
        "classes": len(data.label_names),
        "median per class": f"{per_class:g}",
        "body/head learning rate": f"{ratio:.2g}",
    }
    probe = None
    if data.multi_label:  # the separability probe is a single-label classifier: the rules go by size alone
        numbers["probe"] = "not measured (multi-label)"
    elif len(labels) < LARGE_DATA and "validation" in data.splits:
        probe = probe_accuracy(config, task, model, processor, data, model_config, numbers)
    chosen, reason = decide(
        len(labels), len(data.label_names), per_class, probe, numbers.get("probe validation"), ratio
    )
    if chosen == "lp_ft" and ratio > LP_FT_RATE_RATIO and "fine_tune_from_probe" not in config.explicit:
        config.choose(
            "fine_tune_from_probe",
            False,
            "strategy auto",
            "a body that fine-tunes at the head's rate moves far from the features a probed head fits (rule 3)",
        )
    epochs = contrastive_phase(config, model, data, per_class) if chosen == "lp_ft" else None
    if epochs:
        reason += f"; the body first learns from pairs of examples ({epochs} contrastive epochs)"
        numbers["contrastive epochs"] = epochs
    return Decision(chosen, reason, numbers)


def contrastive_phase(config, model, data, per_class: float) -> int | None:
    """Whether lp_ft fine-tunes the body contrastively first (set as ``contrastive_epochs``): for a sentence encoder
    read as it was trained (backbones/sentence_pooling.py), single-label, with at most ``CONTRASTIVE_PER_CLASS``
    examples per class, unless the user set it."""
    pooled = getattr(getattr(model, "config", None), "hftransfer_pooling", None)
    if data.multi_label or "contrastive_epochs" in config.explicit or not isinstance(pooled, dict):
        return None
    if per_class > CONTRASTIVE_PER_CLASS:
        return None
    steps = steps_in_epoch(len(data.splits["train"]), config.training)
    epochs = max(CONTRASTIVE_EPOCHS, math.ceil(CONTRASTIVE_MIN_STEPS / steps))
    config.choose(
        "contrastive_epochs",
        epochs,
        "strategy auto",
        f"a sentence encoder with few examples per class (median {per_class:g}) learns more from pairs of them; "
        f"{epochs} passes: {CONTRASTIVE_EPOCHS} or more, and {CONTRASTIVE_MIN_STEPS} optimiser steps or more",
    )
    return epochs


def body_to_head_rate(config, task, model_config) -> float:
    """The body's fine-tuning learning rate over the new head's, as the recipe will set them (the user's, else the
    task's for this checkpoint; the head's as ``engine/schedule.py`` sets it)."""
    body = config.training.learning_rate
    if "learning_rate" not in config.explicit and task is not None and task.suggest_training_args:
        body = task.suggest_training_args(model_config).get("learning_rate", body)
    head = config.transfer.head_learning_rate or max(body, HEAD_LEARNING_RATE)
    return body / head


def probe_accuracy(config, task, model, processor, data, model_config, numbers: dict) -> float | None:
    """Held-out accuracy of a probe fitted on a sample of the training split's frozen features, scored on a
    sample of the validation split's. The features go to the cache, where a probe strategy chosen next finds
    them and computes only the rows the samples left out."""
    started = time.perf_counter()
    sizes = {"train": PROBE_TRAIN, "validation": PROBE_VALIDATION}
    try:
        features = frozen_features(
            model,
            config,
            task,
            processor,
            data,
            model_config,
            sample=lambda split, labels: sample_rows(np.asarray(labels), sizes[split], config.training.seed),
        )
    except FeatureCacheUnavailable as reason:
        logger.info("auto: no fixed-size features to measure (%s); deciding from the data's size", reason)
        return None
    (train_x, train_y), (val_x, val_y) = features["train"], features["validation"]
    if len(np.unique(train_y.numpy())) < 2:  # nothing to separate: a probe needs two classes to fit
        numbers["probe"] = "not measured (the training sample holds a single class)"
        return None
    if task.pixel_key is not None:  # the audit's image rule holds for these features (text reads a pooler here)
        warn_of_near_copies(config, train_x.numpy(), val_x.numpy())
    train_x, val_x = train_x.numpy().astype(np.float64), val_x.numpy().astype(np.float64)
    if len(val_y) < SMALL_VALIDATION:  # too few to tell anything: every example measured, in turn held out
        accuracy, scored = cross_validated_probe_accuracy(
            np.concatenate([train_x, val_x]),
            np.concatenate([train_y.numpy(), val_y.numpy()]),
            seed=config.training.seed,
        )
        numbers["probe accuracy (cross-validated)"] = accuracy
        numbers["probe validation"] = scored
    else:
        accuracy = linear_probe_accuracy(train_x, train_y.numpy(), val_x, val_y.numpy())
        numbers["probe accuracy"] = accuracy
        numbers["probe train"], numbers["probe validation"] = len(train_y), len(val_y)
    numbers["measured in s"] = round(time.perf_counter() - started, 1)
    return accuracy


def warn_of_near_copies(config, train_x: np.ndarray, val_x: np.ndarray) -> None:
    """The features measured anyway show validation images with a near copy among the training ones: a leak the
    exact check (file bytes) misses, such as a resized or re-encoded copy. Said in the log, summary and card."""
    rule = NEAR_RULES["image"]
    copies = int(near_copies(train_x, val_x, rule.certain).sum())
    if copies:
        note = (
            f"leak: {copies} of the {len(val_x)} validation images auto measured {'has' if copies == 1 else 'have'} "
            "a near copy (cosine similarity "
            f"at least {rule.certain}) among the {len(train_x)} training images it measured; the validation score "
            "overstates the model. hftransfer audit checks every example"
        )
        logger.warning(note)
        config.notes.append(note)


def sample_rows(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Indices of at most ``size`` rows, every class kept in proportion where the classes allow it."""
    rows = np.arange(len(labels))
    if len(rows) <= size:
        return rows
    from sklearn.model_selection import train_test_split

    try:
        picked, _ = train_test_split(rows, train_size=size, random_state=seed, stratify=labels)
    except ValueError:  # a class with a single example cannot be stratified
        picked = np.random.default_rng(seed).choice(rows, size, replace=False)
    return np.sort(picked)
