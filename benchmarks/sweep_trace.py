"""A learning-rate sweep and a recipe's budgets: one trace for all runs, or one per run
(run: python benchmarks/sweep_trace.py [--depth 56] [--steps 88] [--rounds 2]).

The study sweeps five learning rates per swept net and trains the paper recipe at five
budgets, each with its own warmup and rate-drop steps. ``WarmupStepDecay(..., mutable=True)``
keeps the rate, the warmup and the drop steps in variables that the traced step reads, so
:class:`reskeras.trace_cache.TraceCache` serves all those runs with one trace. This trains
the same runs (the paper recipe on the digits, ``plainDEPTH`` with BN) two ways, interleaved
so that noise hits both alike: through one cache (the first run traces, the others reuse),
and with a fresh cache per run (every run traces: what each rate and budget paid before the
rates became variables). The table gives the median seconds per run after the first.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import reskeras  # first: it turns on oneDNN
from reskeras.trace_cache import TraceCache
from reskeras.train import TrainConfig, train

from machine import cpu_model  # benchmarks/machine.py

FACTORS = (1.0, 0.3, 0.1, 0.03, 0.01)  # the study's sweep (reskeras.study.cells)
BUDGET_FACTORS = (1, 2, 4)  # budgets of the paper recipe, in multiples of --steps


def _config(out, depth, steps, lr, seed):
    return TrainConfig(out=out, model=f"plain{depth}", dataset="digits", steps=steps,
                       batch_size=128, recipe="paper", lr=lr, seed=seed, verbose=0,
                       grad_norms_every=None, activations_every=None, precise_bn=False)


def _runs(kind, depth, steps):
    """(label, lr, steps) of each run of one group, in training order."""
    if kind == "rate sweep":
        return [(f"x{f:g}", 0.1 * f, steps) for f in FACTORS]
    return [(f"{b * steps} steps", 0.1, b * steps) for b in BUDGET_FACTORS]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=56)
    parser.add_argument("--steps", type=int, default=88)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    seconds = {}  # (group, mode) -> seconds of every run after the first
    with tempfile.TemporaryDirectory() as root:
        for round_ in range(args.rounds):
            for kind in ("rate sweep", "budgets"):
                for mode in ("one trace", "a trace per run"):
                    cache = TraceCache(max_entries=1)
                    for index, (label, lr, steps) in enumerate(_runs(kind, args.depth,
                                                                     args.steps)):
                        if mode == "a trace per run":
                            cache.clear()
                        out = f"{root}/{round_}-{kind}-{mode}-{label}".replace(" ", "_")
                        start = time.perf_counter()
                        train(_config(out, args.depth, steps, lr, seed=index), trace_cache=cache)
                        if index:
                            seconds.setdefault((kind, mode), []).append(
                                time.perf_counter() - start)
                    cache.clear()
    print(f"CPU: {cpu_model()}; plain{args.depth} (BN), paper recipe, digits, batch 128; "
          f"{args.rounds} rounds; rates x{', x'.join(f'{f:g}' for f in FACTORS)} at "
          f"{args.steps} steps; budgets {', '.join(str(b * args.steps) for b in BUDGET_FACTORS)}")
    print("| runs | one trace: median s per run after the first | a trace per run | ratio |")
    print("|---|---:|---:|---:|")
    for kind in ("rate sweep", "budgets"):
        shared = statistics.median(seconds[kind, "one trace"])
        own = statistics.median(seconds[kind, "a trace per run"])
        print(f"| {kind} | {shared:.1f} | {own:.1f} | {own / shared:.2f}x |")


if __name__ == "__main__":
    main()
