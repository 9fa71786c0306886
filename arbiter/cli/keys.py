"""`arbiter keys init`: the SSH key and known_hosts a first deployment needs, made as
the service will read them (issue 30).

On a stock Debian 12 the README's old steps made a key only root could read (the
unit runs as `arbiter`), needed `ssh-keygen` and `ssh-keyscan` (openssh-client, not a
dependency then), and pointed at a checkout path for the host keys. This command:

- makes the key named in ``ssh.client_keys`` if it is missing (ed25519, asyncssh's own
  generator), owned by the service user, mode 0600, with its ``.pub`` beside it, and
  prints the line for the directors' ``authorized_keys`` (with the forced command);
- fetches each configured director's host key, shows its fingerprint, and pins them in
  ``ssh.known_hosts`` once the operator confirms (``--yes``: checked out of band). A
  key already pinned is kept; a different one for the same host is never replaced
  silently (the fingerprint of both is shown, and nothing is written).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import sys
from pathlib import Path

import asyncssh

from arbiter.cli.exits import EXIT_ERROR, EXIT_OK, EXIT_OPERATOR
from arbiter.config import Config

WRAPPER = "/usr/local/sbin/arbiter-ssh-wrapper"  # where README "First deployment" puts it


def _owner(user: str) -> tuple[int, int] | None:
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return None
    return pw.pw_uid, pw.pw_gid


def make_key(path: Path, user: str) -> str:
    """The key at ``path``, made if missing, readable by ``user`` alone; what was done."""
    own = _owner(user)
    done = "kept"
    if not path.exists():
        key = asyncssh.generate_private_key("ssh-ed25519", comment="keepalived-arbiter")
        path.parent.mkdir(parents=True, exist_ok=True)
        old = os.umask(0o077)
        try:
            key.write_private_key(str(path))
            key.write_public_key(str(path) + ".pub")
        finally:
            os.umask(old)
        done = "made"
    os.chmod(path, 0o600)
    if own is not None and os.geteuid() == 0:
        os.chown(path, *own)
        done += f", owned by {user} (mode 0600)"
    elif own is None:
        done += f" (no user {user!r} here: owned by whoever ran this)"
    return done


def host_line(address: str, port: int, key: asyncssh.SSHKey) -> str:
    host = address if port == 22 else f"[{address}]:{port}"
    return f"{host} {key.export_public_key('openssh').decode().strip()}"


async def fetch_host_keys(cfg: Config) -> list[tuple[str, str, int, asyncssh.SSHKey | str]]:
    """(node, address, port, key or why not) for every configured director."""
    nodes = [(n.name, n.address, n.port or cfg.ssh.port)
             for c in cfg.clusters for n in c.nodes]

    async def one(addr: str, port: int) -> asyncssh.SSHKey | str:
        try:
            key = await asyncio.wait_for(asyncssh.get_server_host_key(
                addr, port, server_host_key_algs=["ssh-ed25519", "ecdsa-sha2-nistp256",
                                                  "rsa-sha2-256"]),
                cfg.ssh.connect_timeout + 5)
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            return f"no answer ({exc or type(exc).__name__})"
        return key if key is not None else "no host key offered"

    keys = await asyncio.gather(*(one(a, p) for _, a, p in nodes))
    return [(n, a, p, k) for (n, a, p), k in zip(nodes, keys, strict=True)]


def cmd_keys_init(cfg: Config, user: str, yes: bool) -> int:
    key = Path(cfg.ssh.client_keys[0])
    print(f"ssh key {key}: {make_key(key, user)}")
    pub = Path(str(key) + ".pub")
    if pub.exists():
        print("  install it on each director (~arbiter/.ssh/authorized_keys of the SSH user):")
        print(f'  command="{WRAPPER} /etc/arbiter/ssh-wrapper.conf",restrict '
              f"{pub.read_text().strip()}")
    kh = Path(cfg.ssh.known_hosts)
    pinned = {}
    if kh.exists():
        for line in kh.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and not line.startswith("#"):
                pinned[parts[0]] = " ".join(parts[1:3])
    new, conflicts, failed = [], [], []
    for node, addr, port, k in asyncio.run(fetch_host_keys(cfg)):
        if isinstance(k, str):
            failed.append(f"{node} ({addr}:{port}): {k}")
            continue
        line = host_line(addr, port, k)
        host, algo_key = line.split(" ", 1)
        fp = k.get_fingerprint("sha256")
        if host in pinned and pinned[host] == algo_key:
            print(f"  {node} {addr}:{port} {k.get_algorithm()} {fp}: already pinned")
        elif host in pinned:
            conflicts.append(f"{node} {addr}:{port}: pinned key differs from the one "
                             f"offered now ({fp}): not replaced; check the host, then "
                             f"remove its line from {kh} by hand")
        else:
            print(f"  {node} {addr}:{port} {k.get_algorithm()} {fp}")
            new.append(line)
    for f in failed:
        print(f"  {f}", file=sys.stderr)
    for c in conflicts:
        print(f"  {c}", file=sys.stderr)
    if new:
        print("compare with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on each "
              "director")
        if not yes:
            print(f"pin these {len(new)} key(s) in {kh}? [y/N] ", end="", flush=True)
            if sys.stdin.readline().strip().lower() not in ("y", "yes"):
                print("not written")
                return EXIT_OPERATOR
        kh.parent.mkdir(parents=True, exist_ok=True)
        with kh.open("a") as f:
            f.writelines(x + "\n" for x in new)
        os.chmod(kh, 0o644)
        print(f"written to {kh}")
    return EXIT_ERROR if failed or conflicts else EXIT_OK
