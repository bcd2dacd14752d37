"""Training-step speed of generated models against NextRec 0.6.14 and torch-rechub 0.9.0, on CPU.

    .venv/bin/python benchmarks/train_speed.py          # full run (~12 min on 2 cores)
    .venv/bin/python benchmarks/train_speed.py --quick  # < 1 min: MMoE and PLE, batch 256 and 2048
    .venv/bin/python benchmarks/train_speed.py --archs hmoe poso poso_mmoe pepnet --batches 256 2048
    .venv/bin/python benchmarks/train_speed.py --archs apg --batches 256 2048 --lazy
    .venv/bin/python benchmarks/train_speed.py --archs dcnv2 cross_stitch snr_trans --batches 2048

For each architecture (ShareBottom, MMoE, PLE, ESMM, AITM; HMoE, POSO in its
MLP and MMoE forms, PEPNet, APG, Cross-Stitch, SNR-Trans and DCNv2, against
NextRec only) of the configuration of ``peers.Config`` and each batch size,
the contenders run one training step (forward, loss, backward, optimizer step)
on a fixed synthetic batch, in
rounds: every round runs ``--steps`` steps of each contender in turn (the order
rotates), so that load from other processes falls on all of them alike.
Reported: samples/s (median and range over rounds) and the ratio to NextRec
(median and range of the per-round ratios). Contenders:

- ``mtlc``: the generated model of the spec (NextRec's architecture), trained
  by ``mtlc.runtime.Trainer``'s step; ``mtlc_bn``: the same with
  ``norm=batch`` in every mlp, torch-rechub's form (compare it with rechub);
- ``nextrec``, ``rechub``: the peers' models and training-loop bodies (``peers.py``;
  torch-rechub has no HMoE, POSO, PEPNet or APG: for those, no ``rechub`` nor ``mtlc_bn``);
- ``mtlc_lazy`` (with ``--lazy``): mtlc with ``optimizer="lazy_adam"``, a
  different algorithm, reported apart.

Optimizers: ``own`` gives each library its default (mtlc: fused Adam; NextRec:
``Adam(lr=1e-3)``; torch-rechub: ``Adam(lr=1e-3, weight_decay=1e-5)``);
``adam`` gives all of them ``torch.optim.Adam(params)`` with default settings,
so the model code is judged apart from the step. The matmul floor of a step is
its matmul FLOPs (``FlopCounterMode``, forward and backward) over the sgemm rate
measured in each round at the step's shapes. mtlc's optimizer step is also timed
alone, and the "ceiling" is NextRec's step time over (floor + that optimizer
time): the ratio mtlc would reach if everything but the matmuls and its
optimizer cost nothing.

``--device cuda`` runs every contender on the GPU in float32 (synchronising
before each timer read); it has not been run yet, for want of a GPU.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402
from peers import ARCHITECTURES, CONFIG, RECHUB_ARCHITECTURES, Config  # noqa: E402

TITLES = {
    "share_bottom": "ShareBottom",
    "mmoe": "MMoE",
    "ple": "PLE",
    "esmm": "ESMM",
    "aitm": "AITM",
    "hmoe": "HMoE",
    "poso": "POSO",
    "poso_mmoe": "POSOMMoE",
    "pepnet": "PEPNet",
    "apg": "APG",
    "cross_stitch": "CrossStitch",
    "snr_trans": "SNRTrans",
    "dcnv2": "DCNv2",
}


# -- the mtlc side -------------------------------------------------------------------------------


def mtlc_spec(config: Config, arch: str, norm: str = "none") -> str:
    """The benchmark spec of ``arch``: NextRec's architecture at the sizes of ``config``."""
    opt = f", norm={norm}" if norm != "none" else ""
    experts, towers = list(config.expert_dims), list(config.tower_dims)
    lines = [f'model {TITLES[arch]} "{TITLES[arch]} of the training-speed benchmark"', ""]
    lines += [
        f"feature {name} : sparse(vocab={vocab}, dim={config.dim})"
        for name, vocab in config.vocabs.items()
    ]
    lines += [f"feature {name} : dense" for name in config.dense]
    lines += ["", f"group all = [{', '.join([*config.vocabs, *config.dense])}]", ""]
    mlp = lambda x, dims: f"mlp({x}, {dims}{opt})"  # noqa: E731
    tasks = config.tasks(arch)
    if arch == "share_bottom":
        lines.append(f"tower bottom = {mlp('all', experts)}")
        lines += [f"tower {t}_net = {mlp('bottom', towers)}" for t in tasks]
    elif arch == "mmoe":
        lines.append(f"expert shared x{config.num_experts} = {mlp('all', experts)}")
        lines += [f"gate {t}_gate = softmax(all) over [shared]" for t in tasks]
        lines += [f"tower {t}_net = {mlp(f'{t}_gate', towers)}" for t in tasks]
    elif arch == "ple":
        lines += _ple_levels(config, mlp)
        lines += [f"tower {t}_net = {mlp(f'{t}_g{config.ple_levels}', towers)}" for t in tasks]
    elif arch == "esmm":
        lines += [
            f"tower ctr_net = {mlp('all', experts)}",
            f"tower cvr_net = {mlp('all', experts)}",
            "",
            "task click : binary(label=click) = ctr_net",
            "task cvr : binary = cvr_net",
            "task ctcvr : binary(label=buy) = click * cvr",
        ]
        return "\n".join(lines) + "\n"
    elif arch == "hmoe":  # MMoE, then each task mixes every tower: its own live, the rest stopped
        lines.append(f"expert shared x{config.num_experts} = {mlp('all', experts)}")
        lines += [f"gate {t}_gate = softmax(all) over [shared]" for t in tasks]
        lines += [f"tower {t}_net = {mlp(f'{t}_gate', towers)}" for t in tasks]
        for t in tasks:
            over = ", ".join(f"{u}_net" if u == t else f"stopgrad({u}_net)" for u in tasks)
            lines.append(f"gate {t}_fused = softmax(all) over [{over}]")
        lines.append("")
        lines += [f"task {t} : binary(label={t}) = {t}_fused" for t in tasks]
        return "\n".join(lines) + "\n"
    elif arch in ("poso", "poso_mmoe"):
        lines += _poso(config, arch, mlp)
        last = "g" + str(len(config.deep_dims)) if arch == "poso" else "net"
        lines += [f"task {t} : binary(label={t}) = {t}_{last}" for t in tasks]
        return "\n".join(lines) + "\n"
    elif arch == "pepnet":
        lines += _pepnet(config, mlp)
        last = len(config.deep_dims)
        lines += [f"task {t} : binary(label={t}) = {t}_g{last}" for t in tasks]
        return "\n".join(lines) + "\n"
    elif arch == "apg":
        lines += _apg(config)
        lines += [f"task {t} : binary(label={t}) = shared" for t in tasks]
        return "\n".join(lines) + "\n"
    elif arch == "cross_stitch":  # one column per task, a unit per task after each layer
        inputs = ["all"] * len(tasks)
        for level, width in enumerate(experts, start=1):
            lines += [f"tower {t}_h{level} = {mlp(x, [width])}" for t, x in zip(tasks, inputs)]
            columns = ", ".join(f"{t}_h{level}" for t in tasks)
            lines += [
                f"gate {t}_s{level} = cross_stitch({t}_h{level}) over [{columns}]" for t in tasks
            ]
            inputs = [f"{t}_s{level}" for t in tasks]
        lines += [f"tower {t}_net = {mlp(x, towers)}" for t, x in zip(tasks, inputs)]
    elif arch == "snr_trans":  # a pool, then per layer a gate per route and a tower per route
        routes = [f"r{e}" for e in range(config.num_experts)]
        lines.append(f"expert e1 x{config.num_experts} = {mlp('all', experts[:1])}")
        columns = ["e1"]
        for level, width in enumerate(experts[1:], start=2):
            over = ", ".join(columns)
            lines += [f"gate {r}_g{level - 1} = snr() over [{over}]" for r in routes]
            lines += [f"tower {r}_e{level} = {mlp(f'{r}_g{level - 1}', [width])}" for r in routes]
            columns = [f"{r}_e{level}" for r in routes]
        lines += [f"gate {t}_in = snr() over [{', '.join(columns)}]" for t in tasks]
        lines += [f"tower {t}_net = {mlp(f'{t}_in', towers)}" for t in tasks]
    elif arch == "dcnv2":  # NextRec's CrossNetV2 adds the bias outside (the paper: inside)
        layers = config.cross_layers
        lines.append(f"tower crossed = cross(all, layers={layers}, form=matrix, bias=outside)")
        lines += [f"tower deep = {mlp('all', experts)}", "", "group both = [crossed, deep]", ""]
        lines += [f"task {t} : binary(label={t}) = both" for t in tasks]
        return "\n".join(lines) + "\n"
    elif arch == "aitm":
        lines.append(f"tower {tasks[0]}_in = {mlp('all', experts)}")
        lines += [f"tower {t}_raw = {mlp('all', experts)}" for t in tasks[1:]]
        # NextRec's attention has Q/K/V biases (the paper's has none)
        lines += [
            f"transfer {t}_in = ait({t}_raw, from={p}_in, bias=true)"
            for p, t in zip(tasks, tasks[1:])
        ]
        lines += [f"tower {t}_net = {mlp(f'{t}_in', towers)}" for t in tasks]
    lines.append("")
    lines += [f"task {t} : binary(label={t}) = {t}_net" for t in tasks]
    if arch == "aitm":  # NextRec: alpha * mean over the pairs of mean(relu(p_next - p_prev))
        weight = config.aitm_alpha / (len(tasks) - 1)
        lines += [f"constrain {t} <= {p} weight {weight:g}" for p, t in zip(tasks, tasks[1:])]
    return "\n".join(lines) + "\n"


