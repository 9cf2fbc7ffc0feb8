"""Choosing a backbone before training: transferability scores on frozen features (``transferability``) and
``hftransfer rank`` (``rank``)."""
