"""The catalogue of diagnostic codes: stable, each with a title, an explanation,
and a bad and a good example (printed by ``mtlc explain CODE``).

Codes never change meaning once released; a retired code is kept, not reused.
Ranges: MTL0xx text and syntax, MTL1xx the model as a whole, MTL2xx names,
MTL3xx calls and options, MTL4xx widths and sizes, MTL5xx tasks.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Code", "CODES", "explain_code", "markdown"]


@dataclass(frozen=True)
class Code:
    """One diagnostic code: what it is called, what it means, how to fix it."""

    title: str
    explanation: str
    bad: str
    good: str


_MMOE_HEAD = "feature user_id : sparse(vocab=100, dim=8)\n"

CODES: dict[str, Code] = {
    # -- text and syntax ------------------------------------------------------
    "MTL001": Code(
        "syntax error",
        "The statement does not follow the grammar: a token is missing or out of place.",
        "tower t = mlp(all, [64]) extra",
        "tower t = mlp(all, [64])",
    ),
    "MTL002": Code(
        "unexpected character",
        "A character that the language does not use, such as `$`, `;`, a tab-like control "
        "character or a letter outside ASCII in a name.",
        "feature prix€ : dense",
        "feature price : dense",
    ),
    "MTL003": Code(
        "unterminated string",
        'A string opened with `"` is not closed on the same line.',
        'model M "a model',
        'model M "a model"',
    ),
    "MTL004": Code(
        "invalid string escape",
        "A backslash in a string starts an escape that Python strings do not know "
        "(use `\\\\` for a backslash).",
        'model M "path C:\\q"',
        'model M "path C:\\\\q"',
    ),
    "MTL005": Code(
        "unclosed bracket",
        "A `(` or `[` is never closed. Inside brackets a statement may continue over lines, "
        "so the error often shows up at the next statement.",
        "group all = [user_id, item_id\ntower t = mlp(all, [8])",
        "group all = [user_id, item_id]\ntower t = mlp(all, [8])",
    ),
    "MTL006": Code(
        "unmatched closing bracket",
        "A `)` or `]` closes nothing, or closes a bracket of the other kind.",
        "tower t = mlp(all, [64)]",
        "tower t = mlp(all, [64])",
    ),
    "MTL007": Code(
        "unknown statement",
        "Every line starts with one of: model, feature, group, expert, tower, gate, "
        "transfer, task, constrain, weighting.",
        "features user_id : sparse(vocab=100, dim=8)",
        "feature user_id : sparse(vocab=100, dim=8)",
    ),
    "MTL008": Code(
        "missing `=`",
        "A declaration names its node, then `=`, then what it is.",
        "tower t mlp(all, [64])",
        "tower t = mlp(all, [64])",
    ),
    "MTL009": Code(
        "expert count with a space",
        "The number of experts in a pool is written `xN` with no space: `x4`.",
        "expert shared x 4 = mlp(all, [64])",
        "expert shared x4 = mlp(all, [64])",
    ),
    "MTL010": Code(
        "statement split over lines",
        "A statement ends at the end of its line unless it is inside `( )` or `[ ]`.",
        "task ctr : binary(label=click)\n    = ctr_net",
        "task ctr : binary(label=click) = ctr_net",
    ),
    "MTL011": Code(
        "missing comma",
        "Arguments of a call and items of a list are separated by commas.",
        "group all = [user_id item_id]",
        "group all = [user_id, item_id]",
    ),
    "MTL012": Code(
        "spec too large",
        "A spec is at most 1,000,000 characters and 100,000 tokens (names, numbers, "
        "punctuation); a larger file is not a spec written by a person.",
        "(a 2 MB file)",
        "(a spec of a few hundred lines)",
    ),
    "MTL013": Code(
        "not a text file",
        "The spec contains NUL bytes or other control characters, so it is probably "
        "a binary file passed by mistake.",
        "(a .pt or .parquet file)",
        "(a .mtl text file)",
    ),
    "MTL014": Code(
        "brackets nested too deeply",
        "Brackets may nest at most 32 levels deep.",
        "tower t = mlp(all, [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[64]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]])",
        "tower t = mlp(all, [64])",
    ),
    # -- the model as a whole -------------------------------------------------
    "MTL101": Code(
        "missing model statement",
        "A spec names its model (the generated class) with `model NAME`,"
        " usually on its first line.",
        _MMOE_HEAD,
        'model Small "a small model"\n' + _MMOE_HEAD,
    ),
    "MTL102": Code(
        "duplicate model statement",
        "A spec describes one model, so it has exactly one `model` statement.",
        "model A\nmodel B",
        "model A",
    ),
    "MTL103": Code(
        "invalid model name",
        "The model name becomes a Python class name: an identifier that is not a Python "
        "keyword, not a dunder name, not a Python builtin (`super`, `dict`, ...) and not a "
        "name the generated module imports (torch, nn, rt, Tensor, annotations).",
        "model class",
        "model Ranker",
    ),
    "MTL104": Code(
        "duplicate weighting statement",
        "Task losses are combined in one way, so a spec has at most one `weighting` statement.",
        "weighting fixed\nweighting uncertainty",
        "weighting uncertainty",
    ),
    "MTL105": Code(
        "no supervised task",
        "At least one task needs a `label`, or the model has nothing to learn from.",
        "task ctr : binary = ctr_net",
        "task ctr : binary(label=click) = ctr_net",
    ),
    # -- names ----------------------------------------------------------------
    "MTL201": Code(
        "invalid name",
        "A node name is lower case: letters a-z, digits and `_`, not starting with a digit.",
        "tower CtrNet = mlp(all, [64])",
        "tower ctr_net = mlp(all, [64])",
    ),
    "MTL202": Code(
        "reserved name",
        "A node name cannot be a Python keyword (`class`, `lambda`, ...), a word of the "
        "language (`model`, `feature`, `group`, `expert`, `tower`, `gate`, `transfer`, "
        "`task`, `constrain`, `weighting`, `over`, `weight`) or a dunder name (`__x__`).",
        "tower lambda = mlp(all, [64])",
        "tower lambda_net = mlp(all, [64])",
    ),
    "MTL203": Code(
        "unknown name",
        "A name is used that no statement declares. A close name, if any, is suggested.",
        "gate g = softmax(all) over [shard]",
        "gate g = softmax(all) over [shared]",
    ),
    "MTL204": Code(
        "duplicate name",
        "Every statement declares a new name; two nodes cannot share one.",
        "tower deep = mlp(all, [64])\ntower deep = mlp(all, [32])",
        "tower deep = mlp(all, [64])\ntower deep2 = mlp(all, [32])",
    ),
    "MTL205": Code(
        "used before declared",
        "A spec reads top-down as dataflow: a name is used only after the statement "
        "that declares it.",
        "tower top = mlp(bottom, [8])\ntower bottom = mlp(all, [64])",
        "tower bottom = mlp(all, [64])\ntower top = mlp(bottom, [8])",
    ),
    "MTL206": Code(
        "wrong kind of node",
        "The name refers to a node of a kind that cannot be used here: an input is a "
        "group, feature, tower, gate, transfer or a single expert (not a pool of several, "
        "not a task); a group collects such vectors; a gate mixes (or scales) expert pools "
        "and vector nodes; a `table=` names a feature.",
        "expert e x4 = mlp(all, [8])\ntower t = mlp(e, [8])",
        "expert e x4 = mlp(all, [8])\ngate g = softmax(all) over [e]\ntower t = mlp(g, [8])",
    ),
    # -- calls and options ----------------------------------------------------
    "MTL301": Code(
        "unknown call",
        "Blocks, gates, transfers, feature kinds, task kinds and weightings are each one "
        "of a fixed set: `mlp`, `apg`, `star`, `cross`; `softmax`, `sigmoid`; `ait`; `sparse`, "
        "`sequence`, `dense`; `binary`, `regression`, `multiclass`; `fixed`, `uncertainty`, "
        "`gradnorm`.",
        "tower t = mpl(all, [64])",
        "tower t = mlp(all, [64])",
    ),
    "MTL302": Code(
        "unknown option",
        "The call has no option of that name. A close name, if any, is suggested.",
        "tower t = mlp(all, [64], dropuot=0.1)",
        "tower t = mlp(all, [64], dropout=0.1)",
    ),
    "MTL303": Code(
        "missing option",
        "A required argument or option is not given (for example `vocab` and `dim` of a "
        "sparse feature, `classes` of a multiclass task).",
        "feature user_id : sparse(dim=8)",
        "feature user_id : sparse(vocab=100, dim=8)",
    ),
    "MTL304": Code(
        "wrong type of value",
        "The value has the wrong type: an integer where a whole number is needed, a "
        "list of widths, a name, and so on.",
        "feature user_id : sparse(vocab=100, dim=8.5)",
        "feature user_id : sparse(vocab=100, dim=8)",
    ),
    "MTL305": Code(
        "value out of range",
        "The value is outside what the option allows (for example dropout in [0, 1), "
        "temperature > 0, top between 1 and the number of experts, widths between 1 and "
        "1,000,000). See docs/language.md for every range.",
        "tower t = mlp(all, [64], dropout=1.5)",
        "tower t = mlp(all, [64], dropout=0.5)",
    ),
    "MTL306": Code(
        "duplicate option",
        "An option is given twice in one call.",
        "feature f : sparse(vocab=10, dim=4, dim=8)",
        "feature f : sparse(vocab=10, dim=8)",
    ),
    "MTL307": Code(
        "invalid choice",
        "The option takes one of a few words (for example activation relu, gelu, silu, "
        "tanh, sigmoid, prelu or none; bias true or false). A close word, if any, is suggested.",
        "tower t = mlp(all, [64], activation=rellu)",
        "tower t = mlp(all, [64], activation=relu)",
    ),
    "MTL308": Code(
        "wrong number of arguments",
        "The call takes a fixed number of positional arguments; everything else is given by name.",
        "tower t = mlp(all, [64], 0.1)",
        "tower t = mlp(all, [64], dropout=0.1)",
    ),
    "MTL309": Code(
        "not supported yet",
        "The construct is planned for a later version of the language (see the end of "
        "docs/language.md) but cannot be compiled yet.",
        "gate g = condition(all) over [a, b]",
        "gate g = softmax(all) over [a, b]",
    ),
    "MTL310": Code(
        "repeated source",
        "A gate lists each of its sources once.",
        "gate g = softmax(all) over [shared, shared]",
        "gate g = softmax(all) over [shared, ctr_experts]",
    ),
    "MTL311": Code(
        "`stopgrad` where it cannot be",
        "`stopgrad(x)` reads `x` without letting gradient flow back into it. It may wrap a "
        "group member or a gate source; to stop the gradient into any other input, put it "
        "in a group and read the group.",
        "tower t = mlp(stopgrad(all), [8])",
        "group frozen = [stopgrad(all)]\ntower t = mlp(frozen, [8])",
    ),
    "MTL312": Code(
        "a sigmoid gate over several sources",
        "A sigmoid gate scales one source (a vector, or each expert of a pool) by "
        "`scale * sigmoid(net(condition))`; it does not mix sources as a softmax gate does.",
        "tower a = mlp(all, [8])\ngate g = sigmoid(all) over [net, a]",
        "gate g = sigmoid(all) over [net]",
    ),
    "MTL313": Code(
        "options of hidden layers a gate does not have",
        "`activation`, `norm` and `dropout` of a gate apply to its hidden layers (`hidden=[...]`); "
        "a gate without hidden layers is one Linear and has none of them.",
        "gate g = sigmoid(all, activation=gelu) over [net]",
        "gate g = sigmoid(all, hidden=[16], activation=gelu) over [net]",
    ),
    "MTL314": Code(
        "`expand` with `shared=false`",
        "`apg`'s `expand` widens the shared factors of each layer (NextRec's `use_mf_p`); with "
        "`shared=false` those factors are generated from the condition instead, so there is "
        "nothing to widen.",
        "tower t = apg(all, [8], by=user_id, expand=[4], shared=false)",
        "tower t = apg(all, [8], by=user_id, expand=[4])",
    ),
    "MTL315": Code(
        "an option of another form of cross",
        "`rank` and `experts` shape the low-rank experts of `cross(..., form=mix)` (DCNv2's "
        "mixture); the `vector` and `matrix` forms have no experts.",
        "tower t = cross(all, layers=2, rank=16)",
        "tower t = cross(all, layers=2, form=mix, rank=16)",
    ),
    "MTL316": Code(
        "not a cross-stitch unit or routing gate",
        "`cross_stitch(COLUMN) over [A, B, ...]` mixes two or more columns' vectors (not pools, "
        "not through stopgrad), and continues COLUMN, one of them; `snr() over [...]` routes two "
        "or more columns (a pool gives its experts), not through stopgrad.",
        "gate s = cross_stitch(net) over [net]",
        "tower net2 = mlp(all, [8])\ngate s = cross_stitch(net) over [net, net2]",
    ),
    # -- widths and sizes -----------------------------------------------------
    "MTL401": Code(
        "gate sources differ in width",
        "A gate adds up its sources weighted, so all of them must have one width.",
        "expert a x2 = mlp(all, [64])\nexpert b x2 = mlp(all, [32])\n"
        "gate g = softmax(all) over [a, b]",
        "expert a x2 = mlp(all, [64])\nexpert b x2 = mlp(all, [64])\n"
        "gate g = softmax(all) over [a, b]",
    ),
    "MTL402": Code(
        "transfer widths differ",
        "`ait(cur, from=prev)` mixes the two vectors, so they must have one width.",
        "tower a = mlp(all, [64])\ntower b = mlp(all, [32])\ntransfer t = ait(b, from=a)",
        "tower a = mlp(all, [64])\ntower b = mlp(all, [64])\ntransfer t = ait(b, from=a)",
    ),
    "MTL403": Code(
        "shared table differs",
        "A feature with `table=owner` looks its ids up in the owner's embedding table, "
        "so it must declare the same vocab and dim.",
        "feature item : sparse(vocab=500, dim=8)\n"
        "feature hist : sequence(vocab=400, dim=8, maxlen=5, table=item)",
        "feature item : sparse(vocab=500, dim=8)\n"
        "feature hist : sequence(vocab=500, dim=8, maxlen=5, table=item)",
    ),
    "MTL404": Code(
        "invalid table owner",
        "`table=` names a sparse or sequence feature declared earlier (not the feature itself).",
        "feature item : sparse(vocab=500, dim=8, table=item)",
        "feature item : sparse(vocab=500, dim=8)",
    ),
    "MTL405": Code(
        "model too large",
        "The model's parameters (embedding tables, layers, gates, heads) would exceed "
        "2,000,000,000; it could not be built in memory. Shrink a vocab or a width.",
        "feature big_id : sparse(vocab=2_000_000_000, dim=64)",
        "feature big_id : sparse(vocab=2_000_000, dim=64)",
    ),
    # -- tasks ----------------------------------------------------------------
    "MTL501": Code(
        "product of non-binary tasks",
        "A product task multiplies probabilities: it and each of its factors are binary tasks.",
        "task r : regression(label=price) = net\ntask p : binary(label=buy) = ctr * r",
        "task cvr : binary = net\ntask p : binary(label=buy) = ctr * cvr",
    ),
    "MTL502": Code(
        "factor is not a task",
        "The factors of a product are tasks declared earlier, not networks.",
        "task p : binary(label=buy) = ctr * cvr_net",
        "task p : binary(label=buy) = ctr * cvr",
    ),
    "MTL503": Code(
        "loss does not fit the task",
        "binary tasks take loss bce or focal (or a counterfactual `ipw(...)`, `dr(...)`); "
        "regression mse or huber; multiclass ce.",
        "task ctr : binary(label=click, loss=mse) = net",
        "task ctr : binary(label=click, loss=focal) = net",
    ),
    "MTL504": Code(
        "two tasks on one label",
        "Two tasks learn the same label column. mtlc treats this as a mistake; to train "
        "two heads on one target on purpose, copy the column under a second name in the data. "
        "One exception: a task with a counterfactual loss (`ipw`, `dr`) may share its label "
        "with one other task (ESCM2's CVR and CTCVR read the same conversion label).",
        "task a : binary(label=click) = net1\ntask b : binary(label=click) = net2",
        "task a : binary(label=click) = net1\ntask b : binary(label=click_copy) = net2",
    ),
    "MTL505": Code(
        "label is a feature",
        "A label column that is also an input feature leaks the answer into the model.",
        "feature click : dense\ntask ctr : binary(label=click) = net",
        "feature price : dense\ntask ctr : binary(label=click) = net",
    ),
    "MTL506": Code(
        "constraint over a non-binary task",
        "`constrain a <= b` compares probabilities, so both tasks are binary.",
        "task r : regression(label=y) = net\nconstrain r <= ctr",
        "constrain cvr <= ctr",
    ),
    "MTL507": Code(
        "repeated factor",
        "A product lists each factor once.",
        "task p : binary(label=buy) = ctr * ctr",
        "task p : binary(label=buy) = ctr * cvr",
    ),
    "MTL508": Code(
        "option of a latent task",
        "A task without `label` has no loss of its own, so `loss` and `weight` mean nothing "
        "there; give it a label or drop the option.",
        "task cvr : binary(weight=2) = net",
        "task cvr : binary = net",
    ),
    "MTL509": Code(
        "constraint of a task with itself",
        "`constrain a <= a` is always satisfied; name two different tasks.",
        "constrain ctr <= ctr",
        "constrain cvr <= ctr",
    ),
    "MTL510": Code(
        "head option of a product task",
        "A product of tasks (`binary = a * b`) has no head of its own, so `bias` means nothing "
        "there.",
        "task cvr : binary = net\ntask both : binary(label=y, bias=false) = ctr * cvr",
        "task cvr : binary = net\ntask both : binary(label=y) = ctr * cvr",
    ),
    "MTL511": Code(
        "not a propensity task",
        "A counterfactual loss (`loss=ipw(P)`, `loss=dr(P, ...)`, ESCM2) weighs a CVR task's "
        "rows by the clicks of `P`: `P` is another binary task, declared above, with a label "
        "(the clicks) and a head of its own (its probability is the propensity).",
        "task cvr : binary(label=buy, loss=ipw(cvr)) = net",
        "task cvr : binary(label=buy, loss=ipw(ctr)) = net",
    ),
    "MTL512": Code(
        "not an imputation task",
        "`loss=dr(P, imputation=I)` learns the error of the CVR task on every row from `I`, "
        "a latent regression task (no label: the doubly robust loss trains it).",
        "task cvr : binary(label=buy, loss=dr(ctr, imputation=ctr)) = net",
        "task imp : regression = net\n"
        "task cvr : binary(label=buy, loss=dr(ctr, imputation=imp)) = net",
    ),
}


def markdown() -> str:
    """The catalogue as the Markdown of docs/language.md's diagnostics section."""
    parts = []
    for code, entry in CODES.items():
        bad = "\n".join(entry.bad.splitlines())
        good = "\n".join(entry.good.splitlines())
        parts.append(
            f"#### `{code}` {entry.title}\n\n{entry.explanation}\n\n"
            f"Wrong:\n\n```\n{bad}\n```\n\nRight:\n\n```\n{good}\n```\n"
        )
    return "\n".join(parts)


def explain_code(code: str) -> str | None:
    """The explanation of a diagnostic code (``"MTL203"``), with a bad and a good example."""
    entry = CODES.get(code.strip().upper())
    if entry is None:
        return None
    bad = "\n".join("    " + line for line in entry.bad.splitlines())
    good = "\n".join("    " + line for line in entry.good.splitlines())
    return (
        f"{code.strip().upper()}: {entry.title}\n\n{entry.explanation}\n\n"
        f"For example, this is wrong:\n\n{bad}\n\nand this is right:\n\n{good}\n"
    )
