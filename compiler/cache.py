"""Where mtlc keeps its per-user files (LALR tables, prepared datasets).

``$MTLC_CACHE`` when it is set and not empty, else ``~/.cache/mtlc``: an empty
value means "unset", never the current folder.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The cache folder (not created here)."""
    return Path(os.environ.get("MTLC_CACHE") or Path.home() / ".cache" / "mtlc")
