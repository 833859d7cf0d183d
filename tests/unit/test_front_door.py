"""The runtime's front door without a server: body caps per route family, the Host rule, allowed_hosts config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cryospy.infra.front_door import LARGEST_BODY, body_limit, host_allowed, host_names
from cryospy.infra.server_config import ServerConfigError, load_server_config

NAMES = host_names("cryospy.lan", "http://Cams.Example:8480/", ["nas.local."])


def test_every_path_has_a_cap_and_the_webhook_has_the_largest() -> None:
    assert body_limit("/_minio/events") == LARGEST_BODY == 1 << 20
    assert body_limit("/v1/device/slots") == body_limit("/v1/admin/devices") == 64 * 1024
    assert body_limit("/login") == body_limit("/admin/devices") == body_limit("/no/such") == 16 * 1024


@pytest.mark.parametrize(("host", "ok"), [
    ("cryospy.lan:8480", True), ("CRYOSPY.LAN.", True), ("cams.example", True), ("nas.local:80", True),
    ("localhost:8480", True), ("192.168.1.10:8480", True), ("[fe80::1]:8480", True), (None, True), ("", True),
    ("attacker.example:8480", False), ("cryospy.lan.attacker.example", False), ("[attacker]:80", False),
])
def test_host_rule(host: str | None, ok: bool) -> None:
    assert host_allowed(host, NAMES) is ok


def test_allowed_hosts_in_server_json(tmp_path: Path) -> None:
    path = tmp_path / "server.json"
    path.write_text(json.dumps({"allowed_hosts": ["cryospy.lan"]}))
    assert load_server_config(path).allowed_hosts == ("cryospy.lan",)
    path.write_text(json.dumps({"allowed_hosts": ["http://cryospy.lan:8480"]}))
    with pytest.raises(ServerConfigError, match="without scheme or port"):
        load_server_config(path)


def test_the_removed_auto_disable_setting_stops_the_runtime_with_what_changed(tmp_path: Path) -> None:
    from cryospy.functions.devices.auth_defence import AuthDefenceSettings, AuthDefenceSettingsError

    path = tmp_path / "server.json"
    path.write_text(json.dumps({"auth_events": {"auto_disable_threshold": 10}}))
    with pytest.raises(AuthDefenceSettingsError, match="only an admin disables a device"):
        AuthDefenceSettings.from_dict(load_server_config(path).auth_events or {})
