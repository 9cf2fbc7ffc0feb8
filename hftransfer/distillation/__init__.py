"""``hftransfer distill``: a smaller student trained on a finished run's soft targets (``distillation/recipe.py``)."""
