"""A distributed MinIO for the tests: N server processes on loopback ports, each with drive folders of its own,
formatted as one erasure set, behind Debian's HAProxy as the one address CryoSpy talks to.

Each node gets the deployment's webhook target (``cryospy minio node-env`` prints the same variables). MinIO
insists that every node has the same MINIO_* values, so the queue folder is one path; on separate machines
that is a folder on each, here the nodes share it, which is harmless: a node replays only the events it
queued itself (MinIO lists the folder once, at start). ``./dev test`` installs HAProxy; without it the
fixture skips, except when ``CI`` is set, where it fails.

On one machine two more things differ from separate machines, both only in how the nodes find themselves:
MinIO sees the container marker this machine has (``/.dockerenv``) and then waits for node addresses that
resolve to loopback to "resolve to a valid IP" forever, so each node is told its own address with
``_MINIO_SERVER_LOCAL``; and the drive folders share the system disk, which MinIO refuses in erasure mode
unless ``MINIO_ROOTDRIVE_THRESHOLD_SIZE`` says no disk counts as the system's.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from cryospy.infra.deployment import Deployment
from cryospy.infra.minio_drives import drive_report
from cryospy.infra.minio_server import free_port, webhook_env

HOST = "127.0.0.1"


def _wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args[0]} exited ({proc.returncode}):\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not healthy within {timeout:.0f}s:\n{log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class MinioCluster:
    """``nodes`` MinIO servers with ``drives`` folders each, one erasure set, serving ``dep``'s root identity."""

    def __init__(self, binary: Path, root: Path, dep: Deployment, nodes: int = 4, drives: int = 2):
        self.binary, self.root, self.dep = binary, root, dep
        self.ports = [free_port(HOST) for _ in range(nodes)]
        self.drives = drives
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * nodes

    @property
    def addresses(self) -> list[str]:
        return [f"{HOST}:{port}" for port in self.ports]

    def endpoints(self) -> list[str]:
        # Every drive listed on its own (no ellipsis): one pool, one erasure set of nodes × drives.
        return [f"http://{address}{self.root}/node{n}/drive{d}"
                for n, address in enumerate(self.addresses, 1) for d in range(1, self.drives + 1)]

    def start(self, timeout: float = 60.0) -> MinioCluster:
        for n, address in enumerate(self.addresses, 1):
            for d in range(1, self.drives + 1):
                (self.root / f"node{n}" / f"drive{d}").mkdir(parents=True, exist_ok=True)
            events = self.root / "events"
            events.mkdir(parents=True, exist_ok=True)
            env = {k: v for k, v in os.environ.items() if not k.startswith("MINIO_")}
            env.update({"MINIO_ROOT_USER": self.dep.minio_root_user,
                        "MINIO_ROOT_PASSWORD": self.dep.minio_root_password,
                        "MINIO_BROWSER": "off", "MINIO_UPDATE": "off", "MINIO_ROOTDRIVE_THRESHOLD_SIZE": "1",
                        "_MINIO_SERVER_LOCAL": address, **webhook_env(self.dep, str(events))})
            log = open(self.root / f"node{n}.log", "ab")  # noqa: SIM115  (the child keeps it)
            self.procs[n - 1] = subprocess.Popen(
                [str(self.binary), "server", *self.endpoints(), "--address", address,
                 "--console-address", f"{HOST}:{free_port(HOST)}", "--quiet"],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            log.close()
        for n, address in enumerate(self.addresses, 1):
            proc = self.procs[n - 1]
            assert proc is not None
            _wait_http(f"http://{address}/minio/health/cluster", timeout, proc, self.root / f"node{n}.log")
        # /minio/health/cluster answers 200 before every node has connected every remote drive; until then an
        # IAM write (enrolling a camera) can miss its quorum. Wait until MinIO itself counts all drives online.
        first = replace(self.dep, minio_internal_url=f"http://{self.addresses[0]}")
        total = len(self.addresses) * self.drives
        deadline = time.monotonic() + timeout
        while (report := drive_report(first)).online != total or report.nodes_offline:
            assert time.monotonic() < deadline, f"the cluster never had all {total} drives online: {report}"
            time.sleep(0.2)
        return self

    def stop_node(self, index: int) -> None:
        """SIGTERM one node, as a machine shutting down does."""
        _stop(self.procs[index])

    def stop(self) -> None:
        for proc in self.procs:
            _stop(proc)


class Balancer:
    """HAProxy in HTTP mode, round robin over ``backends``, checking each on /minio/health/live every 0.5 s."""

    def __init__(self, backends: list[str], folder: Path, port: int = 0):
        self.backends, self.folder = backends, folder
        self.port = port or free_port(HOST)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def config(self) -> str:
        servers = "\n".join(f"  server node{i} {address} check inter 500ms fall 2 rise 2"
                            for i, address in enumerate(self.backends, 1))
        # MinIO answers 400 to a request without a Host header, hence HTTP/1.1 checks with one.
        # A connection refused by a node that went away is retried on another node (redispatch); a request
        # already sent to it fails and the client retries (presigned PUTs carry their body, HAProxy keeps none).
        return f"""global
  maxconn 512
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  retries 3
  option redispatch
frontend s3
  bind {HOST}:{self.port}
  default_backend minio
backend minio
  balance roundrobin
  option httpchk
  http-check send meth GET uri /minio/health/live ver HTTP/1.1 hdr Host minio
  http-check expect status 200
{servers}
"""

    def start(self) -> Balancer:
        haproxy = shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy",) if os.path.exists(p)), None)
        if haproxy is None:
            message = "HAProxy is not installed (./dev test installs Debian's haproxy)"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "haproxy.cfg"
        config.write_text(self.config())
        log_path = self.folder / "haproxy.log"
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen([haproxy, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        _wait_http(f"{self.url}/minio/health/live", 30, self.proc, log_path)
        return self

    def stop(self) -> None:
        _stop(self.proc)
