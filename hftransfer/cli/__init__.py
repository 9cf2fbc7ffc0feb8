"""The ``hftransfer`` command: one module per command (``train``, ``evaluate``, ``predict``, ``export``, ``push``,
``rank``, ``listing`` for tasks, recipes and accelerate configs), ``launch`` for ``accelerate launch``, and
``main``, which dispatches and turns every user error into one line and exit code 2."""
