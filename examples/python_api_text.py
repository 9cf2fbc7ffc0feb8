"""Fine-tune, evaluate and use a text classifier from Python with hftransfer's API (no command line).

The shipped recipe (offline MiniLM on SST-2 phrases) with a few options changed as keywords, then the
trained model evaluated on the dev sentences and asked about new texts. Run from the repository root:

    python examples/python_api_text.py                       # 4,000 phrases, about a minute on 2 CPU cores
    python examples/python_api_text.py --train_samples 12000
"""

from __future__ import annotations

import argparse
from pathlib import Path

from offline_models import link_offline_models

import hftransfer

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train_samples", type=int, default=4000)
    parser.add_argument("--output_dir", default="outputs/python-api-text")
    args = parser.parse_args()
    link_offline_models(REPO / "pretrained")  # the pip-shipped MiniLM under pretrained/, as the recipe names it

    result = hftransfer.finetune(
        "text_classification/minilm_sst2_quickstart",  # a shipped recipe, by name (or a path to any recipe)
        max_train_samples=args.train_samples,  # keywords are the command line's options
        output_dir=args.output_dir,
        overwrite_output_dir=True,
        disable_tqdm=True,
    )
    print(f"validation accuracy {result.metrics['eval_accuracy']:.3f}, model in {result.output_dir}")

    report = hftransfer.evaluate(result.output_dir, data="../shared/data/sst2/dev.tsv", overwrite=True)
    weakest = min(report["per_class"].items(), key=lambda item: item[1]["f1-score"])
    print(
        f"dev.tsv: accuracy {report['summary']['accuracy']:.3f}, weakest class {weakest[0]} "
        f"(F1 {weakest[1]['f1-score']:.3f}); report in {report['report_dir']}"
    )

    texts = ["a gripping , beautifully acted and deeply moving film", "a tedious , clumsy mess"]
    print("predictions:")
    for prediction in hftransfer.predict(result.output_dir, texts, top_k=1):
        print(f"  {prediction.labels[0]:8s} {prediction.scores[0]:.3f}  {prediction.input}")


if __name__ == "__main__":
    main()
