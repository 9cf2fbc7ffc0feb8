"""Few labels: k examples per class (k = 5, 10, 25 …), each set's own test split, several seeds.

Arms:

- ``auto``: ``hftransfer train`` with nothing set but the data, the backbone and where to write (the defaults).
- ``today``: the same, run by the code of ``--today_code`` (a git worktree): the defaults before sentence
  encoders were pooled as trained.
- ``frozen_lr``: the ten-line baseline: the encoder as sentence-transformers ships it (its own pooling and
  normalisation), or timm's EfficientNet-Lite0 with its own eval transform and pooling, frozen, and
  scikit-learn's logistic regression (its defaults) on every training example.
- ``prototypes``: the same features, each test example given the class whose mean training feature is nearest
  by cosine.
- ``setfit``: the SetFit library (``pip install setfit``; found on ``--setfit_path`` when not installed): its
  trainer with the SetFit paper's recipe (20 pair iterations per example, one epoch, batch 16; the library's
  own default, every pair of examples, is 9,314 steps at 8 per class on TREC-50: about 78 minutes here), then
  its logistic-regression head.

Text sets: TREC-50 (``trec_fine``), TREC-6 (``trec_coarse``), SST-2, 20 Newsgroups, GoEmotions' single-label rows.
Image sets (``caltech101``, ``gtsrb32``): class folders, EfficientNet-Lite0 (ImageNet) through ``--timm_arch``; SetFit
is for text only.

Every arm sees the same k training rows per class (classes with fewer keep all they have), drawn with the seed;
``auto`` and ``today`` carve their validation from those rows, as a user's run would. Each arm runs in its own
process with empty feature and datasets caches.

    python examples/offline_models.py && python benchmarks/few_shot.py --sets trec_fine --ks 5 10 --seeds 1 2 3

Writes ``benchmarks/few_shot.json`` (merged with earlier results) and prints a table; ``--markdown`` prints the
stored results as docs/benchmarks.md's table (mean over seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
# a git worktree of a commit (the pretrained weights linked), and the image backbone's flags (paths relative to it)
from defaults import IMAGE_MODEL, code_checkout  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
MODEL = REPO / "pretrained" / "all-MiniLM-L6-v2"
TODAY_CODE = "28a43d0"  # the last commit before sentence encoders were pooled as they were trained
TEST_ROWS = 1000  # test rows kept (seed 0) where a test split is larger: 20 Newsgroups, GoEmotions


def read_tsv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""], quoting=0)


def goemotions_single(split: str) -> pd.DataFrame:
    """GoEmotions' rows with exactly one label: a 28-class single-label set."""
    table = read_tsv(DATA / "goemotions" / f"{split}.tsv")
    table = table[~table["labels"].str.contains(";")]
    return table.rename(columns={"labels": "label"})


SETS = {  # name: (train table, test table), both with text and label columns
    "trec_fine": lambda: (read_tsv(DATA / "trec/train.tsv"), read_tsv(DATA / "trec/test.tsv")),
    "trec_coarse": lambda: tuple(
        t.drop(columns="label").rename(columns={"label_coarse": "label"})
        for t in (read_tsv(DATA / "trec/train.tsv"), read_tsv(DATA / "trec/test.tsv"))
    ),
    "sst2": lambda: (read_tsv(DATA / "sst2/train.tsv"), read_tsv(DATA / "sst2/dev.tsv")),
    "20newsgroups": lambda: (read_tsv(DATA / "20newsgroups/train.tsv"), read_tsv(DATA / "20newsgroups/test.tsv")),
    "goemotions": lambda: (goemotions_single("train"), goemotions_single("test")),
}
# Image sets: class folders of train/ and test/ under the shared data, EfficientNet-Lite0 (ImageNet) as the backbone.
IMAGE_SETS = ("caltech101", "gtsrb32")
ARMS = ("auto", "today", "frozen_lr", "prototypes", "setfit")


