"""cryospy.common.atomic: the one durable file replacement (mode, exclusivity, nothing left behind)."""

from __future__ import annotations

import os
import stat

import pytest

from cryospy.common.atomic import write_atomic


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_file_is_private_by_default_and_its_folder_is_made_0700(tmp_path):
    target = tmp_path / "new" / "secret.json"
    write_atomic(target, b"{}")
    assert target.read_bytes() == b"{}"
    assert _mode(target) == 0o600
    assert _mode(target.parent) == 0o700


def test_replacing_keeps_no_temporary_file_and_takes_the_mode_asked_for(tmp_path):
    target = tmp_path / "page.html"
    target.write_bytes(b"old")
    write_atomic(target, b"new", mode=0o644)
    assert target.read_bytes() == b"new"
    assert _mode(target) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page.html"]


def test_exclusive_never_replaces_an_existing_file(tmp_path):
    target = tmp_path / "keys.json"
    write_atomic(target, b"first", exclusive=True)
    with pytest.raises(FileExistsError):
        write_atomic(target, b"second", exclusive=True)
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json"]


def test_a_failed_write_leaves_the_old_content_and_no_temporary_file(tmp_path):
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        write_atomic(target, "not bytes")   # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_temporary_names_end_in_part_so_the_spool_sweep_removes_crash_leftovers(tmp_path, monkeypatch):
    seen: list[str] = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(os.path.basename(src))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    write_atomic(tmp_path / "dropped.json", b"{}")
    assert seen and seen[0].startswith(".dropped.json.") and seen[0].endswith(".part")
