"""Test helpers that act like a device: enrol, seal a clip, ask for a slot, upload."""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cryospy.cli.devices import create_device
from cryospy.common.keys import DeploymentPublicKey, signing_key_from_text
from cryospy.common.objectkeys import clip_key
from cryospy.common.sealed import ZERO_HASH, seal
from cryospy.common.timefmt import utc_stamp
from cryospy.edge_agent.agent import Agent
from cryospy.edge_agent.api_client import ApiClient, Slot
from cryospy.edge_agent.config import AgentConfig, load_config, parse_config
from cryospy.infra.deployment import Deployment
from tests.conftest import PASSPHRASE

_SAMPLE: dict[tuple[float, int, int], bytes] = {}


def sample_clip(seconds: float = 2.0, width: int = 160, height: int = 96) -> bytes:
    """A real fragmented-MP4 H.264 clip, made once per size and cached for the session."""
    key = (seconds, width, height)
    if key not in _SAMPLE:
        import tempfile

        from cryospy.edge_agent.synthetic import make_sample_video

        with tempfile.TemporaryDirectory() as tmp:
            path = make_sample_video(Path(tmp) / "s.mp4", seconds=seconds, width=width, height=height, fps=10)
            _SAMPLE[key] = path.read_bytes()
    return _SAMPLE[key]


def clip_with_meta(motion: bool, peak_s: float = 1.0, seconds: float = 2.0) -> bytes:
    """A sample clip with the agent's metadata box appended (what a real agent uploads)."""
    from cryospy.common.clipmeta import encode_meta_box

    summary = {"motion": motion, "score": 0.2 if motion else 0.0, "peak_s": peak_s if motion else None,
               "intervals": [{"start_s": 0.5, "end_s": 1.5, "peak_score": 0.2}] if motion else [],
               "frames_analysed": 20, "suppressed_global_changes": 0}
    return sample_clip(seconds) + encode_meta_box({"motion": summary, "agent_version": "test"})


class ClipSealer:
    """Seals clips exactly as the agent does (its object keys, its chain, its keys); uploads nothing."""

    def __init__(self, storage_token: str, recipient: DeploymentPublicKey, signer: Ed25519PrivateKey) -> None:
        self.storage_token = storage_token
        self.recipient = recipient
        self.signer = signer
        self.sequence = 0
        self.prev_hash = ZERO_HASH
        self.t0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    def sealed(self, payload: bytes | None = None, captured_at: datetime | None = None) -> tuple[str, bytes, str]:
        captured_at = captured_at or self.t0 + timedelta(seconds=10 * self.sequence)
        key = clip_key(self.storage_token, captured_at, self.sequence)
        out = io.BytesIO()
        header = seal(io.BytesIO(payload if payload is not None else sample_clip()), out, object_key=key.key,
                      device_id=self.storage_token, sequence=self.sequence, captured_at=key.captured_at,
                      content_type="video/mp4", prev_hash=self.prev_hash, recipient=self.recipient,
                      signer=self.signer)
        self.prev_hash = header.header_hash
        self.sequence += 1
        stamp = utc_stamp(key.captured_at)
        return key.key, out.getvalue(), stamp