def few_shot_split(name: str, k: int, seed: int, folder: Path) -> tuple[Path, Path, pd.DataFrame, pd.DataFrame]:
    """k training rows per class (seeded) and the test rows, written as TSVs."""
    train, test = SETS[name]()
    train, test = train[["text", "label"]].astype({"label": str}), test[["text", "label"]].astype({"label": str})
    picked = pd.concat(
        group.sample(n=min(k, len(group)), random_state=seed) for _, group in train.groupby("label", sort=True)
    )
    test = test[test["label"].isin(set(picked["label"]))]
    if len(test) > TEST_ROWS:
        test = test.sample(n=TEST_ROWS, random_state=0)
    paths = folder / "train.tsv", folder / "test.tsv"
    picked.to_csv(paths[0], sep="\t", index=False)
    test.to_csv(paths[1], sep="\t", index=False)
    return *paths, picked, test


def few_shot_folders(name: str, k: int, seed: int, folder: Path) -> Path:
    """k training images per class (seeded) and the test images (at most ``TEST_ROWS``, seed 0), linked as class
    folders under ``folder/train`` and ``folder/test``."""
    rng, source = np.random.default_rng(seed), DATA / name
    for split in ("train", "test"):
        files = sorted(p for p in (source / split).glob("*/*") if p.is_file())
        if split == "train":
            by_class: dict[str, list[Path]] = {}
            for path in files:
                by_class.setdefault(path.parent.name, []).append(path)
            files = [p for paths in by_class.values() for p in rng.permutation(paths)[:k]]  # type: ignore[misc]
        elif len(files) > TEST_ROWS:
            files = list(np.random.default_rng(0).permutation(files)[:TEST_ROWS])  # type: ignore[arg-type]
        for path in files:
            link = folder / split / path.parent.name / path.name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path)
    return folder


def data_flags(name: str, tmp: Path, train: Path, test: Path) -> list[str]:
    if name in IMAGE_SETS:
        return [*IMAGE_MODEL, "--data_dir", str(tmp / "data")]
    return ["--model", str(MODEL), "--train_file", str(train), "--test_file", str(test)]


def run_train(arm: str, flags: list[str], seed: int, tmp: Path, today: str, auto_code: str | None) -> dict:
    """One ``hftransfer train`` in a fresh process and caches, by this checkout's code (``auto``; or a commit's,
    ``auto_code``, so that editing the checkout cannot change a running benchmark) or ``today``'s."""
    out = tmp / "out"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HFTRANSFER_FEATURE_CACHE": f"{tmp}/features",
        "HF_DATASETS_CACHE": f"{tmp}/datasets",
    }
    command = [
        sys.executable,
        "-m",
        "hftransfer.cli",
        "train",
        *flags,
        "--seed",
        str(seed),
        "--output_dir",
        str(out),
        "--disable_tqdm",
        "true",
    ]
    started = time.perf_counter()
    code = code_checkout(today) if arm == "today" else code_checkout(auto_code) if auto_code else REPO
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=code)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1], "wall_s": wall}
    results = json.loads((out / "all_results.json").read_text())
    config_text = (out / "hftransfer_config.yaml").read_text()
    decision = next((line.split("auto chose ")[1] for line in config_text.splitlines() if "auto chose " in line), "")
    return {
        "accuracy": results["test_accuracy"],
        "f1_macro": results["test_f1_macro"],
        "ece": results.get("test_expected_calibration_error"),
        "wall_s": wall,
        "decision": decision[:300],
    }


def scores(labels: list[str], classes: list[str], probabilities: np.ndarray, wall: float) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    predicted = [classes[i] for i in probabilities.argmax(1)]
    confidence, right = probabilities.max(1), np.asarray(predicted) == np.asarray(labels)
    bins = np.minimum((confidence * 15).astype(int), 14)
    ece = sum(abs(right[bins == b].mean() - confidence[bins == b].mean()) * (bins == b).mean() for b in set(bins))
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "f1_macro": float(f1_score(labels, predicted, average="macro")),
        "ece": float(ece),
        "wall_s": wall,
    }


