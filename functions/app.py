"""CryoSpy's Chalice app: a routing table. Each view parses, calls one domain function, and returns.

Devices talk to ``/v1/device/*`` with HTTP Basic ``device_id:hex_secret`` (and register their own signing
key on first use); the CLI and scripts talk to ``/v1/admin/*`` with the deployment's admin token. Bucket
notifications arrive through the runtime's webhook, which calls the ``@app.on_s3_event`` handlers below;
their bucket/prefix/suffix/events are also what the runtime applies as MinIO's notification configuration
(one source of truth). The OpenAPI description of these routes is ``functions/openapi.json`` (a test keeps
the two in step).
"""

from collections.abc import Callable

from chalice import Chalice
from chalice.app import S3Event

from cryospy.common.objectkeys import BUCKET, CLIP_PREFIX, CLIP_SUFFIX
from cryospy.functions.api import http
from cryospy.functions.audit.actor import Actor, act_as
from cryospy.functions.channels import feed
from cryospy.functions.clips.ingest import ingest_clip
from cryospy.functions.devices import lifecycle, self_service
from cryospy.functions.devices.auth import authenticate_device
from cryospy.functions.events import ObjectEvent, parse_notification
from cryospy.functions.index.query import ClipQuery
from cryospy.functions.live.parts import PartsRequest, exchange_parts, wait_for_viewers, watch_request
from cryospy.functions.retention import clip_actions, policy
from cryospy.functions.retention.removed import clip_removed
from cryospy.functions.services import get_services
from cryospy.functions.uploads.slots import SlotRequest, issue_slot

# configure_logs=False: Chalice would otherwise set the "cryospy" logger to ERROR and stop it propagating,
# which silences every cryospy.* warning and info line (the CLI configures logging once, at the edge).
app = Chalice(app_name="cryospy", configure_logs=False)
app.api.binary_types.extend(["video/mp4", "video/mp2t", "application/vnd.apple.mpegurl", "image/jpeg"])


def _admin():
    services = get_services()
    lifecycle.require_admin(services, app.current_request)
    # audit (issue 17): the token is the admin's; domain functions record their action as this actor
    source = (app.current_request.context or {}).get("identity", {}).get("sourceIp", "")
    act_as(Actor("admin", "api", source))
    return services


def _query() -> dict[str, str]:
    return dict(app.current_request.query_params or {})


# -- public ------------------------------------------------------------------------------------------
@app.route("/health", methods=["GET"])
@app.route("/v1/health", methods=["GET"])
@http.api_view
def health():
    return {"status": "ok", "service": "cryospy"}


# -- devices -----------------------------------------------------------------------------------------
@app.route("/v1/device/slots", methods=["POST"], content_types=["application/json"])
@http.api_view
def request_upload_slot():
    services = get_services()
    device = authenticate_device(services, app.current_request)
    slot_request = SlotRequest.parse(http.json_object(app.current_request), services.max_clip_bytes)
    slot = issue_slot(services, device, slot_request)
    services.devices.touch(device.device_id)
    return http.json_response(slot, 201)


@app.route("/v1/device/signing-key", methods=["POST"], content_types=["application/json"])
@http.api_view
def register_signing_key():
    services = get_services()
    device = authenticate_device(services, app.current_request)
    answer, status = self_service.register_signing_key(services, device, http.json_object(app.current_request))
    return http.json_response(answer, status)


@app.route("/v1/device/uploads/confirm", methods=["POST"], content_types=["application/json"])
@http.api_view
def confirm_upload():
    services = get_services()
    device = authenticate_device(services, app.current_request)
    return self_service.confirm_upload(services, device, http.json_object(app.current_request))


@app.route("/v1/device/live/watch", methods=["GET"])
@http.api_view
def watch_live_viewers():
    services = get_services()
    device = authenticate_device(services, app.current_request)
    watching, wait_s = watch_request(_query())
    return wait_for_viewers(services, device, watching, wait_s)


@app.route("/v1/device/live/parts", methods=["POST"], content_types=["application/json"])
@http.api_view
def exchange_live_parts():
    services = get_services()
    device = authenticate_device(services, app.current_request)
    return exchange_parts(services, device, PartsRequest.parse(http.json_object(app.current_request)))


@app.route("/v1/device/settings", methods=["GET"])
@http.api_view
def get_device_settings():
    services = get_services()
    device = authenticate_device(services, app.current_request)
    doc, etag = self_service.settings_document(services, device)
    if self_service.etag_matches(http.header(app.current_request, "if-none-match"), etag):
        return http.not_modified(etag)
    return http.json_response(doc, headers={"ETag": etag})


