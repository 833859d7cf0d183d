"""The deployment key store and key text forms: creation, unlock, rotation, passphrase change, tampering."""

from __future__ import annotations

import base64
import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from cryospy.common.keys import (
    DEFAULT_SCRYPT_N,
    MIN_SCRYPT_N,
    BadKeyText,
    DeploymentPublicKey,
    KeyRing,
    KeyStore,
    KeyStoreCorrupt,
    KeyStoreError,
    KeyStoreExists,
    UnknownKeyId,
    WrongPassphrase,
    generate_device_signing_key,
    load_signing_key,
    save_signing_key,
    signing_key_from_text,
    signing_key_to_text,
    verify_key_from_text,
    verify_key_to_text,
)
from cryospy.common.sealed import ZERO_HASH, SealedFormatError, open_bytes, seal_bytes

FAST = {"scrypt_n": 2**10, "insecure_for_tests": True}
PASS = "correct horse battery staple"
DEVICE = generate_device_signing_key()


def _store(tmp_path: Path) -> KeyStore:
    return KeyStore.create(tmp_path / "keys" / "keystore.json", PASS, **FAST)


def _seal_to(public: DeploymentPublicKey, data: bytes) -> bytes:
    return seal_bytes(
        data,
        object_key="clips/cam-1/a.mp4",
        device_id="cam-1",
        sequence=0,
        captured_at=datetime(2025, 1, 1, tzinfo=UTC),
        content_type="video/mp4",
        prev_hash=ZERO_HASH,
        recipient=public,
        signer=DEVICE,
    )[0]


def _open(keys: KeyRing, blob: bytes) -> bytes:
    return open_bytes(blob, keyring=keys, signer_public_key=DEVICE.public_key())


