"""Measurements of one trained or initial net, one module each.

- :mod:`~reskeras.study.measures.gradient_flow`: first/last conv gradient-norm
  ratio of a run's ``grad_norms.jsonl`` (vanishing, healthy, exploding);
- :mod:`~reskeras.study.measures.lesion`: test error with one block deleted
  (Veit et al. 2016);
- :mod:`~reskeras.study.measures.landscape`: loss along filter-normalized random
  directions (Li et al. 2018);
- :mod:`~reskeras.study.measures.sharpness`: the top Hessian eigenvalue, raw and
  scale-invariant (BN-preceded kernels in per-layer normalized coordinates);
- :mod:`~reskeras.study.measures.responses`: the block layers' response std of a
  run (He et al. 2015, Fig. 7);
- :mod:`~reskeras.study.measures.shattering`: correlation of input gradients at
  neighbouring inputs (Balduzzi et al. 2017);
- :mod:`~reskeras.study.measures.distances`: how far training moves each layer,
  how far each block is from the identity;
- :mod:`~reskeras.study.measures.identity_task`: how deep a plain or residual
  conv-BN-ReLU stack can learn ``f(x) = x`` (steps doubled until the one-block
  stacks converge; a zero-gamma residual control beside).

A measure takes nets and arrays and returns numbers. It never imports the
study's runner, its judgment or its report (an import-linter contract in
pyproject.toml); the thresholds that label its numbers come from
:mod:`reskeras.study.criteria`.
"""
