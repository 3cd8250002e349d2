"""The trainer on one device: run directory contents, callbacks, XLA, TFDS, bad input.

Multi-replica, multi-worker and kill/resume tests need separate processes and
live in test_train_distributed.py.
"""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from reskeras import rundir
from reskeras.recipes import learning_rate_at, make_plan
from reskeras.cli import main
from reskeras.data import load_dataset
from reskeras.preprocessing import normalize
from reskeras.train import TrainConfig, TrainingDiverged, build_run_model, train

RECORD_KEYS = {"step", "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"}


def small(out, **overrides):
    """ResNet-8 on digits, 2 epochs of 11 steps at batch 128, no XLA (fast compile)."""
    values = dict(out=str(out), model="resnet8", dataset="digits", epochs=2, recipe="adam",
                  jit_compile=False, verbose=0)
    values.update(overrides)
    return TrainConfig(**values)


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.calls = []

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin", self.params["run_dir"]))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch))

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("batch_end", batch, tuple(sorted(logs))))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, tuple(sorted(logs))))

    def on_train_end(self, logs=None):
        self.calls.append(("train_end",))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "r8"
    recorder = Recorder()
    keras.utils.set_random_seed(0)
    result = train(small(out, steps_per_execution=4), callbacks=[recorder])
    weights = [w.copy() for w in result.model.get_weights()]
    keras.backend.clear_session()
    return out, result, recorder, weights


def test_run_directory_holds_the_documented_files(finished_run):
    out, result, _, _ = finished_run
    assert result.status == "finished" and result.step == 22
    assert sorted(os.listdir(out)) == ["checkpoints", "config.json", "metrics.jsonl",
                                       "model.keras", "summary.json", "tensorboard"]
    records = rundir.read_metrics(str(out))
    assert [r["epoch"] for r in records] == [1, 2] and [r["step"] for r in records] == [11, 22]
    assert all(set(r) == RECORD_KEYS for r in records)
    assert records == result.history
    summary = rundir.read_summary(str(out))
    assert summary["status"] == "finished" and summary["final"] == records[-1]


def test_config_json_rebuilds_the_model_and_records_preprocessing(finished_run):
    out, _, _, weights = finished_run
    config = rundir.read_config(str(out))
    assert config["arch"]["depths"] == [1, 1, 1] and config["model_name"] == "resnet8"
    assert config["input_shape"] == [8, 8, 1] and config["classes"] == 10
    assert config["training"]["total_steps"] == 22 and config["training"]["batch_size"] == 128
    mean = np.asarray(config["preprocessing"]["mean"])
    assert mean.shape == (8, 8, 1) and 0 < mean.mean() < 1
    rebuilt = build_run_model(config)
    assert [w.shape for w in rebuilt.get_weights()] == [w.shape for w in weights]


def _evaluated_by_hand(model, dataset="digits"):
    """(mean loss, accuracy) of ``model`` on the whole test split, one batch, NumPy."""
    data = load_dataset(dataset)
    images, labels = data.arrays("test")
    probabilities = model(normalize(images, data.info.preprocessing), training=False).numpy()
    loss = -np.log(probabilities[np.arange(len(labels)), labels]).mean()
    return float(loss), float(np.mean(probabilities.argmax(-1) == labels))


def test_validation_metrics_are_the_models_on_the_whole_test_split(finished_run):
    # the trainer evaluates in batches of 128 (360 = 128 + 128 + 104): none lost or repeated
    out, result, _, weights = finished_run
    model = build_run_model(rundir.read_config(str(out)))
    model.set_weights(weights)
    loss, accuracy = _evaluated_by_hand(model)
    assert result.history[-1]["val_accuracy"] == pytest.approx(accuracy, abs=1e-9)
    assert result.history[-1]["val_loss"] == pytest.approx(loss, rel=1e-5)


