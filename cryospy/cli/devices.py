"""``cryospy devices``: enrol a camera and write its complete agent config in one step.

By default the device's signing key pair is made here and its private half goes into the config. With
``--agent-generates-key`` no key is made here: the agent makes its own at first start, keeps it in
``<spool_dir>/signing-key`` and registers the public half (trust on first use), as for a device created on
the dashboard. Either way the secret appears only in the config written here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryospy.common.atomic import write_atomic
from cryospy.common.keys import (
    KeyStore,
    generate_device_signing_key,
    signing_key_to_text,
    verify_key_to_text,
)
from cryospy.edge_agent.config import parse_configs, read_config_file
from cryospy.edge_agent.errors import ConfigError
from cryospy.infra import certificates
from cryospy.infra.deployment import Deployment

from .admin_client import AdminClient


def create_device(dep: Deployment, device_id: str, out: Path | None, agent_overrides: dict[str, Any],
                  *, agent_generates_key: bool = False, add_to: Path | None = None) -> dict[str, Any]:
    """Register the device and return its agent config (the secret and signing key appear nowhere else).

    With ``agent_generates_key`` the config has no ``signing_key``: the agent makes and registers its own.
    With ``add_to`` the camera joins a multi-camera agent config (see
    :func:`cryospy.edge_agent.config.parse_configs`); the file is checked before the device is registered."""
    if add_to is not None:
        existing = _multi_camera_doc(add_to, device_id)
    signing = None if agent_generates_key else generate_device_signing_key()
    request: dict[str, Any] = {"device_id": device_id}
    if signing is not None:
        request["signing_key"] = verify_key_to_text(signing.public_key())
    client = AdminClient.of(dep)
    created = client.call("POST", "/v1/admin/devices", request)
    config = {
        "client_id": device_id,
        "client_secret": created["secret"],
        "server_url": dep.api_url,
        "deployment_public_key": KeyStore.load(dep.keys_path).current_public_key().to_text(),
        "storage_token": created["storage_token"],   # so it records under its pseudonym before it first syncs
        **({"signing_key": signing_key_to_text(signing)} if signing is not None else {}),
        "spool_dir": f"spool-{device_id.replace(' ', '_')}",
        **({"ca_bundle": certificates.ca_pem(dep)} if dep.tls else {}),   # the camera trusts this server only
        **agent_overrides,
    }
    if out is not None:
        write_atomic(out, json.dumps(config, indent=2).encode())
    if add_to is not None:
        existing["cameras"].append(config)
        write_atomic(add_to, json.dumps(existing, indent=2).encode())
    return config


def _multi_camera_doc(path: Path, device_id: str) -> dict[str, Any]:
    """The agent config at ``path`` as a ``cameras`` document (a single-camera file becomes its first entry)."""
    if not path.exists():
        return {"cameras": []}
    doc = read_config_file(path)
    if isinstance(doc, dict) and "cameras" not in doc:
        doc = {"cameras": [doc]}
    parse_configs(doc, path.parent)                  # refuse to add to a file the agent could not run
    if any(isinstance(c, dict) and c.get("client_id") == device_id for c in doc["cameras"]):
        raise ConfigError(f"{path} already has a camera {device_id!r}; pick another id or edit the file")
    return doc


def list_devices(dep: Deployment) -> list[dict[str, Any]]:
    return AdminClient.of(dep).call("GET", "/v1/admin/devices")["devices"]
