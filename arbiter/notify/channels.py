"""Delivery to one channel: SMTP through aiosmtplib, webhooks through httpx.

Every failure of either library (refused, timed out, TLS, an SMTP or HTTP error
answer) is mapped to ``DeliveryError`` here, at this one seam, with words an
operator can act on; nothing else escapes.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import aiosmtplib
import httpx

from arbiter.config.notify import NotifySection
from arbiter.notify import render


class DeliveryError(Exception):
    """One delivery failed; ``str()`` says why."""


class Channels:
    def __init__(self, section: NotifySection, transport: httpx.AsyncBaseTransport | None = None):
        self.section = section
        self._http = httpx.AsyncClient(timeout=section.timeout, transport=transport,
                                       follow_redirects=False,
                                       headers={"User-Agent": "keepalived-arbiter"})

    async def deliver(self, channel: str, payload: dict[str, Any]) -> None:
        """Deliver one notification, bounded by ``notify.timeout``; DeliveryError if not."""
        try:
            async with asyncio.timeout(self.section.timeout):
                if channel == "smtp":
                    await self._mail(payload)
                else:
                    await self._post(channel, payload)
        except DeliveryError:
            raise
        except TimeoutError:
            raise DeliveryError(f"no answer within {self.section.timeout:g}s") from None
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(f"SMTP {exc.code} {exc.message}"[:300]) from None
        except aiosmtplib.SMTPException as exc:
            raise DeliveryError(f"SMTP: {exc}"[:300]) from None
        except httpx.HTTPError as exc:
            raise DeliveryError(f"HTTP: {type(exc).__name__}: {exc}"[:300]) from None
        except (OSError, ssl.SSLError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}"[:300]) from None

    async def _mail(self, payload: dict[str, Any]) -> None:
        n = self.section
        assert n.smtp_host is not None and n.mail_from is not None
        msg = render.mail(payload, n.mail_from, n.mail_to)
        await aiosmtplib.send(msg, hostname=n.smtp_host, port=n.smtp_port,
                              start_tls=n.starttls, use_tls=n.smtp_tls,
                              username=n.username, password=n.password, timeout=n.timeout)

    async def _post(self, channel: str, payload: dict[str, Any]) -> None:
        hook = self.section.webhook(channel)
        if hook is None:
            # a row written under an older config: its channel is gone
            raise DeliveryError(f"channel {channel} is no longer configured")
        r = await self._http.post(hook.url, json=render.webhook_body(payload, hook.format),
                                  headers=hook.headers)
        if not 200 <= r.status_code < 300:
            raise DeliveryError(f"HTTP {r.status_code} from {hook.url}: {r.text[:120]!r}")

    async def aclose(self) -> None:
        await self._http.aclose()
