"""A Ray cluster of two nodes, 127.0.0.2 and 127.0.0.3, in a network namespace of its own.

Ray binds its servers to every address of the machine (0.0.0.0), whatever node address it is
given. In a namespace whose only interface is loopback, every address Ray can bind is a
loopback address."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipeline.common.entry import stop_group

from .processes import kill_where

HEAD, WORKER = "127.0.0.2", "127.0.0.3"

NODES = """
import json, sys, ray
ray.init(address=sys.argv[1], logging_level="ERROR")
print(json.dumps(sorted(n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"])))
"""


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
        done = subprocess.run(
            [*self.prefix, *cmd], capture_output=True, text=True, env=env, timeout=timeout
        )
        assert done.returncode == 0, f"{' '.join(cmd)}:\n{(done.stdout + done.stderr)[-3000:]}"
        return done.stdout

    def interfaces(self) -> list[str]:
        """The names of its network interfaces."""
        return [line.split(":")[1].strip() for line in self.run("ip", "-o", "link").splitlines()]

    def close(self) -> None:
        """SIGKILL whatever still runs inside, then the holder."""
        assert self.link != os.readlink("/proc/self/ns/net")
        kill_where(
            lambda proc: (
                int(proc.name) != self.holder.pid and os.readlink(proc / "ns/net") == self.link
            )
        )
        self.holder.kill()
        self.holder.wait(10)


class RayCluster:
    """`ray start` nodes in `ns`, their temporary folders under `shared`, logs in `logs`."""

    def __init__(self, ns: Namespace, shared: Path, logs: Path) -> None:
        self.ns, self.shared, self.logs = ns, shared, logs
        self.env = os.environ | {"RAY_USAGE_STATS_ENABLED": "0"}
        self.started: list[subprocess.Popen] = []

    def node(self, name: str, *args: str) -> None:
        with open(self.logs / f"ray-{name}.log", "wb") as log:
            self.started.append(
                subprocess.Popen(
                    [
                        *self.ns.prefix,
                        "ray",
                        "start",
                        "--block",
                        "--num-cpus",
                        "1",
                        "--disable-usage-stats",
                        "--temp-dir",
                        str(self.shared / name),
                        *args,
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    start_new_session=True,
                )
            )

    def nodes(self) -> list[str]:
        """The addresses of the cluster's live nodes; none while the head is starting."""
        with contextlib.suppress(AssertionError):
            return json.loads(
                self.ns.run(
                    sys.executable, "-c", NODES, f"{HEAD}:6379", env=self.env
                ).splitlines()[-1]
            )
        return []

    def start(self, timeout: float = 120) -> list[str]:
        """Start the head, then the worker; return the live nodes once both are (or at the
        timeout, those there are)."""
        self.node(
            "head",
            "--head",
            "--node-ip-address",
            HEAD,
            "--port",
            "6379",
            "--include-dashboard",
            "false",
        )
        deadline = time.monotonic() + timeout
        while not (found := self.nodes()) and time.monotonic() < deadline:
            time.sleep(1)
        self.node(
            "worker",
            "--address",
            f"{HEAD}:6379",
            "--node-ip-address",
            WORKER,
            "--dashboard-agent-listen-port",
            "52366",
        )
        while len(found := self.nodes()) < 2 and time.monotonic() < deadline:
            time.sleep(1)
        return found

    def output(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in self.logs.glob("*.log"))

    def stop(self) -> None:
        for proc in self.started:  # all at once: each node drains for up to 30 s
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.started:
            stop_group(proc)
