"""A real Celery worker process for integration tests, against the test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil

# Short deadlines so fault tests finish in seconds: the lease is the soft time limit plus
# a margin, exactly as in production, only smaller.
WORKER_ENV = {
    "HITL_STEP_SOFT_TIME_LIMIT": "3",
    "HITL_STEP_HARD_TIME_LIMIT": "5",
    "HITL_STEP_LEASE_SECONDS": "4",
    "HITL_EXTRA_STEP_KINDS": "tests.kinds",
    # Callbacks go to a receiver on loopback in the test process; a delivery's lease outlasts
    # the send task's time limits (80% and 90% of it) and the timeouts, as in production.
    "HITL_OUTBOUND_ALLOW": "127.0.0.1",
    "HITL_OUTBOUND_CONNECT_TIMEOUT": "1",
    "HITL_OUTBOUND_READ_TIMEOUT": "3",
    "HITL_DELIVERY_LEASE_SECONDS": "8",
    # Readiness (hitl/health.py): a heartbeat every second, so a test sees one come soon.
    "HITL_HEALTH_HEARTBEAT_SECONDS": "1",
}


def database_url_for(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def worker_database_url(name: str) -> str:
    """The test database `name`, as the application's role when the tests have one."""
    return database_url_for(
        os.environ.get("DATABASE_RUNTIME_URL") or os.environ["DATABASE_URL"], name
    )


class Worker:
    def __init__(
        self, database_url: str, log_path: Path, *, concurrency: int = 1, include: str = ""
    ):
        self.env = {**os.environ, **WORKER_ENV, "DATABASE_URL": database_url}
        self.log_path = log_path
        self.concurrency = concurrency
        self.include = include
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        log = self.log_path.open("ab")
        mark = log.tell()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "hitl",
                "worker",
                "--pool=prefork",
                f"--concurrency={self.concurrency}",
                *([f"--include={self.include}"] if self.include else []),
                "-Q",
                "default,ai,callbacks",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "info",
                "-n",
                f"test-{os.getpid()}@%h",
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.log_path.open("rb") as handle:
                handle.seek(mark)
                if b" ready." in handle.read():
                    return
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited at start; see {self.log_path}")
            time.sleep(0.1)
        raise RuntimeError(f"worker did not become ready; see {self.log_path}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return []

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill_hard(self) -> None:
        """kill -9 the whole worker, pool children included, as a crashed machine would."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def kill_child(self) -> int:
        """kill -9 only the pool's child process; the main process lives on."""
        children = self.children()
        assert children, "the prefork pool has no child"
        children[0].kill()
        return children[0].pid

    def stop(self) -> None:
        if self.alive():
            assert self.process is not None
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)

    def ensure_running(self) -> None:
        if not self.alive():
            self.start()
