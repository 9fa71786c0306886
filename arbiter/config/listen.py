"""``[arbiter] listen``: the API's address, as the server binds it and a client asks it."""

from __future__ import annotations

import re


def parse_listen(value: str) -> tuple[str, int]:
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\[\]]+):(\d+)", value)
    if not m:
        raise ValueError(f"{value!r} is not HOST:PORT")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range 1-65535")
    return host, port


def listen_url(listen: str, tls: bool) -> str:
    """The URL a client on this host uses for ``listen``: a wildcard address is asked
    on loopback, and an IPv6 host is bracketed."""
    host, port = parse_listen(listen)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"{'https' if tls else 'http'}://{'[' + host + ']' if ':' in host else host}:{port}"
