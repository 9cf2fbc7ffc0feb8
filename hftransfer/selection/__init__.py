"""Choosing a backbone before training: ``hftransfer rank`` (``rank``), on the transferability scores of
``evaluation.transferability``."""
