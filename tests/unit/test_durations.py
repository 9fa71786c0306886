"""Durations on the command line (issue 30): a unit always, compounds, and a message
that names the option for anything else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arbiter.cli.argv import flag_values
from arbiter.cli.durations import parse_duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("1h30m", 5400),
    ("3h59m", 14340), ("2d12h", 216000), ("1m30.5s", 90.5), (" 45M ", 2700),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "words"), [
    ("10", "has no unit: say 10s, 10m or 10h"),
    ("10min", "is not a duration"),
    ("-5m", "is negative"),
    ("0s", "is zero"),
    ("30m1h", "largest first"),
    ("1h1h", "largest first"),
    ("", "is not a duration"),
    ("soon", "is not a duration"),
    ("1h 30m", "is not a duration"),
])
def test_anything_else_is_refused_naming_the_option(text: str, words: str) -> None:
    with pytest.raises(ValueError, match="^--for: ") as e:
        parse_duration(text)
    assert words in str(e.value)


def test_a_negative_value_reaches_the_parser_instead_of_argparse() -> None:
    assert flag_values(["pause", "--for", "-5m", "--reason", "x"], "--for") == \
        ["pause", "--for=-5m", "--reason", "x"]
    assert flag_values(["--for", "5m"], "--for") == ["--for", "5m"]


@given(st.integers(0, 30), st.integers(0, 23), st.integers(0, 59), st.integers(0, 59))
def test_compounds_add_up(d: int, h: int, m: int, s: int) -> None:
    parts = [(d, "d"), (h, "h"), (m, "m"), (s, "s")]
    text = "".join(f"{n}{u}" for n, u in parts if n)
    total = d * 86400 + h * 3600 + m * 60 + s
    if total == 0:
        return
    assert parse_duration(text) == total
