"""Shared fixtures. The integration tier starts real services on free loopback ports:

* ``minio_binary`` finds or builds MinIO once (the build prints progress);
* ``deployment`` / ``minio`` – one deployment and one MinIO server for the whole session;
* ``runtime`` – a fresh runtime per test (tests may stop and restart it), unlocked with the passphrase;
* ``rtsp_camera`` / ``rtsp_media`` – a real RTSP camera for the whole session and its media files
  (``tests/rtsp_camera/fixture.py``);
* ``mqtt_broker`` – Debian's mosquitto with a config of its own (``tests/mqtt_broker.py``);
* ``postgres`` – Debian's PostgreSQL 15 in a cluster of the session's own (``tests/postgres_server.py``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cryospy.cli.setup_cmd import setup
from cryospy.infra.deployment import Deployment
from cryospy.infra.minio_binary import ensure_minio
from cryospy.infra.minio_server import MinioServer, free_port
from tests.mqtt_broker import mqtt_broker  # noqa: F401  (fixture for every test)
from tests.postgres_server import postgres  # noqa: F401  (fixture for every test)
from tests.rtsp_camera.fixture import rtsp_camera, rtsp_media  # noqa: F401  (fixtures for every test)

PASSPHRASE = "correct horse battery staple"
FAST_SCRYPT_N = 2**10  # tests only: the production default is 2**16


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """Tests that call the CLI's main() in this process get its logging set-up (configure_logging replaces the
    root logger's handlers with one on the stderr of the moment); put pytest's back after each test, so a later
    test's caplog still sees its logs and nothing writes to a capture stream pytest has closed."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="session")
def minio_binary() -> Path:
    return ensure_minio()


@pytest.fixture(scope="session")
def session_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cryospy-tests-"))
    yield path
    if not os.environ.get("CRYOSPY_KEEP_TEST_DATA"):
        shutil.rmtree(path, ignore_errors=True)


def new_deployment(data_dir: Path) -> Deployment:
    """Plain HTTP (``tls=False``): these tests are about other things; tests/integration/test_tls.py runs the
    same pipeline over TLS, which is what `cryospy setup` makes by default."""
    host = "127.0.0.1"
    return setup(data_dir, PASSPHRASE, scrypt_n=FAST_SCRYPT_N, tls=False, runtime_port=free_port(host),
                 minio_port=free_port(host), minio_console_port=free_port(host))


@pytest.fixture(scope="session")
def deployment(session_dir: Path) -> Deployment:
    return new_deployment(session_dir / "deployment")


@pytest.fixture(scope="session")
def minio(deployment: Deployment, minio_binary: Path) -> Iterator[MinioServer]:
    server = MinioServer(deployment, binary=minio_binary).start()
    yield server
    server.stop()


@pytest.fixture
def runtime(deployment: Deployment, minio: MinioServer) -> Iterator[object]:
    from cryospy.infra.runtime import Runtime, RuntimeOptions

    rt = Runtime(deployment, RuntimeOptions(reconcile_seconds=3600))
    rt.unlock(PASSPHRASE)
    rt.start()
    yield rt
    rt.stop()


@pytest.fixture
def mailing_runtime(deployment: Deployment, minio: MinioServer) -> Iterator[tuple[object, object]]:
    """A runtime whose alerts go to a real SMTP server in this process (``SmtpSink``); yields (runtime, sink)."""
    from cryospy.infra.runtime import Runtime, RuntimeOptions
    from cryospy.infra.server_config import ServerConfig
    from tests.smtp_sink import SmtpSink

    with SmtpSink() as smtp:
        config = ServerConfig(smtp=smtp.settings(), alert_recipients=("owner@test.invalid",))
        rt = Runtime(deployment, RuntimeOptions(reconcile_seconds=3600), config)
        rt.unlock(PASSPHRASE)
        rt.start()
        try:
            yield rt, smtp
        finally:
            rt.stop()
