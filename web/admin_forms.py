"""The admin pages' forms, as pure functions: the settings form built from the settings schema and read back.

Why a schema-driven form: ``cryospy.common.settings`` keeps bounds, choices and descriptions in one table and
publishes them as JSON Schema; building the inputs from that schema means a new setting appears on the page
with the right input type and limits without touching a template. Reading the form back is the only place
where text becomes typed values; anything that is not even a number is refused here with the field's name,
everything else (bounds, rules across fields) is left to the domain's validator so its messages are shown.

Only the settings that differ from the stored ones are sent on: an update is a PATCH, so a rule broken
together with a stored value is reported against the field the admin actually changed.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from cryospy.common.settings import json_schema
from cryospy.functions.api import json_limits
from cryospy.functions.errors import BadRequest

SETTINGS_PREFIX = "settings."


@dataclass(frozen=True)
class SettingField:
    """One input of the settings form, ready for the template."""

    name: str
    input: str                  # checkbox, number, select, text, json
    label: str
    hint: str
    value: Any                  # bool for a checkbox, text otherwise
    minimum: float | None = None
    maximum: float | None = None
    step: str = ""
    options: tuple[str, ...] = ()
    placeholder: str = ""
    error: str = ""


def _input_kind(prop: dict[str, Any]) -> str:
    if "enum" in prop:
        return "select"
    return {"boolean": "checkbox", "integer": "number", "number": "number", "array": "json"}.get(prop["type"], "text")


def _as_text(value: Any, kind: str) -> Any:
    if kind == "checkbox":
        return bool(value)
    if kind == "json":
        return json.dumps(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def settings_fields(current: dict[str, Any], submitted: dict[str, str] | None = None,
                    errors: dict[str, str] | None = None) -> list[SettingField]:
    """The form's inputs in schema order, showing ``submitted`` (the admin's own input after a refusal)
    where given, else the stored ``current`` settings; ``errors`` maps a setting name to its message."""
    errors = errors or {}
    out = []
    for name, prop in json_schema()["properties"].items():
        kind = _input_kind(prop)
        if submitted is None:
            value = _as_text(current.get(name, prop["default"]), kind)
        elif kind == "checkbox":
            value = name in submitted
        else:
            value = submitted.get(name, "")
        out.append(SettingField(
            name=name, input=kind, label=name.replace("_", " ").capitalize(), hint=prop.get("description", ""),
            value=value, minimum=prop.get("minimum"), maximum=prop.get("maximum"),
            step="1" if prop["type"] == "integer" else "any" if prop["type"] == "number" else "",
            options=tuple(prop.get("enum", ())),
            placeholder=" or ".join(e for e in prop.get("examples", ()) if e) if kind == "text" else "",
            error=errors.get(name, "")))
    return out


def _number(name: str, prop: dict[str, Any], raw: str) -> int | float:
    text = raw.strip()
    bounds = f"from {_fmt(prop['minimum'])} to {_fmt(prop['maximum'])}"
    if not text:
        raise BadRequest(f"{name} is empty; enter a number {bounds}", field=SETTINGS_PREFIX + name)
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)   # whole numbers stay ints, so the validator sees what the admin typed
    try:
        number = float(text)
    except ValueError:
        raise BadRequest(f"{name}={text!r} is not a number; enter a number {bounds}",
                         field=SETTINGS_PREFIX + name) from None
    if not math.isfinite(number):
        raise BadRequest(f"{name}={text!r} is not a finite number; enter a number {bounds}",
                         field=SETTINGS_PREFIX + name)
    return number   # a fraction for a whole-number setting is left for the validator to name


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def form_to_settings(form: dict[str, str], current: dict[str, Any]) -> dict[str, Any]:
    """The settings update a submitted form asks for: typed values of the settings that changed.

    Raises BadRequest(field="settings.<name>") for input that is not even of the right kind (text in a
    number field, JSON that does not parse); ranges and rules are the domain validator's job."""
    update: dict[str, Any] = {}
    for name, prop in json_schema()["properties"].items():
        kind = _input_kind(prop)
        value: Any
        if kind == "checkbox":
            value = name in form
        elif kind == "number":
            value = _number(name, prop, form.get(name, ""))
        elif kind == "json":
            raw = form.get(name, "").strip() or "[]"
            try:
                value = json_limits.loads(raw)
            except json_limits.JsonTooDeep as exc:
                raise BadRequest(str(exc), field=SETTINGS_PREFIX + name) from None
            except ValueError as exc:
                raise BadRequest(f"{name} is not valid JSON ({exc.msg} at character {exc.pos + 1}); write a list "
                                 "of polygons like [[[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]] or [] for none",
                                 field=SETTINGS_PREFIX + name) from None
        else:
            value = form.get(name, "").strip()
        if value != current.get(name, prop["default"]):
            update[name] = value
    return update


def setting_name(field: str | None) -> str | None:
    """The setting a domain error's ``field`` ("settings.<name>") points at, or None."""
    if field and field.startswith(SETTINGS_PREFIX):
        return field[len(SETTINGS_PREFIX):]
    return None


def agent_config(device_id: str, secret: str, server_url: str, deployment_public_key: str,
                 storage_token: str = "", ca_bundle: str = "") -> str:
    """The agent config the admin copies to the camera, as JSON text.

    It carries no signing key: the agent makes its own at first start and registers the public half, so no
    device private key ever passes through the browser. With TLS it carries the deployment's CA certificate
    (public), so the camera trusts this server and nothing else."""
    return json.dumps({
        "client_id": device_id,
        "client_secret": secret,
        "server_url": server_url,
        "deployment_public_key": deployment_public_key,
        **({"storage_token": storage_token} if storage_token else {}),
        "spool_dir": f"spool-{device_id.replace(' ', '_')}",
        **({"ca_bundle": ca_bundle} if ca_bundle else {}),
    }, indent=2)
