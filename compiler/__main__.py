"""``python -m mtlc``: the same as the ``mtlc`` command."""

import sys

from mtlc.cli import main

sys.exit(main())
