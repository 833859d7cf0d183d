"""The agent's own signing key: made once at first start, kept private, registered with retries, and a refusal
that stops the agent. Also what the heartbeat reports about the settings in use. No network, no camera."""

from __future__ import annotations

import json
import logging
import math
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cryospy.common.keys import KeyStore, generate_device_signing_key, signing_key_to_text, verify_key_to_text
from cryospy.common.settings import DEFAULT_SETTINGS, DeviceSettings
from cryospy.edge_agent.agent import Agent
from cryospy.edge_agent.api_client import Retryable, Slot
from cryospy.edge_agent.config import parse_config
from cryospy.edge_agent.errors import ConfigError, SigningKeyConflict, UploadError
from cryospy.edge_agent.heartbeat import Heartbeat
from cryospy.edge_agent.scratch import close_scratch
from cryospy.edge_agent.signing_identity import KeyRegistration, fingerprint, load_or_create_signing_key
from cryospy.edge_agent.spool import Spool, SpoolEntry
from cryospy.edge_agent.uploader import Uploader
from tests.support import wait_for


@pytest.fixture(scope="module")
def deployment_key(tmp_path_factory: pytest.TempPathFactory) -> str:
    store = KeyStore.create(tmp_path_factory.mktemp("k") / "keys.json", "pass", scrypt_n=2**10,
                            insecure_for_tests=True)
    return store.current_public_key().to_text()


def _doc(deployment_key: str, **extra: Any) -> dict[str, Any]:
    return {"client_id": "cam", "client_secret": "00" * 32, "server_url": "http://127.0.0.1:9",
            "deployment_public_key": deployment_key, **extra}


# -- config ------------------------------------------------------------------------------------------------------

def test_a_config_without_a_signing_key_keeps_the_agents_own_key_in_the_spool(tmp_path: Path, deployment_key):
    config = parse_config(_doc(deployment_key, spool_dir="spool-cam"), tmp_path)
    assert config.signing_key == "" and config.signing_key_file == tmp_path / "spool-cam" / "signing-key"
    custom = parse_config(_doc(deployment_key, signing_key_file="keys/cam.key"), tmp_path)
    assert custom.signing_key_file == tmp_path / "keys" / "cam.key"
    inline = parse_config(_doc(deployment_key, signing_key=signing_key_to_text(generate_device_signing_key())),
                          tmp_path)
    assert inline.signing_key_file is None


@pytest.mark.parametrize(("change", "needle"), [
    ({"signing_key": "cs1-ed25519-sec:x", "signing_key_file": "k"}, "exclude each other"),
    ({"signing_key_file": 5}, "'signing_key_file' must be a string"),
    ({"signing_key": ["x"]}, "'signing_key' must be a string"),
])
def test_signing_key_config_mistakes_are_named(tmp_path: Path, deployment_key, change, needle):
    with pytest.raises(ConfigError, match=needle):
        parse_config(_doc(deployment_key, **change), tmp_path)


# -- the key file ------------------------------------------------------------------------------------------------

def test_the_key_is_made_once_privately_and_only_its_fingerprint_is_logged(tmp_path: Path, caplog):
    path = tmp_path / "spool" / "signing-key"
    with caplog.at_level(logging.INFO, logger="cryospy.edge_agent.signing_identity"):
        key = load_or_create_signing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert fingerprint(key) in caplog.text
    assert signing_key_to_text(key).split(":")[1] not in caplog.text
    again = load_or_create_signing_key(path)                  # the next start
    assert verify_key_to_text(again.public_key()) == verify_key_to_text(key.public_key())
    assert not [p for p in path.parent.iterdir() if p.name != "signing-key"], "no temporary files left"


def test_a_damaged_key_file_is_an_error_that_says_what_to_do(tmp_path: Path):
    path = tmp_path / "signing-key"
    path.write_text("cs1-ed25519-sec:not-a-key\n")
    with pytest.raises(ConfigError, match="create it again"):
        load_or_create_signing_key(path)
    assert path.read_text() == "cs1-ed25519-sec:not-a-key\n", "never overwritten"


def test_an_agent_built_without_a_key_makes_one_and_reports_its_settings(tmp_path: Path, deployment_key):
    config = parse_config(_doc(deployment_key, clip_seconds=2, fps=10, temp_dir=str(tmp_path)), tmp_path)
    agent = Agent.build(config)
    try:
        assert config.signing_key_file is not None and config.signing_key_file.exists()
        status = agent.status()
        assert status["settings"] == DEFAULT_SETTINGS.to_dict() and status["settings_etag"] == ""
        assert status["pinned"] == {"clip_seconds": 2, "fps": 10}
        assert agent.identity.registered.is_set() is False
    finally:
        close_scratch(agent.scratch)
    rebuilt = Agent.build(config)
    close_scratch(rebuilt.scratch)
    assert rebuilt.identity.fingerprint == agent.identity.fingerprint


# -- registration --------------------------------------------------------------------------------------------------

@dataclass
class FakeServer:
    """Answers registrations as the server would: a list of outcomes, one per call (an exception is raised)."""

    outcomes: list[Any]
    keys: list[str] = field(default_factory=list)

    def register_signing_key(self, public_key_text: str) -> dict[str, Any]:
        self.keys.append(public_key_text)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def test_registration_retries_through_an_outage_then_lets_uploads_start(tmp_path: Path):
    key = generate_device_signing_key()
    server = FakeServer([Retryable("cannot reach the server"),
                         {"registered": "now", "signing_key_fingerprint": fingerprint(key)}])
    stop = threading.Event()
    registration = KeyRegistration(server, key, stop, retry_cap_s=1)
    registration.run()
    assert registration.registered.is_set() and registration.attempts == 2 and not stop.is_set()
    assert server.keys == [verify_key_to_text(key.public_key())] * 2


