"""The model in MLflow: logged with its requirements and signature, the champion alias."""

from __future__ import annotations

import keras
import mlflow
import numpy as np
from mlflow import MlflowClient

from pipeline import engine
from pipeline.tracking import registry, runs, store


def test_logged_model_loads_back_and_predicts_the_same(tiny_cfg, tiny_data, tmp_path):
    from pipeline import model

    net = model.build(tiny_cfg.model, tiny_cfg.train)
    with runs.start("exp"):
        uri = registry.log_model(net)
    loaded = mlflow.keras.load_model(uri)
    x = tiny_data[0][:4]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), net.predict(x, verbose=0))
    folder = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp_path))
    pins = (tmp_path / folder / "requirements.txt").read_text().split()
    backend = registry.BACKEND_PACKAGES[keras.backend.backend()][0]  # jax by default
    assert any(p.startswith(f"{backend}==") for p in pins), pins
    assert any(p.startswith("keras==") for p in pins)
    signature = mlflow.models.get_model_info(uri).signature
    assert signature.inputs.inputs[0].shape == (-1, 784)


def test_champion_alias_moves_only_to_a_better_validation_accuracy(tiny_cfg, tiny_data):
    net, _ = engine.train(tiny_cfg, *tiny_data, verbose=0)
    registered, run_ids = [], []
    for val_accuracy in (0.90, 0.95, 0.93, None):
        with runs.start("exp") as run_id:
            registered.append(registry.register("digits", registry.log_model(net), val_accuracy))
        run_ids.append(run_id)
    assert registered == [(1, True), (2, True), (3, False), (4, False)]
    champion = MlflowClient(store.uri()).get_model_version_by_alias("digits", registry.CHAMPION)
    assert int(champion.version) == 2 and champion.run_id == run_ids[1]
