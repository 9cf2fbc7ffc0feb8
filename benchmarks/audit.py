"""How well ``hftransfer audit`` finds planted label errors and leaks, beside plain cleanlab on the same backbone.

Sets (the shared data, made messy): TREC-50 questions (long-tailed: 1 to 962 examples a class) with 10% of the
training labels flipped to another class, 20 test questions copied into train re-cased and re-punctuated and 10
copied verbatim; Caltech-101 photos cut to a 10:1 long tail (about 29 to 3 a class) with 15% of the training labels
flipped, 20 test photos copied into train resized to 85% and re-encoded as JPEG (quality 70) and 10 copied byte for
byte. Test splits stay clean. Backbones: the shipped MiniLM-L6 and EfficientNet-Lite0.

Label issues are scored over every example of every split by the ranking's order: precision@K (K = the flipped
count) and recall@2K. The baseline is what cleanlab's documentation does with any model: a logistic regression
with scikit-learn's defaults, 5-fold out-of-fold probabilities on the backbone's frozen features as a classifier
fine-tuned from it would read them (the head's input: BERT's pooler, the CNN's pooled features), ranked by
cleanlab's label quality. Leaks: the planted train/test pairs the report lists, and the cross-split pairs it lists
that were not planted ("unplanted": a real duplicate in the original data, or a false leak). The similarities of
the planted altered copies and of the closest unplanted train/test pairs are printed: they set the near-duplicate
thresholds (auditing/duplicates.py).

    python examples/offline_models.py && python benchmarks/audit.py          # both sets, about 5 min on 2 cores
    python benchmarks/audit.py --sets text --seeds 0 1
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
LEAKS_ALTERED, LEAKS_EXACT = 20, 10
NOISE = {"text": 0.10, "image": 0.15}
TEXT_OPTIONS = {"model": str(REPO / "pretrained" / "all-MiniLM-L6-v2"), "task": "text-classification"}
IMAGE_OPTIONS = {
    "task": "image-classification",
    "timm_arch": "tf_efficientnet_lite0",
    "weights": str(REPO / "pretrained" / "efficientnet-lite0.pth"),
    "weights_key_map": str(REPO / "recipes" / "key_maps" / "efficientnet_pytorch_to_timm.yaml"),
}


def flip(labels: list[str], rate: float, rng: random.Random) -> set[int]:
    """Flip ``rate`` of the labels in place to another class; the rows flipped."""
    classes = sorted(set(labels))
    rows = set(rng.sample(range(len(labels)), round(rate * len(labels))))
    for row in rows:
        labels[row] = rng.choice([c for c in classes if c != labels[row]])
    return rows


def altered_text(text: str, rng: random.Random) -> str:
    """The same question re-cased and re-punctuated."""
    text = text.rstrip(" ?.")
    text = text.lower() if rng.random() < 0.5 else text.upper()
    return text + rng.choice(["", ".", " ??", "!"])


def make_text_set(work: Path, seed: int) -> dict:
    """train.tsv / test.tsv under ``work`` and the truth: flipped train rows, planted (train, test) id pairs."""
    rng = random.Random(seed)
    read = lambda name: list(csv.DictReader(open(DATA / "trec" / name, encoding="utf-8"), delimiter="\t"))  # noqa: E731
    train, test = read("train.tsv"), read("test.tsv")
    labels = [row["label"] for row in train]
    flipped = flip(labels, NOISE["text"], rng)
    rows = [{"text": row["text"], "label": label} for row, label in zip(train, labels)]
    pairs = set()
    for i, t in enumerate(rng.sample(range(len(test)), LEAKS_ALTERED + LEAKS_EXACT)):
        text = test[t]["text"] if i >= LEAKS_ALTERED else altered_text(test[t]["text"], rng)
        pairs.add((f"train:{len(rows)}", f"test:{t}"))
        rows.append({"text": text, "label": test[t]["label"]})
    work.mkdir(parents=True, exist_ok=True)
    for name, table in (("train.tsv", rows), ("test.tsv", [{"text": r["text"], "label": r["label"]} for r in test])):
        with open(work / name, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["text", "label"], delimiter="\t")
            writer.writeheader()
            writer.writerows(table)
    options = {"train_file": str(work / "train.tsv"), "test_file": str(work / "test.tsv")}
    return {"options": options, "flipped": {f"train:{r}" for r in flipped}, "leaks": pairs}


def long_tail(examples: list[tuple[str, Path]], rng: random.Random, tail: float = 0.1) -> list[tuple[str, Path]]:
    """A subset whose class sizes fall geometrically from all of a class to ``tail`` of one (10:1), classes in a
    seeded random order, at least 3 examples each."""
    classes = sorted({label for label, _ in examples})
    rng.shuffle(classes)
    share = {label: tail ** (rank / (len(classes) - 1)) for rank, label in enumerate(classes)}
    kept = []
    for label in sorted(share):
        members = [e for e in examples if e[0] == label]
        kept += rng.sample(members, max(3, round(share[label] * len(members))))
    return sorted(kept)


def make_image_set(work: Path, seed: int) -> dict:
    """A train/ test/ folder of links (a flipped photo is linked under another class) and planted copies."""
    from PIL import Image

    rng = random.Random(seed)
    source = DATA / "caltech101"
    train = long_tail(sorted((p.parent.name, p) for p in (source / "train").rglob("*") if p.is_file()), rng)
    test = sorted((p.parent.name, p) for p in (source / "test").rglob("*") if p.is_file())
    labels = [label for label, _ in train]
    flipped_rows = flip(labels, NOISE["image"], rng)
    root = work / "caltech"
    flipped = set()
    for row, ((_, path), label) in enumerate(zip(train, labels)):
        target = root / "train" / label / f"{path.parent.name}__{path.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(path)
        if row in flipped_rows:
            flipped.add(f"train:train/{label}/{target.name}")
    for label, path in test:
        (root / "test" / label).mkdir(parents=True, exist_ok=True)
        (root / "test" / label / path.name).symlink_to(path)
    pairs = set()
    for i, t in enumerate(rng.sample(range(len(test)), LEAKS_ALTERED + LEAKS_EXACT)):
        label, path = test[t]
        name = f"planted_{i}{path.suffix if i >= LEAKS_ALTERED else '.jpg'}"
        if i >= LEAKS_ALTERED:
            shutil.copy(path, root / "train" / label / name)
        else:
            image = Image.open(path).convert("RGB")
            image.resize((round(image.width * 0.85), round(image.height * 0.85))).save(
                root / "train" / label / name, quality=70
            )
        pairs.add((f"train:train/{label}/{name}", f"test:test/{label}/{path.name}"))
    return {"options": {"data_dir": str(root)}, "flipped": flipped, "leaks": pairs}


def ranking_scores(order_sources: list[str], flipped: set[str]) -> dict:
    k = len(flipped)
    return {
        "precision_at_k": round(sum(s in flipped for s in order_sources[:k]) / k, 4),
        "recall_at_2k": round(sum(s in flipped for s in order_sources[: 2 * k]) / k, 4),
    }


def measure(kind: str, seed: int, work: Path) -> dict:
    from hftransfer.auditing.examples import pool
    from hftransfer.auditing.features import audit_features
    from hftransfer.auditing.run import find_everything
    from hftransfer.backbones.checkpoints import load_model_config
    from hftransfer.data.labels import LABELS, column_values
    from hftransfer.strategies.features import frozen_features
    from hftransfer.tasks import get_task
    from hftransfer.training.parse import parse_config

    made = (make_text_set if kind == "text" else make_image_set)(work / f"{kind}-{seed}", seed)
    dump = os.environ.get("AUDIT_BENCHMARK_DUMP")  # features and truth, to study thresholds
    options = {**(TEXT_OPTIONS if kind == "text" else IMAGE_OPTIONS), **made["options"], "seed": seed}
    config = parse_config([], options={**options, "feature_cache_dir": str(work / "cache"), "disable_tqdm": True})
    task = get_task(config.model.task)
    started = time.perf_counter()
    data = task.load_data(config)
    model_config = (task.load_model_config or load_model_config)(config)
    processor = task.build_preprocessing(config, data, model_config)
    model = task.build_model(config, data, model_config)
    read_s = time.perf_counter() - started
    examples = pool(data)
    started = time.perf_counter()  # the baseline's features first, cold (images: the audit reads the same ones)
    head_input = frozen_features(model, config, task, processor, data, model_config, splits=tuple(data.splits))
    baseline_features = np.concatenate([f.numpy() for f, _ in head_input.values()])
    baseline_features_s = time.perf_counter() - started
    started = time.perf_counter()
    baseline_quality = plain_cleanlab(baseline_features, examples.labels.astype(int), len(data.label_names), seed)
    baseline_s = time.perf_counter() - started
    started = time.perf_counter()
    ours = np.concatenate(list(audit_features(model, config, task, processor, data, model_config).values()))
    ours_features_s = baseline_features_s if kind == "image" else time.perf_counter() - started
    started = time.perf_counter()
    validation = column_values(data.splits["validation"], LABELS)
    found = find_everything(examples, ours, data.label_names, False, seed, validation)
    ours_s = time.perf_counter() - started
    sources = examples.sources
    if dump:
        np.savez(
            dump, ours=ours, baseline=baseline_features, sources=np.asarray(sources), keys=np.asarray(examples.keys)
        )
        Path(dump + ".json").write_text(
            json.dumps({"leaks": sorted(made["leaks"]), "flipped": sorted(made["flipped"])})
        )
    ranked = [f"{r['split']}:{r['id']}" for r in found["label_issues"]]
    ours_quality = found["label_quality"]
    leaks = {(f"{r['a']['split']}:{r['a']['id']}", f"{r['b']['split']}:{r['b']['id']}") for r in found["duplicates"]}
    cross = {pair for pair in leaks if pair[0].split(":")[0] != pair[1].split(":")[0]}
    planted_found = made["leaks"] & cross
    similarities = planted_similarities(ours, made["leaks"], sources, examples.keys)
    return {
        "set": kind,
        "seed": seed,
        "examples": len(sources),
        "classes": len(data.label_names),
        "imbalance_ratio": found["imbalance_ratio"],
        "flipped": len(made["flipped"]),
        "audit": {
            **ranking_scores([sources[i] for i in np.argsort(ours_quality, kind="stable")], made["flipped"]),
            "flagged": len(ranked),
            "flagged_precision": round(sum(s in made["flipped"] for s in ranked) / max(len(ranked), 1), 4),
            "features_seconds": round(ours_features_s, 1),
            "analysis_seconds": round(ours_s, 1),
            "seconds": round(read_s + ours_features_s + ours_s, 1),
        },
        "cleanlab_baseline": {
            **ranking_scores([sources[i] for i in np.argsort(baseline_quality, kind="stable")], made["flipped"]),
            "features_seconds": round(baseline_features_s, 1),
            "analysis_seconds": round(baseline_s, 1),
            "seconds": round(read_s + baseline_features_s + baseline_s, 1),
        },
        "leaks_planted": len(made["leaks"]),
        "leaks_found": len(planted_found),
        "leaks_found_exact": sum(1 for r in found["duplicates"] if r["exact"] and _pair(r) in made["leaks"]),
        "unplanted_cross_split_pairs": sorted(cross - made["leaks"])[:20],
        "unplanted_cross_split_count": len(cross - made["leaks"]),
        "planted_altered_similarity_min": similarities["planted_min"],
        "closest_distinct_train_test_similarities": similarities["unplanted_top"],
        "outliers": len(found["outliers"]),
    }


def _pair(record: dict) -> tuple[str, str]:
    return (f"{record['a']['split']}:{record['a']['id']}", f"{record['b']['split']}:{record['b']['id']}")


def planted_similarities(features: np.ndarray, planted: set, sources: list[str], keys: list[str]) -> dict:
    """The planted copies' similarity to their originals, and the five most similar train/test pairs that are
    neither planted nor exact duplicates (what a near-duplicate threshold must stay above)."""
    from hftransfer.auditing.neighbours import unit_rows

    unit = unit_rows(features)
    row = {source: i for i, source in enumerate(sources)}
    planted_rows = [(row[a], row[b]) for a, b in planted]
    planted_values = [float(unit[a] @ unit[b]) for a, b in planted_rows]
    train = np.array([i for i, s in enumerate(sources) if s.startswith("train:")])
    test = np.array([i for i, s in enumerate(sources) if s.startswith("test:")])
    similarity = unit[test] @ unit[train].T
    for a, b in planted_rows:
        similarity[np.searchsorted(test, b), np.searchsorted(train, a)] = -1
    train_keys = np.asarray(keys, dtype=object)[train]
    for i, t in enumerate(test):
        similarity[i, train_keys == keys[t]] = -1
    top = np.sort(similarity.max(1))[::-1][:5]
    return {"planted_min": round(min(planted_values), 4), "unplanted_top": [round(float(v), 4) for v in top]}


def plain_cleanlab(features: np.ndarray, labels: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
    """cleanlab's recipe with scikit-learn's defaults: out-of-fold LogisticRegression probabilities, label quality."""
    import warnings

    from cleanlab.rank import get_label_quality_scores
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    probabilities = np.zeros((len(labels), num_classes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fit, held in StratifiedKFold(5, shuffle=True, random_state=seed).split(features, labels):
            model = LogisticRegression(max_iter=1000).fit(features[fit], labels[fit])
            probabilities[np.ix_(held, model.classes_)] = model.predict_proba(features[held])
        return get_label_quality_scores(labels, probabilities)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["text", "image"], choices=["text", "image"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "audit.json"))
    parser.add_argument("--work", default=None, help="keep the sets and the feature cache here (default: a temp dir)")
    a = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(a.work or temporary)
        for kind in a.sets:
            for seed in a.seeds:
                if (work / f"{kind}-{seed}").exists():
                    shutil.rmtree(work / f"{kind}-{seed}")
                result = measure(kind, seed, work)
                print(json.dumps(result), flush=True)
                results.append(result)
    Path(a.output).write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
