"""The one base of every error a user can cause, and how such errors reach the user.

A leaf module (no hftransfer imports), so every layer can raise these and every entry point (the
``hftransfer`` command, ``python -m hftransfer.train``, each process ``accelerate launch`` starts) can turn
them into one line on stderr and exit code 2. Anything else is a bug: one line and exit 1, its traceback kept in a
crash report file (``HFTRANSFER_DEBUG=1`` prints it instead).
"""

from __future__ import annotations

import errno
import os
import platform
import sys
import tempfile
import time
import traceback
from typing import Callable

USER_ERROR_EXIT = 2
INTERNAL_ERROR_EXIT = 1
INTERRUPTED_EXIT = 130  # the shell's code for a command ended by Ctrl-C (128 + SIGINT)
PREFIX = "hftransfer: error: "
INTERNAL_PREFIX = "hftransfer: internal error: "
# System errors a user fixes on their side (space, permissions, read-only or remote file systems, names too long).
ENVIRONMENT_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENAMETOOLONG,
    errno.ELOOP,
    errno.EMFILE,
    errno.ENFILE,
    errno.EIO,
    errno.EEXIST,
}


class HftransferError(ValueError):
    """Bad input or a state the user can fix; the message names the value at fault and the valid choices.

    A ``ValueError`` so that code catching bad values in general (argparse, dataclass checks) still does.
    """


def run_reporting_user_errors(function: Callable[[list[str]], int | None], argv: list[str]) -> int:
    """Run ``function(argv)``: a user error ends as one line and exit 2, Ctrl-C as one line and exit 130.

    The last resort for everything else: a system error the user can act on (a full disk, no permission, a name too
    long) is one line naming the file and exit 2; any other exception is a bug of hftransfer's, reported in one line
    with exit 1 and its traceback written to a crash report file (``HFTRANSFER_DEBUG=1`` shows it instead)."""
    try:
        return function(argv) or 0
    except HftransferError as err:
        print(PREFIX + " ".join(str(err).split("\n")), file=sys.stderr, flush=True)
        return USER_ERROR_EXIT
    except KeyboardInterrupt:
        print("hftransfer: interrupted", file=sys.stderr, flush=True)
        return INTERRUPTED_EXIT
    except OSError as err:
        if err.errno not in ENVIRONMENT_ERRNOS or debugging():
            return _internal_error(argv)
        where = f": {err.filename!r}" if err.filename else ""
        print(f"{PREFIX}{err.strerror or err}{where}", file=sys.stderr, flush=True)
        return USER_ERROR_EXIT
    except Exception:
        return _internal_error(argv)


def debugging() -> bool:
    return os.environ.get("HFTRANSFER_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


def _internal_error(argv: list[str]) -> int:
    """One line naming the exception and the crash report holding its traceback (or, debugging, the traceback)."""
    kind, error, _ = sys.exc_info()
    if debugging():
        traceback.print_exc()
        return INTERNAL_ERROR_EXIT
    report = _write_crash_report(argv)
    summary = " ".join(f"{kind.__name__ if kind else 'Error'}: {error}".split())[:300]
    kept = f"the traceback is in {report}" if report else "no crash report could be written"
    print(
        f"{INTERNAL_PREFIX}{summary} (a bug in hftransfer; {kept}; HFTRANSFER_DEBUG=1 shows it here)",
        file=sys.stderr,
        flush=True,
    )
    return INTERNAL_ERROR_EXIT


def _write_crash_report(argv: list[str]) -> str | None:
    """The command line, the versions and the traceback, in a new file of the system's temporary folder."""
    try:
        handle, path = tempfile.mkstemp(prefix=f"hftransfer-crash-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".txt")
        with os.fdopen(handle, "w", encoding="utf-8") as report:
            report.write(f"command: hftransfer {' '.join(argv)}\npython: {sys.version.split()[0]}\n")
            report.write(f"platform: {platform.platform()}\n\n{traceback.format_exc()}")
        return path
    except OSError:
        return None
