"""The one HTTP POST the webhook and push channels make, with errors that say what to check."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from .errors import ChannelError
from .settings import HttpSettings


def _where(url: str) -> str:
    """The URL without query or credentials: what an error message may show."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}{parts.path}"


def post(settings: HttpSettings, what: str, body: bytes, headers: dict[str, str]) -> None:
    context = ssl.create_default_context(cafile=settings.ca_file or None) if settings.url.startswith("https") \
        else None
    req = urllib.request.Request(settings.url, data=body, method="POST", headers=headers)
    where = _where(settings.url)
    try:
        with urllib.request.urlopen(req, timeout=settings.timeout_s, context=context) as resp:
            resp.read(4096)
    except urllib.error.HTTPError as exc:
        hint = " (check the token)" if exc.code in (401, 403) else ""
        raise ChannelError(f"the {what} at {where} answered HTTP {exc.code} {exc.reason}{hint}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ChannelError(f"cannot reach the {what} at {where}: {reason}") from exc
