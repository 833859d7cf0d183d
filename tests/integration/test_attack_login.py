"""Issue #12, finding 3: the dashboard login limiter (per client, IPv6 /64, claim before scrypt, global
backoff, pruning) and the way in no attacker can block: a one-time login link made on the server.

The tests play the attacker against the real runtime and MinIO and assert the safe outcome; the legitimate
camera or admin must get through in every one of them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from cryospy.cli.main import main as cli_main
from cryospy.infra.runtime import Runtime
from tests.attack_support import BEHIND_PROXY, call, login, serving, xff
from tests.conftest import PASSPHRASE

pytestmark = pytest.mark.integration


# -- finding 3: the login limiter ----------------------------------------------------------------------------

class _CountingAccounts:
    """The runtime's key vault, with each passphrase check counted and made ``seconds`` slow."""

    def __init__(self, vault, seconds: float, checked: list[str]):  # type: ignore[no-untyped-def]
        self.vault, self.seconds, self.checked = vault, seconds, checked

    def login(self, name: str, passphrase: str):  # type: ignore[no-untyped-def]
        self.checked.append(passphrase)
        time.sleep(self.seconds)
        return self.vault.login(name, passphrase)

    def account(self, name: str):  # type: ignore[no-untyped-def]
        return self.vault.account(name)


@contextmanager
def counting_checks(rt: Runtime, seconds: float = 0.2) -> Iterator[list[str]]:
    """Count passphrase checks; each takes ``seconds``, as scrypt does in production (tests use a cheap KDF)."""
    checked: list[str] = []
    real = rt.dashboard.accounts
    rt.dashboard.accounts = _CountingAccounts(real, seconds, checked)
    try:
        yield checked
    finally:
        rt.dashboard.accounts = real


def test_parallel_guesses_are_claimed_before_the_passphrase_is_checked(deployment, minio):
    with serving(deployment, BEHIND_PROXY) as rt, counting_checks(rt) as checked:
        with ThreadPoolExecutor(24) as pool:
            answers = list(pool.map(lambda _: login(deployment, "guess", **xff("203.0.113.70"))[0], range(24)))
        assert sorted(answers) == [401] * 5 + [429] * 19
        assert len(checked) == 5


def test_ipv6_neighbours_in_one_64_share_a_budget_others_do_not(deployment, minio):
    with serving(deployment, BEHIND_PROXY):
        answers = [login(deployment, "guess", **xff(f"2001:db8:1:2::{i}"))[0] for i in range(1, 7)]
        assert answers == [401] * 5 + [429]
        assert login(deployment, "guess", **xff("2001:db8:1:3::1"))[0] == 401


def test_a_spread_out_guesser_meets_a_global_backoff_and_the_admin_still_gets_in(deployment, minio, capsys):
    with serving(deployment, BEHIND_PROXY) as rt, counting_checks(rt, seconds=0.0) as checked:
        answers = [login(deployment, "guess", **xff(f"10.66.{i // 200}.{i % 200 + 1}")) for i in range(60)]
        assert len(checked) <= rt.dashboard.limiter.global_free + 1
        refused = [body for status, _, body in answers if status == 429]
        assert len(refused) >= 60 - len(checked) and "cryospy dashboard login-link" in refused[-1]
        # The global backoff refuses the admin too; the way in it cannot block is a link made on the server.
        assert login(deployment, PASSPHRASE, **xff("192.0.2.1"))[0] == 429
        assert rt.dashboard.limiter.tracked() <= len(checked)                  # refused guesses leave no trace
        assert cli_main(["dashboard", "login-link", "--data-dir", str(deployment.data_dir)]) == 0
        link = capsys.readouterr().out.split()[-1]
        assert link.startswith(deployment.runtime_url + "/login/link?token=")
        status, _, page = call("GET", link)
        assert status == 200 and b"<form" in page
        token = link.rpartition("=")[2]
        form = f"csrf=pre&token={token}".encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": "cryospy_prelogin=pre"}
        status, hdrs, _ = call("POST", deployment.runtime_url + "/login/link", form, headers)
        assert status == 302 and hdrs["Location"] == "/"
        session = hdrs["Set-Cookie"].split(";")[0]
        assert call("GET", deployment.runtime_url + "/", headers={"Cookie": session})[0] == 200
        # One time only.
        assert call("POST", deployment.runtime_url + "/login/link", form, headers)[0] == 403
