"""The agent's spool and config: crash safety, chain continuity, the drop policy, strict config."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cryospy.common.keys import KeyStore, generate_device_signing_key, signing_key_to_text
from cryospy.common.objectkeys import legacy_clip_key as clip_key
from cryospy.common.sealed import ZERO_HASH, read_header, seal
from cryospy.edge_agent.config import parse_config
from cryospy.edge_agent.errors import ConfigError
from cryospy.edge_agent.spool import Spool


@pytest.fixture
def keys(tmp_path: Path):
    store = KeyStore.create(tmp_path / "keys.json", "pass phrase", scrypt_n=2**10, insecure_for_tests=True)
    return store.current_public_key(), generate_device_signing_key()


def _spool_clip(spool: Spool, keys, size: int = 1000, motion: bool = False):
    seq, prev = spool.chain_state()
    ck = clip_key("cam", datetime(2026, 1, 1, 0, 0, seq, tzinfo=UTC), seq)
    with open(spool.temp_path(seq), "wb") as dst:
        header = seal(io.BytesIO(b"v" * size), dst, object_key=ck.key, device_id="cam", sequence=seq,
                      captured_at=ck.captured_at, content_type="video/mp4", prev_hash=prev, recipient=keys[0],
                      signer=keys[1])
    entry = spool.commit(seq, ck.key, ck.captured_at.isoformat(), 1.0, motion)
    spool.save_chain_state(seq + 1, header.header_hash)
    return entry, header


def test_chain_continues_across_restarts_and_uploads(tmp_path: Path, keys):
    spool = Spool(tmp_path / "s", 10**7)
    assert spool.chain_state() == (0, ZERO_HASH)
    e0, h0 = _spool_clip(spool, keys)
    e1, h1 = _spool_clip(spool, keys)
    assert h1.prev_hash == h0.header_hash
    spool.remove(e0)
    spool.remove(e1)          # both uploaded
    again = Spool(tmp_path / "s", 10**7)
    assert again.chain_state() == (2, h1.header_hash)


def test_crash_after_commit_before_state_never_reuses_a_sequence(tmp_path: Path, keys):
    spool = Spool(tmp_path / "s", 10**7)
    _spool_clip(spool, keys)
    seq, prev = spool.chain_state()
    ck = clip_key("cam", datetime(2026, 1, 1, tzinfo=UTC), seq)
    with open(spool.temp_path(seq), "wb") as dst:
        header = seal(io.BytesIO(b"x"), dst, object_key=ck.key, device_id="cam", sequence=seq,
                      captured_at=ck.captured_at, content_type="video/mp4", prev_hash=prev, recipient=keys[0],
                      signer=keys[1])
    spool.commit(seq, ck.key, ck.captured_at.isoformat(), 1.0, False)
    # ...power cut here: state.json still says next_sequence=1
    recovered = Spool(tmp_path / "s", 10**7)
    assert recovered.chain_state() == (2, header.header_hash)


def test_half_written_files_are_swept(tmp_path: Path, keys):
    spool = Spool(tmp_path / "s", 10**7)
    entry, _ = _spool_clip(spool, keys)
    (tmp_path / "s" / "00000000000000000007.cse.part").write_bytes(b"half")
    (tmp_path / "s" / "00000000000000000008.cse").write_bytes(b"no metadata")
    again = Spool(tmp_path / "s", 10**7)
    assert [e.sequence for e in again.entries()] == [entry.sequence]
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        "00000000000000000000.cse", "00000000000000000000.json", "state.json"]
    with open(again.sealed_path(entry), "rb") as fh:
        assert read_header(fh).sequence == 0


def test_full_spool_drops_oldest_without_motion_first(tmp_path: Path, keys):
    spool = Spool(tmp_path / "s", 4000)
    first, _ = _spool_clip(spool, keys, size=900, motion=True)
    second, _ = _spool_clip(spool, keys, size=900, motion=False)
    _spool_clip(spool, keys, size=900, motion=False)
    fourth, _ = _spool_clip(spool, keys, size=900, motion=True)
    kept = [e.sequence for e in spool.entries()]
    assert second.sequence not in kept and first.sequence in kept and fourth.sequence in kept
    assert spool.dropped >= 1
    assert spool.used_bytes() <= 4000


BASE = {"client_id": "cam", "client_secret": "00" * 32, "server_url": "http://127.0.0.1:1",
        "deployment_public_key": "x", "signing_key": "y"}


def test_config_accepts_the_original_clients_keys(tmp_path: Path):
    doc = {**BASE, "camera_device": "0", "buffer_size": 5, "retry_buffer_size": 100, "settings_sync_seconds": 300,
           "server_timeout_seconds": 30, "upload_retry_minutes": 5, "upload_max_retries": None,
           "proxy_auth_header": "X-Proxy-Auth", "proxy_auth_value": "v"}
    cfg = parse_config(doc, tmp_path)
    assert cfg.upload_max_retries == 3 and cfg.camera_device == "0" and cfg.spool_dir == tmp_path / "spool"
    assert "00" * 32 not in repr(cfg)


@pytest.mark.parametrize(("change", "needle"), [
    ({"colour": 1}, "unknown key 'colour'"), ({"client_secret": ""}, "'client_secret' is required"),
    ({"buffer_size": 0}, "'buffer_size' must be between"), ({"fps": "fast"}, "'fps' must be a number"),
    ({"server_url": "ftp://x"}, "server_url must start with"), ({"clip_seconds": True}, "'clip_seconds'"),
])
def test_config_errors_name_the_key(tmp_path: Path, change, needle):
    with pytest.raises(ConfigError, match=needle):
        parse_config({**BASE, **change}, tmp_path)


def test_signing_key_text_round_trips():
    key = generate_device_signing_key()
    text = signing_key_to_text(key)
    assert json.dumps(text)  # plain text, fits a JSON config
