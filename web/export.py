"""The dashboard's evidence export, mounted at ``/export``:

    GET  /export                    the form (camera, start, end, motion only); ?device=&start=&end= prefill it
    POST /export                    (CSRF) check the request, start the check pass, redirect to the job page
    GET  /export/<id>               the job's page: progress (export.js polls), then the download link
    GET  /export/<id>/progress.json
    GET  /export/<id>/download      the zip, streamed (export_zip)

Handlers parse, call one domain function and answer; the work is in export_bundle, export_jobs and export_zip.
Jobs belong to the session that started them; any other session gets 404. An account exports only the cameras
it may see: the form lists only those, and another camera is refused as one that does not exist.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

from cryospy.common.accounts import Account
from cryospy.common.keys import KeyStore, verify_key_from_text, verify_key_to_text
from cryospy.common.timefmt import compact_stamp
from cryospy.functions.audit.log import export_files
from cryospy.functions.bucket import Bucket
from cryospy.functions.errors import ApiError, BadRequest, Conflict, KeysLocked, NotFound
from cryospy.functions.services import Services

from .export_bundle import ExportFailed, Selection, parse_request, select_clips, utc_text
from .export_jobs import ExportJob, ExportJobs
from .export_zip import stream_zip
from .server import Dashboard, Session

StartResponse = Callable[..., Any]
log = logging.getLogger(__name__)
_JOB_PATH = re.compile(r"^/export/(?P<id>[A-Za-z0-9_-]{16,64})(?P<what>/progress\.json|/download)?$")


class ExportSection:
    def __init__(self, dashboard: Dashboard, services: Services, jobs: ExportJobs | None = None):
        self.dashboard, self.services = dashboard, services
        self.jobs = jobs or ExportJobs(
            fetch=Bucket.of(services).get,
            keyring=services.vault.keys, deployment_key=services.vault.public_key)

    def __call__(self, environ: dict[str, Any], start: StartResponse, session: Session | None) -> Any:
        assert session is not None   # mounted behind the login
        path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
        if path in ("/export", "/export/"):
            if method == "POST":
                return self._start(environ, start, session)
            query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
            return self._form(start, session, "200 OK", query, {})
        match = _JOB_PATH.match(path)
        if match is None or method != "GET":
            return _text(start, "404 Not Found", "No such page.")
        try:
            job = self.jobs.get(match["id"], session.token, session.account.can_see)
        except NotFound as exc:
            return _text(start, "404 Not Found", exc.message)
        if match["what"] == "/progress.json":
            return _json(start, job.progress())
        if match["what"] == "/download":
            return self._download(start, job)
        return self.dashboard.render(start, "200 OK", "export_job.html", session, job=job,
                                     progress=job.progress(), request=job.selection.request, utc=utc_text)

    def devices(self, account: Account) -> list[str]:
        """Cameras the account can export: registered ones, and retired ones whose clips are still indexed."""
        every = {d.device_id for d in self.services.devices.list()} | set(self.services.index.devices())
        return sorted(d for d in every if account.can_see(d))

    def _form(self, start: StartResponse, session: Session, status: str, values: dict[str, str],
              errors: dict[str, str]) -> list[bytes]:
        return self.dashboard.render(start, status, "export.html", session, devices=self.devices(session.account),
                                     values=values, errors=errors)

    def _start(self, environ: dict[str, Any], start: StartResponse, session: Session) -> list[bytes]:
        form = self.dashboard.form(environ, session)
        if form is None:
            return self.dashboard.forbidden(start, session)
        try:
            selection = select_clips(self.services.index, parse_request(form, self.devices(session.account)))
            job = self.jobs.start(session.token, selection, self._signer(selection),
                                  {"user": session.account.name, "address": environ.get("REMOTE_ADDR", "")})
        except BadRequest as exc:
            return self._form(start, session, "400 Bad Request", form, {exc.field or "form": exc.message})
        except Conflict as exc:
            return self._form(start, session, "409 Conflict", form, {"form": exc.message})
        except KeysLocked as exc:
            return self._form(start, session, "503 Service Unavailable", form, {"form": str(exc)})
        request = selection.request   # audit (issue 17)
        self.services.audit.record("export.start", device=request.device_id, start=utc_text(request.start),
                                   end=utc_text(request.end), clips=len(selection.clips), job=job.id)
        return self.dashboard.redirect(start, f"/export/{job.id}")

    def _signer(self, selection: Selection) -> Any:
        device_id = selection.request.device_id
        try:
            text = self.services.devices.get(device_id).signing_key
        except ApiError:
            text = None
        if not text:
            raise BadRequest(f"{device_id} has no registered signing key, so its clips cannot be verified; "
                             "export them after the camera has registered its key.", field="device")
        return verify_key_from_text(text)

    def _download(self, start: StartResponse, job: ExportJob) -> Any:
        if job.state != "ready" or job.manifest is None:
            return _text(start, "409 Conflict", "This export is not ready: wait until its page offers the download.")
        request = job.selection.request
        name = f"cryospy-export-{re.sub(r'[^A-Za-z0-9_-]', '_', request.device_id)}-" \
               f"{compact_stamp(request.start)}.zip"
        try:
            keyring = self.jobs.keyring()
        except KeysLocked as exc:
            return _text(start, "503 Service Unavailable", str(exc))
        # audit (issue 17): the download is recorded first, so the log the zip carries includes it
        self.services.audit.record("export.download", device=request.device_id, job=job.id, clips=len(job.clips))
        extra = export_files(self.services.audit, verify_key_to_text(
            KeyStore.load(self.services.vault.path).server_verify_key()))
        body = _marking_failure(job, stream_zip(job.manifest, job.clips, self.jobs.fetch, keyring, job.signer,
                                                extra))
        start("200 OK", [("Content-Type", "application/zip"),
                         ("Content-Disposition", f'attachment; filename="{name}"'),
                         ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")])
        return body


def _marking_failure(job: ExportJob, body: Iterator[bytes]) -> Iterator[bytes]:
    """Pass the zip through; if it must be abandoned mid-stream, say why on the job's page before the connection
    drops (the server then closes it without the archive's end, so no client mistakes it for a whole zip)."""
    try:
        yield from body
    except ExportFailed as exc:
        job.state, job.error = "failed", str(exc)
        log.warning("export %s: download stopped: %s", job.id, exc)
        raise


def _text(start: StartResponse, status: str, message: str) -> list[bytes]:
    data = message.encode()
    start(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data))),
                   ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")])
    return [data]


def _json(start: StartResponse, doc: dict[str, Any]) -> list[bytes]:
    data = json.dumps(doc).encode()
    start("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                     ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")])
    return [data]