@app.route("/v1/device/heartbeat", methods=["POST"], content_types=["application/json"])
@http.api_view
def device_heartbeat():
    services = get_services()
    device = authenticate_device(services, app.current_request)
    return self_service.record_heartbeat(services, device, http.json_object(app.current_request))


@app.route("/v1/device/events", methods=["POST"], content_types=["application/json"])
@http.api_view
def device_events():
    services = get_services()
    device = authenticate_device(services, app.current_request)
    return feed.from_device(services, device, http.json_object(app.current_request))


# -- admin: devices ----------------------------------------------------------------------------------
@app.route("/v1/admin/devices", methods=["POST"], content_types=["application/json"])
@http.api_view
def create_device():
    services = _admin()
    return http.json_response(lifecycle.create_device(services, http.json_object(app.current_request)), 201)


@app.route("/v1/admin/devices", methods=["GET"])
@http.api_view
def list_devices():
    services = _admin()
    return {"devices": [d.public() for d in services.devices.list()]}


@app.route("/v1/admin/devices/{device_id}", methods=["GET"])
@http.api_view
def show_device(device_id):
    return _admin().devices.get(device_id).public()


@app.route("/v1/admin/devices/{device_id}/settings", methods=["PATCH"], content_types=["application/json"])
@http.api_view
def update_device_settings(device_id):
    services = _admin()
    return lifecycle.update_settings(services, device_id, http.json_object(app.current_request))


@app.route("/v1/admin/devices/{device_id}/disable", methods=["POST"])
@http.api_view
def disable_device(device_id):
    return lifecycle.set_enabled(_admin(), device_id, False)


@app.route("/v1/admin/devices/{device_id}/enable", methods=["POST"])
@http.api_view
def enable_device(device_id):
    return lifecycle.set_enabled(_admin(), device_id, True)


@app.route("/v1/admin/devices/{device_id}/rotate-secret", methods=["POST"])
@http.api_view
def rotate_device_secret(device_id):
    return lifecycle.rotate_secret(_admin(), device_id)


@app.route("/v1/admin/devices/{device_id}", methods=["DELETE"])
@http.api_view
def delete_device(device_id):
    services = _admin()
    return lifecycle.delete_device(services, device_id, _query().get("clips"))


# -- admin: clips ------------------------------------------------------------------------------------
@app.route("/v1/admin/clips", methods=["GET"])
@http.api_view
def query_clips():
    services = _admin()
    return services.index.query(ClipQuery.parse(_query())).to_doc()


@app.route("/v1/admin/clips/protect", methods=["POST"], content_types=["application/json"])
@http.api_view
def protect_clip():
    services = _admin()
    return clip_actions.set_protected(services, http.json_object(app.current_request))


@app.route("/v1/admin/clips/delete", methods=["POST"], content_types=["application/json"])
@http.api_view
def delete_clip():
    services = _admin()
    return clip_actions.delete(services, http.json_object(app.current_request))


# -- bucket events -----------------------------------------------------------------------------------
# Each handler takes one parsed ObjectEvent: the runtime's workers call it with the event the webhook parsed
# and the job queue kept. The @app.on_s3_event functions are the registration (bucket, prefix, events: the
# MinIO notification rules come from them) and the Lambda entry points, where an S3 body is parsed once.
def clip_created(record: ObjectEvent) -> None:
    services = get_services()
    result = ingest_clip(services, record)
    policy.enforce_device(services, result.device_id)
    if result.changed:
        feed.clip_stored(services, result.device_id, result.record)


def clip_gone(record: ObjectEvent) -> None:
    clip_removed(get_services(), record)


@app.on_s3_event(bucket=BUCKET, prefix=CLIP_PREFIX, suffix=CLIP_SUFFIX, events=["s3:ObjectCreated:*"])
def on_clip_created(event: S3Event) -> None:
    for record in parse_notification(event.to_dict()):
        clip_created(record)


@app.on_s3_event(bucket=BUCKET, prefix=CLIP_PREFIX, suffix=CLIP_SUFFIX, events=["s3:ObjectRemoved:*"])
def on_clip_removed(event: S3Event) -> None:
    for record in parse_notification(event.to_dict()):
        clip_gone(record)


OBJECT_HANDLERS: dict[str, Callable[[ObjectEvent], None]] = {
    "on_clip_created": clip_created,
    "on_clip_removed": clip_gone,
}
