"""Connections kept open between calls, as Google keeps them, going stale or breaking.

The product's sessions keep each connection open for the next call, and Google's front
end closes idle connections on its own schedule, or drops one mid-call when a server
restarts; so does Instantly's. Both fakes here keep connections open (``keep_alive``)
and can close the idle ones at once (``close_idle_connections``) or drop one during a
call (``DROP``, ``drop_next``). Real gspread, google-auth and requests throughout. Last,
every connection the product keeps has TCP keepalive probes on (``tcp_keepalive``).
"""

from __future__ import annotations

import datetime as dt
import json
import socket
from collections.abc import Iterator

import pytest

from sheets_sync.config import Settings
from sheets_sync.jobs.runtime import build_runtime
from sheets_sync.pipeline.instantly import InstantlyClient
from sheets_sync.pipeline.refresh import Features
from sheets_sync.pipeline.sheets_writer import make_sheets_client
from sheets_sync.pipeline.tcp_keepalive import accepted_options
from sheets_sync.store.migrate import upgrade
from tests.fakes.instantly_api import DROPPED, FakeInstantlyServer
from tests.fakes.sheets_api import DROP, FakeSheetsServer, make_service_account_info
from tests.plugin_fakes import INSTANTLY_KEY
from tests.test_engine_features import TAB, Syncer, campaign
from tests.worker_helpers import SERVICE_ACCOUNT_EMAIL

START = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def fake_instantly() -> Iterator[FakeInstantlyServer]:
    """Instantly's fake for this module's ``instantly`` client, keeping connections open."""
    with FakeInstantlyServer(keep_alive=True) as server:
        yield server


@pytest.fixture
def kept_open() -> Iterator[FakeSheetsServer]:
    with FakeSheetsServer(
        reads_per_minute=100_000, writes_per_minute=100_000, keep_alive=True
    ) as server:
        yield server


@pytest.fixture
def key_file(kept_open, tmp_path):
    info = make_service_account_info(kept_open.token_uri, SERVICE_ACCOUNT_EMAIL)
    kept_open.register_service_account(info)
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(info))
    return path


@pytest.fixture
def primed(kept_open, key_file, fast_retry, instantly, workspace):
    """Two days of refreshes through one client: its pooled connections are open."""
    ssid = kept_open.create_spreadsheet(shared_with=(SERVICE_ACCOUNT_EMAIL,))
    sheets = make_sheets_client(
        key_file, api_url=kept_open.url, timeout=(2, 5), retry=fast_retry
    )
    cid = campaign(workspace, "Q4", [(0, 0, 100, 10), (0, 1, 100, 5)])
    sync = Syncer(instantly, sheets, ssid, Features.all_on(history_days=3))
    for day in range(2):
        sync([cid], now=START + dt.timedelta(days=day))
    kept_open.reset_calls()
    return ssid, cid, sync


@pytest.mark.parametrize("closed", ["before the refresh", "between the read and the write"])
def test_a_connection_google_closed_while_idle_is_not_used(kept_open, primed, closed):
    ssid, cid, sync = primed
    closed_now: list[int] = []

    def close_idle() -> None:
        closed_now.append(kept_open.close_idle_connections())

    if closed == "before the refresh":
        close_idle()
    out = sync([cid], now=START + dt.timedelta(days=2),
               before_write=close_idle if closed != "before the refresh" else None)

    assert closed_now[0] >= 1  # the client had a connection open
    # Seen as closed and replaced, not sent on and lost: one read, one write, no re-read.
    assert [c.kind for c in kept_open.calls if c.kind != "token"] == ["get", "batchUpdate"]
    assert "2026-11-22" in kept_open.values(ssid, TAB)[1][0]
    assert out.rows_written == 3


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_kept_connection_dropped_during_the_write_is_checked_not_resent_blind(
    kept_open, primed, when
):
    ssid, cid, sync = primed
    kept_open.fail_next("write", DROP, when=when)

    out = sync([cid], now=START + dt.timedelta(days=2))

    # Applied before the drop: the re-read shows it, nothing is sent again. Not applied:
    # planned again from the re-read and sent once more.
    expected = ["get", "batchUpdate", "get"] + (["batchUpdate"] if when == "before" else [])
    assert [c.kind for c in kept_open.calls if c.kind != "token"] == expected
    assert "2026-11-22" in kept_open.values(ssid, TAB)[1][0]
    assert out.rows_written == 3


