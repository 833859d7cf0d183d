"""Accounts as key slots in the key store: one wrapped master key per account, authenticated account records,
removal that destroys the slot, per-slot passphrase changes, rotation, and the upgrade of a v1 file."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cryospy.common.accounts import AccountError, changed_account, check_passphrase, new_account, parse_expiry
from cryospy.common.keys import KeyStore, KeyStoreCorrupt, KeyStoreError, WrongPassphrase
from tests.unit.test_keys import FAST, PASS, _open, _seal_to

FIXTURE_V1 = Path(__file__).resolve().parents[1] / "fixtures" / "keystore-v1.json"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
VIEWER_PASS = "front door only please"


def _with_viewer(tmp_path: Path, name: str = "teen", cameras: tuple[str, ...] = ("front",)) -> KeyStore:
    store = KeyStore.create(tmp_path / "keys.json", PASS, **FAST)
    opened = store.open(PASS)
    account = new_account(name, "viewer", cameras, None, NOW, opened.accounts)
    store.add_account(opened.master, account, VIEWER_PASS)
    return store


def test_each_account_opens_the_same_keys_through_its_own_slot(tmp_path: Path) -> None:
    store = _with_viewer(tmp_path)
    blob = _seal_to(store.current_public_key(), b"footage")
    viewer = KeyStore.load(store.path).open(VIEWER_PASS, "teen")
    assert viewer.account.role == "viewer" and viewer.account.cameras == {"front"}
    assert _open(viewer.keys, blob) == b"footage"
    document = json.loads(store.path.read_text())
    assert set(document["slots"]) == {"admin", "teen"}
    assert document["slots"]["admin"]["kdf"]["salt"] != document["slots"]["teen"]["kdf"]["salt"]
    with pytest.raises(WrongPassphrase):   # a slot opens only with its own account's name
        store.open(VIEWER_PASS, "admin")
    with pytest.raises(WrongPassphrase) as unknown:   # an unknown name reads like a wrong passphrase
        store.open(VIEWER_PASS, "nobody")
    with pytest.raises(WrongPassphrase) as wrong:
        store.open("not the passphrase", "teen")
    assert str(unknown.value) == str(wrong.value)


def test_adding_an_account_touches_no_other_slot_and_no_secret(tmp_path: Path) -> None:
    store = KeyStore.create(tmp_path / "keys.json", PASS, **FAST)
    before = json.loads(store.path.read_text())
    opened = store.open(PASS)
    store.add_account(opened.master, new_account("anna", "admin", (), None, NOW, opened.accounts), "second admin pass")
    after = json.loads(store.path.read_text())
    assert after["slots"]["admin"] == before["slots"]["admin"]
    assert after["public_keys"] == before["public_keys"]


def test_editing_the_accounts_in_the_file_is_refused(tmp_path: Path) -> None:
    store = _with_viewer(tmp_path)
    good = store.path.read_text()
    edits = [
        lambda d: d["accounts"]["teen"].update(cameras=["front", "living-room"]),   # more cameras
        lambda d: d["accounts"]["teen"].update(role="admin"),                       # promotion
        lambda d: d["accounts"]["teen"].update(expires=None, created=None),
    ]
    for edit in edits:
        document = json.loads(good)
        edit(document)
        store.path.write_text(json.dumps(document))
        for name, passphrase in (("teen", VIEWER_PASS), ("admin", PASS)):
            with pytest.raises(KeyStoreCorrupt, match="accounts were edited"):
                KeyStore.load(store.path).open(passphrase, name)
    # A slot moved under another name does not open: the name is bound into the slot.
    document = json.loads(good)
    document["slots"]["teen"], document["slots"]["admin"] = document["slots"]["admin"], document["slots"]["teen"]
    store.path.write_text(json.dumps(document))
    with pytest.raises(WrongPassphrase):
        KeyStore.load(store.path).open(VIEWER_PASS, "admin")


def test_removing_an_account_destroys_its_slot(tmp_path: Path) -> None:
    store = _with_viewer(tmp_path)
    blob = _seal_to(store.current_public_key(), b"kept")
    slot_before = json.loads(store.path.read_text())["slots"]["teen"]
    store.remove_account(store.open(PASS).master, "teen")
    text = store.path.read_text()
    assert "teen" not in json.loads(text)["slots"] and slot_before["wrapped"] not in text
    with pytest.raises(WrongPassphrase):
        KeyStore.load(store.path).open(VIEWER_PASS, "teen")
    # Its passphrase unwraps no other slot either.
    for name in json.loads(text)["slots"]:
        with pytest.raises(WrongPassphrase):
            KeyStore.load(store.path).open(VIEWER_PASS, name)
    assert _open(KeyStore.load(store.path).unlock(PASS), blob) == b"kept"   # nothing was re-encrypted


def test_putting_a_removed_or_old_slot_back_is_detected(tmp_path: Path) -> None:
    store = _with_viewer(tmp_path)
    old = json.loads(store.path.read_text())
    store.change_passphrase(VIEWER_PASS, "a new viewer passphrase", account="teen")
    document = json.loads(store.path.read_text())
    document["slots"]["teen"] = old["slots"]["teen"]       # the leaked old passphrase's slot
    store.path.write_text(json.dumps(document))
    with pytest.raises(KeyStoreCorrupt, match="accounts were edited"):
        KeyStore.load(store.path).open(VIEWER_PASS, "teen")


def test_changing_one_passphrase_leaves_the_others_byte_for_byte(tmp_path: Path) -> None:
    store = _with_viewer(tmp_path)
    before = json.loads(store.path.read_text())["slots"]
    store.change_passphrase(VIEWER_PASS, "the viewer's new one", account="teen")
    after = json.loads(store.path.read_text())["slots"]
    assert after["admin"] == before["admin"] and after["teen"] != before["teen"]
    KeyStore.load(store.path).open(PASS, "admin")
    KeyStore.load(store.path).open("the viewer's new one", "teen")
    with pytest.raises(WrongPassphrase):
        KeyStore.load(store.path).open(VIEWER_PASS, "teen")
    # An admin can set a forgotten passphrase with the master key alone.
    store.set_passphrase(store.open(PASS).master, "teen", "set by the admin")
    assert KeyStore.load(store.path).open("set by the admin", "teen").account.name == "teen"


def test_rotation_keeps_every_slot_working(tmp_path: Path) -> None:
    store = _with_viewer(tmp_path)
    old = _seal_to(store.current_public_key(), b"old")
    slots = json.loads(store.path.read_text())["slots"]
    new_key = store.rotate(PASS)
    assert json.loads(store.path.read_text())["slots"] == slots
    for name, passphrase in (("admin", PASS), ("teen", VIEWER_PASS)):
        keys = KeyStore.load(store.path).unlock(passphrase, name)
        assert keys.current_public_key == new_key and _open(keys, old) == b"old"
    with pytest.raises(KeyStoreError, match="viewer"):
        store.rotate(VIEWER_PASS, "teen")


def test_a_v1_file_loads_as_the_admin_slot_and_upgrades(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    shutil.copy(FIXTURE_V1, path)
    store = KeyStore.load(path)
    assert store.legacy
    keys = store.unlock(PASS)
    assert len(keys.key_ids) == 2 and path.read_bytes() == FIXTURE_V1.read_bytes()   # reading writes nothing
    with pytest.raises(WrongPassphrase):
        store.open(PASS, "someone")
    with pytest.raises(KeyStoreError, match="old one-passphrase format"):
        store.add_account(store.open(PASS).master, new_account("x1", "viewer", ["a"], None, NOW, {}), "long enough!")
    assert store.upgrade(PASS) and not store.upgrade(PASS)
    upgraded = KeyStore.load(path)
    assert not upgraded.legacy and json.loads(path.read_text())["format"] == "cryospy-keystore/v2"
    again = upgraded.open(PASS)
    assert again.keys.key_ids == keys.key_ids and again.account.is_admin
    assert again.keys.index_key == keys.index_key
    # A change through the passphrase upgrades as it goes, too.
    shutil.copy(FIXTURE_V1, path)
    KeyStore.load(path).change_passphrase(PASS, "after the upgrade")
    assert KeyStore.load(path).open("after the upgrade").keys.key_ids == keys.key_ids


def test_bad_account_input_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    store = _with_viewer(tmp_path)
    opened = store.open(PASS)
    before = store.path.read_bytes()
    cases = [
        (lambda: new_account("teen", "viewer", ["front"], None, NOW, opened.accounts), "name", "already exists"),
        (lambda: new_account("Bad Name", "viewer", ["front"], None, NOW, opened.accounts), "name", "not allowed"),
        (lambda: new_account("kid", "viewer", [], None, NOW, opened.accounts), "cameras", "at least one camera"),
        (lambda: new_account("kid", "owner", ["front"], None, NOW, opened.accounts), "role", "admin' or 'viewer"),
        (lambda: new_account("kid", "admin", [], NOW + timedelta(days=1), NOW, opened.accounts), "expires",
         "do not expire"),
        (lambda: parse_expiry("2020-01-01", NOW), "expires", "in the past"),
        (lambda: parse_expiry("next tuesday", NOW), "expires", "not a date"),
        (lambda: check_passphrase("short", "kid"), "passphrase", "at least 10"),
        (lambda: check_passphrase("neighbour-2", "neighbour-2"), "passphrase", "not be the account's name"),
        (lambda: changed_account(opened.accounts["teen"], [], "keep", NOW), "cameras", "at least one camera"),
        (lambda: store.remove_account(opened.master, "admin"), "name", "last admin"),
        (lambda: store.remove_account(opened.master, "ghost"), "name", "no account named"),
        (lambda: store.add_account(opened.master, opened.accounts["teen"], "whatever passphrase"), "name",
         "already exists"),
    ]
    for call, field, message in cases:
        with pytest.raises(AccountError, match=message) as caught:
            call()
        assert caught.value.field == field
    assert store.path.read_bytes() == before
    assert parse_expiry("2026-03-08", NOW) == datetime(2026, 3, 8, 23, 59, 59, tzinfo=UTC)


def test_expiry_is_part_of_the_record(tmp_path: Path) -> None:
    store = _with_viewer(tmp_path)
    opened = store.open(PASS)
    week = NOW + timedelta(days=7)
    store.update_account(opened.master, changed_account(opened.accounts["teen"], ["front", "garden"], week, NOW))
    teen = KeyStore.load(store.path).open(VIEWER_PASS, "teen").account
    assert teen.cameras == {"front", "garden"} and teen.expires == week
    assert not teen.expired(NOW) and teen.expired(week)
