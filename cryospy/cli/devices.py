"""``cryospy devices``: enrol a camera and write its complete agent config in one step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryospy.common.keys import (
    KeyStore,
    generate_device_signing_key,
    signing_key_to_text,
    verify_key_to_text,
)
from cryospy.infra.deployment import Deployment, write_private_file

from .admin_client import AdminClient


def create_device(dep: Deployment, device_id: str, out: Path | None, agent_overrides: dict[str, Any]) -> dict[str, Any]:
    """Register the device and return its agent config (the secret and signing key appear nowhere else)."""
    signing = generate_device_signing_key()
    client = AdminClient(dep.runtime_url, dep.admin_token)
    created = client.call("POST", "/v1/admin/devices", {
        "device_id": device_id, "signing_key": verify_key_to_text(signing.public_key())})
    config = {
        "client_id": device_id,
        "client_secret": created["secret"],
        "server_url": dep.api_url,
        "deployment_public_key": KeyStore.load(dep.keys_path).current_public_key().to_text(),
        "signing_key": signing_key_to_text(signing),
        "spool_dir": f"spool-{device_id.replace(' ', '_')}",
        **agent_overrides,
    }
    if out is not None:
        write_private_file(out, json.dumps(config, indent=2).encode())
    return config


def list_devices(dep: Deployment) -> list[dict[str, Any]]:
    return AdminClient(dep.runtime_url, dep.admin_token).call("GET", "/v1/admin/devices")["devices"]