def test_a_kept_connection_dropped_during_the_read_is_read_again(kept_open, primed):
    ssid, cid, sync = primed
    kept_open.fail_next("read", DROP)

    sync([cid], now=START + dt.timedelta(days=2))

    assert [c.kind for c in kept_open.calls if c.kind != "token"] == [
        "get", "get", "batchUpdate"
    ]
    assert "2026-11-22" in kept_open.values(ssid, TAB)[1][0]


# --- Instantly: reads, safe to ask again ---------------------------------------------


def test_a_connection_instantly_closed_while_idle_is_replaced_not_sent_on(
    fake_instantly, instantly, workspace
):
    cid = campaign(workspace, "Q4", [(0, 0, 100, 10)])
    instantly.step_analytics(cid)
    assert fake_instantly.close_idle_connections() >= 1
    sent_before = instantly.calls

    stats = instantly.step_analytics(cid)

    assert [(s.step, s.variant, s.sent) for s in stats] == [(0, 0, 100)]
    assert instantly.calls - sent_before == 1  # no send lost on the closed connection


def test_a_connection_instantly_drops_mid_call_is_asked_again(
    fake_instantly, instantly, workspace
):
    cid = campaign(workspace, "Q4", [(0, 0, 100, 10)])
    fake_instantly.drop_next(path_contains="/analytics/steps")

    stats = instantly.step_analytics(cid)

    assert [(s.step, s.variant, s.sent) for s in stats] == [(0, 0, 100)]
    assert [c.status for c in fake_instantly.calls] == [DROPPED, 200]


# --- keepalive probes on connections kept for the next refresh -----------------------


def _kept_sockets(session, url):
    manager = session.get_adapter(url).poolmanager
    port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
    return [
        c.sock for key in manager.pools.keys() if key.key_port == port
        for c in list(manager.pools[key].pool.queue) if c is not None and c.sock is not None
    ]


def _probes(sock):
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
    )


def test_every_connection_kept_for_the_next_refresh_is_probed_while_idle(
    kept_open, key_file, fake_instantly, workspace, tmp_path, fast_retry
):
    """A gateway that forgets an idle connection without a word cannot be staged on
    loopback: the next request on it would vanish, and the refresh would wait out its read
    timeout. What protects it is the kernel probing idle connections (which keeps such
    entries alive, and fails a dead connection before reuse), so every connection the
    product keeps, in a worker (with budgets) and in a one-off command, must have it."""
    cid = workspace.add_campaign("Q4")
    ssid = kept_open.create_spreadsheet(shared_with=(SERVICE_ACCOUNT_EMAIL,))
    settings = Settings(
        data_dir=tmp_path / "instance", instantly_api_url=fake_instantly.url,
        sheets_api_url=kept_open.url, google_application_credentials=key_file,
    )
    upgrade(settings.resolved_database_url)
    rt = build_runtime(settings, retry=fast_retry)
    assert rt.quota is not None  # the worker's transports: permits before every call
    try:
        worker_sheets, worker_instantly = rt.sheets(), rt.instantly(INSTANTLY_KEY)
        one_off_sheets = make_sheets_client(key_file, api_url=kept_open.url, retry=fast_retry)
        one_off_instantly = InstantlyClient(
            INSTANTLY_KEY, base_url=fake_instantly.url, retry=fast_retry
        )
        kept = []
        for sheets in (worker_sheets, one_off_sheets):
            sheets.check_access(ssid)
            kept += _kept_sockets(sheets._session, kept_open.url)
        for instantly in (worker_instantly, one_off_instantly):
            instantly.step_analytics(cid)
            kept += _kept_sockets(instantly._session, fake_instantly.url)
        assert len(kept) == 4  # each client kept its connection open
        assert {_probes(sock) for sock in kept} == {(1, 60)}
    finally:
        rt.engine.dispose()


class _RefusingKeepCount:
    """A socket of a platform (a sandbox, say) that refuses to set the probe count."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False

    def setsockopt(self, level, option, value):
        if option == socket.TCP_KEEPCNT:
            raise OSError(92, "Protocol not available")


def test_an_option_the_platform_refuses_is_left_out_instead_of_failing_every_call():
    wanted = [
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
        (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 60),
        (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 4),
    ]
    assert accepted_options(wanted, _RefusingKeepCount) == wanted[:2]
    assert accepted_options(wanted) == wanted  # this machine takes them all
