"""A finished run reopened: its folder, model and processor (``run_dir``), evaluation on any labelled data
(``evaluate``), ``hftransfer predict`` (``predict``) and ONNX export (``export``)."""
