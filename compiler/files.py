"""Where mtlc keeps its per-user files, and how it writes them so that none is seen half-written.

``cache_root()``: ``$MTLC_CACHE`` when it is set and not empty, else
``~/.cache/mtlc`` (an empty value means "unset", never the current folder); the
LALR tables and the prepared datasets live there.

``atomic_write(path, write)``: a temporary file beside the target, fsync,
rename: a reader sees the old file or the new one. Everything mtlc writes is
written this way: generated modules and drawings, run folders, predictions,
datasets. Torch-free, so the compiler side can use it.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def cache_root() -> Path:
    """The cache folder (not created here)."""
    return Path(os.environ.get("MTLC_CACHE") or Path.home() / ".cache" / "mtlc")


def atomic_write(
    path: str | Path,
    write: Callable[[io.BufferedWriter], object],  # what it returns is ignored
    *,
    mode: int | None = None,
    make_parents: bool = True,
) -> None:
    """Write ``path`` through ``write(file)`` so it appears complete or not at all.

    Args:
        mode: the file's permissions; None keeps the temporary file's owner-only 0600
            (run folders, caches); a user's own output asks for ``shared_mode()``.
        make_parents: create missing folders (False: a missing folder is an OSError).
    """
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def shared_mode() -> int:
    """The permissions ``open()`` gives a new file: 0o666 less the process's umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