def _ple_levels(config: Config, mlp) -> list[str]:
    """PLE levels as NextRec builds them.

    Task gates over [shared, own], the shared gate over [specific..., shared].
    """
    tasks, lines = config.tasks("ple"), []
    dims = list(config.expert_dims)
    for level in range(1, config.ple_levels + 1):
        last = level == config.ple_levels
        shared_in = "all" if level == 1 else f"shared_g{level - 1}"
        lines.append(f"expert shared{level} x{config.ple_shared} = {mlp(shared_in, dims)}")
        for t in tasks:
            task_in = "all" if level == 1 else f"{t}_g{level - 1}"
            lines.append(f"expert {t}{level} x{config.ple_specific} = {mlp(task_in, dims)}")
        for t in tasks:
            task_in = "all" if level == 1 else f"{t}_g{level - 1}"
            lines.append(f"gate {t}_g{level} = softmax({task_in}) over [shared{level}, {t}{level}]")
        if not last:
            sources = ", ".join([f"{t}{level}" for t in tasks] + [f"shared{level}"])
            lines.append(f"gate shared_g{level} = softmax({shared_in}) over [{sources}]")
        lines.append("")
    return lines


def _poso(config: Config, arch: str, mlp) -> list[str]:
    """POSO as NextRec builds it: sigmoid gates on the personalisation group ``pc``.

    ``poso``: per task, every layer of its network then a gate; ``poso_mmoe``:
    each expert gated, then MMoE's softmax gates and towers.
    """
    gate = f"sigmoid(pc, hidden=[{config.poso_gate_hidden}], scale={config.poso_scale:g})"
    lines = [f"group pc = [{', '.join(config.in_concat_order(config.poso_pc))}]", ""]
    tasks = config.tasks(arch)
    if arch == "poso_mmoe":
        lines.append(
            f"expert shared x{config.num_experts} = {mlp('all', list(config.expert_dims))}"
        )
        lines.append(f"gate shared_pc = {gate} over [shared]")
        lines += [f"gate {t}_gate = softmax(all) over [shared_pc]" for t in tasks]
        lines += [f"tower {t}_net = {mlp(f'{t}_gate', list(config.tower_dims))}" for t in tasks]
        return [*lines, ""]
    for t in tasks:
        source = "all"
        for k, width in enumerate(config.deep_dims, start=1):
            lines.append(f"tower {t}_h{k} = {mlp(source, [width])}")
            lines.append(f"gate {t}_g{k} = {gate} over [{t}_h{k}]")
            source = f"{t}_g{k}"
        lines.append("")
    return lines


