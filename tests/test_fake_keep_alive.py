"""The fakes keep a connection open between requests when asked to, as Google's and
Instantly's servers do (the benchmarks measure the worker against them)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.fakes.instantly_api import FakeInstantlyServer
from tests.fakes.sheets_api import FakeSheetsServer

KEY = "keep-alive-test-key-0001"


@pytest.fixture
def instantly() -> Iterator[FakeInstantlyServer]:
    server = FakeInstantlyServer(keep_alive=True).start()
    server.add_workspace(KEY).add_campaign("Kept open")
    yield server
    server.stop()


def _connection(url: str) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=5), parts.path


def _get(conn: http.client.HTTPConnection, path: str) -> http.client.HTTPResponse:
    conn.request("GET", path, headers={"Authorization": f"Bearer {KEY}"})
    return conn.getresponse()


def test_answers_come_back_on_one_open_connection(instantly: FakeInstantlyServer) -> None:
    conn, base = _connection(instantly.url)
    first = _get(conn, base + "/campaigns/analytics/steps")
    assert first.status == 200 and not first.will_close
    json.loads(first.read())
    sock = conn.sock
    second = _get(conn, base + "/campaigns/analytics/steps")
    assert second.status == 200
    assert json.loads(second.read()) == []
    assert conn.sock is sock  # the same connection, not a new one
    conn.close()


def test_a_body_the_fake_did_not_read_does_not_become_the_next_request(
    instantly: FakeInstantlyServer,
) -> None:
    conn, base = _connection(instantly.url)
    # The fake answers GET routes only: this body is never read by the application.
    conn.request("POST", base + "/campaigns/analytics/steps", body=b"x" * 5000,
                 headers={"Authorization": f"Bearer {KEY}", "Content-Type": "text/plain"})
    refused = conn.getresponse()
    refused.read()
    assert refused.status >= 400
    answer = _get(conn, base + "/campaigns/analytics/steps")
    assert answer.status == 200 and json.loads(answer.read()) == []
    conn.close()


def test_without_keep_alive_the_fakes_close_as_the_tests_expect() -> None:
    server = FakeSheetsServer().start()
    try:
        conn, _ = _connection(server.url)
        conn.request("GET", "/v4/spreadsheets/nope")
        response = conn.getresponse()
        response.read()
        assert response.will_close
    finally:
        server.stop()
