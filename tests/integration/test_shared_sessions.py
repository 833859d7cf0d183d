"""Two runtimes, one login state (issue 18 item 4: "any runtime can serve the dashboard, sessions are shared"):
two real runtimes in child processes of their own on one PostgreSQL and one MinIO, as a load balancer without
sticky sessions would use them. A cookie from A works on B (a page and CSRF-protected posts), a logout or an
account removed on one runtime is refused at the next request on the other, guesses spread over both meet one
budget, a login link made with A's data directory is redeemed once on B, and no table holds a token, a CSRF
secret, an account name or a client address that a copy of the database could use."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote_plus

import psycopg
import pytest

from cryospy.cli.main import main as cli_main
from cryospy.common.accounts import Account
from cryospy.common.keys import KeyStore
from cryospy.infra.deployment import load
from cryospy.infra.minio_server import MinioServer, free_port
from cryospy.infra.runtime_instances import add_runtime
from tests.conftest import PASSPHRASE, new_deployment
from tests.runtime_process import RuntimeProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]
VIEWER, VIEWER_PASS = "teen", "only the front door please"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def http(method: str, url: str, form: dict[str, str] | None = None, cookie: str = "",
         client: str = "") -> tuple[int, dict[str, str], str]:
    """One request; returns the status, the cookies set (name -> value) and the body."""
    headers = {"Cookie": f"cryospy_prelogin=pre; {cookie}".rstrip("; ")}
    if client:
        headers["X-Forwarded-For"] = client
    data = None
    if form is not None:
        data = "&".join(f"{k}={quote_plus(v)}" for k, v in {"csrf": "pre", **form}.items()).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        response = urllib.request.build_opener(_NoRedirect).open(request, timeout=30)
    except urllib.error.HTTPError as exc:
        response = exc
    with response:
        cookies = dict(c.split(";")[0].split("=", 1) for c in response.headers.get_all("Set-Cookie") or [])
        return response.status, cookies, response.read().decode("utf-8", "replace")


def log_in(base: str, name: str = "", passphrase: str = PASSPHRASE) -> str:
    status, cookies, _ = http("POST", f"{base}/login", {"name": name, "passphrase": passphrase})
    assert status == 302 and cookies.get("cryospy_session"), status
    return "cryospy_session=" + cookies["cryospy_session"]


def csrf_of(page: str) -> str:
    found = re.search(r'name="?csrf"? value="?([A-Za-z0-9_-]+)', page)
    assert found, "the page carries no CSRF token"
    return found.group(1)


def test_two_runtimes_share_sessions_budgets_and_login_links(postgres, minio_binary: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    url = postgres.fresh_url()
    main = new_deployment(tmp_path / "runtime-a")
    (main.data_dir / "server.json").write_text(json.dumps({"database_url": url, "trusted_proxies": ["127.0.0.1"]}))
    store = KeyStore.load(main.keys_path)
    store.add_account(store.open(PASSPHRASE).master,
                      Account(VIEWER, "viewer", frozenset({"front"}), None, datetime.now(UTC)), VIEWER_PASS)
    second = add_runtime(main, tmp_path / "runtime-b", free_port())   # copies keys.json, viewer included
    main = load(main.data_dir)
    a_url, b_url = main.dashboard_url, second.dashboard_url
    seen_tokens: list[str] = []
    with MinioServer(main, binary=minio_binary):
        a, b = RuntimeProcess(main), RuntimeProcess(second)
        try:
            # Logged in on A: the cookie works on B, for a page and for CSRF-protected posts.
            admin = log_in(a_url)
            seen_tokens.append(admin.split("=", 1)[1])
            status, _, page_b = http("GET", f"{b_url}/admin", cookie=admin)
            assert status == 200 and "Log out" in page_b
            status, _, page_a = http("GET", f"{a_url}/admin", cookie=admin)
            assert status == 200
            # A token masked on A's page passes B's check (the secret is the session's, not the runtime's).
            status, _, _ = http("POST", f"{b_url}/actions/protect", {"csrf": csrf_of(page_a), "key": "nope"},
                                cookie=admin)
            assert status == 400                              # past the CSRF check: "no such clip"
            status, _, _ = http("POST", f"{b_url}/actions/protect", {"csrf": "forged", "key": "nope"}, cookie=admin)
            assert status == 403

            # The viewer logs in on B; the admin removes it on A: B refuses its cookie at once, although B's
            # own key store still lists the account (keys.json is copied by hand).
            viewer = log_in(b_url, VIEWER, VIEWER_PASS)
            seen_tokens.append(viewer.split("=", 1)[1])
            assert http("GET", f"{a_url}/", cookie=viewer)[0] == 200
            status, _, _ = http("POST", f"{a_url}/admin/accounts/{VIEWER}/remove",
                                {"csrf": csrf_of(page_b), "confirm": VIEWER}, cookie=admin)
            assert status == 302
            status, cookies, _ = http("GET", f"{b_url}/", cookie=viewer)
            assert status == 302 and http("GET", f"{a_url}/", cookie=viewer)[0] == 302

            # Logged out on B: A refuses the cookie at its next request.
            assert http("POST", f"{b_url}/logout", {"csrf": "forged"}, cookie=admin)[0] == 403
            assert http("GET", f"{a_url}/", cookie=admin)[0] == 200
            assert http("POST", f"{b_url}/logout", {"csrf": csrf_of(page_b)}, cookie=admin)[0] == 302
            status, _, _ = http("GET", f"{a_url}/admin", cookie=admin)
            assert status == 302 and http("GET", f"{b_url}/admin", cookie=admin)[0] == 302

            # Guesses from one client spread over A and B meet one budget of 5, not 5 per runtime.
            answers = [http("POST", f"{(a_url, b_url)[i % 2]}/login", {"passphrase": f"guess {i}"},
                            client="203.0.113.9")[0] for i in range(8)]
            assert answers == [401] * 5 + [429] * 3
            assert http("POST", f"{a_url}/login", {"passphrase": "guess"}, client="203.0.113.10")[0] == 401

            # A login link made with A's data directory, on the server, works on B, once, even from the
            # address the guesses came from: an attacker's failures do not stand in its way.
            assert cli_main(["dashboard", "login-link", "--data-dir", str(main.data_dir)]) == 0
            link = capsys.readouterr().out.split()[-1]
            token = link.split("token=", 1)[1]
            seen_tokens.append(token)
            assert http("GET", f"{b_url}/login/link?token={token}")[0] == 200
            status, cookies, _ = http("POST", f"{b_url}/login/link", {"token": token}, client="203.0.113.9")
            assert status == 302 and cookies.get("cryospy_session")
            seen_tokens.append(cookies["cryospy_session"])
            assert http("GET", f"{a_url}/admin", cookie="cryospy_session=" + cookies["cryospy_session"])[0] == 200
            for base in (a_url, b_url):
                status, _, body = http("POST", f"{base}/login/link", {"token": token})
                assert status == 403 and "unknown, used or expired" in body

            # A copy of the tables holds nothing anyone could log in with, nor names or addresses.
            with psycopg.connect(url) as conn:
                dump = b""
                for table in ("dashboard_sessions", "login_attempts", "login_links"):
                    for row in conn.execute(f"SELECT * FROM {table}").fetchall():
                        dump += b"|".join(bytes(c) if isinstance(c, bytes | memoryview) else str(c).encode()
                                          for c in row)
                sessions = conn.execute("SELECT count(*) FROM dashboard_sessions").fetchone()[0]
            assert sessions >= 1 and dump
            for secret in [*seen_tokens, VIEWER, "admin", "203.0.113.9", "203.0.113.10"]:
                for form in (secret.encode(), secret.encode().hex().encode()):
                    assert form not in dump, secret
        finally:
            a.stop()
            b.stop()
