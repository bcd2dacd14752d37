"""Test-wide settings.

Hypothesis explores new random examples on every local run; under CI
(``CI`` set) it runs a fixed, derandomised set, so that a landing is judged
on the same examples each time. A failure found locally is kept in
``.hypothesis/`` and replayed first until it is fixed.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
