"""``python -m hftransfer.train`` and ``accelerate launch -m hftransfer.train``: the training recipe as a module.

The recipe itself is ``hftransfer/training/recipe.py``; this entry point adds what a command needs: user
errors as one line and exit code 2 (in every process ``accelerate launch`` starts).
"""

from __future__ import annotations

import sys

from hftransfer.errors import run_reporting_user_errors
from hftransfer.training.recipe import main

if __name__ == "__main__":
    sys.exit(run_reporting_user_errors(main, sys.argv[1:]))
