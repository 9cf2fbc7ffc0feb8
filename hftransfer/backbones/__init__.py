"""Backbones: resolving checkpoints (``checkpoints``), timm architectures with local weights (``timm_weights``),
the block structure of any backbone (``blocks``) and classification heads (``heads``)."""
