"""`cryospy serve` as systemd would run it, for tests: a real process with a real MinIO (started by serve),
readiness over a real sd_notify socket, its standard error a file named by ``$JOURNAL_STREAM`` (journald
format), stopped with SIGTERM."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import urllib.request
from pathlib import Path

from cryospy.infra.certificates import client_context
from cryospy.infra.deployment import Deployment
from tests.support import wait_for


class ServeProcess:
    """One run of ``<command> serve``; :meth:`terminate` returns its exit code."""

    def __init__(self, command: list[str], dep: Deployment, passphrase_file: Path, minio_binary: Path,
                 log_path: Path, *, cwd: Path | None = None, log_level: str = "debug") -> None:
        self.dep = dep
        self.log_path = log_path
        # A short path: a Unix socket's name must fit in 108 bytes, and pytest's tmp_path may not.
        self.notify_path = Path(tempfile.mkdtemp(prefix="cryospy-notify-")) / "socket"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.notify.settimeout(0.5)
        self.states: list[str] = []
        with open(log_path, "ab") as log:
            info = os.fstat(log.fileno())
            env = {**os.environ, "CRYOSPY_MINIO_BIN": str(minio_binary), "NOTIFY_SOCKET": str(self.notify_path),
                   "JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}", "PYTHONUNBUFFERED": "1"}
            env.pop("CRYOSPY_PASSPHRASE", None)
            self.proc = subprocess.Popen(
                [*command, "serve", "--data-dir", str(dep.data_dir), "--passphrase-file", str(passphrase_file),
                 "--log-level", log_level], cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def wait_ready(self, timeout: float = 120) -> None:
        """Until the process says READY=1 on the notify socket; the API must answer at once after it."""
        wait_for(lambda: "READY=1" in self._receive(), timeout=timeout, what="READY=1 from cryospy serve")
        with urllib.request.urlopen(f"{self.dep.runtime_url}/v1/health", timeout=10,
                                    context=client_context(self.dep)) as reply:   # setup's own CA under TLS
            assert reply.status == 200

    def _receive(self) -> list[str]:
        assert self.proc.poll() is None, f"cryospy serve exited early:\n{self.log_path.read_text()}"
        with contextlib.suppress(TimeoutError):
            self.states.append(self.notify.recv(4096).decode())
        return self.states

    def terminate(self, timeout: float = 120) -> int:
        """SIGTERM and wait; the exit code (again on later calls)."""
        if self.notify.fileno() == -1:
            return self.proc.wait()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.proc.kill()
            self.proc.wait()
            try:
                while True:
                    self.states.append(self.notify.recv(4096).decode())
            except TimeoutError:
                pass
            self.notify.close()
            shutil.rmtree(self.notify_path.parent, ignore_errors=True)
