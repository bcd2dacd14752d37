"""The compiler's version: written into every generated module's header and into the IR."""

__version__ = "0.1.0"
