"""Gate mixture speed: mtlc's ``gate_mix`` against NextRec's per-task form.

The mixture of T gates over E experts of width D at batch B:
``softmax(logits [B, T, E]) -> weights; out [B, T, D] = weights @ experts [B, E, D]``,
forward and backward. NextRec (0.6.14) computes each task's gate apart:
``(softmax(g_t).unsqueeze(-1) * experts).sum(1)``.

CPU (always): interleaved rounds of each form, median time per form and
the ratio NextRec / mtlc, for experts both contiguous ``[B, E, D]`` and as
the ``[E, B, D]`` buffer viewed ``[B, E, D]`` that ``ExpertPool`` returns.

GPU (when CUDA and triton are there): ``triton.testing.do_bench`` medians
of the fused Triton kernel (``gate_softmax_mix``), softmax + the Triton
``gate_mix``, eager bmm, the NextRec form and torch.compile of the
NextRec form, as GB/s and as a fraction of the measured copy bandwidth, over
B in {8192, 65536}, E in {4, 8, 16}, D in {64, 128, 256}, T in {2, 3}, fp32
and bf16.

``--pool`` adds the expert pool forms: ``ExpertPool`` on CPU (one expert
after another, from the batched weights), ``ExpertPool``'s batched path
(one wide first-layer matmul, then baddbmm; what CUDA runs), every layer a
baddbmm (the first on the input broadcast to ``[E, B, in]``), the wide first
layer then einsum, and ``-O0``'s ``Experts`` + stack. With ``--threads 1`` the
clock is the thread's CPU time, which other jobs on the machine do not inflate.

``--models SPEC...`` adds generated models, forward + backward: ``-O0``,
``-O1``, and ``-O1`` with ``ExpertPool.per_expert_min_batch = None`` (always batched).

Usage::

    python benchmarks/gate_kernel.py [--rounds N] [--full] [--pool] [--models SPEC...] [--threads N]

(the default CPU run takes well under a minute).
"""

from __future__ import annotations

import argparse
import copy
import functools
import itertools
import os
import platform
import statistics
import time

import torch

from mtlc.runtime.kernels import ops

CPU_SHAPES = [  # (B, T, E, D)
    (1024, 2, 4, 128),
    (2048, 2, 4, 128),
    (2048, 3, 8, 64),
    (8192, 3, 16, 128),
]
CPU_SHAPES_FULL = [
    (b, t, e, d)
    for b, t, e, d in itertools.product([1024, 8192], [2, 3, 4], [4, 8, 16], [64, 128, 256])
]


