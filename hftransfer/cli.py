"""The ``hftransfer`` command: ``train``, ``eval``, ``predict``, ``export``, ``push``, ``tasks``, ``recipes``."""

from __future__ import annotations

import argparse
import logging
import sys
from importlib import resources
from pathlib import Path

from hftransfer.config import ConfigError, ModelArguments, load_recipe
from hftransfer.data import DataError
from hftransfer.launch import CONFIG_FLAG_NAMES, LaunchError
from hftransfer.models import ModelSourceError
from hftransfer.registry import UnknownTaskError, list_tasks
from hftransfer.runtime import reexec_with_tuned_malloc

KEY_MAPS = "key_maps"
USER_ERRORS = (ConfigError, DataError, ModelSourceError, UnknownTaskError, LaunchError)


def run_with_clean_errors(function, argv: list[str]) -> int:
    """Run ``function(argv)``; bad input ends with one readable line and exit code 2, not a traceback."""
    from hftransfer.export import ExportError
    from hftransfer.hub import PushError
    from hftransfer.predict import PredictError
    from hftransfer.rank import RankError
    from hftransfer.runs import RunDirError
    from hftransfer.train import OutputDirError

    try:
        return function(argv) or 0
    except (*USER_ERRORS, OutputDirError, RunDirError, PredictError, ExportError, PushError,
            RankError) as err:
        print(f"hftransfer: error: {err}", file=sys.stderr)
        return 2


def recipes_root() -> Path:
    """Shipped recipes: package data when installed, the repository's ``recipes/`` in a checkout."""
    packaged = resources.files("hftransfer") / "recipes"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "recipes"


def shipped_recipes() -> list[tuple[str, str, str]]:
    """(name, task, description) of each shipped recipe; the description is its first comment line."""
    root = recipes_root()
    found = []
    for path in sorted(root.rglob("*.yaml")):
        if KEY_MAPS in path.relative_to(root).parts:  # weight-renaming tables, not recipes
            continue
        text = path.read_text(encoding="utf-8")
        comments = [line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")]
        task = load_recipe(path).get("task", ModelArguments.task)
        found.append((str(path.relative_to(root).with_suffix("")), task, comments[0] if comments else ""))
    return found


def find_recipe(name: str) -> str:
    """A recipe path as given, or the name of a shipped recipe (``text_classification/minilm_sst2``)."""
    if Path(name).is_file():
        return name
    candidate = recipes_root() / (name if name.endswith(".yaml") else f"{name}.yaml")
    if candidate.is_file():
        return str(candidate)
    names = ", ".join(n for n, _, _ in shipped_recipes())
    raise ConfigError(f"recipe not found: {name!r} (neither a file nor a shipped recipe; shipped: {names})")


def _train(rest: list[str]) -> int:
    from hftransfer.train import main as train_main

    if rest and not rest[0].startswith("-"):
        rest = ["--config", find_recipe(rest[0]), *rest[1:]]
    if any(arg.split("=")[0] in CONFIG_FLAG_NAMES for arg in rest):
        from hftransfer.launch import launch

        return launch(rest)
    if "-h" not in rest and "--help" not in rest:
        reexec_with_tuned_malloc("hftransfer.train", rest)
    return train_main(rest)


def _tasks(_: list[str]) -> int:
    for task in list_tasks():
        print(f"{task.name:24s} {task.description}")
    return 0


def _recipes(_: list[str]) -> int:
    for name, task, description in shipped_recipes():
        print(f"{name:48s} {task:22s} {description}")
    return 0


def _accelerate_configs(_: list[str]) -> int:
    from hftransfer.launch import shipped_templates

    for name, path, description in shipped_templates():
        print(f"{name:18s} {description}\n{'':18s} {path}")
    return 0


def _eval(rest: list[str]) -> int:
    from hftransfer.report import print_eval_report
    from hftransfer.runs import evaluate_run

    parser = argparse.ArgumentParser(prog="hftransfer eval", description=(
        "Evaluate a trained model on a labelled split: metrics, per-class scores, confusion matrix, worst "
        "errors, calibration. Writes eval_report.json and a confusion-matrix PNG."))
    parser.add_argument("model_dir", help="output_dir of hftransfer train")
    parser.add_argument("--data", default=None, help="image folder, CSV/TSV/JSON/Parquet file or Hub dataset id; "
                        "default: the run's own data")
    parser.add_argument("--split", default=None, help="train, validation or test (default: test, else validation)")
    parser.add_argument("--output_dir", default=None, help="default: MODEL_DIR/eval/<data>-<split>")
    parser.add_argument("--label_column", default=None)
    parser.add_argument("--text_column", default=None)
    parser.add_argument("--text_pair_column", default=None)
    parser.add_argument("--image_column", default=None)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--max_samples", type=int, default=None, help="evaluate a seeded random subset")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier report in output_dir")
    a = parser.parse_args(rest)
    columns = {k: getattr(a, k) for k in ("label_column", "text_column", "text_pair_column", "image_column")}
    report, folder = evaluate_run(a.model_dir, a.data, a.split, a.output_dir, columns, a.batch_size,
                                  a.max_samples, a.overwrite)
    print_eval_report(report, f"{a.model_dir} · {report['source']['data']} · {report['source']['split']} "
                              f"({report['num_examples']} examples)", split=report["source"]["split"])
    print(f"report: {folder}")
    return 0


