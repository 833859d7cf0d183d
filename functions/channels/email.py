"""E-mail through the alert mailer (functions/alerts/mailer.py): one plain-text mail per event to the alert recipients.

Motion mails keep coming from the clip alerts (functions/alerts/rules.py: once the clip is indexed, with the
thumbnail when ``alerts.attach_thumbnails`` is on); this channel adds mails that cannot wait for a clip
(a camera offline, a source problem) and the "send test event" mail. No frames are attached here.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryospy.functions.alerts.mailer import Mailer, MailError

from .errors import ChannelError
from .event import HomeEvent, message
from .hub import Connectionless


class EmailChannel(Connectionless):
    name = "email"

    def __init__(self, mailer: Mailer, recipients: Sequence[str]) -> None:
        self.mailer = mailer
        self.recipients = list(recipients)

    def deliver(self, event: HomeEvent) -> None:
        title, text, _, _ = message(event)
        try:
            self.mailer.send(self.recipients, title, text + "\n")
        except MailError as exc:
            raise ChannelError(str(exc)) from exc