def _pepnet(config: Config, mlp) -> list[str]:
    """PEPNet as NextRec builds it.

    EPNet scales the input by a gate on [stopgrad(all), stopgrad(domain)]; each
    task's PPNet scales the input of each of its layers (the head's included, scale 1)
    by a gate, as wide inside as what it scales, on the priors and EPNet's output, all
    through stopgrad.
    """
    stop = lambda names: ", ".join(f"stopgrad({n})" for n in names)  # noqa: E731
    domain = config.in_concat_order(config.pepnet_domain)
    priors = domain + [
        *config.in_concat_order(config.pepnet_user),
        *config.in_concat_order(config.pepnet_item),
    ]
    hidden = config.pepnet_feature_gate_hidden
    lines = [
        f"group ep_in = [{stop(['all', *domain])}]",
        f"gate epnet = sigmoid(ep_in, hidden=[{hidden}], scale=2) over [all]",
        f"group pp_in = [{stop([*priors, 'epnet'])}]",
        "",
    ]
    widths = [config.width, *config.deep_dims]
    for t in config.tasks("pepnet"):
        source = "epnet"
        for k, width in enumerate(widths):
            scale = ", scale=2" if k < len(widths) - 1 else ""
            lines.append(f"gate {t}_g{k} = sigmoid(pp_in, hidden=[{width}]{scale}) over [{source}]")
            if k < len(widths) - 1:
                lines.append(f"tower {t}_h{k + 1} = {mlp(f'{t}_g{k}', [widths[k + 1]])}")
                source = f"{t}_h{k + 1}"
        lines.append("")
    return lines


