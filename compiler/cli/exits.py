"""The command line's exit codes and its usage error, shared by every subcommand.

0 ok, 1 a spec has errors, 2 a usage or data error (a bad option, a file that
cannot be read or written, bad data).
"""

from __future__ import annotations

__all__ = ["OK", "SPEC_ERRORS", "USAGE", "INTERRUPTED", "UsageError"]

OK, SPEC_ERRORS, USAGE = 0, 1, 2
INTERRUPTED = 130  # as a shell reports a process ended by Ctrl-C


class UsageError(Exception):
    """A mistake in how mtlc was called: reported in one line, exit code 2."""
