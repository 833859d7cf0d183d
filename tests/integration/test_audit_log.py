"""Issue 17, the audit log, against the real runtime and MinIO: each admin action recorded once whether it came
from the dashboard or the admin API; a changed, removed or reordered entry detected (the file edited on disk)
and named on the audit and status pages; a failed-login flood that leaves a bounded number of entries."""

from __future__ import annotations

import json
import re

import pytest
import requests

from cryospy.common.audit_chain import parse_line
from cryospy.functions.audit.failures import MAX_SOURCES
from cryospy.web.admin import device_path
from tests.attack_support import BEHIND_PROXY, login, serving, xff
from tests.support import dashboard_login

pytestmark = pytest.mark.integration


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)   # type: ignore[union-attr]


def _api(deployment, method: str, path: str, body: object = None) -> requests.Response:  # type: ignore[no-untyped-def]
    return requests.request(method, deployment.api_url + path, json=body, timeout=30,
                            headers={"Authorization": "Bearer " + deployment.admin_token})


def _new(runtime, since: int) -> list:  # type: ignore[no-untyped-def]
    return [e for e in runtime.services.audit.entries() if e.n >= since]


def test_each_admin_action_is_recorded_once_from_the_dashboard_and_from_the_api(runtime, deployment):
    audit = runtime.services.audit
    start = len(audit.lines())
    # The admin API, as the CLI uses it.
    assert _api(deployment, "POST", "/v1/admin/devices", {"device_id": "audit-api"}).status_code == 201
    assert _api(deployment, "PATCH", "/v1/admin/devices/audit-api/settings", {"grayscale": True}).status_code == 200
    assert _api(deployment, "POST", "/v1/admin/devices/audit-api/disable").status_code == 200
    assert _api(deployment, "POST", "/v1/admin/devices/audit-api/enable").status_code == 200
    assert _api(deployment, "POST", "/v1/admin/devices/audit-api/rotate-secret").status_code == 200
    assert _api(deployment, "DELETE", "/v1/admin/devices/audit-api?clips=keep").status_code == 200
    assert _api(deployment, "POST", "/v1/admin/devices", {"device_id": "bad id!"}).status_code == 400
    # The dashboard's forms, which call the same domain functions.
    base = deployment.runtime_url
    http = dashboard_login(base)
    form = http.get(base + "/admin", timeout=10).text
    assert http.post(base + "/admin/devices", data={"csrf": _csrf(form), "device_id": "audit-dash"},
                     timeout=10).status_code == 200
    page = http.get(base + device_path("audit-dash"), timeout=10).text
    assert http.post(base + device_path("audit-dash") + "/enabled", data={"csrf": _csrf(page), "enabled": "0"},
                     allow_redirects=False, timeout=10).status_code == 302

    entries = _new(runtime, start)
    seen = [(e.kind, e.detail.get("device", ""), e.via) for e in entries if e.kind.startswith("device.")]
    assert seen == [("device.create", "audit-api", "api"), ("device.settings", "audit-api", "api"),
                    ("device.disable", "audit-api", "api"), ("device.enable", "audit-api", "api"),
                    ("device.rotate", "audit-api", "api"), ("device.delete", "audit-api", "api"),
                    ("device.create", "audit-dash", "dashboard"), ("device.disable", "audit-dash", "dashboard")]
    assert all(e.account == "admin" and e.address == "127.0.0.1" for e in entries if e.kind.startswith("device."))
    assert [e.kind for e in entries].count("login") == 1
    # Nothing decryptable is on disk: no kind, device id or account in the file.
    raw = runtime.services.audit.path.read_text()
    for secret in ("audit-api", "audit-dash", "device.create", "admin", "login"):
        assert secret not in raw
    assert runtime.services.audit.check().ok

    # Admin → Audit: filter by kind and account, bad input named, paging links.
    found = http.get(base + "/admin/audit", params={"kind": "device", "account": "admin"}, timeout=10)
    assert found.status_code == 200 and "audit-dash" in found.text and "audit-api" in found.text
    assert "login" not in re.findall(r'data-kind="([^"]+)"', found.text)
    nothing = http.get(base + "/admin/audit", params={"account": "nobody"}, timeout=10)
    assert "No entries match." in nothing.text
    bad = http.get(base + "/admin/audit", params={"since": "yesterday", "page": "x"}, timeout=10)
    assert bad.status_code == 200 and "is not a date" in bad.text and "page must be a number" in bad.text
    later = http.get(base + "/admin/audit", params={"since": "2999-01-01"}, timeout=10)
    assert "No entries match." in later.text


