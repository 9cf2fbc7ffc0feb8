"""What a run leaves and what is done with it: atomic writes (``atomic``), the finished run's folder
(``run_dir``), evaluation of a finished run (``evaluate``), the model card (``modelcard``), the Hub (``hub``),
``hftransfer predict`` (``predict``) and ONNX export (``export``)."""