def mtlc_mix(logits: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """What ``GateBank`` does without masks on CUDA or compiled.

    One fused softmax and mixture for all gates.
    """
    return ops.gate_softmax_mix(logits, experts, 1.0, 0)


def mtlc_weights_then_mix(logits: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """What ``GateBank`` does with masks on CUDA or compiled.

    One softmax over all gates, one ``gate_mix``.
    """
    return ops.gate_mix(torch.softmax(logits, -1), experts)


def nextrec_mix(logits: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """NextRec's form: per task, softmax then broadcast-multiply and sum over experts."""
    outs = [
        (torch.softmax(logits[:, t], -1).unsqueeze(-1) * experts).sum(1)
        for t in range(logits.shape[1])
    ]
    return torch.stack(outs, dim=1)


def _inputs(batch, gates, num_experts, width, dtype=torch.float32, device="cpu", pool_layout=False):
    logits = torch.randn(batch, gates, num_experts, dtype=dtype, device=device, requires_grad=True)
    if pool_layout:  # ExpertPool's output: an [E, B, D] buffer seen as [B, E, D]
        experts = torch.randn(num_experts, batch, width, dtype=dtype, device=device).transpose(0, 1)
    else:
        experts = torch.randn(batch, num_experts, width, dtype=dtype, device=device)
    return logits, experts.requires_grad_()


def _clock():
    """CPU time of this thread when torch runs on one thread (robust to other jobs).

    Else wall time.
    """
    return time.thread_time if torch.get_num_threads() == 1 else time.perf_counter


def _forward(form, logits, experts, upstream):
    """The forward alone (``upstream`` unused: the arguments of ``_step``)."""
    return form(logits, experts)


def _step(form, logits, experts, upstream):
    out = form(logits, experts)
    torch.autograd.grad(out, (logits, experts), upstream)


def cpu_table(shapes, rounds: int) -> list[str]:
    """Interleaved rounds on CPU; one line per shape and layout, medians in ms and the ratio."""
    lines = [
        "| B | T | E | D | experts | mtlc ms | NextRec ms | NextRec / mtlc |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ratios, clock = [], _clock()
    for shape, pool_layout in itertools.product(shapes, (False, True)):
        logits, experts = _inputs(*shape, pool_layout=pool_layout)
        upstream = torch.randn(shape[0], shape[1], shape[3])
        torch.testing.assert_close(
            mtlc_mix(logits, experts), nextrec_mix(logits, experts), rtol=1e-4, atol=1e-5
        )
        times = {mtlc_mix: [], nextrec_mix: []}
        for _ in range(rounds + 2):
            for form, samples in times.items():
                start = clock()
                _step(form, logits, experts, upstream)
                samples.append(clock() - start)
        ours, theirs = (statistics.median(samples[2:]) * 1e3 for samples in times.values())
        ratios.append(theirs / ours)
        layout = "pool view" if pool_layout else "contiguous"
        lines.append(
            f"| {' | '.join(map(str, shape))} | {layout} "
            f"| {ours:.3f} | {theirs:.3f} | {theirs / ours:.2f}x |"
        )
    lines.append(
        f"\ngeometric mean NextRec / mtlc: {statistics.geometric_mean(ratios):.2f}x "
        f"over {len(ratios)} cells"
    )
    return lines


def pool_table(
    rounds: int, batch: int = 2048, in_dim: int = 132, dims=(256, 128), num_experts: int = 4
) -> list[str]:
    """Expert pool forward + backward: ``ExpertPool`` against a wide first layer, and ``-O0``."""
    from mtlc import runtime as rt

    experts = rt.Experts(in_dim, dims, num_experts)
    pool = rt.ExpertPool(in_dim, dims, num_experts)
    pool.load_from_experts(experts)
    pool.per_expert_min_batch = 0  # always per expert
    weight, bias = pool.weights[0], pool.biases[0]

    first_weight = pool.first.weight.view(num_experts, dims[0], in_dim).transpose(
        1, 2
    )  # [E, in, d1]
    first_bias = pool.first.bias.view(num_experts, 1, dims[0])

    def broadcast_first(x):  # the first layer as a baddbmm of the input broadcast to [E, B, in]
        return torch.relu(torch.baddbmm(first_bias, x.expand(num_experts, -1, -1), first_weight))

    def wide_first(x):  # ExpertPool's first layer: one wide matmul, seen as [B, E, d1]
        return pool.post[0](pool.first(x).view(x.shape[0], num_experts, dims[0]))

    batched = copy.deepcopy(pool)
    batched.per_expert_min_batch = None
    forms = {
        "ExpertPool, per expert": pool,
        "ExpertPool, batched": batched,
        "all layers baddbmm": lambda x: torch.relu(
            torch.baddbmm(bias, broadcast_first(x), weight)
        ).transpose(0, 1),
        "wide first + einsum": lambda x: torch.relu(
            torch.einsum("bei,eio->beo", wide_first(x), weight) + bias[:, 0]
        ),
        "-O0 Experts + stack": experts,
    }
    x = torch.randn(batch, in_dim)
    upstream = torch.randn(batch, num_experts, dims[-1])
    for form in forms.values():
        torch.testing.assert_close(form(x), experts(x), rtol=1e-4, atol=1e-5)
    times, clock = {name: [] for name in forms}, _clock()
    for _ in range(rounds + 2):
        for name, form in forms.items():
            start = clock()
            form(x).backward(upstream)
            times[name].append(clock() - start)
    lines = [
        f"expert pool B={batch} in={in_dim} dims={list(dims)} E={num_experts}, "
        f"forward + backward ({clock.__name__}):"
    ]
    for name, samples in times.items():
        lines.append(
            f"  {name:22s} median {statistics.median(samples[2:]) * 1e3:8.2f} ms  "
            f"min {min(samples[2:]) * 1e3:8.2f} ms"
        )
    return lines


def model_table(specs: list[str], rounds: int, batch: int = 2048) -> list[str]:
    """Generated models, forward + backward.

    ``-O0``, ``-O1``, and ``-O1`` with batched pools on CPU.
    """
    import mtlc
    from mtlc import runtime as rt
    from mtlc.runtime.testing import random_batch

    lines = [f"| spec (B={batch}) | -O0 ms | -O1 ms | -O1 batched pools ms |", "|---|---|---|---|"]
    clock = _clock()
    for spec in specs:
        plain_class, fast_class = (
            mtlc.load_model(spec, opt_level=0),
            mtlc.load_model(spec, opt_level=1),
        )
        plain, fast, batched = plain_class(), fast_class(), fast_class()
        fast.load_state_dict(rt.convert_o0_state_dict(plain.state_dict(), fast))
        batched.load_state_dict(fast.state_dict())
        for module in batched.modules():
            if isinstance(module, rt.ExpertPool):
                module.per_expert_min_batch = None
        columns = random_batch(plain_class, batch)
        times = {model: [] for model in (plain, fast, batched)}
        for _ in range(rounds + 2):
            for model, samples in times.items():
                start = clock()
                logits = model.forward_logits(columns)
                sum(value.sum() for value in logits.values()).backward()
                samples.append(clock() - start)
                model.zero_grad(set_to_none=True)
        cells = [f"{statistics.median(samples[2:]) * 1e3:.1f}" for samples in times.values()]
        lines.append(f"| {spec} | {' | '.join(cells)} |")
    return lines


def gpu_table(dtypes=(torch.float32, torch.bfloat16)) -> list[str]:
    """``do_bench`` medians on the GPU: GB/s and the fraction of copy bandwidth, per form."""
    import triton.testing

    torch._dynamo.config.cache_size_limit = (
        256  # one compile per shape and dtype, never an eager fallback
    )
    big = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")
    copy_ms = triton.testing.do_bench(lambda: big.clone())
    copy_gbs = 2 * big.numel() / copy_ms / 1e6
    compiled = torch.compile(nextrec_mix)
    forms = {
        "fused": mtlc_mix,
        "mix": mtlc_weights_then_mix,
        "bmm": lambda g, h: torch.bmm(torch.softmax(g, -1), h),
        "nextrec": nextrec_mix,
        "compile": compiled,
    }
    lines = [
        f"device: {torch.cuda.get_device_name()}, copy bandwidth {copy_gbs:.0f} GB/s",
        "| dtype | B | T | E | D | pass | "
        + " | ".join(f"{n} GB/s (of copy)" for n in forms)
        + " |",
        "|---|---|---|---|---|---|" + "---|" * len(forms),
    ]
    grid = itertools.product(dtypes, [8192, 65536], [2, 3], [4, 8, 16], [64, 128, 256])
    for dtype, batch, gates, num_experts, width in grid:
        logits, experts = _inputs(batch, gates, num_experts, width, dtype=dtype, device="cuda")
        upstream = torch.randn(batch, gates, width, dtype=dtype, device="cuda")
        size = torch.finfo(dtype).bits // 8
        weights, pool, out = (
            batch * gates * num_experts,
            batch * num_experts * width,
            batch * gates * width,
        )
        # the floor: forward reads weights and experts, writes out; backward reads the output's
        # gradient, weights and experts again, and writes both gradients
        for name, bytes_moved, run in (
            ("fwd", size * (weights + pool + out), _forward),
            ("fwd+bwd", size * (3 * weights + 3 * pool + 2 * out), _step),
        ):
            cells = []
            for form in forms.values():
                ms = triton.testing.do_bench(
                    functools.partial(run, form, logits, experts, upstream)
                )
                gbs = bytes_moved / ms / 1e6
                cells.append(f"{gbs:.0f} ({gbs / copy_gbs:.0%})")
            lines.append(
                f"| {str(dtype)[6:]} | {batch} | {gates} | {num_experts} | {width} | {name} "
                f"| {' | '.join(cells)} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=10, help="timed rounds per cell on CPU (default 10)"
    )
    parser.add_argument(
        "--full", action="store_true", help="the full CPU grid (B x T x E x D, several minutes)"
    )
    parser.add_argument("--pool", action="store_true", help="also time the expert pool forms")
    parser.add_argument(
        "--models", nargs="*", metavar="SPEC", help="also time these generated models, -O0 vs -O1"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"load average {os.getloadavg()[0]:.2f} at start; clock: {_clock().__name__}\n")
    print("\n".join(cpu_table(CPU_SHAPES_FULL if args.full else CPU_SHAPES, args.rounds)))
    if args.pool:
        print()
        print("\n".join(pool_table(args.rounds)))
    if args.models:
        print()
        print("\n".join(model_table(args.models, args.rounds)))
    if torch.cuda.is_available() and ops._HAVE_TRITON:
        print()
        print("\n".join(gpu_table()))
    else:
        print("\n(no CUDA device or no triton: GPU table skipped)")


if __name__ == "__main__":
    main()
