"""E-mail alerts: motion, storage, auth failures, silent devices, tampering and gaps.

Sending happens on a small background pool so no request or handler waits on SMTP. Every kind is
rate-limited per device by an :class:`AlertLimitStore` (persisted), except where noted. A failed send is logged with
its cause (never the password), releases the rate-limit claim, and does not fail the work that raised it.
Thumbnails go into motion mails only when the admin opted in, because they leave the house as plaintext.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from cryospy.functions.alerts.limits import AlertLimitStore
from cryospy.functions.alerts.mailer import Mailer, MailError
from cryospy.functions.index.records import ClipRecord

log = logging.getLogger(__name__)
MIB = 1024 * 1024
ONCE = 10 * 365 * 86400.0   # rate-limit interval for alerts that must go out once per incident


@dataclass(frozen=True)
class AlertPolicy:
    motion_interval_s: float = 15 * 60
    storage_interval_s: float = 60 * 60
    auth_interval_s: float = 30 * 60
    silent_interval_s: float = 6 * 3600
    tamper_interval_s: float = 15 * 60
    attach_thumbnails: bool = False


def _when(stamp: str | None = None) -> str:
    t = datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else datetime.now(UTC)
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class Alerts:
    """Alert mail. Without a mailer (:meth:`off`) every alert is a no-op, so callers never check."""

    def __init__(self, mailer: Mailer | None, recipients: Sequence[str], limits: AlertLimitStore | None,
                 policy: AlertPolicy | None = None):
        self.mailer = mailer
        self.recipients = list(recipients) if mailer is not None else []
        self.limits = limits
        self.policy = policy or AlertPolicy()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cryospy-mail")

    def set_mail(self, recipients: Sequence[str], attach_thumbnails: bool) -> None:
        """Who gets alert mail and whether motion mails carry a thumbnail, as the dashboard changes them."""
        if self.mailer is not None:
            self.recipients = list(recipients)
        self.policy = replace(self.policy, attach_thumbnails=attach_thumbnails)

    @classmethod
    def off(cls) -> Alerts:
        """No SMTP settings: nothing is sent and nothing is counted."""
        return cls(None, (), None)

    def _send(self, device_id: str, kind: str, interval_s: float | None, subject: str, body: str,
              attachments: Sequence[tuple[str, str, bytes]] = ()) -> Future[None] | None:
        if self.mailer is None or self.limits is None or not self.recipients:
            return None
        mailer, limits = self.mailer, self.limits
        if interval_s is not None and not limits.claim(device_id, kind, interval_s):
            return None

        def deliver() -> None:
            try:
                mailer.send(self.recipients, subject, body, attachments=attachments)
            except MailError as exc:
                log.error("could not send %s alert for %s: %s", kind, device_id, exc)
                if interval_s is not None:
                    limits.release(device_id, kind)

        return self._pool.submit(deliver)

    def motion(self, device_id: str, record: ClipRecord, jpeg: bytes | None) -> Future[None] | None:
        body = (f"Device: {device_id}\nTime: {_when(record.captured_at)}\n"
                f"Motion score: {record.motion_score:.3f}\nClip: {record.key}\n")
        files = [("motion.jpg", "image/jpeg", jpeg)] if (jpeg and self.policy.attach_thumbnails) else []
        return self._send(device_id, "motion", self.policy.motion_interval_s, "CryoSpy motion detected", body, files)

    def storage_warning(self, device_id: str, used: int, limit: int) -> Future[None] | None:
        return self._send(device_id, "storage-warning", self.policy.storage_interval_s,
                          "CryoSpy client storage capacity warning",
                          f"Device: {device_id}\nUsed: {used / MIB:.0f} MB of {limit / MIB:.0f} MB\n")

    def storage_reached(self, device_id: str, used: int, limit: int) -> Future[None] | None:
        return self._send(device_id, "storage-reached", self.policy.storage_interval_s,
                          "CryoSpy client storage capacity reached",
                          f"Device: {device_id}\nUsed: {used / MIB:.0f} MB of {limit / MIB:.0f} MB\n"
                          "The oldest unprotected footage is being deleted to make room for new clips.\n")

    def auth_failures(self, device_id: str | None, count: int, ip: str) -> Future[None] | None:
        lines = [f"Device: {device_id}", f"Failed attempts in the window: {count}", f"Last attempt from: {ip}",
                 f"Time: {_when()}",
                 "The device keeps working: failed logins never disable it (its secret cannot be guessed). The "
                 "address they come from is throttled. If it is not one of your cameras, find out what it is; "
                 "disable the device yourself (dashboard or admin API) only if its secret may have leaked, and "
                 "rotate the secret then."]
        # The auth defence already rate-limits these.
        return self._send(device_id or "(unknown)", "auth", None,
                          "CryoSpy repeated authentication failures detected", "\n".join(lines) + "\n")

    def device_silent(self, device_id: str, last_seen: str | None, minutes: int) -> Future[None] | None:
        return self._send(device_id, "silent", self.policy.silent_interval_s, "CryoSpy camera silent",
                          f"Device: {device_id}\nNothing heard for more than {minutes} minutes.\n"
                          f"Last seen: {_when(last_seen) if last_seen else 'never'}\n"
                          "Check its power, network and camera.\n")

    def tampering(self, device_id: str, key: str, reason: str) -> Future[None] | None:
        return self._send(device_id, "tamper", self.policy.tamper_interval_s,
                          "CryoSpy footage failed verification",
                          f"Device: {device_id}\nObject: {key}\nProblem: {reason}\n"
                          "The object was kept under quarantine/ for inspection; run `cryospy verify` on an "
                          "export to see the whole chain.\n")

    def deleted_outside(self, device_id: str, key: str, clip: ClipRecord) -> Future[None] | None:
        return self._send(device_id, "tamper", self.policy.tamper_interval_s, "CryoSpy footage deleted",
                          f"Device: {device_id}\nClip: {_when(clip.captured_at)} (#{clip.sequence})\n"
                          f"Object: {key}\nIt was deleted from the bucket by something other than CryoSpy "
                          "(retention and the dashboard mark their own deletions): someone with MinIO credentials "
                          "or a lifecycle rule. The dashboard keeps a tombstone in its place.\n")

    def newest_missing(self, device_id: str, sequence: int, reported_at: str) -> Future[None] | None:
        # Once per sequence: the condition lasts until the camera records again.
        return self._send(device_id, f"newest-missing-{sequence}", ONCE, "CryoSpy footage missing",
                          f"Device: {device_id}\nClip #{sequence}, which the camera reported as uploaded at "
                          f"{_when(reported_at)}, never reached the index. It was withheld or removed from the "
                          "bucket before CryoSpy could check it.\n")

    def gap(self, device_id: str, clip: ClipRecord) -> Future[None] | None:
        return self._send(device_id, "gap", self.policy.tamper_interval_s, "CryoSpy footage missing",
                          f"Device: {device_id}\nClip #{clip.sequence - 1} (before {_when(clip.captured_at)})"
                          " never arrived. A full spool on the camera drops old clips; otherwise footage was "
                          "removed or withheld.\n")

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self.limits is not None:
            self.limits.close()
