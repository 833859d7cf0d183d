"""A real Docker engine for the Compose test, started and stopped by the test itself.

``./dev test`` installs Debian's ``docker.io`` (``dockerd``; its service is never started) and ``debootstrap``,
builds Docker Compose v2 from its module source and makes a Debian bookworm root filesystem, both cached in
``~/.cache/cryospy/docker``. Here:

- ``dockerd`` runs with its own exec root and socket under a short temporary directory, and its data root in the
  cache (so image layers and BuildKit's Go and pip caches survive between runs: the warm path);
- ``docker`` is Debian's CLI with the cached Compose binary as its only plugin (a private ``DOCKER_CONFIG``);
- no registry is reachable, so the base images are local: ``cryospy-test/bookworm`` (the root filesystem,
  imported, plus the CAs this machine trusts: its registries may sit behind a TLS-inspecting proxy) and
  ``cryospy-test/golang`` (that plus this machine's Go toolchain, what ``golang:1.26`` holds).

``dockerd`` adds a ``docker0`` bridge and iptables rules (and sets the FORWARD policy to DROP), and leaves a
network namespace mounted under its exec root. The engine notes the iptables tables and whether ``docker0``
existed before it starts, and after it stops puts both back and unmounts what dockerd left.

Without root or the prerequisites the engine is skipped with the reason, except when ``CI`` is set, where it
fails: CI on this kind of machine must run it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

COMPOSE_VERSION = "v2.40.3"
ROOTFS_IMAGE = "cryospy-test/rootfs"      # the debootstrapped bookworm, as imported
BASE_IMAGE = "cryospy-test/bookworm"
GO_IMAGE = "cryospy-test/golang"
DOCKER = "/usr/bin/docker"          # Debian's CLI, the engine's own version (another may be earlier on PATH)


BRIDGE = Path("/sys/class/net/docker0")
# What a table looks like when nothing has touched it; restored for tables that had no rules before.
_EMPTY_TABLES = {
    "filter": "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n",
    "nat": "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
           "COMMIT\n",
}


def _iptables_state() -> str:
    """The filter and nat tables as iptables-restore takes them back (empty ones spelled out)."""
    saved = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    return saved + "".join(empty for table, empty in _EMPTY_TABLES.items() if f"*{table}" not in saved)


def _mounts_under(root: Path) -> list[str]:
    with open("/proc/mounts") as mounts:
        return [line.split()[1] for line in mounts if line.split()[1].startswith(f"{root}/")]


def cache_dir() -> Path:
    return Path(os.environ.get("CRYOSPY_CACHE", Path.home() / ".cache" / "cryospy")) / "docker"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"the Docker test cannot run on this CI machine: {reason} (./dev test prepares it)")
    pytest.skip(reason)


class DockerEngine:
    def __init__(self, root: Path, data_root: Path, config_dir: Path):
        self.root = root
        self.sock = root / "docker.sock"
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.sock}", "DOCKER_CONFIG": str(config_dir),
                    "DOCKER_BUILDKIT": "1", "COMPOSE_PROGRESS": "plain"}
        self.env.pop("DOCKER_CONTEXT", None)
        self.data_root = data_root
        self.log = root / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._iptables = ""
        self._had_bridge = False

    def start(self) -> None:
        self._iptables = _iptables_state()
        self._had_bridge = BRIDGE.exists()
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                ["dockerd", "--data-root", str(self.data_root), "--exec-root", str(self.root / "exec"),
                 "--pidfile", str(self.root / "dockerd.pid"), "-H", f"unix://{self.sock}"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while self.run("version", check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"dockerd did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self.proc = None
        # dockerd leaves its default network namespace bind-mounted under the exec root (host networking).
        for point in sorted(_mounts_under(self.root), reverse=True):
            subprocess.run(["umount", point], capture_output=True, check=True)
        subprocess.run(["iptables-restore"], input=self._iptables, text=True, capture_output=True, check=True)
        if not self._had_bridge and BRIDGE.exists():
            subprocess.run(["ip", "link", "delete", "docker0"], capture_output=True, check=True)

    def run(self, *args: str, check: bool = True, timeout: float = 120, input: bytes | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([DOCKER, *args], env=self.env, capture_output=True, timeout=timeout, cwd=cwd,
                              input=input.decode() if input is not None else None, text=True)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc

    def has_image(self, name: str) -> bool:
        return self.run("image", "inspect", name, check=False).returncode == 0

    def ensure_base_images(self, rootfs_tar: Path) -> None:
        """Import the debootstrapped root filesystem with this machine's trusted CAs (its package registries may
        sit behind a TLS-inspecting egress proxy), and add Go to it for MinIO's build stage."""
        if not self.has_image(ROOTFS_IMAGE):
            with rootfs_tar.open("rb") as tar:
                proc = subprocess.run([DOCKER, "import", "-", ROOTFS_IMAGE], env=self.env, stdin=tar,
                                      capture_output=True, timeout=600)
            assert proc.returncode == 0, proc.stderr.decode()
        if not self.has_image(BASE_IMAGE):
            local_cas = Path("/usr/local/share/ca-certificates")
            local_cas.mkdir(parents=True, exist_ok=True)
            bundle = "/etc/ssl/certs/ca-certificates.crt"
            dockerfile = (f"FROM {ROOTFS_IMAGE}\n"
                          "COPY . /usr/local/share/ca-certificates/\n"
                          "RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates "
                          "&& rm -rf /var/lib/apt/lists/* && update-ca-certificates\n"
                          f"ENV SSL_CERT_FILE={bundle} PIP_CERT={bundle}\n")
            self.run("build", "-t", BASE_IMAGE, "-f", "-", str(local_cas), input=dockerfile.encode(), timeout=900)
        if not self.has_image(GO_IMAGE):
            goroot = Path(subprocess.check_output(["go", "env", "GOROOT"], text=True).strip())
            dockerfile = (f"FROM {BASE_IMAGE}\n"
                          "COPY . /usr/local/go\n"
                          "ENV PATH=/usr/local/go/bin:/root/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:"
                          "/usr/bin:/sbin:/bin GOPATH=/root/go\n")
            self.run("build", "-t", GO_IMAGE, "-f", "-", str(goroot), input=dockerfile.encode(), timeout=900)