def _predict(rest: list[str]) -> int:
    from rich.console import Console
    from rich.table import Table

    from hftransfer.predict import check_output_path, predict, write_predictions

    parser = argparse.ArgumentParser(prog="hftransfer predict", description=(
        "Top-k labels for images (files, folders, globs) or texts (arguments, --text_file, --csv)."))
    parser.add_argument("model_dir", help="output_dir of hftransfer train, or its ONNX export folder")
    parser.add_argument("inputs", nargs="*", help="image files/folders/globs, or texts")
    parser.add_argument("--text_file", default=None, help="texts, one per line")
    parser.add_argument("--csv", default=None, help="a CSV/TSV file whose --column holds the texts")
    parser.add_argument("--column", default=None, help="the text column of --csv (default: text, sentence …)")
    parser.add_argument("--top_k", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--onnx", action="store_true", help="run MODEL_DIR/onnx/model.onnx on ONNX Runtime")
    parser.add_argument("--output", default=None, help="write predictions to a .csv, .json or .jsonl file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    a = parser.parse_intermixed_args(rest)  # inputs may come before or after the options
    output = check_output_path(a.output, a.overwrite)  # before any work
    predictions = predict(a.model_dir, a.inputs, {"text_file": a.text_file, "csv": a.csv, "column": a.column},
                          a.top_k, a.batch_size, a.onnx)
    if output:
        write_predictions(predictions, output)
        print(f"{len(predictions)} predictions written to {output}")
        return 0
    table = Table()
    table.add_column("input")
    for i in range(1, max((len(p.labels) for p in predictions), default=0) + 1):
        table.add_column(f"#{i}")
    for p in predictions:
        table.add_row(p.input if len(p.input) <= 70 else "…" + p.input[-69:],
                      *[f"{label} {score:.3f}" for label, score in zip(p.labels, p.scores)])
    Console().print(table)
    return 0


def _export(rest: list[str]) -> int:
    from hftransfer.export import ATOL, FORMATS, export

    parser = argparse.ArgumentParser(prog="hftransfer export", description=(
        "Export a trained model (dynamic batch axis, and sequence length for text), checked against PyTorch."))
    parser.add_argument("model_dir")
    parser.add_argument("--format", default="onnx", choices=FORMATS)
    parser.add_argument("--output", default=None, help="default: MODEL_DIR/onnx")
    parser.add_argument("--atol", type=float, default=ATOL, help="largest accepted |logit difference|")
    parser.add_argument("--overwrite", action="store_true")
    a = parser.parse_args(rest)
    print(f"exported to {export(a.model_dir, a.format, a.output, a.atol, a.overwrite)}")
    return 0


def _push(rest: list[str]) -> int:
    from hftransfer.hub import push_output_dir

    parser = argparse.ArgumentParser(prog="hftransfer push", description=(
        "Upload a finished run (model, processor, card, report, plots; no checkpoints) to the Hub. The token "
        "comes from HF_TOKEN or `hf auth login`."))
    parser.add_argument("model_dir")
    parser.add_argument("--repo-id", "--repo_id", dest="repo_id", default=None,
                        help="user/name or org/name (default: the folder's name under your account)")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--revision", default=None, help="branch to push to (created if needed)")
    parser.add_argument("--commit-message", "--commit_message", dest="commit_message", default=None)
    a = parser.parse_args(rest)
    url = push_output_dir(a.model_dir, a.repo_id, a.private or None, a.revision, a.commit_message)
    print(f"pushed: {url}")
    return 0


def _rank(rest: list[str]) -> int:
    from rich.console import Console
    from rich.table import Table

    from hftransfer.config import parse_config
    from hftransfer.rank import SCORES, RankError, check_report_dir, rank, sample_notes, save_rank_outputs

    parser = argparse.ArgumentParser(prog="hftransfer rank", add_help=False, allow_abbrev=False, description=(
        "Rank candidate backbones on your data from frozen features (LogME, k-NN and linear-probe accuracy, "
        "H-score); every other option is one of `hftransfer train`'s (task, data, columns, seed …)."))
    parser.add_argument("--models", nargs="+", default=None, help="candidates: Hub ids or folders (added to the "
                        "recipe's model and its `candidates`)")
    parser.add_argument("--sample_size", type=int, default=500, help="training examples scored (validation: half)")
    parser.add_argument("--by", default="logme", choices=SCORES, help="the score that ranks")
    parser.add_argument("--report_dir", default="hftransfer-rank", help="where rank_report.json and the plot go")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier ranking in report_dir")
    parser.add_argument("--then_train", "--then-train", dest="then_train", action="store_true",
                        help="fine-tune the best candidate with its recommended strategy (unless --strategy is given)")
    if "-h" in rest or "--help" in rest:
        parser.print_help()
        return 0
    a, remaining = parser.parse_known_args(rest)
    if remaining and not remaining[0].startswith("-"):
        remaining = ["--config", find_recipe(remaining[0]), *remaining[1:]]
    base = parse_config(remaining)
    report_dir = Path(a.report_dir)
    check_report_dir(report_dir, a.overwrite)
    results, data, num_train = rank(base, a.models, a.sample_size, a.by)
    table = Table(title=f"hftransfer rank · {base.model.task} · {sample_notes(data)} · by {a.by}")
    for column in ("#", "model", "LogME", "k-NN acc", "probe acc", "H-score", "params (M)", "features/s",
                   "memory (MB)", "strategy"):
        table.add_column(column, justify="left" if column in ("model", "strategy") else "right")
    for i, r in enumerate(results):
        if r.error:
            table.add_row("-", _short_name(r.name), *["-"] * 7, f"skipped: {r.error[:80]}")
            continue
        s = r.scores
        table.add_row(str(i + 1), _short_name(r.name), f"{s['logme']:.4f}", f"{s['knn_accuracy']:.3f}",
                      f"{s['linear_probe_accuracy']:.3f}", f"{s['h_score']:.3f}", f"{r.parameters / 1e6:.1f}",
                      f"{r.features_per_second:.1f}", f"{r.peak_memory_mb:.0f}", r.recommended_strategy)
    Console(width=max(Console().width, 140)).print(table)
    save_rank_outputs(results, report_dir, {"ranked_by": a.by, "task": base.model.task, "num_train": num_train,
                                            "sample": sample_notes(data), "labels": data.label_names})
    print(f"report: {report_dir / 'rank_report.json'}")
    if not a.then_train:
        return 0
    best = next((r for r in results if not r.error), None)
    if best is None:
        raise RankError("no candidate could be scored, so none can be trained")
    from hftransfer.rank import candidate_config, candidate_name, list_candidates
    from hftransfer.train import run

    chosen = next(c for c in list_candidates(base, a.models) if candidate_name(c) == best.name)
    config = candidate_config(base, chosen)
    if "strategy" not in base.explicit:
        config.transfer.strategy = best.recommended_strategy
    print(f"training {best.name} with strategy {config.transfer.strategy}")
    run(config)
    return 0


def _short_name(name: str) -> str:
    """A Hub id as is; a local path by its last two parts (full paths are in the JSON report)."""
    path = Path(name.split(" (")[0])
    return name if not path.is_absolute() else "/".join(path.parts[-2:]) + name[len(str(path)):]


COMMANDS = {
    "train": (_train, "fine-tune: hftransfer train RECIPE.yaml [--option value ...] or hftransfer train --model ..."),
    "tasks": (_tasks, "list the registered tasks"),
    "accelerate-configs": (_accelerate_configs, "list the accelerate config templates for train --accelerate_config "
                                                "(single_gpu, multi_gpu, fsdp, deepspeed_zero2, cpu)"),
    "recipes": (_recipes, "list the shipped recipes with their task and description"),
    "eval": (_eval, "evaluate a trained model: hftransfer eval OUTPUT_DIR [--data PATH|HUB_ID] [--split test]"),
    "predict": (_predict, "classify inputs: hftransfer predict OUTPUT_DIR photo.jpg photos/ | \"some text\""),
    "export": (_export, "export to ONNX, checked against PyTorch: hftransfer export OUTPUT_DIR --format onnx"),
    "rank": (_rank, "rank candidate backbones on your data: hftransfer rank RECIPE --models A B [--then_train]"),
    "push": (_push, "upload a finished run to the Hub: hftransfer push OUTPUT_DIR --repo-id user/name"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="hftransfer", description="Transfer-learning fine-tuner for the HF stack.")
    parser.add_argument("command", choices=sorted(COMMANDS), help="; ".join(f"{k}: {v[1]}" for k, v in COMMANDS.items()))
    if not argv or argv[0] in {"-h", "--help"}:
        parser.print_help()
        return 0
    if argv[0] not in COMMANDS:
        parser.error(f"unknown command {argv[0]!r}; valid commands: {', '.join(sorted(COMMANDS))}")
    function, _ = COMMANDS[argv[0]]
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    logging.getLogger("hftransfer").setLevel(logging.INFO)
    return run_with_clean_errors(function, argv[1:])


if __name__ == "__main__":
    sys.exit(main())
