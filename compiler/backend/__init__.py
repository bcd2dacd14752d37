"""The back end: a checked ``ir.Model`` -> the source of one PyTorch module.

``lower(model, opt_level)`` plans the runtime modules and the forward steps
(``plan``: batched pools and gate banks at -O1, names made safe by
``identifiers``); ``emit(plan)`` renders the plan through ``templates/`` with
the literals of ``literals`` and black's layout (``linewrap``). Imports the IR
and the shared diagnostics only.
"""

from mtlc.backend.emission import emit
from mtlc.backend.lowering import lower

__all__ = ["lower", "emit"]
