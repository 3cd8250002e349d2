"""Layer responses of one trained cell (He et al. 2015, §4.1 and Fig. 7), from its run directory.

The paper's Fig. 7 plots, per 3x3 conv layer, the standard deviation of its response
"after BN and before other nonlinearity (ReLU/addition)" on the test set: a residual
net's responses are smaller than its plain twin's, which the paper reads as residual
functions being closer to zero than unreferenced ones. The training loop records the
same numbers (:class:`reskeras.callbacks.ActivationStatsLogger`, records of kind
``response`` in ``activations.jsonl``); this module reads them back through the same
code path as :func:`reskeras.analysis.plot_layer_responses` (:func:`load_run`, then
:func:`activation_series`) and summarizes one record.

What is summarized:

- **which record**: the last logged step (``activation_series``' default), the latest
  state of the net that the file holds. The logger records at step 0 and at every
  multiple of ``activations_every``, during training, with the BatchNorm *moving*
  statistics: the precise statistics computed after the last step are not in the
  record. When the budget is not a multiple of ``activations_every`` the last record
  lies before the end of training; ``run_step`` (the run's final step, from
  ``summary.json``) lets a caller see that. A run extended to a larger budget keeps
  one file: its last record is the extended run's.
- **which layers**: the 3x3 conv responses inside the blocks (layer names
  ``stage{s}_block{b}_...``: ``_bn1``/``_bn2`` with BatchNorm, ``_conv1``/``_conv2``
  without). In a residual net these are the residual branch's layers, the responses
  of the residual functions the paper plots; the plain twin has the same names. The
  stem conv (``stem_bn``) is left out: it is no residual function and the same layer
  in both twins.
- **the summary**: the median over those layers of the response std. A layer whose
  value is ``null`` (not finite when recorded) makes ``median_std`` ``None``: a
  median over the layers that happened to be finite would describe another net.

Example:

>>> records = [{"step": s, "kind": "response", "layer": name, "index": i, "value": v * (s + 1)}
...            for s in (0, 44) for i, (name, v) in enumerate(
...                [("stem_bn", 9.0), ("stage1_block1_bn1", 1.0), ("stage1_block1_bn2", 0.5),
...                 ("stage2_block1_bn1", 2.0)])]
>>> summary = summarize_responses(records)
>>> summary["step"], summary["layers"], summary["median_std"]
(44, 3, 45.0)
>>> [row["layer"] for row in summary["per_layer"]]
['stage1_block1_bn1', 'stage1_block1_bn2', 'stage2_block1_bn1']
>>> response_summary("runs/resnet56-bn-s0")["median_std"]  # doctest: +SKIP
0.41
"""

from __future__ import annotations

import math
import re

import numpy as np

from reskeras import rundir
from reskeras.analysis.records import activation_series, load_run

BLOCK_LAYER = re.compile(r"^stage\d+_block\d+_")


def summarize_responses(records: list[dict], run_step: int | None = None) -> dict | None:
    """The block layers' response stds at the last logged step of ``activations.jsonl`` records.

    Args:
        records: the activation records (``load_run(run_dir)["activations"]``); records of
            other kinds are ignored.
        run_step: the run's final optimizer step, copied into the result (``None``: unknown).

    Returns:
        ``None`` when no ``response`` record of a block layer exists; else
        ``{"median_std", "layers", "step", "run_step", "per_layer", "null_layers"}``:
        the median over the block layers of the response std (``None`` when any of them is
        ``null``), how many layers, the logged step read, ``run_step``, one
        ``{"layer", "std"}`` per layer from the input side, and the names of the layers
        whose value is ``null``.

    Example:

    >>> records = [{"step": 8, "kind": "response", "layer": "stage1_block1_bn1", "index": 1,
    ...             "value": None},
    ...            {"step": 8, "kind": "response", "layer": "stage1_block1_bn2", "index": 2,
    ...             "value": 0.5}]
    >>> summary = summarize_responses(records, run_step=10)
    >>> summary["median_std"], summary["null_layers"], summary["step"], summary["run_step"]
    (None, ['stage1_block1_bn1'], 8, 10)
    >>> summarize_responses([]) is None
    True
    """
    step, names, values = activation_series(records, "response")
    kept = [(name, float(value)) for name, value in zip(names, values)
            if BLOCK_LAYER.match(name)]
    if not kept:
        return None
    null_layers = [name for name, value in kept if not math.isfinite(value)]
    median = None if null_layers else float(np.median([value for _, value in kept]))
    return {"median_std": median, "layers": len(kept), "step": step, "run_step": run_step,
            "per_layer": [{"layer": name, "std": value if math.isfinite(value) else None}
                          for name, value in kept],
            "null_layers": null_layers}


def response_summary(run_dir: str) -> dict | None:
    """:func:`summarize_responses` of a run directory's ``activations.jsonl``.

    Reads the run as ``reskeras plot`` does (:func:`reskeras.analysis.records.load_run`);
    ``run_step`` is ``summary.json``'s ``step`` (``None`` before the run finished).

    Args:
        run_dir: a run directory written by the reskeras trainer (local or ``gs://``).

    Returns:
        The summary, or ``None`` when the run recorded no layer responses (for example
        ``activations_every`` off).

    Raises:
        ValueError: ``run_dir`` has no ``config.json``, or a record is malformed.

    Example:

    >>> summary = response_summary("runs/plain56-bn-s0")     # doctest: +SKIP
    >>> summary["layers"], summary["step"] == summary["run_step"]  # doctest: +SKIP
    (54, True)
    """
    run = load_run(run_dir)
    summary = rundir.read_summary(run_dir)
    run_step = summary.get("step") if isinstance(summary, dict) else None
    return summarize_responses(run["activations"], run_step)


__all__ = ["BLOCK_LAYER", "response_summary", "summarize_responses"]