class FakeCamera(ClipSealer):
    """Seals and uploads clips exactly as the agent does, but on demand."""

    def __init__(self, dep: Deployment, device_id: str, tmp: Path):
        doc = create_device(dep, device_id, None, {})
        self.config: AgentConfig = parse_config(doc, tmp)
        self.client = ApiClient(self.config)
        super().__init__(self.config.storage_token, DeploymentPublicKey.from_text(self.config.deployment_public_key),
                         signing_key_from_text(self.config.signing_key))   # from its enrolment config
        self.confirm = True   # as the agent does; tests of the notification path alone turn it off

    def slot_for(self, data: bytes, stamp: str, sequence: int) -> Slot:
        return self.client.request_slot({"size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                                         "captured_at": stamp, "sequence": sequence})

    def reserve(self, payload: bytes | None = None) -> tuple[Slot, bytes]:
        """Seal the next clip and get its upload slot (needs the API) without uploading it yet."""
        key, data, stamp = self.sealed(payload)
        slot = self.slot_for(data, stamp, self.sequence - 1)
        assert slot.key == key
        return slot, data

    def upload(self, payload: bytes | None = None) -> str:
        return self.put(*self.reserve(payload))

    def put(self, slot: Slot, data: bytes) -> str:
        """PUT to MinIO directly (needs only MinIO, not the runtime)."""
        key = slot.key
        tmp = Path(self.config.spool_dir)
        tmp.mkdir(parents=True, exist_ok=True)
        path = tmp / f"upload-{hashlib.sha256(key.encode()).hexdigest()[:16]}.cse"   # one file per upload
        path.write_bytes(data)
        status = self.client.put(slot, path)
        assert status == 200, status
        if self.confirm:
            self.client.confirm(key)
        self.last_upload = data
        return key


class ManualClock:
    """A clock the test moves by hand (``clock.now += 60``), for code that takes a ``clock`` callable."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def cli_setup_browser(data: Path, env: dict[str, str]) -> Any:
    """``cryospy setup --browser`` in a child process on free loopback ports, plain HTTP (the tests that use it
    are about first-run setup); returns the CompletedProcess."""
    import subprocess
    import sys

    from cryospy.infra.minio_server import free_port, port_is_free

    host = "127.0.0.1"
    minio_port = free_port(host)
    while not port_is_free(host, minio_port + 1):   # the CLI puts MinIO's console on the next port
        minio_port = free_port(host)
    return subprocess.run([sys.executable, "-m", "cryospy", "setup", "--browser", "--data-dir", str(data),
                           "--host", host, "--no-tls",
                           "--runtime-port", str(free_port(host)), "--minio-port", str(minio_port)],
                          capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)


def offline_services(tmp: Path, admin_token: str) -> Any:
    """Services for unit tests of the API: a real key vault, registry and index in ``tmp``, and object-store
    identities that point at a closed port (nothing in these tests may reach MinIO)."""
    from cryospy.common.keys import KeyStore
    from cryospy.functions.devices.auth_defence import AuthDefence, AuthDefenceSettings
    from cryospy.functions.devices.registry import DeviceRegistry
    from cryospy.functions.index.store import TinyDBIndex
    from cryospy.functions.keyvault import KeyVault
    from cryospy.functions.services import S3Identity, Services

    KeyStore.create(tmp / "keys.json", "pass phrase", scrypt_n=2**10, insecure_for_tests=True)
    vault = KeyVault(tmp / "keys.json")
    return Services(
        bucket="cryospy", presigner=S3Identity("http://127.0.0.1:9", "presigner", "secret"),
        handler=S3Identity("http://127.0.0.1:9", "handler", "secret"),
        devices=DeviceRegistry(tmp / "devices.json"), index=TinyDBIndex(tmp / "index", vault.index_key),
        vault=vault, defence=AuthDefence(tmp / "auth-failures.sqlite", AuthDefenceSettings()),
        admin_token=admin_token, max_clip_bytes=1000)


LAST_HEADERS: dict[str, str] = {}   # the headers of the last api_call's response


def api_call(api: Any, method: str, path: str, body: object = None, headers: dict[str, str] | None = None,
             raw: bytes | None = None) -> tuple[int, dict]:
    """Call a WSGI app (the Chalice app behind the gateway) with a JSON body; returns (status, JSON answer)."""
    import json

    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    path, _, query = path.partition("?")
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "REMOTE_ADDR": "10.9.8.7",
               "CONTENT_LENGTH": str(len(data)), "CONTENT_TYPE": "application/json", "wsgi.input": io.BytesIO(data)}
    for k, v in (headers or {}).items():
        environ["HTTP_" + k.upper().replace("-", "_")] = v
    out: dict = {}

    def start_response(status: str, hdrs: list[tuple[str, str]]) -> None:
        out["status"] = int(status.split()[0])
        LAST_HEADERS.clear()
        LAST_HEADERS.update(dict(hdrs))

    payload = b"".join(api(environ, start_response))
    return out["status"], json.loads(payload) if payload else {}


def clip_place(runtime, key: str):  # type: ignore[no-untyped-def]
    """Where the runtime indexes a clip key: its device (mapped back from the storage token) and its day."""
    from cryospy.functions.clips.place import locate
    return locate(runtime.services.devices, key)


@contextmanager
def unlocked_runtime(dep: Deployment, config: Any = None) -> Iterator[Any]:
    """A runtime serving ``dep`` (with ``config``, a ServerConfig, or server.json's), unlocked, stopped after."""
    from cryospy.infra.runtime import Runtime, RuntimeOptions

    rt = Runtime(dep, RuntimeOptions(reconcile_seconds=3600), config)
    rt.unlock(PASSPHRASE)
    rt.start()
    try:
        yield rt
    finally:
        rt.stop()


class RunningAgent:
    """An Agent on a thread, as `cryospy agent` runs it minus the signal handlers; keeps what run() raised."""

    def __init__(self, config_path: Path) -> None:
        self.agent = Agent.build(load_config(config_path))
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="agent")
        self.thread.start()

    def _run(self) -> None:
        try:
            self.agent.run(install_signals=False)
        except BaseException as exc:   # handed to the test
            self.error = exc

    def stop(self) -> None:
        self.agent.stop.set()
        self.thread.join(120)
        assert not self.thread.is_alive()


def dashboard_login(base: str, name: str = "", passphrase: str = PASSPHRASE) -> requests.Session:
    http = requests.Session()
    page = http.get(base + "/login", timeout=10)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)   # type: ignore[union-attr]
    answer = http.post(base + "/login", data={"csrf": csrf, "name": name, "passphrase": passphrase},
                       allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.status_code
    return http


def agent_process(config_path: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """`cryospy agent` as a process of its own (so that a test can SIGKILL it), its output appended to a log."""
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "cryospy", "agent", "--config", str(config_path)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
