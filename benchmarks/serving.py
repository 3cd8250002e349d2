"""What an exported SavedModel costs and saves at serving time (run: python benchmarks/serving.py).

For ResNet-20 (32x32x3, 10 classes) and the digits ResNet-20 (8x8x1; both
with random weights, exported with ``export.export_savedmodel`` from a Keras
model and the preprocessing record of their data), measured side by side in
one run:

- steady-state latency of the loaded SavedModel's ``serving_default`` at batch
  1 and 64, against calling the Keras model directly on the same uint8 batch
  with the same preprocessing (``model(normalize(x), training=False)``, eager,
  and ``model.predict_on_batch``, a compiled ``tf.function``), in interleaved
  rounds, medians;
- first-call latency in a fresh ``python -I`` process after
  ``tf.saved_model.load``, with and without first replaying the export's
  ``assets.extra/tf_serving_warmup_requests`` (what TF Serving does when a
  version loads), alternating the two, medians;
- SavedModel size on disk (graph + variables, without ``assets``/``assets.extra``)
  against the parameter bytes (every weight, float32).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from reskeras import build_resnet  # noqa: E402  (first: it turns on oneDNN)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from export import export_savedmodel  # noqa: E402
from reskeras.data import load_dataset  # noqa: E402
from reskeras.preprocessing import make_preprocessing, mean_of_scaled, normalize  # noqa: E402

FIRST_CALL = r"""
import json, sys, time
start = time.perf_counter()
import tensorflow as tf
imported = time.perf_counter()
path, warm, batch = sys.argv[1], sys.argv[2] == "warm", int(sys.argv[3])
loaded = tf.saved_model.load(path)
serve = loaded.signatures["serving_default"]
loaded_at = time.perf_counter()
replayed = 0
if warm:  # what TF Serving does at load: replay each PredictionLog through its signature
    from tensorflow_serving.apis import prediction_log_pb2
    for record in tf.data.TFRecordDataset(path + "/assets.extra/tf_serving_warmup_requests"):
        request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        loaded.signatures[request.model_spec.signature_name](**inputs)
        replayed += 1
warmed = time.perf_counter()
images = tf.constant(json.loads(sys.argv[4]), tf.uint8)
t0 = time.perf_counter()
serve(images=images)["probabilities"].numpy()
first = time.perf_counter() - t0
t0 = time.perf_counter()
serve(images=images)["probabilities"].numpy()
second = time.perf_counter() - t0
print(json.dumps({"import": imported - start, "load": loaded_at - imported,
                  "warmup": warmed - loaded_at, "records": replayed, "first": first,
                  "second": second}))
"""


def _median_ms(values) -> float:
    return 1000 * statistics.median(values)


def _export(model, preprocessing, base: str, name: str) -> str:
    return export_savedmodel(model, base, name, preprocessing=preprocessing, verify=False).path


def _steady_state(model, preprocessing, serve, images, repeats: int) -> dict:
    calls = {
        "savedmodel": lambda: serve(images=tf.constant(images))["probabilities"].numpy(),
        "keras_eager": lambda: model(normalize(images, preprocessing), training=False).numpy(),
        "keras_predict_on_batch": lambda: model.predict_on_batch(normalize(images, preprocessing)),
    }
    for call in calls.values():  # traces and caches outside the timed rounds
        call(), call()
    times = {key: [] for key in calls}
    for _ in range(repeats):
        for key, call in calls.items():
            start = time.perf_counter()
            call()
            times[key].append(time.perf_counter() - start)
    return {key: _median_ms(values) for key, values in times.items()}


def _first_calls(path: str, images: np.ndarray, repeats: int) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    results = {"cold": [], "warm": []}
    for _ in range(repeats):
        for mode in ("cold", "warm"):
            out = subprocess.run([sys.executable, "-I", "-c", FIRST_CALL, path, mode,
                                  str(len(images)), json.dumps(images.tolist())],
                                 capture_output=True, text=True, env=env, check=True)
            results[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {mode: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
            for mode, runs in results.items()}


def _sizes(path: str, model) -> tuple[int, int]:
    on_disk = os.path.getsize(os.path.join(path, "saved_model.pb"))
    for root, _, files in os.walk(os.path.join(path, "variables")):
        on_disk += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    params = sum(int(np.prod(w.shape)) for w in model.weights) * 4
    return on_disk, params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="interleaved latency rounds")
    parser.add_argument("--fresh-repeats", type=int, default=3,
                        help="fresh processes per first-call variant")
    args = parser.parse_args()

    digits = load_dataset("digits")
    rng = np.random.default_rng(0)
    cifar_like = rng.integers(0, 256, (256, 32, 32, 3), dtype=np.uint8)
    cases = [
        ("resnet20 32x32x3", "resnet20_cifar", build_resnet(20, input_shape=(32, 32, 3), classes=10),
         make_preprocessing(mean_of_scaled(cifar_like), augment="pad_crop_flip", pad=4),
         cifar_like),
        ("resnet20 digits 8x8x1", "resnet20_digits", build_resnet(20, input_shape=(8, 8, 1), classes=10),
         digits.info.preprocessing, digits.arrays("test")[0]),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as base:
        for label, name, model, preprocessing, pool in cases:
            path = _export(model, preprocessing, base, name)
            serve = tf.saved_model.load(path).signatures["serving_default"]
            for batch in (1, 64):
                images = pool[:batch]
                ms = _steady_state(model, preprocessing, serve, images, args.repeats)
                base_ms = ms["savedmodel"]
                for key, value in ms.items():
                    rows.append((label, f"batch {batch}: {key} (ms)", f"{value:.2f}",
                                 f"{value / base_ms:.2f}"))
            first = _first_calls(path, pool[:1], args.fresh_repeats)
            cold, warm = first["cold"], first["warm"]
            rows += [
                (label, "fresh process: load (ms)", f"{1000 * cold['load']:.0f}", ""),
                (label, f"fresh process: warmup replay, {int(warm['records'])} records (ms)",
                 f"{1000 * warm['warmup']:.0f}", ""),
                (label, "fresh process: first call, no warmup (ms)",
                 f"{1000 * cold['first']:.1f}", f"{cold['first'] / cold['second']:.1f}"),
                (label, "fresh process: first call after warmup (ms)",
                 f"{1000 * warm['first']:.1f}", f"{warm['first'] / warm['second']:.1f}"),
                (label, "first call: no warmup / after warmup", "",
                 f"{cold['first'] / warm['first']:.1f}"),
            ]
            on_disk, params = _sizes(path, model)
            rows.append((label, "SavedModel bytes (graph + variables) / parameter bytes",
                         f"{on_disk:,} / {params:,}", f"{on_disk / params:.2f}"))
    print("| model | measurement | value | ratio |")
    print("| --- | --- | ---: | ---: |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nratio: latency rows / SavedModel at the same batch; first-call rows / the second "
          f"call in the same process; {args.repeats} interleaved rounds, "
          f"{args.fresh_repeats} fresh processes per variant; TensorFlow {tf.__version__}")


if __name__ == "__main__":
    main()
