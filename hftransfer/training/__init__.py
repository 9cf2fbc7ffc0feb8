"""Training: the recipe (``recipe``: one screen from config to saved model), the Trainer subclasses every part of
hftransfer trains and evaluates with (``trainer``), the output folder and resuming (``output_dir``), what a
finished run writes (``outputs``), speed and memory options (``performance``) and CPU process settings
(``runtime``)."""
