"""Run the deployment's MinIO server: one drive (minio/data), or erasure-coded across the deployment's drives.

The webhook target is configured through environment variables (not the admin API), because MinIO tests a
target's reachability when it is set through the API but not at start-up, so the server can come up before
the runtime does. ``queue_dir`` makes MinIO persist every event until the runtime acknowledges it with a
2xx, so a runtime outage delays events but never loses them.

With several drives (``minio_drives``, minio_drives.py) MinIO starts once enough of them answer for a quorum,
so a dead disk does not keep the deployment down; a missing drive folder is not created here (that would put
its share of the footage on whatever disk holds the mount point), MinIO reports it offline instead.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from . import certificates
from .deployment import Deployment
from .errors import MinioStartError, PortInUse
from .minio_binary import Progress, _stderr_progress, ensure_minio

WEBHOOK_TARGET = "CRYOSPY"
WEBHOOK_ARN = f"arn:minio:sqs::{WEBHOOK_TARGET}:webhook"
CONSOLE_HOST = "127.0.0.1"   # the console is off (MINIO_BROWSER=off); its port stays off the LAN all the same


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def require_free(host: str, port: int, what: str) -> None:
    if not port_is_free(host, port):
        raise PortInUse(
            f"port {port} on {host} is already in use, so {what} cannot listen there. Stop whatever uses it "
            f"(`ss -ltnp 'sport = :{port}'` shows it), or pass another port."
        )


def drive_paths(dep: Deployment) -> list[Path]:
    """The folders MinIO serves: the deployment's drives (minio_drives.py), or its one default drive."""
    return [Path(p) for p in dep.minio_drives] or [dep.path("minio", "data")]


def webhook_targets(dep: Deployment) -> list[tuple[str, str]]:
    """(target name, endpoint) per runtime: CRYOSPY for the first (or only) one, CRYOSPY2… for the others.

    Each runtime has a target (and a persistent queue) of its own, so MinIO delivers every event to every
    runtime and a dead runtime only delays its own copy; the job queue in PostgreSQL de-duplicates by event
    identity, so each event is handled once (docs/scale-out.md)."""
    urls = dep.runtime_urls or (dep.runtime_url,)
    return [(WEBHOOK_TARGET if i == 0 else f"{WEBHOOK_TARGET}{i + 1}", f"{url.rstrip('/')}/_minio/events")
            for i, url in enumerate(urls)]


def webhook_arns(dep: Deployment) -> list[str]:
    return [f"arn:minio:sqs::{name}:webhook" for name, _ in webhook_targets(dep)]


def webhook_env(dep: Deployment, queue_dir: str) -> dict[str, str]:
    """The webhook targets every MinIO server of the deployment needs (each with a queue folder of its own;
    MinIO keeps each target's queue in a subfolder of it)."""
    env: dict[str, str] = {}
    for name, endpoint in webhook_targets(dep):
        env.update({
            f"MINIO_NOTIFY_WEBHOOK_ENABLE_{name}": "on",
            f"MINIO_NOTIFY_WEBHOOK_ENDPOINT_{name}": endpoint,
            f"MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_{name}": dep.webhook_token,
            f"MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_{name}": queue_dir,
            f"MINIO_NOTIFY_WEBHOOK_QUEUE_LIMIT_{name}": "100000",
        })
    return env


def minio_env(dep: Deployment) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIO_")}
    # MinIO shrinks its buffers when CI is set; that is fine, but do not let it change anything else.
    env.update({
        "MINIO_ROOT_USER": dep.minio_root_user,
        "MINIO_ROOT_PASSWORD": dep.minio_root_password,
        "MINIO_BROWSER": "off",
        "MINIO_UPDATE": "off",
        **webhook_env(dep, str(dep.path("minio", "events").resolve())),
    })
    if dep.minio_parity:
        env["MINIO_STORAGE_CLASS_STANDARD"] = f"EC:{dep.minio_parity}"
    if dep.minio_drives_share_disk:
        # MinIO treats a drive as the system's when its disk is at most this size: 1 byte = never.
        env["MINIO_ROOTDRIVE_THRESHOLD_SIZE"] = "1"
    return env


class MinioServer:
    """A MinIO child process. Use as a context manager or call start()/stop()."""

    def __init__(self, dep: Deployment, *, binary: Path | None = None, progress: Progress = _stderr_progress):
        self.dep = dep
        self.binary = binary
        self.progress = progress
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = dep.path("logs", "minio.log")

    def start(self, timeout: float = 60.0) -> MinioServer:
        binary = self.binary or ensure_minio(self.progress)
        require_free(self.dep.host, self.dep.minio_port, "MinIO")
        require_free(CONSOLE_HOST, self.dep.minio_console_port, "the MinIO console")
        drives = drive_paths(self.dep)
        own = [] if self.dep.minio_drives else drives   # the default drive lives in the data dir: create it
        try:
            for folder in (*own, self.dep.path("minio", "events"), self.log_path.parent):
                folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            log = os.fdopen(os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")
        except OSError as exc:
            raise MinioStartError(
                f"cannot prepare MinIO's directories under {self.dep.path('minio')}: {exc.strerror} "
                f"({exc.filename}). Check that the path is a writable directory and the disk is not full; the "
                f"server log would be {self.log_path}."
            ) from None
        cmd = [str(binary), "server", *(str(d) for d in drives),
               "--address", f"{self.dep.host}:{self.dep.minio_port}",
               "--console-address", f"{CONSOLE_HOST}:{self.dep.minio_console_port}", "--quiet"]
        if self.dep.tls:
            # public.crt/private.key serve S3; CAs/ holds the deployment's CA, which MinIO then trusts for its
            # webhook calls to the runtime (whose certificate the same CA signed).
            cmd += ["--certs-dir", str(certificates.ensure_server_certificates(self.dep).minio_certs_dir.resolve())]
        # umask 077: MinIO writes its IAM (the handler identity's secret), config and objects 0600/0700
        # rather than world-readable 0644.
        self.proc = subprocess.Popen(cmd, env=minio_env(self.dep), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, umask=0o077)
        log.close()
        try:
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_healthy(self, timeout: float) -> None:
        """Poll /minio/health/cluster: unlike live/ready it answers 200 only once IAM and buckets are loaded."""
        url = f"{self.dep.minio_url}/minio/health/cluster"
        context = certificates.client_context(self.dep)
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise MinioStartError(
                    f"MinIO exited with code {self.proc.returncode} during start-up. Its log is "
                    f"{self.log_path}:\n{self._log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2, context=context) as resp:
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.2)
        raise MinioStartError(
            f"MinIO did not become healthy at {url} within {timeout:.0f}s (last: {last}). Check free disk "
            f"space and the log {self.log_path}:\n{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-15:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> MinioServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
