"""The unit's EnvironmentFile, read by the CLI (issue 30): systemd's syntax."""

from __future__ import annotations

import pytest

from arbiter.cli.envfile import EnvFileError, apply, parse


def test_parse_as_systemd_does() -> None:
    text = ("# comment\n; also a comment\n\nARBITER_OPS_TOKEN=abc123\n"
            "ARBITER_DB_URL=\"postgresql+psycopg://a:b@db/arbiter\"\n"
            "QUOTED='has spaces'\nexport EXPORTED=1\nEMPTY=\n")
    assert parse(text, "f") == {
        "ARBITER_OPS_TOKEN": "abc123", "ARBITER_DB_URL": "postgresql+psycopg://a:b@db/arbiter",
        "QUOTED": "has spaces", "EXPORTED": "1", "EMPTY": ""}


@pytest.mark.parametrize("bad", ["no equals sign", "1BAD=x", "X='unbalanced"])
def test_a_bad_line_names_file_and_line(bad: str) -> None:
    with pytest.raises(EnvFileError, match=r"^f:2: "):
        parse(f"OK=1\n{bad}\n", "f")


def test_the_environment_wins_and_a_named_file_must_be_readable(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "arbiter.env"
    f.write_text("A=from-file\nB=from-file\n")
    env = {"A": "from-shell"}
    assert apply(str(f), env) == str(f)
    assert env == {"A": "from-shell", "B": "from-file"}
    with pytest.raises(EnvFileError, match="--env-file: cannot read"):
        apply(str(tmp_path / "missing.env"), {})
