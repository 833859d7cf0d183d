"""E-mail alerts. Sending happens on a small background pool so no request or handler waits on SMTP;
a failed send is logged with its cause (never the password) and does not fail the work that raised it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime

from .mailer import Mailer, MailError

log = logging.getLogger("cryospy.alerts")


class Alerts:
    def __init__(self, mailer: Mailer, recipients: Sequence[str]):
        self.mailer = mailer
        self.recipients = list(recipients)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cryospy-mail")

    def _send(self, subject: str, body: str) -> Future[None] | None:
        if not self.recipients:
            return None

        def deliver() -> None:
            try:
                self.mailer.send(self.recipients, subject, body)
            except MailError as exc:
                log.error("could not send alert %r: %s", subject, exc)

        return self._pool.submit(deliver)

    def auth_failures(self, device_id: str | None, count: int, ip: str, *, disabled: bool) -> Future[None] | None:
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        lines = [f"Device: {device_id}", f"Failed attempts in the window: {count}", f"Last attempt from: {ip}",
                 f"Time: {when}"]
        if disabled:
            lines.append("The device has been disabled. Re-enable it in the dashboard or with the admin API "
                         "once you know why (and rotate its secret if it may have leaked).")
        return self._send("CryoSpy repeated authentication failures detected", "\n".join(lines) + "\n")

    def close(self) -> None:
        self._pool.shutdown(wait=True)
