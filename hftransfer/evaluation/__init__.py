"""Evaluation: metrics with scikit-learn (``metrics``), the evaluation report (``report``: top-k, per class,
confusions, worst errors, calibration), terminal output (``console``), figures (``plots``) and transferability
scores of frozen features (``transferability``: LogME, k-NN, probe, H-score)."""
