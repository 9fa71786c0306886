"""The unit's EnvironmentFile, read by the CLI and again on reload (issue 30)."""

from __future__ import annotations

import pytest

from arbiter.config.envfile import EnvFileError, apply, reread


def test_the_environment_wins_and_a_named_file_must_be_readable(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "arbiter.env"
    f.write_text("# as /etc/arbiter/arbiter.env\nA=from-file\nB='from file'\nexport C=1\n")
    env = {"A": "from-shell"}
    assert apply(str(f), env) == str(f)
    assert env == {"A": "from-shell", "B": "from file", "C": "1"}
    with pytest.raises(EnvFileError, match="cannot read file"):
        apply(str(tmp_path / "missing.env"), {})
    f.write_text("A=1\nnot a line\n")
    with pytest.raises(EnvFileError, match="line 2: expected NAME=VALUE"):
        apply(str(f), {})


def test_a_reload_reads_the_unit_s_file_again_and_it_wins(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "arbiter.env"
    f.write_text("ARBITER_OPS_TOKEN=rotated\n")
    env = {"ARBITER_OPS_TOKEN": "old", "ARBITER_ENV_FILE": str(f)}
    assert reread(env) == str(f) and env["ARBITER_OPS_TOKEN"] == "rotated"
    assert reread({}) is None  # not under the unit: nothing to read