def test_saved_model_keras_equals_the_trained_weights(finished_run):
    out, _, _, weights = finished_run
    loaded = keras.models.load_model(os.path.join(out, "model.keras"), safe_mode=True)
    for saved, trained in zip(loaded.get_weights(), weights):
        np.testing.assert_array_equal(saved, trained)
    checkpoint_model = build_run_model(rundir.read_config(str(out)))
    tf.train.Checkpoint(model=checkpoint_model).restore(
        tf.train.latest_checkpoint(os.path.join(out, "checkpoints"))).expect_partial()
    for restored, trained in zip(checkpoint_model.get_weights(), weights):
        np.testing.assert_array_equal(restored, trained)


def test_callbacks_get_keras_hooks_and_logs(finished_run):
    out, _, recorder, _ = finished_run
    calls = recorder.calls
    assert calls[0] == ("train_begin", str(out)) and calls[-1] == ("train_end",)
    # 11 steps per epoch in calls of at most 4 steps: batch hooks after steps 4, 8, 11
    batch_ends = [c[1] for c in calls if c[0] == "batch_end"]
    assert batch_ends == [3, 7, 10, 3, 7, 10]
    assert {c[2] for c in calls if c[0] == "batch_end"} == {("accuracy", "loss")}
    epoch_ends = [c for c in calls if c[0] == "epoch_end"]
    assert [c[1] for c in epoch_ends] == [0, 1]
    assert epoch_ends[0][2] == ("accuracy", "learning_rate", "loss", "val_accuracy", "val_loss")


def test_tensorboard_has_exactly_loss_accuracy_and_lr(finished_run):
    out, _, _, _ = finished_run
    tags = {}
    for part in ("train", "validation"):
        folder = os.path.join(out, "tensorboard", part)
        for name in os.listdir(folder):
            for event in tf.compat.v1.train.summary_iterator(os.path.join(folder, name)):
                for value in event.summary.value:
                    tags.setdefault(part, set()).add((value.tag, event.step))
    assert tags["train"] == {(t, s) for t in ("loss", "accuracy", "learning_rate")
                             for s in (11, 22)}
    assert tags["validation"] == {(t, s) for t in ("loss", "accuracy") for s in (11, 22)}


def test_a_finished_run_is_not_touched_again(finished_run):
    out, _, _, _ = finished_run
    before = {name: os.path.getmtime(os.path.join(out, name)) for name in os.listdir(out)}
    result = train(small(out))
    assert result.status == "already finished" and result.model is None
    assert before == {name: os.path.getmtime(os.path.join(out, name)) for name in os.listdir(out)}


def test_learning_rate_follows_the_paper_schedule(tmp_path):
    result = train(small(tmp_path / "paper", recipe="paper", epochs=4, batch_size=256))
    # batch 256: lr 0.2 after a warmup of min(5 epochs, 10% of 20 steps) = 2 steps, /10 at
    # steps 10 and 15; each record shows the rate of its epoch's last step (4, 9, 14, 19)
    assert [r["lr"] for r in result.history] == [0.2, 0.2, 0.02, 0.002]
    plan = make_plan("paper", global_batch_size=256, total_steps=20, steps_per_epoch=5)
    assert [learning_rate_at(plan, s) for s in (0, 1, 2, 9, 10, 14, 15)] == \
        [0.1, 0.2, 0.2, 0.2, 0.02, 0.02, 0.002]


def test_train_step_compiles_with_xla(tmp_path):
    from reskeras.recipes import make_optimizer
    from reskeras.steps import StepFunctions
    model = build_run_model({"arch": __import__("reskeras").get_spec("resnet8").to_config(),
                             "input_shape": [8, 8, 1], "classes": 10})
    plan = make_plan("paper", global_batch_size=16, total_steps=10, steps_per_epoch=5)
    optimizer = make_optimizer(plan)
    optimizer.build(model.trainable_variables)
    steps = StepFunctions(model, optimizer, tf.distribute.get_strategy(), global_batch_size=16,
                          weight_decay=plan.weight_decay, jit_compile=True)
    assert steps.xla == "step"
    images, labels = tf.zeros([16, 8, 8, 1]), tf.zeros([16], tf.int32)
    hlo = steps._replica_fn.experimental_get_compiler_ir(images, labels)(stage="hlo")
    assert "convolution" in hlo and "ENTRY" in hlo


