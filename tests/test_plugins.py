"""A strategy with its own option, registered from outside the package, runs from Python and from the command line
(found as an entry point), with no change to hftransfer's config or CLI."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, sentiment_rows, subprocess_env
from safetensors.torch import load_file

import hftransfer
from hftransfer.cli.main import main as main_command
from hftransfer.strategies import STRATEGIES

# A package as a user would write it: BitFit (Ben Zaken et al., 2022) with one option of its own.
PLUGIN = textwrap.dedent("""
    from dataclasses import dataclass, field

    import hftransfer


    @dataclass
    class BitFitOptions:
        bitfit_norms: bool = field(default=False, metadata={"help": "bitfit: LayerNorm weights train too."})


    def select(model, layout, options, num_train_epochs):
        names = {n for n, _ in model.named_parameters()
                 if n.endswith(".bias") or n.startswith("classifier.") or (options.bitfit_norms and "LayerNorm" in n)}
        return hftransfer.Selection(names, names, note="biases" + (" and norms" if options.bitfit_norms else ""))


    STRATEGY = hftransfer.Strategy(
        "bitfit", "bias terms and the head train", select=select, options=BitFitOptions,
        card_rows=lambda options: [("bitfit norms", options.bitfit_norms)])
""")


@pytest.fixture
def plugin_dir(tmp_path) -> Path:
    """The plug-in module and the metadata pip would install for it (an ``hftransfer.strategies`` entry point)."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "hft_bitfit.py").write_text(PLUGIN, encoding="utf-8")
    info = root / "hft_bitfit-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hft-bitfit\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[hftransfer.strategies]\nbitfit = hft_bitfit:STRATEGY\n", encoding="utf-8")
    return root


@pytest.fixture
def bitfit(plugin_dir, monkeypatch):
    """The plug-in's strategy registered in this process (and removed afterwards)."""
    monkeypatch.syspath_prepend(str(plugin_dir))
    import hft_bitfit

    hftransfer.register_strategy(hft_bitfit.STRATEGY)
    yield hft_bitfit.STRATEGY
    STRATEGIES.unregister("bitfit")
    sys.modules.pop("hft_bitfit", None)


def moved(out: Path, original: Path) -> set[str]:
    trained, before = load_file(out / "model.safetensors"), load_file(original / "model.safetensors")
    return {n for n, tensor in before.items() if not torch.equal(trained[f"bert.{n}"], tensor)}


@pytest.mark.e2e
def test_registered_from_python_with_its_own_option(bitfit, tiny_bert, tmp_path):
    train = pd.DataFrame(sentiment_rows(48, seed=1))
    result = hftransfer.finetune(
        model=str(tiny_bert),
        train=train,
        strategy="bitfit",
        bitfit_norms=True,
        output_dir=str(tmp_path / "out"),
        num_train_epochs=1,
        learning_rate=1e-2,
        per_device_train_batch_size=8,
        calibrate=False,
    )
    assert "eval_accuracy" in result.metrics
    changed = moved(result.output_dir, tiny_bert)
    assert changed and all(n.endswith(".bias") or "LayerNorm" in n for n in changed)
    assert any("LayerNorm.weight" in n for n in changed)  # its option reached its hook
    saved = yaml.safe_load((result.output_dir / "hftransfer_config.yaml").read_text())
    assert saved["transfer"]["strategy"] == "bitfit" and saved["transfer"]["bitfit_norms"] is True
    assert "| bitfit norms | True |" in (result.output_dir / "README.md").read_text()


def test_its_option_is_a_flag_with_help(bitfit, capsys):
    with pytest.raises(SystemExit):
        main_command(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "--bitfit_norms" in help_text and "bitfit (bias terms and the head train)" in help_text
    assert "bitfit: LayerNorm weights train too." in help_text


@pytest.mark.e2e
def test_found_by_the_command_line_as_an_entry_point(plugin_dir, tiny_bert, tmp_path):
    env = subprocess_env(PYTHONPATH=f"{REPO}:{plugin_dir}")  # a fresh process finds it through its entry point
    train = tmp_path / "train.csv"
    pd.DataFrame(sentiment_rows(48, seed=1)).to_csv(train, index=False)
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hftransfer.cli",
            "train",
            "--model",
            str(tiny_bert),
            "--train_file",
            str(train),
            "--output_dir",
            str(out),
            "--strategy",
            "bitfit",
            "--num_train_epochs",
            "1",
            "--learning_rate",
            "1e-2",
            "--calibrate",
            "false",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    changed = moved(out, tiny_bert)
    assert changed and all(n.endswith(".bias") for n in changed)  # bitfit_norms keeps its default: false
    assert yaml.safe_load((out / "hftransfer_config.yaml").read_text())["transfer"]["bitfit_norms"] is False


def test_an_option_another_class_defines_is_refused_at_registration():
    from dataclasses import dataclass

    @dataclass
    class Clashing:
        lora_r: int = 4

    with pytest.raises(ValueError, match="lora_r already defined by LoraOptions"):
        hftransfer.register_strategy(hftransfer.Strategy("mine", "", select=lambda *a: None, options=Clashing))
    assert "mine" not in STRATEGIES


def test_a_broken_plugin_is_reported_and_the_built_in_strategies_stay(tmp_path, caplog):
    from hftransfer.registry import Registry
    from hftransfer.strategies.base import StrategyError

    info = tmp_path / "broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[hftransfer.test_group]\nnope = no_such_module:X\n", encoding="utf-8")
    sys.path.insert(0, str(tmp_path))
    try:
        registry = Registry("strategy", "hftransfer.test_group", StrategyError)
        registry.register(hftransfer.Strategy("full", "", select=lambda *a: None))
        assert list(registry) == ["full"]
    finally:
        sys.path.remove(str(tmp_path))
    assert "plug-in 'nope' (no_such_module:X) was not loaded" in caplog.text
    with pytest.raises(StrategyError, match="unknown strategy 'x'; valid strategies: full"):
        registry.get("x")