def image_features(folder: Path) -> tuple[np.ndarray, list[str]]:
    """EfficientNet-Lite0's pooled ImageNet features (timm, its own eval transform) of a folder of class folders."""
    import re

    import timm
    import torch
    import yaml
    from PIL import Image

    model = timm.create_model("tf_efficientnet_lite0", num_classes=0)
    flag = {name: IMAGE_MODEL[i + 1] for i, name in enumerate(IMAGE_MODEL) if name.startswith("--")}
    rules = yaml.safe_load((REPO / flag["--weights_key_map"]).read_text())["rules"]
    state = {}
    for key, value in torch.load(REPO / flag["--weights"], weights_only=True).items():
        for pattern, replacement in rules:
            key = re.sub(pattern, replacement, key)
        state[key] = value
    missing = model.load_state_dict(state, strict=False).missing_keys
    assert not missing, missing
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model.eval()))
    paths = sorted(p for p in folder.glob("*/*"))
    rows = []
    with torch.inference_mode():
        for start in range(0, len(paths), 64):
            batch = [transform(Image.open(p).convert("RGB")) for p in paths[start : start + 64]]
            rows.append(model(torch.stack(batch)).numpy())
    return np.concatenate(rows), [p.parent.name for p in paths]


def text_features(texts: list[str]) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(MODEL), device="cpu").encode(texts, batch_size=32)


def run_frozen(arm: str, name: str, tmp: Path, picked: pd.DataFrame, test: pd.DataFrame, seed: int) -> dict:
    """The frozen backbone's pooled features, then scikit-learn's logistic regression (its defaults) or the nearest
    class mean by cosine (prototypes; a softmax of 10 x the cosines as its probabilities)."""
    from sklearn.linear_model import LogisticRegression

    started = time.perf_counter()
    if name in IMAGE_SETS:
        (train_x, train_y), (test_x, test_y) = (
            image_features(tmp / "data" / "train"),
            image_features(tmp / "data" / "test"),
        )
    else:
        train_x, train_y = text_features(list(picked["text"])), list(picked["label"])
        test_x, test_y = text_features(list(test["text"])), list(test["label"])
    if arm == "frozen_lr":
        classifier = LogisticRegression(max_iter=1000, random_state=seed).fit(train_x, train_y)
        probabilities = classifier.predict_proba(test_x)
        return scores(test_y, list(classifier.classes_), probabilities, time.perf_counter() - started)
    classes = sorted(set(train_y))
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    means = unit(np.stack([train_x[np.asarray(train_y) == c].mean(0) for c in classes]))
    logits = 10 * unit(test_x) @ means.T
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    return scores(test_y, classes, probabilities, time.perf_counter() - started)


SETFIT_SCRIPT = """
import json, sys, time
import pandas as pd
from datasets import Dataset
from setfit import SetFitModel, Trainer, TrainingArguments
train, test, seed, model = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
picked = pd.read_csv(train, sep="\\t", keep_default_na=False, dtype=str)
rows = pd.read_csv(test, sep="\\t", keep_default_na=False, dtype=str)
started = time.perf_counter()
setfit = SetFitModel.from_pretrained(model)
args = TrainingArguments(batch_size=16, num_epochs=1, num_iterations=20, seed=seed, show_progress_bar=False)
Trainer(model=setfit, args=args, train_dataset=Dataset.from_pandas(picked)).train()
probabilities = setfit.predict_proba(list(rows["text"]), as_numpy=True)
print(json.dumps({"classes": [str(c) for c in setfit.labels or setfit.model_head.classes_],
                  "probabilities": probabilities.tolist(), "wall_s": time.perf_counter() - started}))
"""


