"""mtlc: a compiler for multi-task recommendation models."""

__version__ = "0.1.0"
