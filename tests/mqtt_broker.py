"""A real MQTT broker for the tests: Debian's mosquitto with a config of the test's own (never the system
service). Two loopback listeners, both with a password file made by ``mosquitto_passwd``: plain TCP and TLS
with a CA and a server certificate this module makes with ``cryptography``; persistence off. ``./dev test``
installs mosquitto; without it the fixture skips, except when ``CI`` is set, where it fails.

:class:`Subscriber` is a paho client that keeps every message it sees (retained ones flagged), for asserts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import ipaddress
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cryospy.infra.minio_server import free_port

HOST = "127.0.0.1"
USER, PASSWORD = "cryospy", "broker-test-password"


def _cert(subject: str, issuer_key: ec.EllipticCurvePrivateKey | None, issuer: x509.Name | None,
          ca: bool) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, builder.sign(issuer_key or key, hashes.SHA256())


def _pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


@dataclass
class Broker:
    """One mosquitto process; ``stop()``/``start()`` take it away and bring it back on the same ports."""

    root: Path
    port: int
    tls_port: int
    ca_file: Path
    proc: subprocess.Popen[bytes] | None = None

    def settings(self, **overrides: object) -> dict[str, object]:
        """A ``channels.mqtt`` section for this broker (plain listener)."""
        return {"enabled": True, "host": HOST, "port": self.port, "username": USER, "password": PASSWORD,
                "retry_max_seconds": 2, **overrides}

    def start(self) -> Broker:
        log = open(self.root / "mosquitto.log", "ab")  # noqa: SIM115  (the process keeps it)
        self.proc = subprocess.Popen([shutil.which("mosquitto") or "mosquitto", "-c", str(self.root / "test.conf")],
                                     stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection((HOST, self.port), 0.2).close()
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.root / 'mosquitto.log').read_text()[-2000:]}")
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening in 10 s")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


def make_broker(root: Path) -> Broker:
    root.mkdir(parents=True, exist_ok=True)
    ca_key, ca = _cert("CryoSpy test CA", None, None, ca=True)
    key, cert = _cert("localhost", ca_key, ca.subject, ca=False)
    ca_file = _pem(root / "ca.pem", ca.public_bytes(serialization.Encoding.PEM))
    cert_file = _pem(root / "server.pem", cert.public_bytes(serialization.Encoding.PEM))
    key_file = _pem(root / "server.key", key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    passwords = root / "passwords"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwords), USER, PASSWORD], check=True,
                   capture_output=True)
    passwords.chmod(0o600)
    port, tls_port = free_port(HOST), free_port(HOST)
    (root / "test.conf").write_text(
        # As root, mosquitto would switch to the "mosquitto" user, which cannot read this private directory.
        f"user {getpass.getuser()}\n"
        "per_listener_settings false\npersistence false\nallow_anonymous false\n"
        f"password_file {passwords}\nlog_dest stderr\n"
        f"listener {port} {HOST}\n"
        f"listener {tls_port} {HOST}\ncafile {ca_file}\ncertfile {cert_file}\nkeyfile {key_file}\n")
    return Broker(root, port, tls_port, ca_file)


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    if not (shutil.which("mosquitto") and shutil.which("mosquitto_passwd")):
        message = "mosquitto is not installed (./dev test installs it: apt-get install mosquitto mosquitto-clients)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    broker = make_broker(tmp_path_factory.mktemp("mosquitto")).start()
    yield broker
    broker.stop()


class Subscriber:
    """Keeps (topic, payload, retained, arrival monotonic time) of everything under ``pattern``."""

    def __init__(self, broker: Broker, pattern: str = "#") -> None:
        self.messages: list[tuple[str, str, bool, float]] = []
        self.walls: list[tuple[str, str, bool, float]] = []     # the same with wall-clock arrival times
        self.lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{time.monotonic_ns()}")
        self.client.username_pw_set(USER, PASSWORD)
        self.client.on_message = self._keep
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(pattern, qos=1)
        self.client.connect(HOST, broker.port, 30)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the test subscriber could not subscribe")

    def _keep(self, _c: object, _u: object, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload.decode(), bool(msg.retain), time.monotonic()))
            self.walls.append((msg.topic, msg.payload.decode(), bool(msg.retain), time.time()))

    def on(self, topic: str) -> list[tuple[str, str, bool, float]]:
        with self.lock:
            return [m for m in self.messages if m[0] == topic]

    def last(self, topic: str) -> str | None:
        got = self.on(topic)
        return got[-1][1] if got else None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained(broker: Broker, pattern: str, settle_s: float = 1.0) -> dict[str, str]:
    """What the broker holds retained under ``pattern`` now (a fresh subscriber's retained messages)."""
    sub = Subscriber(broker, pattern)
    time.sleep(settle_s)
    sub.close()
    return {topic: payload for topic, payload, was_retained, _ in sub.messages if was_retained}