def run_setfit(train: Path, test: Path, seed: int, setfit_path: str | None, folder: Path) -> dict:
    """The SetFit library in its own process, inside ``folder`` (its trainer writes ``checkpoints/`` where it runs)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if setfit_path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [setfit_path, env.get("PYTHONPATH")]))
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", SETFIT_SCRIPT, str(train), str(test), str(seed), str(MODEL)],
        capture_output=True,
        text=True,
        env=env,
        cwd=folder,
    )
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1], "wall_s": time.perf_counter() - started}
    found = json.loads(done.stdout.strip().splitlines()[-1])
    labels = list(pd.read_csv(test, sep="\t", keep_default_na=False, dtype=str)["label"])
    return scores(labels, found["classes"], np.asarray(found["probabilities"]), time.perf_counter() - started)


def run_arm(arm: str, name: str, k: int, seed: int, options) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        if name in IMAGE_SETS:
            if arm == "setfit":
                return {"error": "SetFit is for text", "wall_s": 0.0}
            train = test = few_shot_folders(name, k, seed, tmp / "data")
            picked = test_rows = pd.DataFrame()
        else:
            train, test, picked, test_rows = few_shot_split(name, k, seed, tmp)
        if arm in ("frozen_lr", "prototypes"):
            return run_frozen(arm, name, tmp, picked, test_rows, seed)
        if arm == "setfit":
            return run_setfit(train, test, seed, options.setfit_path, tmp)
        return run_train(arm, data_flags(name, tmp, train, test), seed, tmp, options.today_code, options.auto_code)


def markdown(results: dict) -> str:
    """One row per set and k, one column per arm: test accuracy (mean over seeds, and the seeds' count)."""
    header = "| set | k | " + " | ".join(f"{arm} acc / macro-F1 / wall" for arm in ARMS) + " |"
    rows = [header, "|---|---|" + "---|" * len(ARMS)]
    for name in (*SETS, *IMAGE_SETS):
        for k in sorted({int(key.split("@")[0]) for key in results.get(name, {})}):
            cells = []
            for arm in ARMS:
                runs = [r for key, r in results[name].items() if key.startswith(f"{k}@") and arm in r]
                found = [r[arm] for r in runs if "error" not in r[arm]]
                if not found:
                    cells.append("-")
                    continue
                acc = statistics.mean(r["accuracy"] for r in found)
                f1 = statistics.mean(r["f1_macro"] for r in found)
                wall = statistics.mean(r["wall_s"] for r in found)
                cells.append(f"{acc:.3f} / {f1:.3f} / {wall:.0f} s ({len(found)})")
            rows.append(f"| {name} | {k} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=[*SETS, *IMAGE_SETS])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--ks", nargs="+", type=int, default=[5, 10, 25])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "few_shot.json"))
    parser.add_argument("--today_code", default=TODAY_CODE)
    parser.add_argument("--auto_code", help="run the auto arm by this commit's code (default: this checkout)")
    parser.add_argument("--setfit_path", help="a folder holding the setfit package when it is not installed")
    parser.add_argument("--markdown", action="store_true", help="print the stored results as a Markdown table")
    options = parser.parse_args()
    path = Path(options.json)
    results = json.loads(path.read_text()) if path.is_file() else {}
    if options.markdown:
        print(markdown(results))
        return
    for name in options.sets:
        for k in options.ks:
            for seed in options.seeds:
                for arm in options.arms:
                    found = run_arm(arm, name, k, seed, options)
                    results.setdefault(name, {}).setdefault(f"{k}@{seed}", {})[arm] = found
                    path.write_text(json.dumps(results, indent=2) + "\n")
                    shown = found.get("error") or f"acc {found['accuracy']:.3f} f1 {found['f1_macro']:.3f}"
                    print(f"{name} k={k} seed={seed} {arm:10s} {shown} ({found['wall_s']:.0f} s)", flush=True)
    print(markdown(results))


if __name__ == "__main__":
    main()
