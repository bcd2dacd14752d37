"""The largest prediction difference between mtlc and NextRec / torch-rechub after copying weights.

    .venv/bin/python benchmarks/parity_gap.py --json benchmarks/results/parity_gap.json

Runs every configuration of ``tests/parity`` (NextRec 0.6.14, torch-rechub 0.9.0)
at ``-O0`` and ``-O1`` the way its test does (same random weights and batch) and
prints, per configuration, the largest absolute difference between the two
models' predicted probabilities (or values). The tests assert it is below 1e-5;
this records how far below.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtlc.runtime.interop import nextrec as nx  # noqa: E402
from mtlc.runtime.interop import rechub as rh  # noqa: E402
from tests.parity import test_nextrec_parity as nx_cases  # noqa: E402
from tests.parity import test_rechub_parity as rh_cases  # noqa: E402
from tests.parity.peers import build, random_batch, randomize  # noqa: E402


def gap(ours: torch.nn.Module, peer_forward, pairing) -> float:
    """max |ours - peer| over the paired prediction columns, on the tests' batch."""
    ours.eval()
    batch = random_batch(ours)
    with torch.no_grad():
        predicted, reference = ours(batch), peer_forward(batch)
    return max(
        float((predicted[task] - reference[:, column]).abs().max())
        for task, column, _ in pairing.columns
    )


def cases(scratch: Path):
    for config in nx_cases.CONFIGS:
        for opt_level in (0, 1):
            peer = randomize(nx_cases.CONFIGS[config](), seed=len(config))
            ours = build(nx.spec_from(peer), scratch, opt_level)
            nx.load_weights(ours, peer)
            yield (
                "nextrec",
                config,
                opt_level,
                gap(
                    ours,
                    functools.partial(peer.training_adapter.forward, peer),
                    nx_cases.pairing(peer, ours),
                ),
            )
    for config, (make, tasks) in rh_cases.CONFIGS.items():
        for opt_level in (0, 1):
            peer = randomize(make(), seed=len(config))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", rh.FoldWarning)
                ours = build(
                    rh.spec_from(peer, tasks=tasks, maxlen=rh_cases.MAXLEN), scratch, opt_level
                )
                rh.load_weights(ours, peer, tasks=tasks, maxlen=rh_cases.MAXLEN)
            names = tasks or [f"task{i + 1}" for i in range(peer.n_task)]
            yield "rechub", config, opt_level, gap(ours, peer, rh_cases.pairing(peer, ours, names))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for peer, config, opt_level, value in cases(Path(scratch)):
            rows.append(
                {"peer": peer, "config": config, "opt_level": opt_level, "max_abs_diff": value}
            )
            print(f"{peer:8s} {config:24s} -O{opt_level}  {value:.1e}")
    worst = max(rows, key=lambda r: r["max_abs_diff"])
    print(
        f"largest: {worst['max_abs_diff']:.1e} "
        f"({worst['peer']} {worst['config']} -O{worst['opt_level']}), "
        f"{len(rows)} cases, {len({(r['peer'], r['config']) for r in rows})} configurations"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"torch": torch.__version__, "rows": rows}, indent=1) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
