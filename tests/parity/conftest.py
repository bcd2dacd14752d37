"""Parity tests against NextRec 0.6.14 and torch-rechub 0.9.0.

They run where the peers are installed (``make test`` installs them: the
``[nextrec]`` and ``[rechub]`` extras, and NextRec itself with ``--no-deps``)
and skip, saying why, elsewhere.
"""

from __future__ import annotations

import os
import tempfile

# NextRec creates a session folder for logs when a model is built; keep it out of the checkout.
os.environ.setdefault("NEXTREC_TEST_MODE", "1")
os.environ.setdefault("NEXTREC_LOG_DIR", os.path.join(tempfile.gettempdir(), "nextrec_logs"))
