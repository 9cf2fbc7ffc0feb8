"""Transferability scores: how well frozen features suit the user's labels, without fine-tuning.

Each takes features ``F`` (n x d) and integer labels ``y`` (n,) and is vectorised (no loop over samples).

- LogME (You et al., ICML 2021, "LogME: Practical Assessment of Pre-trained Models for Transfer
  Learning"): for each class k, the one-hot target y_k is modelled as y_k = F w + noise with prior
  w ~ N(0, alpha^-1 I) and noise ~ N(0, beta^-1). The log marginal likelihood (evidence) of y_k is

      L(alpha, beta) = n/2 log beta + d/2 log alpha - n/2 log 2pi - beta/2 ||F m - y_k||^2 - alpha/2 m^T m
                       - 1/2 log |A|,       A = alpha I + beta F^T F,  m = beta A^-1 F^T y_k,

  maximised over (alpha, beta) by MacKay's fixed-point updates (the paper's Algorithm 1):
  gamma = sum_i beta s_i / (alpha + beta s_i) (s_i: eigenvalues of F^T F), alpha <- gamma / m^T m,
  beta <- (n - gamma) / ||F m - y_k||^2. LogME = mean over classes of max L / n. Higher is better.
  One eigendecomposition of F^T F serves every class and every iteration.
- k-NN accuracy: a cosine k-nearest-neighbour classifier fitted on one split, scored on a held-out one.
- Linear-probe accuracy: multinomial logistic regression on standardised features, held-out accuracy.
- H-score with shrinkage (Bao et al., ICIP 2019, "An Information-Theoretic Approach to Transferability in
  Task Transfer Learning"; the Ledoit-Wolf covariance from Ibrahim et al., ICLR 2022, "Newer is not always
  better", which makes it stable when d is large against n): H = tr(cov(F)^-1 cov(E[F | y])).
"""

from __future__ import annotations

import numpy as np

LOGME_TOLERANCE = 1e-6  # relative change of alpha/beta between iterations that counts as converged
LOGME_MAX_ITERATIONS = 100


def _one_hot(labels: np.ndarray) -> np.ndarray:
    classes, index = np.unique(labels, return_inverse=True)
    targets = np.zeros((len(labels), len(classes)))
    targets[np.arange(len(labels)), index] = 1.0
    return targets


def logme(
    features: np.ndarray,
    labels: np.ndarray,
    tolerance: float = LOGME_TOLERANCE,
    max_iterations: int = LOGME_MAX_ITERATIONS,
) -> float:
    """LogME of ``features`` for ``labels`` (see the module docstring), all classes solved at once."""
    f = np.asarray(features, dtype=np.float64)
    y = _one_hot(np.asarray(labels))
    n, d = f.shape
    s, v = np.linalg.eigh(f.T @ f)
    s = np.clip(s, 0.0, None)  # eigenvalues of a Gram matrix: negatives are rounding
    z = v.T @ (f.T @ y)  # F^T y_k in the eigenbasis: (d, K)
    y2 = (y * y).sum(axis=0)  # ||y_k||^2
    alpha, beta = np.ones(y.shape[1]), np.ones(y.shape[1])

    def posterior(alpha, beta):
        coef = beta * z / (alpha + beta * s[:, None])  # m in the eigenbasis
        m2 = (coef * coef).sum(axis=0)
        residual = y2 - 2 * (coef * z).sum(axis=0) + (s[:, None] * coef * coef).sum(axis=0)
        return m2, np.clip(residual, 1e-12, None)

    for _ in range(max_iterations):
        m2, residual = posterior(alpha, beta)
        gamma = (beta * s[:, None] / (alpha + beta * s[:, None])).sum(axis=0)
        new_alpha, new_beta = gamma / np.clip(m2, 1e-12, None), (n - gamma) / residual
        done = np.abs(new_alpha / new_beta - alpha / beta) <= tolerance * (alpha / beta)
        alpha, beta = new_alpha, new_beta
        if done.all():
            break
    m2, residual = posterior(alpha, beta)  # the evidence at the converged (alpha, beta)
    log_det = np.log(alpha[None, :] + beta[None, :] * s[:, None]).sum(axis=0)
    evidence = (
        n / 2 * np.log(beta)
        + d / 2 * np.log(alpha)
        - n / 2 * np.log(2 * np.pi)
        - beta / 2 * residual
        - alpha / 2 * m2
        - log_det / 2
    )
    return float((evidence / n).mean())


def knn_accuracy(train_features, train_labels, test_features, test_labels, k: int = 10) -> float:
    """Held-out accuracy of a cosine k-NN classifier (k capped by the training set's size)."""
    from sklearn.neighbors import KNeighborsClassifier

    classifier = KNeighborsClassifier(n_neighbors=min(k, len(train_labels)), metric="cosine")
    classifier.fit(train_features, train_labels)
    return float((classifier.predict(test_features) == np.asarray(test_labels)).mean())


def linear_probe_accuracy(train_features, train_labels, test_features, test_labels) -> float:
    """Held-out accuracy of logistic regression on standardised features (scikit-learn, L2, C=1)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probe.fit(train_features, train_labels)
    return float((probe.predict(test_features) == np.asarray(test_labels)).mean())


def cross_validated_probe_accuracy(features, labels, folds: int = 5, seed: int = 0) -> tuple[float, int]:
    """(accuracy, examples scored) of the same probe by stratified k-fold cross-validation over every example: what a
    split of a few validation examples cannot tell (6 examples: a standard error of 19 points). The folds are as
    many as the rarest class allows (at least 2); a class with a single example is scored only when held out."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels)
    _, counts = np.unique(labels, return_counts=True)
    scored = np.isin(labels, np.unique(labels)[counts >= 2])
    splits = int(max(2, min(folds, counts[counts >= 2].min(initial=folds))))
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    predicted = cross_val_predict(
        probe, features[scored], labels[scored], cv=StratifiedKFold(splits, shuffle=True, random_state=seed)
    )
    return float((predicted == labels[scored]).mean()), int(scored.sum())


def h_score(features: np.ndarray, labels: np.ndarray) -> float:
    """Shrinkage H-score: tr(cov_LW(F)^-1 cov(E[F|y])), features centred."""
    from sklearn.covariance import LedoitWolf

    f = np.asarray(features, dtype=np.float64)
    f = f - f.mean(axis=0)
    covariance = LedoitWolf(assume_centered=True).fit(f).covariance_
    labels = np.asarray(labels)
    class_means = np.zeros_like(f)
    for label in np.unique(labels):
        members = labels == label
        class_means[members] = f[members].mean(axis=0)
    between = class_means.T @ class_means / len(f)
    return float(np.trace(np.linalg.solve(covariance, between)))
