"""The committed OpenAPI file is exactly what the code describes, and covers exactly the app's routes."""

from __future__ import annotations

import json
from pathlib import Path

from cryospy.functions.app import app
from cryospy.functions.openapi import build_spec

SPEC = Path(__file__).resolve().parents[2] / "functions" / "openapi.json"


def test_committed_file_is_current():
    assert json.loads(SPEC.read_text()) == json.loads(json.dumps(build_spec())), (
        "functions/openapi.json is stale: run `python -m cryospy.functions.openapi > functions/openapi.json`")


def test_paths_and_methods_match_the_routes():
    documented = {(path, method.upper()) for path, ops in build_spec()["paths"].items() for method in ops}
    served = {(path, method) for path, methods in app.routes.items() for method in methods}
    assert documented == served


def test_every_operation_declares_its_auth_and_a_4xx():
    for path, ops in build_spec()["paths"].items():
        for method, op in ops.items():
            assert "security" in op, (path, method)
            if op["security"]:
                assert "401" in op["responses"], (path, method)