def test_a_refused_key_stops_the_agent_with_a_clear_error(tmp_path: Path):
    key = generate_device_signing_key()
    refusal = SigningKeyConflict("the server refused this agent's signing key: device 'cam' already has one")
    stop = threading.Event()
    registration = KeyRegistration(FakeServer([refusal]), key, stop)
    registration.run()
    assert stop.is_set() and not registration.registered.is_set() and registration.refusal is refusal


def test_a_server_that_reports_another_fingerprint_is_not_trusted():
    key = generate_device_signing_key()
    liar = FakeServer([{"registered": "now", "signing_key_fingerprint": "0000-0000-0000-0000"}])
    registration = KeyRegistration(liar, key, threading.Event())
    with pytest.raises(UploadError, match="0000-0000-0000-0000"):
        registration.register_once()
    assert not registration.registered.is_set()


class CountingApi:
    def __init__(self) -> None:
        self.slots: list[dict[str, Any]] = []

    def request_slot(self, doc: dict[str, Any]) -> Slot:
        self.slots.append(doc)
        return Slot("http://127.0.0.1:1/x", {}, "clips/cam/k.cse")

    def put(self, slot: Slot, path: Path) -> int:
        return 200

    def confirm(self, key: str) -> None:
        pass


def test_uploads_wait_for_the_registration_and_clips_stay_spooled(tmp_path: Path, deployment_key):
    spool = Spool(tmp_path / "spool", 10**6)
    entry = SpoolEntry(0, "clips/cam/k.cse", "2026-01-01T00:00:00.000Z", 10, "ab" * 32, 2.0, False, None)
    spool.sealed_path(entry).write_bytes(b"x" * 10)
    (spool.root / f"{entry.name}.json").write_text(json.dumps(entry.__dict__))
    api, ready, stop = CountingApi(), threading.Event(), threading.Event()
    uploader = Uploader(parse_config(_doc(deployment_key), tmp_path), spool, api, stop,  # type: ignore[arg-type]
                        threading.Event(), ready=ready)
    uploader.drain(timeout=5)                         # a shutdown before the key is known: nothing is tried
    assert api.slots == [] and len(spool.entries()) == 1
    ready.set()
    thread = threading.Thread(target=uploader.run)
    thread.start()
    try:
        wait_for(lambda: not spool.entries(), timeout=30, what="the clip to be uploaded")
    finally:
        stop.set()
        thread.join(30)
    assert len(api.slots) == 1


# -- the heartbeat's settings ---------------------------------------------------------------------------------------

class BeatSink:
    def __init__(self) -> None:
        self.beats: list[dict[str, Any]] = []

    def heartbeat(self, doc: dict[str, Any]) -> dict[str, Any]:
        self.beats.append(doc)
        return {"ok": True}


def test_huge_motion_zones_are_left_out_of_the_heartbeat_so_it_still_fits():
    circle = [[0.5 + 0.4 * math.cos(i / 10.2), 0.5 + 0.4 * math.sin(i / 10.2)] for i in range(64)]   # long floats
    zones = [circle] * 16
    settings = DeviceSettings.from_dict({"motion_zones": zones, "motion_masks": zones, "crf": 30},
                                        base=DEFAULT_SETTINGS).to_dict()
    sink = BeatSink()
    Heartbeat(sink, lambda: {"settings": dict(settings), "settings_etag": '"e"'}, lambda: 5.0,  # type: ignore[arg-type]
              threading.Event()).beat_once()
    sent = sink.beats[0]
    assert len(json.dumps(sent)) < 60 * 1024
    assert sent["settings"]["crf"] == 30 and "motion_zones" not in sent["settings"]
    small = BeatSink()
    Heartbeat(small, lambda: {"settings": DEFAULT_SETTINGS.to_dict()}, lambda: 5.0,  # type: ignore[arg-type]
              threading.Event()).beat_once()
    assert small.beats[0]["settings"] == DEFAULT_SETTINGS.to_dict()


# -- answers cut short -----------------------------------------------------------------------------------------

def test_an_answer_cut_short_by_a_dying_server_is_retried_not_a_crash(tmp_path: Path, deployment_key):
    """A runtime killed mid-reply (behind a balancer, the next try reaches another) leaves the agent with half
    an answer: http.client's IncompleteRead, which is no OSError. It must be Retryable so the clip is kept."""
    import socket

    from cryospy.edge_agent.api_client import ApiClient

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def half_answer() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"ke")
    threading.Thread(target=half_answer, daemon=True).start()
    client = ApiClient(parse_config(_doc(deployment_key, server_url=f"http://127.0.0.1:{port}"), tmp_path))
    try:
        with pytest.raises(Retryable, match=r"IncompleteRead|cannot reach"):
            client.confirm("clips/x.cse")
        with pytest.raises(Retryable):
            client.request_slot({"size": 1, "sha256": "00" * 32, "captured_at": "2026-01-01T00:00:00.000Z",
                                 "sequence": 0})
    finally:
        listener.close()
