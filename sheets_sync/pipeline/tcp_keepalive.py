"""TCP keepalive probes on the connections a session keeps open between refreshes.

A worker keeps its connections to Google and Instantly open for the next refresh, which
may come an hour later. A NAT gateway or firewall on the way may forget an idle connection
after some minutes without telling either end; the next request sent on it then goes
nowhere, and the refresh waits out its whole read timeout (30 s) before it learns that
(and a write's outcome becomes unknown). With keepalive, the kernel probes a connection
that has been idle for a minute: the probes keep such gateways' entries alive, and a
connection whose other end is gone fails its probes within about two minutes, so urllib3
finds it closed before reuse and opens a new one.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection

IDLE_SECONDS = 60  # idle time before the first probe
PROBE_INTERVAL_SECONDS = 15
PROBES = 4  # unanswered probes before the kernel gives the connection up


Option = tuple[int, int, int]  # (level, option, value) as urllib3 takes them


def _wanted_options() -> list[Option]:
    wanted = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    # Linux names; macOS has TCP_KEEPALIVE for the idle time and the rest since 10.x.
    for name, value in (
        ("TCP_KEEPIDLE", IDLE_SECONDS),
        ("TCP_KEEPINTVL", PROBE_INTERVAL_SECONDS),
        ("TCP_KEEPCNT", PROBES),
    ):
        if hasattr(socket, name):
            wanted.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    return wanted


def accepted_options(
    wanted: list[Option], make_socket: Callable[[], socket.socket] = socket.socket
) -> list[Option]:
    """The options of ``wanted`` that this platform's sockets accept. urllib3 sets them on
    every new connection and fails the call if one is refused (a sandbox may refuse
    some), so a refused one is left out rather than break every call."""
    accepted = []
    with make_socket() as probe:
        for level, option, value in wanted:
            try:
                probe.setsockopt(level, option, value)
            except OSError:
                continue
            accepted.append((level, option, value))
    return accepted


SOCKET_OPTIONS = [*HTTPConnection.default_socket_options, *accepted_options(_wanted_options())]


class KeepAliveAdapter(HTTPAdapter):
    """requests' transport with keepalive probes on every connection it opens (direct or
    through a proxy)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("socket_options", SOCKET_OPTIONS)
        super().init_poolmanager(*args, **kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        proxy_kwargs.setdefault("socket_options", SOCKET_OPTIONS)
        return super().proxy_manager_for(proxy, **proxy_kwargs)


def probe_idle_connections(session: requests.Session) -> requests.Session:
    """``session`` with :class:`KeepAliveAdapter` for http and https."""
    adapter = KeepAliveAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
