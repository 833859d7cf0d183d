"""The device registry and the alert limits on both of their stores, like the index conformance suite: the
embedded files (the default) and a real PostgreSQL (tests/postgres_server.py), where several runtimes share
them. Each test opens its stores through ``open_twice``: the second opening is another runtime (PostgreSQL) or
the same runtime after a restart (the embedded files, which have one writer). ``url`` (tests/unit/conftest.py)
is None for the embedded store."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from cryospy.common.database import open_pool
from cryospy.common.keys import generate_device_signing_key, verify_key_to_text
from cryospy.functions.alerts.limits import AlertLimits, AlertLimitStore
from cryospy.functions.alerts.pg_limits import PostgresAlertLimits
from cryospy.functions.devices.pg_device_store import PostgresDeviceStore
from cryospy.functions.devices.registry import DeviceRegistry
from cryospy.functions.errors import Conflict, NotFound, Unauthorized
from cryospy.functions.index.tinydb_files import IndexCorrupt

CAMERA = "Back Garden cam"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def registries(url: str | None, tmp_path: Path) -> Iterator[Callable[[], DeviceRegistry]]:
    key, opened = os.urandom(32), []

    def open_registry() -> DeviceRegistry:
        store = PostgresDeviceStore(open_pool(url, max_size=2), lambda: key) if url else None
        opened.append(DeviceRegistry(tmp_path / f"devices-{len(opened)}.json" if url else tmp_path / "devices.json",
                                     store=store))
        return opened[-1]
    yield open_registry
    for registry in opened:
        registry.close()


@pytest.fixture
def limits(url: str | None, tmp_path: Path) -> Iterator[Callable[[Clock], AlertLimitStore]]:
    key, opened = os.urandom(32), []

    def open_limits(clock: Clock) -> AlertLimitStore:
        opened.append(PostgresAlertLimits(open_pool(url, max_size=2), lambda: key, clock) if url
                      else AlertLimits(tmp_path / "limits.sqlite", clock))
        return opened[-1]
    yield open_limits
    for store in opened:
        store.close()


def _key() -> str:
    return verify_key_to_text(generate_device_signing_key().public_key())


# -- the device registry ------------------------------------------------------------------------------------
def test_enrol_authenticate_resolve_change_and_remove(registries: Callable[[], DeviceRegistry]) -> None:
    registry = registries()
    device, secret = registry.create(CAMERA, None, {"clip_seconds": 30})
    assert registry.authenticate(CAMERA, secret).device_id == CAMERA
    for wrong in (("nobody", secret), (CAMERA, "00" * 32), (CAMERA, "not hex")):
        with pytest.raises(Unauthorized):
            registry.authenticate(*wrong)
    with pytest.raises(Conflict):
        registry.create(CAMERA, None, {})
    assert registry.resolve(device.storage_token).device_id == CAMERA
    assert registry.update_settings(CAMERA, {"clip_seconds": 10}).settings == {"clip_seconds": 10}
    _, new_secret = registry.rotate_secret(CAMERA)
    with pytest.raises(Unauthorized):
        registry.authenticate(CAMERA, secret)
    assert registry.authenticate(CAMERA, new_secret).storage_token == device.storage_token

    other = registries()   # another runtime on the same database, or this one restarted
    assert [d.device_id for d in other.list()] == [CAMERA]
    assert other.get(CAMERA).settings == {"clip_seconds": 10} and other.authenticate(CAMERA, new_secret)
    registry.retire(CAMERA)
    with pytest.raises(Unauthorized):
        registry.authenticate(CAMERA, new_secret)
    with pytest.raises(Conflict):
        registry.set_enabled(CAMERA, True)
    registry.remove(CAMERA)
    with pytest.raises(NotFound):
        registry.get(CAMERA)
    with pytest.raises(NotFound):
        registry.resolve(device.storage_token)


def test_a_signing_key_is_registered_once_even_by_racing_registrations(
        registries: Callable[[], DeviceRegistry], backend: str) -> None:
    registry = registries()
    registry.create(CAMERA, None, {})
    # Two runtimes (PostgreSQL) or two request threads of one (the embedded file) register different keys.
    racers = [registries() if backend == "postgres" else registry for _ in range(4)]
    keys = [_key() for _ in racers]
    won: list[str] = []
    barrier = threading.Barrier(len(racers))

    def register(r: DeviceRegistry, key: str) -> None:
        barrier.wait()
        try:
            if r.register_signing_key(CAMERA, key)[1]:
                won.append(key)
        except Conflict:
            pass
    threads = [threading.Thread(target=register, args=(r, k)) for r, k in zip(racers, keys, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and registry.get(CAMERA).signing_key == won[0]
    assert registry.register_signing_key(CAMERA, won[0]) == (registry.get(CAMERA), False)


def test_postgres_rows_name_no_camera_and_hold_no_secret(postgres, tmp_path: Path) -> None:
    """(The embedded file keeps names in clear on the runtime's own disk, as it always did.)"""
    url, key = postgres.fresh_url(), os.urandom(32)
    registry = DeviceRegistry(tmp_path / "devices.json", store=PostgresDeviceStore(open_pool(url), lambda: key))
    device, _ = registry.create(CAMERA, _key(), {"camera_device": "rtsp://user:pw@10.0.0.9/stream"})
    secret_hash = registry._store.get(CAMERA)["secret_hash"]   # type: ignore[index]
    with psycopg.connect(url) as conn:
        stored = b"".join(bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode()
                          for row in conn.execute("SELECT * FROM registry_devices").fetchall() for v in row)
        # A row moved to another device's key fails to open.
        conn.execute("UPDATE registry_devices SET device = %s", (b"\0" * 16,))
    for clear in (CAMERA, device.storage_token, secret_hash, "rtsp", "signing_key", "clip"):
        assert clear.encode() not in stored, clear
    with pytest.raises(IndexCorrupt):
        registry.list()
    registry.close()


def test_an_older_registry_without_storage_tokens_gets_them_once(registries: Callable[[], DeviceRegistry]) -> None:
    registry = registries()
    registry.create(CAMERA, None, {})
    registry._store.change(CAMERA, lambda d: {**d, "storage_token": ""})
    again = registries()
    token = again.get(CAMERA).storage_token
    assert token and again.resolve(token).device_id == CAMERA and registries().get(CAMERA).storage_token == token


# -- alert limits -------------------------------------------------------------------------------------------
def test_one_alert_per_device_and_kind_per_interval_across_runtimes(limits: Callable[[Clock], AlertLimitStore],
                                                                    backend: str) -> None:
    clock = Clock()
    first = limits(clock)
    second = limits(clock) if backend == "postgres" else first
    assert first.claim(CAMERA, "motion", 60)
    assert not second.claim(CAMERA, "motion", 60)              # the other runtime is held back too
    assert second.claim(CAMERA, "offline", 60) and second.claim("other", "motion", 60)
    clock.now += 59
    assert not first.claim(CAMERA, "motion", 60)
    clock.now += 1
    assert second.claim(CAMERA, "motion", 60)
    second.release(CAMERA, "motion")                         # the mail failed: the next event may try again
    assert first.claim(CAMERA, "motion", 60)


def test_racing_claims_send_one_alert(limits: Callable[[Clock], AlertLimitStore], backend: str) -> None:
    clock = Clock()
    stores = [limits(clock) for _ in range(4)] if backend == "postgres" else [limits(clock)] * 4
    barrier, wins = threading.Barrier(4), []

    def claim(store: AlertLimitStore) -> None:
        barrier.wait()
        if store.claim(CAMERA, "motion", 60):
            wins.append(1)
    threads = [threading.Thread(target=claim, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1


def test_postgres_alert_limits_show_neither_camera_nor_kind_nor_time(postgres) -> None:
    url, key, clock = postgres.fresh_url(), os.urandom(32), Clock()
    store = PostgresAlertLimits(open_pool(url), lambda: key, clock)
    assert store.claim(CAMERA, "person", 60)
    store.close()
    with psycopg.connect(url) as conn:
        stored = b"".join(bytes(v) for row in conn.execute("SELECT * FROM alert_limits").fetchall() for v in row)
    for clear in (CAMERA, "person", "1000"):
        assert clear.encode() not in stored, clear
