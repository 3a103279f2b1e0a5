"""Continuous affect over time (`task: regress`): frame-wise regression of annotated
dimensions (valence, arousal, intensity…) with the classification run's folds, inner
validation and leakage checks.

- `pipeline.regression.train`: one model × backbone × fold (the `train` rule of a regress run)
- `pipeline.regression.evaluate`: CCC, Pearson r and RMSE per dimension, per video and
  pooled over each test fold; mean ± std over folds (the `evaluate` rule)
"""
