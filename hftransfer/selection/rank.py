"""``hftransfer rank``: score candidate backbones on the user's data from frozen features, then train the best.

Each candidate is loaded exactly as ``hftransfer train`` would load it (same task, preprocessing and data
options), its backbone runs once over a stratified, seeded sample of the training and validation data (through the
same on-disk feature cache as the ``linear_probe`` strategy, so ranking again with another candidate or
another score recomputes nothing), and the features are scored with ``hftransfer.evaluation.transferability``.
Candidates that cannot be loaded are reported and skipped; the others still rank.
"""

from __future__ import annotations

import copy
import logging
import resource
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hftransfer.backbones.checkpoints import load_model_config
from hftransfer.config.commands import RankOptions
from hftransfer.config.options import ConfigError
from hftransfer.data.labels import LabelledData
from hftransfer.errors import HftransferError
from hftransfer.evaluation import transferability
from hftransfer.files.atomic import write_text_atomically
from hftransfer.files.output_policy import Output, check_output
from hftransfer.files.written import record_entries
from hftransfer.strategies.auto import body_to_head_rate, decide
from hftransfer.strategies.features import FeatureCacheUnavailable, frozen_features
from hftransfer.tasks import get_task
from hftransfer.training.parse import RunConfig

logger = logging.getLogger("hftransfer")

REPORT_FILE = "rank_report.json"
PLOT_FILE = "rank_plot.png"
MIN_PER_CLASS = 2  # examples per class in the scored sample; below that no score means anything
CANDIDATE_KEYS = ("model", "timm_arch", "weights", "weights_key_map", "revision", "trust_remote_code")


class RankError(HftransferError):
    """Ranking that cannot start: too few candidates, classes or examples."""


@dataclass
class CandidateScore:
    name: str
    error: str | None = None
    scores: dict = field(default_factory=dict)
    parameters: int | None = None
    feature_dim: int | None = None
    features_per_second: float | None = None
    peak_memory_mb: float | None = None
    recommended_strategy: str | None = None  # what ``strategy: auto`` decides from this candidate's probe accuracy
    recommendation_reason: str | None = None


def candidate_name(candidate) -> str:
    if isinstance(candidate, dict):
        return candidate.get("model") or f"{candidate.get('timm_arch')} ({Path(str(candidate.get('weights'))).name})"
    return str(candidate)


def candidate_config(base: RunConfig, candidate) -> RunConfig:
    """``base`` with its backbone replaced by ``candidate`` (a Hub id / folder, or a mapping of model options)."""
    config = copy.deepcopy(base)
    for key in CANDIDATE_KEYS[:4]:
        setattr(config.model, key, None)
    if isinstance(candidate, dict):
        unknown = sorted(set(candidate) - set(CANDIDATE_KEYS))
        if unknown:
            raise ConfigError(f"unknown key(s) {unknown} in candidate {candidate}; valid: {', '.join(CANDIDATE_KEYS)}")
        for key, value in candidate.items():
            setattr(config.model, key, value)
    else:
        config.model.model = str(candidate)
    return config


def list_candidates(base: RunConfig, extra: list | None) -> list:
    """The recipe's (or flags') own backbone first, then ``candidates`` / ``--models``, without repeats."""
    found = []
    if base.model.model or base.model.timm_arch:
        found.append({k: getattr(base.model, k) for k in CANDIDATE_KEYS[:4] if getattr(base.model, k)})
    for item in list(extra or []) + list(base.model.candidates or []):
        if item not in found and not (isinstance(item, str) and {"model": item} in found):
            found.append(item)
    return [c["model"] if isinstance(c, dict) and set(c) == {"model"} else c for c in found]


def check_sample(data: LabelledData) -> None:
    counts = Counter(np.asarray(data.splits["train"]["labels"]).tolist())
    if len(counts) < 2:
        raise RankError(f"ranking needs at least two classes; the sample has {len(counts)}")
    small = sorted(data.label_names[c] for c, n in counts.items() if n < MIN_PER_CLASS)
    missing = sorted(set(data.label_names) - {data.label_names[c] for c in counts})
    if small or missing:
        raise RankError(
            f"too few examples per class to score (at least {MIN_PER_CLASS} each): "
            f"{', '.join(small + missing)}; raise sample_size or add data"
        )


def score_candidate(base: RunConfig, candidate, data: LabelledData, num_train: int, per_class: float) -> CandidateScore:
    """Load, extract features of the sampled train and validation splits, score and decide the strategy as ``auto``
    would (the full training split's size and median examples per class, the probe accuracy measured here);
    errors are recorded."""
    result = CandidateScore(candidate_name(candidate))
    config = candidate_config(base, candidate)
    task = get_task(config.model.task)
    try:
        model_config = (task.load_model_config or load_model_config)(config)
        processor = task.build_preprocessing(config, data, model_config)
        model = task.build_model(config, data, model_config)
    except Exception as err:  # any loading failure: report this candidate, rank the others
        result.error = f"{type(err).__name__}: {err}"
        logger.warning("skipping candidate %s: %s", result.name, result.error)
        return result
    device = config.training.device
    model.eval()
    result.parameters = sum(p.numel() for p in model.parameters())
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    try:  # the same pipeline as auto's measurement (which leaves the shared data's notes as they were)
        features = frozen_features(model, config, task, processor, data, model_config)
    except FeatureCacheUnavailable as err:
        result.error = f"no fixed-size features: {err}"
        return result
    elapsed = time.perf_counter() - started
    examples = sum(len(features[s][1]) for s in ("train", "validation"))
    result.features_per_second = examples / max(elapsed, 1e-9)
    result.peak_memory_mb = (
        torch.cuda.max_memory_allocated(device) / 2**20
        if device.type == "cuda"
        else max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before, 0) / 1024
    )
    result.feature_dim, result.scores = score_features(features["train"], features["validation"])
    result.recommended_strategy, result.recommendation_reason = decide(
        num_train,
        len(data.label_names),
        per_class,
        result.scores["linear_probe_accuracy"],
        len(features["validation"][1]),
        body_to_head_rate(config, task, model_config),
    )
    del model
    return result


