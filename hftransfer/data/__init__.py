"""Data: tables and Hub datasets (``tables``), label sets and splits (``labels``), image folders, checks and colour
modes (``images``), and image transforms from the checkpoint (``transforms``)."""
