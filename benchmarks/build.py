"""Build time and trainable parameters of reference models (run: python benchmarks/build.py).

Each model is built ``--repeats`` times, interleaved (round-robin) so machine
noise hits every row alike; the table gives the median, the ratio to ResNet-20
and the time per layer. Sessions are cleared between builds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from reskeras import build_model  # noqa: E402

MODELS = ["resnet20", "resnet56", "resnet110", "resnet1202", "resnet50", "resnet152"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=MODELS)
    args = parser.parse_args()

    times = {name: [] for name in args.models}
    info = {}
    for _ in range(args.repeats):
        for name in args.models:
            keras.backend.clear_session()
            start = time.perf_counter()
            model = build_model(name)
            times[name].append(time.perf_counter() - start)
            info[name] = (len(model.layers),
                          sum(int(np.prod(v.shape)) for v in model.trainable_weights))
            del model

    base = statistics.median(times[args.models[0]])
    print(f"{'model':<12} {'layers':>7} {'trainable params':>17} {'median s':>9} "
          f"{'min s':>7} {'x ' + args.models[0]:>12} {'ms/layer':>9}")
    for name in args.models:
        median = statistics.median(times[name])
        layers, params = info[name]
        print(f"{name:<12} {layers:>7} {params:>17,} {median:>9.2f} {min(times[name]):>7.2f} "
              f"{median / base:>12.1f} {1000 * median / layers:>9.2f}")
    print(f"({args.repeats} interleaved repeats; keras {keras.__version__})")


if __name__ == "__main__":
    main()
