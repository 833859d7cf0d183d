"""The runtime's channels as the admin set them, rebuilt and swapped in without a restart.

What runs is server.json's ``channels`` with the sections saved from the dashboard (Admin → Channels) on top:
a saved section replaces server.json's section of the same name as a whole (so the dashboard can switch off
a channel server.json switched on). Saved sections are sealed at rest (:mod:`.stored`). ``mail`` is saved
beside them: the recipients and whether motion mails may carry a thumbnail, which apply to every CryoSpy
mail (the clip alerts and the e-mail channel) and replace ``alerts.recipients`` / ``alerts.attach_thumbnails``.

Every change is validated by the same parser as server.json (:func:`.settings.parse_channels`), saved, and
applied at once: new channels are built and ``services.home_events`` takes them in place of its old ones
(:meth:`.hub.ChannelHub.replace_with`; events published from then on go to them): the old ones are closed
(an MQTT client says ``offline`` and disconnects) and the new ones started (they connect and publish
``online``, the discovery configs and every known state). With several runtimes on one database the saved
settings are one shared copy: a save on one runtime's dashboard reaches the others, which apply it
(:meth:`ChannelControl.reload`) without a restart.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryospy.common.file_mirror import mirror_errors_as
from cryospy.functions.errors import KeysLocked

from . import feed
from .build import build_hub
from .errors import ChannelSettingsError
from .settings import SPECIFIC, ChannelsSettings, parse_channels
from .stored import StoredChannels

if TYPE_CHECKING:
    from cryospy.functions.alerts.mailer import Mailer
    from cryospy.functions.services import Services

log = logging.getLogger(__name__)
CHANNELS = tuple(SPECIFIC)           # email, mqtt, webhook, push
MAIL_KEYS = ("recipients", "attach_thumbnails")
MAX_RECIPIENTS = 20


@dataclass(frozen=True)
class MailSettings:
    recipients: tuple[str, ...] = ()
    attach_thumbnails: bool = False


def parse_mail(doc: Any, base: MailSettings) -> MailSettings:
    if doc is None:
        return base
    if not isinstance(doc, dict) or set(doc) - set(MAIL_KEYS):
        raise ChannelSettingsError(f"mail must be an object with {' and '.join(MAIL_KEYS)}")
    recipients = doc.get("recipients", list(base.recipients))
    if not isinstance(recipients, list) or len(recipients) > MAX_RECIPIENTS:
        raise ChannelSettingsError(f"mail.recipients must be a list of at most {MAX_RECIPIENTS} addresses")
    for address in recipients:
        local, _, domain = address.partition("@") if isinstance(address, str) else ("", "", "")
        if not local or "." not in domain or len(address) > 254 or any(c.isspace() or c in ",;<>\"" for c in address):
            raise ChannelSettingsError(f"mail.recipients: {address!r} is not an e-mail address such as "
                                       "me@example.com")
    attach = doc.get("attach_thumbnails", base.attach_thumbnails)
    if not isinstance(attach, bool):
        raise ChannelSettingsError("mail.attach_thumbnails must be true or false")
    return MailSettings(tuple(recipients), attach)


class ChannelControl:
    def __init__(self, services: Services, server_doc: dict[str, Any], base_mail: MailSettings,
                 mailer: Mailer | None, store: StoredChannels) -> None:
        self.services = services
        self.server_doc = server_doc
        self.base_mail = base_mail
        self.mailer = mailer
        self.store = store
        self.problem = ""                  # why the saved settings are not in use (shown on the page)
        self._saved: dict[str, Any] | None = None   # None until read (needs the unlocked index key)
        self._lock = threading.Lock()

    # -- what the page shows -----------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self._saved is not None

    def sections(self) -> dict[str, dict[str, Any]]:
        """Each channel's section as it applies now (saved from the dashboard, else from server.json)."""
        saved = self._saved or {}
        return {name: dict(saved.get(name, self.server_doc.get(name)) or {}) for name in CHANNELS}

    def origin(self, name: str) -> str:
        if name in (self._saved or {}):
            return "dashboard"
        return "server.json" if name in self.server_doc else ""

    def mail(self) -> MailSettings:
        return parse_mail((self._saved or {}).get("mail"), self.base_mail)

    @property
    def smtp_configured(self) -> bool:
        return self.mailer is not None

    # -- changes -------------------------------------------------------------------------------------
    def update(self, name: str, section: dict[str, Any], mail: dict[str, Any] | None = None) -> None:
        """Validate, save sealed, apply. ChannelSettingsError names the bad key; KeysLocked while locked."""
        if name not in CHANNELS:
            raise ChannelSettingsError(f"there is no channel {name!r}; the channels are {', '.join(CHANNELS)}")
        with self._lock, mirror_errors_as(ChannelSettingsError), self.store.editing():
            try:
                current = self.store.load()   # as saved now, also by another runtime sharing the database
            except ChannelSettingsError:
                if self._saved is None:
                    raise
                current = self._saved         # an unreadable file (the page says so) is replaced by this save
            saved = {**current, name: section}
            if mail is not None:
                saved["mail"] = mail
            settings, mail_settings = self._parse(saved)
            self.store.save(saved)
            self._saved = saved
            self.problem = ""
            self._apply(settings, mail_settings)
        log.info("channel %s changed from the dashboard and applied", name)

    def load(self) -> None:
        """Read the saved settings once the index key is there (at start or the first unlock) and apply them."""
        with self._lock:
            if self._saved is not None:
                return
            try:
                read = self._read()
            except KeysLocked:
                return
            if read is None:
                self._saved = {}
                return
            saved, settings, mail = read
            self._saved = saved
            if saved:
                self._apply(settings, mail)

    def reload(self) -> None:
        """The saved settings changed on another runtime (they share a database): read and apply them, as a
        save on this runtime's dashboard would. Before the first unlock there is nothing to redo."""
        with self._lock:
            if self._saved is None:
                return
            try:
                read = self._read()
            except KeysLocked:
                return
            if read is None or read[0] == self._saved:
                return
            saved, settings, mail = read
            self._saved = saved
            self.problem = ""
            self._apply(settings, mail)
        log.info("channels changed on another runtime and applied")

    def _read(self) -> tuple[dict[str, Any], ChannelsSettings, MailSettings] | None:
        """The saved settings and what they parse to; None when they cannot be used (``problem`` says why).
        Raises KeysLocked before the first unlock."""
        try:
            saved = self.store.load()
            settings, mail = self._parse(saved)
        except ChannelSettingsError as exc:
            self.problem = f"the channels saved on the dashboard are not in use: {exc}"
            log.error("%s", self.problem)
            return None
        return saved, settings, mail

    def start(self) -> None:
        with self._lock:
            self.services.home_events.start()

    def _parse(self, saved: dict[str, Any]) -> tuple[ChannelsSettings, MailSettings]:
        mail = parse_mail(saved.get("mail"), self.base_mail)
        doc = {**self.server_doc, **{k: v for k, v in saved.items() if k in CHANNELS}}
        return parse_channels(doc, smtp_ready=self.mailer is not None and bool(mail.recipients)), mail

    def _apply(self, settings: ChannelsSettings, mail: MailSettings) -> None:
        hub = build_hub(settings, mailer=self.mailer, recipients=mail.recipients,
                        cameras=lambda: feed.camera_states(self.services),
                        instance=self.services.home_events.instance)
        self.services.alerts.set_mail(mail.recipients, mail.attach_thumbnails)
        self.services.home_events.replace_with(hub)