def _apg(config: Config) -> list[str]:
    """APG as NextRec builds it: one stack ``deep_dims`` wide on all features, by the scene.

    The scene is read through stopgrad (NextRec's ``detach_scene``), and each layer
    ``n -> m`` has NextRec's rank ``ceil(min(n, m) / mf_k)``, written out; each task's
    head reads the stack.
    """
    scene = ", ".join(f"stopgrad({n})" for n in config.in_concat_order(config.apg_scene))
    widths = [config.width, *config.deep_dims]
    ranks = [-(-min(n, m) // config.apg_mf_k) for n, m in zip(widths, widths[1:])]
    return [
        f"group scene_in = [{scene}]",
        "",
        f"tower shared = apg(all, {list(config.deep_dims)}, by=scene_in, rank={ranks})",
        "",
    ]


def mtlc_model(config: Config, arch: str, norm: str = "none") -> type[nn.Module]:
    """Compile the benchmark spec of ``arch`` and load its class."""
    return _load_spec(mtlc_spec(config, arch, norm), f"bench_{arch}_{norm}.mtl")


@functools.cache
def _load_spec(source: str, filename: str) -> type[nn.Module]:
    import mtlc

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / filename
        path.write_text(source)
        return mtlc.load_model(path)


def mtlc_step(
    model_class: type[nn.Module],
    inputs,
    labels,
    optimizer: str | None = None,
    same_adam: bool = False,
    device: str = "cpu",
) -> tuple[nn.Module, peers.Step, peers.Step]:
    """One step of ``mtlc.runtime.Trainer``.

    With its own optimizer, or ``torch.optim.Adam()`` if ``same_adam``. Returns the model, the
    step, and the optimizer's step alone (on the gradients the last step left). On CUDA the
    step runs in float32 (``bf16=False``), the peers' precision.
    """
    from mtlc.runtime.batches import Batch
    from mtlc.runtime.trainer import TrainConfig, Trainer

    config = TrainConfig(optimizer=optimizer or "adam", progress=False, device=device, bf16=False)
    trainer = Trainer(model_class, config, log=lambda _: None)
    if same_adam:
        trainer.optimizer = peers.same_adam(
            [*trainer.model.parameters(), *trainer.loss.parameters()]
        )
    tasks = type(trainer.model).tasks.values()
    by_task = {t.name: labels[t.label] for t in tasks if t.label is not None}
    size = len(next(iter(labels.values())))
    masks = {name: torch.ones(size, dtype=torch.bool, device=device) for name in by_task}
    batch = Batch(dict(inputs), by_task, masks, size, size)

    def step() -> float:
        total, _ = trainer._step(batch)
        return float(total)

    def optimizer_step() -> float:
        trainer.optimizer.step()
        return 0.0

    trainer.model.train()
    return trainer.model, step, optimizer_step


# -- contenders, rounds, floors ------------------------------------------------------------------


@dataclass
class Contender:
    """One model trained one way; ``step`` closes over one batch."""

    name: str
    model: nn.Module
    step: peers.Step
    optimizer_step: peers.Step | None = None  # mtlc: the optimizer alone, timed apart
    seconds: list[float] = field(default_factory=list)
    optimizer_seconds: list[float] = field(default_factory=list)
    flops: int = 0


def contenders(
    config: Config,
    arch: str,
    optimizer: str,
    size: int,
    names: tuple[str, ...],
    device: str = "cpu",
) -> list[Contender]:
    """Build every contender of one cell, each on the same synthetic batch, warmed up."""
    inputs, labels = peers.synthetic_batch(config, arch, size, device=device)
    same = peers.same_adam if optimizer == "adam" else None
    built = []
    for name in names:
        torch.manual_seed(0)
        optimizer_step = None
        if name.startswith("mtlc"):
            norm = "batch" if name == "mtlc_bn" else "none"
            lazy = "lazy_adam" if name == "mtlc_lazy" else "adam"
            model, step, optimizer_step = mtlc_step(
                mtlc_model(config, arch, norm), inputs, labels, lazy, same is not None, device
            )
        elif name == "nextrec":
            model = peers.nextrec_model(config, arch, device)
            step = peers.nextrec_step(model, inputs, labels, same)
        else:
            model = peers.rechub_model(config, arch)
            step = peers.rechub_step(model, inputs, labels, same, device)
        built.append(Contender(name, model, step, optimizer_step))
    for contender in built:
        contender.step()
        contender.flops = matmul_flops(contender.step)
        contender.step()
    return built


def matmul_flops(step: peers.Step) -> int:
    """Matmul FLOPs of one training step (forward and backward; the optimizer has none)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def sgemm_rate(config: Config, size: int, reps: int = 3, device: str = "cpu") -> float:
    """FLOP/s of fp32 matmuls at the step's shapes, forward and backward.

    The shapes: the first and second expert layers, a tower.
    """
    width = len(config.vocabs) * config.dim + len(config.dense)
    layers = [
        (width, config.expert_dims[0]),
        *zip(config.expert_dims, config.expert_dims[1:]),
        (config.expert_dims[-1], config.tower_dims[0]),
    ]
    flops, seconds = 0, 0.0
    for fan_in, fan_out in layers:
        x, w, g = (
            torch.randn(*shape, device=device)
            for shape in ((size, fan_in), (fan_out, fan_in), (size, fan_out))
        )
        products = [(x, w.t()), (g, w), (g.t(), x)]  # forward, grad of input, grad of weight
        for a, b in products:
            torch.mm(a, b)
            sync(device)
            start = time.perf_counter()
            for _ in range(reps):
                torch.mm(a, b)
            sync(device)
            seconds += time.perf_counter() - start
            flops += 2 * a.shape[0] * a.shape[1] * b.shape[1] * reps
    return flops / seconds


def sync(device: str) -> None:
    """Wait for the device's queued work (CUDA), so that a timer reads finished work."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_rounds(
    cell: list[Contender], rounds: int, steps: int, config: Config, size: int, device: str = "cpu"
) -> list[float]:
    """Time ``steps`` steps of each contender per round, rotating the order; return the sgemm rates.

    mtlc contenders also time their optimizer step alone (on the gradients of their last step).
    """
    rates = []
    for r in range(rounds):
        order = cell[r % len(cell) :] + cell[: r % len(cell)]
        for contender in order:
            sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                contender.step()
            sync(device)
            contender.seconds.append((time.perf_counter() - start) / steps)
            if contender.optimizer_step is not None:
                start = time.perf_counter()
                for _ in range(steps):
                    contender.optimizer_step()
                sync(device)
                contender.optimizer_seconds.append((time.perf_counter() - start) / steps)
        rates.append(sgemm_rate(config, size, device=device))
    return rates


def summarize(cell: list[Contender], rates: list[float], size: int) -> list[dict]:
    """Per contender: samples/s (median, min, max), per-round ratios to each peer.

    Also the step's and the floor's milliseconds.
    """
    rate = statistics.median(rates)
    rows = []
    for c in cell:
        per_s = [size / s for s in c.seconds]
        row = {
            "contender": c.name,
            "samples_s": statistics.median(per_s),
            "min": min(per_s),
            "max": max(per_s),
            "step_ms": 1e3 * statistics.median(c.seconds),
            "floor_ms": 1e3 * c.flops / rate,
            "gflop": c.flops / 1e9,
            "sgemm_gflop_s": rate / 1e9,
        }
        if c.optimizer_seconds:
            row["optimizer_ms"] = 1e3 * statistics.median(c.optimizer_seconds)
        for base in cell:
            if base.name in ("nextrec", "rechub"):
                ratios = [b / s for s, b in zip(c.seconds, base.seconds)]
                row[f"vs_{base.name}"] = [statistics.median(ratios), min(ratios), max(ratios)]
                if (
                    "optimizer_ms" in row
                ):  # the ratio if all but the matmuls and the optimizer cost nothing
                    lower = row["floor_ms"] + row["optimizer_ms"]
                    row[f"ceiling_vs_{base.name}"] = 1e3 * statistics.median(base.seconds) / lower
        rows.append(row)
    return rows


# -- the run -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("train_speed.py: --device cuda, but torch sees no CUDA device", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    wait_until_quiet(args.wait_quiet)
    if args.malloc == "keep":
        from mtlc.runtime.optim import keep_freed_memory

        keep_freed_memory()
    where = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"{args.threads} threads"
    )
    print(
        f"torch {torch.__version__}, {where}, malloc {args.malloc}, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        file=sys.stderr,
    )
    results = []
    for arch in args.archs:
        for optimizer in args.optimizers:
            names = [n for n in args.contenders if not (n == "mtlc_lazy" and optimizer == "adam")]
            if arch not in RECHUB_ARCHITECTURES:  # no torch-rechub model, so no rechub form
                names = [n for n in names if n not in ("rechub", "mtlc_bn")]
            for size in args.batches:
                cell = contenders(CONFIG, arch, optimizer, size, tuple(names), args.device)
                rates = run_rounds(cell, args.rounds, args.steps, CONFIG, size, args.device)
                load = round(os.getloadavg()[0], 2)
                for row in summarize(cell, rates, size):
                    results.append(
                        {"arch": arch, "optimizer": optimizer, "batch": size, "load": load, **row}
                    )
                print_cell(results[-len(cell) :])
                if args.json:  # after every cell, so that an interrupted run keeps what it measured
                    Path(args.json).write_text(json.dumps(results, indent=1))
                del cell
    print()
    print(markdown(results))
    print(headline(results))
    return 0


