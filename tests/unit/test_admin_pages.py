"""The admin pages' pure helpers: the settings form built from the schema and read back, the agent config,
one-time forms and the status page's formatting."""

from __future__ import annotations

import json

import pytest

from cryospy.common.accounts import Account
from cryospy.common.settings import DEFAULT_SETTINGS, DeviceSettings
from cryospy.functions.errors import BadRequest
from cryospy.functions.events import ObjectEvent
from cryospy.infra.jobqueue import DeadLetter
from cryospy.web.admin import OneTimeForms, device_path
from cryospy.web.admin_forms import agent_config, form_to_settings, setting_name, settings_fields
from cryospy.web.admin_status import dead_letters, uptime_text
from cryospy.web.server import Session

CURRENT = DEFAULT_SETTINGS.to_dict()


def _submitted(fields) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """What a browser posts for the rendered form, untouched (unchecked boxes are absent)."""
    form = {"csrf": "token"}
    for f in fields:
        if f.input == "checkbox":
            if f.value:
                form[f.name] = "on"
        else:
            form[f.name] = f.value
    return form


def test_every_setting_gets_an_input_of_its_type_with_its_bounds():
    fields = {f.name: f for f in settings_fields(CURRENT)}
    assert set(fields) == set(CURRENT)
    assert fields["motion_only"].input == "checkbox" and fields["motion_only"].value is False
    clip = fields["clip_duration_seconds"]
    assert (clip.input, clip.minimum, clip.maximum, clip.step, clip.value) == ("number", 5, 1800, "1", "60")
    aspect = fields["motion_min_aspect"]
    assert (aspect.input, aspect.step, aspect.value) == ("number", "any", "0.3")
    assert fields["output_codec"].input == "select"
    assert fields["output_codec"].options == ("libx264", "libopenh264")
    assert fields["downscale_resolution"].input == "text"
    assert fields["motion_zones"].input == "json" and fields["motion_zones"].value == "[]"
    assert "Length of one recorded clip" in clip.hint


