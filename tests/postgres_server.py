"""A real PostgreSQL for the tests: Debian's PostgreSQL 15 server binaries (``initdb``, ``pg_ctl``) running a
cluster of the session's own in a temporary directory, on a free loopback port, never the system service.

Password authentication (scram-sha-256) is on, so tests can show that the password stays out of logs. As
root, the cluster runs as the ``postgres`` user (PostgreSQL refuses to run as root). Each test that wants a
clean slate takes :meth:`PostgresServer.fresh_url`: a schema of its own in the one database, selected by the
URL's ``options`` (cheaper than a database per test). ``./dev test`` installs the server; without it the
fixture skips, except when ``CI`` is set, where it fails.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from cryospy.infra.minio_server import free_port

HOST = "127.0.0.1"
USER, PASSWORD, DATABASE = "cryospy", "pg-test-password-7f3a", "cryospy"
BIN_DIRS = ("/usr/lib/postgresql/15/bin",)


def server_binary(name: str) -> str | None:
    for folder in BIN_DIRS:
        if (Path(folder) / name).is_file():
            return str(Path(folder) / name)
    return shutil.which(name)


def _as_server_user() -> list[str]:
    """The command prefix that runs a server binary as a user PostgreSQL accepts."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]


@dataclass
class PostgresServer:
    root: Path
    port: int
    fsync: bool = False   # off for the tests (speed; nothing here must survive a power cut)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://{USER}:{quote(PASSWORD)}@{HOST}:{self.port}/{DATABASE}"

    def fresh_url(self) -> str:
        """A URL whose tables land in a new, empty schema (one per test)."""
        schema = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        return f"{self.url}?options={quote(f'-c search_path={schema}')}"

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run([*_as_server_user(), server_binary("pg_ctl") or "pg_ctl", "-D", str(self.data), *args],
                       check=True, capture_output=True)

    def start(self, create: bool = True) -> PostgresServer:
        """Start the server; ``create=False`` restarts one whose database exists already."""
        options = f"-p {self.port} -k {self.root} -c listen_addresses={HOST} -c fsync={'on' if self.fsync else 'off'}"
        self._pg_ctl("-w", "-t", "60", "-l", str(self.root / "server.log"), "-o", options, "start")
        if not create:
            return self
        with psycopg.connect(f"postgresql://{USER}:{quote(PASSWORD)}@{HOST}:{self.port}/postgres",
                             autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        return self

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: SIGINT to the postmaster, which PostgreSQL takes as a fast shutdown."""
        self._pg_ctl("-w", "-m", "fast", "stop")

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


def make_server(root: Path, fsync: bool = False) -> PostgresServer:
    initdb = server_binary("initdb")
    assert initdb is not None
    root.mkdir(parents=True, exist_ok=True)
    (root / "pwfile").write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        for path in (root, root / "pwfile"):
            os.chown(path, pw.pw_uid, pw.pw_gid)
    root.chmod(0o700)
    subprocess.run([*_as_server_user(), initdb, "-D", str(root / "data"), "-U", USER, "--auth=scram-sha-256",
                    f"--pwfile={root / 'pwfile'}", "-E", "UTF8", "--no-instructions"],
                   check=True, capture_output=True)
    return PostgresServer(root, free_port(HOST), fsync)


def start_for_bench(fsync: bool = True) -> PostgresServer:
    """A private server for a benchmark (bench/), in a temporary folder; exits with the reason if PostgreSQL's
    server is not installed. Stop it with :func:`stop_for_bench`."""
    message = postgres_missing_message()
    if message:
        sys.exit(message)
    return make_server(Path(tempfile.mkdtemp(prefix="bench-pg-")), fsync=fsync).start()


def stop_for_bench(server: PostgresServer) -> None:
    server.stop()
    shutil.rmtree(server.root, ignore_errors=True)


def postgres_missing_message() -> str | None:
    if server_binary("initdb") and server_binary("pg_ctl"):
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return "running as root and there is no 'postgres' user to run PostgreSQL as"
        return None
    return "PostgreSQL's server is not installed (./dev test installs it: apt-get install postgresql-15)"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    message = postgres_missing_message()
    if message:
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    # Not under pytest's tmp_path: that is private to root, and the server runs as 'postgres'.
    root = Path(tempfile.mkdtemp(prefix="cryospy-pg-"))
    server = make_server(root).start()
    yield server
    server.stop()
    if not os.environ.get("CRYOSPY_KEEP_TEST_DATA"):
        shutil.rmtree(root, ignore_errors=True)
