"""A probe's linear head fitted as a logistic regression on the frozen features (scikit-learn, L-BFGS), instead of
by epochs of gradient steps.

Fitting a linear head on fixed features is a convex problem: solved to its optimum, with its regularisation chosen
by cross-validation over the training examples, it needs neither a learning rate nor a number of epochs, nor a
best epoch picked on validation (with a few examples per class the validation split cannot rank epochs: the first
of many tied ones was kept, a head a few steps from its random start). Written here, not taken whole from a library,
only for the mapping of scikit-learn's coefficients into the model's own ``nn.Linear``, so that the saved model is
still the plain checkpoint every export reads.

Used for single-label heads that are one ``nn.Linear`` (dropout, flatten and identity around it are fine) trained
with cross-entropy (class weights included), where the probe may be the model (strategies/probe.py decides);
anything else trains by gradient steps as before.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hftransfer.strategies.auto import sample_rows

logger = logging.getLogger("hftransfer")

# The regularisation strengths tried (scikit-learn's C, on features scaled to a mean norm of 1), chosen by the
# held-out log loss of stratified folds: against a fixed C, on frozen MiniLM / EfficientNet-Lite0 features of
# SST-2, TREC-6, TREC-50, Caltech-101 and GTSRB at 5-25 per class, the choice landed within 0.5 points of the
# best C's test accuracy in 10 of 11 cases (accuracy as the criterion ties on a few examples and took the smallest
# C: 2.7 and 3.7 points lower on SST-2). With fewer than 2 examples of a class nothing can be held out, and C = 1
# is taken (SetFit's head and benchmarks/few_shot.py's frozen-feature arm: unit-norm features, C = 1).
STRENGTHS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
DEFAULT_STRENGTH = 1.0
MAX_FOLDS = 5
# C is chosen on at most this many examples (stratified; 1,000 x 384 features of 50 classes: 12 s on 2 cores),
# and the head then fitted on all of them (more examples need less regularisation, so C matters less there)
SELECTION_SAMPLE = 1000
PASSTHROUGH = (nn.Dropout, nn.Identity, nn.Flatten)


@dataclass
class LogisticFit:
    """What was fitted: shown in the log and as the probe's origin."""

    strength: float
    chosen_by: str
    seconds: float
    train_loss: float

    def describe(self) -> str:
        return f"a logistic regression, C {self.strength:g} ({self.chosen_by}), fitted in {self.seconds:.1f} s"


def single_linear(head: nn.Module) -> nn.Linear | None:
    """The head's one ``nn.Linear`` when everything else in it holds no parameters and passes its input through."""
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    others = [m for m in head.modules() if not isinstance(m, (nn.Linear, nn.Sequential, *PASSTHROUGH))]
    if len(linears) != 1 or others or isinstance(head, nn.Sequential) and head[-1] is not linears[0]:
        return None
    return linears[0]


def fit_logistic_head(
    linear: nn.Linear, features: np.ndarray, labels: np.ndarray, class_weight: np.ndarray | None, seed: int
) -> LogisticFit | None:
    """Fit ``linear`` in place as a multinomial logistic regression of ``labels`` on ``features``; None (nothing
    changed) when a class has no training example, as its row could not be fitted."""
    from sklearn.linear_model import LogisticRegression

    started = time.perf_counter()
    num_labels = linear.out_features
    counts = np.bincount(labels, minlength=num_labels)
    if (counts == 0).any() or num_labels < 2:
        return None
    scale = float(np.linalg.norm(features, axis=1).mean()) or 1.0
    x = features.astype(np.float64) / scale
    weights = None if class_weight is None else {i: float(w) for i, w in enumerate(class_weight)}
    strength, chosen_by = choose_strength(x, labels, weights, seed)
    model = LogisticRegression(C=strength, max_iter=3000, class_weight=weights, random_state=seed).fit(x, labels)
    coef, intercept = model.coef_, model.intercept_
    if num_labels == 2:  # scikit-learn keeps one row for two classes: the same softmax, split between both
        coef, intercept = np.concatenate([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    with torch.no_grad():
        linear.weight.copy_(torch.as_tensor(coef / scale, dtype=linear.weight.dtype))
        if linear.bias is not None:
            linear.bias.copy_(torch.as_tensor(intercept, dtype=linear.bias.dtype))
    probabilities = model.predict_proba(x)[np.arange(len(labels)), labels]
    loss = float(-np.log(np.clip(probabilities, 1e-12, None)).mean())
    return LogisticFit(strength, chosen_by, time.perf_counter() - started, loss)


def choose_strength(x: np.ndarray, labels: np.ndarray, weights: dict | None, seed: int) -> tuple[float, str]:
    """C by stratified cross-validation (log loss, the probability the run calibrates) over ``STRENGTHS``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    rows = sample_rows(labels, SELECTION_SAMPLE, seed)
    folds = min(MAX_FOLDS, int(np.bincount(labels[rows])[np.unique(labels[rows])].min()))
    if folds < 2:
        return DEFAULT_STRENGTH, "a class has a single example: nothing to cross-validate"
    search = GridSearchCV(
        LogisticRegression(max_iter=3000, class_weight=weights, random_state=seed),
        {"C": list(STRENGTHS)},
        scoring="neg_log_loss",
        cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
        refit=False,
    ).fit(x[rows], labels[rows])
    return float(search.best_params_["C"]), f"{folds}-fold cross-validation over {len(rows)} examples"
