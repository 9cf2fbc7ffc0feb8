"""hftransfer: transfer-learning fine-tuner on the Hugging Face stack.

Python API (``hftransfer/api.py``)::

    import hftransfer

    result = hftransfer.finetune("image_classification/efficientnet_lite0_hymenoptera", num_train_epochs=3)
    result.metrics["eval_accuracy"], result.output_dir
    hftransfer.predict(result.output_dir, ["bee.jpg"])
    hftransfer.evaluate(result.output_dir, data="photos_2025/")
    hftransfer.rank(recipe, models=["timm/resnet50.a1_in1k"])
    hftransfer.audit(recipe, report_dir="audit")  # label errors, leaks, outliers; then finetune(exclude_file=...)
    hftransfer.export(result.output_dir, quantize="int8")
    hftransfer.distill(result.output_dir, student_layers=3)
    hftransfer.register_strategy(hftransfer.Strategy("bitfit", "biases and the head train", select=...))

The functions are imported on first use, so ``import hftransfer`` stays light.
"""

__version__ = "0.1.0"

API = (
    "finetune",
    "audit",
    "evaluate",
    "predict",
    "rank",
    "export",
    "distill",
    "push",
    "register_strategy",
    "register_task",
    "Strategy",
    "Selection",
)
__all__ = [*API, "HftransferError", "__version__"]


def __getattr__(name: str):
    if name in API:
        from hftransfer import api

        return getattr(api, name)
    if name == "HftransferError":
        from hftransfer.errors import HftransferError

        return HftransferError
    raise AttributeError(f"module 'hftransfer' has no attribute {name!r}")
