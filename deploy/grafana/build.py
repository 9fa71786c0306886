"""Writes deploy/grafana/keepalived-arbiter.json from the panels below: one place for
the queries, which tests/test_dashboard.py evaluates in a real Prometheus.

    python deploy/grafana/build.py      # after changing a panel; commit both files
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).with_name("keepalived-arbiter.json")

# (title, type, [(expr, legend)], unit, width, description); {C} is the cluster
# variable's selector, for the series that carry a cluster label
CLUSTER = 'cluster=~"$cluster"'
# stat panels: the value from which each turns red (or amber): green below
THRESHOLDS = {
    "Split brains active": [(1, "red")],
    "Arbiter isolated / TILT": [(1, "red")],
    "Maintenance pauses": [(1, "orange")],
    "Last round age": [(5, "orange"), (30, "red")],
    "Backups denied (exclusive)": [(1, "orange")],
    "Dead notifications": [(1, "red")],
}
PANELS: list[tuple[str, str, list[tuple[str, str]], str, int, str]] = [
    ("Split brains active", "stat", [("sum(arbiter_split_brain_active{C})", "clusters")],
     "none", 4, "Clusters with a VIP held twice now (0 is the only good value)"),
    ("Arbiter isolated / TILT", "stat",
     [("max(arbiter_isolated)", "isolated"), ("max(arbiter_tilt)", "TILT")], "none", 4,
     "1: the arbiter abstains and fences nothing"),
    ("Maintenance pauses", "stat", [("sum(arbiter_paused{C})", "paused clusters")], "none", 4,
     "arbiter pause: watched and recorded, never fenced"),
    ("Last round age", "stat",
     [("time() - max(arbiter_last_round_timestamp_seconds)", "seconds")], "s", 4,
     "Verdicts abstain once it passes stale_after"),
    ("Backups denied (exclusive)", "stat", [("sum(arbiter_exclusive_denials{C})", "denied")],
     "none", 4, "Backups that miss a healthy master's adverts: a VRRP cut held off"),
    ("Dead notifications", "stat", [("sum(arbiter_outbox_dead)", "dead")], "none", 4,
     "Notifications given up after max_attempts"),
    ("Split brains and fence steps", "timeseries",
     [("sum by (cluster) (increase(arbiter_split_brains_detected_total{C}[5m]))",
       "split brains {{cluster}}"),
      ("sum by (action, outcome) (increase(arbiter_fence_steps_total{C}[5m]))",
       "{{action}} {{outcome}}")], "none", 12, "Per 5 minutes"),
    ("Node reachability", "timeseries",
     [("min by (cluster, node, probe) (arbiter_node_reachable{C})", "{{node}} {{probe}}")],
     "none", 12, "1 reachable, 0 not, per probe (icmp, ssh, gateway)"),
    ("VIP holders", "timeseries",
     [("max by (cluster, vip) (arbiter_vip_holders{C})", "{{cluster}} {{vip}}")], "none", 12,
     "Nodes holding each VIP: 2 or more is a split brain"),
    ("keepalived state", "timeseries",
     [("max by (node, vrrp_instance, state) (arbiter_keepalived_state{C}) == 1",
       "{{node}} {{vrrp_instance}} {{state}}")], "none", 12,
     "Each instance's state as its keepalived reports it (keepalived_view)"),
    ("Round duration", "timeseries",
     [("histogram_quantile(0.95, sum by (le) (rate(arbiter_round_duration_seconds_bucket[5m])))",
       "p95"),
      ("rate(arbiter_round_duration_seconds_sum[5m])"
       " / rate(arbiter_round_duration_seconds_count[5m])", "mean")],
     "s", 12, "interval is the budget"),
    ("/verdict answers", "timeseries",
     [("sum by (verdict) (rate(arbiter_verdicts_served_total[5m]))", "{{verdict}}")],
     "reqps", 12, "Every node's gate asks once a second"),
    ("Notification outbox", "timeseries",
     [("sum by (channel) (arbiter_outbox_pending)", "pending {{channel}}"),
      ("sum by (channel, outcome) (increase(arbiter_notification_deliveries_total[1h]))",
       "{{channel}} {{outcome}} /h")], "none", 12, "Pending should drain within send_every"),
    ("Track file writes", "timeseries",
     [("sum by (cluster, outcome) (increase(arbiter_track_writes_total{C}[5m]))",
       "{{cluster}} {{outcome}}")], "none", 12,
     "Verdicts written into keepalived track files (track_files)"),
    ("[ha] leaders and terms", "timeseries",
     [("max by (instance, shard) (arbiter_ha_leading)", "{{instance}} leads {{shard}}"),
      ("max by (shard) (arbiter_ha_term)", "term {{shard}}")], "none", 12,
     "One leader per shard; the term rises at every takeover"),
]


def _defaults(title: str, unit: str) -> dict:
    out: dict = {"unit": unit}
    if title in THRESHOLDS:
        steps = [{"color": "green", "value": None}]
        steps += [{"color": c, "value": v} for v, c in THRESHOLDS[title]]
        out["thresholds"] = {"mode": "absolute", "steps": steps}
        out["color"] = {"mode": "thresholds"}
    return out


def build() -> dict:
    panels = []
    x = y = row_height = 0
    for i, (title, kind, targets, unit, width, desc) in enumerate(PANELS, start=1):
        height = 4 if kind == "stat" else 8
        if x + width > 24:  # next row, below the tallest panel of this one
            x, y, row_height = 0, y + row_height, 0
        row_height = max(row_height, height)
        panels.append({
            "id": i, "type": kind, "title": title, "description": desc,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"x": x, "y": y, "w": width, "h": height},
            "fieldConfig": {"defaults": _defaults(title, unit), "overrides": []},
            "targets": [{"refId": chr(ord("A") + n), "expr": e.replace("{C}", "{" + CLUSTER + "}"),
                         "legendFormat": leg,
                         "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                        for n, (e, leg) in enumerate(targets)],
        })
        x += width
    return {
        # an import asks which Prometheus to use (Grafana's "Import dashboard")
        "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource",
                      "pluginId": "prometheus", "pluginName": "Prometheus"}],
        "title": "keepalived-arbiter", "uid": "keepalived-arbiter", "schemaVersion": 39,
        "version": 1, "editable": True, "refresh": "10s", "tags": ["keepalived", "vrrp"],
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus",
             "label": "Prometheus", "current": {"text": "${DS_PROMETHEUS}",
                                                "value": "${DS_PROMETHEUS}"}},
            {"name": "cluster", "type": "query", "label": "Cluster",
             "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": {"query": "label_values(arbiter_vip_holders, cluster)",
                       "refId": "clusters"},
             "definition": "label_values(arbiter_vip_holders, cluster)",
             "multi": True, "includeAll": True, "allValue": ".*", "refresh": 2,
             "current": {"text": "All", "value": "$__all"}, "sort": 1},
        ]},
        "panels": panels,
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=2) + "\n")
    print(f"wrote {OUT}")
