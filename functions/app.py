"""CryoSpy's Chalice app: a routing table. Each view parses, calls one domain function, and returns.

Devices talk to ``/v1/device/*`` with HTTP Basic ``device_id:hex_secret``; the CLI talks to ``/v1/admin/*``
with the deployment's admin token. Bucket notifications arrive through the runtime's webhook, which calls
the ``@app.on_s3_event`` handlers below; their bucket/prefix/suffix/events are also what ``cryospy setup``
applies as MinIO's notification configuration (one source of truth).
"""

from chalice import Chalice

from cryospy.common.objectkeys import BUCKET, CLIP_PREFIX, CLIP_SUFFIX
from cryospy.functions import admin, http
from cryospy.functions.events import parse_notification
from cryospy.functions.ingest import ingest_clip
from cryospy.functions.services import get_services
from cryospy.functions.slots import SlotRequest, issue_slot

app = Chalice(app_name="cryospy")
app.api.binary_types.extend(["video/mp4", "video/mp2t", "application/vnd.apple.mpegurl", "image/jpeg"])


@app.route("/v1/health", methods=["GET"])
@http.api_view
def health():
    return {"status": "ok", "service": "cryospy"}


@app.route("/v1/device/slots", methods=["POST"], content_types=["application/json"])
@http.api_view
def request_upload_slot():
    services, request = get_services(), app.current_request
    device = services.devices.authenticate_basic(http.header(request, "authorization"))
    slot_request = SlotRequest.parse(http.json_object(request), services.max_clip_bytes)
    slot = issue_slot(services, device, slot_request)
    services.devices.touch(device.device_id)
    return http.json_response(slot, 201)


@app.route("/v1/admin/devices", methods=["POST"], content_types=["application/json"])
@http.api_view
def create_device():
    services, request = get_services(), app.current_request
    admin.require_admin(services, request)
    return http.json_response(admin.create_device(services, http.json_object(request)), 201)


@app.route("/v1/admin/devices", methods=["GET"])
@http.api_view
def list_devices():
    services = get_services()
    admin.require_admin(services, app.current_request)
    return {"devices": [d.public() for d in services.devices.list()]}


@app.on_s3_event(bucket=BUCKET, prefix=CLIP_PREFIX, suffix=CLIP_SUFFIX, events=["s3:ObjectCreated:*"])
def on_clip_created(event):
    for record in parse_notification(event.to_dict()):
        ingest_clip(get_services(), record)
