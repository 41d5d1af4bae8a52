"""Starts a real browserd for the tests and stops it with SIGTERM.

The binary comes from ``BROWSERD_BIN`` (default: the repo's debug build).
Both listeners take port 0; the bound addresses are read from the
"browserd listening" log line, then gRPC health is polled until SERVING
(over TLS, trusting ``ca_pem``, when the server is given a certificate in
``args``). ``create_key`` makes API keys with the same binary, offline,
before a server starts on that data dir.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
SERVICE = "browserd.v1.SessionService"
LISTENING = re.compile(r"browserd listening.*\bgrpc=(\S+).*\bcdp=(\S+)")


def browserd_bin() -> str:
    return os.environ.get("BROWSERD_BIN") or str(REPO / "target" / "debug" / "browserd")


KEY_PREFIX = "browserd_"


def create_key(data_dir: str, project: str, admin: bool = False) -> str:
    """``browserd keys create --data-dir``: writes a key for ``project``
    (created if missing) straight into the data dir's database, no server
    needed, and returns the key, which the command prints alone on stdout.
    A server started on the data dir afterwards requires keys."""
    args = [browserd_bin(), "keys", "create", "--project", project, "--data-dir", data_dir,
            "--description", f"examples/python test key for {project}"]
    if admin:
        args.append("--admin")
    done = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[1:])} exited with {done.returncode}:\n{done.stderr}")
    lines = done.stdout.splitlines()
    if len(lines) != 1 or not lines[0].startswith(KEY_PREFIX):
        raise RuntimeError(f"keys create printed {done.stdout!r}, not one key line")
    return lines[0]


def key_id(key: str) -> str:
    """The id in ``browserd_<16 hex id>_<secret>``: events name their actor
    ``key/<id>``."""
    return key[len(KEY_PREFIX):].split("_", 1)[0]


class Browserd:
    def __init__(
        self,
        data_dir: str | None = None,
        start_timeout: float = 60.0,
        args: tuple[str, ...] = (),
        ca_pem: bytes | None = None,
    ) -> None:
        self._tmp = None if data_dir else tempfile.TemporaryDirectory(prefix="browserd-py-")
        self.data_dir = data_dir or self._tmp.name
        self.log: list[str] = []
        self.grpc_addr = ""
        self.cdp_addr = ""
        self.ca_pem = ca_pem
        env = dict(os.environ, RUST_LOG="info", NO_COLOR="1")
        self.proc = subprocess.Popen(
            [
                browserd_bin(), "serve",
                "--listen", "127.0.0.1:0",
                "--cdp-listen", "127.0.0.1:0",
                "--data-dir", self.data_dir,
                "--warm-pool", "0",
                # The examples' sites run on this machine's loopback, which
                # browserd's egress policy refuses unless allowed (its own
                # ports stay closed to pages whatever this says).
                "--egress-allow", "127.0.0.1",
                *args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._listening = threading.Event()
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        try:
            self._wait_ready(start_timeout)
        except BaseException:
            self.kill()
            raise

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line.rstrip("\n"))
            m = LISTENING.search(line)
            if m and not self._listening.is_set():
                self.grpc_addr, self.cdp_addr = m.group(1), m.group(2)
                self._listening.set()
        self._listening.set()  # EOF: the process is gone; let waiters see it

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if not self._listening.wait(timeout) or not self.grpc_addr:
            raise RuntimeError(f"browserd did not report its addresses:\n{self.tail()}")
        with self.channel() as channel:
            health = health_pb2_grpc.HealthStub(channel)
            last: Exception | None = None
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"browserd exited with {self.proc.returncode}:\n{self.tail()}")
                try:
                    reply = health.Check(
                        health_pb2.HealthCheckRequest(service=SERVICE), timeout=2, wait_for_ready=True
                    )
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                    last = RuntimeError(f"health is {reply.status}")
                except grpc.RpcError as e:
                    last = e
                time.sleep(0.05)  # poll interval, not synchronisation
        raise RuntimeError(f"browserd not SERVING after {timeout}s ({last}):\n{self.tail()}")

    def channel(self) -> grpc.Channel:
        """A gRPC channel to this server: TLS trusting ``ca_pem`` if given."""
        if self.ca_pem is None:
            return grpc.insecure_channel(self.grpc_addr)
        credentials = grpc.ssl_channel_credentials(root_certificates=self.ca_pem)
        return grpc.secure_channel(self.grpc_addr, credentials)

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log[-n:])

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, wait, and return the exit code (the caller asserts on it)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise RuntimeError(f"browserd ignored SIGTERM for {timeout}s:\n{self.tail()}")
        self._reader.join(timeout=5)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cleanup(self) -> None:
        self.kill()
        if self._tmp is not None:
            self._tmp.cleanup()
