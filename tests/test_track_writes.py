"""Verdicts into keepalived track files, as the node takes them (issues 21 and 29):
the wrapper's own copy of the write, for its track_dir only; instance names from a
dump that never run and always reach their file; writes that carry their order, so a
late deny never lands after a newer allow. With the wrapper, dash and busybox."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.test_node_scripts import wrap


@pytest.fixture
def track_conf(tmp_path: Path) -> tuple[Path, Path]:
    d = tmp_path / "verdict"
    d.mkdir()
    c = tmp_path / "wrapper.conf"
    c.write_text(f"vip 10.0.0.100\nsudo no\ntrack_dir {d}\n")
    return c, d


def test_wrapper_writes_a_verdict_into_a_track_file(track_conf: tuple[Path, Path]) -> None:
    from arbiter.round.acts.track_files import track_command

    conf, d = track_conf
    for seq, value in enumerate((True, False, True), start=1):
        p = wrap(conf, track_command(str(d), "VI_1", value, seq))
        assert p.returncode == 0, p.stderr
        assert (d / "VI_1").read_text() == ("1\n" if value else "0\n")
    # with a term ([ha]): kept, then written
    p = wrap(conf, f"@@term 3 {track_command(str(d), 'VI_2', True, 4)}")
    assert p.returncode == 0 and (d / "VI_2").read_text() == "1\n", p.stderr


def _good(d: Path) -> str:
    from arbiter.round.acts.track_files import track_command

    return track_command(str(d), "VI_1", True, 5)


@pytest.mark.parametrize("bad", [
    lambda d: "echo 1 > /etc/passwd",
    lambda d: f"echo 1 > {d}/VI_1",  # the form before issue 29: no order
    lambda d: _good(d).replace(f"f={d}/VI_1", "f=/etc/passwd"),
    lambda d: _good(d).replace(f"f={d}/VI_1", f"f={d}/../escape"),
    lambda d: _good(d).replace(f"f={d}/VI_1", f"f={d}/a/b"),
    lambda d: _good(d).replace(f"f={d}/VI_1", f"f={d}/.hidden"),
    lambda d: _good(d).replace("&& echo 1 >", "&& echo 2 >"),
    lambda d: _good(d).replace("-lt 5 ]", "-lt 5x ]"),
    lambda d: _good(d).replace("echo 5 >", "echo 6 >"),
    lambda d: _good(d) + "; id",
    lambda d: _good(d).replace("exit 3; fi", "id; fi"),
])
def test_wrapper_refuses_any_other_write(track_conf: tuple[Path, Path], bad) -> None:  # type: ignore[no-untyped-def]
    conf, d = track_conf
    p = wrap(conf, bad(d))
    assert p.returncode == 126 and "refused" in p.stderr, (bad, p.stderr)
    assert not (d / "VI_1").exists() and not (d.parent / "escape").exists()


def test_wrapper_refuses_track_writes_without_track_dir(tmp_path: Path) -> None:
    from arbiter.round.acts.track_files import track_command

    conf = tmp_path / "wrapper.conf"
    conf.write_text("vip 10.0.0.100\nsudo no\n")  # no track_dir line
    p = wrap(conf, track_command(str(tmp_path), "VI_1", True, 1))
    assert p.returncode == 126 and "no track_dir" in p.stderr
    assert not (tmp_path / "VI_1").exists()


NAMES = ["VI_1", "VI:6", "web@v4", "vi-1.2", ".hidden", "a b", "100%", "$(touch {m})",
         "`touch {m}`", "x;touch {m}", "../escape", "é"]


@pytest.mark.parametrize("name", NAMES)
def test_instance_names_from_a_dump_never_run_and_always_reach_their_file(
        track_conf: tuple[Path, Path], tmp_path: Path, name: str) -> None:
    """An instance name comes from the node's dump (issue 29): hostile names never run
    on the node, and legitimate unusual ones (``:``, ``@``) are written, one file per
    name, with the wrapper and without it (a plain shell, as a node without the
    forced command runs it)."""
    from arbiter.round.acts.track_files import track_command, track_file_name

    conf, d = track_conf
    marker = tmp_path / "ran"
    inst = name.format(m=marker)
    cmd = track_command(str(d), inst, True, 7)
    fname = track_file_name(inst)
    assert "/" not in fname and not fname.startswith(".")
    p = wrap(conf, cmd)
    assert p.returncode == 0, p.stderr
    assert (d / fname).read_text() == "1\n"
    (d / fname).unlink()
    (d / f"{fname}.seq").unlink()
    p = subprocess.run(["dash", "-c", cmd], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0 and (d / fname).read_text() == "1\n", p.stderr
    assert not marker.exists() and sorted(d.iterdir()) == [d / fname, d / f"{fname}.seq"]
    assert not (d.parent / "escape").exists()


def test_track_file_names_are_one_to_one() -> None:
    from arbiter.round.acts.track_files import track_file_name

    names = [n.format(m="x") for n in NAMES] + ["VI%3A6", "%2Ehidden", "VI_1 "]
    files = [track_file_name(n) for n in names]
    assert len(set(files)) == len(names)
    assert track_file_name("VI_1") == "VI_1" and track_file_name("VI:6") == "VI%3A6"


@pytest.mark.parametrize("via", ["wrapper", "dash", "busybox"])
def test_a_late_deny_never_lands_after_a_newer_allow(track_conf: tuple[Path, Path],
                                                     via: str) -> None:
    """A deny that timed out on the arbiter (or waited for the term lock) reaches the
    node after the allow decided later (issue 29): the node refuses it (exit 3), and
    the allow stands. With the wrapper, and as a plain shell runs it."""
    from arbiter.round.acts.track_files import SUPERSEDED, track_command

    conf, d = track_conf

    def run(cmd: str) -> subprocess.CompletedProcess[str]:
        if via == "wrapper":
            return wrap(conf, cmd)
        argv = ["dash", "-c", cmd] if via == "dash" else [shutil.which("busybox") or "busybox",
                                                          "sh", "-c", cmd]
        return subprocess.run(argv, capture_output=True, text=True, timeout=10)

    deny = track_command(str(d), "VI_1", True, 1_733_580_000_100)
    allow = track_command(str(d), "VI_1", False, 1_733_580_000_200)
    assert run(allow).returncode == 0
    late = run(deny)
    assert late.returncode == SUPERSEDED and "superseded" in late.stderr, late.stderr
    assert (d / "VI_1").read_text() == "0\n"
    # a newer deny still lands; the same order twice does not
    newer = track_command(str(d), "VI_1", True, 1_733_580_000_300)
    assert run(newer).returncode == 0 and (d / "VI_1").read_text() == "1\n"
    assert run(newer).returncode == SUPERSEDED
