"""Configuration: option dataclasses (``options``), the device and precision a run uses (``device``), recipe
files (``recipes``) and the parser that merges defaults < recipe YAML < flags into one ``RunConfig`` (``parse``)."""
