"""Random valid specs compile, at -O0 and -O1, into models that run and agree."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings

from mtlc import runtime as rt
from mtlc.api import load_source
from mtlc.runtime.testing import random_batch
from tests.strategies import GeneratedSpec, valid_specs


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs(max_networks=5))
def test_random_specs_compile_and_run(spec: GeneratedSpec):
    plain_class = load_source(spec.source, "random.mtl", opt_level=0)
    fast_class = load_source(spec.source, "random.mtl", opt_level=1)
    assert list(fast_class.features) == list(spec.features)
    assert list(fast_class.tasks) == list(spec.tasks)

    torch.manual_seed(0)
    plain, fast = plain_class().eval(), fast_class().eval()
    fast.load_state_dict(rt.convert_o0_state_dict(plain.state_dict(), fast))
    batch = random_batch(fast_class, 3, seed=1)
    out_plain, out_fast = plain(batch), fast(batch)
    for name, (kind, width) in spec.tasks.items():
        shape = (3, width) if kind == "multiclass" else (3,)
        assert out_fast[name].shape == shape, name
        assert torch.isfinite(out_fast[name]).all(), name
        torch.testing.assert_close(out_fast[name], out_plain[name], rtol=1e-4, atol=1e-5)
    sum(v.sum() for v in out_fast.values()).backward()
    assert any(p.grad is not None for p in fast.parameters())
