"""One training run: the run's configuration from defaults < task < recipe YAML < flags or keywords (``parse``),
the recipe (``recipe``: one screen from config to saved model), the output folder, its lock and resuming
(``output_dir``), what a finished run writes (``outputs``), its model card (``modelcard``) and the Hub (``hub``)."""
