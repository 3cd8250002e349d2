"""Precise BatchNorm statistics: what they change and what they cost (python benchmarks/precise_bn.py).

For each net and budget, one ``reskeras train`` run with ``precise_bn=True`` on the digits
(the study's augmentation, batch 128, Adam 1e-3, seed ``--seed``), then:

- training error (training split, no augmentation) with the moving averages (``ema``, the
  last checkpoint), in training mode with batch statistics (``batch``) and with precise
  statistics (``precise``, ``model.keras``); test error ``ema`` and ``precise``;
- the seconds precise BN took inside the trainer (``summary.json["precise_bn"]["seconds"]``:
  one epoch of training-mode passes, tracing included, and one test pass) against the
  seconds of training (``summary.json["seconds"]``), and their ratio.

Each run is one sample: the table reports what one run measured, not a median; the cost
ratio compares two parts of the same run on the same machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import reskeras  # noqa: E402,F401  (first: it turns on oneDNN)

from reskeras import rundir  # noqa: E402
from reskeras._backend import keras  # noqa: E402
from reskeras.data import load_dataset  # noqa: E402
from reskeras.study.measures.training_error import split_errors  # noqa: E402
from reskeras.train import TrainConfig, checkpoint_model, train  # noqa: E402

from machine import cpu_model  # noqa: E402  (benchmarks/machine.py)



def measure(model: str, steps: int, seed: int, root: str) -> dict:
    out = os.path.join(root, f"{model}-{steps}-s{seed}")
    train(TrainConfig(out=out, model=model, dataset="digits", steps=steps, batch_size=128,
                      recipe="adam", seed=seed, precise_bn=True, verbose=0))
    summary = rundir.read_summary(out)
    saved = keras.models.load_model(rundir.path(out, rundir.MODEL), compile=False)
    errors = split_errors(checkpoint_model(out), saved, load_dataset("digits"),
                          batch_size=summary["precise_bn"]["batch_size"])
    return {"model": model, "steps": steps, **errors,
            "precise_seconds": summary["precise_bn"]["seconds"],
            "train_seconds": summary["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["plain20", "plain56", "resnet56"])
    parser.add_argument("--steps", type=int, nargs="+", default=[88, 1408])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; digits, batch 128, Adam 1e-3, "
          f"seed {args.seed}")
    header = ("| net | steps | train error: EMA | batch | precise | gap (points) "
              "| test error: EMA | precise | precise BN s | training s | ratio |")
    print(header)
    print("|" + " --- |" * 11)
    with tempfile.TemporaryDirectory() as root:
        for steps in args.steps:
            for model in args.models:
                row = measure(model, steps, args.seed, root)
                train_e, test_e = row["train"], row["test"]
                print(f"| {model} | {steps} | {100 * train_e['ema']:.1f}% "
                      f"| {100 * train_e['batch']:.1f}% | {100 * train_e['precise']:.1f}% "
                      f"| {row['bn_statistics_gap']:+.1f} | {100 * test_e['ema']:.1f}% "
                      f"| {100 * test_e['precise']:.1f}% | {row['precise_seconds']:.2f} "
                      f"| {row['train_seconds']:.1f} "
                      f"| {row['precise_seconds'] / row['train_seconds']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
