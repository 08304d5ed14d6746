"""A sweep on a real Ray cluster of two nodes, 127.0.0.2 and 127.0.0.3, through the Ray
launcher (`hydra/launcher=ray_cluster`), its jobs logging to the team's tracking server.

Ray binds its servers to every address of the machine (0.0.0.0), whatever node address it is
given. So the cluster, the server and the sweep run in a network namespace of the test's own,
whose only interface is loopback: there, every address Ray can bind is a loopback address. The
test checks that before the sweep, and stops everything in the namespace at the end."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from pipeline import tracking
from pipeline.server import stop_group

from .conftest import kill_where, write_prepared
from .test_server import Server, reachable_folder

pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="make test installs it")
pytestmark = pytest.mark.skipif(
    subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0,
    reason="needs a network namespace of its own (unshare --net: root or CAP_SYS_ADMIN)")

HEAD, WORKER = "127.0.0.2", "127.0.0.3"


class Namespace:
    """A network namespace with loopback only, held open by a `sleep` inside it."""

    def __init__(self) -> None:
        self.holder = subprocess.Popen(["unshare", "--net", "sleep", "900"])
        self.prefix = ("nsenter", f"--net=/proc/{self.holder.pid}/ns/net")
        ours, deadline = os.readlink("/proc/self/ns/net"), time.monotonic() + 10
        while (link := os.readlink(f"/proc/{self.holder.pid}/ns/net")) == ours:
            assert time.monotonic() < deadline, "unshare made no network namespace in 10 s"
            time.sleep(0.01)  # until unshare has moved itself into the new one
        self.link = link
        self.run("ip", "link", "set", "lo", "up")

    def run(self, *cmd: str, env: dict | None = None, timeout: float = 120) -> str:
        done = subprocess.run([*self.prefix, *cmd], capture_output=True, text=True, env=env,
                              timeout=timeout)
        assert done.returncode == 0, f"{' '.join(cmd)}:\n{(done.stdout + done.stderr)[-3000:]}"
        return done.stdout

    def close(self) -> None:
        """SIGKILL whatever still runs inside, then the holder."""
        assert self.link != os.readlink("/proc/self/ns/net")
        kill_where(lambda proc: int(proc.name) != self.holder.pid and
                   os.readlink(proc / "ns/net") == self.link)
        self.holder.kill()
        self.holder.wait(10)


NODES = """
import json, sys, ray
ray.init(address=sys.argv[1], logging_level="ERROR")
print(json.dumps(sorted(n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"])))
"""

RUNS = """
import json, sys
from mlflow import MlflowClient
client = MlflowClient(sys.argv[1])
runs = client.search_runs([client.get_experiment_by_name("mnist").experiment_id])
print(json.dumps([{"id": r.info.run_id, "status": r.info.status, "params": r.data.params,
                   "tags": r.data.tags, "metrics": r.data.metrics} for r in runs]))
"""


def test_a_sweep_on_two_ray_nodes_lands_under_one_parent_in_the_shared_store(tmp_path):
    shared = reachable_folder("ray-")  # short: Ray's socket paths must fit
    ns, started = Namespace(), []
    env = os.environ | {"RAY_USAGE_STATS_ENABLED": "0"}

    def node(name: str, *args: str) -> None:
        with open(tmp_path / f"ray-{name}.log", "wb") as log:
            started.append(subprocess.Popen(
                [*ns.prefix, "ray", "start", "--block", "--num-cpus", "1",
                 "--disable-usage-stats", "--temp-dir", str(shared / name), *args],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True))

    def nodes() -> list[str]:
        """The addresses of the cluster's live nodes; none while the head is starting."""
        with contextlib.suppress(AssertionError):
            return json.loads(ns.run(sys.executable, "-c", NODES, f"{HEAD}:6379",
                                     env=env).splitlines()[-1])
        return []

    server = None
    try:
        server = Server(shared / "server", prefix=ns.prefix)
        node("head", "--head", "--node-ip-address", HEAD, "--port", "6379",
             "--include-dashboard", "false")
        deadline = time.monotonic() + 120
        while not (found := nodes()) and time.monotonic() < deadline:
            time.sleep(1)
        node("worker", "--address", f"{HEAD}:6379", "--node-ip-address", WORKER,
             "--dashboard-agent-listen-port", "52366")
        while len(found := nodes()) < 2 and time.monotonic() < deadline:
            time.sleep(1)
        output = "\n".join(p.read_text(errors="replace")[-2000:] for p in tmp_path.glob("*.log"))
        assert found == [HEAD, WORKER], f"Ray nodes {found}:\n{output}"
        server.wait_up()

        # Nothing outside can reach what listens in here: loopback is its only interface.
        assert [line.split(":")[1].strip() for line in ns.run("ip", "-o", "link").splitlines()
                ] == ["lo"]

        prepared = write_prepared(tmp_path / "prepared")
        sweep = [*ns.prefix, sys.executable, "-m", "pipeline.sweep", "-m",
                 "hydra/launcher=ray_cluster", "train.epochs=2", "train.batch_size=16,32",
                 "train.seed=1,2", "model.hidden_units=16", f"paths.prepared={prepared}",
                 f"hydra.sweep.dir={tmp_path / 'multirun'}"]
        done = subprocess.run(sweep, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                              env=env | {"RAY_ADDRESS": f"{HEAD}:6379",
                                         "MLFLOW_TRACKING_URI": server.uri})
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        assert not (tmp_path / "mlflow.db").exists()  # every run went to the server

        runs = json.loads(ns.run(sys.executable, "-c", RUNS, server.uri).splitlines()[-1])
        (parent,) = [r for r in runs if r["tags"].get(tracking.SWEEP_TAG) == "parent"]
        children = [r for r in runs if r["tags"].get("mlflow.parentRunId") == parent["id"]]
        assert len(runs) == 5 and len(children) == 4
        assert {r["status"] for r in runs} == {"FINISHED"}
        assert sorted((r["params"]["train.batch_size"], r["params"]["train.seed"])
                      for r in children) == [("16", "1"), ("16", "2"), ("32", "1"), ("32", "2")]
        assert all(0 < r["metrics"]["test_accuracy"] <= 1 for r in children)
        assert {r["tags"]["pipeline.ray_node"] for r in children} == {HEAD, WORKER}
        assert parent["metrics"]["jobs"] == 4
    finally:
        for proc in started:  # all at once: each node drains for up to 30 s
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in started:
            stop_group(proc)
        if server is not None:
            server.stop()
        ns.close()
        shutil.rmtree(shared, ignore_errors=True)