@pytest.mark.slow  # about 15 s; the XLA compile of the step is also covered by
# test_train_step_compiles_with_xla and test_auto_xla_on_cpu_runs_the_graph_after_an_xla_lowering_check
def test_xla_training_runs_and_matches_the_plain_graph(tmp_path):
    # SGD: Adam's normalized steps turn float-rounding differences of tiny gradients into
    # full-size steps; with SGD the two compilers agree to rounding
    compiled = train(small(tmp_path / "xla", epochs=1, jit_compile=True, recipe="paper"))
    assert json.loads((tmp_path / "xla" / "config.json").read_text())["environment"]["xla"] \
        == "step"
    keras.backend.clear_session()
    graph = train(small(tmp_path / "graph", epochs=1, jit_compile=False, recipe="paper"))
    for a, b in zip(compiled.model.get_weights(), graph.model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("strategy", ["auto", "cpu"])  # "cpu": OneDeviceStrategy
def test_auto_xla_on_cpu_runs_the_graph_after_an_xla_lowering_check(tmp_path, strategy):
    result = train(small(tmp_path / "auto", steps=2, epochs=None, jit_compile="auto",
                         strategy=strategy))
    environment = json.loads((tmp_path / "auto" / "config.json").read_text())["environment"]
    assert result.status == "finished"
    assert environment["xla"] == "check" and environment["xla_check"] == "lowers to XLA HLO"


def test_auto_xla_check_and_the_train_chunk_share_one_trace_of_the_step(monkeypatch):
    from reskeras import build_model, steps as steps_module
    from reskeras.recipes import make_optimizer
    monkeypatch.setattr(steps_module, "_XLA_CHECKS", {})
    plan = make_plan("paper", global_batch_size=32, total_steps=10, steps_per_epoch=5)
    specs = (tf.TensorSpec((32, 8, 8, 1)), tf.TensorSpec((32,), tf.int32))
    batch = tf.data.Dataset.from_tensors((tf.zeros((32, 8, 8, 1)), tf.zeros((32,), tf.int32)))
    for strategy in (tf.distribute.get_strategy(), tf.distribute.OneDeviceStrategy("/cpu:0")):
        steps_module._XLA_CHECKS.clear()
        with strategy.scope():
            model = build_model("resnet8", input_shape=(8, 8, 1), classes=10)
            optimizer = make_optimizer(plan)
            optimizer.build(model.trainable_variables)
        steps = steps_module.StepFunctions(model, optimizer, strategy, global_batch_size=32,
                                           weight_decay=plan.weight_decay, jit_compile="auto")
        assert steps.check_xla(*specs) is None
        iterator = iter(strategy.experimental_distribute_dataset(batch.repeat()))
        assert np.all(np.isfinite(steps.train_chunk(iterator, tf.constant(2))[0].numpy()))
        assert steps._replica_fn.experimental_get_tracing_count() == 1


def test_auto_xla_check_traces_the_step_with_the_callbacks_hooks_in_it(tmp_path):
    # the check traces the step the loop then calls, so it must run after on_train_begin,
    # where the gradient-norm logger hooks into the step
    train(small(tmp_path / "hooked", steps=6, epochs=None, jit_compile="auto",
                grad_norms_every=2))
    lines = (tmp_path / "hooked" / "grad_norms.jsonl").read_text().splitlines()
    assert sorted({json.loads(line)["step"] for line in lines}) == [0, 2, 4]


def test_auto_xla_check_reports_a_step_xla_cannot_compile():
    from reskeras.recipes import make_optimizer
    from reskeras.steps import StepFunctions
    inputs = keras.Input((32, 32, 3))
    text = keras.layers.Lambda(lambda x: tf.strings.to_number(tf.strings.as_string(x)))(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(
        keras.layers.Flatten()(text)))
    plan = make_plan("adam", global_batch_size=128, total_steps=10, steps_per_epoch=5)
    optimizer = make_optimizer(plan)
    optimizer.build(model.trainable_variables)
    steps = StepFunctions(model, optimizer, tf.distribute.get_strategy(), global_batch_size=128,
                          jit_compile="auto")
    assert steps.xla == "check"
    with pytest.warns(UserWarning, match="does not compile with XLA.*AsString"):
        reason = steps.check_xla(tf.TensorSpec((128, 32, 32, 3)), tf.TensorSpec((128,), tf.int32))
    assert "AsString" in reason


def test_auto_xla_check_lowers_each_network_once_per_process(monkeypatch):
    from reskeras import build_model, steps as steps_module
    from reskeras.recipes import make_optimizer
    monkeypatch.setattr(steps_module, "_XLA_CHECKS", {})
    lowered = []
    real_lower = steps_module.StepFunctions._lower
    monkeypatch.setattr(steps_module.StepFunctions, "_lower",
                        lambda self, *specs: lowered.append(1) or real_lower(self, *specs))
    plan = make_plan("adam", global_batch_size=32, total_steps=10, steps_per_epoch=5)
    specs = (tf.TensorSpec((32, 8, 8, 1)), tf.TensorSpec((32,), tf.int32))
    for name, batch in [("resnet8", 32), ("resnet8", 32), ("plain8", 32), ("resnet8", 16)]:
        model = build_model(name, input_shape=(8, 8, 1), classes=10)
        optimizer = make_optimizer(plan)
        optimizer.build(model.trainable_variables)
        steps = steps_module.StepFunctions(model, optimizer, tf.distribute.get_strategy(),
                                           global_batch_size=batch, jit_compile="auto")
        assert steps.check_xla(tf.TensorSpec((batch, 8, 8, 1)), specs[1] if batch == 32
                               else tf.TensorSpec((batch,), tf.int32)) is None
    # the second resnet8 at batch 32 reuses the first finding; another net or batch lowers
    assert len(lowered) == 3


@pytest.mark.slow  # 12 s; test_a_finished_run_frees_its_traced_functions_... runs by default
def test_finished_runs_leave_no_traced_graph_behind(tmp_path):
    # Keras's own gradient all-reduce (a custom gradient, even on one replica) registered
    # every traced step in TensorFlow's global gradient registry: 14-20 MiB per run
    import gc
    from tensorflow.python.framework.func_graph import FuncGraph

    def live_graphs():
        gc.collect()
        return sum(isinstance(o, FuncGraph) for o in gc.get_objects())

    train(small(tmp_path / "a", epochs=1))
    keras.backend.clear_session()
    before = live_graphs()
    for name in "bc":
        train(small(tmp_path / name, epochs=1, jit_compile="auto"))
        keras.backend.clear_session()
    assert live_graphs() == before


def _run_objects() -> dict:
    """Live objects of the kinds a run creates for itself (traced functions, pipelines, ...)."""
    import gc
    from tensorflow.python.data.ops.dataset_ops import DatasetV2
    from tensorflow.python.data.ops.iterator_ops import OwnedIterator
    from tensorflow.python.distribute.input_lib import DistributedDataset, DistributedIterator
    from tensorflow.python.eager.polymorphic_function.concrete_function import ConcreteFunction
    from tensorflow.python.eager.polymorphic_function.polymorphic_function import Function
    from tensorflow.python.framework.func_graph import FuncGraph
    from reskeras.steps import StepFunctions

    kinds = {"FuncGraph": FuncGraph, "ConcreteFunction": ConcreteFunction,
             "tf.function": Function, "Dataset": DatasetV2, "OwnedIterator": OwnedIterator,
             "DistributedDataset": DistributedDataset, "DistributedIterator": DistributedIterator,
             "SummaryWriter": tf.summary.SummaryWriter, "StepFunctions": StepFunctions}
    objects = gc.get_objects()
    return {name: sum(isinstance(o, kind) for o in objects) for name, kind in kinds.items()}


class _FailsAtEpochEnd(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise RuntimeError("callback failed")


@pytest.mark.slow  # 12 s; test_a_finished_run_frees_its_traced_functions_... runs by default
def test_runs_ending_by_an_exception_keep_nothing_alive_through_the_kept_error(tmp_path):
    # the training loop's frames held the epoch's iterator and pipelines, the run its traced
    # step and writers: a kept exception (a tuner, pytest.raises) kept all of them
    import gc
    train(small(tmp_path / "warm", epochs=1, grad_norms_every=4, activations_every=4))
    keras.backend.clear_session()
    gc.collect()
    before = _run_objects()
    diverging = small(tmp_path / "div", model=None, depth=8, batch_norm=False, recipe="paper",
                      lr=1000.0, epochs=None, steps=20, batch_size=64, checkpoint_every=1,
                      steps_per_execution=1, grad_norms_every=4, activations_every=4)
    with pytest.raises(TrainingDiverged) as diverged:
        train(diverging)
    with pytest.raises(RuntimeError, match="callback failed") as failed:
        train(small(tmp_path / "fail", epochs=1, grad_norms_every=4, activations_every=4),
              callbacks=[_FailsAtEpochEnd()])
    keras.backend.clear_session()
    gc.collect()
    assert _run_objects() == before
    # the tracebacks still name every line (only the trainer's frames lost their locals)
    assert diverged.traceback[-1].name == "_diverged"
    assert failed.traceback[-1].name == "on_epoch_end"


def test_a_finished_run_frees_its_traced_functions_without_a_garbage_collection(tmp_path):
    # the step functions wrap bound methods (a cycle): before, they waited for a full collection
    import gc
    train(small(tmp_path / "warm", epochs=1, grad_norms_every=4, activations_every=4))
    gc.collect()
    before = _run_objects()
    gc.disable()
    try:
        result = train(small(tmp_path / "a", epochs=1, grad_norms_every=4, activations_every=4))
        after = _run_objects()
    finally:
        gc.enable()
    assert result.status == "finished"
    assert after["tf.function"] == before["tf.function"]
    assert after["StepFunctions"] == after["SummaryWriter"] == 0
    assert after["OwnedIterator"] == after["DistributedIterator"] == 0


def test_summaries_reach_tensorflow_as_arrays_never_as_python_numbers(tmp_path, monkeypatch):
    # TF's eager scalar cache keeps every Python float or int it converts (np.float64 too)
    # for the rest of the process: ~0.7 KB per value, 30-50 values per tuner trial
    import sys
    from reskeras.callbacks._logging import summary_scalar

    written = []
    real_scalar = tf.summary.scalar

    def recording_scalar(name, data, step=None, **kwargs):
        written.append((name, data, step))
        return real_scalar(name, data, step=step, **kwargs)

    real_raw = tf.summary.experimental.write_raw_pb

    def recording_raw(tensor, step=None, name=None):  # the loggers' one summary per record
        from tensorboard.compat.proto import summary_pb2
        summary = summary_pb2.Summary.FromString(np.asarray(tensor).item())
        written.extend((value.tag, tensor, step) for value in summary.value)
        return real_raw(tensor, step=step, name=name)

    monkeypatch.setattr(tf.summary, "scalar", recording_scalar)
    monkeypatch.setattr(tf.summary.experimental, "write_raw_pb", recording_raw)
    train(small(tmp_path / "a", epochs=1, grad_norms_every=4, activations_every=4))
    names = {name for name, _, _ in written}
    assert {"loss", "learning_rate", "grad_norm/global", "dead_relu/stem_relu"} <= names
    python_numbers = [(name, type(value).__name__) for name, data, step in written
                      for value in (data, step) if isinstance(value, (int, float))]
    assert python_numbers == []
    value = 0.1234567891
    references = sys.getrefcount(value)
    with tf.summary.create_file_writer(str(tmp_path / "board")).as_default():
        real_scalar("cached", summary_scalar(value), step=np.int64(1))
        assert sys.getrefcount(value) == references
        real_scalar("cached", value, step=np.int64(1))  # the trap: the cache keeps the float
        assert sys.getrefcount(value) == references + 1


def test_non_finite_gradients_stop_and_keep_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "div"
    config = small(out, model=None, depth=8, batch_norm=False, recipe="paper", lr=1000.0,
                   epochs=None, steps=20, batch_size=64, checkpoint_every=1,
                   steps_per_execution=1)
    with pytest.raises(TrainingDiverged) as caught:
        train(config)
    error = caught.value
    assert 1 <= error.last_checkpoint_step == error.step - 1
    assert f"step {error.step}" in str(error)
    assert rundir.read_summary(str(out))["status"] == "diverged"
    model = build_run_model(rundir.read_config(str(out)))
    latest = tf.train.latest_checkpoint(os.path.join(out, "checkpoints"))
    assert latest.endswith(f"ckpt-{error.last_checkpoint_step}")
    tf.train.Checkpoint(model=model).restore(latest).expect_partial()
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert not os.path.exists(os.path.join(out, "model.keras"))


def test_cli_trains_on_cifar10_prepared_by_tfds_real_builder(tmp_path, tiny_cifar10, capsys):
    data_dir = tiny_cifar10[0]
    out = tmp_path / "c10"
    code = main(["train", "--model", "resnet8", "--width", "4", "--dataset", "cifar10",
                 "--data-dir", data_dir, "--epochs", "2", "--batch-size", "16", "--recipe",
                 "adam", "--xla", "off", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    config = rundir.read_config(str(out))
    assert config["dataset"] == {"name": "cifar10", "data_dir": data_dir, "image_size": None,
                                 "augment": True}
    assert config["input_shape"] == [32, 32, 3] and config["class_names"][:2] == [
        "airplane", "automobile"]
    records = rundir.read_metrics(str(out))
    assert [r["step"] for r in records] == [2, 4]  # 40 images, batches of 16
    assert all(np.isfinite(r["val_loss"]) for r in records)


# -- bad input: one line, exit code 2, nothing overwritten -------------------------------

def _cli(capsys, *args):
    code = main(["train", *args])
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("args, message", [
    (["--model", "resnet21", "--dataset", "digits", "--epochs", "1"], "name='resnet21'"),
    (["--model", "resnet8", "--dataset", "nonexistent_ds", "--epochs", "1"], "nonexistent_ds"),
    (["--model", "resnet8", "--dataset", "digits"], "epochs"),
    (["--model", "resnet8", "--dataset", "digits", "--epochs", "1", "--steps", "3"], "steps=3"),
    (["--model", "resnet8", "--dataset", "digits", "--epochs", "0"], "epochs=0"),
    (["--model", "resnet8", "--dataset", "digits", "--epochs", "1", "--batch-size", "5000"],
     "5000"),
    (["--model", "resnet8", "--depth", "8", "--dataset", "digits", "--epochs", "1"], "depth=8"),
    (["--resume"], "resume"),
    (["--model", "resnet8", "--dataset", "digits", "--epochs", "1", "--precise-bn-batches", "4"],
     "`precise_bn_batches` needs `precise_bn=True`. Received: precise_bn_batches=4"),
    (["--model", "resnet8", "--dataset", "digits", "--epochs", "1", "--precise-bn",
      "--precise-bn-batches", "0"], "`precise_bn_batches` must be a positive integer. "
                                    "Received: precise_bn_batches=0"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    out = tmp_path / "fresh"
    code, err = _cli(capsys, *args, "--out", str(out))
    assert code == 2
    assert len(err.splitlines()) == 1 and message in err
    assert not out.exists() or not os.listdir(out)


def test_multiworker_without_tf_config_is_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["localhost:1"]}}))
    code, err = _cli(capsys, "--model", "resnet8", "--dataset", "digits", "--epochs", "1",
                     "--strategy", "multiworker", "--out", str(tmp_path / "mw"))
    assert code == 2 and len(err.splitlines()) == 1 and "task" in err


def test_unwritable_out_is_exit_2(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, err = _cli(capsys, "--model", "resnet8", "--dataset", "digits", "--epochs", "1",
                     "--out", str(blocker / "run"))
    assert code == 2 and len(err.splitlines()) == 1 and "out=" in err
    assert blocker.read_text() == "not a directory"


def test_other_files_or_another_run_are_never_overwritten(finished_run, tmp_path, capsys):
    out, _, _, _ = finished_run
    snapshot = {name: open(os.path.join(out, name), "rb").read()
                for name in ("config.json", "metrics.jsonl", "summary.json", "model.keras")}
    code, err = _cli(capsys, "--model", "plain8", "--dataset", "digits", "--epochs", "2",
                     "--recipe", "adam", "--out", str(out))
    assert code == 2 and "different run" in err and "arch" in err
    code, err = _cli(capsys, "--model", "resnet8", "--dataset", "digits", "--epochs", "3",
                     "--recipe", "adam", "--no-xla", "--out", str(out))
    assert code == 2 and "training.epochs" in err
    assert snapshot == {name: open(os.path.join(out, name), "rb").read() for name in snapshot}
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    code, err = _cli(capsys, "--model", "resnet8", "--dataset", "digits", "--epochs", "1",
                     "--out", str(foreign))
    assert code == 2 and "no config.json" in err
    assert os.listdir(foreign) == ["notes.txt"]


def test_weight_decay_is_coupled_l2_on_kernels_only():
    """One SGD step: kernels move by -lr * (g + wd * w), BN parameters and biases by -lr * g."""
    from reskeras.recipes import make_optimizer
    from reskeras.steps import StepFunctions
    model = build_run_model({"arch": __import__("reskeras").get_spec("resnet8").to_config(),
                             "input_shape": [8, 8, 1], "classes": 10})
    plan = make_plan("paper", global_batch_size=32, total_steps=10, steps_per_epoch=5, lr=0.1,
                     weight_decay=0.01)
    optimizer = make_optimizer(plan)
    optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.normal(size=(32, 8, 8, 1)), tf.float32)
    labels = tf.constant(rng.integers(0, 10, 32), tf.int32)
    before = [v.numpy() for v in model.trainable_variables]
    moving = [v.numpy() for v in model.non_trainable_variables]
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            labels, model(images, training=True)))
    grads = [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]
    for variable, value in zip(model.non_trainable_variables, moving):
        variable.assign(value)  # undo the BN statistics update of the reference pass
    steps = StepFunctions(model, optimizer, tf.distribute.get_strategy(), global_batch_size=32,
                          weight_decay=plan.weight_decay, jit_compile=False)
    iterator = iter(tf.data.Dataset.from_tensors((images, labels)).repeat())
    losses, _ = steps.train_chunk(iterator, tf.constant(1))
    assert abs(float(losses[0]) - float(loss)) < 1e-6  # the reported loss excludes the L2 term
    decayed = 0
    for variable, w0, g in zip(model.trainable_variables, before, grads):
        is_kernel = variable.path.endswith("/kernel")
        decayed += is_kernel
        expected = w0 - 0.1 * (g + (0.01 * w0 if is_kernel else 0.0))
        np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-5, atol=1e-6,
                                   err_msg=variable.path)
    assert decayed == 8  # 7 convs and the dense kernel; 14 BN vectors and the bias are not