def _alarm(http: requests.Session, base: str) -> tuple[str, str]:
    audit = http.get(base + "/admin/audit", timeout=10).text
    status = http.get(base + "/admin/status", timeout=10).text
    found = [re.search(r'class="audit-problem">([^<]+)<', page) for page in (audit, status)]
    return tuple(m.group(1) if m else "" for m in found)   # type: ignore[return-value]


def test_a_changed_removed_or_reordered_entry_is_detected_and_named(runtime, deployment):
    base = deployment.runtime_url
    http = dashboard_login(base)
    for i in range(3):
        assert _api(deployment, "POST", "/v1/admin/devices", {"device_id": f"tamper-{i}"}).status_code == 201
    path = runtime.services.audit.path
    original = path.read_text()
    lines = original.splitlines()
    k = len(lines) - 3
    assert _alarm(http, base) == ("", "")

    def tampered(new_lines: list[str]) -> tuple[str, str]:
        path.write_text("\n".join(new_lines) + "\n")
        try:
            return _alarm(http, base)
        finally:
            path.write_text(original)

    changed = json.loads(lines[k])
    box = changed["box"]
    changed["box"] = box[:20] + ("A" if box[20] != "A" else "B") + box[21:]
    found = tampered([*lines[:k], json.dumps(changed), *lines[k + 1:]])
    assert found[0] == found[1] == f"Entry {k}: its content no longer matches its hash: it was changed."

    found = tampered(lines[:k] + lines[k + 1:])
    assert found[0].startswith(f"Entry {k}: it says it is entry {k + 1}: entries {k}–{k} were removed")
    assert found[1] == found[0]

    found = tampered([*lines[:k], lines[k + 1], lines[k], *lines[k + 2:]])
    assert found[0].startswith(f"Entry {k}: it says it is entry {k + 1}")

    # The last entry cut off: the chain alone looks whole, the runtime's memory of what it wrote does not.
    found = tampered(lines[:-1])
    assert f"entries from {len(lines) - 1} on were removed" in found[0]

    # Rewritten from entry k on with fresh hashes: the server signatures no longer hold.
    from cryospy.common.audit_chain import make_line
    rewritten, prev = lines[:k], parse_line(lines[k - 1]).hash
    for n, text in enumerate(lines[k:], start=k):
        line = parse_line(text)
        box = line.box if n != k else line.box[:-1] + bytes([line.box[-1] ^ 1])
        text, prev = make_line(n, prev, box, None)
        rewritten.append(json.dumps({**json.loads(text), **({"sig": line.sig} if line.sig else {})}))
    found = tampered(rewritten)
    assert found[0].startswith(f"Entry {k}: its server signature does not verify")

    assert _alarm(http, base) == ("", "")
    assert "Audit log intact" in http.get(base + "/admin/status", timeout=10).text


def test_a_failed_login_flood_leaves_a_bounded_log_and_the_admin_gets_in(deployment, minio):
    attempts = 0
    with serving(deployment, BEHIND_PROXY) as rt:
        start = len(rt.services.audit.lines())
        for i in range(120):                         # many addresses, as a botnet would
            assert login(deployment, "wrong-passphrase", **xff(f"198.51.{i // 250}.{i % 250 + 1}"))[0] in (401, 429)
            attempts += 1
        for _ in range(60):                          # and one address hammering
            assert login(deployment, "wrong-passphrase", **xff("203.0.113.9"))[0] in (401, 429)
            attempts += 1
    with serving(deployment, BEHIND_PROXY) as rt:    # the first runtime flushed its counts when it stopped
        entries = _new(rt, start)
    failures = [e for e in entries if e.kind.startswith("login.")]
    # One interval (10 min) holds at most 2 * MAX_SOURCES + 2 entries, whatever was sent; the test may span two.
    assert len(failures) <= 2 * (2 * MAX_SOURCES + 2), len(failures)
    counted = sum(1 for e in failures if e.kind == "login.failed") + sum(
        int(e.detail.get("count", 0)) for e in failures if e.kind != "login.failed")
    assert counted == attempts
    assert {e.kind for e in failures} >= {"login.failed", "login.refused"}
    assert all(e.kind in ("login.failed", "login.failed.repeated", "login.failed.others", "login.refused")
               for e in failures)
