"""Any runtime serves the dashboard (issue 18 item 4, docs/postgres.md "Shared between runtimes"): two real
runtime processes on one PostgreSQL and one MinIO; accounts, saved channels and second-factor enrolments made on
runtime A's dashboard apply on runtime B without a restart, an account removed on A is refused on B at once
and its session there ends, and both runtimes write one audit log."""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg
import pyotp
import pytest
import requests

from cryospy.infra.deployment import load
from cryospy.infra.minio_server import MinioServer, free_port
from cryospy.infra.runtime_instances import add_runtime
from cryospy.infra.stores import runtime_name
from tests.conftest import PASSPHRASE, new_deployment
from tests.integration.test_home_events import Receiver
from tests.runtime_process import RuntimeProcess
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ANNA, ANNA_PASS = "anna", "anna's own long passphrase"
HOOK_SECRET = "a webhook secret made on runtime a"


def _csrf(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)   # type: ignore[union-attr]


def _log_in(base: str, name: str, passphrase: str) -> tuple[requests.Session, requests.Response]:
    http = requests.Session()
    page = http.get(base + "/login", timeout=10)
    answer = http.post(base + "/login", data={"csrf": _csrf(page.text), "name": name, "passphrase": passphrase},
                       allow_redirects=False, timeout=30)
    return http, answer


def _post(http: requests.Session, base: str, page: str, action: str, **fields: str) -> requests.Response:
    csrf = _csrf(http.get(base + page, timeout=10).text)
    return http.post(base + action, data={"csrf": csrf, **fields}, allow_redirects=False, timeout=30)


def test_accounts_channels_and_second_factor_made_on_one_runtime_apply_on_the_other(
        postgres, minio_binary: Path, tmp_path: Path) -> None:
    url = postgres.fresh_url()
    main = new_deployment(tmp_path / "runtime-a")
    (main.data_dir / "server.json").write_text(json.dumps({"database_url": url}))
    second = add_runtime(main, tmp_path / "runtime-b", free_port())
    main = load(main.data_dir)
    a_url, b_url = main.runtime_url, second.runtime_url
    receiver = Receiver(status=204)
    with MinioServer(main, binary=minio_binary):
        a, b = RuntimeProcess(main), RuntimeProcess(second)
        try:
            admin_a, answer = _log_in(a_url, "admin", PASSPHRASE)
            assert answer.status_code == 302
            admin_b, answer = _log_in(b_url, "admin", PASSPHRASE)
            assert answer.status_code == 302

            # An account added on A's dashboard logs in on B.
            added = _post(admin_a, a_url, "/admin/accounts", "/admin/accounts", name=ANNA, role="admin",
                          passphrase=ANNA_PASS, repeat=ANNA_PASS)
            assert added.status_code in (302, 303), added.text
            anna_b, answer = _log_in(b_url, ANNA, ANNA_PASS)
            assert answer.status_code == 302 and answer.headers["Location"] == "/"
            assert anna_b.get(b_url + "/", timeout=10, allow_redirects=False).status_code == 200

            # A webhook saved on A's dashboard is used by B (B sends its test event there), with no restart.
            saved = _post(admin_a, a_url, "/admin/channels", "/admin/channels/webhook", enabled="on",
                          url=receiver.url, secret=HOOK_SECRET)
            assert saved.status_code in (302, 303), saved.text
            wait_for(lambda: "Settings from dashboard." in admin_b.get(b_url + "/admin/channels", timeout=10).text,
                     timeout=30, what="B applied the channel saved on A")
            sent = _post(admin_b, b_url, "/admin/status", "/admin/status/test", channel="webhook")
            assert sent.status_code in (302, 303), sent.text
            wait_for(lambda: any(b'"test"' in body for _, body, _ in receiver.requests), timeout=30,
                     what="B's test event at the webhook A configured")

            # A second factor enrolled on A is asked on B, and its recovery code works there.
            anna_a, _ = _log_in(a_url, ANNA, ANNA_PASS)
            started = _post(anna_a, a_url, "/account/second-factor", "/account/second-factor/start")
            secret = re.search(r'class="totp-secret">([A-Z2-7]+)<', started.text).group(1)   # type: ignore[union-attr]
            confirmed = anna_a.post(a_url + "/account/second-factor/confirm", timeout=30,
                                    data={"csrf": _csrf(started.text), "code": pyotp.TOTP(secret).now()})
            codes = re.findall(r"<code>([a-z2-7]{5}-[a-z2-7]{5})</code>", confirmed.text)
            assert confirmed.status_code == 200 and len(codes) == 10, confirmed.text
            http, answer = _log_in(b_url, ANNA, ANNA_PASS)
            assert answer.headers["Location"] == "/login/code", "B asks for the code enrolled on A"
            csrf = _csrf(http.get(b_url + "/login/code", timeout=10).text)
            answer = http.post(b_url + "/login/code", data={"csrf": csrf, "code": codes[0]}, allow_redirects=False,
                               timeout=30)
            assert answer.status_code == 302 and answer.headers["Location"] == "/"
            http, answer = _log_in(a_url, ANNA, ANNA_PASS)
            csrf = _csrf(http.get(a_url + "/login/code", timeout=10).text)
            again = http.post(a_url + "/login/code", data={"csrf": csrf, "code": codes[0]}, timeout=30)
            assert again.status_code == 401, "a recovery code used on B is spent on A too"

            # Removed on A: B refuses the login and ends the session it had.
            removed = _post(admin_a, a_url, "/admin/accounts", f"/admin/accounts/{ANNA}/remove", confirm=ANNA)
            assert removed.status_code in (302, 303), removed.text
            _, answer = _log_in(b_url, ANNA, ANNA_PASS)
            assert answer.status_code == 401
            wait_for(lambda: anna_b.get(b_url + "/", timeout=10, allow_redirects=False).status_code == 302,
                     timeout=30, what="the removed account's session on B ended")

            # One audit log of both runtimes, each entry naming its runtime; its chain checks out on B.
            page = admin_b.get(b_url + "/admin/audit?kind=login", timeout=10).text
            assert f"runtime={runtime_name(main)}" in page and f"runtime={runtime_name(second)}" in page
            assert 'class="suspect"' not in page

            with psycopg.connect(url) as conn:
                rows = dict(conn.execute("SELECT name, doc FROM shared_documents").fetchall())
            assert set(rows) == {"keys", "channels", "second-factor"}
            for blob in rows.values():
                assert HOOK_SECRET.encode() not in bytes(blob) and ANNA.encode() not in bytes(blob)
                assert secret.encode() not in bytes(blob)
        finally:
            a.stop()
            b.stop()
            receiver.close()
