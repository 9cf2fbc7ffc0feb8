"""Every shipped recipe parses, opens with the commands that run it, and the offline ones really run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from conftest import REPO, SHARED_DATA

from hftransfer.config.recipes import recipes_root, shipped_recipes
from hftransfer.training.parse import parse_config
from hftransfer.training.recipe import main

pytestmark = pytest.mark.e2e  # end to end: trains or starts processes, seconds each

RECIPES = sorted(p for p in (REPO / "recipes").rglob("*.yaml") if "key_maps" not in p.parts)
OFFLINE_RECIPES = [p for p in RECIPES if "pretrained/" in p.read_text()]


def test_key_maps_are_not_listed_as_recipes():
    assert (REPO / "recipes" / "key_maps" / "efficientnet_pytorch_to_timm.yaml").is_file()
    assert not any(name.startswith("key_maps") for name, _, _ in shipped_recipes())


def test_recipes_are_found_and_shipped_with_the_package():
    assert RECIPES, "no recipes shipped"
    assert recipes_root().resolve() == (REPO / "recipes").resolve()
    assert {name for name, _, _ in shipped_recipes()} == {
        str(p.relative_to(REPO / "recipes").with_suffix("")) for p in RECIPES
    }


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_parses_and_opens_with_its_run_command(path: Path):
    lines = path.read_text(encoding="utf-8").splitlines()
    header = []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line)
    assert len(header) >= 2 and header[0].startswith("# "), "a recipe opens with a description comment"
    relative = path.relative_to(REPO).as_posix()
    assert any(f"hftransfer train {relative}" in line for line in header), "header names its run command"
    assert any(f"accelerate launch -m hftransfer.train --config {relative}" in line for line in header)
    config = parse_config(["--config", str(path)])
    assert (config.model.model or config.model.timm_arch) and config.training.output_dir.startswith("outputs/")
    assert config.data.train_file or config.data.dataset or config.data.data_dir


@pytest.fixture(scope="module")
def generated_data():
    """Data a recipe's header says to make first (the Caltech-101 mosaics), made as its header says."""
    spec = importlib.util.spec_from_file_location("caltech_mosaics", REPO / "examples" / "caltech_mosaics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_mosaics(REPO / "outputs" / "data" / "caltech-mosaics")


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data not present")
@pytest.mark.parametrize("path", OFFLINE_RECIPES, ids=lambda p: p.stem)
def test_offline_recipe_smoke_runs(path: Path, offline_checkpoints, tmp_path, monkeypatch, request):
    monkeypatch.chdir(REPO)  # recipes name their data relative to the repository root
    if "examples/caltech_mosaics.py" in path.read_text():
        request.getfixturevalue("generated_data")
    out = tmp_path / "out"
    main(
        [
            "--config",
            str(path),
            "--output_dir",
            str(out),
            "--max_steps",
            "3",
            "--max_train_samples",
            "96",
            "--max_eval_samples",
            "64",
            "--disable_tqdm",
            "true",
        ]
    )
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 3
    assert (out / "model.safetensors").is_file()
