"""Serving latency of one request: NextRec's eager MMoE against mtlc's eager module and its
exported forms (ONNX under onnxruntime; ``torch.export``), on CPU, one thread.

    .venv/bin/python benchmarks/serve_latency.py [--rounds 7] [--calls 50] [--json FILE]
    .venv/bin/python benchmarks/serve_latency.py --aoti     # also an AOTInductor package (slow)

The model: MMoE with 8 experts on ``peers.Config``'s 8 sparse and 4 dense features
(NextRec 0.6.14's ``MMOE`` and the spec ``train_speed.mtlc_spec`` writes, the same
model: ``tests/parity/test_specs_match_nextrec.py``), in eval mode, no gradient. For
each batch size (1, 64, 512), rounds run every contender ``--calls`` times in turn (the
order rotating), one fixed request each; reported: the median time of one call over
the rounds, and the median of the per-round ratios NextRec / contender.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402
import train_speed  # noqa: E402

BATCHES = (1, 64, 512)


def contenders(config, workdir: Path, aoti: bool) -> dict:
    """name -> (a function of the request's inputs dict)."""
    from mtlc.api import load_source
    from mtlc.runtime.export import export

    nextrec = peers.nextrec_model(config, "mmoe").eval()
    model_class = load_source(train_speed.mtlc_spec(config, "mmoe"), "serve.mtl")
    torch.manual_seed(0)
    ours = model_class().eval()
    names = list(model_class.features)
    onnx_path, pt2_path = workdir / "mmoe.onnx", workdir / "mmoe.pt2"
    export(ours, onnx_path)
    export(ours, pt2_path)
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = onnxruntime.InferenceSession(str(onnx_path), options)
    program = torch.export.load(str(pt2_path)).module()
    out = {
        "nextrec": lambda x: nextrec.training_adapter.forward(nextrec, x),
        "mtlc": lambda x: ours(x),
        "mtlc_onnx": lambda x: session.run(None, {n: x[n].numpy() for n in names}),
        "mtlc_export": lambda x: program(*(x[n] for n in names)),
    }
    if aoti:
        from torch._inductor import aoti_compile_and_package, aoti_load_package

        exported = torch.export.load(str(pt2_path))
        package = aoti_compile_and_package(exported, package_path=str(workdir / "mmoe_aoti.pt2"))
        runner = aoti_load_package(package)
        out["mtlc_aoti"] = lambda x: runner(*(x[n] for n in names))
    return out


def measure(functions: dict, batch: dict, rounds: int, calls: int) -> dict:
    names = list(functions)
    times: dict[str, list[float]] = {n: [] for n in names}
    with torch.no_grad():
        for f in functions.values():  # warm up
            for _ in range(5):
                f(batch)
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                f = functions[name]
                start = time.perf_counter()
                for _ in range(calls):
                    f(batch)
                times[name].append((time.perf_counter() - start) / calls)
    result = {}
    for name in names:
        ratios = [a / b for a, b in zip(times["nextrec"], times[name])]
        result[name] = {
            "ms": statistics.median(times[name]) * 1e3,
            "vs_nextrec": statistics.median(ratios),
            "range": [min(ratios), max(ratios)],
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--aoti", action="store_true", help="also an AOTInductor package")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = dataclasses.replace(peers.CONFIG, num_experts=8)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        functions = contenders(config, Path(tmp), args.aoti)
        for size in args.batches:
            inputs, _ = peers.synthetic_batch(config, "mmoe", size, seed=size)
            rows[size] = measure(functions, inputs, args.rounds, args.calls)
    print("| batch | contender | ms per request (median) | vs NextRec [min-max] |")
    print("|---|---|---|---|")
    for size, result in rows.items():
        for name, r in result.items():
            low, high = r["range"]
            ratio = f"{r['vs_nextrec']:.2f} [{low:.2f}-{high:.2f}]"
            print(f"| {size} | {name} | {r['ms']:.3f} | {ratio} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"torch": torch.__version__, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
