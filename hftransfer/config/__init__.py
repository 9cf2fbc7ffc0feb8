"""Options as typed data: the option dataclasses (``options``), values from YAML or Python checked by each option's
type (``values``), the device and precision a run uses (``device``) and recipe files (``recipes``). Merging them
into one run's configuration needs the task and strategy registries, so it lives above them (``training.parse``)."""