def test_create_writes_a_private_file_with_only_public_material_in_clear(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    text = store.path.read_text()
    document = json.loads(text)
    assert set(document["slots"]) == set(document["accounts"]) == {"admin"}
    assert document["accounts"]["admin"]["role"] == "admin"
    kdf = document["slots"]["admin"]["kdf"]
    assert kdf | {"salt": None} == {"name": "scrypt", "n": 2**10, "r": 8, "p": 1, "salt": None}
    assert document["current_key_id"] == store.current_public_key().key_id
    keys = store.unlock(PASS)
    raw = keys.private_key(keys.current_public_key.key_id).private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    for secret in (raw, keys.index_key):
        assert base64.urlsafe_b64encode(secret).rstrip(b"=").decode() not in text
    assert len(keys.index_key) == 32
    assert keys.server_signing_key.public_key() == store.server_verify_key()
    assert "PRIVATE" not in repr(keys) and keys.index_key.hex() not in repr(keys)


def test_create_refuses_to_overwrite(tmp_path: Path) -> None:
    store = _store(tmp_path)
    before = store.path.read_bytes()
    with pytest.raises(KeyStoreExists, match="refusing to overwrite"):
        KeyStore.create(store.path, "another passphrase", **FAST)
    assert store.path.read_bytes() == before


def test_weak_scrypt_needs_the_test_flag_and_default_is_strong(tmp_path: Path) -> None:
    assert DEFAULT_SCRYPT_N >= MIN_SCRYPT_N >= 2**15
    with pytest.raises(ValueError, match="too weak"):
        KeyStore.create(tmp_path / "weak.json", PASS, scrypt_n=2**10)
    with pytest.raises(ValueError, match="power of two"):
        KeyStore.create(tmp_path / "odd.json", PASS, scrypt_n=3000, insecure_for_tests=True)
    with pytest.raises(KeyStoreError, match="empty"):
        KeyStore.create(tmp_path / "empty.json", "", **FAST)


def test_default_parameters_are_recorded(tmp_path: Path) -> None:
    store = KeyStore.create(tmp_path / "strong.json", PASS)
    assert json.loads(store.path.read_text())["slots"]["admin"]["kdf"]["n"] == DEFAULT_SCRYPT_N


def test_load_is_locked_and_unlock_opens_objects(tmp_path: Path) -> None:
    created = _store(tmp_path)
    loaded = KeyStore.load(created.path)
    assert loaded.current_public_key() == created.current_public_key()
    assert loaded.server_verify_key() == created.server_verify_key()
    blob = _seal_to(loaded.current_public_key(), b"footage")
    assert _open(loaded.unlock(PASS), blob) == b"footage"


def test_wrong_passphrase_is_a_clear_error(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with pytest.raises(WrongPassphrase, match=f"wrong passphrase for key store {store.path}"):
        store.unlock("incorrect horse")


def test_unicode_passphrases_are_normalised(tmp_path: Path) -> None:
    store = KeyStore.create(tmp_path / "k.json", "Kü\u0308che", **FAST)  # decomposed ü
    store.unlock("Kü\u0308che".replace("u\u0308", "\u00fc"))


def test_editing_the_public_part_is_caught_at_unlock(tmp_path: Path) -> None:
    store = _store(tmp_path)
    document = json.loads(store.path.read_text())
    attacker = DeploymentPublicKey.from_public(X25519PrivateKey.generate().public_key())
    document["public_keys"] = {attacker.key_id: attacker.to_text()}
    document["current_key_id"] = attacker.key_id
    store.path.write_text(json.dumps(document))
    swapped = KeyStore.load(store.path)
    assert swapped.current_public_key() == attacker  # a locked store cannot tell...
    with pytest.raises(WrongPassphrase, match="edited"):  # ...but unlocking refuses the edited file
        swapped.unlock(PASS)


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.pop("slots"),
        lambda d: d.update(format="something-else"),
        lambda d: d["slots"]["admin"]["kdf"].update(n=2**30),
        lambda d: d["accounts"].pop("admin"),
        lambda d: d.update(current_key_id="nope"),
        lambda d: d.update(server_verify_key="cs1-ed25519-sec:AAAA"),
    ],
)
def test_malformed_files_are_reported_as_corrupt(tmp_path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    store = _store(tmp_path)
    document = json.loads(store.path.read_text())
    edit(document)
    store.path.write_text(json.dumps(document))
    with pytest.raises(KeyStoreCorrupt):
        KeyStore.load(store.path)


def test_missing_and_non_json_files(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="no key store at"):
        KeyStore.load(tmp_path / "absent.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(KeyStoreCorrupt, match="not valid JSON"):
        KeyStore.load(tmp_path / "junk.json")


def test_rotate_keeps_old_objects_readable(tmp_path: Path) -> None:
    store = _store(tmp_path)
    old_key = store.current_public_key()
    old_blob = _seal_to(old_key, b"before rotation")
    new_key = store.rotate(PASS)
    assert new_key.key_id != old_key.key_id
    assert store.current_public_key() == new_key == KeyStore.load(store.path).current_public_key()
    assert {k.key_id for k in store.public_keys()} == {old_key.key_id, new_key.key_id}
    keys = KeyStore.load(store.path).unlock(PASS)
    assert keys.current_public_key == new_key
    assert _open(keys, old_blob) == b"before rotation"
    assert _open(keys, _seal_to(new_key, b"after rotation")) == b"after rotation"
    with pytest.raises(WrongPassphrase):
        store.rotate("wrong")


def test_rotations_from_two_stale_handles_lose_no_key(tmp_path: Path) -> None:
    first = _store(tmp_path)
    second = KeyStore.load(first.path)
    a = first.rotate(PASS)
    b = second.rotate(PASS)
    keys = KeyStore.load(first.path).unlock(PASS)
    assert {a.key_id, b.key_id} <= set(keys.key_ids) and len(keys.key_ids) == 3


def test_change_passphrase_rewraps_without_touching_objects(tmp_path: Path) -> None:
    store = _store(tmp_path)
    blob = _seal_to(store.current_public_key(), b"evidence")
    salt_before = json.loads(store.path.read_text())["slots"]["admin"]["kdf"]["salt"]
    store.change_passphrase(PASS, "a brand new passphrase")
    with pytest.raises(WrongPassphrase):
        store.unlock(PASS)
    keys = KeyStore.load(store.path).unlock("a brand new passphrase")
    assert _open(keys, blob) == b"evidence"
    assert json.loads(store.path.read_text())["slots"]["admin"]["kdf"]["salt"] != salt_before
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    with pytest.raises(WrongPassphrase):
        store.change_passphrase("not it", "whatever else")


def test_unknown_key_id(tmp_path: Path) -> None:
    keys = _store(tmp_path).unlock(PASS)
    with pytest.raises(UnknownKeyId, match="another deployment"):
        keys.private_key("0123456789abcdef")
    other = _seal_to(DeploymentPublicKey.from_public(X25519PrivateKey.generate().public_key()), b"x")
    with pytest.raises(SealedFormatError, match="does not hold"):
        _open(keys, other)


def test_deployment_public_key_text_round_trip_and_checks() -> None:
    key = DeploymentPublicKey.from_public(X25519PrivateKey.generate().public_key())
    text = key.to_text()
    assert text.startswith(f"cs1-x25519:{key.key_id}:") and DeploymentPublicKey.from_text(f" {text}\n") == key
    other = DeploymentPublicKey.from_public(X25519PrivateKey.generate().public_key())
    with pytest.raises(BadKeyText, match="fingerprint"):
        DeploymentPublicKey.from_text(f"cs1-x25519:{other.key_id}:{text.rsplit(':', 1)[1]}")
    for bad in ("", "cs1-x25519:abc", "cs1-ed25519-pub:AAAA", f"cs1-x25519:{key.key_id}:AAAA"):
        with pytest.raises(BadKeyText):
            DeploymentPublicKey.from_text(bad)


def test_device_key_texts(tmp_path: Path) -> None:
    key = generate_device_signing_key()
    assert signing_key_from_text(signing_key_to_text(key)).public_key() == key.public_key()
    assert verify_key_from_text(verify_key_to_text(key.public_key())) == key.public_key()
    with pytest.raises(BadKeyText, match="register only its public half"):
        verify_key_from_text(signing_key_to_text(key))
    with pytest.raises(BadKeyText, match="base64url"):
        verify_key_from_text("cs1-ed25519-pub:!!!!")
    path = tmp_path / "device" / "signing.key"
    path.parent.mkdir()
    save_signing_key(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_signing_key(path).public_key() == key.public_key()
    with pytest.raises(KeyStoreExists):
        save_signing_key(path, generate_device_signing_key())
