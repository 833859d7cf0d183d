"""The API's OpenAPI 3.1 description, built in one place and committed as ``functions/openapi.json``.

``python -m cryospy.functions.openapi > functions/openapi.json`` regenerates the file; a test checks that
the committed file equals this output and that its paths and methods are exactly the app's routes, so the
description cannot drift from the code. The device settings schema is the one ``cryospy.common.settings``
validates with.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from cryospy import __version__
from cryospy.common.settings import json_schema

ERROR = {"type": "object", "required": ["error"], "properties": {
    "error": {"type": "string"}, "field": {"type": "string", "description": "the request field at fault"}}}
DEVICE_ID = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9 _+\\-]{0,62}$"}
TIMESTAMP = {"type": "string", "format": "date-time"}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "invalid input; `field` names the culprit", 401: "missing or invalid credentials",
            404: "no such device", 409: "conflicts with the device's state (for a device: a different signing "
                                        "key is registered, or none is yet)", 413: "body too large",
            429: "too many failed logins from this address"}
    return {str(c): {"description": text[c], "content": {"application/json": {"schema": ERROR}}} for c in codes}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


DEVICE = {"type": "object", "required": ["device_id", "enabled", "retired", "signing_key", "settings"], "properties": {
    "device_id": DEVICE_ID, "enabled": {"type": "boolean"}, "retired": {"type": "boolean"},
    "signing_key": {"type": ["string", "null"], "description": "null until the device registers its key"},
    "signing_key_fingerprint": {"type": ["string", "null"]}, "awaiting_signing_key": {"type": "boolean"},
    "created_at": {"type": "string"}, "updated_at": {"type": "string"},
    "last_seen": {"type": ["string", "null"]}, "settings": {"type": "object"},
    "heartbeat": {"type": ["object", "null"]}}}
SLOT_REQUEST = {"type": "object", "additionalProperties": False,
                "required": ["size", "sha256", "captured_at", "sequence"],
                "properties": {
                    "size": {"type": "integer", "minimum": 1, "description": "bytes of the sealed clip"},
                    "sha256": {"type": "string", "description": "SHA-256 of the sealed clip, hex or base64"},
                    "captured_at": TIMESTAMP, "sequence": {"type": "integer", "minimum": 0},
                    "duration_s": {"type": "number", "minimum": 0},
                    "motion": {"type": "object", "description": "motion summary (informational)"}}}
SLOT = {"type": "object", "required": ["method", "url", "headers", "key", "expires_at"], "properties": {
    "method": {"const": "PUT"}, "url": {"type": "string"},
    "headers": {"type": "object", "additionalProperties": {"type": "string"},
                "description": "send exactly these headers with the PUT"},
    "key": {"type": "string"}, "expires_at": TIMESTAMP}}
DEVICE_EVENT = {"type": "object", "additionalProperties": False, "required": ["kind", "at"], "properties": {
    "kind": {"enum": ["motion_start", "motion_end", "motion_clip", "camera_online", "camera_offline",
                      "source_problem"]},
    "at": {**TIMESTAMP, "maxLength": 40}, "id": {"type": "string", "maxLength": 64, "description": "motion run id"},
    "score": {"type": "number", "minimum": 0, "maximum": 1},
    "duration_s": {"type": "number", "minimum": 0, "maximum": 86400},
    "clip_sequence": {"type": "integer", "minimum": 0}, "detail": {"type": "string", "maxLength": 300}}}
DEVICE_EVENTS = {"type": "object", "additionalProperties": False, "required": ["events"], "properties": {
    "events": {"type": "array", "maxItems": 100, "items": DEVICE_EVENT}}}
HEARTBEAT = {"type": "object", "additionalProperties": False, "properties": {
    "agent_version": {"type": "string", "maxLength": 64}, "spool_depth": {"type": "integer", "minimum": 0},
    "spool_bytes": {"type": "integer", "minimum": 0}, "dropped_clips": {"type": "integer", "minimum": 0},
    "source_state": {"type": "string", "maxLength": 300}, "motion_state": {"type": "string", "maxLength": 300},
    "settings_etag": {"type": "string", "maxLength": 100},
    "last_sequence": {"type": "integer", "minimum": -1}, "uptime_s": {"type": "number", "minimum": 0},
    "settings": {**json_schema(partial=True), "description": "the settings the agent applies"},
    "pinned": {"type": "object", "additionalProperties": False,
               "description": "the agent config's local pins, which win over the server's settings",
               "properties": {
                   "clip_seconds": {"type": "number", "minimum": 2, "maximum": 1800},
                   "fps": {"type": "number", "minimum": 1, "maximum": 60},
                   "width": {"type": "integer", "minimum": 0, "maximum": 4096},
                   "height": {"type": "integer", "minimum": 0, "maximum": 4096},
                   "crf": {"type": "integer", "minimum": 0, "maximum": 51},
                   "keyframe_seconds": {"type": "number", "minimum": 0.5, "maximum": 10},
                   "settings_sync_seconds": {"type": "integer", "minimum": 5, "maximum": 86400}}}}}
VERIFY_KEY = {"type": "string", "maxLength": 200, "description": "the device's Ed25519 public key, cs1-ed25519-pub:…"}
CREATE = {"type": "object", "additionalProperties": False, "required": ["device_id"], "properties": {
    "device_id": DEVICE_ID,
    "signing_key": {**VERIFY_KEY, "description": "optional: without it the agent registers its own at first start"},
    "settings": json_schema(partial=True)}}
KEY_REGISTRATION = {"type": "object", "required": ["device_id", "signing_key_fingerprint", "registered"],
                    "properties": {"device_id": DEVICE_ID, "signing_key_fingerprint": {"type": "string"},
                                   "registered": {"enum": ["now", "before"]}}}
LIVE_WATCH = {"type": "object", "required": ["watch"], "properties": {
    "watch": {"type": "boolean"},
    "poll_again_s": {"type": "number", "description": "the server could not hold the poll: ask again after this"}}}
LIVE_PARTS_REQUEST = {"type": "object", "additionalProperties": False, "properties": {
    "uploaded": {"type": "array", "maxItems": 8, "items": {"type": "string"}},
    "slots": {"type": "integer", "minimum": 0, "maximum": 8}}}
LIVE_PARTS = {"type": "object", "required": ["watch", "accepted", "refused", "slots"], "properties": {
    "watch": {"type": "boolean"}, "accepted": {"type": "array", "items": {"type": "string"}},
    "refused": {"type": "object", "additionalProperties": {"type": "string"}},
    "slots": {"type": "array", "items": SLOT}}}
PATH_ID = [{"name": "device_id", "in": "path", "required": True, "schema": DEVICE_ID}]
DEVICE_AUTH = [{"deviceBasic": []}]
ADMIN_AUTH = [{"adminToken": []}]


def build_spec() -> dict[str, Any]:
    health = {"get": {"operationId": "health", "security": [], "summary": "liveness (no auth)",
                      "responses": {"200": _json({"type": "object"})}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "CryoSpy API", "version": __version__,
                 "description": "Devices ask for upload slots, settings and send heartbeats; admins manage devices "
                                "and query clips. Errors are JSON {error, field?}; a client's mistake is never a 5xx."},
        "components": {"securitySchemes": {
            "deviceBasic": {"type": "http", "scheme": "basic", "description": "device_id:hex_secret"},
            "adminToken": {"type": "http", "scheme": "bearer", "description": "admin_token from deployment.json"}}},
        "paths": {
            "/health": health,
            "/v1/health": {"get": {**health["get"], "operationId": "health_v1"}},
            "/v1/device/slots": {"post": {
                "operationId": "request_upload_slot", "security": DEVICE_AUTH, "requestBody": _body(SLOT_REQUEST),
                "responses": {"201": _json(SLOT, "a presigned PUT for exactly this clip"),
                              **_errors(400, 401, 409, 413, 429)}}},
            "/v1/device/signing-key": {"post": {
                "operationId": "register_signing_key", "security": DEVICE_AUTH,
                "summary": "register the device's own public signing key (trust on first use)",
                "requestBody": _body({"type": "object", "additionalProperties": False, "required": ["signing_key"],
                                      "properties": {"signing_key": VERIFY_KEY}}),
                "responses": {"201": _json(KEY_REGISTRATION, "stored: the device had no key"),
                              "200": _json(KEY_REGISTRATION, "this key was registered before"),
                              **_errors(400, 401, 409, 413, 429)}}},
            "/v1/device/events": {"post": {
                "operationId": "device_events", "security": DEVICE_AUTH,
                "summary": "real-time events (motion, camera state), fanned out to the configured channels",
                "requestBody": _body(DEVICE_EVENTS),
                "responses": {"200": _json({"type": "object", "properties": {"accepted": {"type": "integer"}}}),
                              **_errors(400, 401, 413, 429)}}},
            "/v1/device/uploads/confirm": {"post": {
                "operationId": "confirm_upload", "security": DEVICE_AUTH,
                "requestBody": _body({"type": "object", "additionalProperties": False, "required": ["key"],
                                      "properties": {"key": {"type": "string"}}}),
                "responses": {"200": _json({"type": "object"}), **_errors(400, 401, 409, 413, 429)}}},
            "/v1/device/live/watch": {"get": {
                "operationId": "watch_live_viewers", "security": DEVICE_AUTH,
                "summary": "long-poll: answers when 'is anyone watching this camera' differs from `watching`",
                "parameters": [{"name": "watching", "in": "query", "required": False, "schema": {"enum": ["0", "1"]}},
                               {"name": "wait", "in": "query", "required": False,
                                "schema": {"type": "number", "minimum": 0, "maximum": 25}}],
                "responses": {"200": _json(LIVE_WATCH), **_errors(400, 401, 429)}}},
            "/v1/device/live/parts": {"post": {
                "operationId": "exchange_live_parts", "security": DEVICE_AUTH,
                "summary": "report uploaded live parts (each is checked) and get fresh live-part slots",
                "requestBody": _body(LIVE_PARTS_REQUEST),
                "responses": {"200": _json(LIVE_PARTS), **_errors(400, 401, 409, 413, 429)}}},
            "/v1/device/settings": {"get": {
                "operationId": "get_device_settings", "security": DEVICE_AUTH,
                "parameters": [{"name": "If-None-Match", "in": "header", "required": False,
                                "schema": {"type": "string"}}],
                "responses": {"200": _json({"type": "object", "required": ["device_id", "settings"], "properties": {
                    "device_id": DEVICE_ID, "settings": json_schema(),
                    "deployment_public_key": {"type": "string"}}}),
                    "304": {"description": "unchanged since the ETag given"}, **_errors(401, 429)}}},
            "/v1/device/heartbeat": {"post": {
                "operationId": "device_heartbeat", "security": DEVICE_AUTH, "requestBody": _body(HEARTBEAT),
                "responses": {"200": _json({"type": "object"}), **_errors(400, 401, 413, 429)}}},
            "/v1/admin/devices": {
                "post": {"operationId": "create_device", "security": ADMIN_AUTH, "requestBody": _body(CREATE),
                         "responses": {"201": _json(DEVICE, "created; `secret` is shown this once"),
                                       **_errors(400, 401, 409, 413)}},
                "get": {"operationId": "list_devices", "security": ADMIN_AUTH,
                        "responses": {"200": _json({"type": "object", "properties": {
                            "devices": {"type": "array", "items": DEVICE}}}), **_errors(401)}}},
            "/v1/admin/devices/{device_id}": {
                "get": {"operationId": "show_device", "security": ADMIN_AUTH, "parameters": PATH_ID,
                        "responses": {"200": _json(DEVICE), **_errors(401, 404)}},
                "delete": {"operationId": "delete_device", "security": ADMIN_AUTH,
                           "parameters": [*PATH_ID, {"name": "clips", "in": "query", "required": True,
                                                     "schema": {"enum": ["delete", "keep"]}}],
                           "responses": {"200": _json({"type": "object"}), **_errors(400, 401, 404)}}},
            "/v1/admin/devices/{device_id}/settings": {"patch": {
                "operationId": "update_device_settings", "security": ADMIN_AUTH, "parameters": PATH_ID,
                "requestBody": _body(json_schema(partial=True)),
                "responses": {"200": _json(DEVICE), **_errors(400, 401, 404, 413)}}},
            **{f"/v1/admin/devices/{{device_id}}/{action}": {"post": {
                "operationId": f"{action.replace('-', '_')}_device", "security": ADMIN_AUTH, "parameters": PATH_ID,
                "responses": {"200": _json(DEVICE), **_errors(401, 404, 409)}}}
               for action in ("disable", "enable", "rotate-secret")},
            "/v1/admin/clips/protect": {"post": {
                "operationId": "protect_clip", "security": ADMIN_AUTH,
                "requestBody": _body({"type": "object", "additionalProperties": False, "required": ["key", "protected"],
                                      "properties": {"key": {"type": "string"}, "protected": {"type": "boolean"}}}),
                "responses": {"200": _json({"type": "object"}), **_errors(400, 401, 404, 413)}}},
            "/v1/admin/clips/delete": {"post": {
                "operationId": "delete_clip", "security": ADMIN_AUTH,
                "requestBody": _body({"type": "object", "additionalProperties": False, "required": ["key"],
                                      "properties": {"key": {"type": "string"}}}),
                "responses": {"200": _json({"type": "object"}), **_errors(400, 401, 404, 409, 413)}}},
            "/v1/admin/clips": {"get": {
                "operationId": "query_clips", "security": ADMIN_AUTH,
                "parameters": [
                    {"name": "device", "in": "query", "schema": DEVICE_ID},
                    {"name": "from", "in": "query", "schema": TIMESTAMP},
                    {"name": "to", "in": "query", "schema": TIMESTAMP},
                    {"name": "motion", "in": "query", "schema": {"enum": ["true", "false"]}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": _json({"type": "object", "properties": {
                    "clips": {"type": "array", "items": {"type": "object"}},
                    "next_cursor": {"type": ["string", "null"]}, "matched": {"type": "integer"}}}),
                    **_errors(400, 401)}}},
        },
    }


if __name__ == "__main__":
    json.dump(build_spec(), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
