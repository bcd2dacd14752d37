"""``ait(..., bias=true)``: the option NextRec's AITM needs (Q/K/V with biases).

The default is the paper's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import mtlc

AITM = (Path(__file__).resolve().parents[2] / "specs" / "aitm.mtl").read_text(encoding="utf-8")


def _transfer(spec: str):
    code = mtlc.compile_spec(spec, "aitm.mtl")
    namespace: dict = {}
    exec(compile(code, "aitm", "exec"), namespace)
    model = namespace["AITM"]()
    return model.buy_in


def test_ait_has_no_qkv_bias_by_default():
    transfer = _transfer(AITM)
    assert transfer.query.bias is None and transfer.key.bias is None and transfer.value.bias is None
    assert transfer.info.bias is not None


def test_bias_true_gives_qkv_biases():
    transfer = _transfer(
        AITM.replace("ait(buy_raw, from=click_in)", "ait(buy_raw, from=click_in, bias=true)")
    )
    assert (
        transfer.query.bias is not None
        and transfer.key.bias is not None
        and transfer.value.bias is not None
    )


def test_bias_takes_true_or_false():
    with pytest.raises(mtlc.SpecError) as error:
        mtlc.compile_spec(
            AITM.replace("ait(buy_raw, from=click_in)", "ait(buy_raw, from=click_in, bias=yes)")
        )
    assert [d.code for d in error.value.diagnostics] == ["MTL307"]
