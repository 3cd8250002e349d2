"""What the test fixture's ``clear_session()`` costs once models are alive (run: python
benchmarks/clear_session.py [--models 30] [--repeats 15]).

tests/conftest.py clears Keras's state before and after every test. With its default
``free_memory=True``, ``keras.backend.clear_session()`` runs a full garbage collection, whose
cost grows with the objects alive in the process (the suite's session fixtures keep models).
This builds ``--models`` ResNet-20s, keeps them alive, and times the two forms and a bare
``gc.collect()`` in interleaved rounds, so noise hits every row alike; the table gives medians.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

import reskeras  # first: it turns on oneDNN
from reskeras._backend import keras

from machine import cpu_model  # benchmarks/machine.py


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    gc.freeze()  # as tests/conftest.py does after importing TensorFlow
    alive = [reskeras.build_resnet(20, input_shape=(8, 8, 1), classes=10)
             for _ in range(args.models)]
    variants = {"clear_session()": keras.backend.clear_session,
                "clear_session(free_memory=False)":
                    lambda: keras.backend.clear_session(free_memory=False),
                "gc.collect()": gc.collect}
    times = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, call in variants.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    print(f"CPU: {cpu_model()}; {len(alive)} ResNet-20s alive, {args.repeats} rounds")
    print("| call | median ms | ratio to free_memory=False |")
    print("|---|---:|---:|")
    base = statistics.median(times["clear_session(free_memory=False)"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| `{name}` | {median * 1e3:.2f} | {median / base:.0f}x |")


if __name__ == "__main__":
    main()
