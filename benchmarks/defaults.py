"""Defaults against the evidence: a fixed recipe (the task's epochs and rates, full fine-tuning), a linear probe,
lp_ft and the default (``strategy: auto``) on every set in ../shared/data, each scored on its own test split.

Arms (each a real ``hftransfer train`` in its own process, with an empty feature cache and datasets cache, so
no arm reuses another's work; the same training rows for every arm):

- ``full``: the fixed recipe before ``strategy: auto`` (full fine-tuning; text 3 epochs at the learning rate
  by encoder width, images 5 epochs at 1e-3; one learning rate for head and body; a 10% validation split carved
  file by file; no calibration), pinned option by option so it stays what it was.
- ``linear_probe``, ``lp_ft``: those strategies with the same pinned settings.
- ``auto``: nothing set but the data, the backbone and where to write: the new defaults.
- ``class_weights``, ``smoothing``: ``auto`` with ``imbalance: class_weights`` / ``label_smoothing_factor: 0.1``,
  the alternatives measured on the long-tailed, noisy variants.
- ``today``: ``auto`` run by the code of ``--today_code`` (a commit; default ``TODAY_CODE``, the last commit before
  the horizon, imbalance and noise defaults), checked out in a git worktree: the defaults they replaced, exactly.

Sets: the shared sets as they are (subsampled where a full run would not fit), and long-tailed, noisy variants
(``benchmarks/messy_sets.py``: a 10:1 tail, 10-15% of the training labels flipped, a clean balanced test split),
built from ``--seed`` like the training run (``--seed 43`` gives another variant and another run; its results are
stored as ``ARM@43``).

    python examples/offline_models.py && python benchmarks/defaults.py [--sets trec caltech101] [--arms auto]

Prints one table (set, arm, chosen strategy, test accuracy, macro-F1, ECE, wall time) and writes
``benchmarks/defaults.json`` (or ``--json``), merged with earlier results so sets and arms can be run apart.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from messy_sets import caltech_variant, trec_variant  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TODAY_CODE = "dd692a9"  # the defaults before the data-fitted horizon, imbalance and noise handling
DATA = REPO.parent / "shared" / "data"
HFTRANSFER = str(Path(sys.executable).parent / "hftransfer")
TEXT_MODEL = ["--model", "pretrained/all-MiniLM-L6-v2"]
IMAGE_MODEL = [
    "--task",
    "image-classification",
    "--timm_arch",
    "tf_efficientnet_lite0",
    "--weights",
    "pretrained/efficientnet-lite0.pth",
    "--weights_key_map",
    "recipes/key_maps/efficientnet_pytorch_to_timm.yaml",
]

# Each set: its data flags, with subsampled copies (seeded, the same rows for every arm) where a full run would
# not fit in 15 minutes on 2 CPU cores (20 Newsgroups: its posts train at 512 tokens; 2,000 of them took more
# than 19 minutes for the `full` arm alone). A subsample is made before anything is carved from it, like a user who
# has that many examples: every arm then carves its validation split from the same training rows.
SETS = {
    "sst2": [
        *TEXT_MODEL,
        "--train_file",
        "SAMPLE:sst2/train.tsv:4000",
        "--test_file",
        f"{DATA}/sst2/dev.tsv",
        "--class_names",
        "negative",
        "positive",
    ],
    "trec": [*TEXT_MODEL, "--train_file", f"{DATA}/trec/train.tsv", "--test_file", f"{DATA}/trec/test.tsv"],
    "20newsgroups": [
        *TEXT_MODEL,
        "--train_file",
        "SAMPLE:20newsgroups/train.tsv:1000",
        "--test_file",
        "SAMPLE:20newsgroups/test.tsv:1000",
    ],
    "hymenoptera": [*IMAGE_MODEL, "--data_dir", "FOLDERS:hymenoptera:train=train,test=val"],  # val/ is the test
    "caltech101": [*IMAGE_MODEL, "--data_dir", "FOLDERS:caltech101:train=train:1000,test=test"],
    "gtsrb32": [*IMAGE_MODEL, "--data_dir", "FOLDERS:gtsrb32:train=train:1000,test=test"],
    "orl_faces": [*IMAGE_MODEL, "--data_dir", f"{DATA}/orl_faces"],
    # messy variants (messy_sets.py), built per seed: (flags before the data, builder(data, folder, seed))
    "trec_lt_noisy": (TEXT_MODEL, trec_variant),
    "caltech101_lt_noisy": (IMAGE_MODEL, caltech_variant),
}
TEXT_SETS = {"sst2", "trec", "20newsgroups", "trec_lt_noisy"}

# The fixed recipe of every arm but auto, pinned so that changing hftransfer's defaults does not change it.
TODAY = ["--calibrate", "false", "--validation_fraction", "0.1", "--validation_groups", "none"]
ARMS = {
    "full": {
        "text": [
            "--strategy",
            "full",
            "--num_train_epochs",
            "3",
            "--learning_rate",
            "1e-4",
            "--head_learning_rate",
            "1e-4",
        ],
        "image": [
            "--strategy",
            "full",
            "--num_train_epochs",
            "5",
            "--learning_rate",
            "1e-3",
            "--head_learning_rate",
            "1e-3",
        ],
    },
    "linear_probe": {
        "text": ["--strategy", "linear_probe", "--num_train_epochs", "10", "--learning_rate", "1e-3"],
        "image": ["--strategy", "linear_probe", "--num_train_epochs", "10", "--learning_rate", "1e-3"],
    },
    "lp_ft": {
        "text": [
            "--strategy",
            "lp_ft",
            "--num_train_epochs",
            "3",
            "--learning_rate",
            "3e-5",
            "--head_learning_rate",
            "3e-5",
            "--probe_epochs",
            "10",
        ],
        "image": [
            "--strategy",
            "lp_ft",
            "--num_train_epochs",
            "5",
            "--learning_rate",
            "3e-4",
            "--head_learning_rate",
            "3e-4",
            "--probe_epochs",
            "10",
        ],
    },
    "auto": {"text": [], "image": []},
    "today": {"text": [], "image": []},
    # auto with one default changed: the alternatives measured for long-tailed, noisy labels
    "class_weights": {"text": ["--imbalance", "class_weights"], "image": ["--imbalance", "class_weights"]},
    "smoothing": {"text": ["--label_smoothing_factor", "0.1"], "image": ["--label_smoothing_factor", "0.1"]},
}
AUTO_ARMS = {"auto", "today", "class_weights", "smoothing"}  # no pinned recipe: the defaults decide


def sample_rows(spec: str, tmp: Path) -> str:
    """``SAMPLE:set/file.tsv:N``: N rows of a TSV drawn with seed 0, written to ``tmp``."""
    import pandas as pd

    _, relative, count = spec.split(":")
    table = pd.read_csv(DATA / relative, sep="\t", keep_default_na=False, na_values=[""])
    target = tmp / relative.replace("/", "-")
    table.sample(n=min(int(count), len(table)), random_state=0).to_csv(target, sep="\t", index=False)
    return str(target)


def sample_folders(spec: str, tmp: Path) -> str:
    """``FOLDERS:set:train=train:N,test=val``: split folders linked under ``tmp``, ``N`` files of one drawn with
    seed 0 (every class keeps at least one)."""
    import random

    _, name, splits = spec.split(":", 2)
    root = tmp / name
    for part in splits.split(","):
        split, source = part.split("=")
        source, _, count = source.partition(":")
        files = sorted(p for p in (DATA / name / source).glob("*/*") if p.is_file())
        if count:
            rng = random.Random(0)
            first = {p.parent.name: p for p in reversed(files)}  # one per class
            rest = [p for p in files if p not in set(first.values())]
            files = sorted(list(first.values()) + rng.sample(rest, int(count) - len(first)))
        for path in files:
            link = root / split / path.parent.name / path.name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path)
    return str(root)


def materialise(spec, tmp: Path, seed: int) -> list[str]:
    if isinstance(spec, tuple):  # a messy variant, built for this seed
        flags, build = spec
        return [*flags, *build(DATA, tmp / "variant", seed)]
    return [
        sample_rows(f, tmp) if f.startswith("SAMPLE:") else sample_folders(f, tmp) if f.startswith("FOLDERS:") else f
        for f in spec
    ]


def code_checkout(commit: str) -> Path:
    """A git worktree of ``commit`` (made once, under the system's temp folder), with this checkout's pretrained
    weights linked in."""
    folder = Path(tempfile.gettempdir()) / f"hftransfer-{commit}"
    if not folder.is_dir():
        subprocess.run(["git", "worktree", "add", "--detach", str(folder), commit], cwd=REPO, check=True)
        (folder / "pretrained").symlink_to(REPO / "pretrained")
    return folder


def run_arm(name: str, arm: str, extra: list[str], logs: Path | None = None, seed: int = 42, today: str = "") -> dict:
    """One ``hftransfer train`` in a fresh process and caches; returns its test metrics and wall time (its log
    goes to ``logs/SET-ARM.log`` when ``logs`` is given)."""
    with tempfile.TemporaryDirectory() as tmp:
        flags = materialise(SETS[name], Path(tmp), seed)
        kind = "text" if name in TEXT_SETS else "image"
        out = Path(tmp) / "out"
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "HFTRANSFER_FEATURE_CACHE": f"{tmp}/features",
            "HF_DATASETS_CACHE": f"{tmp}/datasets",
        }
        code = code_checkout(today or TODAY_CODE) if arm == "today" else REPO
        command = [
            *([HFTRANSFER] if arm != "today" else [sys.executable, "-m", "hftransfer.cli"]),
            "train",
            *flags,
            *(TODAY if arm not in AUTO_ARMS else []),
            *ARMS[arm][kind],
            "--seed",
            str(seed),
            *extra,
            "--output_dir",
            str(out),
            "--disable_tqdm",
            "true",
        ]  # --extra wins (--seed 43 …)
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=code, env=env)
        wall = time.perf_counter() - started
        if logs is not None:
            logs.mkdir(parents=True, exist_ok=True)
            (logs / f"{name}-{arm}.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed", "wall_s": wall}
        results = json.loads((out / "all_results.json").read_text())
        config_text = (out / "hftransfer_config.yaml").read_text()
        recall = class_recall(json.loads((out / "eval_report.json").read_text())["test"], flags)
    decision = next((line.split("auto chose ")[1] for line in config_text.splitlines() if "auto chose " in line), None)
    chosen = decision.split(":")[0] if decision else None
    return {
        "accuracy": results["test_accuracy"],
        "f1_macro": results["test_f1_macro"],
        "ece": results.get("test_expected_calibration_error"),
        "wall_s": wall,
        "strategy": chosen if arm in AUTO_ARMS else arm,
        "epochs_run": results.get("epoch"),
        "validation_accuracy": results.get("eval_accuracy"),
        "ece_before_calibration": results.get("test_expected_calibration_error_before"),
        "decision": decision,
        **recall,
        **{key: results[f"test_{key}"] for key in ADJUSTMENT_KEYS if f"test_{key}" in results},
    }


ADJUSTMENT_KEYS = ("accuracy_before_adjustment", "f1_macro_before_adjustment")


def class_recall(report: dict, flags: list[str]) -> dict:
    """The test split's worst class recall and, where the training labels can be counted, the mean recall of the
    third of the classes with the fewest training examples (the tail)."""
    recall = {name: scores["recall"] for name, scores in report["per_class"].items()}
    shown = {"worst_recall": min(recall.values())}
    counts = train_label_counts(flags)
    if counts:
        tail = sorted(recall, key=lambda name: counts.get(name, 0))[: max(1, len(recall) // 3)]
        shown["tail_recall"] = sum(recall[name] for name in tail) / len(tail)
    return shown


def train_label_counts(flags: list[str]) -> dict[str, int]:
    """Training examples per class of a ``--train_file`` TSV or a ``--data_dir`` with a ``train`` folder."""
    import pandas as pd

    if "--train_file" in flags:
        table = pd.read_csv(flags[flags.index("--train_file") + 1], sep="\t", keep_default_na=False)
        return table["label"].astype(str).value_counts().to_dict() if "label" in table else {}
    if "--data_dir" in flags:
        train = Path(flags[flags.index("--data_dir") + 1]) / "train"
        return {c.name: sum(1 for _ in c.iterdir()) for c in train.iterdir() if c.is_dir()} if train.is_dir() else {}
    return {}


def print_table(results: dict) -> None:
    print(f"\n{'set':20s} {'arm':13s} {'chosen':13s} {'test acc':>8s} {'macro-F1':>8s} {'ECE':>6s} {'wall':>7s}")
    for name in SETS:
        for arm in stored_arms(results.get(name, {})):
            r = results[name][arm]
            if "error" in r:
                print(f"{name:20s} {arm:13s} error: {r['error'][:80]}")
                continue
            ece = f"{r['ece']:.3f}" if r.get("ece") is not None else "-"
            minutes, seconds = divmod(round(r["wall_s"]), 60)
            print(
                f"{name:20s} {arm:13s} {str(r.get('strategy') or arm):13s} {r['accuracy']:8.3f} "
                f"{r['f1_macro']:8.3f} {ece:>6s} {minutes:4d}:{seconds:02d}"
            )


def stored_arms(stored: dict) -> list[str]:
    """The arms stored for a set in ``ARMS`` order, seed 42's (plain names) before other seeds' (``ARM@SEED``)."""

    def order(key: str) -> tuple[int, int]:
        arm, _, seed = key.partition("@")
        return (list(ARMS).index(arm) if arm in ARMS else len(ARMS), int(seed or 42))

    return sorted(stored, key=order)


def markdown_table(results: dict) -> str:
    """docs/training.md's table: one row per set and arm. Wall times are comparable within a session only (the
    machine's speed varies), so each row's ``session`` (set by hand when rows are merged) is a numbered mark,
    explained under the table."""
    rows = ["| set | arm | chosen | test accuracy | macro-F1 | ECE | wall |", "|---|---|---|---|---|---|---|"]
    sessions = sorted({str(r.get("session")) for arms in results.values() for r in arms.values()})
    for name in (s for s in SETS if s not in MESSY_SETS):
        for arm in stored_arms(results.get(name, {})):
            r = results[name][arm]
            if "error" in r:
                continue
            ece = f"{r['ece']:.3f}" if r.get("ece") is not None else "-"
            minutes, seconds = divmod(round(r["wall_s"]), 60)
            mark = f" ({sessions.index(str(r.get('session'))) + 1})" if len(sessions) > 1 else ""
            rows.append(
                f"| {name} | {arm} | {r.get('strategy') or arm} | {r['accuracy']:.3f} | {r['f1_macro']:.3f} | "
                f"{ece} | {minutes}:{seconds:02d}{mark} |"
            )
    if len(sessions) > 1:
        rows += ["", "Sessions: " + "; ".join(f"({i}) {name}" for i, name in enumerate(sessions, 1)) + "."]
    return "\n".join(rows)


MESSY_SETS = ("trec_lt_noisy", "caltech101_lt_noisy")


def messy_markdown(results: dict) -> str:
    """docs/training.md's table of the long-tailed, noisy variants: every arm and seed, with the scores before
    the logit adjustment, the tail's recall (the third of the classes with the fewest training examples) and the
    epochs run."""
    rows = [
        "| set | arm | seed | chosen | test accuracy | macro-F1 | macro-F1 before adjustment | tail recall | ECE "
        "| epochs run | wall |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in MESSY_SETS:
        for key in stored_arms(results.get(name, {})):
            r = results[name][key]
            if "error" in r:
                continue
            arm, _, seed = key.partition("@")
            before = r.get("f1_macro_before_adjustment")
            minutes, seconds = divmod(round(r["wall_s"]), 60)
            rows.append(
                f"| {name} | {arm} | {seed or 42} | {r.get('strategy')} | {r['accuracy']:.3f} | {r['f1_macro']:.3f} | "
                f"{'-' if before is None else f'{before:.3f}'} | {r.get('tail_recall', float('nan')):.3f} | "
                f"{r['ece']:.3f} | {r.get('epochs_run') or 0:g} | {minutes}:{seconds:02d} |"
            )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "defaults.json"))
    parser.add_argument("--markdown", action="store_true", help="print the stored results as a Markdown table")
    parser.add_argument("--logs", type=Path, help="write each arm's output to LOGS/SET-ARM.log")
    parser.add_argument("--seed", type=int, default=42, help="training and variant seed (not 42: ARM@SEED)")
    parser.add_argument("--today_code", default=TODAY_CODE, help="the commit whose defaults the today arm runs")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more flags for every arm")
    args = parser.parse_args()
    path = Path(args.json)
    results = json.loads(path.read_text()) if path.is_file() else {}
    if args.markdown:
        print(markdown_table(results))
        print()
        print(messy_markdown(results))
        return
    for name in args.sets:
        for arm in args.arms:
            key = arm if args.seed == 42 else f"{arm}@{args.seed}"
            print(f"{name} · {key} …", flush=True)
            logs = args.logs / str(args.seed) if args.logs else None
            results.setdefault(name, {})[key] = run_arm(name, arm, args.extra, logs, args.seed, args.today_code)
            path.write_text(json.dumps(results, indent=2))
            print_table({name: {key: results[name][key]}})
    print_table(results)


if __name__ == "__main__":
    main()
