"""The MLflow UI (`make ui`): the training view, our MLflow apps, the offline plots page."""