def score_features(train, validation) -> tuple[int, dict[str, float]]:
    """(feature dimension, every score) of ``(features, labels)`` tensors of the train and validation samples."""
    (train_x, train_y), (val_x, val_y) = [(f.numpy().astype(np.float64), y.numpy()) for f, y in (train, validation)]
    return train_x.shape[1], {
        "logme": transferability.logme(train_x, train_y),
        "knn_accuracy": transferability.knn_accuracy(train_x, train_y, val_x, val_y),
        "linear_probe_accuracy": transferability.linear_probe_accuracy(train_x, train_y, val_x, val_y),
        "h_score": transferability.h_score(train_x, train_y),
    }


def rank_candidates(
    base: RunConfig, extra_candidates: list | None = None, sample_size: int = 500, by: str = "logme"
) -> tuple[list[CandidateScore], LabelledData, int]:
    """Score every candidate; returns (scores best first, the sampled data, the full training set's size)."""
    RankOptions(sample_size, by)  # every value checked before any work
    candidates = list_candidates(base, extra_candidates)
    if len(candidates) < 2:
        raise RankError(
            f"ranking needs at least two candidates (got {len(candidates)}: "
            f"{', '.join(map(candidate_name, candidates)) or 'none'}); add --models or candidates"
        )
    if sample_size < 2 * MIN_PER_CLASS:
        raise RankError(f"sample_size must be at least {2 * MIN_PER_CLASS}, got {sample_size}")
    task = get_task(base.model.task)
    sampled = copy.deepcopy(base)
    sampled.data.max_train_samples, sampled.data.max_eval_samples = None, None
    full = task.load_data(sampled)  # label checks and the validation split, exactly as training makes them
    num_train = len(full.splits["train"])
    per_class = float(statistics.median(Counter(full.splits["train"]["labels"]).values()))
    data = _stratified_sample(full, sample_size, base.training.seed)
    check_sample(data)
    results = []
    for i, candidate in enumerate(candidates, 1):
        logger.info("candidate %d of %d: %s", i, len(candidates), candidate_name(candidate))
        results.append(score_candidate(base, candidate, data, num_train, per_class))
    ranked = sorted((r for r in results if not r.error), key=lambda r: -r.scores[by])
    return ranked + [r for r in results if r.error], data, num_train


def _stratified_sample(data: LabelledData, size: int, seed: int) -> LabelledData:
    """``size`` training examples (and up to half as many validation ones), every class kept in proportion."""
    sampled = LabelledData(splits={}, label_names=data.label_names, notes=list(data.notes), columns=data.columns)
    for split, limit in (("train", size), ("validation", max(size // 2, 2 * len(data.label_names)))):
        ds = data.splits[split]
        if len(ds) > limit:
            ds = ds.train_test_split(train_size=limit, seed=seed, stratify_by_column="labels")["train"]
        sampled.splits[split] = ds
    return sampled


def report_rows(results: list[CandidateScore]) -> list[dict]:
    return [
        {
            "rank": i + 1 if not r.error else None,
            "model": r.name,
            **r.scores,
            "parameters": r.parameters,
            "feature_dim": r.feature_dim,
            "features_per_second": r.features_per_second,
            "peak_memory_mb": r.peak_memory_mb,
            "recommended_strategy": r.recommended_strategy,
            "recommendation_reason": r.recommendation_reason,
            "error": r.error,
        }
        for i, r in enumerate(results)
    ]


def save_rank_outputs(results: list[CandidateScore], folder: Path, meta: dict) -> list[Path]:
    import json

    folder.mkdir(parents=True, exist_ok=True)
    record_entries(folder, REPORT_FILE, PLOT_FILE)
    written = [
        write_text_atomically(folder / REPORT_FILE, json.dumps({**meta, "candidates": report_rows(results)}, indent=2))
    ]
    scored = [r for r in results if not r.error]
    if scored:
        written.append(plot_score_vs_cost(scored, folder / PLOT_FILE, meta["ranked_by"]))
    return written


def plot_score_vs_cost(results: list[CandidateScore], path: Path, by: str) -> Path:
    from hftransfer.evaluation.plots import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=100)
    costs = [1000 / r.features_per_second for r in results]  # ms per example
    scores = [r.scores[by] for r in results]
    sizes = [max(20.0, (r.parameters or 0) / 1e6 * 4) for r in results]
    ax.scatter(costs, scores, s=sizes, alpha=0.6)
    for r, x, y in zip(results, costs, scores):
        ax.annotate(Path(r.name).name[:30], (x, y), textcoords="offset points", xytext=(5, 5), fontsize=9)
    ax.set_xlabel("feature extraction cost (ms per example; marker area ~ parameters)")
    ax.set_ylabel(by)
    ax.set_title(f"{by} vs cost (higher and further left is better)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def check_report_dir(folder: Path, overwrite: bool, inputs: list | None = None) -> None:
    """The output policy's checks (before any candidate loads), then an earlier ranking kept without --overwrite."""
    check_output(Output("--report_dir", folder, writes=(REPORT_FILE, PLOT_FILE)), inputs or [])
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise RankError(f"{str(folder)!r} already holds a ranking; pass --overwrite or choose --report_dir")


def sample_notes(data: LabelledData) -> str:
    return f"train {len(data.splits['train'])}, validation {len(data.splits['validation'])} (stratified, seeded)"
