"""A sweep on a real Ray cluster of two nodes, 127.0.0.2 and 127.0.0.3, through the Ray
launcher (`hydra/launcher=ray_cluster`), its jobs logging to the team's tracking server.

Ray binds its servers to every address of the machine (0.0.0.0), whatever node address it is
given. So the cluster, the server and the sweep run in a network namespace of the test's own,
whose only interface is loopback: there, every address Ray can bind is a loopback address. The
test checks that before the sweep, and stops everything in the namespace at the end."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.tracking import names

from .helpers.data import write_prepared
from .helpers.ray_cluster import HEAD, WORKER, Namespace, RayCluster
from .helpers.servers import Server, reachable_folder

pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="make test-all installs it")
pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(
        subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0,
        reason="needs a network namespace of its own (unshare --net: root or CAP_SYS_ADMIN)",
    ),
]

RUNS = """
import json, sys
from mlflow import MlflowClient
client = MlflowClient(sys.argv[1])
runs = client.search_runs([client.get_experiment_by_name("mnist").experiment_id])
print(json.dumps([{"id": r.info.run_id, "status": r.info.status, "params": r.data.params,
                   "tags": r.data.tags, "metrics": r.data.metrics} for r in runs]))
"""


@pytest.fixture
def namespace():
    """A network namespace with loopback only, and a folder for what runs there; at the end,
    whatever still runs in the namespace is killed."""
    shared = reachable_folder("ray-")  # short: Ray's socket paths must fit
    ns = Namespace()
    try:
        yield ns, shared
    finally:
        ns.close()
        shutil.rmtree(shared, ignore_errors=True)


@pytest.fixture
def tracking_server(namespace):
    """The team's tracking server, started in the namespace; stopped at the end."""
    ns, shared = namespace
    server = Server(shared / "server", prefix=ns.prefix)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cluster(namespace, tracking_server, tmp_path):
    """Two Ray nodes in the namespace, not yet started; stopped, before the server, at the end."""
    ns, shared = namespace
    cluster = RayCluster(ns, shared, tmp_path)
    try:
        yield cluster
    finally:
        cluster.stop()


def _sweep(cluster: RayCluster, server: Server, tmp_path: Path) -> subprocess.CompletedProcess:
    """A 2x2 sweep through the Ray launcher, run in the namespace, logging to the server."""
    prepared = write_prepared(tmp_path / "prepared")
    sweep = [
        *cluster.ns.prefix,
        sys.executable,
        "-m",
        "pipeline.sweep",
        "-m",
        "hydra/launcher=ray_cluster",
        "train.epochs=2",
        "train.batch_size=16,32",
        "train.seed=1,2",
        "model.hidden_units=16",
        f"paths.prepared={prepared}",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
    ]
    return subprocess.run(
        sweep,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=cluster.env | {"RAY_ADDRESS": f"{HEAD}:6379", "MLFLOW_TRACKING_URI": server.uri},
    )


def test_a_sweep_on_two_ray_nodes_lands_under_one_parent_in_the_shared_store(
    cluster, tracking_server, tmp_path
):
    found = cluster.start()
    assert found == [HEAD, WORKER], f"Ray nodes {found}:\n{cluster.output()}"
    tracking_server.wait_up()
    # Nothing outside can reach what listens in here: loopback is its only interface.
    assert cluster.ns.interfaces() == ["lo"]

    done = _sweep(cluster, tracking_server, tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert not (tmp_path / "mlflow.db").exists()  # every run went to the server

    runs = json.loads(
        cluster.ns.run(sys.executable, "-c", RUNS, tracking_server.uri).splitlines()[-1]
    )
    (parent,) = [r for r in runs if r["tags"].get(names.SWEEP) == "parent"]
    children = [r for r in runs if r["tags"].get("mlflow.parentRunId") == parent["id"]]
    assert len(runs) == 5 and len(children) == 4
    assert {r["status"] for r in runs} == {"FINISHED"}
    assert sorted(
        (r["params"]["train.batch_size"], r["params"]["train.seed"]) for r in children
    ) == [("16", "1"), ("16", "2"), ("32", "1"), ("32", "2")]
    assert all(0 < r["metrics"]["test_accuracy"] <= 1 for r in children)
    assert {r["tags"]["pipeline.ray_node"] for r in children} == {HEAD, WORKER}
    assert parent["metrics"]["jobs"] == 4
