"""One trial in its own process (``reskeras tune --subprocess-per-trial``).

TensorFlow keeps some memory of every trial after it ends, even after
``keras.backend.clear_session()`` and ``gc.collect()`` (keras-tuner#395): about
1 MiB per ResNet-8 trial once the trainer stopped Keras's all-reduce from pinning
its traced step, plus 13-14 MiB per new network for the XLA lowering check; a
process per trial returns all of it to the system, at the cost of one
TensorFlow start-up per trial. The parent writes a job file, runs
``python -m tuning.trial_process JOB`` and reads the run directory afterwards.
The child dies with its parent (``PR_SET_PDEATHSIG``), so a killed search never
leaves a trial training behind into the directory its re-run resumes.

Exit codes: 0 trained (or already finished), 3 diverged (reason on the last line
of stderr), anything else an error.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

DIVERGED = 3


def run_in_subprocess(job: dict, job_file: str) -> None:
    """Runs ``job`` in a child process; raises :class:`TrialDiverged` or RuntimeError."""
    with open(job_file, "w") as handle:
        json.dump(job, handle)
    child = subprocess.run([sys.executable, "-m", "tuning.trial_process", job_file,
                            str(os.getpid())], stderr=subprocess.PIPE, text=True)
    os.remove(job_file)
    if child.returncode == 0:
        return
    lines = [line for line in child.stderr.strip().splitlines() if line.strip()]
    reason = lines[-1] if lines else f"exit code {child.returncode}"
    if child.returncode == DIVERGED:
        raise TrialDiverged(reason.removeprefix("diverged: "))
    sys.stderr.write(child.stderr[-4000:])
    raise RuntimeError(f"the trial process failed (exit code {child.returncode}): {reason}")


class TrialDiverged(Exception):
    """The trial's run stopped on a non-finite loss (``TrainingDiverged`` in the child)."""


def _die_with_parent(parent: int) -> None:
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job_file, parent = argv[0], int(argv[1])
    _die_with_parent(parent)
    with open(job_file) as handle:
        job = json.load(handle)
    import keras_tuner as kt

    from reskeras.train import TrainingDiverged
    from tuning.hypermodel import ResNetHyperModel

    hypermodel = ResNetHyperModel.from_config(job["hypermodel"])
    hp = kt.HyperParameters.from_config(job["hyperparameters"])
    try:
        hypermodel.train_trial(hp, job["run_dir"], epochs=job["epochs"],
                               initial_weights=job["initial_weights"])
    except TrainingDiverged as error:
        print(f"diverged: {error}", file=sys.stderr)
        return DIVERGED
    return 0


if __name__ == "__main__":
    sys.exit(main())
