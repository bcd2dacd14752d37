"""When two specs compute the same model: equal up to the names of their inner nodes.

Features keep their names and supervised tasks are matched by label; every
other node (groups, experts, towers, gates, transfers, latent tasks) is
renamed by the order in which a walk from the tasks first reaches it, so two
specs that differ only in those names get the same canonical form. What each
node reads through ``stopgrad`` (a gate's sources, a group's members, a
sigmoid gate's source) is part of what is compared.
"""

from __future__ import annotations

from mtlc import ir

_FEATURES = (ir.SparseFeature, ir.SequenceFeature, ir.DenseFeature)


def canonical(model: ir.Model) -> dict[str, dict]:
    """Each node's description, by canonical name (features by their own name)."""
    names = canonical_names(model)
    nodes = {node.name: node for node in model.nodes}
    return {names[name]: _describe(nodes[name], names) for name in names}


def differences(a: ir.Model, b: ir.Model) -> list[str]:
    """What differs between two specs, in words; empty when they compute the same model."""
    left, right = canonical(a), canonical(b)
    found = [f"{key}: only in the first" for key in left.keys() - right.keys()]
    found += [f"{key}: only in the second" for key in right.keys() - left.keys()]
    for key in sorted(left.keys() & right.keys()):
        if left[key] != right[key]:
            changed = {f for f in left[key] if left[key][f] != right[key].get(f)}
            found += [
                f"{key}.{f}: {left[key][f]!r} != {right[key].get(f)!r}" for f in sorted(changed)
            ]
    if _constraints(a) != _constraints(b):
        found.append(f"constraints: {_constraints(a)} != {_constraints(b)}")
    if a.weighting.kind != b.weighting.kind or a.weighting.alpha != b.weighting.alpha:
        found.append(f"weighting: {a.weighting.kind.value} != {b.weighting.kind.value}")
    return sorted(found)


def _constraints(model: ir.Model) -> list[tuple]:
    names = canonical_names(model)
    return sorted((names[c.left], names[c.right], c.weight) for c in model.constraints)


def canonical_names(model: ir.Model) -> dict[str, str]:
    """name -> canonical name.

    Features keep theirs, supervised tasks go by label, the rest by walk order.
    """
    names: dict[str, str] = {}
    nodes = {node.name: node for node in model.nodes}

    def visit(name: str) -> None:
        node = nodes[name]
        if name in names:
            return
        if isinstance(node, _FEATURES):
            names[name] = name
        elif isinstance(node, ir.Task) and node.label is not None:
            names[name] = f"task[{node.label}]"
        else:
            names[name] = f"n{len(names)}"
        for ref in node.inputs():
            visit(ref)

    for task in sorted((t for t in model.tasks if t.label is not None), key=lambda t: t.label):
        visit(task.name)
    return names


def _describe(node, names: dict[str, str]) -> dict:
    """The node's fields without its name and spans, with references renamed."""
    data = node.model_dump(mode="json", exclude={"name", "span"})
    rename = names.get
    if isinstance(node, ir.Group):
        data["members"] = [rename(m) for m in node.members]
    elif isinstance(node, (ir.Tower, ir.Expert)):
        data["block"].pop("span", None)
        data["block"]["input"] = rename(node.block.input)
    elif isinstance(node, ir.Gate):
        data["input"] = rename(node.input)
        data["sources"] = [
            {"name": rename(s.name), "count": s.count, "stop": s.stop} for s in node.sources
        ]
    elif isinstance(node, ir.ScaleGate):  # source_stop and the group's stopped stay as dumped
        data["input"], data["source"] = rename(node.input), rename(node.source)
    elif isinstance(node, ir.Cross):
        data["input"] = rename(node.input)
    elif isinstance(node, ir.Route):
        data["sources"] = [
            {"name": rename(s.name), "count": s.count, "stop": s.stop} for s in node.sources
        ]
    elif isinstance(node, ir.Stitch):
        data["column"], data["sources"] = rename(node.column), [rename(s) for s in node.sources]
    elif isinstance(node, ir.Transfer):
        data["current"], data["previous"] = rename(node.current), rename(node.previous)
    elif isinstance(node, ir.Task):
        data["input"] = rename(node.input) if node.input else None
        data["factors"] = [rename(f) for f in node.factors]
    elif isinstance(node, (ir.SparseFeature, ir.SequenceFeature)) and node.table:
        data["table"] = rename(node.table)
    return data
