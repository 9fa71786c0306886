"""`arbiter check`: one round, printed as a readable table, with what the policy
would decide once a split brain is confirmed; and, for clusters with exclusive
verdicts, whether each node's arbiter-gate is asking the running arbiter.
"""

from __future__ import annotations

from datetime import timedelta

from arbiter.cli.adapters import pinger_for, pool_for
from arbiter.cli.api_client import ApiError, call
from arbiter.cli.exits import EXIT_ERROR, EXIT_OK, EXIT_SPLIT
from arbiter.clock import utcnow
from arbiter.config import ClusterConfig, Config
from arbiter.policy.fence_plan import action_words
from arbiter.probe.agent import run_agent
from arbiter.round.views.arp_view import ArpViews
from arbiter.round.views.observer import Observer


def _fmt_bool(v: bool | None, yes: str = "yes", no: str = "NO") -> str:
    return "?" if v is None else (yes if v else no)


async def run_check(cfg: Config) -> int:
    from arbiter.model import ClusterHistory, History, IncidentMemory, IncidentState
    from arbiter.policy import decide

    pool = pool_for(cfg)
    observer = Observer(cfg, pinger_for(cfg), pool, utcnow, ArpViews(cfg, lambda: None))
    try:
        snap = await observer.observe()
    finally:
        await pool.close()
    a = decide.assess(cfg, snap, History(), snap.at)
    gws = ", ".join(f"{g} {'up' if ok else 'DOWN'}" for g, ok in snap.self_check.gateways)
    print(f"arbiter self-check: {gws}")
    if a.abstaining:
        print(f"ABSTAIN: {a.abstain_reason}")
    split_any = False
    ssh_failed: list[str] = []
    agent_failed = False
    for c in cfg.clusters:
        ca = a.cluster(c.name)
        obs = snap.cluster(c.name)
        assert ca is not None and obs is not None
        print(f"\ncluster {c.name}  VIPs {', '.join(c.vips)}")
        hdr = f"  {'node':<12}{'health':<12}{'icmp':<6}{'ssh':<6}{'keepalived':<11}" \
              f"{'gateways':<10}{'holds':<28}error"
        print(hdr)
        for o in obs.nodes:
            if not o.ssh_ok:
                ssh_failed.append(f"{c.name}/{o.node}")
            held = ",".join(o.holds(c.vips)) or "-"
            ka = {True: "running", False: "stopped", None: "?"}[o.keepalived_running]
            gw = f"{o.gateways_seen}/{len(o.gateways)}" if o.ssh_ok else "?"
            print(f"  {o.node:<12}{o.health.value:<12}{_fmt_bool(o.icmp_ok, 'ok', 'FAIL'):<6}"
                  f"{_fmt_bool(o.ssh_ok, 'ok', 'FAIL'):<6}{ka:<11}{gw:<10}{held:<28}"
                  f"{o.ssh_error or ''}")
        for vip, holders in ca.holders:
            print(f"  {vip}: {' + '.join(holders) if holders else 'NO HOLDER'}")
        if cfg.ssh.collect_session:
            refused = [n.name for n in c.nodes if (n.name, n.address) in pool.sessionless()]
            if refused:
                print(f"  collect: a channel per round on {', '.join(refused)} "
                      "(refused a collect session)")
        if ca.split_vips:
            split_any = True
            print(f"  SPLIT BRAIN: {ca.reason}")
            # What would happen once confirmed: the same pure policy, primed.
            primed = History(clusters=((c.name, ClusterHistory(
                split_streak=cfg.arbiter.confirm_rounds - 1,
                split_since=snap.at - timedelta(seconds=cfg.confirm_span),
                incident=IncidentMemory(id=None, state=IncidentState.OPEN),
                incumbents=(),
            )),))
            cfg_dry = cfg.model_copy(
                update={"arbiter": cfg.arbiter.model_copy(update={"dry_run": True})}
            )
            hyp = decide.assess(cfg_dry, snap, primed, snap.at).cluster(c.name)
            if hyp and hyp.fence:
                rule = hyp.fence.reason.split("; fence: ")[0]
                print(f"  decision once confirmed ({cfg.arbiter.confirm_rounds} rounds): "
                      f"{rule}")
                for v in hyp.fence.victims:
                    print(f"  would {action_words(v)}")
            elif hyp:
                print(f"  no fence would be taken: {hyp.reason}")
        for note in ca.notes:
            print(f"  note: {note}")
        for line in await agent_report(c):
            print(line)
            agent_failed = agent_failed or "FAILED" in line
    for line in gate_report(cfg):
        print(line)
    if ssh_failed:
        print(f"\nSSH FAILED on {', '.join(ssh_failed)}: the arbiter can neither read "
              "their VIPs nor fence them (the error column says why)")
    if agent_failed:
        print("\nFENCE AGENT FAILED: the agent level cannot fence (see above)")
    if a.abstaining or ssh_failed or agent_failed:
        return EXIT_ERROR
    return EXIT_SPLIT if split_any else EXIT_OK


async def agent_report(c: ClusterConfig) -> list[str]:
    """For an agent fencing level: ask the agent each node's power status now
    (action=status, which changes nothing), so a wrong address or password shows
    before the day the agent is the only way to fence."""
    if not c.fence_agent:
        return []
    out = []
    for n in c.nodes:
        if "agent" not in c.levels_for(n):
            continue
        r = await run_agent(c.fence_agent, "status", c.agent_options_for(n), n.name,
                            c.fence_agent_timeout)
        word = "on" if r.exit_status == 0 else "OFF" if r.off else f"FAILED: {r.error}"
        out.append(f"  fence agent {c.fence_agent} on {n.name} (status): {word}")
    return out


def gate_report(cfg: Config, timeout: float = 2.0) -> list[str]:
    """Exclusive verdicts protect nothing on a node whose gate never asks. Only the
    running arbiter knows who asked: read its /status (the configured listen address;
    0.0.0.0 and :: are asked on loopback)."""
    exclusive = [c for c in cfg.clusters if c.verdict == "exclusive"]
    if not exclusive:
        return []
    url = cfg.api_url + "/status"
    out = [f"\ngates (exclusive verdicts), as the running arbiter at {url} saw them:"]
    try:
        status = call(cfg, "GET", "/status", token=next(iter(cfg.api.tokens.values()), None),
                      timeout=timeout)
    except ApiError as exc:
        out.append(f"  WARNING: cannot tell whether the gates are wired: {exc}")
        return out
    by_name = {c["name"]: c for c in status.get("clusters", [])}
    for c in exclusive:
        cl = by_name.get(c.name, {})
        for n in cl.get("nodes", []):
            gate = n.get("gate") or {}
            out.append(f"  {c.name}/{n['name']}: {gate.get('summary', 'gate: never asked')}")
        for w in cl.get("warnings", []):
            out.append(f"  WARNING: {w}")
    return out
