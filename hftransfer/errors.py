"""The one base of every error a user can cause, and how such errors reach the user.

A leaf module (no hftransfer imports), so every layer can raise these and every entry point (the
``hftransfer`` command, ``python -m hftransfer.train``, each process ``accelerate launch`` starts) can turn
them into one line on stderr and exit code 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import Callable

USER_ERROR_EXIT = 2
INTERRUPTED_EXIT = 130  # the shell's code for a command ended by Ctrl-C (128 + SIGINT)
PREFIX = "hftransfer: error: "


class HftransferError(ValueError):
    """Bad input or a state the user can fix; the message names the value at fault and the valid choices.

    A ``ValueError`` so that code catching bad values in general (argparse, dataclass checks) still does.
    """


def run_reporting_user_errors(function: Callable[[list[str]], int | None], argv: list[str]) -> int:
    """Run ``function(argv)``; a user error ends as one line and exit 2, Ctrl-C as one line and exit 130."""
    try:
        return function(argv) or 0
    except HftransferError as err:
        print(PREFIX + " ".join(str(err).split("\n")), file=sys.stderr, flush=True)
        return USER_ERROR_EXIT
    except KeyboardInterrupt:
        print("hftransfer: interrupted", file=sys.stderr, flush=True)
        return INTERRUPTED_EXIT
