"""Safe Python identifiers for the names of a spec.

A node's name is used as written unless it would collide: with an attribute
or method of ``torch.nn.Module`` or of the generated class (as an attribute),
or with a name the generated methods use or a Python builtin (as a local).
Then it gets a trailing ``_`` (as many as it takes to stay unique).
"""

from __future__ import annotations

from mtlc import ir
from mtlc.ir.reserved import MODULE_ATTRIBUTES, MODULE_GLOBALS, RESERVED_LOCALS

__all__ = ["safe_names", "class_name", "fresh"]


def safe_names(model: ir.Model) -> dict[str, str]:
    """The Python identifier of every node: its name, with ``_`` appended on a collision."""
    taken = {node.name for node in model.nodes}
    names: dict[str, str] = {}
    for node in model.nodes:
        name = node.name
        while (
            name in MODULE_ATTRIBUTES
            or name in RESERVED_LOCALS
            or (name != node.name and name in taken)
        ):
            name += "_"
        taken.add(name)
        names[node.name] = name
    return names


def class_name(model: ir.Model) -> str:
    """The generated class's name: the model's, unless it would hide an import."""
    return model.name + "_" if model.name in MODULE_GLOBALS else model.name


def fresh(name: str, taken: set[str]) -> str:
    """A new identifier (for a module the compiler adds) based on ``name``; marks it taken."""
    while name in taken or name in MODULE_ATTRIBUTES or name in RESERVED_LOCALS:
        name += "_"
    taken.add(name)
    return name
