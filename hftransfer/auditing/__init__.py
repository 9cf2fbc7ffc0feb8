"""``hftransfer audit``: label errors, duplicates and train/test leaks, outliers and class balance of a data set."""
