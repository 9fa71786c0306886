"""The ``[notify]`` section: who hears about incidents, and how hard we try.

Notifications are written to an outbox in the same transaction as the incident
change they report (``arbiter.store.outbox``); a sender job delivers them.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from arbiter.model import EventKind

CHANNEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$"
_MAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")

DEFAULT_EVENTS: tuple[EventKind, ...] = tuple(
    k for k in EventKind if k not in (EventKind.ORPHAN_VIP, EventKind.ORPHAN_VIP_RESOLVED,
                                      EventKind.TEST))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Webhook(_Strict):
    url: str = Field(description="http:// or https:// URL the notification is POSTed to")
    format: Literal["json", "alertmanager", "slack"] = Field(
        "json", description="json: the arbiter's own payload (docs/notifications.md); "
        "alertmanager: the Alertmanager webhook v4 shape; slack: a `text` field")
    headers: dict[str, str] = Field(
        default_factory=dict, description="extra request headers, e.g. Authorization")
    name: str | None = Field(
        None, pattern=CHANNEL_NAME,
        description="the channel's name in /status, metrics and logs (default webhook-N)")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"{v!r} is not an http:// or https:// URL")
        return v


class NotifySection(_Strict):
    smtp_host: str | None = Field(None, description="mail relay; unset: no mail")
    smtp_port: int = Field(25, ge=1, le=65535)
    starttls: bool = Field(False, description="upgrade the SMTP connection with STARTTLS")
    smtp_tls: bool = Field(False, description="implicit TLS from the start (port 465)")
    username: str | None = None
    password: str | None = Field(None, description="may be ${ENV}")
    mail_from: str | None = None
    mail_to: list[str] = Field(default_factory=list)
    webhooks: list[Webhook] = Field(default_factory=list)
    events: list[EventKind] = Field(
        default_factory=lambda: list(DEFAULT_EVENTS),
        description="the kinds of events sent (docs/notifications.md lists them)")
    base_url: str | None = Field(
        None, description="the arbiter's URL as operators reach it, for links in messages "
        "(default: the listen address, loopback for a wildcard)")
    timeout: float = Field(10.0, gt=0, le=300, description="seconds one delivery may take")
    send_every: float = Field(2.0, ge=0.1, le=3600,
                              description="seconds between runs of the sender")
    max_attempts: int = Field(12, ge=1, le=1000,
                              description="deliveries tried before a notification is dead")
    backoff_initial: float = Field(5.0, gt=0, le=3600,
                                   description="seconds before the first retry")
    backoff_max: float = Field(900.0, gt=0, le=86400,
                               description="the longest wait between two tries")
    keep_days: int = Field(30, ge=1, le=3650,
                           description="days sent and dead notifications are kept")

    @model_validator(mode="after")
    def _rules(self) -> NotifySection:
        if self.smtp_host is not None:
            if not self.mail_from:
                raise ValueError("notify.mail_from is required with notify.smtp_host")
            if not self.mail_to:
                raise ValueError("notify.mail_to needs at least one address with "
                                 "notify.smtp_host")
        elif self.mail_to:
            raise ValueError("notify.mail_to is set but notify.smtp_host is not")
        for field, addrs in (("mail_from", [self.mail_from] if self.mail_from else []),
                             ("mail_to", self.mail_to)):
            for a in addrs:
                if not _MAIL.match(a):
                    raise ValueError(f"notify.{field}: {a!r} is not a mail address")
        if (self.username is None) != (self.password is None):
            raise ValueError("notify.username and notify.password go together")
        if self.starttls and self.smtp_tls:
            raise ValueError("notify.starttls and notify.smtp_tls exclude each other")
        if self.backoff_initial > self.backoff_max:
            raise ValueError(f"notify.backoff_initial ({self.backoff_initial}s) must be <= "
                             f"notify.backoff_max ({self.backoff_max}s)")
        names = self.channels
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate channel name(s) in notify.webhooks: {', '.join(dup)}")
        if not names:
            raise ValueError("[notify] has no channel: set notify.smtp_host or add "
                             "[[notify.webhooks]]")
        return self

    @property
    def channels(self) -> list[str]:
        """Every channel's name: ``smtp``, then each webhook's."""
        return (["smtp"] if self.smtp_host else []) + [
            w.name or f"webhook-{i + 1}" for i, w in enumerate(self.webhooks)]

    def webhook(self, channel: str) -> Webhook | None:
        for i, w in enumerate(self.webhooks):
            if (w.name or f"webhook-{i + 1}") == channel:
                return w
        return None
