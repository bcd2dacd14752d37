"""Views of a checked model: ``summary`` (the table of ``mtlc explain SPEC``), ``graph`` (edges,
columns, DOT) and ``svg`` (the drawing of ``mtlc graph``). They read an ``ir.Model`` and give
text; no compiler stage imports them.
"""
