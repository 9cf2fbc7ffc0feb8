"""``python -m hftransfer.cli``: the same as the ``hftransfer`` command."""

import sys

from hftransfer.cli.main import main

sys.exit(main())
