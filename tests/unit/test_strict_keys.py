"""cryospy.common.strict_keys.over_defaults: the one way a settings document is laid over its defaults."""

from __future__ import annotations

import pytest

from cryospy.common.strict_keys import message_only, over_defaults


class Refused(Exception):
    pass


def test_the_document_wins_over_the_defaults_and_the_defaults_fill_the_rest():
    assert over_defaults({"port": 2}, {"host": "h", "port": 1}, what="x", error=message_only(Refused)) == \
        {"host": "h", "port": 2}


def test_an_unknown_key_is_refused_with_the_closest_known_key_before_any_merge():
    with pytest.raises(Refused, match=r"x has unknown key 'prot'; did you mean 'port'\?"):
        over_defaults({"prot": 2}, {"host": "h", "port": 1}, what="x", error=message_only(Refused))


def test_known_keys_may_be_wider_than_the_defaults_and_a_non_object_is_refused():
    assert over_defaults({"user": "u"}, {}, known=["user", "password"], what="x", error=message_only(Refused)) == \
        {"user": "u"}
    with pytest.raises(Refused, match="x must be a JSON object, not list"):
        over_defaults([], {}, what="x", error=message_only(Refused))