def wait_until_quiet(limit_s: float, load: float = 1.0) -> None:
    """Wait up to ``limit_s`` seconds for the 1-minute load average to fall below ``load``."""
    deadline = time.monotonic() + limit_s
    while os.getloadavg()[0] >= load and time.monotonic() < deadline:
        time.sleep(5)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="MMoE and PLE, batch 256 and 2048, own optimizers"
    )
    parser.add_argument("--archs", nargs="+", default=list(ARCHITECTURES), choices=ARCHITECTURES)
    parser.add_argument("--batches", nargs="+", type=int, default=[256, 2048, 8192])
    parser.add_argument("--optimizers", nargs="+", default=["own", "adam"], choices=["own", "adam"])
    parser.add_argument(
        "--contenders",
        nargs="+",
        default=["mtlc", "mtlc_bn", "nextrec", "rechub"],
        choices=["mtlc", "mtlc_bn", "mtlc_lazy", "nextrec", "rechub"],
    )
    parser.add_argument(
        "--lazy", action="store_true", help="add mtlc with lazy_adam (a different algorithm)"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2, help="steps per contender per round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--device",
        default="cpu",
        help="cpu (default) or cuda: every contender on that device, "
        "float32 (never run yet: no GPU was lent so far)",
    )
    parser.add_argument(
        "--malloc",
        choices=["keep", "default"],
        default="keep",
        help="keep: glibc keeps freed memory (mtlc.runtime.optim.keep_freed_memory), for every "
        "contender alike, as they share the process; default: glibc's defaults",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to SECONDS for the load average to fall below 1",
    )
    parser.add_argument("--json", help="also write every row to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.archs, args.batches, args.optimizers = ["mmoe", "ple"], [2048, 256], ["own"]
        args.contenders, args.rounds, args.steps = ["mtlc", "nextrec"], 5, 2
    if args.lazy and "mtlc_lazy" not in args.contenders:
        args.contenders.append("mtlc_lazy")
    return args


def print_cell(rows: list[dict]) -> None:
    """One progress line per contender of a finished cell (stderr keeps stdout for the tables)."""
    for r in rows:
        ratio = r.get("vs_nextrec", [float("nan")] * 3)
        print(
            f"{r['arch']:>12} {r['optimizer']:>4} B={r['batch']:<5} {r['contender']:>9}: "
            f"{r['samples_s']:>9.0f}/s  {r['step_ms']:7.1f} ms (floor {r['floor_ms']:5.1f})  "
            f"x{ratio[0]:.2f} nextrec",
            file=sys.stderr,
            flush=True,
        )


def markdown(results: list[dict]) -> str:
    """The results as one markdown table."""
    head = (
        "| arch | optimizer | batch | contender | samples/s (median) | min-max "
        "| vs NextRec [min-max] | vs rechub [min-max] | step ms | matmul floor ms "
        "| step / floor | optimizer ms | ceiling vs NextRec | load |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    fmt = lambda v: f"{v[0]:.2f} [{v[1]:.2f}-{v[2]:.2f}]" if v else "-"  # noqa: E731
    for r in results:
        lines.append(
            f"| {TITLES[r['arch']]} | {r['optimizer']} | {r['batch']} | {r['contender']} "
            f"| {r['samples_s']:,.0f} | {r['min']:,.0f}-{r['max']:,.0f} "
            f"| {fmt(r.get('vs_nextrec'))} "
            f"| {fmt(r.get('vs_rechub'))} | {r['step_ms']:.1f} | {r['floor_ms']:.1f} "
            f"| {r['step_ms'] / r['floor_ms']:.2f} | {num(r.get('optimizer_ms'), '.1f')} "
            f"| {num(r.get('ceiling_vs_nextrec'), '.2f')} | {r.get('load', float('nan')):.1f} |"
        )
    return "\n".join(lines)


def num(value: float | None, spec: str) -> str:
    """``value`` formatted, or ``-`` when it was not measured."""
    return "-" if value is None else format(value, spec)


def headline(results: list[dict]) -> str:
    """The speed-ups over NextRec, with the libraries' own optimizers, as one line.

    ``mmoe_b2048_vs_nextrec=X.XX ple_b2048_vs_nextrec=X.XX mmoe_b256_vs_nextrec=X.XX``
    """

    def ratio(arch: str, size: int) -> str:
        for r in results:
            if (r["arch"], r["batch"], r["optimizer"], r["contender"]) == (
                arch,
                size,
                "own",
                "mtlc",
            ):
                return f"{r['vs_nextrec'][0]:.2f}"
        return "n/a"

    return (
        f"mmoe_b2048_vs_nextrec={ratio('mmoe', 2048)} ple_b2048_vs_nextrec={ratio('ple', 2048)} "
        f"mmoe_b256_vs_nextrec={ratio('mmoe', 256)}"
    )


if __name__ == "__main__":
    sys.exit(main())
