"""Fencing at the resource: every command of a fence or recover carries the term it
was decided under, and the node refuses a term lower than one it has seen.

``TermRunner`` puts ``@@term N`` in front of each command. On the node,
``arbiter-ssh-wrapper`` compares N with the highest term it has stored, under
``flock``; it refuses a lower one (exit 125, "stale term") and otherwise stores N
and runs the command while still holding the lock, so an older leader's command
cannot run after a newer one has. ``TermRunner`` also runs nothing once this
arbiter no longer leads under that term by its own clock.
"""

from __future__ import annotations

from collections.abc import Callable

from arbiter import failpoints
from arbiter.probe.ssh import CommandResult, Runner, Target

TERM_PREFIX = "@@term"
ANNOUNCE = "@@announce"  # runs nothing: the node only keeps the term
STALE_TERM_EXIT = 125  # arbiter-ssh-wrapper: refused for a stale term


def with_term(term: int, command: str) -> str:
    return f"{TERM_PREFIX} {term} {command}"


def is_stale_term(exit_status: int | None, stderr: str) -> bool:
    return exit_status == STALE_TERM_EXIT and "stale term" in stderr


class TermRunner:
    """A Runner for one fence: the inner runner, with the term in front of each command."""

    def __init__(self, inner: Runner, term: int | None, still_leading: Callable[[], bool],
                 fence: bool = True):
        """``fence``: this runner carries a fence or recover (not a track file write):
        only those stop at the test-only failpoint before the command goes out."""
        self.inner, self.term, self.still_leading = inner, term, still_leading
        self.fence = fence

    async def run(self, target: Target, command: str, timeout: float) -> CommandResult:
        if self.term is None or not self.still_leading():
            return CommandResult(False, None, "", "", f"not run: this arbiter no longer leads "
                                 f"(term {self.term}); the new leader decides", 0.0)
        if self.fence and command != ANNOUNCE:
            await failpoints.reach("BEFORE_FENCE_COMMAND")  # test only (lab HA tests)
        return await self.inner.run(target, with_term(self.term, command), timeout)

    async def run_in_session(self, target: Target, command: str,
                             timeout: float) -> CommandResult:
        return await self.run(target, command, timeout)

    def stream(self, target: Target, command: str):  # type: ignore[no-untyped-def]
        return self.inner.stream(target, command)

    def sessionless(self) -> set[tuple[str, str]]:
        return self.inner.sessionless()

    def drop(self, target: Target) -> None:
        self.inner.drop(target)

    def trust(self, known_hosts: str) -> None:
        self.inner.trust(known_hosts)

    async def close(self) -> None:
        """The inner runner is shared: the service closes it."""
