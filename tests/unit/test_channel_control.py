"""Channels set from the dashboard, without a network: the sealed store, the control that validates, saves and
swaps the hub, and the admin form's reading. Presence (cameras that fall silent) is held to its tests on both
of its stores in tests/unit/test_shared_contacts.py."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cryospy.functions.alerts.rules import Alerts
from cryospy.functions.channels import ChannelHub
from cryospy.functions.channels.control import ChannelControl, MailSettings, parse_mail
from cryospy.functions.channels.errors import ChannelSettingsError
from cryospy.functions.channels.stored import StoredChannels
from cryospy.functions.errors import KeysLocked
from cryospy.web.admin_channels import cards, form_to_section, save

KEY = os.urandom(32)


# -- the sealed store ----------------------------------------------------------------------------------
def test_saved_settings_are_sealed_and_only_this_key_opens_them(tmp_path: Path):
    store = StoredChannels(tmp_path / "channels.sealed", lambda: KEY)
    assert store.load() == {}
    doc = {"mqtt": {"enabled": True, "host": "broker.lan", "password": "hunter2-broker"}}
    store.save(doc)
    raw = store.path.read_bytes()
    assert raw.startswith(b"CSCH1") and b"hunter2" not in raw and b"broker.lan" not in raw
    assert store.path.stat().st_mode & 0o777 == 0o600
    assert store.load() == doc
    with pytest.raises(ChannelSettingsError, match="cannot be opened with this deployment's key"):
        StoredChannels(store.path, lambda: os.urandom(32)).load()
    flipped = bytearray(raw)
    flipped[-1] ^= 1
    store.path.write_bytes(bytes(flipped))
    with pytest.raises(ChannelSettingsError, match="cannot be opened"):
        store.load()
    store.path.write_bytes(b"{}")
    with pytest.raises(ChannelSettingsError, match="not a CryoSpy channel settings file"):
        store.load()


def _locked() -> bytes:
    raise KeysLocked("locked")


# -- the control -------------------------------------------------------------------------------------
def control(tmp_path: Path, server_doc: dict[str, Any] | None = None, key: Any = lambda: KEY,
            mailer: Any = None) -> tuple[ChannelControl, Any]:
    services = SimpleNamespace(home_events=ChannelHub(), alerts=Alerts(mailer, ["a@x.lan"], None))
    c = ChannelControl(services, server_doc or {}, MailSettings(("a@x.lan",), False), mailer,  # type: ignore[arg-type]
                       StoredChannels(tmp_path / "channels.sealed", key))
    return c, services


WEBHOOK = {"enabled": True, "url": "http://127.0.0.1:9/hook", "secret": "s" * 20}


def test_an_update_is_validated_saved_and_swaps_the_hub(tmp_path: Path):
    c, services = control(tmp_path, {"push": {"enabled": True, "url": "http://127.0.0.1:9/p"}})
    c.load()
    c.start()
    hub = services.home_events          # the runtime's hub, built from server.json (here: an empty one)
    assert c.origin("push") == "server.json" and c.origin("webhook") == ""
    with pytest.raises(ChannelSettingsError, match="secret must be at least 16 characters"):
        c.update("webhook", {**WEBHOOK, "secret": "short"})
    assert hub.names == [] and not c.store.path.exists(), "refused: nothing saved, nothing swapped"
    c.update("webhook", WEBHOOK)
    assert services.home_events is hub and hub.names == ["webhook", "push"], "same hub, new channels"
    assert c.origin("webhook") == "dashboard" and c.sections()["webhook"] == WEBHOOK
    c.update("push", {"enabled": False, "url": "http://127.0.0.1:9/p"})
    assert services.home_events.names == ["webhook"], "the dashboard switches off what server.json switched on"
    services.home_events.close()


def test_mail_recipients_and_thumbnails_reach_the_clip_alerts(tmp_path: Path):
    c, services = control(tmp_path, mailer=object())
    c.load()
    c.update("email", {"enabled": True}, {"recipients": ["me@home.lan", "you@home.lan"], "attach_thumbnails": True})
    assert services.home_events.names == ["email"]
    assert services.alerts.recipients == ["me@home.lan", "you@home.lan"] and services.alerts.policy.attach_thumbnails
    with pytest.raises(ChannelSettingsError, match=r"smtp or alerts\.recipients is not set"):
        c.update("email", {"enabled": True}, {"recipients": [], "attach_thumbnails": False})
    without_smtp, _ = control(tmp_path / "other")
    with pytest.raises(ChannelSettingsError, match="smtp"):
        without_smtp.update("email", {"enabled": True})


@pytest.mark.parametrize("doc", [{"recipients": ["not an address"]}, {"recipients": ["a@b"]},
                                 {"recipients": ["x@y.lan"] * 21}, {"recipients": "me@home.lan"},
                                 {"attach_thumbnails": "yes"}, {"bcc": []}])
def test_bad_mail_settings_are_refused(doc: dict[str, Any]):
    with pytest.raises(ChannelSettingsError, match="mail"):
        parse_mail(doc, MailSettings())


def test_a_locked_runtime_keeps_server_json_until_the_first_unlock(tmp_path: Path):
    c, services = control(tmp_path)
    c.load()
    c.update("webhook", WEBHOOK)
    locked, services = control(tmp_path, key=_locked)
    locked.load()
    assert services.home_events.names == [] and not locked.loaded
    locked.store._file._index_key = lambda: KEY    # the admin logs in
    locked.load()
    assert services.home_events.names == ["webhook"]


def test_unreadable_saved_settings_are_reported_and_server_json_runs(tmp_path: Path):
    (tmp_path / "channels.sealed").write_bytes(b"garbage")
    c, services = control(tmp_path, {"push": {"enabled": True, "url": "http://127.0.0.1:9/p"}})
    c.load()
    assert "not in use" in c.problem and services.home_events.names == []   # the hub server.json built stays


# -- the form ------------------------------------------------------------------------------------------
def test_an_empty_secret_field_keeps_the_secret_and_the_remove_box_removes_it():
    current = {"enabled": True, "host": "b.lan", "username": "u", "password": "p" * 8, "kinds": ["motion_start"]}
    form = {"enabled": "on", "host": " b2.lan ", "port": "", "username": "u", "password": "", "tls": "on"}
    section, mail = form_to_section("mqtt", form, current)
    assert mail is None
    assert section == {"enabled": True, "host": "b2.lan", "username": "u", "password": "p" * 8, "tls": True,
                       "kinds": ["motion_start"]}, "kept: the secret and the keys the page does not show"
    section, _ = form_to_section("mqtt", {**form, "clear_password": "on", "port": "8883"}, current)
    assert "password" not in section and section["port"] == 8883
    section, _ = form_to_section("mqtt", {**form, "password": "new", "clear_password": "on"}, current)
    assert section["password"] == "new", "a typed password wins over the box"
    section, _ = form_to_section("mqtt", {**form, "port": "80x"}, current)
    assert section["port"] == "80x", "left for the parser to name"
    off, _ = form_to_section("push", {"url": "http://n.lan/t"}, {"enabled": True, "url": "http://n.lan/t"})
    assert off["enabled"] is False, "an unchecked box switches the channel off"


def test_recipients_are_read_one_per_line_or_comma_separated():
    _, mail = form_to_section("email", {"enabled": "on", "recipients": "me@home.lan,\r\n you@home.lan ;\n\n"}, {})
    assert mail == {"recipients": ["me@home.lan", "you@home.lan"], "attach_thumbnails": False}


def test_the_page_never_carries_a_secret_and_a_refused_form_shows_what_was_typed(tmp_path: Path):
    c, _ = control(tmp_path, {"webhook": WEBHOOK, "mqtt": {"enabled": True, "host": "b.lan", "username": "u",
                                                          "password": "broker-secret"}})
    c.load()
    shown = {card.name: card for card in cards(c, [])}
    assert shown["webhook"].secrets == [("secret", "Secret (16+ characters)", True)]
    assert "s" * 20 not in repr(shown) and "broker-secret" not in repr(shown)
    assert shown["mqtt"].enabled and ("host", "Broker host", "text", "b.lan") in shown["mqtt"].fields
    assert all(card.leaves for card in shown.values())
    typed = {"enabled": "on", "host": "typo", "password": "typed-secret"}
    with pytest.raises(ChannelSettingsError):
        save(c, "mqtt", {**typed, "port": "x"})
    again = {card.name: card for card in cards(c, [], typed, "mqtt", "bad port")}
    assert again["mqtt"].error == "bad port" and ("host", "Broker host", "text", "typo") in again["mqtt"].fields
    assert "typed-secret" not in repr(again)
    with pytest.raises(ChannelSettingsError, match="no channel"):
        save(c, "sms", {})
