"""A real Ray cluster on 127.0.0.1 made with `ray start`, for the tests and benchmarks that need one.

Stopped by its own processes (those that name its temp dir, and their children): `ray stop --force`
would also stop any other Ray cluster of this user on the machine.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

RAY = Path(sys.executable).with_name("ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """A head node and `nodes - 1` more on this machine, each with `cpus` CPUs, on free ports."""

    def __init__(self, cwd: Path, env: dict[str, str], nodes: int = 2, cpus: int = 1) -> None:
        # Ray's socket paths live under its temp dir and must stay short (a Unix socket path has 107 bytes).
        self.temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
        self.cwd, self.nodes, self.cpus = cwd, nodes, cpus
        self.port = free_port()
        self.env = {**env, "RAY_USAGE_STATS_ENABLED": "0"}
        self.second: psutil.Process | None = None
        """The second node's raylet, when there is one."""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ray_start(self, *args: str) -> None:
        ports = ["--dashboard-agent-listen-port", str(free_port()), "--metrics-export-port", str(free_port())]
        res = subprocess.run([str(RAY), "start", "--node-ip-address", "127.0.0.1", "--num-cpus", str(self.cpus),
                              *ports, *args], cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=90)
        assert res.returncode == 0, res.stdout + res.stderr

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.ray_start("--head", "--port", str(self.port), "--include-dashboard", "false", "--disable-usage-stats",
                       "--temp-dir", str(self.temp), "--dashboard-port", str(free_port()))
        for _ in range(self.nodes - 1):
            before = {p.pid for p in self.raylets()}
            self.ray_start("--address", self.address)
            if self.second is None:
                (self.second,) = [p for p in self.raylets() if p.pid not in before]

    def processes(self) -> list[psutil.Process]:
        """Every live process of this cluster: those that name its temp dir, and their descendants (the
        workers, which rename themselves ray::IDLE, ray::work ...)."""
        found: dict[int, psutil.Process] = {}
        for p in psutil.process_iter(["cmdline"]):
            if any(str(self.temp) in arg for arg in p.info["cmdline"] or ()):
                found[p.pid] = p
                try:
                    found.update((c.pid, c) for c in p.children(recursive=True))
                except psutil.Error:
                    pass
        return list(found.values())

    def raylets(self) -> list[psutil.Process]:
        return [p for p in self.processes() if p.name() == "raylet"]

    def second_node(self) -> list[psutil.Process]:
        """The second node's raylet and everything it started (its workers and agents)."""
        try:
            return [self.second, *self.second.children(recursive=True)] if self.second else []
        except psutil.Error:
            return []

    def stop(self) -> None:
        for _ in range(3):
            procs = self.processes()
            if not procs:
                break
            for p in procs:
                try:
                    p.send_signal(signal.SIGKILL)
                except psutil.Error:
                    pass
            psutil.wait_procs(procs, timeout=10)
        shutil.rmtree(self.temp, ignore_errors=True)
