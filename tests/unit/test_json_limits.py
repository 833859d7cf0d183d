"""Network JSON with a bound on nesting: deep documents are a ValueError with a message, never a RecursionError."""

from __future__ import annotations

import pytest

from cryospy.functions.api import json_limits


@pytest.mark.parametrize("raw", ["[" * 100_000 + "]" * 100_000, '{"a": ' * 5000 + "1" + "}" * 5000,
                                 "[" * 33 + "]" * 33])
def test_too_deep_is_a_value_error_that_says_so(raw: str) -> None:
    with pytest.raises(json_limits.JsonTooDeep, match="nested more than 32 levels"):
        json_limits.loads(raw)
    assert issubclass(json_limits.JsonTooDeep, ValueError)


def test_documents_within_the_limit_parse_as_json_loads_would() -> None:
    zones = [[[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]]
    assert json_limits.loads(b'{"zones": [[[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]]}') == {"zones": zones}
    assert json_limits.loads("[" * 32 + "]" * 32) is not None
    with pytest.raises(ValueError) as caught:
        json_limits.loads("{not json")
    assert not isinstance(caught.value, json_limits.JsonTooDeep)