@contextmanager
def docker_engine() -> Iterator[DockerEngine]:
    if os.geteuid() != 0:
        _unavailable("the Docker test needs root (dockerd, iptables)")
    cache = cache_dir()
    compose = cache / f"docker-compose-{COMPOSE_VERSION}"
    rootfs = cache / "bookworm-minbase.tar"
    missing = [what for what, ok in (("dockerd (apt-get install docker.io)", shutil.which("dockerd")),
                                     (f"the Docker CLI at {DOCKER}", Path(DOCKER).exists()),
                                     (f"Docker Compose at {compose}", compose.exists()),
                                     (f"the base root filesystem {rootfs}", rootfs.exists()),
                                     ("go (for the local golang image)", shutil.which("go")))
               if not ok]
    if missing:
        _unavailable("missing " + ", ".join(missing) + "; ./dev test installs and builds them")
    root = Path(tempfile.mkdtemp(prefix="cryospy-dk-", dir="/tmp"))   # a unix socket path must stay short
    plugins = root / "config" / "cli-plugins"
    plugins.mkdir(parents=True)
    (plugins / "docker-compose").symlink_to(compose)
    data_root = cache / "engine"
    data_root.mkdir(parents=True, exist_ok=True)
    engine = DockerEngine(root, data_root, root / "config")
    engine.start()
    try:
        engine.ensure_base_images(rootfs)
        yield engine
    finally:
        engine.stop()
        shutil.rmtree(root)
