"""Running a fence agent on the arbiter host, as Pacemaker does: the ClusterLabs
fence-agents protocol. Options go to the agent's stdin as ``key=value`` lines,
with ``action=off``, ``on`` or ``status``; the exit code is the answer.

For ``status``: 0 means on, 2 means off, anything else is an error. For ``off``
and ``on``: 0 means done. Any agent of the fence-agents project works
(fence_ipmilan, fence_virsh, fence_aws, ...), or a site's own script.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass

STATUS_ON, STATUS_OFF = 0, 2
OUTPUT_MAX = 4000


@dataclass(frozen=True)
class AgentResult:
    action: str
    exit_status: int | None  # None: it could not run, or was killed at the timeout
    output: str
    error: str | None
    duration_ms: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    @property
    def off(self) -> bool:
        """For status: the agent says the node is off."""
        return self.exit_status == STATUS_OFF


def stdin_for(action: str, options: dict[str, str], node: str) -> bytes:
    lines = [f"action={action}", f"nodename={node}"]
    lines += [f"{k}={v}" for k, v in options.items()]
    return ("\n".join(lines) + "\n").encode()


def describe(options: dict[str, str]) -> str:
    """The options as recorded: secrets (password, passwd, key...) never stored."""
    secret = ("pass", "key", "secret", "token")
    return " ".join(f"{k}={'***' if any(s in k.lower() for s in secret) else v}"
                    for k, v in options.items())


async def run_agent(agent: str, action: str, options: dict[str, str], node: str,
                    timeout: float) -> AgentResult:
    started = time.perf_counter()

    def done(status: int | None, out: str, err: str | None) -> AgentResult:
        return AgentResult(action, status, out[-OUTPUT_MAX:], err,
                           (time.perf_counter() - started) * 1000)

    try:
        # its own process group: a timeout kills the agent and what it started (ipmitool,
        # ssh, a sleep), or their open pipes would hold the answer up until they exit
        proc = await asyncio.create_subprocess_exec(
            agent, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        return done(None, "", f"cannot run {agent}: {exc.strerror or exc}")
    try:
        out, _ = await asyncio.wait_for(proc.communicate(stdin_for(action, options, node)),
                                        timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        return done(None, "", f"{agent} action={action} did not finish within {timeout:g}s")
    text = out.decode(errors="replace")
    status = proc.returncode
    err = None
    if action == "status":
        if status not in (STATUS_ON, STATUS_OFF):
            err = f"status failed (exit {status}): {text.strip()[-200:]}"
    elif status != 0:
        err = f"action={action} failed (exit {status}): {text.strip()[-200:]}"
    return done(status, text, err)
