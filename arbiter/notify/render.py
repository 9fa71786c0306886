"""A notification's payload in each channel's shape: a plain-text mail, our own
JSON, the Alertmanager webhook v4 body, a Slack ``text``. Pure: no I/O."""

from __future__ import annotations

import hashlib
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from arbiter.policy.notify_events import RESOLVES, SEVERITY, EventKind

ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's "not ended"


def mail_text(p: dict[str, Any]) -> str:
    inc = p.get("incident") or {}
    lines = [p["title"], "", p["message"], ""]
    rows: list[tuple[str, Any]] = [("Cluster", p.get("cluster") or "-")]
    if inc:
        rows += [
            ("Incident", f"#{inc['id']} {inc.get('kind', '')}, now {inc.get('state', '')}"),
            ("VIPs", ", ".join(inc.get("vips") or []) or "-"),
            ("Survivor", inc.get("survivor") or "-"),
            ("Victims", ", ".join(inc.get("victims") or []) or "-"),
        ]
    if p.get("nodes"):
        rows.append(("Nodes", ", ".join(p["nodes"])))
    rows += [("When", p["at"]), ("Arbiter", p.get("arbiter") or "-")]
    width = max(len(k) for k, _ in rows) + 1
    lines += [f"{k + ':':<{width}} {v}" for k, v in rows]
    if inc.get("reason"):
        # the decision's reason names the survivor rule that decided
        lines += ["", "Survivor rule and reason:", f"  {inc['reason']}"]
    lines += [""]
    if inc.get("url"):
        lines.append(f"Incident: {inc['url']}")
    lines += [f"Status:   {p['status_url']}", "", f"Dedup key: {p.get('dedup_key', '-')}",
              "-- ", "keepalived-arbiter"]
    return "\n".join(lines) + "\n"


def mail(p: dict[str, Any], mail_from: str, mail_to: list[str]) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = f"[arbiter] {p['title']}"
    msg["From"] = mail_from
    msg["To"] = ", ".join(mail_to)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = make_msgid(domain="keepalived-arbiter")
    msg["X-Arbiter-Dedup-Key"] = p.get("dedup_key", "")
    msg["X-Arbiter-Event"] = p["event"]
    msg.set_content(mail_text(p))
    return msg


def alertmanager(p: dict[str, Any]) -> dict[str, Any]:
    """The Alertmanager webhook v4 body, one alert. A resolution carries the name and
    labels of the alert it ends, so receivers close the one they opened."""
    event = EventKind(p["event"])
    opened = RESOLVES.get(event, event) if p["status"] == "resolved" else event
    inc = p.get("incident") or {}
    labels = {
        "alertname": "Arbiter" + "".join(w.title() for w in opened.value.split("_")),
        "cluster": p.get("cluster") or "",
        "severity": SEVERITY.get(opened, "info"),
        "source": "keepalived-arbiter",
    }
    if p.get("arbiter"):
        labels["arbiter"] = p["arbiter"]
    if inc:
        labels["incident"] = str(inc["id"])
    annotations = {"summary": p["title"], "description": p["message"],
                   "dedup_key": p.get("dedup_key", "")}
    if inc.get("reason"):
        annotations["reason"] = inc["reason"]
    fingerprint = hashlib.sha256(repr(sorted(labels.items())).encode()).hexdigest()[:16]
    resolved = p["status"] == "resolved"
    alert = {
        "status": p["status"], "labels": labels, "annotations": annotations,
        "startsAt": p["at"], "endsAt": p["at"] if resolved else ZERO_TIME,
        "generatorURL": inc.get("url") or p["status_url"], "fingerprint": fingerprint,
    }
    return {
        "version": "4", "groupKey": f"{{}}:{{alertname=\"{labels['alertname']}\"}}",
        "truncatedAlerts": 0, "status": p["status"], "receiver": "keepalived-arbiter",
        "groupLabels": {"alertname": labels["alertname"]}, "commonLabels": labels,
        "commonAnnotations": annotations, "externalURL": p["status_url"], "alerts": [alert],
    }


def slack(p: dict[str, Any]) -> dict[str, Any]:
    inc = p.get("incident") or {}
    text = f"*{p['title']}*\n{p['message']}"
    if inc.get("reason") and inc["reason"] != p["message"]:
        text += f"\n_{inc['reason']}_"
    if inc.get("url"):
        text += f"\n<{inc['url']}|incident #{inc['id']}>"
    return {"text": text}


def webhook_body(p: dict[str, Any], fmt: str) -> dict[str, Any]:
    if fmt == "alertmanager":
        return alertmanager(p)
    if fmt == "slack":
        return slack(p)
    return p
