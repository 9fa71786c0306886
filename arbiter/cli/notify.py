"""`arbiter notify test`: one test message to every ``[notify]`` channel, straight
(no outbox), and each result printed."""

from __future__ import annotations

from arbiter.config import Config
from arbiter.notify.channels import Channels
from arbiter.round.acts.sender import send_test


async def run_test(cfg: Config) -> int:
    """`arbiter notify test`: print each channel's result; exit 0 only if all worked."""
    if cfg.notify is None:
        print("no [notify] section in the config: nothing to test")
        return 2
    channels = Channels(cfg.notify)
    try:
        results = await send_test(cfg.notify, channels, cfg.links_url,
                                  cfg.ha.name if cfg.ha is not None else None)
    finally:
        await channels.aclose()
    width = max(len(ch) for ch, _ in results)
    for ch, err in results:
        print(f"{ch:<{width}}  {'ok' if err is None else 'FAILED: ' + err}")
    failed = sum(err is not None for _, err in results)
    print(f"{len(results) - failed} of {len(results)} channel(s) delivered")
    return 1 if failed else 0
