"""Camera stream URLs: which sources deliver compressed video, and keeping their passwords out of every text.

IP cameras take their credentials in the URL (``rtsp://admin:secret@192.168.1.20/stream1``). That URL is in
the agent's config and on ffmpeg's command line, and nowhere else: every log line, heartbeat field, error
message and ffmpeg diagnostic that could mention it goes through :func:`redact` first, which replaces the
user-info part of any URL with ``***``. The password never reaches the server, the index or a page.

(On the camera box itself, a local user who can list processes can read ffmpeg's command line; the agent is
meant to run on a box only the household administers, under a user of its own: see docs/agent.md.)
"""

from __future__ import annotations

import re

__all__ = ["STREAM_SCHEMES", "is_stream_url", "redact"]

#: Sources that deliver already-compressed video that ffmpeg can copy without decoding.
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "srt://")

# scheme://user[:password]@ — the user-info is everything up to the last '@' before the host's path.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@]*(?::[^\s@]*)?@")


def is_stream_url(spec: str) -> bool:
    """True for a network stream (RTSP, HTTP, ...) as opposed to a device, a file or the synthetic scene."""
    return spec.lower().startswith(STREAM_SCHEMES)


def redact(text: str, *secrets: str) -> str:
    """``text`` with the user-info of every URL in it, and each of ``secrets`` (4+ characters), replaced."""
    out = _USERINFO.sub(r"\1***@", text)
    for secret in secrets:
        if len(secret) >= 4:
            out = out.replace(secret, "***")
    return out


def url_password(url: str) -> str:
    """The password in ``url``'s user-info ('' if none): redacted wherever it might turn up unescaped."""
    match = re.match(r"(?i)[a-z][a-z0-9+.-]*://[^\s/@:]*:([^\s@]*)@", url)
    return match.group(1) if match else ""
