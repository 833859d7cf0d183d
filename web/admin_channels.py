"""Admin → Channels: switch each event channel on or off and set where it goes, without a restart.

The form of one channel is read into the same section server.json holds (``channels.<name>``) on top of the
section that applies now, so the keys the page does not show (kinds, rate limits, queue size) are kept, and
the result goes through the one parser of channel settings (:class:`ChannelControl.update`): a bad value is
a 400 naming the key and the fix, and nothing changes. Secrets (broker password, push token, webhook secret)
are write-only here: the page says whether one is set, never what it is; an empty field keeps the one set,
a "remove" box removes it. They are saved sealed under the index key, not in server.json.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cryospy.functions.channels.control import CHANNELS, ChannelControl
from cryospy.functions.channels.errors import ChannelSettingsError
from cryospy.functions.channels.hub import ChannelStatus

LEAVES_THE_HOUSE = {
    "email": "Mail to the recipients below: camera id, what happened and when, the offline or problem reason. "
             "Motion mails (the clip alerts) also name the clip; a thumbnail of the motion only when the box "
             "below allows it. Mail goes through the SMTP server set in server.json.",
    "mqtt": "To the broker: camera ids, motion on/off with scores and times, camera connectivity, storage use "
            "in bytes, the last clip's time, and Home Assistant discovery configs. Never frames, keys or object "
            "names.",
    "webhook": "To the URL, signed with the secret: each event as JSON (camera id, kind, time, motion id, score, "
               "duration, clip number, offline reason). Never frames, keys or object names.",
    "push": "To the push endpoint (ntfy-compatible): a short text such as \"Motion on porch at …\", with title, "
            "tag and priority. Never frames.",
}
TITLES = {"email": "E-mail", "mqtt": "MQTT / Home Assistant", "webhook": "Signed webhook", "push": "Push (ntfy)"}
TEXT_FIELDS = {   # (form name, label, input type); secrets are separate
    "email": (),
    "mqtt": (("host", "Broker host", "text"), ("port", "Port (1883, or 8883 with TLS)", "text"),
             ("ca_file", "CA file on the server (empty: the system's)", "text"),
             ("username", "User name", "text")),
    "webhook": (("url", "URL (http:// or https://)", "url"),),
    "push": (("url", "Topic URL, e.g. https://ntfy.lan/cryospy", "url"),),
}
SECRETS = {"email": (), "mqtt": (("password", "Password"),), "webhook": (("secret", "Secret (16+ characters)"),),
           "push": (("token", "Access token"),)}
_SPLIT = re.compile(r"[\s,;]+")


@dataclass
class ChannelCard:
    name: str
    title: str
    enabled: bool
    origin: str                         # "dashboard", "server.json" or ""
    leaves: str
    fields: list[tuple[str, str, str, str]]   # (name, label, input type, value)
    secrets: list[tuple[str, str, bool]]      # (name, label, is set)
    flags: dict[str, bool]              # tls, attach_thumbnails
    recipients: str = ""
    error: str = ""
    status: ChannelStatus | None = None


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def form_to_section(name: str, form: dict[str, str], current: dict[str, Any]) -> tuple[dict[str, Any],
                                                                                       dict[str, Any] | None]:
    """The channel's new section and, for e-mail, the new ``mail`` settings, from the posted form."""
    section = dict(current)
    section["enabled"] = form.get("enabled") == "on"
    for key, _, _ in TEXT_FIELDS[name]:
        value = form.get(key, "").strip()
        if key == "port":
            if not value:
                section.pop(key, None)
            else:    # a non-number goes on as text: the parser names it with the bounds
                section[key] = int(value) if value.isdigit() else value
        elif value or key in ("host", "url"):
            section[key] = value
        else:
            section.pop(key, None)
    if name == "mqtt":
        section["tls"] = form.get("tls") == "on"
    for key, _ in SECRETS[name]:
        value = form.get(key, "")
        if value:
            section[key] = value
        elif form.get(f"clear_{key}") == "on":
            section.pop(key, None)
    if name != "email":
        return section, None
    recipients = [r for r in _SPLIT.split(form.get("recipients", "")) if r]
    return section, {"recipients": recipients, "attach_thumbnails": form.get("attach_thumbnails") == "on"}


def cards(control: ChannelControl, statuses: list[ChannelStatus], submitted: dict[str, str] | None = None,
          failed: str = "", error: str = "") -> list[ChannelCard]:
    """What the page shows for each channel; after a refusal, the failed card shows what was typed (but
    never a typed secret)."""
    sections = control.sections()
    by_name = {s.name: s for s in statuses}
    mail = control.mail()
    out = []
    for name in CHANNELS:
        section = sections[name]
        typed = submitted if name == failed and submitted is not None else None
        values = {k: typed.get(k, "") if typed is not None else _text(section.get(k)) for k, _, _ in TEXT_FIELDS[name]}
        flags = {"tls": typed.get("tls") == "on" if typed is not None else bool(section.get("tls")),
                 "attach_thumbnails": typed.get("attach_thumbnails") == "on" if typed is not None
                 else mail.attach_thumbnails}
        out.append(ChannelCard(
            name=name, title=TITLES[name], origin=control.origin(name), leaves=LEAVES_THE_HOUSE[name],
            enabled=typed.get("enabled") == "on" if typed is not None else bool(section.get("enabled")),
            fields=[(k, label, kind, values[k]) for k, label, kind in TEXT_FIELDS[name]],
            secrets=[(k, label, bool(section.get(k))) for k, label in SECRETS[name]], flags=flags,
            recipients=typed.get("recipients", "") if typed is not None else "\n".join(mail.recipients),
            error=error if name == failed else "", status=by_name.get(name)))
    return out


def save(control: ChannelControl, name: str, form: dict[str, str]) -> None:
    """Apply one channel's form; ChannelSettingsError (a 400) names what is wrong."""
    if name not in CHANNELS:
        raise ChannelSettingsError(f"there is no channel {name!r}")
    section, mail = form_to_section(name, form, control.sections()[name])
    control.update(name, section, mail)
