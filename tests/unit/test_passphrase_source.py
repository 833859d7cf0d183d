"""Where `cryospy` reads the admin passphrase from: ``--passphrase-file -`` is standard input (how the
container entrypoint hands over a Compose secret the service user cannot open itself)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from cryospy.cli.passphrase import PassphraseError, read_passphrase


def test_dash_reads_standard_input(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("from a secret\n"))
    assert read_passphrase(Path("-")) == "from a secret"


def test_empty_standard_input_is_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(PassphraseError, match="empty"):
        read_passphrase(Path("-"))


def test_a_file_still_wins_over_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CRYOSPY_PASSPHRASE", "from env")
    (tmp_path / "p").write_text("from file\n")
    assert read_passphrase(tmp_path / "p") == "from file"
