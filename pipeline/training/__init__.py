"""Training: the engine, its callbacks, the model, the checkpoint cache; no MLflow, no DVC."""
