"""A generated model exported for serving: ONNX (onnxruntime) or a ``torch.export`` program.

The exported program takes the model's encoded inputs, one tensor per feature
(ids from the run's vocabularies, standardised dense values: what
``mtlc.runtime.data.Encoder`` makes of raw columns), with a dynamic batch
dimension, and returns one tensor per task (the predictions ``forward`` gives),
inputs and outputs named as the generated module names them. While tracing,
every gate runs the plain PyTorch of ``kernels.reference``
(``kernels.ops.exporting``), so the program holds standard operators only.

``export(model, path)`` writes ``path`` (``.onnx`` or ``.pt2``) and returns the
largest difference between the exported program's and the model's predictions
on a random batch; ``mtlc export`` refuses a difference above ``TOLERANCE``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from .kernels.ops import exporting
from .testing import random_batch

__all__ = ["export", "FORMATS", "TOLERANCE"]

FORMATS = (".onnx", ".pt2")
TOLERANCE = 1e-5


class _Positional(nn.Module):
    """The model with one positional tensor per feature in, a tuple of predictions out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.features = list(type(model).features)
        self.tasks = list(type(model).tasks)

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        out = self.model(dict(zip(self.features, inputs)))
        return tuple(out[task] for task in self.tasks)


def export(model: nn.Module, path: str | Path, seed: int = 0) -> float:
    """Write ``model`` (in eval mode) to ``path`` and return the largest difference of the
    exported program's predictions from the model's on a random batch of 13 rows."""
    path = Path(path)
    if path.suffix not in FORMATS:
        raise ValueError(f"{path}: the output must end in {' or '.join(FORMATS)}")
    model = model.eval()
    flat = _Positional(model)
    example = random_batch(type(model), 8, seed)
    args = tuple(example[name] for name in flat.features)
    batch = torch.export.Dim("batch", min=1, max=1 << 24)
    shapes = (tuple({0: batch} for _ in args),)
    auto = (tuple({0: torch.export.Dim.AUTO} for _ in args),)  # torch.export: inferred
    check = random_batch(type(model), 13, seed + 1)
    with torch.no_grad():
        expected = flat(*(check[name] for name in flat.features))
    with exporting(), torch.no_grad():
        if path.suffix == ".onnx":
            torch.onnx.export(
                flat,
                args,
                str(path),
                input_names=flat.features,
                output_names=flat.tasks,
                dynamic_shapes=shapes,
                dynamo=True,
                external_data=False,  # one self-contained file (models under 2 GB)
                verbose=False,
            )
        else:
            program = torch.export.export(flat, args, dynamic_shapes=auto, strict=False)
            torch.export.save(program, str(path))
    got = _run(path, flat.features, [check[name] for name in flat.features])
    return max(float((g - e).abs().max()) for g, e in zip(got, expected))


def _run(path: Path, names: list[str], inputs: list[Tensor]) -> list[Tensor]:
    """The exported program's outputs for ``inputs``, loaded from ``path`` as a server would."""
    if path.suffix == ".onnx":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(path), options)
        outputs = session.run(None, {n: x.numpy() for n, x in zip(names, inputs)})
        return [torch.from_numpy(o) for o in outputs]
    program = torch.export.load(str(path))
    with torch.no_grad():
        return list(program.module()(*inputs))
