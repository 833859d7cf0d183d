"""The CLI's client for the runtime's admin API (token from deployment.json)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any

from cryospy.common.errors import CryoSpyError


class AdminApiError(CryoSpyError):
    exit_code = 5


class AdminClient:
    def __init__(self, base_url: str, token: str, ca_file: str | None = None):
        self.base = base_url.rstrip("/")
        self._token = token
        self._ssl = ssl.create_default_context(cafile=ca_file) if ca_file else None

    @classmethod
    def of(cls, dep: Any) -> AdminClient:
        """The admin API of a deployment, where it answers (the dashboard's listener), trusting its CA."""
        return cls(dep.dashboard_url, dep.admin_token, dep.ca_file)

    def call(self, method: str, path: str, doc: dict[str, Any] | None = None) -> Any:
        data = json.dumps(doc).encode() if doc is not None else None
        req = urllib.request.Request(f"{self.base}{path}", data=data, method=method, headers={
            "Authorization": f"Bearer {self._token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30, context=self._ssl) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read()).get("error", "")
            except ValueError:
                detail = ""
            raise AdminApiError(f"{method} {path} failed with HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise AdminApiError(f"cannot reach the CryoSpy runtime at {self.base} ({exc}); start it with "
                                "`cryospy serve`") from None
