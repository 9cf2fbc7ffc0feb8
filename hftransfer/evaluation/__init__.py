"""Evaluation: metrics with scikit-learn (``metrics``), the evaluation report (``report``: top-k, per class,
confusions, worst errors, calibration), terminal output (``console``) and figures (``plots``)."""
