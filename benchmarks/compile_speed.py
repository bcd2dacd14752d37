"""How fast mtlc checks and compiles: wall time of the real commands, in fresh processes.

    .venv/bin/python benchmarks/compile_speed.py [--rounds N]

Measures, as a user waits for them (interpreter start included):
- ``mtlc check specs/mmoe.mtl``, alternating with the same run under
  ``MTLC_GRAMMAR_CACHE=0`` (the parser's LALR tables built afresh, as before
  they were cached);
- ``mtlc compile big.mtl -o big.py`` on a generated 200-statement spec;
- ``python -c pass``, the floor that interpreter start alone costs;
and, in process, ``compile_spec`` on the 200-statement spec (no start-up).
Prints the median and the range over ``--rounds`` runs of each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_SCRIPT = Path(sys.executable).with_name("mtlc")  # the console script, as a user runs it
MTLC = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "mtlc"]


def big_spec(features: int = 80, groups: int = 15, experts: int = 30, heads: int = 25) -> str:
    """A valid spec of ``features + groups + experts + 3 * heads`` statements (200 by default)."""
    lines = ['model Big "A generated spec for timing the compiler"', ""]
    sparse = features * 3 // 4
    for i in range(sparse):
        lines.append(f"feature f{i} : sparse(vocab=1_000, dim=8)")
    for i in range(features - sparse):
        lines.append(f"feature d{i} : dense")
    names = [f"f{i}" for i in range(sparse)] + [f"d{i}" for i in range(features - sparse)]
    for g in range(groups):
        members = [names[(g * 7 + k) % len(names)] for k in range(8)]
        lines.append(f"group g{g} = [{', '.join(dict.fromkeys(members))}]")
    for e in range(experts):
        lines.append(f"expert e{e} x2 = mlp(g{e % groups}, [32, 16])")
    for h in range(heads):
        lines.append(
            f"gate k{h} = softmax(g{h % groups}) over [e{h % experts}, e{(h + 1) % experts}]"
        )
    for h in range(heads):
        lines.append(f"tower t{h} = mlp(k{h}, [8])")
    for h in range(heads):
        lines.append(f"task y{h} : binary(label=c{h}) = t{h}")
    return "\n".join(lines) + "\n"


def wall(command: list[str], rounds: int, **env: str) -> list[float]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run(
            command, check=True, capture_output=True, cwd=ROOT, env={**os.environ, **env}
        )
        times.append(time.perf_counter() - start)
    return times


def wall_paired(command: list[str], rounds: int, **env: str) -> tuple[list[float], list[float]]:
    """``command`` as is and with ``env``, run alternately, so both see the same machine load."""
    plain, changed = [], []
    for _ in range(rounds):
        plain += wall(command, 1)
        changed += wall(command, 1, **env)
    return plain, changed


def in_process(source: str, rounds: int) -> list[float]:
    from mtlc import compile_spec

    compile_spec(source, "big.mtl")  # warm: grammar and templates load once
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        compile_spec(source, "big.mtl")
        times.append(time.perf_counter() - start)
    return times


def line(label: str, times: list[float]) -> str:
    return (
        f"{label:<44} median {statistics.median(times) * 1000:7.1f} ms"
        f"  (min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}, n={len(times)})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average before: {load} on {os.cpu_count()} CPUs")
    source = big_spec()
    statements = sum(1 for s in source.splitlines() if s and not s.startswith("model"))
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "big.mtl"
        spec.write_text(source)
        print(
            line(
                "python -c pass (interpreter start)",
                wall([sys.executable, "-c", "pass"], args.rounds),
            )
        )
        cached, uncached = wall_paired(
            MTLC + ["check", "specs/mmoe.mtl"], args.rounds, MTLC_GRAMMAR_CACHE="0"
        )
        print(line("mtlc check specs/mmoe.mtl", cached))
        print(line("  the same, LALR tables not cached", uncached))
        print(
            line(
                f"mtlc compile big.mtl ({statements} statements)",
                wall(MTLC + ["compile", str(spec), "-o", str(Path(tmp) / "big.py")], args.rounds),
            )
        )
    print(
        line(f"compile_spec in process ({statements} statements)", in_process(source, args.rounds))
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
