"""Admin → Audit (``/admin/audit``): the audit log, filtered and paged, with the chain check on top.

Query parameters (all optional): ``kind`` (a kind or a prefix: ``device`` matches ``device.create`` …),
``account``, ``since`` and ``until`` (dates or UTC times, ``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM``), ``page``.
Bad values are named on the page and ignored, never a 500. The check runs on every visit, so a changed,
removed or reordered entry is shown at once, naming the first bad entry.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cryospy.common.timefmt import utc_stamp
from cryospy.functions.audit.log import AuditFilter, AuditLog, NoAudit

PER_PAGE = 50
KINDS = ("login", "logout", "device", "clip", "channel", "passphrase", "account", "deadletter", "export",
         "second-factor")


def _moment(text: str, field: str, errors: list[str]) -> str:
    text = text.strip()[:32]
    if not text:
        return ""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        errors.append(f"{field} {text!r} is not a date (YYYY-MM-DD) or time (YYYY-MM-DDTHH:MM); it was ignored")
        return ""
    return utc_stamp(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def audit_view(audit: AuditLog | NoAudit, query: dict[str, str]) -> dict[str, Any]:
    """What the template needs: the check, the filter as entered, one page of entries, paging, errors."""
    errors: list[str] = []
    try:
        page = max(1, min(int(query.get("page", "1")), 1_000_000))
    except ValueError:
        page, _ = 1, errors.append("page must be a number; showing the first")
    wanted = AuditFilter(kind=query.get("kind", "").strip()[:40], account=query.get("account", "").strip()[:64],
                         since=_moment(query.get("since", ""), "since", errors),
                         until=_moment(query.get("until", ""), "until", errors))
    entries, total = audit.query(wanted, page, PER_PAGE)
    return {"check": audit.check(), "entries": entries, "total": total, "page": page,
            "pages": max(1, -(-total // PER_PAGE)), "query": query, "errors": errors, "kinds": KINDS,
            "write_error": audit.write_error}