def test_deterministic_run_leaves_the_process_as_it_was(tmp_path):
    from tensorflow.python.framework import config as tf_config
    assert not tf_config.is_op_determinism_enabled()
    train(small(tmp_path / "det", steps=1, epochs=None, deterministic=True))
    assert not tf_config.is_op_determinism_enabled()


def test_initial_weights_seed_a_new_run_but_a_resume_restores_its_checkpoint(
        finished_run, tmp_path):
    """Hyperband's continuation: another run's weights replace the init before step 0 only."""
    source_out, _, _, source_weights = finished_run

    class Weights(keras.callbacks.Callback):
        def __init__(self, stop_after_first_epoch=False):
            super().__init__()
            self.stop, self.at_begin, self.at_end = stop_after_first_epoch, None, None

        def on_train_begin(self, logs=None):
            self.at_begin = [w.copy() for w in self.model.get_weights()]

        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = self.stop

        def on_train_end(self, logs=None):
            self.at_end = [w.copy() for w in self.model.get_weights()]

    with pytest.raises(ValueError, match="initial_weights"):
        train(small(tmp_path / "bad"), initial_weights=str(tmp_path / "missing.keras"))
    assert not (tmp_path / "bad").exists()
    first = Weights(stop_after_first_epoch=True)
    result = train(small(tmp_path / "warm"), callbacks=[first],
                   initial_weights=str(source_out / "model.keras"))
    assert result.status == "stopped" and result.step == 11
    assert all(np.array_equal(a, b) for a, b in zip(first.at_begin, source_weights))
    keras.backend.clear_session()
    resumed = Weights()
    result = train(small(tmp_path / "warm"), callbacks=[resumed],
                   initial_weights=str(source_out / "model.keras"))
    assert result.status == "finished" and result.step == 22
    assert all(np.array_equal(a, b) for a, b in zip(resumed.at_begin, first.at_end))
    assert not all(np.array_equal(a, b) for a, b in zip(resumed.at_begin, source_weights))