def test_an_untouched_form_changes_nothing():
    current = DeviceSettings.from_dict({"motion_only": True, "motion_min_aspect": 0.5, "crf": 30,
                                        "motion_zones": [[[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]]}).to_dict()
    assert form_to_settings(_submitted(settings_fields(current)), current) == {}


def test_changed_values_come_back_typed_and_only_those():
    form = _submitted(settings_fields(CURRENT))
    form.update({"clip_duration_seconds": " 120 ", "motion_min_aspect": "0.5", "output_codec": "libopenh264",
                 "motion_masks": "[[[0, 0], [0.2, 0], [0.2, 0.2]]]", "motion_only": "on"})
    assert "grayscale" not in form   # unchecked before and after: no change
    update = form_to_settings(form, CURRENT)
    assert update == {"clip_duration_seconds": 120, "motion_min_aspect": 0.5, "output_codec": "libopenh264",
                      "motion_masks": [[[0, 0], [0.2, 0], [0.2, 0.2]]], "motion_only": True}
    DeviceSettings.from_dict(update, base=DEFAULT_SETTINGS)   # the domain accepts what the form produced


def test_unchecking_a_box_turns_the_setting_off():
    current = DeviceSettings.from_dict({"grayscale": True}).to_dict()
    form = _submitted(settings_fields(current))
    del form["grayscale"]
    assert form_to_settings(form, current) == {"grayscale": False}


@pytest.mark.parametrize(("name", "raw", "says"), [
    ("clip_duration_seconds", "sixty", "is not a number"),
    ("clip_duration_seconds", "", "is empty"),
    ("motion_min_aspect", "nan", "not a finite number"),
    ("motion_zones", "[[0.1, 0.1", "is not valid JSON"),
])
def test_input_of_the_wrong_kind_is_refused_naming_the_setting(name, raw, says):
    form = _submitted(settings_fields(CURRENT)) | {name: raw}
    with pytest.raises(BadRequest) as caught:
        form_to_settings(form, CURRENT)
    assert caught.value.field == f"settings.{name}" and says in caught.value.message
    assert setting_name(caught.value.field) == name


def test_a_fraction_for_a_whole_number_is_left_for_the_validator_to_name():
    form = _submitted(settings_fields(CURRENT)) | {"clip_duration_seconds": "60.5"}
    assert form_to_settings(form, CURRENT) == {"clip_duration_seconds": 60.5}


def test_after_a_refusal_the_form_shows_what_the_admin_typed_and_the_message():
    submitted = _submitted(settings_fields(CURRENT)) | {"clip_duration_seconds": "3", "crf": "40", "grayscale": "on"}
    fields = {f.name: f for f in settings_fields(CURRENT, submitted, {"clip_duration_seconds": "too short"})}
    assert fields["clip_duration_seconds"].value == "3" and fields["clip_duration_seconds"].error == "too short"
    assert fields["crf"].value == "40" and fields["crf"].error == ""
    assert fields["grayscale"].value is True and fields["motion_only"].value is False


def test_the_agent_config_has_what_the_agent_needs_and_no_signing_key():
    text = agent_config("porch cam", "ab" * 32, "http://192.168.1.5:8480", "cs1-x25519-pub:k1:AAAA")
    doc = json.loads(text)
    assert doc == {"client_id": "porch cam", "client_secret": "ab" * 32, "server_url": "http://192.168.1.5:8480",
                   "deployment_public_key": "cs1-x25519-pub:k1:AAAA", "spool_dir": "spool-porch_cam"}
    assert "signing_key" not in text


def test_device_paths_carry_the_id_hex_encoded():
    assert device_path("porch cam+1") == "/admin/devices/" + b"porch cam+1".hex()


def test_a_one_time_form_works_once_for_its_session_and_purpose():
    forms = OneTimeForms()
    admin = Account("admin", "admin")
    alice, bob = Session("t1", "c1", admin), Session("t2", "c2", admin)
    token = forms.issue(alice, "rotate:cam")
    assert not forms.use(bob, "rotate:cam", token)
    assert not forms.use(alice, "rotate:other", token)
    assert forms.use(alice, "rotate:cam", token)
    assert not forms.use(alice, "rotate:cam", token)
    assert not forms.use(alice, "rotate:cam", "made-up")


def test_one_time_forms_expire_and_stay_bounded():
    forms = OneTimeForms(ttl=-1)
    session = Session("t", "c", Account("admin", "admin"))
    assert not forms.use(session, "p", forms.issue(session, "p"))
    bounded = OneTimeForms(limit=3)
    tokens = [bounded.issue(session, "p") for _ in range(5)]
    assert not bounded.use(session, "p", tokens[0])
    assert bounded.use(session, "p", tokens[-1])


class _Queue:
    def __init__(self, n: int):
        self.rows = [DeadLetter(i, "ingest", ObjectEvent("s3:ObjectCreated:Put", "b", f"clips/cam/{i}.csb", 1,
                                                         "e", None, None), 3, f"bad {i}", 1.7e9 + i)
                     for i in range(1, n + 1)]

    def dead_letters(self):  # type: ignore[no-untyped-def]
        return self.rows


def test_dead_letters_newest_first_and_at_most_twenty():
    shown = dead_letters(_Queue(25))
    assert [d.id for d in shown] == list(range(25, 5, -1))
    assert shown[0].object_key == "clips/cam/25.csb" and shown[0].reason == "bad 25"
    assert shown[0].updated.endswith("Z")


def test_uptime_reads_naturally():
    assert uptime_text(0, 59) == "0 min 59 s"
    assert uptime_text(0, 3 * 3600 + 120) == "3 h 2 min"
    assert uptime_text(0, 2 * 86400 + 3600) == "2 d 1 h 0 min"
