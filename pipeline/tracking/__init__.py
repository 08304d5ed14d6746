"""All MLflow code, one room a concern; the stages never import `mlflow` themselves.

- `store`: which store a call talks to (the one place that decides), the experiment, races.
- `runs`: a run's lifecycle across stages (start, resume, FAILED or KILLED on the way out),
  and the runs a dead process left RUNNING.
- `record`: what a run holds: the config, the data, per-epoch and final metrics, artifacts,
  and where its code came from (git commit, DVC experiment).
- `sweeps`: a sweep's parent run, its typed record in `sweep.json`, and its report.
- `registry`: logging the Keras model, registering versions, the `champion` alias.
- `promotion`: whether a new version takes `champion` (a test on the validation digits both
  saw, or over seeds), and the decision's line; no MLflow itself.
- `readback`: a run's record read back, to rebuild it, and the verdict.
- `names`: the tag and metric names all of them use, written once.
"""