def test_an_extended_run_equals_one_trained_for_the_larger_budget(tmp_path):
    """One run read at 11 steps, then extended to 22, ends as a 22-step run does."""
    straight = train(small(tmp_path / "straight", epochs=None, steps=22, deterministic=True,
                           precise_bn=True))
    first = train(small(tmp_path / "grown", epochs=None, steps=11, deterministic=True,
                        precise_bn=True))
    assert first.step == 11
    grown = train(small(tmp_path / "grown", epochs=None, steps=22, deterministic=True,
                        precise_bn=True, extend=True))
    assert grown.status == "finished" and grown.step == 22
    assert all(np.array_equal(a, b) for a, b in
               zip(grown.model.get_weights(), straight.model.get_weights()))
    drop = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in grown.history] == \
        [{k: v for k, v in r.items() if k not in drop} for r in straight.history]
    out = tmp_path / "grown"
    assert json.loads((out / "summary.step11.json").read_text())["step"] == 11
    assert rundir.read_summary(str(out))["step"] == 22
    assert rundir.read_config(str(out))["training"]["total_steps"] == 22
    # without `extend`, or to a smaller budget, or with a budget-dependent schedule: refused
    with pytest.raises(ValueError, match=r"`out` holds a different run \(training.epochs"):
        train(small(out, epochs=None, steps=33, deterministic=True, precise_bn=True))
    with pytest.raises(ValueError, match=r"^`extend` cannot continue the run in `out` "
                       r"\(training.total_steps: 22 -> 11 \(a run extends"):
        train(small(out, epochs=None, steps=11, deterministic=True, precise_bn=True,
                    extend=True))
    with pytest.raises(ValueError, match=r"^`extend` cannot continue the run in `out` "
                       r"\(training.plan.boundaries: \[16, 25\] \(a step-decay"):
        train(small(out, epochs=None, steps=33, deterministic=True, precise_bn=True,
                    extend=True, recipe="paper"))
    assert rundir.read_summary(str(out))["step"] == 22  # nothing written by the refusals
    with pytest.raises(ValueError, match=r"^`extend` cannot continue the run in `out` "
                       r"\(training.plan: \{'base_lr': 0.001.* -> \{.*'base_lr': 0.002"):
        train(small(out, epochs=None, steps=33, deterministic=True, precise_bn=True,
                    extend=True, lr=0.002))
    assert rundir.read_summary(str(out))["step"] == 22
