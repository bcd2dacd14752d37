"""mtlc's runtime: the layers generated models call, their metadata, and the gate kernels.

Generated code imports it as ``from mtlc import runtime as rt``. Importing
this package loads torch but no optional library (no triton, pyarrow or
scikit-learn); training lives in the ``trainer``/``data``/... submodules.
"""

from .apg import APG
from .convert import convert_o0_state_dict
from .cross import Cross
from .gates import CrossStitch, Gate, GateBank, Route, ScaleGate, SoftmaxGate, scale_by
from .kernels import gate_mix, gate_softmax_mix, gate_weights, scale_gate
from .layers import MLP, AITransfer, ExpertPool, Experts, mix, pool_max, pool_mean, pool_sum
from .spec import Constraint, Feature, Task, Weighting
from .star import Star

__all__ = [
    "AITransfer",
    "APG",
    "Constraint",
    "Cross",
    "CrossStitch",
    "Route",
    "ExpertPool",
    "Experts",
    "Feature",
    "Gate",
    "GateBank",
    "MLP",
    "ScaleGate",
    "SoftmaxGate",
    "Star",
    "Task",
    "Weighting",
    "convert_o0_state_dict",
    "gate_mix",
    "gate_softmax_mix",
    "gate_weights",
    "mix",
    "pool_max",
    "pool_mean",
    "pool_sum",
    "scale_by",
    "scale_gate",
]


def __getattr__(name: str):
    """``from mtlc.runtime import Trainer, TrainConfig``, loaded on first use.

    They need pyarrow, which importing the runtime does not load.
    """
    if name in ("Trainer", "TrainConfig"):
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
